"""The ROMFS image tally flash writes (hil/harness/romfs.py, built by mpremote's
romfs module) against MicroPython's own reader: the
image mounts under the unix port's VfsRom, lists and reads back every file
byte for byte, and modules imported from it leave their code out of the heap."""
import hashlib
import os
import subprocess

import pytest

from hil.harness import romboard, romfs
from conftest import MP, bundle  # noqa: F401 (bundle: the compiled fixture)

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]


def _tree(root):
    files = {"a.bin": b"", "b.txt": b"x", "c.dat": bytes(range(256)) * 3,
             "d/e.mpy": os.urandom(1000), "d/f/g.bin": os.urandom(129), "d/f/h": b"odd"}
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return files


LIST = """
import hashlib, binascii
def walk(d):
    for name in sorted(os.listdir(d)):
        p = d + "/" + name
        if os.stat(p)[0] & 0x4000:
            walk(p)
        else:
            with open(p, "rb") as f:
                print(p[5:], binascii.hexlify(hashlib.sha256(f.read()).digest()).decode())
walk("/rom")
"""


def test_micropython_reads_back_every_file_of_our_image(tmp_path):
    src = tmp_path / "src"
    files = _tree(str(src))
    img = romfs.image(str(src))
    assert img[:3] == romfs.HEADER and len(img) % 2 == 0
    (tmp_path / "t.romfs").write_bytes(img)
    r = subprocess.run(romboard.argv(str(tmp_path / "t.romfs"), LIST, "64K", str(tmp_path)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


HEAP_AFTER = """
import gc
gc.collect()
before = gc.mem_alloc()
import agent.sync, agent.log, agent.batch, agent.channels, drivers.modbus
gc.collect()
print("CODE", gc.mem_alloc() - before, sys.path[0])
"""


def _code_heap(cmd, cwd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd,
                       env=dict(os.environ, MICROPYPATH=cwd))
    assert r.returncode == 0, r.stdout + r.stderr
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("CODE ")]
    return int(line.split()[1]), line.split()[2]


def test_modules_imported_from_the_image_keep_their_code_out_of_the_heap(bundle, tmp_path):
    img = tmp_path / "b.romfs"
    img.write_bytes(romfs.image(bundle))
    rom, where = _code_heap(romboard.argv(str(img), HEAP_AFTER, "256K", str(tmp_path)), bundle)
    assert where == "/rom"
    (tmp_path / "files.py").write_text("import sys\n" + HEAP_AFTER)
    files, _ = _code_heap([MP, "-X", "heapsize=256K", str(tmp_path / "files.py")], bundle)
    print("heap for the code: %d B from files, %d B from ROMFS" % (files, rom))
    assert rom < files * 0.75
