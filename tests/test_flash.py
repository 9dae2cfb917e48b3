"""The block devices under the ring buffer: hil.nor.EmulatedNOR (NOR rules,
wear, power cuts) and agent.flash.FileFlash (preallocated file)."""
import os
import subprocess
import sys

import pytest

from agent import flash as agent_flash
from agent.flash import FileFlash
from hil.nor import EmulatedNOR, FlashError, PowerCut

from conftest import ROOT, MP

SS = 256


def nor(count=4, seed=1):
    return EmulatedNOR(sector_size=SS, sector_count=count, seed=seed)


def rd(dev, addr, n):
    b = bytearray(n)
    dev.read(addr, b)
    return bytes(b)


# --- EmulatedNOR: NOR semantics -------------------------------------------------

def test_fresh_image_is_erased_and_counters_zero():
    d = nor()
    assert d.sector_size == SS and d.sector_count == 4
    assert rd(d, 0, 4 * SS) == b"\xff" * (4 * SS)
    assert d.erase_counts == [0, 0, 0, 0]
    assert d.ops == 0
    assert d.counters() == {"reads": 1, "bytes_read": 4 * SS, "programs": 0,
                            "bytes_programmed": 0, "erases": 0, "ops": 0}


def test_program_clears_bits_and_erase_restores_ff():
    d = nor()
    d.program(10, b"\xf0\x0f\x00")
    assert rd(d, 9, 5) == b"\xff\xf0\x0f\x00\xff"
    d.program(10, b"\x30\x0f\x00")            # only clears further: allowed
    assert rd(d, 10, 3) == b"\x30\x0f\x00"
    d.program(11, memoryview(b"xx\x01")[2:])  # any buffer; 0x0f & 0x01 == 0x01
    assert rd(d, 11, 1) == b"\x01"
    d.erase(0)
    assert rd(d, 0, SS) == b"\xff" * SS
    assert d.erase_counts == [1, 0, 0, 0]
    c = d.counters()
    assert (c["programs"], c["bytes_programmed"], c["erases"], c["ops"]) == (3, 7, 1, 4)


def test_read_into_memoryview_slice():
    d = nor()
    d.program(SS + 3, b"abc")
    buf = bytearray(b"..........")
    d.read(SS + 2, memoryview(buf)[4:9])
    assert bytes(buf) == b"....\xffabc\xff."


def test_program_that_sets_a_bit_is_refused_and_changes_nothing():
    d = nor()
    d.program(0x20, b"\x00\x0f")
    with pytest.raises(FlashError) as e:
        d.program(0x20, b"\x00\x1f")
    assert "0x21" in str(e.value)
    assert isinstance(e.value, OSError)
    assert rd(d, 0x20, 2) == b"\x00\x0f"
    assert d.ops == 1 and d.programs == 1


@pytest.mark.parametrize("addr,n", [(-1, 1), (4 * SS, 1), (4 * SS - 2, 3)])
def test_out_of_range_raises_value_error(addr, n):
    d = nor()
    with pytest.raises(ValueError, match="outside"):
        d.program(addr, b"\x00" * n)
    with pytest.raises(ValueError, match="outside"):
        d.read(addr, bytearray(n))
    assert d.ops == 0


@pytest.mark.parametrize("sector", [-1, 4])
def test_erase_out_of_range(sector):
    with pytest.raises(ValueError, match="sector"):
        nor().erase(sector)


def test_program_crossing_a_sector_end_is_refused_but_reads_may_cross():
    d = nor()
    with pytest.raises(ValueError, match="crosses"):
        d.program(SS - 2, b"\x00\x00\x00")
    d.program(SS - 2, b"\x00\x00")           # up to the end: fine
    d.program(SS, b"\x00")
    assert rd(d, SS - 3, 5) == b"\xff\x00\x00\x00\xff"


def test_reset_counters_keeps_wear():
    d = nor()
    d.erase(2)
    d.program(0, b"\x00")
    d.reset_counters()
    assert d.counters() == {"reads": 0, "bytes_read": 0, "programs": 0,
                            "bytes_programmed": 0, "erases": 0, "ops": 2}
    assert d.erase_counts == [0, 0, 1, 0]


def test_load_image():
    d = nor(count=1)
    img = bytes(range(256))
    d.load_image(img)
    assert rd(d, 0, SS) == img
    with pytest.raises(ValueError):
        d.load_image(b"\x00" * 10)


# --- EmulatedNOR: power cuts ------------------------------------------------------

def cut(d, k, tear):
    d.cut_at = k
    d.tear = tear


