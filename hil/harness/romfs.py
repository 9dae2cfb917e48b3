"""A ROMFS image of a directory (CPython only): the read-only filesystem
MicroPython (1.25 and later) mounts from a memory-mapped flash partition and
imports .mpy files from *in place*, so a module's bytecode, constants and
strings stay in flash instead of being copied to the heap.

Format (MicroPython's VfsRom): the header bytes d2 cd 31, the length of the
top-level records, then records. Every number is an unsigned varint written
most significant group first, 7 bits a byte, the high bit set on all but the
last. A record is kind, payload length, payload:
  4 directory: name length, name, then the directory's records
  5 file:      name length, name, then a record of kind 2 holding the data
  2 data (verbatim)
The image's length is kept even by writing the top length with a leading
0x80 (a zero group) when it would be odd."""
import os

HEADER = b"\xd2\xcd\x31"
DIRECTORY, FILE, DATA = 4, 5, 2


def uint(n):
    out = bytearray([n & 0x7F])
    n >>= 7
    while n:
        out.insert(0, 0x80 | (n & 0x7F))
        n >>= 7
    return bytes(out)


def record(kind, payload):
    return uint(kind) + uint(len(payload)) + payload


def _named(name, rest):
    b = name.encode("ascii")
    return uint(len(b)) + b + rest


def _tree(path):
    body = bytearray()
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.isdir(p):
            body += record(DIRECTORY, _named(name, _tree(p)))
        else:
            with open(p, "rb") as f:
                body += record(FILE, _named(name, record(DATA, f.read())))
    return bytes(body)


def image(path):
    """The ROMFS image (bytes) of the directory at path, files as they are."""
    body = _tree(path)
    n = uint(len(body))
    if (len(HEADER) + len(n) + len(body)) % 2:
        n = b"\x80" + n
    return HEADER + n + body
