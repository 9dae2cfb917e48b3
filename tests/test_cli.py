"""The `tally` command line (`python -m agent.cli`) run as a subprocess, as a
user runs it: simulate, run on an emulated board over a pty, inspect, collect
and the bench commands print what they promise, and bad arguments or a bad
config end in one line naming the problem with exit 2, never a traceback."""
import json

import pytest

from conftest import ROOT, tally

def test_simulate_json_reconciles():
    r = tally("simulate", "--devices", "3", "--days", "2", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["reconciled"] is True
    assert len(rep["devices"]) == 3
    assert all(len(days) == 2 for days in rep["ledger"].values())


def test_simulate_text_shows_ledger_and_reconciliation():
    r = tally("simulate", "--devices", "1", "--days", "0.25", "--loss", "0.1", "-q")
    assert r.returncode == 0, r.stderr
    assert "Ledger: usage per device and UTC day" in r.stdout
    assert "sim-001  2026-01-01" in r.stdout
    assert "All devices reconcile." in r.stdout


def test_simulate_rejects_bad_arguments_clearly():
    r = tally("simulate", "--devices", "0")
    assert r.returncode == 2 and "at least one device" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("body,needle", [
    ('intervall_s = 60\n', "unknown key 'intervall_s'"),
    ('interval_s = "sixty"\n', "key 'interval_s' must be an integer"),
    ('board = "esp8266"\n', "key 'board' must be one of"),
    ('[ina219]\nshunt = 100\n', "unknown key 'ina219.shunt'"),
    ('interval_s = 60\nsample_ms = 70000\n', "key 'sample_ms'"),
    ('this is not toml', "not valid TOML"),
    ('broker = "mqtt://127.0.0.1:1883"\n', "key 'key' is required with a broker"),
    ('key = "xyz"\n', "key 'key' must be the device's MAC key"),
])
def test_run_stops_at_start_on_a_bad_config_naming_the_key(tmp_path, body, needle):
    cfg = tmp_path / "tally.toml"
    cfg.write_text(body)
    r = tally("run", "--config", str(cfg), "--duration", "1")
    assert r.returncode == 2
    assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_run_emulated_board_in_real_time_over_a_pty_then_inspect(tmp_path):
    log = tmp_path / "log.bin"
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "bench-1"\ninterval_s = 1\nsample_ms = 100\nlog_path = "%s"\n'
                   'serial = "pty"\n' % log)
    r = tally("run", "--board", "emulated", "--config", str(cfg), "--duration", "3.5")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("interval ")]
    assert len(lines) >= 2
    assert "errors=0" in lines[-1]
    r2 = tally("run", "--board", "emulated", "--config", str(cfg), "--duration", "1.5")
    assert "boot 2" in r2.stdout
    out = tally("inspect", str(log))
    assert out.returncode == 0
    assert "sector" in out.stdout and "BOOT    boot=2" in out.stdout and "DATA" in out.stdout
    assert "0 damaged" in out.stdout


def test_inspect_payload_and_garbage(tmp_path):
    from agent import batch
    from agent.log import RingLog
    from hil.nor import EmulatedNOR
    lg = RingLog(EmulatedNOR(4096, 4), "d").open()
    for i in range(3):
        lg.append(9, 1, i * 60000, 0, 0, 60000, [i, 5])
    p = tmp_path / "batch.cbor"
    p.write_bytes(batch.encode(lg.pending(3)))
    r = tally("inspect", str(p))
    assert r.returncode == 0 and "data batch: 3 records" in r.stdout and "values=[2, 5]" in r.stdout
    g = tmp_path / "junk"
    g.write_bytes(b"\xff\xfe not cbor")
    r = tally("inspect", str(g))
    assert r.returncode == 2 and "neither a Tally log nor a Tally payload" in r.stderr
    r = tally("inspect", str(tmp_path / "missing"))
    assert r.returncode == 2 and "No such file" in r.stderr


def test_help_explains_commands():
    r = tally("--help")
    assert r.returncode == 0
    for c in ("simulate", "run", "collect", "inspect"):
        assert c in r.stdout