def test_cut_before_leaves_flash_untouched_and_persists_until_reboot():
    d = nor()
    d.program(0, b"\x00")                    # op 0
    cut(d, 1, "before")
    with pytest.raises(PowerCut):
        d.program(1, b"\x00\x00")            # op 1
    assert not isinstance(PowerCut("x"), OSError)
    for f in (lambda: d.read(0, bytearray(1)), lambda: d.program(8, b"\x00"),
              lambda: d.erase(1), d.sync):
        with pytest.raises(PowerCut):
            f()
    assert d.ops == 2
    d.reboot()
    assert d.cut_at is None
    assert rd(d, 0, 3) == b"\x00\xff\xff"
    d.program(1, b"\x00")                    # op 2: no cut any more
    d.sync()
    assert d.ops == 3


def test_cut_after_applies_the_op_fully():
    d = nor()
    cut(d, 0, "after")
    with pytest.raises(PowerCut):
        d.program(5, b"\x12\x34")
    d.reboot()
    assert rd(d, 5, 2) == b"\x12\x34"
    d.program(SS, b"\x00" * SS)
    cut(d, 2, "after")
    with pytest.raises(PowerCut):
        d.erase(1)
    d.reboot()
    assert rd(d, SS, SS) == b"\xff" * SS
    assert d.erase_counts == [0, 1, 0, 0]


def test_cut_before_erase_does_not_count_wear():
    d = nor()
    d.program(0, b"\x00")
    cut(d, 1, "before")
    with pytest.raises(PowerCut):
        d.erase(0)
    d.reboot()
    assert rd(d, 0, 1) == b"\x00"
    assert d.erase_counts == [0, 0, 0, 0]
    assert d.erases == 1                     # the call was made


def test_prefix_tear_is_a_real_prefix():
    data = bytes((i * 37 + 1) & 0xFE for i in range(SS))   # no 0xFF bytes
    lengths = set()
    for seed in range(1, 41):
        d = nor(seed=seed)
        cut(d, 0, "prefix")
        with pytest.raises(PowerCut):
            d.program(0, data)
        d.reboot()
        got = rd(d, 0, SS)
        k = got.find(b"\xff")
        assert 0 <= k < SS                   # 0..len-1 bytes, never all
        assert got[:k] == data[:k]
        assert got[k:] == b"\xff" * (SS - k)
        lengths.add(k)
    assert len(lengths) > 10                 # genuinely random lengths


def test_bits_tear_only_clears_bits_the_program_would_clear():
    old = bytes((0xF0 | (i & 0x0F)) ^ 0x05 for i in range(SS))
    new = bytes(o & (0x3C ^ i) & 0xFF for i, o in enumerate(old))
    for tear in ("bits", "random"):
        partial = False
        for seed in (1, 2, 3):
            d = nor(seed=seed)
            d.program(0, old)
            cut(d, 1, tear)
            with pytest.raises(PowerCut):
                d.program(0, new)
            d.reboot()
            got = rd(d, 0, SS)
            for o, n, g in zip(old, new, got):
                assert g & o == g            # never sets a bit
                assert g & n == n            # only clears bits that new clears
            partial |= got != new and got != old
            d.program(0, new)                # completing the program is legal
            assert rd(d, 0, SS) == new
        assert partial


def test_erase_tears():
    img = bytes(range(SS))
    for tear in ("random", "prefix", "bits"):
        d = nor(seed=7)
        d.program(SS, img)
        cut(d, 1, tear)
        with pytest.raises(PowerCut):
            d.erase(1)
        d.reboot()
        got = rd(d, SS, SS)
        assert got != img and got != b"\xff" * SS
        if tear == "bits":
            assert all(g | o == g for g, o in zip(got, img))   # only sets bits
        assert rd(d, 0, SS) == b"\xff" * SS and rd(d, 2 * SS, 2 * SS) == b"\xff" * 2 * SS
        assert d.erase_counts == [0, 1, 0, 0]


def test_unknown_tear_mode():
    d = nor()
    cut(d, 0, "sideways")
    with pytest.raises(ValueError, match="sideways"):
        d.program(0, b"\x00")


def workload(d):
    for i in range(6):
        d.program(i * 40, bytes((i * 7 + j) & 0x7F for j in range(40)))
    d.erase(0)
    d.program(3, b"\x01\x02\x03")
    d.erase(2)


def run_cut(d, k, tear):
    cut(d, k, tear)
    try:
        workload(d)
        hit = False
    except PowerCut:
        hit = True
    d.reboot()
    return hit, rd(d, 0, 4 * SS), d.ops, list(d.erase_counts)


