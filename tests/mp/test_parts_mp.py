# Component identity and swap events on the device side (agent/parts.py,
# agent/passport.py, drivers/eeprom24.py), under MicroPython and CPython:
# a swapped SHT4x twin becomes one removed and one installed event that
# survive a reboot; a flickering serial is a fault; passports round-trip
# through the AT24CS02 twin with page writes.
from agent.agent import Agent
from agent.channels import ClimateChannel
from agent.clock import VirtualClock
from agent.log import RingLog
from agent.partlog import E_KIND, E_COMP, table
from agent.parts import Parts, Slot, slots_for
from agent import passport as P
from drivers.eeprom24 import AT24CS02
from drivers.sht4x import SHT4x
from hil.buses.i2c import EmulatedI2C
from hil.nor import EmulatedNOR
from hil.twins.eeprom24 import AT24CS02Model
from hil.twins.sht4x import SHT4xModel


def _none(ms):
    pass


def _rig(nor, bus, clock, tags=()):
    chans = [ClimateChannel(SHT4x(bus, sleep_ms=_none))]
    parts = Parts(slots_for(chans, tags), period_ms=5000)
    ag = Agent("dev-mp", chans + [parts], RingLog(nor, "dev-mp"), clock,
               interval_ms=60000, sample_ms=5000).start()
    return ag, parts


def _run(ag, clock, n):
    for _ in range(n):
        clock.advance_ms(5000)
        ag.tick()


def test_swap_is_one_removed_one_installed_and_survives_a_reboot():
    bus = EmulatedI2C()
    m = SHT4xModel(serial=0x11111111)
    bus.attach(0x44, m)
    nor = EmulatedNOR(1024, 8)
    clock = VirtualClock()
    ag, parts = _rig(nor, bus, clock)
    _run(ag, clock, 10)
    m.serial = 0x22222222
    _run(ag, clock, 10)
    evs = [(e[E_KIND], e[E_COMP]) for e in ag.log.events]
    assert evs == [("installed", "sht4x-11111111"), ("removed", "sht4x-11111111"),
                   ("installed", "sht4x-22222222")], evs
    clock.reboot()
    ag, parts = _rig(nor, bus, clock)                 # the same part: nothing new
    assert table(ag.log) == {"sht4x@0x44": "sht4x-22222222"}
    assert len(ag.log.events) == 3 and parts.events == 0


def test_flicker_is_a_fault_not_a_swap():
    bus = EmulatedI2C()
    m = SHT4xModel(serial=0x11111111)
    bus.attach(0x44, m)
    clock = VirtualClock()
    ag, parts = _rig(EmulatedNOR(1024, 8), bus, clock)
    for i in range(30):
        m.serial = 0x11111111 if i % 2 else 0x33333333
        _run(ag, clock, 1)
    assert len(ag.log.events) == 1 and parts.faults["flicker"] >= 10


def test_passport_round_trip_through_the_eeprom_twin():
    bus = EmulatedI2C()
    chip = AT24CS02Model()
    bus.attach(0x50, chip)
    bus.attach(0x58, chip.security())
    e = AT24CS02(bus, 0x50, sleep_ms=_none)
    assert P.read(e, 1) == (None, "blank")
    p = P.Passport("PUMP-SEAL-7", year=2026, month=1, day=2, rated_h=8000)
    P.write(e, p)
    p.cycles = 5
    P.write(e, p)
    q, why = P.read(e, 1)
    assert why is None and q.part == "PUMP-SEAL-7" and q.cycles == 5 and q.seq == 2 and q.slot == 1
    assert chip.writes == 16
    assert e.ident() == "at24cs02-101112131415161718191a1b1c1d1e1f"
    chip.mem[70] ^= 1
    q, why = P.read(e, 1)
    assert why is None and q.seq == 1                 # the torn newer copy: the older one


def test_the_board_files_tags_are_read_with_their_passports():
    # the emulated luminaire's board declares its wear parts' tags
    # (boards/tags.py); the world fits twins with passports (hil/scenario.py
    # PARTS); a config part_tags spec replaces the driver's slot
    from agent.parttags import board_tags
    from agent.partlog import E_DETAIL, E_SLOT
    from boards.emulated import Emulation
    clock = VirtualClock()
    w = Emulation(clock, seed=3, profile="luminaire", tags=True)
    tags = board_tags(w.board, (), {"i2c": w.i2c})
    assert [t[0] for t in tags] == ["led-engine", "led-driver"]
    # the tags alone (the luminaire's sensors, drivers and channels would not
    # fit this port's heap beside the emulation: code is in RAM here)
    ag = Agent("dev-mp", [Parts(slots_for([], tags))], RingLog(EmulatedNOR(1024, 8), "dev-mp"),
               clock, interval_ms=60000, sample_ms=5000).start()
    _run(ag, clock, 3)
    got = {}
    for e in ag.log.events:
        got[e[E_SLOT]] = (e[E_COMP], e[E_DETAIL])
    assert got["led-engine"][0].startswith("at24cs02-") and got["led-engine"][1] == "TL-LED-150W", got
    assert got["led-driver"][0].startswith("24aa02e48-0004a3") and got["led-driver"][1] == "TL-DRV-150W-48V", got
    # part_tags over the board's: the driver's slot now at 0x55 (nothing there), an extra slot added
    tags = board_tags(w.board, ["led-driver=24aa02e48@0x55", "fan=at24cs02@0x56"], {"i2c": w.i2c})
    assert [(t[0], t[1].addr) for t in tags] == [("led-engine", 0x50), ("led-driver", 0x55), ("fan", 0x56)]


def test_a_tag_slot_reads_its_passport_at_install_and_writes_checkpoints():
    # agent/parttags.py under MicroPython: the passport is read from the
    # EEPROM at the install and again at each checkpoint (not kept)
    from agent.parttags import tags
    bus = EmulatedI2C()
    bus.attach(0x44, SHT4xModel(serial=0x11111111))
    chip = AT24CS02Model(busy_polls=1)
    bus.attach(0x50, chip)
    bus.attach(0x58, chip.security())
    chip.mem[0:64] = P.Passport("FAN-12V", rated_h=30000).encode(1)
    clock = VirtualClock()
    chans = [ClimateChannel(SHT4x(bus, sleep_ms=_none))]
    (slot, drv), = tags(["fan=at24cs02@0x50"], bus)
    drv.sleep_ms = _none
    parts = Parts(slots_for(chans, [(slot, drv)]), period_ms=5000, checkpoint_ms=60000)
    ag = Agent("dev-mp", chans + [parts], RingLog(EmulatedNOR(1024, 8), "dev-mp"), clock,
               interval_ms=60000, sample_ms=5000).start()
    _run(ag, clock, 12 * 5 + 1)                       # five minutes: the install, then a checkpoint a minute
    assert table(ag.log)["fan"] == "at24cs02-101112131415161718191a1b1c1d1e1f", table(ag.log)
    assert [e[7] for e in ag.log.events if e[3] == "fan"] == ["FAN-12V"]
    q, why = P.read(drv, 1)
    assert why is None and q.installs == 1 and q.installed_s == 300 and q.seq == 1 + 6, (why, q.seq)
    assert parts.faults == {}, parts.faults
