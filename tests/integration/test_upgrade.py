"""pid_file, `ringproxy -s`, and `ringproxy --upgrade`: the pid file is written once the
daemon serves and removed at exit; a second start is refused; -s sends each signal to the
pid there, or says why it cannot; an upgrade under a steady load of new connections refuses
none of them, the old process drains and exits 0 and the new one serves and owns the pid
file; an upgrade that fails (bad file, or failure after the sockets were handed over)
leaves the old process serving, untouched."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

from harness import BUILD, free_port, get, wait_port


def conf(P, port, origin, workers=2, extra="", name="rp"):
    """A config file with a pid_file in the test's directory; returns (path, pid_file)."""
    pid_file = os.path.join(P.tmp, f"{name}.pid")
    path = P.write_config(
        f'listen = "127.0.0.1:{port}";\nworkers = {workers};\npid_file = "{pid_file}";\n'
        f'routes = ( {{ path_prefix = "/"; backend = "http://127.0.0.1:{origin.port}"; }} );\n'
        + extra)
    return path, pid_file


def start(P, path, *args, port=None, name="proxy"):
    """ringproxy -c path (a Popen the harness stops and checks at the end)."""
    logpath = os.path.join(P.tmp, f"{name}-{len(P.procs)}.log")
    p = subprocess.Popen([f"{BUILD}/ringproxy", "-c", path, *args], stdout=open(logpath, "a"),
                         stderr=subprocess.STDOUT)
    p.port, p.logpath = port, logpath
    P.procs.append(p)
    return p


def run(*args, timeout=30):
    return subprocess.run([f"{BUILD}/ringproxy", *args], capture_output=True, text=True,
                          timeout=timeout)


def read_pid(pid_file):
    try:
        with open(pid_file) as f:
            return f.read()
    except FileNotFoundError:
        return None


