# A tiny test runner for the MicroPython unix port (no unittest package there:
# MicroPython's package index is out of reach, and micropython-lib's unittest
# returns its result instead of exiting). Runs every test_* function of the
# modules named on the command line (default: every tests/mp/test_*.py),
# prints one line per failure and a closing "N passed, N failed" line, and
# exits 1 when a test failed or when no test ran.
#
#   micropython -X heapsize=64K -c "import runner; runner.main(['test_core'])"
# (with MICROPYPATH pointing at the mpy-cross build; see tests/test_micropython.py)
import sys
import os
import gc


def discover():
    here = "tests/mp"
    return sorted(n[:-3] for n in os.listdir(here) if n.startswith("test_") and n.endswith(".py"))


def main(argv):
    names = argv or discover()
    passed = 0
    failed = 0
    for name in names:
        try:
            mod = __import__(name)
        except Exception as e:
            failed += 1
            print("FAIL %s (import): %s: %s" % (name, type(e).__name__, e))
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            gc.collect()
            try:
                fn()
                passed += 1
                print("ok   %s.%s" % (name, attr))
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s: %s" % (name, attr, type(e).__name__, e))
                sys.print_exception(e) if hasattr(sys, "print_exception") else None
    print("%d passed, %d failed" % (passed, failed))
    if failed or passed == 0:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
