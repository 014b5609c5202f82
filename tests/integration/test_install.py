"""`make install` as a user runs it: the README's library example builds against the installed
prefix with pkg-config and runs; the shared library exports only rp_ symbols; the header is
clean C11 and C++. The man pages and the systemd unit are installed, render without warnings
and verify; ringproxy.conf(5) documents exactly the keys of engine/config.c's tables, and its
example passes ringproxy -t."""
import os
import re
import shutil
import subprocess

from harness import BUILD, Skip, free_port, get, wait_port
from test_hooks import Front, echoed
from test_library import ROOT

SAN = ["-fsanitize=address,undefined"] if "asan" in BUILD else []


def make_vars():
    """The make variables that select the build directory the suite runs on."""
    v = []
    if "asan" in BUILD.split("/"):
        v.append("SAN=1")
    if "fast" in BUILD.split("/"):
        v.append("WOLFSSL=fast")
    # any other directory (--build build/x) is named as such, so `make install` builds there
    derived = ("build/asan" if "SAN=1" in v else "build") + ("/fast" if "WOLFSSL=fast" in v else "")
    if os.path.normpath(BUILD) != derived:
        v.append(f"BUILD={BUILD}")
    return v


def install(P):
    prefix = os.path.join(P.tmp, "prefix")
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install", f"PREFIX={prefix}",
                        *make_vars()], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return prefix


def pkg_config(prefix, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    r = subprocess.run(["pkg-config", *args, "ringproxy"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def readme_example(P):
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## Use it as a library"):]
    src = os.path.join(P.tmp, "app.c")
    with open(src, "w") as f:
        f.write(re.search(r"```c\n(.*?)```", section, re.S).group(1))
    return src


def test_install_layout_and_exports(P):
    prefix = install(P)
    lib = os.path.join(prefix, "lib")
    for f in ["include/ringproxy.h", "lib/libringproxy.a", "lib/pkgconfig/ringproxy.pc",
              "bin/ringproxy", "bin/ringload", "bin/ringorigin"]:
        assert os.path.isfile(os.path.join(prefix, f)), f
    real = os.path.realpath(os.path.join(lib, "libringproxy.so"))
    assert re.search(r"libringproxy\.so\.\d+\.\d+\.\d+$", real), real
    soname = subprocess.run(["readelf", "-d", real], capture_output=True, text=True).stdout
    assert "Library soname: [libringproxy.so.0]" in soname, soname
    assert os.path.realpath(os.path.join(lib, "libringproxy.so.0")) == real
    syms = subprocess.run(["nm", "-D", "--defined-only", real], capture_output=True,
                          text=True).stdout.split("\n")
    names = [l.split()[-1] for l in syms if l.strip()]
    assert len(names) > 20, names
    assert all(n.startswith("rp_") for n in names), [n for n in names if not n.startswith("rp_")]
    for fn in ["rp_server_new", "rp_on_proxy_request", "rp_handle", "rp_headers_set"]:
        assert fn in names


def test_header_is_clean_c11_and_cplusplus(P):
    prefix = install(P)
    inc = f"-I{prefix}/include"
    c = os.path.join(P.tmp, "h.c")
    with open(c, "w") as f:
        f.write('#include <ringproxy.h>\nint main(void) { return rp_version()[0] == 0; }\n')
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", inc, "-c", c,
                        "-o", c + ".o"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cpp = os.path.join(P.tmp, "h.cpp")
    with open(cpp, "w") as f:
        f.write('#include <ringproxy.h>\n#include <cstdio>\n'
                'static bool hook(rp_proxy_request *pr, void *) { return pr != nullptr; }\n'
                'int main() {\n  rp_server *s = rp_server_new(nullptr);\n'
                '  int rc = rp_on_proxy_request(s, hook, nullptr);\n'
                '  std::printf("%s %d %d\\n", rp_version(), rc, rp_server_workers(s) > 0);\n'
                '  rp_server_free(s);\n  return rc;\n}\n')
    exe = os.path.join(P.tmp, "hcpp")
    r = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", cpp,
                        *pkg_config(prefix, "--cflags", "--libs"), *SAN, "-o", exe],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(prefix, "lib"))
    r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=10)
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0 0 1", (r.stdout, r.stderr)


