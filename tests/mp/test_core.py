# Core device-side tests that run under MicroPython (and CPython).
import os
from agent import cbor
from agent.log import FileLog, R_SEQ, R_VALUES, F_COALESCED, R_FLAGS
from agent.meter import Meter
from agent import batch

TMP = "/tmp/tally-mp-test-%d.log" % (os.getpid() if hasattr(os, "getpid") else 0)
SCHEMA = [("odo", "count", 0, "odo"), ("tmax", "Cel", -2, "max"), ("tmean", "Cel", -2, "mean")]


def _fresh():
    for p in (TMP, TMP + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass
    return FileLog(TMP, "dev-mp", capacity=8192, merge=Meter(SCHEMA).merge).open()


def test_cbor_vectors():
    vecs = [(0, "00"), (24, "1818"), (1000000, "1a000f4240"), (-100, "3863"),
            (18446744073709551615, "1bffffffffffffffff"), ([1, [2, 3]], "8201820203"),
            ({"a": 1}, "a1616101"), (b"\x01\x02", "420102"), (None, "f6")]
    for v, h in vecs:
        got = "".join("%02x" % b for b in cbor.dumps(v))
        assert got == h, (v, got, h)
        assert cbor.loads(cbor.dumps(v)) == v


def test_cbor_rejects_garbage():
    for bad in (b"", b"\x18", b"\x83\x01", b"\x01\x02"):
        try:
            cbor.loads(bad)
        except cbor.CBORError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_meter_odometers_and_gauges():
    m = Meter(SCHEMA)
    m.add(0, 5)
    m.observe(1, 100)
    m.observe(1, 300)
    m.observe(2, 10)
    m.observe(2, 21)
    assert m.close() == [5, 300, 16]
    m.add(0, 1)
    assert m.close() == [6, 300, 16]   # no samples: gauges repeat, odometer carries on


def test_log_survives_torn_tail():
    log = _fresh()
    log.start_boot("poweron")
    for i in range(5):
        log.append(7, 1, i * 1000, 0, 0, 1000, [i, i, i])
    log.close()
    f = open(TMP, "rb")
    data = f.read()
    f.close()
    for cut in range(len(data) - 20, len(data)):
        f = open(TMP, "wb")
        f.write(data[:cut])
        f.close()
        log = FileLog(TMP, "dev-mp", capacity=8192).open()
        seqs = [r[R_SEQ] for r in log.pending(10)]
        assert seqs == [1, 2, 3, 4], (cut, seqs)
        log.close()


def test_log_overflow_coalesces_keeping_odometers():
    log = _fresh()
    for i in range(400):
        log.append(7, 1, i * 1000, 0, 0, 1000, [i * 3, i, 50])
    assert log.last[R_SEQ] == 400
    assert log.last[R_VALUES][0] == 399 * 3    # odometers kept
    assert log.coalesced > 0
    assert any(r[R_FLAGS] & F_COALESCED for r in log.pending(8))
    log.close()


def test_batch_round_trip():
    log = _fresh()
    for i in range(10):
        log.append(7, 1, i * 60000 + (i % 3), 1767225600 + i * 60, 3, 60000, [i * 3, 0, -i])
    recs = log.pending(60)
    run = batch.take_run(recs)
    assert len(run) == 10
    out = batch.decode(cbor.loads(batch.encode(run)))
    assert [r["values"] for r in out] == [r[R_VALUES] for r in recs]
    assert [r["uptime_ms"] for r in out] == [r[6] for r in recs]
    log.close()
