"""The daemon as an operator meets it: config checks with file:line errors, -t, -w, the
drain on SIGTERM, and start-up failures that say what is wrong."""
import os
import signal
import socket
import subprocess
import threading
import time

from harness import BUILD, Client, Skip, domain_conf, free_port, get, port_closed


def run(*args, timeout=10):
    return subprocess.run([f"{BUILD}/ringproxy", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_check_mode_accepts_a_good_file(P):
    path = P.write_config('listen = "127.0.0.1:1";\n' + domain_conf("a.local", [1]))
    r = run("-t", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_config_errors_name_file_and_line(P):
    cases = [
        ('listen = "127.0.0.1:8080";\nwrokers = 2;\n', 2, "unknown key"),
        ('listen = "127.0.0.1:8080";\ndomains = (\n { domain = "a";\n   backends = ( { addr = "http://127.0.0.1:1"; weight = 0; } ); } );\n', 4, "weight"),
        ('listen = "127.0.0.1:99999";\n', 1, "listen"),
        ('listen = "127.0.0.1:8080";\nworkers = ;\n', 2, ""),  # a syntax error
        ('header_timeout = "10 parsecs";\n', 1, "header_timeout"),
    ]
    for text, line, word in cases:
        path = P.write_config(text)
        r = run("-t", "-c", path)
        assert r.returncode == 1, (text, r.returncode, r.stderr)
        assert r.stderr.startswith(f"{path}:{line}:"), (text, r.stderr)
        assert word in r.stderr, (word, r.stderr)
    r = run("-t", "-c", "/nonexistent.conf")
    assert r.returncode == 1 and "/nonexistent.conf" in r.stderr


def test_bad_usage_exits_2(P):
    assert run().returncode == 2
    assert run("-w", "zero", "-c", "x").returncode == 2
    r = run("--version")
    assert r.returncode == 0 and "ringproxy" in r.stdout


def test_address_in_use_fails_start(P):
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody may share this port
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([f"{BUILD}/ringproxy", "-c", P.write_config(
            f'listen = "127.0.0.1:{port}";\n' + domain_conf("a.local", [port]))],
            capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "cannot listen" in r.stderr, r.stderr


def test_workers_flag(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]), extra=("-w", "2"))
    assert get(px.port).status == 200
    threads = os.listdir(f"/proc/{px.pid}/task")
    assert len(threads) >= 3, threads  # main thread + 2 workers


def test_sigterm_drains_in_flight_requests(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]), workers=2)
    results = []

    def slow():
        results.append(get(px.port, "/?delay=800"))

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    px.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert port_closed(px.port), "new connections still accepted while draining"
    t.join(5)
    assert results and results[0].status == 200, results
    assert px.wait(5) == 0


def test_sigterm_closes_idle_keepalive_connections(P):
    a = P.origin("A")
    px = P.proxy(domain_conf("test.local", [a.port]))
    c = Client(px.port)
    assert c.request().status == 200
    t0 = time.time()
    px.send_signal(signal.SIGINT)
    assert c.closed_by_peer(3)
    assert px.wait(5) == 0
    assert time.time() - t0 < 2


def test_io_uring_refusal_is_explained(P):
    # a seccomp filter is out of reach from Python; the sysctl is the real switch
    path = "/proc/sys/kernel/io_uring_disabled"
    if not os.access(path, os.W_OK):
        raise Skip(f"{path} is not writable here (a read-only /proc/sys)")
    old = open(path).read().strip()
    try:
        with open(path, "w") as f:
            f.write("2")
        r = subprocess.run([f"{BUILD}/ringproxy", "-c", P.write_config(
            f'listen = "127.0.0.1:{free_port()}";\n' + domain_conf("a.local", [1]))],
            capture_output=True, text=True, timeout=10)
    finally:
        with open(path, "w") as f:
            f.write(old)
    assert r.returncode == 1
    assert "io_uring is disabled" in r.stderr, r.stderr
