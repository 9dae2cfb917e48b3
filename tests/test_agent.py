"""The agent loop on the emulated board with faults injected at the chips:
every fault lands in its health counter, metering carries on, and nothing
already logged is lost."""
import pytest

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.log import file_log, R_VALUES
from boards.emulated import Emulation

pytestmark = pytest.mark.emulator_exact


def make(tmp_path, clock=None, world=None, reason="poweron"):
    clock = clock or VirtualClock()
    world = world or Emulation(clock, seed=3)
    log = file_log(str(tmp_path / "log.bin"), "dev-f", capacity=64 * 1024)
    ag = Agent("dev-f", world.channels(), log, clock, interval_ms=60000, sample_ms=5000,
               reason=reason).start()
    return clock, world, ag


def run_minutes(clock, ag, minutes):
    for _ in range(minutes * 12):
        clock.advance_ms(5000)
        ag.tick()


def values(ag):
    return dict(zip(ag.meter.names, ag.log.last[R_VALUES]))


def test_faults_are_counted_by_kind_and_metering_goes_on(tmp_path):
    clock, world, ag = make(tmp_path)
    run_minutes(clock, ag, 30)
    before = values(ag)
    assert before["err_nack"] == before["err_crc"] == before["err_timeout"] == 0
    world.i2c.fail_next(0x40, n=3)              # INA219 NACKs three transactions
    world.sht3x.corrupt_crc_next = True         # SHT3x: one bad CRC
    world.sdm120.garble_next = True             # SDM120: one garbage reply
    run_minutes(clock, ag, 2)
    world.sdm120.drop_next = True               # SDM120: one reply never comes
    run_minutes(clock, ag, 2)
    world.i2c.absent(0x44)                      # SHT3x unplugged for 10 minutes
    run_minutes(clock, ag, 10)
    world.i2c.absent(0x44, False)
    run_minutes(clock, ag, 30)
    after = values(ag)
    # INA219: its three NACKs; SHT3x unplugged for 10 minutes: three failures
    # in a row, then backed off 5 s, 10 s, ... 300 s, retried after each wait
    # (not 120 reads of a dead sensor)
    d = after["err_nack"] - before["err_nack"]
    assert 1 + 3 + 4 <= d <= 3 + 3 + 8, d
    assert after["backoffs"] - before["backoffs"] >= 5
    assert all(ch.fails == 0 for ch in ag.channels)                # all back in service
    assert after["err_crc"] - before["err_crc"] == 2               # SHT3x CRC, Modbus garbage
    assert after["err_timeout"] - before["err_timeout"] == 1       # Modbus drop
    # metering went on through it all: run time, energy and mains energy kept growing
    assert after["run_time"] > before["run_time"] and after["energy"] > before["energy"]
    assert after["mains_energy"] > before["mains_energy"]
    assert ag.log.depth() == ag.records == 74


def test_restart_restores_odometers_and_counts_boots(tmp_path):
    clock, world, ag = make(tmp_path)
    run_minutes(clock, ag, 20)
    v1 = values(ag)
    ag.stop()
    clock.reboot()
    clock.advance_ms(30 * 60000)                # 30 minutes powered off; the meter keeps counting
    _, _, ag2 = make(tmp_path, clock, world, reason="brownout")
    assert ag2.boot == 2 and ag2.log.boot_reason == "brownout"
    run_minutes(clock, ag2, 5)
    v2 = values(ag2)
    for k in ("run_time", "cycles", "energy", "air"):
        assert v2[k] >= v1[k]                   # odometers never restart at zero
    # the mains meter's register moved while we were off: that energy is billed
    assert v2["mains_energy"] - v1["mains_energy"] >= 30 * 4 / 60 * 0.9
    seqs = [r[0] for r in ag2.log.pending(100)]
    assert seqs == sorted(seqs) and len(seqs) == 25 and seqs[-1] == 25


def test_new_schema_starts_a_new_epoch_and_keeps_old_records(tmp_path):
    clock, world, ag = make(tmp_path)
    run_minutes(clock, ag, 5)
    old_epoch = ag.log.epoch
    ag.stop()
    clock.reboot()
    log = file_log(str(tmp_path / "log.bin"), "dev-f", capacity=64 * 1024)
    chans = [c for c in world.channels() if type(c).__name__ != "ClimateChannel"]
    ag2 = Agent("dev-f", chans, log, clock, interval_ms=60000, sample_ms=5000).start()
    assert ag2.log.epoch != old_epoch
    run_minutes(clock, ag2, 2)
    epochs = [r[3] for r in ag2.log.pending(100)]
    assert epochs == [old_epoch] * 5 + [ag2.log.epoch] * 2
    assert values(ag2)["run_time"] <= 120          # the new epoch's odometers start at zero


