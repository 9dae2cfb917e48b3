"""`tally bench soak`: the chaos soak (its runner is hil/harness/soak.py, with
the CPython harness it drives) and the printer of its figures."""
from hil.harness.soak import soak as bench_soak  # noqa: F401


def report(r):
    """Print the soak's figures: the table `tally bench soak` shows (--json prints the
    result itself)"""
    print("tally bench soak: %d devices at %gx time, %d collector workers, %gs of faults"
          % (r["devices"], r["speed"], r["workers"], r["seconds"]))
    for k, n in sorted(r["faults"].items()):
        print("  fault %-16s %d" % (k, n))
    print("  worker kills inside a transaction  %d of %d"
          % (r["worker_kills_inside_a_transaction"], r["faults"]["worker_kill"]))
    print("  duplicates injected    %d" % r["duplicates_injected"])
    print("  records logged         %d" % r["records"])
    print("  lost                   %d" % r["lost"])
    print("  counted twice          %d" % r["counted_twice"])
    print("  duplicates ignored     %d" % r["duplicates_ignored"])
    for d in r["per_device"]:
        print("  %s  boots %d  logged %d  in ledger %d  gaps %d (coalesced %d, dropped %d)  %s"
              % (d["device_id"], d["boots"], d["records_logged"], d["intervals_in_ledger"],
                 d["gaps_unexplained"], d["gap_records_coalesced"], d["gap_records_dropped"],
                 "reconciled" if d["reconciled"] else "NOT reconciled: %s" % d["mismatches"]))
    print("reconciled: %s" % ("yes" if r["reconciled"] else "NO"))
    return 0 if r["reconciled"] else 1
