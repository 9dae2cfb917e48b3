# The power-cut suite under MicroPython: the replay harness (no snapshots,
# for a small heap) cuts a wrapping workload at a sample of program and erase
# points with every tear, recovers, and checks the invariants; then silent
# damage (bit flips, byte errors, two-byte errors, crafted records) at a
# sample of offsets of every class, and seqs past 2^32. Both workloads swap
# parts (component events, T_EVENT, reconciled as agent/parts.py does, again
# after every recovery): at every cut point each swap is exactly one removed
# and one installed event and the slot table the parts in place; a damaged
# event record is corrected or counted, never a false swap.
from hil import powercut as P


def test_replay_power_cuts_keep_every_invariant():
    res = P.Result()
    for seed in (3, 4):
        P.run_replay(geometry=(512, 4), n=70, seed=seed, every=1, res=res, swaps=True)
    assert not res.violations, res.violations[:3]
    assert res.cuts >= 300, res.cuts
    assert res.double > 0 and res.hists > 0     # T_HIST records among the ops cut
    # T_EVENT records among them: three parts fitted and at least one swapped per
    # workload, the swaps checked after every cut
    assert res.events >= 2 * 5 and res.swaps > 3 * res.cuts, (res.events, res.swaps)
    print("cut points %d (double %d), events %d, swaps checked %d, violations %d"
          % (res.cuts, res.double, res.events, res.swaps, len(res.violations)))


def test_silent_damage_keeps_every_invariant():
    res = P.DamageResult()
    P.run_damage(geometry=(512, 6), n=120, seed=7, per_range=2, continue_every=4, res=res, swaps=True)
    assert not res.violations, res.violations[:3]
    assert res.points >= 3000 and res.corrected > 0 and res.gaps > 0, (res.points, res.gaps)
    # bits and bytes of event records damaged: every one counted by the recovery (corrected)
    assert res.classes.get("newest event", 0) >= 20, res.classes
    assert res.counted.get("newest event") == res.classes["newest event"], res.counted
    print("damage points %d (%d in event records), corrected %d, gaps %d, violations %d"
          % (res.points, res.classes["newest event"], res.corrected, res.gaps, len(res.violations)))


def test_seq_runs_past_two_to_the_32():
    from agent.log import RingLog, R_SEQ, R_FROM
    from hil.nor import EmulatedNOR
    start = 2 ** 32 - 10
    dev = EmulatedNOR(512, 4)
    log = RingLog(dev, "d", merge=P.merge, max_span=4, first_seq=start).open()
    for i in range(60):
        log.append(7, 1, i, 0, 0, 60000, [i, i])
    log.ack(log.epoch, start + 20)
    back = RingLog(dev, "d", merge=P.merge, max_span=4).open()
    assert back.next_seq == start + 60 and back.acked == start + 20
    recs = back.pending(1000)
    assert recs[0][R_FROM] <= start + 21 <= recs[0][R_SEQ] and recs[-1][R_SEQ] == start + 59
    for a, b in zip(recs, recs[1:]):
        assert b[R_FROM] == a[R_SEQ] + 1
