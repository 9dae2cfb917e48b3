"""INA219, SHT3x and SDM120 under the MicroPython unix port: the same script
prints the same values and the same typed faults as under CPython."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, MP


SMOKE = r'''
from hil.buses.i2c import EmulatedI2C
from hil.twins.ina219 import INA219Model
from hil.twins.sht3x import SHT3xModel
from hil.twins.sdm120 import SDM120Model, LoopbackPort
from drivers.ina219 import INA219
from drivers.sht3x import SHT3x
from drivers.modbus import ModbusRTU
from drivers.sdm120 import SDM120

def attempt(f):
    try:
        return f()
    except OSError as e:
        return (type(e).__name__, e.kind, e.errno, getattr(e, "code", None), e.msg)

bus = EmulatedI2C()
val = [(12000, 1000)]
ina_m = INA219Model(lambda: val[0])
bus.attach(0x40, ina_m)
ina = INA219(bus)
ina.init()
for v in ((12000, 1000), (24000, -1234), (3301, 17), (32000, 3199)):
    val[0] = v
    print("ina", attempt(ina.read))
ina_m.silent_reset()
print("ina reset", attempt(ina.read), ina.resets, ina_m.cal)
ina_m.overflow = True
print("ina ovf", attempt(ina.read))
ina_m.overflow = False
bus.fail_next(0x40)
print("ina nack", attempt(ina.read))
print("ina ok", attempt(ina.read))

sv = [(2500, 5000)]
sht_m = SHT3xModel(lambda: sv[0])
bus.attach(0x44, sht_m)
sht = SHT3x(bus, sleep_ms=lambda ms: None)
for v in ((2500, 5000), (-4500, 0), (13000, 0), (13000, 10000), (-1, 1), (4321, 8765)):
    sv[0] = v
    print("sht", attempt(sht.read))
sht_m.corrupt_crc_next = "rh"
print("sht crc", attempt(sht.read))
bus.absent(0x44)
print("sht absent", attempt(sht.read))
bus.absent(0x44, False)
print("sht ok", attempt(sht.read), bus.transactions)

mv = [(230.1, 1.234, 250.5, 1234.5678)]
sdm_m = SDM120Model(lambda: mv[0])
mb = ModbusRTU(LoopbackPort(sdm_m), timeout_ms=50)
sdm = SDM120(mb)
for v in ((230.1, 1.234, 250.5, 1234.5678), (0.0, 0.0, 0.0, 0.0), (241.35, 12.3456, -2000.5, 99999.99)):
    mv[0] = v
    print("sdm", attempt(sdm.read))
print("regs", mb.read_input_registers(1, 0, 4), mb.read_holding_registers(1, 0x14, 2))
sdm_m.exception_next = 4
print("sdm exc", attempt(sdm.read))
sdm_m.garble_next = True
print("sdm garble", attempt(sdm.read))
sdm_m.drop_next = True
print("sdm drop", attempt(sdm.read))
sdm_m.corrupt_crc_next = True
print("sdm crc", attempt(sdm.read))
print("sdm addr", attempt(lambda: mb.read_input_registers(1, 0x200, 2)))
mv[0] = (230.0, 1.0, 230.0, -1.0)
print("sdm neg", attempt(sdm.read))
mv[0] = (230.0, 1.0, 230.0, 5.0)
print("sdm ok", attempt(sdm.read))
'''


@pytest.mark.micropython
@pytest.mark.emulator_exact
@pytest.mark.skipif(not MP, reason="micropython unix port not installed")
def test_micropython_runs_drivers_bit_identical(tmp_path):
    mp = MP
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    env = dict(os.environ, MICROPYPATH=".", PYTHONPATH=ROOT)
    run = lambda argv: subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                                      text=True, timeout=60)
    # compiled from source on the device heap: 64K sat at the edge (fragmentation
    # decided it), and the identity reads (issue 15) pushed it over: 72K
    m = run([mp, "-X", "heapsize=72K", str(script)])
    assert m.returncode == 0, m.stdout + m.stderr
    c = run([sys.executable, str(script)])
    assert c.returncode == 0, c.stderr
    assert m.stdout == c.stdout
    out = c.stdout
    assert "ina (24000, -1234, 29616)" in out
    assert "ina reset (32000, 3199, 102368) 1 4096" in out
    assert "ina ovf ('RangeError', 'range'" in out
    assert "ina nack ('NackError', 'nack', 5" in out
    assert "sht (2500, 5000)" in out and "sht (-4500, 0)" in out and "sht (13000, 0)" in out
    assert "sht ('RangeError', 'range', None, None, 'SHT3x@0x44: both words saturated" in out
    assert "sht crc ('CRCError', 'crc', None, None, 'SHT3x@0x44: CRC mismatch on humidity" in out
    assert "sht absent ('NackError', 'nack', 19" in out
    assert "sdm (2301, 1234, 251, 1234568)" in out
    assert "sdm (2414, 12346, -2001, 99999992)" in out      # float32 of 99999.99
    assert "sdm exc ('NackError', 'nack', None, 4," in out
    assert "sdm garble ('CRCError'" in out and "sdm crc ('CRCError'" in out
    assert "sdm drop ('BusTimeout'" in out
    assert "sdm addr ('NackError', 'nack', None, 2," in out
    assert "sdm neg ('RangeError'" in out
    assert "sdm ok (2300, 1000, 230, 5000)" in out
