"""`tally bench drivers` rows: every driver in the table reads through its
emulated bus with no more bus transactions than the datasheet needs."""
from hil.bench import drivers_mp

# transactions per reading the datasheets call for
NEEDED = {
    "ina219": 4,    # bus voltage, current, power, and the calibration check for a silent reset
    "sht3x": 2,     # measure command, then the 6-byte read
    "sdm120": 2,    # two blocks of input registers (V/I/P, then total energy)
    "ina226": 4,    # calibration check, bus voltage, current, power
    "sht4x": 2,     # measure command, then the 6-byte read
    "bme280": 3,    # ctrl_hum+ctrl_meas in one write, one status poll, one 8-byte burst
    "adxl345": 1,   # one burst read of the data registers
    "bh1750": 2,    # one-time measurement command, then the 2-byte result
    "sdm630": 2,    # 0x0000 x76 and 0x0156 x2
}


def test_every_driver_row_reads_with_the_transactions_it_needs():
    for name, build in drivers_mp.ROWS:
        rate, per = drivers_mp.measure(build, n=5, runs=1)
        assert rate > 0
        assert per <= NEEDED[name], (name, per)
