"""Every asset type deployable (issue 14, item 4): each board's sensor set per
asset meters its outcome end to end over the emulated buses; the pulse flow
meter counts (twin-driven), a flat one is a counted health event while
metering goes on; tally probe names what is there and what is wrong; every
[sensor] table reaches the device bundle and a table naming a sensor the
board does not carry is refused in one line. The device side (boards.board,
the pulse driver and channel, machine.Counter and the Pin IRQ fallback) is
booted under the MicroPython unix port on the emulated ESP32 SoC."""
import copy
import json
import os
import shutil
import subprocess
import sys

import pytest

import boards
from agent.cli.bundle import FILES_HEAP
from agent.agent import Agent, build_schema
from agent.cli import bundle, main
from agent.cli import probe as cli_probe
from agent.cli.toml_config import ConfigError, load_config
from agent.clock import VirtualClock
from agent.readout import summary
from agent.flow import FlowChannel
from agent.log import R_VALUES, file_log
from agent.meter import Meter
from boards.emulated import Emulation
from drivers.pulse import PulseMeter
from hil.rng import Rng
from hil.twins import TWINS
from hil.twins.bme280 import BME280Model
from hil.twins.pulse import PulseModel

from conftest import MP

MIN = 60000
H = 3600000
# the outcome each asset bills, and the hours from midnight its world needs
# to deliver some (the light comes on at 5:30, the pump first starts at 4:09)
OUTCOME = {"compressor": "air", "luminaire": "light_exposure", "pump": "water"}
HOURS = {"compressor": 1, "luminaire": 6, "pump": 5}


