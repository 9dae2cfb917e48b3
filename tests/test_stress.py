"""Stress histograms from device to ledger (issue 15): the snapshots a running
agent sends land in the `stress` table exactly once through lost and
replayed batches, match what the device counted, and bad histogram input is
a counted event that never stops the records being booked. The device side
(bins, dew point, power cut, ext) is tests/mp/test_stress_mp.py, which runs
here and under MicroPython."""
import json

import cbor2

from agent import batch, cbor, cose
from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector import stress as cs
from agent.collector.store import Collector
from agent.log import RingLog
from agent import stress as S
from agent.stress import COUNT, DEFS
from boards.emulated import Emulation
from hil.loopback import Hub
from hil.nor import EmulatedNOR

KEY = bytes(range(16))
DEV = "st-9"


def _fleet(loss=0.0, profile="compressor", seed=3, db=":memory:"):
    col = Collector(db, keys={DEV: KEY}.get)
    hub = Hub(col, loss=loss, seed=seed)
    seen = []
    real = hub.deliver

    def deliver(topic, payload):
        seen.append((topic, bytes(payload)))
        return real(topic, payload)
    hub.deliver = deliver
    clock = VirtualClock()
    dev = EmulatedNOR(4096, 32)
    ag = Agent(DEV, Emulation(clock, seed=seed, profile=profile).channels(), RingLog(dev, DEV), clock,
               transport=hub.transport(DEV), interval_ms=60000, sample_ms=5000,
               uplink_opts={"key": KEY, "ack_timeout_ms": 60000, "max_latency_ms": 900000},
               stress={"every": 30}).start()
    return col, hub, clock, ag, seen, dev


def _run(ag, clock, minutes):
    for _ in range(minutes * 12):
        clock.advance_ms(5000)
        ag.tick()


def _rows(col):
    return {(r[0], r[1], r[2]): json.loads(r[3]) for r in col._b.execute(
        "SELECT epoch, seq, hist, counts FROM stress WHERE device=?", (DEV,))}


def _device_at(ag, snap):
    """The device's snapshot as {name: counts}."""
    st = ag.stress
    out = {}
    for h in st.on:
        o = st.off[h]
        out[DEFS[h][0]] = [int.from_bytes(snap[2][4 * j:4 * j + 4], "little")
                           for j in range(o, o + DEFS[h][4])]
    return out


def _full_at(rows, epoch, seq, names):
    """Every histogram at seq, from the newest row at or before it."""
    out = {}
    for n in names:
        best = max((k for k in rows if k[0] == epoch and k[2] == n and k[1] <= seq), default=None)
        out[n] = rows[best] if best else None
    return out


def test_snapshots_land_exactly_once_through_loss_and_replay():
    _exactly_once(_fleet(loss=0.25), 8 * 60)


def test_snapshots_land_exactly_once_in_postgresql(postgres):
    _exactly_once(_fleet(loss=0.25, db=postgres), 3 * 60)


def _exactly_once(fleet, minutes):
    col, hub, clock, ag, seen, _ = fleet
    _run(ag, clock, minutes)
    hub.loss = 0
    ag.shutdown(within_ms=120000)
    assert hub.dropped > 0 and ag.log.depth() == 0
    rows = _rows(col)
    assert rows
    names = [d[0] for d in ag.stress.defs()]
    # the newest acked snapshot, rebuilt from the ledger's rows, is what the device has
    snap = ag.log.hist
    assert snap[0] <= ag.log.acked
    led = _full_at(rows, ag.log.epoch, snap[0], names)
    assert led == _device_at(ag, snap)
    # counts never go down from one stored snapshot to the next
    for n in names:
        seqs = sorted(k[1] for k in rows if k[2] == n)
        kind = DEFS[[d[0] for d in DEFS].index(n)][1]
        if kind == COUNT:
            for a, b in zip(seqs, seqs[1:]):
                assert all(x <= y for x, y in zip(rows[(ag.log.epoch, a, n)], rows[(ag.log.epoch, b, n)]))
    # every data message again, in reverse order: nothing new, nothing different
    before = col._b.execute("SELECT COUNT(*) FROM stress").fetchone()[0]
    for topic, payload in reversed(seen):
        if topic.endswith("/data"):
            col.handle(topic, payload)
    assert col._b.execute("SELECT COUNT(*) FROM stress").fetchone()[0] == before
    assert _rows(col) == rows
    for c in ("hist_conflicts", "hist_decreasing", "hist_malformed", "hist_nobase"):
        assert col.counter(DEV, c) == 0, c


