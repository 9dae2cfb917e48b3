import os
import random

import pytest

from agent import cbor
from agent.log import FileLog, LogError, R_SEQ, R_FROM, R_FLAGS, R_VALUES, F_COALESCED, F_GAP
from agent.meter import Meter

SCHEMA = [("odo", "count", 0, "odo"), ("tmax", "Cel", -2, "max"), ("tmean", "Cel", -2, "mean")]


def mklog(path, cap=64 * 1024):
    return FileLog(str(path), "dev-1", capacity=cap, merge=Meter(SCHEMA).merge).open()


def fill(log, n, boot=1, start=0):
    seqs = []
    for i in range(start, start + n):
        seqs.append(log.append(7, boot, i * 60000, 1767225600 + i * 60, 3, 60000, [i * 10, 2000 + i, 1500]))
    return seqs


def test_append_reopen_keeps_everything_and_seq_grows(tmp_path):
    p = tmp_path / "log.bin"
    log = mklog(p)
    assert log.start_boot("poweron") == 1
    seqs = fill(log, 50)
    assert seqs == list(range(1, 51))
    epoch = log.epoch
    log.close()
    log = mklog(p)
    assert log.epoch == epoch
    assert log.start_boot("watchdog") == 2
    assert log.depth() == 50
    assert [r[R_SEQ] for r in log.pending(100)] == seqs
    assert log.last[R_VALUES] == [490, 2049, 1500]
    assert fill(log, 1, boot=2)[0] == 51


def test_ack_frees_prefix_and_survives_restart(tmp_path):
    p = tmp_path / "log.bin"
    log = mklog(p)
    fill(log, 30)
    assert log.ack(log.epoch, 10) == 10
    assert log.ack(log.epoch, 5) == 0            # the acked position never goes back
    assert log.ack(log.epoch ^ 1, 20) == 0       # another epoch's ack frees nothing
    assert log.ack(log.epoch, 10 ** 9) == 20     # clamped to what exists
    log.close()
    log = mklog(p)
    assert log.depth() == 0 and log.acked == 30 and log.next_seq == 31
    assert log.last[R_SEQ] == 30                 # odometers survive even when all is acked


def test_torn_tail_at_every_byte_loses_only_the_record_being_written(tmp_path):
    p = tmp_path / "log.bin"
    log = mklog(p)
    fill(log, 5)
    log.close()
    whole = p.read_bytes()
    log = mklog(p)
    fill(log, 1, start=5)
    log.close()
    full = p.read_bytes()
    for cut in range(len(whole), len(full)):
        p.write_bytes(full[:cut])
        log = mklog(p)
        assert [r[R_SEQ] for r in log.pending(100)] == [1, 2, 3, 4, 5], cut
        assert log.next_seq == 6
        log.append(7, 1, 0, 0, 0, 60000, [1, 1, 1])   # and appends land after valid data
        log.close()
        log = mklog(p)
        assert [r[R_SEQ] for r in log.pending(100)] == [1, 2, 3, 4, 5, 6], cut
        log.close()


def test_corrupt_middle_record_is_skipped_and_counted(tmp_path):
    p = tmp_path / "log.bin"
    log = mklog(p)
    fill(log, 10)
    offs = list(log._offs)
    log.close()
    data = bytearray(p.read_bytes())
    data[offs[4] + 6] ^= 0x40                    # flip a bit inside record 5
    p.write_bytes(bytes(data))
    log = mklog(p)
    assert [r[R_SEQ] for r in log.pending(100)] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert log.damaged_bytes > 0


@pytest.mark.parametrize("image", ["zeros", "ff", "random", "foreign", "empty"])
def test_garbage_images_always_open(tmp_path, image):
    p = tmp_path / "log.bin"
    rnd = random.Random(image)
    p.write_bytes({"zeros": b"\0" * 5000, "ff": b"\xff" * 5000, "empty": b"",
                   "random": bytes(rnd.getrandbits(8) for _ in range(5000)),
                   "foreign": b"SQLite format 3\0" + bytes(3000)}[image])
    log = mklog(p)
    assert log.depth() == 0
    assert log.start_boot("poweron") == 1
    fill(log, 3)
    log.close()
    log = mklog(p)
    assert [r[R_SEQ] for r in log.pending(10)] == [1, 2, 3]


def test_full_log_coalesces_before_dropping_and_never_exceeds_capacity(tmp_path):
    p = tmp_path / "log.bin"
    cap = 4096
    log = FileLog(str(p), "dev-1", capacity=cap, merge=Meter(SCHEMA).merge, max_span=8).open()
    n = 600
    fill(log, n)
    assert os.path.getsize(p) <= cap
    recs = log.pending(10000)
    # every interval is accounted for: covered by a record, merged, or flagged as a gap
    assert recs[-1][R_SEQ] == n
    covered = 0
    prev = 0
    for r in recs:
        assert r[R_FROM] == prev + 1 or r[R_FLAGS] & F_GAP
        covered += r[R_SEQ] - r[R_FROM] + 1
        prev = r[R_SEQ]
    assert log.coalesced > 0
    # odometers kept: the newest record holds the running total
    assert recs[-1][R_VALUES][0] == (n - 1) * 10
    # coalescing keeps max of maxes
    merged = [r for r in recs if r[R_FLAGS] & F_COALESCED and not r[R_FLAGS] & F_GAP]
    assert merged and all(r[R_VALUES][1] == 2000 + r[R_SEQ] - 1 for r in merged)
    if log.dropped:
        assert any(r[R_FLAGS] & F_GAP for r in recs)
    log.close()
    log = FileLog(str(p), "dev-1", capacity=cap).open()
    assert log.next_seq == n + 1


def test_record_larger_than_a_frame_is_refused_clearly(tmp_path):
    log = mklog(tmp_path / "log.bin")
    with pytest.raises(LogError, match="larger than a frame"):
        log.append(7, 1, 0, 0, 0, 60000, list(range(2000)))
    assert log.depth() == 0
    fill(log, 1)


def test_interrupted_compaction_leaves_old_file_in_force(tmp_path):
    p = tmp_path / "log.bin"
    log = mklog(p)
    fill(log, 5)
    log.close()
    (tmp_path / "log.bin.tmp").write_bytes(b"half a compaction")
    log = mklog(p)
    assert log.depth() == 5 and not (tmp_path / "log.bin.tmp").exists()


def test_fsync_failure_is_reported_not_swallowed(tmp_path, monkeypatch):
    log = mklog(tmp_path / "log.bin")
    fill(log, 2)
    real = os.fsync

    def broken(fd):
        raise OSError(5, "EIO from fsync")
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        fill(log, 1, start=2)
    monkeypatch.setattr(os, "fsync", real)
    # the log recovers: seq never repeats, and earlier records are intact
    s = fill(log, 1, start=3)[0]
    assert s >= 3
    assert [r[R_SEQ] for r in log.pending(10)][:2] == [1, 2]
    assert len({r[R_SEQ] for r in log.pending(10)}) == log.depth()
