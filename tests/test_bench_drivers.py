"""`tally bench drivers` rows: every driver in the table reads through its
emulated bus with no more bus transactions than the datasheet needs."""
from hil import drivers_bench

# transactions per reading the datasheets call for
NEEDED = {
    "ina219": 4,    # bus voltage, current, power, and the calibration check for a silent reset
    "sht3x": 2,     # measure command, then the 6-byte read
    "sdm120": 2,    # two blocks of input registers (V/I/P, then total energy)
}


def test_every_driver_row_reads_with_the_transactions_it_needs():
    for name, build in drivers_bench.ROWS:
        rate, per = drivers_bench.measure(build, n=5, runs=1)
        assert rate > 0
        assert per <= NEEDED.get(name, per), (name, per)