def test_readme_example_against_installed_prefix(P):
    prefix = install(P)
    src = readme_example(P)
    exe = os.path.join(P.tmp, "app")
    r = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", src,
                        *pkg_config(prefix, "--cflags", "--libs"), *SAN, "-o", exe],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # linked against the installed shared library, by its soname
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(prefix, "lib"))
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, env=env).stdout
    assert f"libringproxy.so.0 => {prefix}/lib/libringproxy.so.0" in ldd, ldd
    o = P.origin("A", "--echo")
    os.environ["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]
    try:
        with Front(P, [exe, "127.0.0.1:PORT", f"http://127.0.0.1:{o.port}"]) as f:
            r = get(f.port, "/x", host="api.local")
            assert r.status == 200 and echoed(r)[1]["x-front"] == ["app"], r.body
            r = get(f.port, "/private/y", host="api.local")
            assert r.status == 403 and r.body == b"no\n"
    finally:
        del os.environ["LD_LIBRARY_PATH"]


def test_static_link_with_pkg_config(P):
    if "WOLFSSL=fast" in make_vars():
        # the fast build's wolfSSL is its own static archive, not the system package the .pc
        # names; its shared library carries it inside (tested above)
        print("   (static link: checked on the Debian wolfSSL build only)")
        return
    prefix = install(P)
    src = readme_example(P)
    exe = os.path.join(P.tmp, "app-static")
    libs = [a for a in pkg_config(prefix, "--static", "--libs") if a != "-lringproxy"]
    r = subprocess.run(["cc", "-std=c11", src, *pkg_config(prefix, "--cflags"),
                        os.path.join(prefix, "lib", "libringproxy.a"), *libs, *SAN, "-o", exe],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    assert "libringproxy" not in ldd, ldd
    port = free_port()
    o = P.origin("A")
    p = subprocess.Popen([exe, f"127.0.0.1:{port}", f"http://127.0.0.1:{o.port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(port)
        assert get(port, "/z", host="api.local").header("X-Origin") == "A"
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0


# ---- man pages and the systemd unit ----

MAN_PAGES = ["share/man/man8/ringproxy.8", "share/man/man5/ringproxy.conf.5"]
UNIT = "lib/systemd/system/ringproxy.service"


def test_install_man_pages_and_unit(P):
    prefix = install(P)
    for f in MAN_PAGES + [UNIT]:
        assert os.path.isfile(os.path.join(prefix, f)), f
    for f in MAN_PAGES:
        assert os.stat(os.path.join(prefix, f)).st_mode & 0o777 == 0o644, f
    unit = open(os.path.join(prefix, UNIT)).read()
    # the installed unit runs the installed daemon, checks the file first, keeps io_uring
    assert f"ExecStartPre={prefix}/bin/ringproxy -t -c /etc/ringproxy/ringproxy.conf\n" in unit
    assert f"ExecStart={prefix}/bin/ringproxy -c /etc/ringproxy/ringproxy.conf\n" in unit
    assert "/usr/local/bin" not in unit
    assert not re.search(r"^SystemCallFilter=", unit, re.M), "a filter may block io_uring"
    # TimeoutStopSec above the default shutdown_timeout (30 s, server.c), or the drain is
    # cut by SIGKILL
    stop = re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.M)
    assert stop and int(stop.group(1)) > 30, stop
    if not shutil.which("systemd-analyze"):
        print("   (systemd-analyze not installed: unit not verified)")
        return
    env = dict(os.environ, MANPATH=os.path.join(prefix, "share", "man"))
    man = [] if shutil.which("man") else ["--man=no"]
    r = subprocess.run(["systemd-analyze", "verify", *man, os.path.join(prefix, UNIT)],
                       capture_output=True, text=True, env=env, timeout=60)
    mine = [l for l in (r.stdout + r.stderr).splitlines() if "ringproxy" in l]
    assert r.returncode == 0 and not mine, (r.returncode, r.stdout, r.stderr)


def render_warnings(page):
    """What groff (all warnings on) and man -l print on stderr for `page`, and man's text."""
    found, out, text = False, [], ""
    if shutil.which("groff"):
        found = True
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True,
                           text=True, timeout=60)
        out += [f"groff rc={r.returncode}"] * (r.returncode != 0) + r.stderr.splitlines()
    if shutil.which("man"):
        found = True
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
        r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                           env=env, timeout=60)
        out += [f"man rc={r.returncode}"] * (r.returncode != 0) + r.stderr.splitlines()
        text = r.stdout
    if not found:
        raise Skip("neither man nor groff is installed: the man pages cannot be rendered")
    return out, text


def test_man_pages_render_without_warnings(P):
    prefix = install(P)
    for f in MAN_PAGES:
        warnings, text = render_warnings(os.path.join(prefix, f))
        assert not warnings, (f, warnings)
        if text:
            assert "NAME" in text and "SEE ALSO" in text, (f, text[:500])


def config_tables():
    """{table: [key, ...]} from engine/config.c: every `static const struct key NAME[]` table
    (the first string literal of each entry is its key), plus the tls group, whose two keys
    parse_tls_pair() checks by name."""
    src = open(os.path.join(ROOT, "engine", "config.c")).read()
    tables = {}
    for name, body in re.findall(r"static const struct key (\w+)\[\] = \{(.*?)\n\};", src, re.S):
        keys = []
        for entry in body.split("\n"):
            lit = re.search(r'"((?:[^"\\]|\\.)*)"', entry)
            if lit:
                keys.append(lit.group(1))
        tables[name] = keys
    pair = re.search(r"static int parse_tls_pair\(.*?\n\}", src, re.S).group(0)
    tables["tls"] = re.findall(r'strcmp\(config_setting_name\(\w+\), "(\w+)"\)', pair)
    assert len(tables) >= 9 and all(tables.values()), tables
    return tables


def man_tables(text):
    """{table: [key, ...]} from ringproxy.conf.5: each section names its table in a
    `.\\" table: NAME` comment; its keys are the .TP tags `\\fBkey\\fR (`."""
    tables, cur = {}, None
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r'\.\\" table: (\w+)$', line)
        if m:
            cur = m.group(1)
            assert cur not in tables, f"table {cur} documented twice"
            tables[cur] = []
        elif line.startswith(".SH") or line.startswith(".SS"):
            cur = None
        elif line == ".TP" and cur and i + 1 < len(lines):
            key = re.match(r"\\fB([a-z0-9_]+)\\fR \(", lines[i + 1])
            assert key, (cur, lines[i + 1])
            tables[cur].append(key.group(1))
    return tables


