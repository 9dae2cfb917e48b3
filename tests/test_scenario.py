"""The asset profiles behave like the assets they stand for, seeded and
integer-exact, and faults scheduled in them fire and end on time."""
from agent.clock import VirtualClock
from hil.scenario import BoosterPump, FaultSchedule, Luminaire

HOUR = 3600000


def at(clock, profile, hour):
    clock.advance_ms(hour * HOUR - clock.world_ms())
    profile.advance()


def test_luminaire_follows_its_dimming_schedule_and_daylight():
    clock = VirtualClock(start_wall_s=1767225600)       # midnight UTC
    lum = Luminaire(clock, seed=3)
    at(clock, lum, 2)
    assert lum.level == 0 and lum.bh1750() == 0 and lum.ina226()[1] == 0   # night: off
    at(clock, lum, 10)
    assert lum.level == 1000
    lux_10 = lum.bh1750()
    # full light (less the LEDs' lumen depreciation) plus 100 lux of daylight at 10:00
    assert abs(lux_10 - (900 * lum.maint_ppm() // 1000 + 100 * 1000)) <= 501
    assert 999000 < lum.maint_ppm() < 1000000
    v, ma = lum.ina226()
    assert abs(v - 48000) <= 30 and abs(ma - 150000 * 1000 // 48000) <= 5
    at(clock, lum, 19)
    assert lum.level in (300, 800)                   # evening, or someone walked in
    day_lux_h = lum.true_lux_ms // HOUR
    assert 9000 < day_lux_h < 16000                  # lux-hours delivered by 19:00


def test_luminaire_derates_when_its_heat_sink_is_hot():
    clock = VirtualClock()
    lum = Luminaire(clock, seed=1)
    at(clock, lum, 9)
    lum.sink_mC = 75000                              # a blocked vent
    clock.advance_ms(5000)
    lum.advance()
    assert lum.level == 750


def test_pump_cycles_between_its_tank_levels_and_wears():
    clock = VirtualClock()
    pump = BoosterPump(clock, seed=2)
    lows, highs, vib = [], [], []
    for _ in range(48 * 60):                         # two days, minute by minute
        clock.advance_ms(60000)
        pump.advance()
        lows.append(pump.level_l)
        if pump.running:
            vib.append(pump.vibration_mg())
    assert pump.true_starts >= 4
    assert min(lows) >= pump.TANK_L // 5 - 400 and max(lows) <= pump.TANK_L * 9 // 10 + 400
    # litres pumped follow run time at the rated flow (integer steps of 5 s)
    exact = pump.true_run_ms * pump.RATED_LPM // 60
    assert 0 <= exact - pump.true_litres_mL <= pump.true_run_ms // 5000 + 1
    assert pump.wear == pump.true_run_ms // 1000     # 1 ppm per running second
    pump.running = False
    assert sum(vib) // len(vib) > 100 > pump.vibration_mg()   # running shakes, stopped does not
    v, a, w, kwh = pump.sdm630()
    assert len(v) == 3 and 500 < kwh < 500 + 5.5 * 48


def test_profiles_are_seeded_and_repeatable():
    def run(seed):
        clock = VirtualClock()
        lum = Luminaire(clock, seed=seed)
        out = []
        for _ in range(600):
            clock.advance_ms(60000)
            out.append((lum.bh1750(), lum.ina226(), lum.sht4x()))
        return out
    assert run(5) == run(5) and run(5) != run(6)


def test_profiles_make_stress_humid_nights_hot_afternoons_worn_leds():
    from hil.scenario import Compressor, rh_at
    assert rh_at(20000, 20000) == 10000 and 4700 < rh_at(30600, 20000) < 5300
    clock = VirtualClock()
    c = Compressor(clock, seed=4)
    lum = Luminaire(clock, seed=4)
    night_rh, day_t = [], []
    for _ in range(3 * 24 * 60):
        clock.advance_ms(60000)
        t, rh = c.sht3x()
        h = (clock.world_ms() % (24 * HOUR)) // HOUR
        if 3 <= h < 6 and not c.running:
            night_rh.append(rh)
        if 15 <= h < 17:
            day_t.append(lum.sht4x()[0])
        lum.advance()
    assert max(night_rh) > 9000                    # a cold idle head near the dew point
    assert max(day_t) > 6000                       # the lit heat sink on a hot afternoon
    assert lum.maint_ppm() < 995000                # lumens lost after three days lit


def test_fault_schedule_fires_and_ends_in_time_order():
    log = []
    fs = FaultSchedule([(5000, "absent", "bh1750", 60000), (1000, "crc", "sht4x", 0),
                        (7000, "melt", "x", 0)])
    fs.on("absent", "bh1750", lambda: log.append("bh off"), lambda: log.append("bh on"))
    fs.on("crc", "sht4x", lambda: log.append("crc"))
    fs.due(999)
    assert log == []
    fs.due(6000)
    assert log == ["crc", "bh off"]
    fs.due(64999)
    assert log == ["crc", "bh off"] and fs.unknown == 1
    fs.due(65000)
    assert log == ["crc", "bh off", "bh on"]
    assert [f[1] for f in fs.fired] == ["crc", "absent"]
