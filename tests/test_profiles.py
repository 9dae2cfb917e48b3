"""The luminaire and pump profiles on the emulated board, through the new
drivers and channels: the outcome metered matches the scenario's ground
truth, and every scheduled fault kind lands in its health counter while the
agent keeps metering."""
import pytest

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.log import file_log, R_VALUES
from boards.emulated import Emulation

pytestmark = pytest.mark.emulator_exact
MIN = 60000


def run(tmp_path, profile, hours, faults=(), sample_ms=5000):
    clock = VirtualClock()
    world = Emulation(clock, seed=4, profile=profile, faults=faults)
    log = file_log(str(tmp_path / "log.bin"), "dev-p", capacity=256 * 1024, durable=False)
    ag = Agent("dev-p", world.channels(), log, clock, interval_ms=MIN, sample_ms=sample_ms).start()
    for _ in range(hours * 3600000 // sample_ms):
        clock.advance_ms(sample_ms)
        ag.tick()
    return world, ag, dict(zip(ag.meter.names, ag.log.last[R_VALUES]))


def test_luminaire_meters_the_light_it_delivers(tmp_path):
    world, ag, v = run(tmp_path, "luminaire", 24)
    truth_lux_h = world.scenario.true_lux_ms // 3600000
    assert abs(v["light_exposure"] - truth_lux_h) <= truth_lux_h // 100 + 2      # within 1 %
    assert abs(v["run_time"] * 1000 - world.scenario.true_on_ms) <= 600000  # on-time from the supply
    assert v["energy"] > 0 and "air" not in v
    assert v["err_nack"] == v["err_crc"] == v["err_timeout"] == v["err_range"] == 0


def test_pump_meters_energy_and_vibration(tmp_path):
    world, ag, v = run(tmp_path, "pump", 6)
    i = ag.meter.names.index("vib_max")
    peaks = [r[R_VALUES][i] for r in ag.log.pending(10 ** 6)]
    # in mm/s2 (1 mg = 9.80665 mm/s2): running ~120 mg and three times that
    # while starting; stopped: a few mg
    assert max(peaks) >= 300 * 40168 >> 12 and min(peaks) < 10 * 40168 >> 12
    assert v["mains_energy"] > 0
    assert v["err_nack"] == v["err_crc"] == v["err_timeout"] == v["err_range"] == 0


H = 3600000


def test_luminaire_faults_land_in_their_counters_while_light_is_metered(tmp_path):
    faults = [(2 * H, "absent", "bh1750", 10 * MIN), (3 * H, "nack", "ina226", 0),
              (4 * H, "short_read", "sht4x", 0), (5 * H, "crc", "sht4x", 0),
              (6 * H, "silent_reset", "ina226", 0)]
    world, ag, v = run(tmp_path, "luminaire", 12, faults)
    (tmp_path / "clean").mkdir()
    clean = run(tmp_path / "clean", "luminaire", 12)[2]         # the same day without faults
    assert [f[1] for f in world.scenario.faults.fired] == ["absent", "nack", "short_read", "crc",
                                                          "silent_reset"]
    assert v["err_nack"] >= 1 + 3 and v["backoffs"] >= 1     # the NACK, and the absent sensor
    assert v["err_crc"] >= 2                                   # short read and CRC on the SHT4x
    ina = [ch.driver for ch in ag.channels if type(ch.driver).__name__ == "INA226"][0]
    assert ina.resets == 1                                     # it noticed and recalibrated
    assert abs(v["energy"] - clean["energy"]) <= clean["energy"] // 100
    # the light kept being metered: the 10 minutes without the sensor cost at
    # most those 10 minutes' worth of lux-hours
    assert clean["light_exposure"] - 10 * 1150 // 60 - 5 <= v["light_exposure"] <= clean["light_exposure"]


def test_pump_meter_faults_land_in_their_counters(tmp_path):
    faults = [(1 * H, "garble", "sdm630", 0), (1 * H + 5 * MIN, "timeout", "sdm630", 0),
              (1 * H + 10 * MIN, "exception", "sdm630", 0), (2 * H, "absent", "adxl345", 5 * MIN)]
    world, ag, v = run(tmp_path, "pump", 3, faults)
    assert v["err_crc"] >= 1 and v["err_timeout"] >= 1 and v["err_nack"] >= 1 + 3
    assert v["mains_energy"] > 0


def test_a_particulate_sensor_is_metered_through_its_channel():
    # the ESP32-S3 board's PMS5003, on its twin over an in-process serial line
    import boards
    from agent.channels import ParticulateChannel, ERROR_METRICS
    from agent.meter import Meter
    from hil.twins.pms5003 import PMS5003Model
    from hil.buses.serial_loop import LoopbackPort
    pm = (5, 12, 15, 4, 11, 15, 1200, 350, 80, 9, 2, 1)
    model = PMS5003Model(lambda: pm, period_ms=60)
    board = {"name": "t", "buses": {"pms": {"kind": "uart", "port": "x", "baud": 9600}},
             "sensors": [{"type": "pms5003", "bus": "pms"}]}
    (ch,) = boards.make_channels(board, None, lambda port, baud: LoopbackPort(model))
    assert isinstance(ch, ParticulateChannel)
    m = Meter(ch.metrics + ERROR_METRICS)
    ch.bind(m)
    assert ch.sample(m, 0, 0) and ch.sample(m, 1000, 1000)
    v = dict(zip(m.names, m.close()))
    assert v["pm2_5_mean"] == 11 and v["pm2_5_max"] == 11 and v["pm10_mean"] == 15
    model.bad_checksum_next = True
    assert not ch.sample(m, 2000, 1000)
    v = dict(zip(m.names, m.close()))
    assert v["err_crc"] == 1


def test_a_board_sensor_without_a_channel_is_an_error_not_silence():
    import boards
    board = {"name": "t", "buses": {}, "sensors": [{"type": "geiger", "bus": "x"}]}
    with pytest.raises(ValueError, match="no channel for sensor type 'geiger'"):
        boards.make_channels(board, None, None)