def test_a_power_cut_and_reboot_keep_the_ledger_monotonic():
    col, hub, clock, ag, seen, dev = _fleet()
    _run(ag, clock, 3 * 60 + 7)                        # cut mid-batch: no clean close
    hub.loss = 0
    ag2 = Agent(DEV, Emulation(clock, seed=4).channels(), RingLog(dev, DEV), clock,
                transport=hub.transport(DEV), interval_ms=60000, sample_ms=5000,
                uplink_opts={"key": KEY, "ack_timeout_ms": 60000, "max_latency_ms": 900000},
               stress={"every": 30}).start()
    assert ag2.stress._st[S._FLAGS] & S.F_FULL           # the first snapshot after a boot is whole
    _run(ag2, clock, 3 * 60)
    ag2.shutdown(within_ms=120000)
    assert ag2.log.depth() == 0
    rows = _rows(col)
    assert col.counter(DEV, "hist_decreasing") == 0 and col.counter(DEV, "hist_nobase") == 0
    names = [d[0] for d in ag2.stress.defs()]
    snap = ag2.log.hist
    assert _full_at(rows, ag2.log.epoch, snap[0], names) == _device_at(ag2, snap)


def _msg(ext_value, seq, col, clock_ag):
    """A real batch of the running agent's next records with our own ext value."""
    ag = clock_ag
    recs = batch.take_run(ag.log.pending(5, 0), 5)
    return batch.encode(recs, ext=[(1, cbor.dumps(ext_value))])


def test_bad_histogram_input_is_counted_and_the_records_are_still_booked():
    col = Collector(keys={DEV: KEY}.get)
    hub = Hub(col)
    clock = VirtualClock()
    ag = Agent(DEV, Emulation(clock, seed=3).channels(), RingLog(EmulatedNOR(4096, 32), DEV), clock,
               transport=None, interval_ms=60000, sample_ms=5000).start()
    _run(ag, clock, 12)
    up = __import__("agent.sync", fromlist=["Uplink"]).Uplink(DEV, hub.transport(DEV), ag.log, ag.meter,
                                                              key=KEY)
    up.stress = ag.stress
    col.handle("tally/v1/%s/birth" % DEV, up.birth())
    st = ag.stress
    v = st.version
    n = len(st.defs())
    t_idx = [d[0] for d in st.defs()].index("t_s")

    def send(first, ext_value):
        recs = [r for r in ag.log.pending(20, 0) if first <= r[0] < first + 3]
        payload = batch.encode(recs, ext=[(1, cbor.dumps(ext_value))])
        col.handle("tally/v1/%s/data" % DEV, cose.mac0(payload, KEY, DEV))
        return [r[0] for r in recs]

    zero = {k: [0] * d[4] for k, d in enumerate(st.defs())}
    good = dict(zero)
    good[t_idx] = [0] * 5 + [100] + [0] * 10
    send(1, [v, 2, 0, good])                                   # whole, at seq 2
    assert _rows(col)[(ag.log.epoch, 2, "t_s")][5] == 100
    cases = [
        ([v, 9, 0, good], "hist_malformed"),                    # seq not in the batch (4..6)
        ([v, 5, 0, {t_idx: [1, 2]}], "hist_malformed"),          # wrong number of bins
        ([v, 5, 0, {n: [0]}], "hist_malformed"),                 # no such histogram
        ([v, 5, 6, good], "hist_malformed"),                     # base not before seq
        ([v, 5, 0, {t_idx: {99: 1}}], "hist_malformed"),         # no such bin
        ([v, 5, 0, {t_idx: [-1] * 16}], "hist_malformed"),       # negative count
        ("x", "hist_malformed"),
        ([v ^ 1, 5, 0, good], "hist_unknown_version"),
        ([v, 5, 2, {t_idx: {5: 90}}], "hist_decreasing"),        # 100 -> 90: an alarm, not stored
    ]
    for ext_value, counter in cases:
        was = col.counter(DEV, counter)
        seqs = send(4, ext_value)
        assert col.counter(DEV, counter) == was + 1, (ext_value, counter)
        assert (ag.log.epoch, 5, "t_s") not in _rows(col)
    assert seqs == [4, 5, 6]
    booked = [r[0] for r in col._b.execute("SELECT seq FROM records WHERE device_id=? ORDER BY seq", (DEV,))]
    assert booked == [1, 2, 3, 4, 5, 6]                          # the records went in all the same
    alarms = [r[0] for r in col._b.execute("SELECT what FROM alarms WHERE device_id=?", (DEV,))]
    assert any("t_s counts go down" in a for a in alarms)
    # a delta across the refused snapshot is not completed from the older row
    send(7, [v, 8, 5, {t_idx: {6: 50}}])
    assert col.counter(DEV, "hist_nobase") == 1 and (ag.log.epoch, 8, "t_s") not in _rows(col)
    # a good delta on the stored base (refused ones between do not matter):
    # the changed bin over the stored row
    send(10, [v, 11, 2, {t_idx: {6: 50}}])
    assert _rows(col)[(ag.log.epoch, 11, "t_s")][5:7] == [100, 50]
    # a birth with a broken hist is taken without it, and counted
    b = cbor2.loads(cose.verify(up.birth(), KEY, DEV))
    b["hist"]["defs"][0][4] = 0
    col.handle("tally/v1/%s/birth" % DEV, cose.mac0(cbor2.dumps(b), KEY, DEV))
    assert col.counter(DEV, "hist_bad_defs") == 1 and col.counter(DEV, "births") == 0
    assert col._b.execute("SELECT COUNT(*) FROM births").fetchone()[0] == 2


