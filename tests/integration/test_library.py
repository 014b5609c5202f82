"""libringproxy as a front end uses it: the README's example compiles as shown, and a program
that embeds the library serves, routes and drains like the daemon."""
import os
import re
import signal
import subprocess

from harness import BUILD, Client, free_port, get, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def link_flags():
    libs = subprocess.run(["pkg-config", "--libs", "liburing", "libxxhash", "wolfssl", "libdeflate", "libnghttp2"],
                          capture_output=True,
                          text=True, check=True).stdout.split()
    san = ["-fsanitize=address,undefined"] if "asan" in BUILD else []
    return [f"-I{ROOT}/engine", f"{BUILD}/libringproxy.a", *libs, "-pthread", *san]


def compile_c(src, out):
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", src, *link_flags(), "-o", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_readme_example_compiles(P):
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## Use it as a library"):]
    code = re.search(r"```c\n(.*?)```", section, re.S).group(1)
    src = os.path.join(P.tmp, "readme_example.c")
    with open(src, "w") as f:
        f.write(code)
    compile_c(src, os.path.join(P.tmp, "readme_example"))


def test_embedded_server_serves_and_drains(P):
    a, b = P.origin("A"), P.origin("B")
    exe = compile_c(os.path.join(HERE, "embed.c"), os.path.join(P.tmp, "embed"))
    port = free_port()
    p = subprocess.Popen([exe, str(port), str(a.port), str(b.port)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert wait_port(port), p.stderr.read() if p.poll() is not None else "not listening"
        seen = {get(port, host="embed.local").header("X-Origin") for _ in range(4)}
        assert seen == {"A", "B"}, seen
        assert get(port, "/r/x", host="other").header("X-Origin") == "A"
        c = Client(port)
        assert c.request(host="embed.local").status == 200
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, (p.returncode, err)
    assert "served and drained: 0" in out
    # per-backend state, as rp_backend_states() reports it: 2+2+1 requests on the domain's
    # two backends, 1 on the route's
    rows = [l.split() for l in out.splitlines() if l.startswith("backend ")]
    assert [r[1] for r in rows] == ["embed.local", "embed.local", "/r/"], rows
    counts = [int(r[5].split("=")[1]) for r in rows]
    assert counts[0] + counts[1] == 5 and counts[2] == 1, rows
    assert all(r[3] == "healthy=1" and r[4] == "in_flight=0" and r[6] == "failures=0" for r in rows)


def test_embedded_server_serves_tls(P):
    """rp_listen_and_serve_tls(), the seed's ListenAndServeTLS."""
    a = P.origin("A")
    exe = compile_c(os.path.join(HERE, "embed.c"), os.path.join(P.tmp, "embed"))
    cert, key = os.path.join(P.tmp, "c.pem"), os.path.join(P.tmp, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", "/CN=embed.local", "-addext", "subjectAltName=DNS:embed.local"],
                   check=True, capture_output=True)
    port = free_port()
    env = dict(os.environ, EMBED_TLS_CERT=cert, EMBED_TLS_KEY=key)
    p = subprocess.Popen([exe, str(port), str(a.port)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_port(port)
        r = subprocess.run(["curl", "-s", "--cacert", cert, "--resolve",
                            f"embed.local:{port}:127.0.0.1", f"https://embed.local:{port}/"],
                           capture_output=True, timeout=10)
        assert r.stdout == b"hello from A\n", r
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=5)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "served and drained: 0" in out, (out, err)
