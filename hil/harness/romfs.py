"""A ROMFS image of a directory (CPython only), built by mpremote's own romfs
module: the read-only filesystem MicroPython (1.25 and later) mounts from a
memory-mapped flash partition and imports .mpy files from *in place*, so a
module's bytecode, constants and strings stay in flash instead of being
copied to the heap. The format is described in docs/firmware.md and checked
against MicroPython's VfsRom by tests/test_romfs.py."""
import contextlib
import io

from mpremote.romfs import VfsRomWriter, copy_recursively

HEADER = VfsRomWriter.ROMFS_HEADER


def image(path):
    """The ROMFS image (bytes) of the directory at path, files as they are
    (no compiling). mpremote's make_romfs would also do this, but it prints
    the tree and exits the process on an unreadable file; here the tree is
    swallowed and an OSError reaches the caller, which names the path."""
    vfs = VfsRomWriter()
    with contextlib.redirect_stdout(io.StringIO()):
        copy_recursively(vfs, path.rstrip("/") + "/", "", False)
    return vfs.finalise()