def test_simulated_assets_show_their_stress_in_the_report():
    col, hub, clock, ag, seen, _ = _fleet(profile="pump", seed=5)
    _run(ag, clock, 26 * 60)
    ag.uplink.flush = True
    _run(ag, clock, 10)
    lines = cs.report(col, DEV)
    text = "\n".join(lines)
    assert "vib_s" in text and "load_s" in text and "rh_s" in text
    vib = [r for r in cs.latest(col, DEV) if r[0] == "vib"][0]
    base, peak = vib[-1]
    assert 0 < base < peak                 # the baseline from the first hour, the worst since


def test_inspect_shows_the_log_snapshots_and_a_batch_ext(tmp_path, capsys):
    from agent.cli import main
    col, hub, clock, ag, seen, dev = _fleet()
    _run(ag, clock, 70)
    img = tmp_path / "log.bin"
    img.write_bytes(bytes(dev.image))
    assert main(["inspect", str(img)]) == 0
    out = capsys.readouterr().out
    snap = ag.log.hist
    assert "HIST    seq=%d version=%08x %d counts" % (snap[0], snap[1], ag.stress.n) in out
    data = [p for t, p in seen if t.endswith("/data")]
    withext = [p for p in data if cbor2.loads(cose.verify(p, KEY, DEV))[-1].__class__ is dict]
    assert withext
    f = tmp_path / "data.cbor"
    f.write_bytes(withext[0])
    assert main(["inspect", str(f), "--key", KEY.hex(), "--device", DEV]) == 0
    out = capsys.readouterr().out
    assert "data batch:" in out and "ext 1, stress snapshot: version %08x" % ag.stress.version in out


def test_simulate_reports_stress_that_matches_the_devices():
    from hil.harness.sim import simulate
    rep = simulate(devices=1, days=0.25, profile="compressor", seed=2)
    st = rep["stress"]["sim-001"]
    assert st["device_matches"] is True
    assert any(line.split()[0] == "t_s" for line in st["lines"])
    assert sum(st["hists"]["t_s"]["counts"]) > 0
