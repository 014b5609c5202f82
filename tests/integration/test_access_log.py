"""The access log (issue 13, point 3): one line per request answered, in the server's log or
its domain's, in the combined, json and template formats; what each kind of answer logs
(proxied 200 with either framing, HEAD, 404 not routed, 400 malformed, 502, 504, cache
MISS/HIT, a WebSocket tunnel when it ends); escaping of hostile header bytes; X-Request-Id
sent upstream and logged; reopening on SIGUSR1 after a rename with no line lost; no torn
line from two workers under load; a path that cannot be opened; a full disk."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import BUILD, Client, domain_conf, free_port, get, wait_port
from wsproto import echo, ws_connect

HOST = "log.local"
COMBINED = re.compile(r'^(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
                      r'"((?:[^"\\]|\\x[0-9a-f]{2})*)" (\d{3}) (\d+) '
                      r'"((?:[^"\\]|\\x[0-9a-f]{2})*)" "((?:[^"\\]|\\x[0-9a-f]{2})*)"$')


def lines(path, n, timeout=5.0):
    """The file's lines once it holds at least n (lines are written within 100 ms)."""
    end = time.time() + timeout
    while True:
        text = open(path, "rb").read() if os.path.exists(path) else b""
        got = text.split(b"\n")
        assert got[-1] == b"", f"a partial line: {got[-1]!r}"
        if len(got) - 1 >= n or time.time() > end:
            return [ln.decode("utf-8") for ln in got[:-1]]
        time.sleep(0.05)


def combined(line):
    m = COMBINED.match(line)
    assert m, line
    return {"addr": m.group(1), "request": m.group(3), "status": int(m.group(4)),
            "bytes": int(m.group(5)), "referer": m.group(6), "ua": m.group(7)}


