"""`tally probe`: for the engineer at the cabinet. Reads every sensor the
config installs on the board (its asset's set, its [sensor] settings) once
and prints, one line per sensor, where it is, what it is (the chip id or
serial where the chip has one) and what it reads, or what is wrong: absent
(no answer), wrong chip (naming the id found), CRC error, no answer in time,
a reading out of range, a bus that did not open. A pulse meter is watched
for --window seconds. Exit 0 when every sensor answered as it should, 1
when any did not, 2 for a config error. Works on the emulated board
(--board emulated, as tally run) so it can be tried and tested anywhere."""
import sys
import time

from agent.cli.common import err

# per sensor type: the driver's read() fields shown (index, label, divisor, unit)
_VI = ((0, "bus", 1000, "V"), (1, "current", 1000, "A"), (2, "power", 1000, "W"))
_TH = ((0, "temperature", 100, "C"), (1, "humidity", 100, "%RH"))
FIELDS = {
    "ina219": _VI,
    "ina226": _VI,
    "sht3x": _TH,
    "sht4x": _TH,
    "bme280": ((0, "temperature", 100, "C"), (1, "pressure", 100, "hPa"), (2, "humidity", 100, "%RH")),
    "adxl345": ((0, "x", 1000, "g"), (1, "y", 1000, "g"), (2, "z", 1000, "g")),
    "bh1750": ((None, "illuminance", 1000, "lx"),),
    "sdm120": ((0, "voltage", 10, "V"), (1, "current", 1000, "A"), (2, "power", 1, "W"),
               (3, "energy", 1000, "kWh")),
    "sdm630": ((0, "L1", 10, "V"), (1, "L2", 10, "V"), (2, "L3", 10, "V"), (9, "power", 1, "W"),
               (11, "import", 1000, "kWh")),
    "pms5003": ((4, "PM2.5", 1, "ug/m3"), (5, "PM10", 1, "ug/m3")),
    "pulse": ((0, "pulses", 1, ""), (1, "volume", 1000, "L")),
}


def _ident(kind, d, s):
    """What the chip says it is, where it can say."""
    if kind == "ina226":
        return "manufacturer 0x%04x, die id 0x%04x" % (d.reg16(0xFE), d.reg16(0xFF))
    if kind == "bme280":
        return "chip id 0x%02x" % d.reg8(0xD0)
    if kind == "adxl345":
        return "DEVID 0x%02x" % d.reg8(0x00)
    if kind == "sht4x":
        return "serial 0x%08x" % d.serial()
    if kind == "pulse":
        return d.ident()
    if kind in ("sdm120", "sdm630"):
        return "%s, Modbus slave %d" % (d.MODEL, s["slave"])
    return "no id register"


def _where(board, s):
    bus = board["buses"][s["bus"]]
    if "addr" in s:
        return "%s 0x%02x" % (s["bus"], s["addr"])
    if "slave" in s:
        return "%s slave %d" % (s["bus"], s["slave"])
    if bus["kind"] == "counter":
        return "%s GPIO%d" % (s["bus"], bus["pin"]) if "pin" in bus else s["bus"]
    return s["bus"]


def _fmt(kind, r):
    out = []
    for i, label, div, unit in FIELDS[kind]:
        v = r if i is None else r[i]
        places = len(str(div)) - 1
        out.append("%s %s%s" % (label, "%.*f" % (places, v / div), " " + unit if unit else ""))
    return ", ".join(out)


def _what(e):
    """A failure in the engineer's words, from the driver's typed error."""
    from drivers.errors import BusTimeout, ChipIdError, CRCError, NackError, RangeError
    if isinstance(e, ChipIdError):
        return "WRONG CHIP", str(e)
    if isinstance(e, CRCError):
        return "CRC ERROR", str(e)
    if isinstance(e, BusTimeout):
        return "NO ANSWER", str(e)
    if isinstance(e, NackError):
        return "ABSENT", str(e)
    if isinstance(e, RangeError):
        return "OUT OF RANGE", str(e)
    return "ERROR", str(e) or type(e).__name__


def _inner(driver):
    d = getattr(driver, "driver", driver)     # boards.Pick
    return getattr(d, "adxl", d)               # adxl345.Vibration