def test_snapshot_restore_round_trip_and_cut_without_replay():
    d = nor(seed=5)
    d.program(500, b"\x00\x11")
    d.erase(3)
    snap = d.snapshot()
    image0, ops0, counters0 = bytes(d.image), d.ops, d.counters()
    results = []
    for k in range(ops0, ops0 + 9):
        d.restore(snap)
        assert d.ops == ops0 and d.counters() == counters0 and d.erase_counts == [0, 0, 0, 1]
        results.append(run_cut(d, k, "random"))
    assert [r[0] for r in results] == [True] * 9
    assert [r[2] for r in results] == list(range(ops0 + 1, ops0 + 10))
    # the same cut from the same snapshot tears identically (PRNG is in the snapshot)
    d.restore(snap)
    assert run_cut(d, ops0 + 3, "random") == results[3]
    d.restore(snap)
    d.reset_counters()
    d.restore(snap)
    assert d.counters() == counters0 and bytes(d.image) == image0
    # and equals cutting a fresh device that replayed ops 0..ops0-1
    e = nor(seed=5)
    e.program(500, b"\x00\x11")
    e.erase(3)
    assert run_cut(e, ops0 + 3, "random") == results[3]


def test_same_seed_same_tears_other_seed_differs():
    runs = {}
    for seed in (3, 3, 4):
        d = nor(seed=seed)
        runs.setdefault(seed, []).append(run_cut(d, 6, "random"))
    assert runs[3][0] == runs[3][1]
    assert runs[3][0][1] != runs[4][0][1]


def test_no_cut_when_cut_at_is_none():
    d = nor()
    assert run_cut(d, None, "random")[0] is False
    assert d.ops == 9


# --- FileFlash ----------------------------------------------------------------

def test_fileflash_creates_preallocated_erased_file(tmp_path):
    p = str(tmp_path / "log.bin")
    f = FileFlash(p, sector_size=SS, sector_count=8)
    assert os.path.getsize(p) == 8 * SS
    with open(p, "rb") as h:
        assert h.read() == b"\xff" * (8 * SS)
    assert not os.path.exists(p + ".new")
    assert (f.sector_size, f.sector_count, f.erase_counts) == (SS, 8, [0] * 8)
    f.close()
    f.close()                                # idempotent


def test_fileflash_round_trip_and_reopen(tmp_path):
    p = str(tmp_path / "log.bin")
    with FileFlash(p, sector_size=SS, sector_count=4) as f:
        f.program(SS + 1, b"hello")
        f.program(3 * SS - 1, bytearray(b"\x00"))
        f.program(0, memoryview(b"abcdef")[2:4])
        assert rd(f, SS, 7) == b"\xffhello\xff"
        f.erase(0)
        assert rd(f, 0, SS) == b"\xff" * SS
        f.sync()
        assert f.counters() == {"reads": 2, "bytes_read": 7 + SS, "programs": 3,
                                "bytes_programmed": 8, "erases": 1}
        assert f.erase_counts == [1, 0, 0, 0]
        f.reset_counters()
        assert f.counters()["reads"] == 0 and f.erase_counts == [1, 0, 0, 0]
    g = FileFlash(p, sector_size=SS, sector_count=4)
    assert rd(g, SS, 7) == b"\xffhello\xff"
    assert rd(g, 3 * SS - 2, 2) == b"\xff\x00"
    buf = bytearray(6)
    g.read(SS + 1, memoryview(buf)[1:4])
    assert buf == bytearray(b"\x00hel\x00\x00")
    g.close()
    with pytest.raises(ValueError, match="closed"):
        g.read(0, bytearray(1))


def test_fileflash_range_checks(tmp_path):
    with FileFlash(str(tmp_path / "l"), sector_size=SS, sector_count=2) as f:
        with pytest.raises(ValueError, match="crosses"):
            f.program(SS - 1, b"\x00\x00")
        with pytest.raises(ValueError, match="outside"):
            f.program(2 * SS, b"\x00")
        with pytest.raises(ValueError, match="outside"):
            f.read(-1, bytearray(1))
        with pytest.raises(ValueError, match="sector"):
            f.erase(2)
        assert rd(f, SS - 1, 2) == b"\xff\xff"
        assert f.programs == 0


