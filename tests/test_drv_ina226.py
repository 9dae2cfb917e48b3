"""TI INA226 current/power monitor (drivers/ina226.py): datasheet example,
calibration, id checks, read-back within one LSB, full scale, silent reset,
every fault kind typed and recovered from, short reads."""
import errno

import pytest
from hypothesis import given, settings, strategies as st

from conftest import rig, per_reading, short_at, fail_kth, assert_typed
from drivers.errors import BusTimeout, ChipIdError, CRCError, NackError, RangeError
from drivers.ina226 import INA226
from hil.buses.i2c import EmulatedI2C
from hil.twins.ina226 import INA226Model

pytestmark = pytest.mark.emulator_exact


def ina(bus_mV=12000, cur_mA=500, shunt=100, lsb=25, **model_kw):
    m = INA226Model(shunt_milliohm=shunt, **model_kw)
    m.set(bus_mV=bus_mV, current_mA=cur_mA)
    return rig(0x40, m, INA226, shunt_milliohm=shunt, current_lsb_ua=lsb)


def test_ina226_datasheet_example():
    # SBOS547 "Configure/Measure/Calculate Example": 10 A through 2 mohm, VBUS
    # 11.98 V, current LSB 1 mA: CAL 0x0A00, shunt 0x1F40, bus 0x2570,
    # current 0x2710, power 0x12B8 (4792 x 25 mW = 119.8 W)
    bus, m, drv, _ = ina(11980, 10000, shunt=2, lsb=1000)
    assert drv.calibration == 0x0A00 == m.cal
    assert drv.read() == (11980, 10000, 119800)
    assert [m.register(r) for r in (1, 2, 4, 3)] == [0x1F40, 0x2570, 0x2710, 0x12B8]


@pytest.mark.parametrize("shunt, lsb, cal", [(2, 1000, 2560), (100, 25, 2048), (100, 100, 512),
                                             (10, 250, 2048), (1, 200, 25600), (3, 1000, 1706)])
def test_ina226_calibration_formula(shunt, lsb, cal):
    # cal = trunc(0.00512 / (lsb[A] * R[ohm]))
    assert INA226(EmulatedI2C(), shunt_milliohm=shunt, current_lsb_ua=lsb).calibration == cal
    assert cal == int(0.00512 / (lsb * 1e-6 * shunt * 1e-3) + 1e-9)


def test_ina226_rejects_impossible_calibration():
    for shunt, lsb in ((1, 100), (100000, 1000), (0, 25), (100, 0)):
        with pytest.raises(ValueError):
            INA226(EmulatedI2C(), shunt_milliohm=shunt, current_lsb_ua=lsb)


def test_ina226_init_checks_ids_and_configures():
    bus, m, drv, _ = ina()
    assert m.config == 0x4527 and m.cal == 2048
    assert bus.transactions == 4          # manufacturer, die id, config, calibration


@pytest.mark.parametrize("kw, words", [
    ({"die_id": 0x2270}, ["die id", "0x0227", "INA260", "want 0x0226"]),
    ({"die_id": 0x3220}, ["INA3221"]),
    ({"manufacturer": 0x0000}, ["manufacturer id reads 0x0000", "unknown chip", "0x5449"]),
    ({"manufacturer": 0xFFFF}, ["bus floating"]),
])
def test_ina226_wrong_chip_names_what_it_found(kw, words):
    m = INA226Model(**kw)
    bus = EmulatedI2C()
    bus.attach(0x40, m)
    with pytest.raises(ChipIdError) as ei:
        INA226(bus).init()
    assert_typed(ei, NackError, "nack", "INA226@0x40")
    for w in words:
        assert w in str(ei.value)


def test_ina226_die_revision_is_not_checked():
    bus, m, drv, _ = ina(die_id=0x2261)
    assert drv.read() == (12000, 500, 6000)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 36000), st.integers(-3000000, 3000000),
       st.sampled_from([(100, 25), (2, 1000), (10, 250), (20, 100)]))