def probe(board, i2c, open_serial, open_counter, window_s=0.0, sleep=time.sleep):
    """Probe every sensor of an installed board once; returns one tuple per
    sensor: (sensor entry, where, status, identity or "", reading or the
    error). status is "ok" or what is wrong. i2c may be the OSError that
    opening the I2C bus raised: its sensors then say so."""
    import boards
    out = []
    for s in board["sensors"]:
        kind = s["type"]
        where = _where(board, s)
        if isinstance(i2c, OSError) and board["buses"][s["bus"]]["kind"] == "i2c":
            out.append((s, where, "BUS", "", "did not open: %s" % i2c))
            continue
        one = {"name": board["name"], "buses": board["buses"], "sensors": [s]}
        try:
            ch = boards.make_channels(one, i2c, open_serial, sleep_ms=lambda ms: sleep(ms / 1000),
                                      open_counter=open_counter)[0]
        except (OSError, ValueError) as e:
            out.append((s, where, "BUS", "", "did not open: %s" % e))
            continue
        d = _inner(ch.driver)
        ident = ""
        try:
            if hasattr(d, "init"):
                d.init()                       # checks the chip's id where it has one
            ident = _ident(kind, d, s)
            r = d.read()
            if kind == "pulse" and window_s > 0:
                sleep(window_s)
                r2 = d.read()
                r = (r2[0] - r[0], r2[1] - r[1])
                ident += ", in %g s" % window_s
            out.append((s, where, "ok", ident, _fmt(kind, r)))
        except OSError as e:
            status, msg = _what(e)
            out.append((s, where, status, ident, msg))
    return out


def report(board, asset, results, file=None):
    """The probe's lines; returns how many sensors are wrong."""
    file = file or sys.stdout
    print("tally probe: board %s as a %s, %d sensors" % (board["name"], asset, len(results)), file=file)
    bad = 0
    for s, where, status, ident, text in results:
        if status != "ok":
            bad += 1
        print("  %-8s %-16s %-12s %s%s" % (s["type"], where, status, ident + ": " if ident else "", text),
              file=file)
    print("tally probe: %s" % ("every sensor answered" if not bad else
                               "%d of %d sensors wrong" % (bad, len(results))), file=file)
    return bad


def run(a):
    from agent.cli.toml_config import ConfigError, installed, load_config
    try:
        cfg = load_config(a.config, board=a.board)
        if a.asset:
            cfg["asset"] = a.asset
        if a.air:
            cfg["air"] = a.air
        board = installed(cfg, cfg["board"])
    except ConfigError as e:
        return err("probe: %s" % e)
    closers = []
    if cfg["board"] == "emulated":
        from agent.clock import RealClock
        from boards.emulated import Emulation
        world = Emulation(RealClock(), seed=cfg.get("seed", 1), profile=cfg["asset"], air=cfg["air"],
                          overrides=cfg["sensors"])
        closers.append(world)
        i2c, open_serial, open_counter = world.i2c, world.open_serial, world.open_counter
    else:
        from agent.port import linux_bus
        n = board.get("i2c_bus", 1)
        try:
            i2c = linux_bus.SMBus2I2C(n)
            closers.append(i2c)
        except OSError as e:
            i2c = OSError("/dev/i2c-%d: %s" % (n, e.strerror or e))

        def open_counter(o):
            c = linux_bus.open_counter(o)
            closers.append(c)
            return c
        open_serial = linux_bus.open_serial
    try:
        results = probe(board, i2c, open_serial, open_counter, window_s=a.window)
    finally:
        for c in closers:
            c.close()
    return 1 if report(board, cfg["asset"], results) else 0


def add(sub):
    p = sub.add_parser("probe", help="read every sensor once: identity and reading, or what is wrong",
                       description="Read every sensor the config installs on the board once and print "
                       "its place, identity (chip id or serial where it has one) and reading, or what "
                       "is wrong: absent, wrong chip, CRC error, no answer, out of range. Exit 1 when "
                       "any sensor is wrong.")
    p.add_argument("--board", help="board name (emulated, rpi4, rpi-zero2w); overrides the config")
    p.add_argument("--config", help="TOML config file (as tally run reads it)")
    p.add_argument("--asset", choices=("compressor", "luminaire", "pump"),
                   help="the asset the board is installed on; overrides the config")
    p.add_argument("--air", choices=("rated", "measured"), help="a compressor's air source; overrides "
                   "the config (measured: probe its pulse flow meter too)")
    p.add_argument("--window", type=float, default=2.0, metavar="S",
                   help="seconds to count a pulse meter's pulses (default 2)")
    p.set_defaults(func=run)
