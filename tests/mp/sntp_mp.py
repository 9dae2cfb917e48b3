# agent.port.net_mp.Sntp under the MicroPython unix port, against the
# emulated NTP server (hil/harness/sntp_server.py; tests/test_device_boot.py starts it
# and runs this):
#   micropython -c "import sntp_mp; sntp_mp.main('127.0.0.1:PORT', N)"
# N queries, one line each: "Q ok <unix ms>" or "Q reject <why>"; then a
# clock without wall time is stepped until set: "CLOCK <set> <quality> <wall s>".
from agent.clock import RealClock, WALL_NONE
from agent.port.net_mp import Sntp


def main(server, n):
    clock = RealClock(WALL_NONE)
    c = Sntp(server, clock, timeout_ms=300)
    for _ in range(n):
        try:
            print("Q ok %d" % c.query())
        except (OSError, ValueError) as e:
            print("Q reject %s" % e)
    print("BEFORE %d %d" % (clock.wall_quality, clock.wall_s()))
    ok = c.step(0)
    print("CLOCK %s %d %d" % (ok, clock.wall_quality, clock.wall_s()))
