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
    print("cut points %d (double %d), ops %d, violations %d"
          % (res.cuts, res.double, res.ops, len(res.violations)))


def test_replay_harness_agrees_on_a_sample():
    # the harness MicroPython runs (replay, no snapshots) on CPython too
    res = P.run_replay(geometry=(512, 4), n=80, seed=5, every=7)
    assert res.violations == [] and res.cuts > 20
