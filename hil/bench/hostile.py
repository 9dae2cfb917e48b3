"""`tally bench hostile`: hostile messages through the collector (the
catalogue and the runner are hil/harness/hostile.py, which tests/test_hostile.py
also drives) and the printer of its figures."""
from hil.bench import print_goals
from hil.harness.hostile import bench_hostile  # noqa: F401


def report(r):
    """Print bench_hostile's figures: the table `tally bench hostile` shows (--json prints the
    result itself)"""
    print("tally bench hostile: %d hostile messages through Collector.handle, SQLite, seed %d, %.0f s"
          % (r["tried"], r["seed"], r["seconds"]))
    print("  %-10s %8s %8s %8s %10s %10s %10s" % ("class", "tried", "signed", "escapes", "median ms",
                                                   "max ms", "max MB"))
    for cls, c in r["per_class"].items():
        print("  %-10s %8d %8d %8d %10.3f %10.1f %10.2f" % (cls, c["tried"], c["authenticated"], c["escapes"],
                                                          c["median_ms_per_message"], c["max_ms_per_message"],
                                                          c["max_mb_per_message"]))
    rows = [("escapes", r["escapes"]), ("rows per unauthenticated message", r["rows_per_unauthenticated"]),
            ("alarm rows per message (most)", r["alarm_rows_per_message"]),
            ("time per message, median / max", "%.3f / %.1f ms" % (r["median_ms_per_message"],
                                                                   r["max_ms_per_message"])),
            ("CPU per message, median / max", "%.3f / %.1f ms" % (r["median_cpu_ms_per_message"],
                                                                 r["max_cpu_ms_per_message"])),
            ("time per message of the median size (%d B) or less, max" % r["median_message_bytes"],
             "%.1f ms (CPU %.1f ms)" % (r["max_ms_per_message_up_to_median_size"],
                                        r["max_cpu_ms_per_message_up_to_median_size"])),
            ("memory per message, max (tracemalloc sample, RSS)", "%.2f MB" % r["max_mb_per_message"]),
            ("peak RSS growth over rest", "%.1f MB" % r["peak_rss_growth_mb"]),
            ("honest device's batches acked", r["honest_batches_acked"]),
            ("slowest", r["slowest"]), ("largest", r["largest"])]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("  %-*s  %s" % (w, k, v))
    for e in r["escape_examples"][:10]:
        print("  escape: " + e)
    for e in r["unauthenticated_row_examples"][:5] + r["alarm_examples"][:5]:
        print("  " + e)
    print("  (how: %s)" % r["method"])
    print_goals('goals (issue 11):', r["goals"])
    return 0
