"""Configuration reload (SIGHUP, POST /reload): the new file in force for new requests, what
is unchanged kept (pooled connections, health, cache entries, listeners that stay), what is
removed drained, a broken file changing nothing, storms coalescing, renewed certificates
served, and no request lost while reloads run under load."""
import json
import os
import re
import signal
import subprocess
import threading
import time

from harness import (BUILD, Client, Load, curl, free_port, get, origin_stats, port_closed,
                     wait_port)
from test_tls import make_cert

TOKEN = "r3load"


def dom(name, ports, extra=""):
    backends = ", ".join(f'{{ addr = "http://127.0.0.1:{p}"; }}' for p in ports)
    return f'{{ domain = "{name}"; backends = ( {backends} ); {extra} }}'


def conf_text(port, domains, workers=1, extra="", admin=None, listen=None):
    listen = listen or f'"127.0.0.1:{port}"'
    text = f"listen = {listen};\nworkers = {workers};\n"
    text += "domains = ( " + ", ".join(domains) + " );\n" + extra
    if admin:
        text += f'admin = {{ listen = "127.0.0.1:{admin}"; token = "{TOKEN}"; }};\n'
    return text


def start(P, text, port):
    path = P.write_config(text)
    logpath = os.path.join(P.tmp, f"proxy-{port}.log")
    p = subprocess.Popen([f"{BUILD}/ringproxy", "-c", path], stdout=open(logpath, "a"),
                         stderr=subprocess.STDOUT)
    p.port, p.logpath, p.path = port, logpath, path
    P.procs.append(p)
    assert wait_port(port), open(logpath).read()
    return p


def rewrite(px, text):
    tmp = px.path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, px.path)  # as an editor or a config manager replaces it: whole


def log(px):
    with open(px.logpath) as f:
        return f.read()


