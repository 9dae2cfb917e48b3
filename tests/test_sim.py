"""End to end on the virtual clock: emulated sensors -> drivers -> agent ->
log -> uplink -> collector -> ledger, reconciled against device odometers."""
import pytest

from hil.harness.sim import simulate


def _ok(rep):
    bad = [(d["device_id"], {k: v for k, v in d["odometers"].items() if not v["ok"]},
            d["gaps"], d["intervals_covered"], d["records_logged"], d["unacked"])
           for d in rep["devices"] if not d["reconciled"]]
    assert rep["reconciled"], bad


def test_fleet_reconciles_embedded():
    rep = simulate(devices=2, days=1)
    _ok(rep)
    for d in rep["devices"]:
        assert d["records_logged"] == 1440 and d["records_in_ledger"] == 1440
        assert d["duplicates_ignored"] == 0 and d["gaps"] == 0
        o = d["odometers"]
        # the compressor ran and was metered by every sensor
        assert o["run_time"]["device"] > 2 * 3600 and o["cycles"]["device"] > 20
        assert o["energy"]["device"] > 0 and o["mains_energy"]["device"] > 0 and o["air"]["device"] > 0
        # mains energy (meter register deltas) is consistent with DC energy through an 88% PSU + standby
        dc_wh = o["energy"]["device"] / 1000
        assert dc_wh / 0.88 < o["mains_energy"]["device"] < dc_wh / 0.88 + 4 * 24 + 2
    # the ledger's days add up to the totals
    for dev, days in rep["ledger"].items():
        d = next(x for x in rep["devices"] if x["device_id"] == dev)
        assert sum(u["run_time"] for u in days.values()) == d["odometers"]["run_time"]["ledger"]


def test_lost_messages_and_acks_are_retried_and_deduped():
    rep = simulate(devices=2, days=0.5, loss=0.2, seed=3)
    _ok(rep)
    assert rep["messages_lost"] > 0
    assert sum(d["republished"] for d in rep["devices"]) > 0
    assert sum(d["duplicates_ignored"] for d in rep["devices"]) > 0


def test_reboots_keep_odometers_and_boot_counter():
    rep = simulate(devices=2, days=1, reboot_every_h=6, seed=5)
    _ok(rep)
    for d in rep["devices"]:
        assert d["boots"] >= 3


def test_small_log_offline_backlog_coalesces_and_still_reconciles():
    # 12 h offline with 8 KiB of log: the backlog (~720 records) cannot fit,
    # so the oldest intervals are coalesced; odometers survive, so the totals
    # still match and every interval is accounted for.
    rep = simulate(devices=1, days=1, outage_h=12, log_kib=8, seed=7)
    _ok(rep)
    d = rep["devices"][0]
    assert d["coalesced"] > 100
    assert d["records_in_ledger"] < d["records_logged"] == d["intervals_covered"]


def test_store_and_forward_through_an_outage():
    rep = simulate(devices=2, days=1, outage_h=6, seed=11)
    _ok(rep)
    assert all(d["coalesced"] == 0 and d["records_in_ledger"] == 1440 for d in rep["devices"])


def test_simulating_twice_into_one_ledger_is_refused_and_never_doubles_the_bill(tmp_path, capsys):
    from agent.cli import main
    from agent.collector.store import Collector
    db = str(tmp_path / "ledger.sqlite")
    assert main(["simulate", "--devices", "2", "--days", "0.1", "--db", db, "-q", "--json"]) == 0
    capsys.readouterr()
    col = Collector(db, keys=lambda d: None)
    before = col.ledger()
    col.close()
    assert sorted(before) == ["sim-001", "sim-002"]
    assert main(["simulate", "--devices", "3", "--days", "0.1", "--db", db, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds sim-001, sim-002" in err, err
    col = Collector(db, keys=lambda d: None)
    assert col.ledger() == before                 # not one record more
    col.close()
