"""Bad configuration files are refused (issue 11, point 3): `ringproxy -t -c FILE` and
`ringproxy -c FILE` both print `FILE:LINE: what is wrong` (or `FILE: what is wrong`) on
stderr and exit 1, without opening a listener. Covers a file with nothing to serve,
integers past 32 bits that libconfig alone would wrap into range, and a config path that
is a directory, missing or unreadable."""
import os
import stat
import subprocess
import tempfile

from harness import BUILD, domain_conf, free_port

NOBODY = 65534


def run(*args, timeout=10, **kw):
    return subprocess.run([f"{BUILD}/ringproxy", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def refused(path, message, **kw):
    """Both modes exit 1 with exactly `message` on stderr. A file that is wrongly accepted
    makes the serving run start a proxy, so it times out and fails the test."""
    for args in (("-t", "-c", path), ("-c", path)):
        r = run(*args, **kw)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert r.stderr == message + "\n", (args, r.stderr, message)
        assert "valid" not in r.stdout, (args, r.stdout)


def test_nothing_to_serve_is_refused(P):
    listen = f'listen = "127.0.0.1:{free_port()}";\n'
    for text in ("",
                 "# only a comment\n",
                 "workers = 2;\n",
                 listen + "workers = 2;\n",
                 listen + 'admin = { listen = "127.0.0.1:%d"; };\n' % free_port(),
                 listen + "domains = ();\nroutes = ();\n"):
        path = P.write_config(text)
        refused(path, f"{path}: nothing to serve: no domains and no routes")


def test_routes_or_domains_alone_are_enough(P):
    listen = f'listen = "127.0.0.1:{free_port()}";\n'
    for text in (listen + 'routes = ( { path_prefix = "/"; backend = "http://127.0.0.1:1"; } );\n',
                 listen + domain_conf("a.local", [1])):
        r = run("-t", "-c", P.write_config(text))
        assert r.returncode == 0, (text, r.stderr)
        assert "configuration is valid" in r.stdout, r.stdout


def test_workers_past_32_bits_is_refused(P):
    # libconfig 1.5 alone reads 4294967297 as 1 and 4294967298 as 2: both "valid" before
    listen = f'listen = "127.0.0.1:{free_port()}";\n'
    for value in ("4294967297", "4294967298", "0x100000001", "-4294967295"):
        path = P.write_config(listen + f"workers = {value};\n" + domain_conf("a.local", [1]))
        got = str(int(value, 0))
        refused(path, f"{path}:2: workers: must be 1-1024, got {got}")
    path = P.write_config(listen + "workers = 99999999999999999999;\n" + domain_conf("a.local", [1]))
    refused(path, f"{path}:2: integer 99999999999999999999 does not fit in 64 bits")


def test_max_idle_conns_past_32_bits_is_refused(P):
    # 4294967296 would be read as 0, which turned pooling off
    listen = f'listen = "127.0.0.1:{free_port()}";\n'
    path = P.write_config(listen + 'domains = (\n  { domain = "a.local";\n'
                          '    backends = ( { addr = "http://127.0.0.1:1"; } );\n'
                          '    max_idle_conns = 4294967296; } );\n')
    refused(path, f"{path}:5: domains[0].max_idle_conns: must be 0-100000, got 4294967296")


def test_directory_is_refused(P):
    refused(P.tmp, f"{P.tmp}: cannot read: Is a directory")


def test_missing_file_is_refused(P):
    path = os.path.join(P.tmp, "missing.conf")
    refused(path, f"{path}: cannot read: No such file or directory")


def test_unreadable_file_is_refused(P):
    # root reads a mode-000 file, so as root the daemon runs as nobody for this test; the
    # file sits in a directory nobody may enter, so only its own mode can stop the read
    d = tempfile.mkdtemp(dir=P.tmp)
    os.chmod(P.tmp, 0o755)
    os.chmod(d, 0o755)
    path = os.path.join(d, "secret.conf")
    with open(path, "w") as f:
        f.write(f'listen = "127.0.0.1:{free_port()}";\n' + domain_conf("a.local", [1]))
    os.chmod(path, 0)
    kw = {}
    if os.geteuid() == 0:
        kw = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        assert os.access(os.path.abspath(f"{BUILD}/ringproxy"), os.X_OK)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0
    refused(path, f"{path}: cannot read: Permission denied", **kw)
    os.chmod(path, 0o644)  # the same file, readable, is fine: the mode was the refusal
    r = run("-t", "-c", path, **kw)
    assert r.returncode == 0, r.stderr


def test_try_timeout_and_hedge(P):
    listen = f'listen = "127.0.0.1:{free_port()}";\n'
    good = P.write_config(listen + domain_conf(
        "a.local", [1], 'read_timeout = "2s"; try_timeout = "500ms"; hedge = true;'))
    r = run("-t", "-c", good)
    assert r.returncode == 0, r.stderr
    path = P.write_config(listen + 'domains = ( { domain = "a.local";\n'
                          '  backends = ( { addr = "http://127.0.0.1:1"; } );\n'
                          '  read_timeout = "2s"; try_timeout = "2s"; } );\n')
    refused(path, f'{path}:4: domains[0].try_timeout: must be shorter than read_timeout '
                  f'("2s"), got "2s"')
    path = P.write_config(listen + domain_conf("a.local", [1], "\n  hedge = true;"))
    refused(path, f"{path}:3: domains[0].hedge: needs a try_timeout (a hedge is sent when it "
                  f"fires)")


def test_workers_flag_past_32_bits_is_refused(P):
    path = P.write_config(f'listen = "127.0.0.1:{free_port()}";\n' + domain_conf("a.local", [1]))
    for value in ("4294967297", "0", "-1", "1025", "2x", ""):
        r = run("-w", value, "-t", "-c", path)
        assert r.returncode == 2, (value, r.returncode, r.stdout)
        assert "-w wants a number from 1 to 1024" in r.stderr, (value, r.stderr)
    assert run("-w", "2", "-t", "-c", path).returncode == 0