def wait_log(px, pattern, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if re.search(pattern, log(px)):
            return True
        time.sleep(0.05)
    return False


def hup(px, generation):
    px.send_signal(signal.SIGHUP)
    assert wait_log(px, rf"reload: generation {generation}\b"), log(px)[-2000:]
    time.sleep(0.25)  # every worker adopts it at its next loop pass (100 ms at most)


def admin(port, method, path):
    return Client(port).request(method, path, host="admin",
                                headers=[("Authorization", f"Bearer {TOKEN}")])


def test_reload_adds_and_removes_and_keeps_pooled_connections(P):
    a, b = P.origin("A"), P.origin("B")
    port = free_port()
    px = start(P, conf_text(port, [dom("a.local", [a.port])]), port)
    c = Client(port)
    for _ in range(5):
        r = c.request("GET", "/", host="a.local")
        assert r.status == 200 and r.header("X-Origin") == "A"
    assert get(port, "/", host="n.local").status == 404
    a_conns = origin_stats(a.port)[1]

    rewrite(px, conf_text(port, [dom("a.local", [a.port, b.port]), dom("n.local", [b.port])]))
    hup(px, 2)
    seen = [c.request("GET", "/", host="a.local").header("X-Origin") for _ in range(10)]
    assert set(seen) == {"A", "B"}, seen  # the new backend takes its share at once
    assert get(port, "/", host="n.local").header("X-Origin") == "B"
    # the unchanged backend kept its pooled connection: A saw no new one (its /__stats
    # request itself is direct, not through the proxy: it adds one, counted above too)
    assert origin_stats(a.port)[1] == a_conns + 1, (a_conns, origin_stats(a.port))
    assert re.search(r"domains and routes \+1 -0, backends \+2 -0 \(1 kept\)", log(px)), log(px)

    rewrite(px, conf_text(port, [dom("a.local", [b.port])]))
    hup(px, 3)
    assert get(port, "/", host="n.local").status == 404
    assert {c.request("GET", "/", host="a.local").header("X-Origin") for _ in range(4)} == {"B"}
    assert c.request("GET", "/", host="a.local").status == 200  # the client's connection lived on


def test_broken_file_changes_nothing_and_admin_reload_reports_it(P):
    a = P.origin("A")
    port, aport = free_port(), free_port()
    good = conf_text(port, [dom("a.local", [a.port])], admin=aport)
    px = start(P, good, port)
    assert wait_port(aport)
    rewrite(px, good.replace("domains = (", "domains = (\n  { domain = 7; },", 1))
    px.send_signal(signal.SIGHUP)
    assert wait_log(px, rf"reload refused, nothing changed: {re.escape(px.path)}:4: "), log(px)
    assert get(port, "/", host="a.local").status == 200
    r = admin(aport, "POST", "/reload")
    assert r.status == 400, r
    err = json.loads(r.body)["error"]
    assert err.startswith(f"{px.path}:4: "), err
    assert get(port, "/", host="a.local").status == 200
    m = admin(aport, "GET", "/metrics").body
    assert b"ringproxy_config_generation 1\n" in m, m
    # what an operator alerts on: the file on disk is not the one in force
    assert b"ringproxy_config_last_reload_successful 0\n" in m
    assert b"ringproxy_reload_failures_total 2\n" in m
    # a backend that does not resolve: refused by the library's checks, same answer
    rewrite(px, good.replace(f"127.0.0.1:{a.port}", "no-such-host.invalid:80"))
    r = admin(aport, "POST", "/reload")
    assert r.status == 400 and "rejected" in json.loads(r.body)["error"], r

    rewrite(px, good.replace('"a.local"', '"b.local"'))
    r = admin(aport, "POST", "/reload")
    assert r.status == 200, r
    j = json.loads(r.body)
    assert j["generation"] == 2 and "+1 -1" in j["result"], j
    assert get(port, "/", host="b.local").status == 200
    assert get(port, "/", host="a.local").status == 404
    m = admin(aport, "GET", "/metrics").body
    assert b"ringproxy_config_generation 2\n" in m and b"ringproxy_reloads_total 1\n" in m, m
    assert b"ringproxy_config_last_reload_successful 1\n" in m
    assert b"ringproxy_reload_failures_total 3\n" in m
    ts = int(re.search(rb"ringproxy_config_last_reload_success_timestamp_seconds (\d+)", m)[1])
    assert abs(ts - time.time()) < 60, ts


def test_listeners_opened_and_closed_by_difference(P):
    a = P.origin("A")
    port, port2 = free_port(), free_port()
    doms = [dom("a.local", [a.port])]
    px = start(P, conf_text(port, doms, workers=2), port)
    kept = Client(port)
    assert kept.request("GET", "/", host="a.local").status == 200
    rewrite(px, conf_text(port, doms, workers=2, listen=f'[ "127.0.0.1:{port}", '
                                                        f'"127.0.0.1:{port2}" ]'))
    hup(px, 2)
    assert wait_port(port2)
    for _ in range(8):  # both workers' sockets of the new listener accept
        assert get(port2, "/", host="a.local").status == 200
    assert kept.request("GET", "/", host="a.local").status == 200  # never closed
    rewrite(px, conf_text(port, doms, workers=2, listen=f'"127.0.0.1:{port2}"'))
    hup(px, 3)
    assert port_closed(port)
    assert get(port2, "/", host="a.local").status == 200
    # the connection accepted before lives on until it ends, like any in a drain
    assert kept.request("GET", "/", host="a.local").status == 200


def test_workers_cannot_change_and_storms_coalesce(P):
    a = P.origin("A")
    port = free_port()
    px = start(P, conf_text(port, [dom("a.local", [a.port])]), port)
    rewrite(px, conf_text(port, [dom("a.local", [a.port])], workers=2))
    hup(px, 2)
    assert re.search(r"workers 1 -> 2 needs a restart", log(px)), log(px)

    with Load(port, "a.local", keep=True) as load:
        for i in range(100):  # 100 SIGHUPs in about a second, the file changing under them
            if i == 99:
                rewrite(px, conf_text(port, [dom("a.local", [a.port]), dom("last.local",
                                                                            [a.port])]))
            px.send_signal(signal.SIGHUP)
            time.sleep(0.01)
        assert wait_log(px, r"domains and routes \+1 -0")
        time.sleep(0.3)
        assert load.at_least(11)
    assert px.poll() is None
    assert get(port, "/", host="last.local").status == 200  # the last file won
    reloads = len(re.findall(r"reload: generation", log(px)))
    assert 2 <= reloads < 100, reloads  # coalesced, none lost after the last change
    assert not load.failures, load.failures


def test_cache_entries_survive(P):
    a = P.origin("A")
    port = free_port()
    cache = 'cache = { default_max_age = "60s"; rules = ( { path_prefix = "/"; } ); };\n'
    px = start(P, conf_text(port, [dom("a.local", [a.port])], extra=cache), port)
    assert get(port, "/c", host="a.local").header("X-Cache") == "MISS"
    assert get(port, "/c", host="a.local").header("X-Cache") == "HIT"
    before = origin_stats(a.port)[0]
    # new rules from the swap: only paths under /c are stored now
    rewrite(px, conf_text(port, [dom("a.local", [a.port]), dom("x.local", [a.port])],
                          extra=cache.replace('"/"', '"/c"')))
    hup(px, 2)
    assert get(port, "/c", host="a.local").header("X-Cache") == "HIT"
    after = origin_stats(a.port)[0]
    assert after == before, (before, after)  # the hit never reached it (/__stats is not counted)
    assert get(port, "/other", host="a.local").header("X-Cache") == "MISS"
    assert get(port, "/other", host="a.local").header("X-Cache") == "MISS"  # not stored
    # turning the cache off needs a restart: said, and the cache goes on serving
    rewrite(px, conf_text(port, [dom("a.local", [a.port])]))
    hup(px, 3)
    assert re.search(r"the cache turned off needs a restart", log(px)), log(px)
    assert get(port, "/c", host="a.local").header("X-Cache") == "HIT"


def test_renewed_certificate_served_to_new_handshakes(P):
    a = P.origin("A")
    port = free_port()
    cert, key = make_cert(P.tmp, "old", "old.local", ["test.local"])
    new_cert, new_key = make_cert(P.tmp, "new", "new.local", ["test.local"])
    tls = f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'
    listen = f'"127.0.0.1:{free_port()}"'
    text = conf_text(port, [dom("test.local", [a.port])], extra=tls, listen=listen)
    text = text.replace("listen = ", f'listen_tls = "127.0.0.1:{port}";\nlisten = ', 1)
    px = start(P, text, port)

    def subject():
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                            "-servername", "test.local"], input=b"", capture_output=True,
                           timeout=10)
        m = re.search(rb"subject=.*CN ?= ?([\w.]+)", r.stdout)
        return m.group(1).decode() if m else r.stdout[-500:]

    assert subject() == "old.local"
    os.replace(new_cert, cert)  # renewed in place, as certbot's deploy hook or cp would
    os.replace(new_key, key)
    hup(px, 2)
    assert subject() == "new.local"
    r = curl("-s", "-k", "--resolve", f"test.local:{port}:127.0.0.1",
             f"https://test.local:{port}/")
    assert r.returncode == 0, r.stderr