def wait_for(cond, timeout=10.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def serving(P, path, pid_file, port, *args):
    """Starts a daemon and waits until it serves and its pid file names it."""
    p = start(P, path, *args, port=port)
    wait_for(lambda: read_pid(pid_file) == f"{p.pid}\n" or p.poll() is not None, 10, "pid file")
    assert p.poll() is None, P.log_of(p)
    assert wait_port(port)
    return p


def daemon(P, **kw):
    """An origin and a daemon in front of it; returns (port, path, pid_file, process)."""
    port = free_port()
    path, pid_file = conf(P, port, P.origin("A"), **kw)
    return port, path, pid_file, serving(P, path, pid_file, port)


def upgrade(P, path, pid_file, *args):
    """ringproxy --upgrade: returns the new process once its pid is in the pid file."""
    new = start(P, path, "--upgrade", *args, name="new")
    wait_for(lambda: read_pid(pid_file) == f"{new.pid}\n" or new.poll() is not None, 10,
             "the new pid in the pid file")
    assert new.poll() is None, P.log_of(new)
    return new


def requests_served(log):
    """The requests the workers' stop lines count."""
    return sum(int(n) for n in re.findall(r"worker \d+: \d+ connections, (\d+) requests", log))


def ringload(port, rate, seconds, connections=64):
    r = subprocess.run([f"{BUILD}/ringload", "--json", "-R", str(rate), "--close", "-c",
                        str(connections), "-t", "2", "-d", f"{seconds}s",
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                       timeout=seconds + 30)
    return r, json.loads(r.stdout)


def load_in_background(port, rate, seconds):
    out = {}
    t = threading.Thread(target=lambda: out.update(zip(("r", "j"), ringload(port, rate,
                                                                         seconds))))
    t.start()
    return t, out


def assert_no_failures(j, r):
    assert j["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}, (j, r.stderr)
    assert j["status"]["2xx"] == j["requests"] and j["requests"] > 0, j


# ---- (1) an upgrade under load -----------------------------------------------------------


def test_upgrade_under_load_refuses_nothing(P):
    port, path, pid_file, old = daemon(P)
    t, out = load_in_background(port, 3000, 6)
    time.sleep(2)
    t0 = time.time()
    new = upgrade(P, path, pid_file)
    took = time.time() - t0
    assert old.wait(10) == 0, P.log_of(old)  # drained within its shutdown_timeout
    t.join(40)
    r, j = out["r"], out["j"]
    assert_no_failures(j, r)
    assert j["requests"] >= 3000 * 6 * 0.95, j
    # afterwards only the new process answers: the old one is gone, the new one serves
    assert get(port).status == 200
    assert run("-s", "stop", "-c", path).returncode == 0
    assert new.wait(10) == 0
    served_old, served_new = requests_served(P.log_of(old)), requests_served(P.log_of(new))
    assert served_new > 3000, (served_old, served_new)  # about 4 s of the load, and the get
    # every request ringload counted was answered by one of them (a few more may have been
    # in flight when its time was up)
    assert 0 <= served_old + served_new - 1 - j["requests"] <= 64, (served_old, served_new, j)
    m = re.search(r"serving in its place (\d+) ms after asking", P.log_of(new))
    assert m, P.log_of(new)
    print(f"    upgrade: {m.group(1)} ms from connecting to the old process to its drain, "
          f"{took * 1000:.0f} ms from exec to the pid file; {j['requests']} requests at "
          f"3000/s, a new connection each, {served_old} answered by the old process and "
          f"{served_new - 1} by the new, 0 errors", file=sys.stderr)
    assert not os.path.exists(pid_file) and not os.path.exists(pid_file + ".sock")


def test_restart_under_load_does_refuse(P):
    """The control for the test above: the same load across a stop and a start refuses
    connections, and ringload counts them, so zero above means something."""
    port, path, pid_file, old = daemon(P)
    t, out = load_in_background(port, 3000, 4)
    time.sleep(1.5)
    assert run("-s", "stop", "-c", path).returncode == 0
    assert old.wait(10) == 0
    serving(P, path, pid_file, port)
    t.join(40)
    assert out["j"]["errors"]["connect"] > 0, out["j"]


def test_upgrade_to_fewer_and_more_workers(P):
    """3 workers to 1: the one worker accepts on all three sockets of the group (a socket
    nobody accepted on would strand the third of the connections hashed to it). 1 worker to
    3: they share the one socket. The admin listener (on a thread of its own) goes along."""
    for before, after in ((3, 1), (1, 3)):
        admin = free_port()
        port, path, pid_file, old = daemon(
            P, workers=before, name=f"w{before}",
            extra=f'admin = {{ listen = "127.0.0.1:{admin}"; }};\n')
        assert wait_port(admin)
        new = upgrade(P, path, pid_file, "-w", str(after))
        assert old.wait(10) == 0, P.log_of(old)
        assert f"took {before + 1} listening sockets" in P.log_of(new), P.log_of(new)
        r, j = ringload(port, 1000, 1, connections=16)  # 1000 new connections over the group
        assert_no_failures(j, r)
        assert get(admin, "/cache/stats").status == 200
        assert run("-s", "stop", "-c", path).returncode == 0
        assert new.wait(10) == 0


# ---- (2) failed upgrades change nothing ---------------------------------------------------


def snapshot(pid_file):
    return (read_pid(pid_file), os.stat(pid_file).st_ino, os.stat(pid_file + ".sock").st_ino)


def test_upgrade_with_a_broken_file_changes_nothing(P):
    port, path, pid_file, old = daemon(P)
    before = snapshot(pid_file)
    good = open(path).read()
    with open(path, "w") as f:  # the operator's edit that went wrong
        f.write(good + "wrokers = 2;\n")
    r = run("--upgrade", "-c", path)
    assert r.returncode == 1 and r.stderr.startswith(f"{path}:5: unknown key 'wrokers'"), r.stderr
    assert old.poll() is None and snapshot(pid_file) == before
    assert get(port).status == 200
    assert "upgrade" not in P.log_of(old)  # never even asked
    with open(path, "w") as f:
        f.write(good)


def test_upgrade_failing_after_the_handover_changes_nothing(P):
    """The new file adds a listener on a port taken by a socket without SO_REUSEPORT: the new
    process has the old one's sockets by then, fails to open its own, and exits 1, under
    load; the old one never stopped, nothing was refused, and a good upgrade still works."""
    port, path, pid_file, old = daemon(P)
    before = snapshot(pid_file)
    good = open(path).read()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with open(path, "w") as f:
            f.write(good.replace(f'listen = "127.0.0.1:{port}";',
                                 f'listen = ["127.0.0.1:{port}", '
                                 f'"127.0.0.1:{taken.getsockname()[1]}"];'))
        t, out = load_in_background(port, 2000, 3)
        time.sleep(1)
        r = run("--upgrade", "-c", path)
        t.join(40)
    assert r.returncode == 1 and "cannot listen" in r.stderr, r.stderr
    assert "took 2 listening sockets" in r.stderr, r.stderr
    assert_no_failures(out["j"], out["r"])
    assert old.poll() is None and snapshot(pid_file) == before
    wait_for(lambda: "went away before it served: still serving" in P.log_of(old), 5, "log")
    with open(path, "w") as f:
        f.write(good)
    upgrade(P, path, pid_file)
    assert old.wait(10) == 0
    assert get(port).status == 200


# ---- (3) -s ------------------------------------------------------------------------------

CATCHER = r"""
import signal, sys, time
out = sys.argv[1]
def on(sig, _):
    with open(out, "a") as f:
        f.write(signal.Signals(sig).name + "\n")
for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
    signal.signal(s, on)
open(out + ".ready", "w").close()
time.sleep(30)
"""


def test_signal_names_send_their_signals(P):
    """-s against a stand-in whose command name is ringproxy-*: what each name sends."""
    a = P.origin("A")
    path, pid_file = conf(P, free_port(), a)
    exe = os.path.join(P.tmp, "ringproxy-catcher")  # /proc/PID/comm says ringproxy-catcher
    os.symlink(os.path.realpath(sys.executable), exe)
    script, got = os.path.join(P.tmp, "catch.py"), os.path.join(P.tmp, "caught")
    with open(script, "w") as f:
        f.write(CATCHER)
    c = subprocess.Popen([exe, script, got])
    try:
        wait_for(lambda: os.path.exists(got + ".ready"), 10, "the catcher")
        with open(pid_file, "w") as f:
            f.write(f"{c.pid}\n")
        for name in ("reload", "stop", "reopen"):
            r = run("-s", name, "-c", path)
            assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
        wait_for(lambda: os.path.exists(got) and len(open(got).read().split()) == 3, 5, "signals")
        assert open(got).read().split() == ["SIGHUP", "SIGTERM", "SIGUSR1"]
    finally:
        c.kill()
        c.wait()


def test_signal_stop_reload_reopen_on_the_daemon(P):
    port, path, pid_file, p = daemon(P)
    for name in ("reload", "reopen"):  # ignored for now: it must neither die nor stop serving
        r = run("-s", name, "-c", path)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
        assert p.poll() is None, (name, P.log_of(p))
        assert get(port).status == 200
    r = run("-s", "stop", "-c", path)
    assert r.returncode == 0, r.stderr
    assert p.wait(10) == 0
    assert read_pid(pid_file) is None


def test_signal_errors(P):
    a = P.origin("A")
    no_pid = P.write_config('routes = ( { path_prefix = "/"; backend = "http://127.0.0.1:1"; } );\n')
    r = run("-s", "stop", "-c", no_pid)
    assert r.returncode == 1 and r.stderr == f"{no_pid}: -s needs pid_file\n", r.stderr
    path, pid_file = conf(P, free_port(), a)
    r = run("-s", "stop", "-c", path)
    assert r.returncode == 1 and "cannot read" in r.stderr and "is ringproxy running" in r.stderr
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid, why in ((dead.pid, "stale"), (os.getpid(), "stale"), ("x", "holds no pid")):
        with open(pid_file, "w") as f:  # a pid nobody has, a live pid that is no ringproxy
            f.write(f"{pid}\n")
        r = run("-s", "reload", "-c", path)
        assert r.returncode == 1 and why in r.stderr, (pid, r.stderr)
    assert run("-s", "restart", "-c", path).returncode == 2
    assert run("-s", "stop", "-t", "-c", path).returncode == 2


# ---- (4) the pid file --------------------------------------------------------------------


def test_pid_file_written_and_removed(P):
    a = P.origin("A")
    port = free_port()
    path, pid_file = conf(P, port, a)
    with open(pid_file, "w") as f:  # a stale one, left by a crash: no obstacle
        f.write("999999999\n")
    p = serving(P, path, pid_file, port)
    assert stat.S_IMODE(os.stat(pid_file).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(pid_file + ".sock").st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(pid_file + ".sock").st_mode)
    assert not [n for n in os.listdir(P.tmp) if n.endswith(".tmp")]
    r = run("-c", path)  # a second one is refused
    assert r.returncode == 1 and f"already running (pid {p.pid}" in r.stderr, r.stderr
    assert read_pid(pid_file) == f"{p.pid}\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    assert not os.path.exists(pid_file) and not os.path.exists(pid_file + ".sock")


def test_pid_file_config_errors(P):
    base = 'routes = ( { path_prefix = "/"; backend = "http://127.0.0.1:1"; } );\n'
    for value, msg in (('"/nonexistent/dir/rp.pid"',
                        "pid_file: directory /nonexistent/dir: No such file or directory"),
                       ("5", "pid_file: must be a string, got an integer"),
                       ('"/tmp/"', 'pid_file: must name a file, got "/tmp/"'),
                       ('"/tmp/' + "x" * 90 + '"', "pid_file: must be at most 90 bytes")):
        path = P.write_config(base + f"pid_file = {value};\n")
        r = run("-t", "-c", path)
        assert r.returncode == 1 and r.stderr.startswith(f"{path}:2: {msg}"), (value, r.stderr)


def test_upgrade_errors(P):
    a = P.origin("A")
    no_pid = P.write_config('routes = ( { path_prefix = "/"; backend = "http://127.0.0.1:1"; } );\n')
    r = run("--upgrade", "-c", no_pid)
    assert r.returncode == 1 and r.stderr == f"{no_pid}: --upgrade needs pid_file\n", r.stderr
    path, pid_file = conf(P, free_port(), a)
    r = run("--upgrade", "-c", path)  # nobody to take over from
    assert r.returncode == 1 and "cannot connect" in r.stderr and "nothing changed" in r.stderr
    assert not os.path.exists(pid_file)
    assert run("--upgrade", "-t", "-c", path).returncode == 2


def test_upgrade_after_a_reload_added_a_listener(P):
    """A listener a reload opened is handed over like the others: the new process serves
    it on the old one's sockets, and a load on it sees no refused connection."""
    port, path, pid_file, old = daemon(P)
    port2 = free_port()
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(f'listen = "127.0.0.1:{port}";',
                             f'listen = [ "127.0.0.1:{port}", "127.0.0.1:{port2}" ];'))
    old.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: generation 2" in P.log_of(old), 5, "the reload")
    assert wait_port(port2) and get(port2).status == 200
    t, out = load_in_background(port2, 1000, 4)
    time.sleep(1)
    new = upgrade(P, path, pid_file)
    assert old.wait(10) == 0, P.log_of(old)
    t.join(40)
    assert_no_failures(out["j"], out["r"])
    assert get(port).status == 200 and get(port2).status == 200
    # the new process took the reload's sockets over (2 workers x 2 addresses)
    assert re.search(r"asks for the listening sockets: sending 4\b", P.log_of(old)), P.log_of(old)
    assert re.search(r"took 4 listening sockets", P.log_of(new)), P.log_of(new)
    assert run("-s", "stop", "-c", path).returncode == 0
    assert new.wait(10) == 0