def test_ina226_reads_back_within_one_lsb(bus_mV, cur_uA, cfg):
    shunt, lsb = cfg
    fs_uA = min(81920000 // shunt, 32766 * lsb)     # +-81.92 mV shunt, 16-bit current
    lim = fs_uA // 1000 - 1
    cur_mA = max(-lim, min(lim, cur_uA // 1000))
    bus, m, drv, _ = ina(bus_mV, cur_mA, shunt, lsb)
    (v, i, p), n = per_reading(bus, drv)
    assert n == 4
    assert 0 <= bus_mV - v <= 1                     # bus LSB 1.25 mV, truncated by the ADC
    step_uA = 2500 // shunt + 1                     # shunt LSB 2.5 uV over R
    err_i = (lsb + step_uA) // 1000 + 1
    assert abs(i - cur_mA) <= err_i
    err_p = (25 * lsb + abs(cur_mA) * 2 + bus_mV * err_i) // 1000 + 2
    assert abs(p - abs(cur_mA) * bus_mV // 1000) <= err_p


def test_ina226_current_register_full_scale_is_a_range_error():
    bus, m, drv, _ = ina(12000, 40000, shunt=2, lsb=1000)   # 80 mV: 40000 LSB > 32767
    with pytest.raises(RangeError) as ei:
        drv.read()
    assert_typed(ei, RangeError, "range", "INA226@0x40")
    assert "full scale (32767)" in str(ei.value)
    m.set(current_mA=-41000)                        # the shunt ADC saturates too
    with pytest.raises(RangeError):
        drv.read()
    m.set(current_mA=32000)
    assert drv.read() == (12000, 32000, 384000)


def test_ina226_silent_reset_detected_recalibrated_and_counted():
    bus, m, drv, _ = ina(24000, 750)
    assert drv.read() == (24000, 750, 18000)
    m.silent_reset()
    assert m.cal == 0 and m.config == 0x4127
    value, n = per_reading(bus, drv)
    assert value == (24000, 750, 18000)             # no false 0 mA on the reading that finds it
    assert n == 5                                   # cal, config+cal writes, bus, shunt
    assert drv.resets == 1 and m.cal == 2048 and m.config == 0x4527
    assert per_reading(bus, drv) == ((24000, 750, 18000), 4)
    assert drv.resets == 1
    bus.writeto_mem(0x40, 0x00, b"\x80\x00")        # config bit 15: the chip's own reset
    assert drv.read() == (24000, 750, 18000) and drv.resets == 2


def test_ina226_reset_with_failing_reconfig_counted_once():
    bus, m, drv, _ = ina(24000, -750)
    m.silent_reset()
    fail_kth(bus, 1)                                # the config write
    with pytest.raises(NackError):
        drv.read()
    assert drv.resets == 0 and m.cal == 0
    assert drv.read() == (24000, -750, 18000) and drv.resets == 1


@pytest.mark.parametrize("err, cls, kind", [(errno.EIO, NackError, "nack"),
                                            (errno.ETIMEDOUT, BusTimeout, "timeout")])
def test_ina226_nack_or_timeout_on_each_transaction_then_recovers(err, cls, kind):
    bus, m, drv, _ = ina(5000, -120)
    for k in range(4):
        fail_kth(bus, k, err)
        with pytest.raises(cls) as ei:
            drv.read()
        assert_typed(ei, cls, kind, "INA226@0x40")
        assert ei.value.errno == err
        assert drv.read() == (5000, -120, 600)


def test_ina226_absent_then_back():
    bus, m, drv, _ = ina()
    bus.absent(0x40)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV
    with pytest.raises(NackError):
        INA226(bus).init()
    bus.absent(0x40, False)
    assert drv.read() == (12000, 500, 6000)


# A read cut short: the master clocks in 0xFF for the bytes not sent. Cut
# before the first byte (0xFFFF), every register but current holds a value no
# INA226 gives; cut after the high byte, only calibration is caught (it must
# read back as written): bus 0x2580 -> 0x25FF and power 0x2580 -> 0x25FF are
# possible values, as is any current (0x4E20 -> 0x4EFF). The table pins what is and is not caught.
@pytest.mark.parametrize("reg, nbytes, outcome", [
    (0x05, 0, "calibration reads 0xffff, 0x0800 written"),
    (0x05, 1, "calibration reads 0x08ff, 0x0800 written"),
    (0x02, 0, "bus voltage 0xffff has bit 15 set"),
    (0x02, 1, ((0x25FF * 5 + 2) // 4, 500, 6000)),
    (0x04, 0, (12000, 0, 6000)),                    # current 0xFFFF = -1 LSB: -25 uA
    (0x04, 1, (12000, (0x4EFF * 25 + 500) // 1000, 6000)),     # 0x4E20 -> 0x4EFF
    (0x03, 0, "power 0xffff beyond current x bus"),
    (0x03, 1, (12000, 500, (0x25FF * 625 + 500) // 1000)),
])
def test_ina226_short_reads(reg, nbytes, outcome):
    bus, m, drv, _ = ina(12000, 500)
    short_at(bus, 0x40, reg, nbytes)
    if isinstance(outcome, tuple):
        assert drv.read() == outcome
    else:
        with pytest.raises(CRCError) as ei:
            drv.read()
        assert_typed(ei, CRCError, "crc", "INA226@0x40")
        assert outcome in str(ei.value)
    assert drv.read() == (12000, 500, 6000)