def test_forged_or_damaged_acks_never_free_log_space(tmp_path):
    from agent import cbor, cose
    from agent.collector.store import Collector
    from hil.loopback import Hub
    key = bytes(range(16))
    clock = VirtualClock()
    world = Emulation(clock, seed=3)
    hub = Hub(Collector(keys={"dev-f": key}.get))
    t = hub.transport("dev-f")
    log = file_log(str(tmp_path / "log.bin"), "dev-f", capacity=64 * 1024)
    ag = Agent("dev-f", world.channels(), log, clock, transport=t, interval_ms=60000,
               sample_ms=60000, uplink_opts={"key": key, "max_latency_ms": 10 ** 9}).start()
    hub.down = True                       # nothing reaches the collector: only our forgeries
    for _ in range(30):
        clock.advance_ms(60000)
        ag.tick()
    assert log.depth() == 30
    box = hub.inboxes["dev-f"]
    ack = cbor.dumps([log.epoch, 1, 30])
    box.append(("tally/v1/dev-f/ack", ack))                                   # unsigned
    box.append(("tally/v1/dev-f/ack", cose.mac0(ack, bytes(16), "dev-f")))     # wrong key
    box.append(("tally/v1/dev-f/ack", cose.mac0(ack, key, "dev-x")))           # another device's
    ag.uplink.step(clock.uptime_ms())
    assert ag.uplink.h["bad_acks"] == 3 and log.depth() == 30
    box.append(("tally/v1/dev-f/ack", cose.mac0(ack, key, "dev-f")))           # the real thing
    ag.uplink.step(clock.uptime_ms())
    assert log.depth() == 0


def test_a_lost_birth_is_sent_again_and_the_data_lands(tmp_path):
    from agent.collector.store import Collector
    from hil.loopback import Hub
    key = bytes(range(16))
    col = Collector(keys={"dev-f": key}.get)
    hub = Hub(col)
    real = hub.deliver
    dropped = []

    def deliver(topic, payload):
        if topic.endswith("/birth") and not dropped:
            dropped.append(topic)             # the first birth never arrives
            return
        real(topic, payload)
    hub.deliver = deliver
    clock = VirtualClock()
    log = file_log(str(tmp_path / "log.bin"), "dev-f", capacity=64 * 1024)
    ag = Agent("dev-f", Emulation(clock, seed=3).channels(), log, clock,
               transport=hub.transport("dev-f"), interval_ms=60000, sample_ms=60000,
               uplink_opts={"key": key}).start()
    for _ in range(180):
        clock.advance_ms(60000)
        ag.tick()
    assert dropped and "unknown schema" in col.rejects
    assert log.depth() <= 60                  # re-birth came, batches were acked (the live one may wait)
    assert col.summary("dev-f")["epochs"][log.epoch]["records"] >= 120


def test_a_dead_sensor_is_backed_off_and_comes_back(tmp_path):
    clock, world, ag = make(tmp_path)
    run_minutes(clock, ag, 5)
    bus = world.i2c
    world.i2c.absent(0x44)                      # SHT3x dead for an hour
    t0 = bus.transactions
    before = values(ag)
    run_minutes(clock, ag, 60)
    mid = values(ag)
    sht_reads = mid["err_nack"] - before["err_nack"]
    # 720 samples in the hour; backed off, the dead sensor is tried ~20 times
    assert 3 < sht_reads <= 25, sht_reads
    ina_tx = bus.transactions - t0 - sht_reads
    assert ina_tx >= 720                        # the INA219 went on being read every sample
    assert mid["run_time"] > before["run_time"] and mid["energy"] > before["energy"]
    assert mid["backoffs"] - before["backoffs"] == sht_reads - 2   # one per failure from the 3rd
    world.i2c.absent(0x44, False)
    run_minutes(clock, ag, 6)                   # the longest wait is 5 minutes
    sht = [ch for ch in ag.channels if "temp_max" in [m[0] for m in ch.metrics]][0]
    assert sht.fails == 0 and not sht.backed_off(clock.uptime_ms())


def test_tally_run_refuses_a_log_written_under_another_device_id_in_one_line(tmp_path, capsys):
    from agent.cli import main
    logp = tmp_path / "log.bin"
    clock = VirtualClock()
    ag = Agent("pump-7", Emulation(clock, seed=3).channels(), file_log(str(logp), "pump-7"), clock,
               interval_ms=60000, sample_ms=60000).start()
    for _ in range(5):
        clock.advance_ms(60000)
        ag.tick()
    ag.stop()
    before = logp.read_bytes()
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "pump-8"\ninterval_s = 1\nsample_ms = 100\nlog_path = "%s"\n'
                   'serial = "loopback"\n' % logp)
    assert main(["run", "--board", "emulated", "--config", str(cfg), "--duration", "1"]) == 2
    out = capsys.readouterr()
    assert out.err.count("\n") == 1, out.err
    assert "written by device 'pump-7'" in out.err and "'pump-8'" in out.err, out.err
    assert "Traceback" not in out.err and "interval " not in out.out
    assert logp.read_bytes()[:len(before)] == before   # the old device's records are left as they were
    log = file_log(str(logp), "pump-7").open()
    assert log.next_seq - log.epoch_seq0 == 5 and log.depth() == 5
    log.close()


def test_samples_stay_on_their_grid_after_a_late_wake_up(tmp_path):
    # a real-time loop (tally run, the firmware) sleeps until next_due(): a
    # wake-up 37 ms late at an interval's end must not push every later
    # sample, nor the later interval ends, so each record starts at its
    # boundary plus that one lateness (the batch's dt column stays near zero)
    clock, _, ag = make(tmp_path)
    t0 = clock.uptime_ms()
    lates = [37, 3, 0, 250, 0, 11]
    while ag.records < len(lates):
        due = ag.next_due()
        assert (due - t0) % ag.sample == 0 and due > clock.uptime_ms()   # a grid point, ahead
        k = (due - t0) // ag.interval
        late = lates[k - 1] if (due - t0) % ag.interval == 0 else 0
        clock.advance_ms(due + late - clock.uptime_ms())
        ag.tick()
    starts = [r[6] - t0 for r in ag.log.pending(10)]
    assert starts == [0] + [60000 * k + lates[k - 1] for k in range(1, len(lates))]
