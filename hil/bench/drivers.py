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