def test_fileflash_pads_a_truncated_file_and_refuses_to_cut_a_longer_one(tmp_path):
    p = str(tmp_path / "log.bin")
    with open(p, "wb") as h:
        h.write(b"\x00" * 1000)
    f = FileFlash(p, sector_size=SS, sector_count=8)       # truncated: padded, not refused
    assert f.padded == 8 * SS - 1000 and os.path.getsize(p) == 8 * SS
    buf = bytearray(8 * SS)
    f.read(0, buf)
    assert buf[:1000] == b"\x00" * 1000 and buf[1000:] == b"\xff" * (8 * SS - 1000)
    f.close()
    with pytest.raises(ValueError) as e:
        FileFlash(p, sector_size=SS, sector_count=4)       # longer: never cut
    assert str(8 * SS) in str(e.value) and str(4 * SS) in str(e.value)
    assert os.path.getsize(p) == 8 * SS


def test_fileflash_fsync_failure_propagates(tmp_path, monkeypatch):
    f = FileFlash(str(tmp_path / "log.bin"), sector_size=SS, sector_count=2)
    f.program(0, b"\x00")

    def broken(fd):
        raise OSError(5, "EIO")
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="EIO"):
        f.sync()
    with pytest.raises(OSError):
        FileFlash(str(tmp_path / "new.bin"), sector_size=SS, sector_count=2)
    FileFlash(str(tmp_path / "nd.bin"), sector_size=SS, sector_count=2, durable=False).sync()
    f.close()


def test_fileflash_creation_fsyncs_file_and_directory(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(agent_flash.port, "fsync_file", lambda f: calls.append("file"))
    monkeypatch.setattr(agent_flash.port, "fsync_dir", lambda p: calls.append(("dir", p)))
    p = str(tmp_path / "log.bin")
    f = FileFlash(p, sector_size=SS, sector_count=2)
    assert calls == ["file", ("dir", p)]
    f.sync()
    assert calls[-1] == "file"
    f.close()


# --- the same code under MicroPython ----------------------------------------------

SMOKE = r'''
import sys
sys.path.insert(0, sys.argv[1]) if len(sys.argv) > 1 else None
from hil.nor import EmulatedNOR, FlashError, PowerCut
from agent.flash import FileFlash

def h(b):
    s = 0
    for x in b:
        s = (s * 31 + x) & 0xFFFFFFFF
    return s

d = EmulatedNOR(sector_size=512, sector_count=8, seed=9)
buf = bytearray(512)
d.program(3, b"\x00\x12\x34")
d.read(0, buf)
print("prog", h(buf), bytes(buf[:6]))
try:
    d.program(4, b"\xff")
except FlashError as e:
    print("refused", isinstance(e, OSError), e)
try:
    d.program(510, b"\x00\x00\x00")
except ValueError as e:
    print("cross", e)
snap = d.snapshot()
for tear in ("before", "after", "prefix", "bits", "random"):
    for k in (1, 2, 3):
        d.restore(snap)
        d.tear = tear
        d.cut_at = k
        try:
            d.program(512, bytes(range(0, 200)))
            d.erase(0)
            d.program(1024 + 7, b"\x01" * 300)
            print("no cut")
        except PowerCut as e:
            print("cut", tear, k, e)
        try:
            d.read(0, buf)
        except PowerCut:
            print("still dead")
        d.reboot()
        for s in range(3):
            d.read(s * 512, buf)
            print(" ", s, h(buf))
        print(" ", d.ops, d.erase_counts, sorted(d.counters().items()))
d.reset_counters()
print(sorted(d.counters().items()))

f = FileFlash("smoke.bin", sector_size=512, sector_count=4)
f.program(700, b"tally")
f.erase(0)
f.sync()
f.close()
f = FileFlash("smoke.bin", sector_size=512, sector_count=4)
b = bytearray(9)
f.read(698, memoryview(b)[1:8])
print("file", bytes(b), f.erase_counts, sorted(f.counters().items()))
f.close()
try:
    FileFlash("smoke.bin", sector_size=512, sector_count=5)
except ValueError as e:
    print("size", e)
'''


@pytest.mark.micropython
@pytest.mark.skipif(not MP, reason="micropython unix port not installed")
def test_micropython_runs_the_same(tmp_path):
    mp = MP
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    (tmp_path / "m").mkdir()
    (tmp_path / "c").mkdir()
    m = subprocess.run([mp, "-X", "heapsize=128K", str(script)], cwd=str(tmp_path / "m"),
                       env=dict(os.environ, MICROPYPATH=ROOT), capture_output=True,
                       text=True, timeout=60)
    assert m.returncode == 0, m.stdout + m.stderr
    c = subprocess.run([sys.executable, str(script), ROOT], cwd=str(tmp_path / "c"),
                       capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    assert m.stdout == c.stdout
    assert m.stdout.count("\ncut ") == 15 and "no cut" not in m.stdout
    assert "refused True" in m.stdout and "file b'\\x00\\xff\\xfftally\\x00'" in m.stdout