def test_reload_removing_the_admin_listener(P):
    a = P.origin("A")
    port, aport = free_port(), free_port()
    px = start(P, conf_text(port, [dom("a.local", [a.port])], admin=aport), port)
    assert wait_port(aport)
    rewrite(px, conf_text(port, [dom("a.local", [a.port])]))
    r = admin(aport, "POST", "/reload")  # answered on the connection it came on
    assert r.status == 200, r
    time.sleep(0.3)
    assert port_closed(aport)
    assert get(port, "/", host="a.local").status == 200
    rewrite(px, conf_text(port, [dom("a.local", [a.port])], admin=aport))
    hup(px, 3)
    assert wait_port(aport)
    assert admin(aport, "GET", "/backends").status == 200


def test_twenty_reloads_under_fixed_rate_load(P):
    a, b, c = P.origin("A"), P.origin("B"), P.origin("C")
    port, aport, extra_port = free_port(), free_port(), free_port()
    cert, key = make_cert(P.tmp, "load", "load.local", ["load.local"])
    renewed = [make_cert(P.tmp, f"load{i}", f"load{i}.local", ["load.local"]) for i in (0, 1)]
    variants = []
    for i in range(20):
        weights = f'{{ addr = "http://127.0.0.1:{a.port}"; weight = {1 + i % 3}; }}'
        if i % 2:
            weights += f', {{ addr = "http://127.0.0.1:{b.port}"; }}'
        doms = [f'{{ domain = "a.local"; backends = ( {weights} ); }}']
        if i % 3 == 0:
            doms.append(dom("extra.local", [c.port]))
        listen = f'[ "127.0.0.1:{port}", "127.0.0.1:{extra_port}" ]' if i % 4 == 1 else None
        variants.append(conf_text(port, doms, workers=2, admin=aport, listen=listen,
                                  extra=f'tls = {{ cert = "{cert}"; key = "{key}"; }};\n'))
    px = start(P, variants[0], port)
    assert wait_port(aport)
    def ringload(*args):
        return subprocess.Popen([f"{BUILD}/ringload", "-t", "1", "-d", "9s", "--json", "-H",
                                 "Host: a.local", *args, f"http://127.0.0.1:{port}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    load = ringload("-R", "3000", "-c", "32")
    fresh = ringload("-R", "200", "-c", "8", "--close")  # a new connection per request
    scrapes = []

    def scrape():  # /metrics during the reloads
        end = time.time() + 8
        while time.time() < end:
            scrapes.append(admin(aport, "GET", "/metrics").status)
            time.sleep(0.1)

    st = threading.Thread(target=scrape)
    time.sleep(1)
    st.start()
    took = []
    for i in range(1, 21):
        rewrite(px, variants[i % 20])
        for src, dst in zip(renewed[i % 2], (cert, key)):  # a renewed certificate each time
            with open(src, "rb") as f, open(dst + ".new", "wb") as g:
                g.write(f.read())
            os.rename(dst + ".new", dst)
        t0 = time.time()
        r = admin(aport, "POST", "/reload")
        took.append(time.time() - t0)
        assert r.status == 200, r
        assert json.loads(r.body)["generation"] == i + 1
        time.sleep(0.3)
    st.join()
    j = json.loads(load.communicate(timeout=30)[0])
    jf = json.loads(fresh.communicate(timeout=30)[0])
    errors, ferrors = sum(j["errors"].values()), sum(jf["errors"].values())
    print(f"reload under load: {j['requests']} requests, {errors} errors, status {j['status']}; "
          f"with a new connection each: {jf['requests']} requests, {ferrors} errors; "
          f"POST /reload took median {sorted(took)[10] * 1000:.1f} ms, "
          f"max {max(took) * 1000:.1f} ms")
    assert errors == 0 and j["status"]["2xx"] == j["requests"] > 20000, j
    assert ferrors == 0 and jf["status"]["2xx"] == jf["requests"] > 1200, jf  # none refused
    assert set(scrapes) == {200} and len(scrapes) > 40, scrapes


def test_reload_brings_changes_and_reopens_access_logs(P):
    a = P.origin("A")
    port = free_port()
    glog, dlog = os.path.join(P.tmp, "all.log"), os.path.join(P.tmp, "d.log")
    px = start(P, conf_text(port, [dom("a.local", [a.port])]), port)  # no log at start
    assert get(port, "/one", host="a.local").status == 200

    def lines(path):
        time.sleep(0.4)  # written within 100 ms of the request, by the worker
        with open(path) as f:
            return f.read().splitlines()

    logged = f'access_log = {{ path = "{glog}"; format = "json"; }};\n'
    rewrite(px, conf_text(port, [dom("a.local", [a.port]),
                                 dom("d.local", [a.port],
                                     f'access_log = {{ path = "{dlog}"; '
                                     'format = "$host $status $request"; };')], extra=logged))
    hup(px, 2)
    assert get(port, "/two", host="a.local").status == 200
    assert get(port, "/three", host="d.local").status == 200
    assert [json.loads(x)["request"] for x in lines(glog)] == ["GET /two HTTP/1.1"]
    assert lines(dlog) == ["d.local 200 GET /three HTTP/1.1"]

    # a path that cannot be opened: refused, named, and the logs go on as they were
    rewrite(px, conf_text(port, [dom("a.local", [a.port])],
                          extra='access_log = { path = "/nonexistent-dir/x.log"; };\n'))
    px.send_signal(signal.SIGHUP)
    assert wait_log(px, r'reload refused.*access_log path "/nonexistent-dir/x.log"'), log(px)
    assert get(port, "/four", host="a.local").status == 200
    assert json.loads(lines(glog)[-1])["request"] == "GET /four HTTP/1.1"

    # a new format for the same file, then logrotate: the adopted file is reopened too
    rewrite(px, conf_text(port, [dom("a.local", [a.port])],
                          extra=f'access_log = {{ path = "{glog}"; format = "$status $request"; }};\n'))
    hup(px, 3)
    os.rename(glog, glog + ".1")
    px.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert get(port, "/five", host="a.local").status == 200
    assert lines(glog) == ["200 GET /five HTTP/1.1"]


def test_sighup_racing_the_drain(P):
    """A SIGHUP that comes as the server drains and ends: the reload finishes first or is
    refused ("not running"); the process exits 0 either way (ASan checks the memory)."""
    a = P.origin("A")
    for i in range(8):
        port = free_port()
        px = start(P, conf_text(port, [dom("a.local", [a.port])], workers=2), port)
        px.send_signal(signal.SIGHUP)
        time.sleep(0.007 * i)  # across the reloader's 50 ms settle
        px.send_signal(signal.SIGTERM)
        assert px.wait(10) == 0, log(px)[-2000:]
