# Core device-side tests that run under MicroPython (and CPython): meter and ring log.
from agent.log import RingLog, R_SEQ, R_VALUES, F_COALESCED, R_FLAGS
from hil.nor import EmulatedNOR
from agent.meter import Meter

SCHEMA = [("odo", "count", 0, "odo"), ("tmax", "Cel", -2, "max"), ("tmean", "Cel", -2, "mean")]


def _fresh():
    return RingLog(EmulatedNOR(512, 8), "dev-mp", merge=Meter(SCHEMA).merge).open()


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


def test_log_reopens_with_everything():
    log = _fresh()
    log.start_boot("poweron")
    for i in range(30):
        log.append(7, 1, i * 1000, 0, 0, 1000, [i, i, i])
    log.ack(log.epoch, 10)
    again = RingLog(log.dev, "dev-mp").open()
    assert [r[R_SEQ] for r in again.pending(100)] == list(range(11, 31))
    assert again.next_seq == 31 and again.boot == 1 and again.acked == 10


def test_log_overflow_coalesces_keeping_odometers():
    log = _fresh()
    for i in range(120):
        log.append(7, 1, i * 1000, 0, 0, 1000, [i * 3, i, 50])
    assert log.last[R_SEQ] == 120
    assert log.last[R_VALUES][0] == 119 * 3    # odometers kept
    assert log.coalesced > 0
    assert any(r[R_FLAGS] & F_COALESCED for r in log.pending(8))
    log.close()


def test_backoff_draws_equal_jitter_and_doubles_to_its_cap():
    from agent.backoff import Backoff
    b = Backoff(1000, 5000)
    seen = []
    for want in (1000, 2000, 4000, 5000, 5000):
        t = b.after(100)
        assert 100 + want // 2 <= t <= 100 + want, (want, t)    # half to all of the backoff
        seen.append(t)
    assert b.wait == 5000
    for _ in range(50):                           # the draw is random, within the bounds
        t = b.after(0)
        assert 2500 <= t <= 5000
        seen.append(t)
    assert len(set(seen)) > 5
    b.reset()
    assert b.wait == 1000 and 500 <= b.after(0) <= 1000
    t = b.after(0, True)                          # longest: drawn over the cap, backoff still doubles
    assert 2500 <= t <= 5000 and b.wait == 4000
