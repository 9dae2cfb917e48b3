"""`tally bench drivers`: reads/s and bus transactions per reading for every
driver (drivers_mp.ROWS) on CPython and on the MicroPython unix port."""
import os
import subprocess
import tempfile

from hil.harness import mpbuild

HERE = os.path.dirname(os.path.abspath(__file__))


def _parse_drv(text):
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "DRV":
            out[f[1]] = {"error": " ".join(f[3:])} if f[2] == "error" else \
                {"reads_per_s": int(f[2]), "transactions_per_read": int(f[3])}
    return out


def bench_drivers(n=200):
    """Reads/s (median of 5 runs of n reads) and bus transactions per reading
    for every driver in hil/bench/drivers_mp.py's table, through the emulated
    buses, on CPython and on the MicroPython unix port (compiled, as flashed)."""
    import io
    import contextlib
    from hil.bench import drivers_mp
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        drivers_mp.main(n)
    out = {"cpython": _parse_drv(buf.getvalue()), "micropython": None}
    mp = mpbuild.tool("micropython")
    if mp:
        with tempfile.TemporaryDirectory() as d:
            mpbuild.build(d, extra=[os.path.join(HERE, "drivers_mp.py")])
            r = subprocess.run([mp, "-X", "heapsize=256K", "-c",
                                "import drivers_mp; drivers_mp.main(%d)" % n],
                               cwd=d, env=dict(os.environ, MICROPYPATH=d),
                               capture_output=True, text=True, timeout=600)
            out["micropython"] = _parse_drv(r.stdout)
            if r.returncode:
                out["micropython_error"] = (r.stderr or r.stdout)[-500:]
    return out


def report(r):
    """Print bench_drivers' figures: the table `tally bench drivers` shows (--json prints the
    result itself)"""
    cp, mp = r["cpython"], r["micropython"] or {}
    print("tally bench drivers: reads through the emulated buses (median of 5 runs of 200)")
    print("  %-10s %14s %18s %14s" % ("driver", "CPython r/s", "MicroPython r/s", "bus tx/read"))
    for name in cp:
        c, m = cp[name], mp.get(name, {})
        print("  %-10s %14s %18s %14s" % (
            name, c.get("reads_per_s", c.get("error")),
            m.get("reads_per_s", m.get("error", "n/a" if not r["micropython"] else "-")),
            c.get("transactions_per_read", "-")))
    if r.get("micropython_error"):
        print("MicroPython run failed: %s" % r["micropython_error"])
    elif r["micropython"] is None:
        print("(micropython unix port not found: only CPython measured)")
    return 0
