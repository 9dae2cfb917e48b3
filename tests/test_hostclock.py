"""The Pi's host clock counts as good only while the system says it is
synchronised (agent/port/cpython.py): the parsing of adjtimex(2) and
timedatectl, what this machine reports, and the clock's quality following it."""
import subprocess

from agent.clock import RealClock, WALL_HOST, WALL_NONE, WALL_NTP
from agent.port import cpython


def test_adjtimex_and_timedatectl_answers_are_parsed():
    assert cpython.parse_adjtimex(0, 0x2001) is True           # TIME_OK, PLL and nano, synced
    assert cpython.parse_adjtimex(1, 0x0001) is True           # TIME_INS: a leap second pending
    assert cpython.parse_adjtimex(5, 0x0040) is False          # TIME_ERROR with STA_UNSYNC
    assert cpython.parse_adjtimex(0, 0x0040) is False          # STA_UNSYNC alone
    assert cpython.parse_adjtimex(5, 0x0001) is False          # TIME_ERROR alone
    assert cpython.parse_adjtimex(-1, 0) is False
    assert cpython.parse_timedatectl("yes\n") is True
    assert cpython.parse_timedatectl("no\n") is False
    assert cpython.parse_timedatectl("") is None
    assert cpython.parse_timedatectl("System has not been booted with systemd") is None


def test_what_this_machine_reports_decides_the_clock_quality():
    ret, status = cpython._adjtimex()                          # Linux always answers a read
    synced = cpython.host_clock_synchronised()
    print("adjtimex ->", ret, hex(status), "synchronised:", synced)
    assert synced is cpython.parse_adjtimex(ret, status)
    try:
        r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                           capture_output=True, text=True, timeout=5)
        td = cpython.parse_timedatectl(r.stdout) if r.returncode == 0 else None
    except OSError:
        td = None
    if td is not None:                                         # where systemd runs, they agree
        assert td is synced
    c = RealClock(host_sync=cpython.host_clock_synchronised)
    assert c.wall_quality == (WALL_HOST if synced else WALL_NONE)
    assert (c.wall_s() > 0) is synced


def test_the_clock_follows_the_system_and_ntp_of_its_own_wins():
    said = [False]
    c = RealClock(host_sync=lambda: said[0])
    assert c.wall_quality == WALL_NONE and c.wall_s() == 0
    said[0] = True
    c._asked -= 60000                                          # the next check is due
    assert c.wall_quality == WALL_HOST and c.wall_s() > 1577836800
    said[0] = None                                             # cannot tell: not trusted
    c._asked -= 60000
    assert c.wall_quality == WALL_NONE
    c.set_wall(1767225600000)                                  # our own NTP: the host is not asked
    assert c.wall_quality == WALL_NTP and c.wall_s() // 10 == 176722560
