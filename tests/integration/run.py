#!/usr/bin/env python3
"""Runs the integration tests: every test_* function of the test_*.py files beside this one,
each with its own processes, stopped afterwards. Prints one line per test and a closing
'N passed, N failed' line; exits 1 if any failed.

  run.py [--build DIR] [-k SUBSTRING]

A test that cannot run here raises harness.Skip(reason): it is listed as skipped, never
as passed.
"""
import argparse
import glob
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def load_tests(pattern):
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for attr in dir(mod):
            if attr.startswith("test_") and callable(getattr(mod, attr)):
                full = f"{name}.{attr}"
                if not pattern or pattern in full:
                    tests.append((full, getattr(mod, attr)))
    return tests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    os.environ["RP_BUILD"] = args.build
    import harness  # noqa: E402 - after RP_BUILD is set
    harness.BUILD = args.build
    passed = failed = skipped = 0
    failures = []
    for name, fn in load_tests(args.k):
        procs = harness.Procs()
        t0 = time.time()
        err = skip = None
        try:
            fn(procs)
        except harness.Skip as e:
            skip = str(e)
        except Exception:  # noqa: BLE001 - any failure fails the test
            err = traceback.format_exc()
        finally:
            bad = procs.stop_all()
        if not err and bad:
            err = "ringproxy exited badly: " + "\n".join(f"port {p} rc {rc}:\n{log}"
                                                         for p, rc, log in bad)
        dt = time.time() - t0
        if skip and not err:
            skipped += 1
            print(f"skip {name}: {skip}", flush=True)
        elif err:
            failed += 1
            failures.append((name, err))
            print(f"FAIL {name} ({dt:.1f}s)", flush=True)
        else:
            passed += 1
            print(f"ok   {name} ({dt:.1f}s)", flush=True)
    for name, err in failures:
        print(f"\n==== {name}\n{err}")
    print(f"\n{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
