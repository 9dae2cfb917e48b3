"""littlefs-style proof: cut the power at every program and every erase of a
workload that wraps the ring at least three times, with acks, coalescing and
overflow, tearing each op every possible way, and check all invariants after
each recovery (and after a second cut in a sample)."""
from hil import powercut as P


def test_every_cut_point_keeps_every_invariant():
    res = P.Result()
    for seed in (1, 2, 3):
        P.run_snapshots(geometry=(512, 8), n=300, seed=seed, res=res)
    assert res.violations == []
    assert res.cuts >= 10000
    assert res.double >= 1000
    assert res.wraps >= 3 * 3
    assert res.coalesced > 0 and res.dropped > 0
    assert res.hists >= 30                 # stress snapshots (T_HIST) among the ops cut
    print("cut points %d (double %d), ops %d, violations %d"
          % (res.cuts, res.double, res.ops, len(res.violations)))


def test_replay_harness_agrees_on_a_sample():
    # the harness MicroPython runs (replay, no snapshots) on CPython too
    res = P.run_replay(geometry=(512, 4), n=80, seed=5, every=7)
    assert res.violations == [] and res.cuts > 20


def test_silent_damage_at_every_offset_class_loses_nothing_and_never_rewinds():
    # one damaged bit or byte at a time (a sample of offsets per range) in
    # every offset class of the newest, older and compacted sectors, plus two
    # bytes in one record and crafted records: the invariants, no intact
    # record lost, seq/acked/odometers never back
    res = P.DamageResult()
    for seed in (5, 6):
        P.run_damage(geometry=(512, 8), n=300, seed=seed, per_range=6, res=res)
    assert res.violations == []
    assert res.points >= 10000
    for pos in ("newest", "older", "compacted"):
        for cls in ("header", "state", "type", "length", "body", "crc", "two-bytes", "free"):
            assert res.classes.get(pos + " " + cls, 0) > 0, (pos, cls)
    assert res.classes["newest ack"] > 0 and res.classes["crafted"] > 0
    assert res.classes["newest hist"] > 0              # a stress snapshot (T_HIST) damaged too
    assert res.corrected > 1000 and res.gaps > 0      # both the repair and the gap path ran
    print("damage points %d, corrected %d, gap records %d, violations %d"
          % (res.points, res.corrected, res.gaps, len(res.violations)))
