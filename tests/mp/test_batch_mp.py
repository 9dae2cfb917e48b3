# Batch encoding under MicroPython (and CPython): what the device sends
# decodes to exactly what it logged.
from agent.log import RingLog, R_VALUES
from agent import batch, cbor
from hil.nor import EmulatedNOR


def _fresh():
    return RingLog(EmulatedNOR(512, 8), "dev-mp").open()


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
