"""TI INA219 current/power monitor (drivers/ina219.py): calibration, values
through the twin, overflow, bus faults typed and recovered from, and a
silent reset re-initialised and counted once."""
import errno

import pytest
from hypothesis import given, settings, strategies as st

from conftest import EREMOTEIO
from drivers.errors import BusTimeout, NackError, RangeError
from drivers.ina219 import INA219
from hil.buses.i2c import EmulatedI2C
from hil.twins.ina219 import INA219Model


class Source:
    def __init__(self, *value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def ina_rig(bus_mV=12000, cur_mA=1000, **kw):
    bus = EmulatedI2C()
    src = Source(bus_mV, cur_mA)
    model = INA219Model(src, kw.get("shunt_milliohm", 100))
    bus.attach(0x40, model)
    drv = INA219(bus, 0x40, **kw)
    drv.init()
    return bus, src, model, drv




@pytest.mark.emulator_exact
def test_ina219_init_writes_config_and_calibration_4096():
    bus, src, model, drv = ina_rig()
    assert drv.calibration == 4096
    assert model.cal == 4096
    assert model.config == 0x399F


@pytest.mark.parametrize("shunt, lsb, cal", [
    (100, 100, 4096), (10, 1000, 4096), (50, 50, 16384), (100, 125, 3276), (2, 1000, 20480),
])
def test_ina219_calibration_formula(shunt, lsb, cal):
    # cal = trunc(0.04096 / (lsb[A] * R[ohm])), bit 0 read-only
    assert INA219(EmulatedI2C(), shunt_milliohm=shunt, current_lsb_ua=lsb).calibration == cal


def test_ina219_rejects_impossible_calibration():
    with pytest.raises(ValueError):
        INA219(EmulatedI2C(), shunt_milliohm=1, current_lsb_ua=1)       # 40960000 > 16 bits
    with pytest.raises(ValueError):
        INA219(EmulatedI2C(), shunt_milliohm=100000, current_lsb_ua=1000)   # 0


@pytest.mark.emulator_exact
@pytest.mark.parametrize("bus_mV, cur_mA, power_mW", [
    (12000, 1000, 12000),
    (24000, 2800, 67200),
    (24000, -1234, 29616),       # power register is a magnitude
    (5000, 0, 0),
    (3301, 17, 56),              # bus rounds down to 4 mV: 3300 mV
    (32000, -3200, 102400),
])
def test_ina219_values(bus_mV, cur_mA, power_mW):
    bus, src, model, drv = ina_rig(bus_mV, cur_mA)
    assert drv.read() == (bus_mV // 4 * 4, cur_mA, power_mW)
    assert src.calls == 1        # one conversion per reading
    assert drv.resets == 0


@pytest.mark.emulator_exact
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 32000), st.integers(-3200, 3200),
       st.sampled_from([(100, 100), (100, 125), (50, 100), (10, 1000)]))
def test_ina219_tracks_source(bus_mV, cur_mA, cfg):
    shunt, lsb = cfg
    if cur_mA * shunt > 320000:          # beyond the +-320 mV PGA range
        cur_mA = 320000 // shunt
    if cur_mA * shunt < -320000:
        cur_mA = -320000 // shunt
    bus, src, model, drv = ina_rig(bus_mV, cur_mA, shunt_milliohm=shunt, current_lsb_ua=lsb)
    v, i, p = drv.read()
    assert v == bus_mV - bus_mV % 4
    # shunt register resolution (10 uV), current LSB, calibration truncation
    err_i = 10 // shunt + lsb // 1000 + 1 + abs(cur_mA) // 2000
    assert abs(i - cur_mA) <= err_i
    true_mW = abs(cur_mA) * bus_mV // 1000
    err_p = 20 * lsb // 1000 + 1 + 4 * abs(cur_mA) // 1000 + bus_mV * err_i // 1000
    assert abs(p - true_mW) <= err_p