def meter(tmp_path, world, board, hours, sample_ms=10000):
    """Run an agent on board's sensors over world's buses for hours of
    virtual time; returns the agent and the last record's values by name."""
    for i, s in enumerate(board["sensors"]):
        # a chip the asset's scenario has no model for (the ESP32 compressor's
        # ADXL345): a steady twin at its address
        if "addr" in s and s["type"] not in world.models:
            world.i2c.attach(s["addr"], TWINS[s["type"]](s, Rng(i + 1)))
    chans = boards.make_channels(board, world.i2c, world.open_serial, sleep_ms=lambda ms: None,
                                 open_counter=world.open_counter)
    log = file_log(str(tmp_path / "log.bin"), "dev-a", capacity=256 * 1024, durable=False)
    ag = Agent("dev-a", chans, log, world.clock, interval_ms=MIN, sample_ms=sample_ms).start()
    for _ in range(hours * H // sample_ms):
        world.clock.advance_ms(sample_ms)
        ag.tick()
    return ag, dict(zip(ag.meter.names, log.last[R_VALUES]))


def world(asset, air="rated", faults=()):
    w = Emulation(VirtualClock(), seed=3, profile=asset, air=air, faults=faults)
    w.clock = w.scenario.clock
    return w


@pytest.mark.parametrize("asset", boards.ASSETS)
@pytest.mark.parametrize("name", [b for b in boards.BOARDS if b != "emulated"])
def test_every_board_meters_each_asset_end_to_end(tmp_path, name, asset):
    w = world(asset)
    ag, v = meter(tmp_path, w, boards.board(name, asset), HOURS[asset], sample_ms=30000)
    assert v[OUTCOME[asset]] > 0
    assert v["run_time"] > 0
    assert v["err_nack"] == v["err_crc"] == v["err_timeout"] == v["err_range"] == 0
    # the console line names the asset's own odometers, no other asset's
    line = summary(ag.meter, ag.log.last)
    assert " %s=" % OUTCOME[asset] in line
    assert all(" %s=" % OUTCOME[o] not in line for o in OUTCOME if o != asset)


def test_pump_bills_the_water_its_meter_counted(tmp_path):
    w = world("pump")
    ag, v = meter(tmp_path, w, w.board, 5)
    truth_l = w.scenario.true_litres_mL // 1000
    assert truth_l > 10000
    # 10 L a pulse: what is metered is whole pulses behind the truth, at most one
    assert truth_l - 10 <= v["water"] <= truth_l
    assert abs(v["run_time"] * 1000 - w.scenario.true_run_ms) <= 2 * 10000 * w.scenario.true_starts
    assert v["cycles"] == w.scenario.true_starts and v["flow_stalls"] == 0


def test_compressor_bills_measured_or_rated_air_as_set(tmp_path):
    (tmp_path / "m").mkdir()
    w = world("compressor", air="measured")
    ag, measured = meter(tmp_path / "m", w, w.board, 6)
    truth_l = w.scenario.true_air_mL // 1000
    assert truth_l - 1 <= measured["air"] <= truth_l                        # 1 L a pulse
    (tmp_path / "r").mkdir()
    w2 = world("compressor")
    ag2, rated = meter(tmp_path / "r", w2, w2.board, 6)
    # rated: 11 L/min x run time; the unit delivers 10, which only the meter sees
    assert abs(rated["air"] - rated["run_time"] * 11 // 60) <= 1
    # the same runs in the same world: rated over measured is 11 / 10, within
    # the run-time edges the 10 s samples place and the meter's 1 L pulses
    assert abs(rated["air"] * 10 - measured["air"] * 11) <= rated["air"] * 10 * 2 // 100 + 11
    assert "flow_stalls" not in rated and "air_flow_max" not in rated


def test_pulse_meter_counts_and_a_counter_reset_is_a_range_event():
    ml = [0]
    twin = PulseModel(lambda: ml[0], ml_per_pulse=10000)
    drv = PulseMeter(twin, 10000, "GPIO27")
    ch = FlowChannel(drv, "water", stall_s=60)
    m = Meter(build_schema([ch]))
    ch.bind(m)
    iv = m.index("water")
    for t in range(0, 60001, 1000):
        ml[0] = t * 400 // 60          # 400 L/min
        ch.sample(m, t, 1000)
    assert drv.read()[0] == 400 * 1000 // 10000 == 40
    assert m.values[iv] == 400                                   # litres, whole pulses
    twin.silent_reset()                                           # re-opened under the driver
    ml[0] += 50000
    ch.sample(m, 61000, 1000)
    assert m.values[m.index("err_range")] == 1 and m.values[iv] == 400
    assert drv.read() == (5, 50000)
    ml[0] += 50000
    ch.sample(m, 62000, 1000)
    assert m.values[iv] == 450                                    # counting carries on


def test_a_flat_pulse_meter_is_one_counted_health_event_and_metering_goes_on(tmp_path, capsys):
    # from midnight the pump first starts at 4:09 and fills the tank for
    # 38 minutes; its meter sticks at 4:15 for 20 minutes
    w = world("pump", faults=[(255 * MIN, "stuck", "pulse", 20 * MIN)])
    ag, v = meter(tmp_path, w, w.board, 5)
    assert [f[1] for f in w.scenario.faults.fired] == ["stuck"]
    assert v["flow_stalls"] == 1
    out = capsys.readouterr().out
    assert out.count("no pulse in") == 1 and "counted in flow_stalls" in out
    assert out.count("pulses again") == 1
    # the 20 minutes stuck (400 L/min) are lost to the bill, not the rest, and
    # nothing else stopped
    truth_l = w.scenario.true_litres_mL // 1000
    assert truth_l - 20 * 400 - 20 <= v["water"] <= truth_l - 20 * 400 + 20
    assert v["run_time"] * 1000 >= w.scenario.true_run_ms - 10000
    assert v["err_nack"] == v["err_crc"] == v["err_timeout"] == v["err_range"] == 0


def probe(asset, setup=None, emulation=None):
    w = Emulation(VirtualClock(), profile=asset)
    if setup:
        setup(w)
    if emulation is not None:
        emulation.append(w)
    res = cli_probe.probe(w.board, w.i2c, w.open_serial, w.open_counter)
    return {r[0]["type"]: r[2:] for r in res}, res


def test_probe_good_board_names_identity_and_reading(capsys):
    em = []
    got, res = probe("luminaire", emulation=em)
    assert got["ina226"][:2] == ("ok", "manufacturer 0x5449, die id 0x2260")
    assert got["sht4x"][:2] == ("ok", "serial 0x%08x" % em[0].models["sht4x"].serial)   # this device's part
    assert "temperature 22." in got["sht4x"][2]
    got, res = probe("pump")
    assert got["bme280"][:2] == ("ok", "chip id 0x60") and "pressure 1013." in got["bme280"][2]
    assert got["pulse"][0] == "ok" and got["pulse"][1].startswith("pulse input")
    assert got["sdm630"][1] == "SDM630, Modbus slave 1" and "import 500.000 kWh" in got["sdm630"][2]
    assert cli_probe.report(boards.board("emulated", "pump"), "pump", res) == 0
    assert "every sensor answered" in capsys.readouterr().out
    assert main(["probe", "--board", "emulated", "--asset", "compressor", "--window", "0"]) == 0
    out = capsys.readouterr().out
    assert "ina219" in out and "sdm120" in out and "ok" in out


def test_probe_says_absent_wrong_chip_crc_and_no_answer(capsys):
    def absent(w):
        w.i2c.absent(0x23)

    def crc(w):
        w.models["sht4x"].corrupt_crc_next = True

    got, res = probe("luminaire", absent)
    assert got["bh1750"][0] == "ABSENT" and "0x23" in got["bh1750"][2]
    assert got["ina226"][0] == got["sht4x"][0] == "ok"
    assert cli_probe.report(boards.board("emulated", "luminaire"), "luminaire", res) == 1
    line = [x for x in capsys.readouterr().out.splitlines() if "bh1750" in x][0]
    assert "ABSENT" in line and "i2c 0x23" in line
    got, _ = probe("luminaire", crc)
    assert got["sht4x"][0] == "CRC ERROR"

    def bmp280(w):
        w.i2c.attach(0x76, BME280Model(chip_id=0x58))

    got, _ = probe("pump", bmp280)
    assert got["bme280"][0] == "WRONG CHIP" and "0x58" in got["bme280"][2] and "BMP280" in got["bme280"][2]
    assert got["adxl345"][0] == "ok"

    def silent_meter(w):
        w.meter.drop_next = True

    got, _ = probe("pump", silent_meter)
    assert got["sdm630"][0] == "NO ANSWER" and "no reply" in got["sdm630"][2]


CFG = """asset = "pump"
[sdm630]
slave = 7
run_threshold_W = 1500
[pulse]
ml_per_pulse = 100000
stall_s = 300
[bme280]
hot_cC = 3500
"""


def test_the_bundle_carries_every_sensor_table(tmp_path):
    p = tmp_path / "tally.toml"
    p.write_text(CFG)
    cfg = load_config(str(p), check=False)
    for board in ("unix", "esp32-devkitc", "esp32-s3-devkitc"):
        dev = bundle.device_config(board, cfg)
        assert dev["asset"] == "pump"
        assert dev["sensors"] == {"sdm630": {"slave": 7, "run_threshold_W": 1500},
                                  "pulse": {"ml_per_pulse": 100000, "stall_s": 300},
                                  "bme280": {"hot_cC": 3500}}
    # the device applies them: the installed board has them
    b = boards.board("esp32-devkitc", "pump", dev["sensors"])
    assert [s for s in b["sensors"] if s["type"] == "pulse"][0]["ml_per_pulse"] == 100000
    # and the compressor's [ina219] (the billed air figure) is no longer dropped
    p.write_text("[ina219]\nflow_lpm = 310\nrun_threshold_mA = 800\n")
    dev = bundle.device_config("esp32-devkitc", load_config(str(p), check=False))
    assert dev["sensors"] == {"ina219": {"flow_lpm": 310, "run_threshold_mA": 800}}


@pytest.mark.parametrize("toml,board,words", [
    ("[bh1750]\naddr = 0x5c\n", "esp32-devkitc",
     "[bh1750]: board esp32-devkitc as a compressor carries no bh1750 (its sensors: ina219, sht3x, "
     "adxl345, sdm120)"),
    ("asset = \"luminaire\"\n[sdm120]\nslave = 2\n", "unix", "as a luminaire carries no sdm120"),
    ("asset = \"pump\"\nair = \"measured\"\n", "esp32-devkitc", "air = \"measured\" needs a compressor"),
    ("asset = \"pump\"\n[pulse]\nmedium = \"oil\"\n", "esp32-devkitc",
     "key 'pulse.medium' must be one of water, air"),
    ("[ina219]\nair = \"measured\"\n", "esp32-devkitc", "needs a pulse flow meter with medium = \"air\""),
])
def test_a_table_naming_a_sensor_the_board_cannot_carry_is_refused(tmp_path, capsys, toml, board, words):
    p = tmp_path / "tally.toml"
    p.write_text(toml)
    rc = main(["flash", "--board", board, "--config", str(p), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_tally_run_refuses_the_same_and_a_board_check_names_the_bus(tmp_path):
    p = tmp_path / "tally.toml"
    p.write_text("[bh1750]\naddr = 0x23\n")
    with pytest.raises(ConfigError, match=r"\[bh1750\]: board rpi4 as a compressor carries no bh1750"):
        load_config(str(p), board="rpi4")
    b = copy.deepcopy(boards.board("rpi4", "pump"))
    b["sensors"][1]["bus"] = "i2c1"
    with pytest.raises(boards.BoardError, match=r"sensors\[1\] \(pulse\) needs a pulse input bus"):
        boards.validate(b)
    b = copy.deepcopy(boards.board("esp32-devkitc", "pump"))
    b["buses"]["flow"]["pin"] = 22
    with pytest.raises(boards.BoardError, match="flow.pin: GPIO22 is already used by i2c0.scl"):
        boards.validate(b)
    b = copy.deepcopy(boards.board("esp32-devkitc", "compressor"))
    b["sensors"].append(dict(boards.load("esp32-devkitc").AIR_METER))
    with pytest.raises(boards.BoardError, match="bills rated air"):
        boards.validate(b)


# the device side under MicroPython: the firmware on the emulated ESP32 SoC

@pytest.fixture(scope="module")
def unix_bundle(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bundle"))
    bundle.build(out, "unix", {})
    return out


def boot(unix_bundle, tmp_path, cfg, soc):
    d = tmp_path / "dev"
    shutil.copytree(unix_bundle, d, ignore=shutil.ignore_patterns("tally.romfs"))
    (d / "tally_config.json").write_text(json.dumps(cfg))
    (d / "soc.json").write_text(json.dumps(soc))
    r = subprocess.run([MP, "-X", "heapsize=" + FILES_HEAP, "main.py"], capture_output=True, text=True, timeout=60,
                       cwd=str(d), env={"PATH": os.environ.get("PATH", ""),
                                        "MICROPYPATH": "%s:.frozen" % (d / "hil" / "soc")})
    print(r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stdout


@pytest.mark.micropython
@pytest.mark.skipif(not MP, reason="micropython unix port not installed")
@pytest.mark.parametrize("counter", [True, False], ids=["pcnt", "pin-irq"])
def test_esp32_firmware_meters_a_pump_with_its_settings(unix_bundle, tmp_path, counter):
    cfg = {"device_id": "esp-p", "board": "esp32-devkitc", "asset": "pump", "interval_s": 1,
           "sample_ms": 100, "duration_s": 4, "log": "file",
           "sensors": {"pulse": {"ml_per_pulse": 10000, "stall_s": 600}, "bme280": {"hot_cC": 3000}}}
    # the pump's world at 10000 times real time: it starts filling after ~1.2 s
    out = boot(unix_bundle, tmp_path, cfg, {"asset": "pump", "speed": 10000, "counter": counter})
    assert "tally: board esp32-devkitc as a pump: sdm630, pulse, adxl345, bme280" in out
    assert "left out" not in out
    lines = [x for x in out.splitlines() if x.startswith("interval seq=")]
    assert len(lines) >= 2
    water = [int(x.split(" water=")[1].split(".")[0]) for x in lines]     # m3
    assert water[-1] >= 1 and "flow_stalls=0" in lines[-1] and "errors=0" in lines[-1]
    assert " hot_time=" in lines[-1] and " air=" not in lines[-1]


@pytest.mark.micropython
@pytest.mark.skipif(not MP, reason="micropython unix port not installed")
def test_esp32_firmware_says_a_bad_table_once_and_meters_on(unix_bundle, tmp_path):
    cfg = {"device_id": "esp-l", "board": "esp32-devkitc", "asset": "luminaire", "interval_s": 1,
           "sample_ms": 200, "duration_s": 2, "log": "file", "sensors": {"sdm120": {"slave": 3}}}
    out = boot(unix_bundle, tmp_path, cfg, {"asset": "luminaire"})
    assert out.count("carries no sdm120") == 1 and "using the board's own sensor settings" in out
    assert " light_exposure=" in [x for x in out.splitlines() if x.startswith("interval seq=")][-1]


# the Pi's pulse input: libgpiod's bindings are the edge of the world (the
# kernel's GPIO character device); a stand-in package queues edge events

class _Lines:
    def __init__(self):
        import queue
        self.events = queue.Queue()
        self.released = False

    def wait_edge_events(self, timeout):
        import queue
        try:
            self._next = self.events.get(timeout=timeout.total_seconds())
            return True
        except queue.Empty:
            return False

    def read_edge_events(self):
        got = [self._next]
        while not self.events.empty():
            got.append(self.events.get())
        return got

    def release(self):
        self.released = True


def _fake_gpiod(monkeypatch):
    import types
    lines = _Lines()
    requested = {}
    gpiod = types.ModuleType("gpiod")
    line = types.ModuleType("gpiod.line")
    line.Edge = types.SimpleNamespace(RISING="rising")
    line.Bias = types.SimpleNamespace(PULL_UP="pull-up")
    gpiod.LineSettings = lambda **kw: kw
    gpiod.line = line

    def request_lines(chip, consumer, config):
        requested.update(chip=chip, consumer=consumer, config=config)
        return lines
    gpiod.request_lines = request_lines
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return lines, requested


def test_a_pi_counts_the_kernels_edge_events(monkeypatch):
    import time
    from agent.port import linux_bus
    lines, requested = _fake_gpiod(monkeypatch)
    c = linux_bus.open_counter({"pin": 17, "ml_per_pulse": 10000})
    assert requested["chip"] == "/dev/gpiochip0" and list(requested["config"]) == [17]
    assert requested["config"][17]["edge_detection"] == "rising"
    assert requested["config"][17]["bias"] == "pull-up"
    for _ in range(7):
        lines.events.put("edge")
    end = time.monotonic() + 5
    while c.value() < 7 and time.monotonic() < end:
        time.sleep(0.01)
    assert c.value() == 7
    drv = PulseMeter(c, 10000, "GPIO17")
    assert drv.read() == (7, 70000)
    c.close()
    assert lines.released


def test_a_pi_without_gpiod_says_what_to_install(monkeypatch):
    from agent.port import linux_bus
    monkeypatch.setitem(sys.modules, "gpiod", None)
    with pytest.raises(OSError, match=r"GPIO17: the gpiod package .* pip install 'tally\[pi\]'"):
        linux_bus.open_counter({"pin": 17})