def test_bench_ring_prints_figures():
    r = tally("bench", "ring", "--cuts", "300", "--damage", "300", "--days", "1", "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for k in ("cut_points", "violations", "appends_per_s_cpython_emulated", "write_amplification",
              "erase_spread", "projected_life_years_1mib_100k_cycles", "recovery_reads",
              "capacity_records_1mib", "damage_points", "damage_violations",
              "recovery_heap_bytes_per_mib_micropython"):
        assert k in rep
    assert rep["violations"] == 0 and rep["cut_points"] >= 300
    assert rep["damage_violations"] == 0 and rep["damage_points"] >= 300
    t = tally("bench", "ring", "--cuts", "0")
    assert t.returncode == 2 and "must be positive" in t.stderr


def test_collect_needs_keys_and_says_so():
    r = tally("collect", "--broker", "mqtt://127.0.0.1:1")
    assert r.returncode == 2 and "--keys FILE or --master-key" in r.stderr


def test_version_is_the_package_and_the_checkout():
    import subprocess
    from importlib import metadata
    r = tally("--version")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("tally " + metadata.version("tally"))
    g = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--tags"],
                       capture_output=True, text=True)
    if g.returncode == 0:                 # run from a checkout: which commit, and whether edited
        assert line.endswith("(git %s)" % g.stdout.strip())


def test_bench_payload_prints_figures_and_ours_decodes():
    r = tally("bench", "payload", "--json", "--hours", "2.5")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    per = rep["bytes_per_record"]
    for k in ("ours_bare", "ours_cose_mac0", "ours_cose_mqtt", "senml_cbor", "senml_json", "plain_json",
              "sparkplug_b_ddata_aliases"):
        assert k in per
    assert per["ours_bare"] < per["ours_cose_mac0"] < per["ours_cose_mqtt"]
    for p in ("compressor", "luminaire", "pump"):
        assert per[p] > 0
    assert per["sparkplug_b_ddata_aliases"] is not None       # make venv installs protobuf for it
    t = tally("bench", "payload", "--hours", "1.5")
    assert "SenML-CBOR" in t.stdout and "goals:" in t.stdout and "compressor" in t.stdout
    assert tally("bench", "payload", "--hours", "0").returncode == 2
    assert set(rep["hist_bytes_per_record_by_profile"]) == {"compressor", "luminaire", "pump"}
    assert rep["hist_bytes_per_record"] > 0          # the stress histograms are on the wire


def test_bench_sync_prints_figures():
    r = tally("bench", "sync", "--json", "--quick", timeout=900)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["backlog_records"] == 1440
    assert rep["drain_records_per_s_mosquitto"] and rep["ingest_records_per_s"]["sqlite_2_workers"] > 0
    assert rep["drain_records_per_s_embedded"] and rep["ingest_records_per_s_one_worker_sqlite"] > 0
    assert rep["bytes_per_device_day_with_mqtt"] > rep["bytes_per_device_day_payload"] > 0


def test_bench_footprint_prints_figures():
    r = tally("bench", "footprint", "--json", "--intervals", "200", timeout=900)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["bundle_mpy_bytes"]["firmware"] > 10000
    s = rep["steady_loop"]
    assert s["intervals"] == 200 and s["heap_code"] > 0 and s["heap_data_peak"] > 0
    assert 64 <= rep["smallest_heap_for_a_day_kib"] <= 256
    # code executed in place from the ROMFS image leaves the heap to data
    assert rep["steady_loop_romfs"]["heap_code"] < s["heap_code"]
    assert 48 <= rep["smallest_heap_for_a_day_romfs_kib"] < rep["smallest_heap_for_a_day_kib"]
    u = rep.get("unix32_frozen")
    if u is None:                                   # no gcc-multilib or MicroPython source: said
        assert rep["unix32"].startswith("skipped: ")
    else:                                           # frozen code: less heap than ROMFS on 64 bits
        assert u["acked"] >= 190 and u["heap_code_device"] < rep["steady_loop_romfs"]["heap_code_device"]
        assert isinstance(rep["unix32_frozen_min_heap_kib"], int)
        assert isinstance(rep["unix32_frozen_steady_loop_min_heap_kib"], int)
        assert rep["unix32_frozen_tls_min_heap_kib"] is None and "mbedtls" in rep["unix32_frozen_tls"]
    w = rep.get("wasm32_romfs")
    if w is None:                                   # no node here: said, not silently left out
        assert rep["wasm32"].startswith("skipped: ")
    else:                                           # 32-bit slots: less heap than the 64-bit port
        assert w["acked"] >= 190 and w["heap_code_device"] < rep["steady_loop_romfs"]["heap_code_device"]
        assert rep["device_live_heap_32bit_romfs"] == w["heap_code_device"] + w["heap_data_peak"]