@pytest.mark.emulator_exact
def test_ina219_overflow_is_range_error_then_recovers():
    bus, src, model, drv = ina_rig()
    model.overflow = True
    with pytest.raises(RangeError) as ei:
        drv.read()
    assert isinstance(ei.value, OSError) and ei.value.kind == "range"
    assert "INA219@0x40" in str(ei.value)
    model.overflow = False
    assert drv.read() == (12000, 1000, 12000)


@pytest.mark.emulator_exact
@pytest.mark.parametrize("err, cls", [(errno.EIO, NackError), (EREMOTEIO, NackError),
                                      (errno.ETIMEDOUT, BusTimeout)])
def test_ina219_bus_faults_are_typed_then_recover(err, cls):
    bus, src, model, drv = ina_rig()
    bus.fail_next(0x40, 1, err)
    with pytest.raises(cls) as ei:
        drv.read()
    assert isinstance(ei.value, OSError)
    assert ei.value.errno == err
    assert drv.read() == (12000, 1000, 12000)


@pytest.mark.emulator_exact
def test_ina219_absent_is_nack_enodev():
    bus, src, model, drv = ina_rig()
    bus.absent(0x40)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV and ei.value.kind == "nack"
    bus.absent(0x40, False)
    assert drv.read() == (12000, 1000, 12000)


@pytest.mark.emulator_exact
def test_ina219_failure_midway_leaves_driver_usable():
    bus, src, model, drv = ina_rig(24000, 2000)
    before = bus.transactions
    drv.read()
    per_read = bus.transactions - before
    assert per_read == 4                     # cal, bus, current, power
    for k in range(per_read):                # fail each transaction in turn
        calls = []
        orig = bus.readfrom_mem_into

        def flaky(addr, reg, buf, addrsize=8):
            calls.append(reg)
            if len(calls) == k + 1:
                raise OSError(errno.EIO)
            return orig(addr, reg, buf, addrsize)
        bus.readfrom_mem_into = flaky
        with pytest.raises(NackError):
            drv.read()
        bus.readfrom_mem_into = orig
        assert drv.read() == (24000, 2000, 48000)


@pytest.mark.emulator_exact
def test_ina219_silent_reset_detected_and_reinitialised():
    bus, src, model, drv = ina_rig(24000, 2800)
    assert drv.read() == (24000, 2800, 67200)
    model.silent_reset()
    assert model.cal == 0
    # the very reading that finds the reset is still right (no false 0 mA)
    assert drv.read() == (24000, 2800, 67200)
    assert drv.resets == 1
    assert model.cal == 4096 and model.config == 0x399F
    assert drv.read() == (24000, 2800, 67200)
    assert drv.resets == 1


@pytest.mark.emulator_exact
def test_ina219_reset_with_failing_reinit_is_counted_once():
    bus, src, model, drv = ina_rig(24000, 2800)
    model.silent_reset()
    real = bus.writeto_mem

    def nack(*a, **kw):
        raise OSError(errno.EIO)
    bus.writeto_mem = nack
    with pytest.raises(NackError):
        drv.read()
    assert drv.resets == 0 and model.cal == 0
    bus.writeto_mem = real
    assert drv.read() == (24000, 2800, 67200)
    assert drv.resets == 1 and model.cal == 4096


@pytest.mark.emulator_exact
def test_ina219_model_reset_bit_and_cal_zero_reads_zero():
    bus, src, model, drv = ina_rig(12000, 1000)
    bus.writeto_mem(0x40, 0x00, b"\x80\x00")          # config bit 15: reset
    assert model.cal == 0 and model.config == 0x399F
    raw = bytearray(2)
    bus.readfrom_mem_into(0x40, 0x02, raw)
    assert ((raw[0] << 8 | raw[1]) >> 3) * 4 == 12000
    for reg in (0x04, 0x03):                           # current, power: 0 without cal
        bus.readfrom_mem_into(0x40, reg, raw)
        assert raw == b"\x00\x00"
    bus.readfrom_mem_into(0x40, 0x01, raw)              # shunt: 100 mV = 10000 x 10 uV
    assert (raw[0] << 8 | raw[1]) == 10000
