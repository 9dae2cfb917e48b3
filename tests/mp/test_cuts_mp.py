# The power-cut suite under MicroPython: the replay harness (no snapshots,
# for a small heap) cuts a wrapping workload at a sample of program and erase
# points with every tear, recovers, and checks the invariants.
from hil import powercut as P


def test_replay_power_cuts_keep_every_invariant():
    res = P.Result()
    for seed in (3, 4):
        P.run_replay(geometry=(512, 4), n=70, seed=seed, every=1, res=res)
    assert not res.violations, res.violations[:3]
    assert res.cuts >= 300, res.cuts
    assert res.double > 0
    print("cut points %d (double %d), violations %d" % (res.cuts, res.double, len(res.violations)))