def test_man_conf_documents_every_config_key(P):
    code = config_tables()
    man = man_tables(open(os.path.join(ROOT, "man", "ringproxy.conf.5")).read())
    assert set(code) == set(man), ("tables only in config.c:", set(code) - set(man),
                                   "sections for no table:", set(man) - set(code))
    for t, keys in code.items():
        doc = man[t]
        assert len(doc) == len(set(doc)), (t, "a key documented twice", doc)
        assert set(keys) == set(doc), (t, "undocumented:", set(keys) - set(doc),
                                       "documented, not in config.c:", set(doc) - set(keys))


def test_man_conf_example_is_complete_and_valid(P):
    """The EXAMPLE of ringproxy.conf(5) sets every documented key and passes ringproxy -t
    (its /etc/ringproxy/ files made here)."""
    text = open(os.path.join(ROOT, "man", "ringproxy.conf.5")).read()
    ex = re.search(r"^\.SH EXAMPLE\n\.nf\n(.*?)^\.fi$", text, re.S | re.M).group(1)
    ex = ex.replace("\\-", "-")
    assert "\\" not in ex, "an roff escape in the example the test does not undo"
    for t, keys in man_tables(text).items():
        for k in keys:
            assert re.search(rf"\b{k} = ", ex), (t, k, "not in the example")
    d = os.path.join(P.tmp, "etc")
    os.makedirs(d)
    os.makedirs(os.path.join(P.tmp, "run"))  # pid_file's directory must exist
    ex = ex.replace("/run/ringproxy/", os.path.join(P.tmp, "run") + "/")
    paths = set(re.findall(r'"/etc/ringproxy/([\w.-]+)"', ex))
    for base in {p.rsplit(".", 1)[0] for p in paths}:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{d}/{base}.key", "-out",
                        f"{d}/{base}.pem", "-days", "2", "-subj", f"/CN={base}"],
                       check=True, capture_output=True)
    path = os.path.join(P.tmp, "example.conf")
    with open(path, "w") as f:
        # the access logs too: /var/log/ringproxy is the unit's LogsDirectory, absent here
        f.write(ex.replace("/etc/ringproxy/", d + "/").replace("/var/log/ringproxy/", d + "/"))
    r = subprocess.run([f"{BUILD}/ringproxy", "-t", "-c", path], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stdout == f"{path}: configuration is valid\n", (r.stdout,
                                                                                    r.stderr)