def raw(port, data, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                k = s.recv(65536)
            except socket.timeout:
                break
            if not k:
                break
            out += k
        return out


def test_combined_lines_for_each_kind_of_answer(P):
    good = P.origin("G")
    dead = free_port()
    glog, dlog, xlog = (os.path.join(P.tmp, n) for n in ("global.log", "d.log", "x.log"))
    conf = f'access_log = {{ path = "{glog}"; }};\n'
    conf += (f'domains = ( {{ domain = "{HOST}"; backends = ( {{ addr = "http://127.0.0.1:'
             f'{good.port}"; }} ); read_timeout = "300ms"; access_log = {{ path = "{dlog}"; '
             f'format = "combined"; }}; }},\n'
             f'  {{ domain = "dead.local"; backends = ( {{ addr = "http://127.0.0.1:{dead}"; }} );'
             f' access_log = {{ path = "{xlog}"; }}; }},\n'
             f'  {{ domain = "quiet.local"; backends = ( {{ addr = "http://127.0.0.1:'
             f'{good.port}"; }} ); access_log = "off"; }} );\n')
    px = P.proxy(conf)
    r = get(px.port, "/cl?size=100", host=HOST, headers=[("Referer", "http://ref/"),
                                                            ("User-Agent", "ua/1")])
    assert r.status == 200 and len(r.body) == 100
    r = get(px.port, "/ch?size=100&chunked=1", host=HOST)
    assert r.status == 200 and r.header("Transfer-Encoding") == "chunked"
    c = Client(px.port)
    r = c.request("HEAD", "/h?size=50", host=HOST)
    assert r.status == 200 and r.body == b""
    assert get(px.port, "/e?status=503", host=HOST).status == 503  # relayed
    assert get(px.port, "/slow?delay=2000", host=HOST).status == 504
    assert get(px.port, "/q", host="quiet.local").status == 200  # "off": no line anywhere
    assert get(px.port, "/nope", host="other.local").status == 404
    assert get(px.port, "/down", host="dead.local").status == 502
    assert raw(px.port, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n").startswith(
        b"HTTP/1.1 400")

    d = [combined(x) for x in lines(dlog, 5)]
    assert len(d) == 5, d
    assert d[0] == {"addr": "127.0.0.1", "request": "GET /cl?size=100 HTTP/1.1", "status": 200,
                    "bytes": 100, "referer": "http://ref/", "ua": "ua/1"}, d[0]
    # chunked: the body bytes as they went, framing included (as nginx counts them)
    assert d[1]["status"] == 200 and d[1]["bytes"] > 100, d[1]
    assert d[2]["request"] == "HEAD /h?size=50 HTTP/1.1" and d[2]["bytes"] == 0, d[2]
    assert d[3]["status"] == 503 and d[4]["status"] == 504, d
    assert d[0]["referer"] == "http://ref/" and d[1]["referer"] == "-", d
    x = [combined(ln) for ln in lines(xlog, 1)]
    assert [(e["request"], e["status"]) for e in x] == [("GET /down HTTP/1.1", 502)], x
    g = [combined(ln) for ln in lines(glog, 2)]
    assert [(e["request"], e["status"]) for e in g] == [("GET /nope HTTP/1.1", 404),
                                                        ("-", 400)], g


def test_cache_status_and_template(P):
    good = P.origin("G")
    alog = os.path.join(P.tmp, "t.log")
    fmt = ("$status $upstream_cache_status $upstream_addr $upstream_status "
           "$upstream_connect_time $upstream_response_time $request_time ${host} $http_x_thing")
    conf = domain_conf(HOST, [good.port], f'access_log = {{ path = "{alog}"; format = "{fmt}"; }};')
    conf += 'cache = { default_max_age = "1m"; };\n'
    px = P.proxy(conf)
    url = "/c?header=Cache-Control:max-age%3D60"
    assert get(px.port, url, host=HOST, headers=[("X-Thing", "one")]).status == 200
    r = get(px.port, url, host=HOST.upper() + ":80")
    assert r.status == 200 and r.header("X-Cache") == "HIT"
    assert Client(px.port).request("POST", "/p", host=HOST, body=b"x").status == 200
    got = lines(alog, 3)
    addr = f"127.0.0.1:{good.port}"
    t = r"\d+\.\d{3}"
    assert re.fullmatch(rf"200 MISS {addr} 200 {t} {t} {t} {HOST} one", got[0]), got[0]
    # a hit: no attempt; $host lowercase, without the port
    assert re.fullmatch(rf"200 HIT - - - - {t} {HOST} -", got[1]), got[1]
    assert re.fullmatch(rf"200 BYPASS {addr} 200 {t} {t} {t} {HOST} -", got[2]), got[2]


def test_retries_list_every_attempt(P):
    good = P.origin("G")
    dead = free_port()
    alog = os.path.join(P.tmp, "r.log")
    conf = domain_conf(HOST, [dead, good.port],
                       f'access_log = {{ path = "{alog}"; format = "$status|$upstream_addr|'
                       f'$upstream_status|$upstream_connect_time"; }}; max_retries = 1;')
    px = P.proxy(conf)
    seen = set()
    for _ in range(4):  # round robin: some start at the dead one
        assert get(px.port, "/", host=HOST).status == 200
    for ln in lines(alog, 4):
        seen.add(re.sub(r"\d+\.\d{3}", "T", ln))
    assert f"200|127.0.0.1:{dead}, 127.0.0.1:{good.port}|502, 200|-, T" in seen, seen
    assert f"200|127.0.0.1:{good.port}|200|T" in seen, seen


def test_json_lines_parse_with_hostile_headers(P):
    good = P.origin("G")
    glog, dlog = os.path.join(P.tmp, "g.json"), os.path.join(P.tmp, "d.json")
    conf = f'access_log = {{ path = "{glog}"; format = "json"; }};\n'
    conf += domain_conf(HOST, [good.port], f'access_log = {{ path = "{dlog}"; format = "json"; }};')
    px = P.proxy(conf)
    ua = b'q"b\\s \xff\xfe \xc3\xa9 {"x":1}'
    head = b"GET /j?size=7 HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nUser-Agent: " + ua
    r = raw(px.port, head + b"\r\nReferer: r\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200"), r[:100]
    # a control byte in a field value: the parser refuses it (400), logged in the server's log
    r = raw(px.port, b"GET /c HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-A: a\x01b\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 400"), r[:100]
    assert get(px.port, "/none", host="other.local").status == 404
    [d] = [json.loads(x) for x in lines(dlog, 1)]
    assert d["status"] == 200 and d["body_bytes_sent"] == 7 and d["request"] == "GET /j?size=7 HTTP/1.1"
    assert isinstance(d["request_time"], float) and d["http_referer"] == "r"
    # invalid UTF-8 bytes are \u00XX of the byte; valid UTF-8 passes through
    assert d["http_user_agent"] == 'q"b\\s \u00ff\u00fe \u00e9 {"x":1}', d["http_user_agent"]
    assert d["upstream_status"] == "200" and d["upstream_cache_status"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", d["request_id"]) and d["ssl_protocol"] is None
    g = [json.loads(x) for x in lines(glog, 2)]
    assert [(e["status"], e["request"]) for e in g] == [(400, None), (404, "GET /none HTTP/1.1")], g
    assert all(e["upstream_addr"] is None and e["host"] in (None, "other.local") for e in g), g


def test_text_escaping_of_quotes_backslash_and_high_bytes(P):
    good = P.origin("G")
    dlog = os.path.join(P.tmp, "e.log")
    px = P.proxy(domain_conf(HOST, [good.port], f'access_log = {{ path = "{dlog}"; }};'))
    ua = b'a" 200 1 "-" "forged\\ \xff\xc3\xa9\t.'
    r = raw(px.port, b"GET /x HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nUser-Agent: " + ua +
            b"\r\nConnection: close\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200"), r[:80]
    [ln] = lines(dlog, 1)
    e = combined(ln)  # still exactly the combined fields: nothing forged
    assert e["ua"] == r'a\x22 200 1 \x22-\x22 \x22forged\x5c \xff\xc3\xa9\x09.', e["ua"]
    assert ln.isascii() and ln.isprintable(), ln


def test_request_id_sent_upstream_and_logged(P):
    good = P.origin("G")
    dlog = os.path.join(P.tmp, "id.log")
    conf = "request_id = true;\n" + domain_conf(
        HOST, [good.port], f'access_log = {{ path = "{dlog}"; format = "$request_id $status"; }};')
    px = P.proxy(conf)
    ids = []
    for sent in (None, "client-id_1.2", "bad id!", "x" * 65):
        hdrs = [("X-Request-Id", sent)] if sent else []
        r = get(px.port, "/?echo=1", host=HOST, headers=hdrs)
        assert r.status == 200
        got = re.findall(rb"(?im)^x-request-id: *(\S*)\r$", r.body)
        assert len(got) == 1, r.body  # one field: the client's replaced, never doubled
        ids.append(got[0].decode())
    assert re.fullmatch(r"[0-9a-f]{32}", ids[0]) and ids[1] == "client-id_1.2", ids
    assert re.fullmatch(r"[0-9a-f]{32}", ids[2]) and re.fullmatch(r"[0-9a-f]{32}", ids[3]), ids
    assert len(set(ids)) == 4, ids
    assert lines(dlog, 4) == [f"{i} 200" for i in ids]


def test_request_id_off_passes_the_clients_field(P):
    good = P.origin("G")
    px = P.proxy(domain_conf(HOST, [good.port]))
    r = get(px.port, "/?echo=1", host=HOST, headers=[("X-Request-Id", "bad id!")])
    assert re.findall(rb"(?im)^x-request-id: *(.*)\r$", r.body) == [b"bad id!"], r.body


def test_websocket_tunnel_logged_when_it_ends(P):
    ws = P.origin("W", "--ws")
    dlog = os.path.join(P.tmp, "ws.log")
    px = P.proxy(domain_conf(HOST, [ws.port], f'access_log = {{ path = "{dlog}"; format = '
                                               f'"$request $status $body_bytes_sent"; }};'))
    s, head = ws_connect(px.port, host=HOST)
    assert echo(s, 2, b"y" * 1000) == (2, b"y" * 1000)
    time.sleep(0.3)
    assert lines(dlog, 1, timeout=0.5) == []  # not while it is open
    s.close()
    [ln] = lines(dlog, 1)
    req, status, sent = ln.rsplit(" ", 2)
    assert req == "GET /chat HTTP/1.1" and status == "101", ln
    assert int(sent) >= 1000 + 4, ln  # the echoed frame, after the 101 head


def test_reopen_on_sigusr1_loses_nothing(P):
    good = P.origin("G")
    dlog = os.path.join(P.tmp, "rot.log")
    px = P.proxy(domain_conf(HOST, [good.port], f'access_log = {{ path = "{dlog}"; format = '
                                                 f'"$request"; }};'), workers=2)
    for i in range(50):
        assert get(px.port, f"/a{i}", host=HOST).status == 200
    lines(dlog, 50)
    os.rename(dlog, dlog + ".1")
    for i in range(50, 60):  # after the rename, before the signal: still the old file
        assert get(px.port, f"/a{i}", host=HOST).status == 200
    assert len(lines(dlog + ".1", 60)) == 60
    px.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    for i in range(60, 100):
        assert get(px.port, f"/a{i}", host=HOST).status == 200
    new = lines(dlog, 40)
    old = lines(dlog + ".1", 60)
    want = [f"GET /a{i} HTTP/1.1" for i in range(100)]
    # two workers: each one's lines in order, the two interleaved
    assert sorted(old) == sorted(want[:60]) and sorted(new) == sorted(want[60:]), (old, new)
    P.stop(px)
    assert px.returncode == 0


def test_two_workers_under_load_tear_no_line(P):
    good = P.origin("G")
    dlog = os.path.join(P.tmp, "load.log")
    aport = free_port()
    conf = domain_conf(HOST, [good.port], f'access_log = {{ path = "{dlog}"; }};')
    conf += f'admin = {{ listen = "127.0.0.1:{aport}"; }};\n'
    px = P.proxy(conf, workers=2)
    r = subprocess.run([f"{BUILD}/ringload", "-c", "32", "-t", "2", "-n", "40000", "--json",
                        "-H", f"Host: {HOST}", "-H", "User-Agent: " + "u" * 300,
                        f"http://127.0.0.1:{px.port}/load?size=10"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)["requests"]
    assert wait_port(aport)
    m = Client(aport).request("GET", "/metrics", host="admin").body.decode()
    dropped = int(re.search(r"^ringproxy_access_log_dropped_total (\d+)$", m, re.M).group(1))
    P.stop(px)  # everything left is written at exit
    assert px.returncode == 0
    got = lines(dlog, sent - dropped, timeout=1)
    for ln in got:
        e = combined(ln)
        assert e["request"] == "GET /load?size=10 HTTP/1.1" and e["ua"] == "u" * 300, ln
    assert len(got) + dropped == sent, (len(got), dropped, sent)


def test_unopenable_path_is_refused(P):
    path = P.write_config(f'listen = "127.0.0.1:{free_port()}";\n'
                          + domain_conf(HOST, [free_port()],
                                        'access_log = { path = "/nonexistent-dir/x.log"; };'))
    for args in (("-t", "-c", path), ("-c", path)):
        r = subprocess.run([f"{BUILD}/ringproxy", *args], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r
        assert r.stderr == (f'{path}:2: access_log path "/nonexistent-dir/x.log": cannot open: '
                            "No such file or directory\n"), r.stderr
    path = P.write_config(f'listen = "127.0.0.1:{free_port()}";\n'
                          'access_log = { path = "/tmp/x.log";\n format = "$status $foo"; };\n'
                          + domain_conf(HOST, [free_port()]))
    r = subprocess.run([f"{BUILD}/ringproxy", "-t", "-c", path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and r.stderr == (f"{path}:3: unknown variable $foo in access_log "
                                              "format\n"), r.stderr


def test_full_disk_keeps_serving_and_counts(P):
    good = P.origin("G")
    aport = free_port()
    conf = domain_conf(HOST, [good.port], 'access_log = { path = "/dev/full"; };')
    conf += f'admin = {{ listen = "127.0.0.1:{aport}"; }};\n'
    px = P.proxy(conf, workers=2)
    t0 = time.time()
    for _ in range(200):
        assert get(px.port, "/", host=HOST).status == 200
    assert time.time() - t0 < 10
    time.sleep(0.3)
    assert wait_port(aport)
    m = Client(aport).request("GET", "/metrics", host="admin").body.decode()
    val = {k: int(v) for k, v in re.findall(r"^(ringproxy_access_log_\w+) (\d+)$", m, re.M)}
    assert val["ringproxy_access_log_write_errors_total"] >= 1, val
    assert val["ringproxy_access_log_dropped_total"] == 200, val
    assert val["ringproxy_access_log_lines_total"] == 0, val
    P.stop(px)
    assert px.returncode == 0
    assert "write failed: No space left on device" in P.log_of(px)
