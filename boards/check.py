# Board checks. A board is data (boards/*.py, or a TOML file for the test
# plugin): its MCU, its buses (I2C id, SDA/SCL pins, frequency; UART id, TX/RX
# pins, baud, or a serial device on Linux) and its sensors (driver, bus,
# address or Modbus slave id). check() refuses a board with a message naming
# the key, before anything opens a bus: a pin used twice, a sensor on a bus
# the board does not have, an address the chip cannot take, an unknown driver.
# Portable: the device checks its own board at start. What each driver needs
# (bus, addresses, settings, a fixed baud) is its row in boards/sensors.py.

from boards import BoardError
from boards.sensors import CHOICES, SENSORS


def _r(a, b):
    return tuple(range(a, b + 1))


_UART0 = "UART0, the REPL that mpremote and the USB bridge use"
_ESP32_RESERVED = {1: _UART0 + " (TX)", 3: _UART0 + " (RX)"}
for _g in _r(6, 11):
    _ESP32_RESERVED[_g] = "wired to the SPI flash"
_S3_RESERVED = {19: "USB D- (native USB: the REPL of the MicroPython S3 build)",
                20: "USB D+ (native USB: the REPL of the MicroPython S3 build)",
                43: _UART0 + " (TX)", 44: _UART0 + " (RX)"}
for _g in _r(26, 32):
    _S3_RESERVED[_g] = "wired to the SPI flash and PSRAM"
_PI = {"gpio": _r(0, 27), "reserved": {0: "the HAT ID EEPROM bus (ID_SD)", 1: "the HAT ID EEPROM bus (ID_SC)"},
       "input_only": (), "i2c": None, "uart": None, "counter": None, "family": "linux"}

# mcu -> rules. gpio: the GPIOs that exist; reserved: {gpio: what it is
# wired to}; input_only: GPIOs that cannot drive a line (no SDA, SCL or TX);
# i2c, uart: the peripheral ids (None: any, a Linux /dev/i2c-N); counter:
# the pulse counter units (ESP32 PCNT; None: an edge counter on any GPIO);
# family: "machine" (MicroPython: buses name their pins and UART id),
# "linux" (i2c-dev ids, serial devices by path), "emulated" (no pins).
MCUS = {
    "esp32": {"gpio": _r(0, 19) + _r(21, 23) + _r(25, 27) + _r(32, 39),
              "reserved": _ESP32_RESERVED, "input_only": _r(34, 39),
              "i2c": (0, 1), "uart": (1, 2), "counter": _r(0, 7), "family": "machine"},
    "esp32s3": {"gpio": _r(0, 21) + _r(26, 48), "reserved": _S3_RESERVED, "input_only": (),
                "i2c": (0, 1), "uart": (1, 2), "counter": _r(0, 3), "family": "machine"},
    "bcm2711": _PI,           # Raspberry Pi 4
    "bcm2710a1": _PI,         # Raspberry Pi Zero 2 W (RP3A0)
    "emulated": {"gpio": (), "reserved": {}, "input_only": (), "i2c": None, "uart": None,
                 "counter": None, "family": "emulated"},
}

# bus kind -> (pin keys, keys it may have)
BUS_KEYS = {
    "i2c": (("sda", "scl"), ("kind", "id", "sda", "scl", "freq")),
    "uart": (("tx", "rx"), ("kind", "id", "tx", "rx", "port", "baud")),
    # a pulse input: the GPIO, and on an ESP32 the PCNT unit that counts it
    "counter": (("pin",), ("kind", "id", "pin")),
}
_OUTPUT_PINS = ("sda", "scl", "tx")
KEY_HELP = {"id": "the peripheral number", "sda": "a GPIO number", "scl": "a GPIO number",
            "tx": "a GPIO number", "rx": "a GPIO number", "baud": "bits per second",
            "port": "the serial device, e.g. /dev/ttyUSB0", "pin": "a GPIO number"}


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _list(xs):
    return ", ".join(str(x) for x in xs)


def check(board):
    """Raise BoardError naming the first thing wrong with board; return board."""
    if not isinstance(board, dict):
        raise BoardError("board: must be a dict (a table in TOML), got %r" % (board,))
    for key in ("name", "mcu", "buses", "sensors"):
        if key not in board:
            raise BoardError("board %s: missing key %r" % (board.get("name", "?"), key))
    name = board["name"]

    def fail(msg, *args):
        raise BoardError("board %s: %s" % (name, msg % args))

    mcu = MCUS.get(board["mcu"])
    if mcu is None:
        fail("mcu %r is not one of %s", board["mcu"], _list(MCUS))
    buses = board["buses"]
    if not isinstance(buses, dict) or not buses:
        fail("'buses' must be a table of named buses")
    ids = _check_buses(buses, mcu, board["mcu"], fail)
    if "i2c_bus" in board and ("i2c", board["i2c_bus"]) not in ids:
        fail("'i2c_bus' %r (the bus tally run opens) is not the id of an I2C bus in 'buses'",
             board["i2c_bus"])
    _check_sensors(board["sensors"], buses, fail)
    _check_tags(board.get("tags", ()), board["sensors"], buses, fail)
    return board


def _check_buses(buses, mcu, mcu_name, fail):
    machine = mcu["family"] == "machine"
    pins = {}         # gpio -> "bus.key" that uses it
    ids = {}          # (kind, id) -> bus name
    for bname, bus in buses.items():
        if not isinstance(bus, dict) or bus.get("kind") not in BUS_KEYS:
            fail("bus %s: 'kind' must be one of %s", bname, _list(BUS_KEYS))
        kind = bus["kind"]
        pin_keys, allowed = BUS_KEYS[kind]
        for k in bus:
            if k not in allowed:
                fail("bus %s (%s) has unknown key %r (known: %s)", bname, kind, k, _list(allowed))
            if k not in ("kind", "port") and not (_int(bus[k]) and bus[k] >= 0):
                fail("bus %s: %r must be a non-negative integer, got %r", bname, k, bus[k])
        # a UART is a peripheral id on a microcontroller, a serial device on Linux
        by_port = kind == "uart" and not machine
        need = ("port", "baud") if by_port else ("id",) + (pin_keys if machine else ())
        need += ("baud",) if kind == "uart" and not by_port else ()
        if kind == "counter":     # a GPIO wherever there are pins; the unit is optional
            need = pin_keys if mcu["family"] != "emulated" else ()
        for k in need:
            if k not in bus:
                fail("bus %s: missing key %r (%s)", bname, k, KEY_HELP[k])
        if by_port and "id" in bus:
            fail("bus %s: a serial line on %s is a 'port' (a device path), not an 'id'", bname, mcu_name)
        if "port" in bus and (not by_port or not isinstance(bus["port"], str) or not bus["port"]):
            fail("bus %s: 'port' is a serial device path, and only for a UART on Linux", bname)
        if "baud" in bus and not 300 <= bus["baud"] <= 1000000:
            fail("bus %s: baud %d is not from 300 to 1000000", bname, bus["baud"])
        if "freq" in bus and not 10000 <= bus["freq"] <= 1000000:
            fail("bus %s: freq %d Hz is not from 10000 to 1000000", bname, bus["freq"])
        if "id" in bus:
            valid = mcu.get(kind)
            if valid is not None and bus["id"] not in valid:
                fail("bus %s: %s id %d does not exist on %s (ids: %s)", bname, kind.upper(),
                     bus["id"], mcu_name, _list(valid))
            other = ids.get((kind, bus["id"]))
            if other is not None:
                fail("bus %s: %s id %d is already bus %s", bname, kind.upper(), bus["id"], other)
            ids[(kind, bus["id"])] = bname
        for k in pin_keys:
            if k not in bus:
                continue
            g = bus[k]
            where = "%s.%s" % (bname, k)
            if g not in mcu["gpio"]:
                fail("%s: GPIO%d does not exist on %s", where, g, mcu_name)
            if g in mcu["reserved"]:
                fail("%s: GPIO%d is %s", where, g, mcu["reserved"][g])
            if k in _OUTPUT_PINS and g in mcu["input_only"]:
                fail("%s: GPIO%d is input-only on %s (GPIO%d-%d cannot drive %s)", where, g, mcu_name,
                     mcu["input_only"][0], mcu["input_only"][-1], k.upper())
            if g in pins:
                fail("%s: GPIO%d is already used by %s", where, g, pins[g])
            pins[g] = where
    return ids


def _check_sensors(sensors, buses, fail):
    if not isinstance(sensors, list):
        fail("'sensors' must be a list (an array of tables in TOML)")
    seen = {}         # (bus, addr or slave) -> index
    first = {}        # uart bus -> index of its first sensor
    for i, s in enumerate(sensors):
        kind = s.get("type") if isinstance(s, dict) else None
        if kind not in SENSORS:
            fail("sensors[%d]: unknown driver %r (known: %s)", i, kind, _list(SENSORS))
        need, addrs, baud, keys = SENSORS[kind][:4]
        what = "sensors[%d] (%s)" % (i, kind)
        bname = s.get("bus")
        if bname not in buses:
            fail("%s is on unknown bus %r (buses: %s)", what, bname, _list(buses))
        bus = buses[bname]
        have = "i2c" if need == "i2c" else "uart"
        if need == "counter":
            have = "counter"
        if bus["kind"] != have:
            fail("%s needs %s, and bus %s is %s", what, {"i2c": "an I2C bus", "uart": "a UART bus",
                 "counter": "a pulse input bus (kind counter, on a GPIO)"}[have],
                 bname, bus["kind"].upper() if bus["kind"] != "counter" else "a pulse input")
        key = {"i2c": "addr", "modbus": "slave", "uart": None, "counter": None}[need]
        known = ("type", "bus") + ((key,) if key else ()) + tuple(
            k for k in keys if k not in ("port", "baud", key))
        for k in s:
            if k in ("port", "baud"):
                fail("%s: %r belongs on its bus %s, not on the sensor", what, k, bname)
            if k not in known:
                fail("%s has unknown key %r (known: %s)", what, k, _list(known))
            if k in CHOICES and s[k] not in CHOICES[k]:
                fail("%s: %r must be one of %s, got %r", what, k, _list(CHOICES[k]), s[k])
        if key is not None:
            v = s.get(key)
            if not _int(v):
                fail("%s: missing or non-integer %r", what, key)
        if need == "i2c":
            if not 0x08 <= v <= 0x77:
                fail("%s: addr 0x%x is not a 7-bit I2C address (0x08-0x77)", what, v)
            if v not in addrs:
                fail("%s: addr 0x%02x is not an address the %s can take (%s)", what, v, kind,
                     _list("0x%02x" % a for a in addrs))
        elif need == "counter":
            j = first.get(bname)
            if j is not None:
                fail("%s needs a pulse input of its own, and bus %s already has sensors[%d] (%s)",
                     what, bname, j, sensors[j]["type"])
            first[bname] = i
        else:
            if need == "modbus" and not 1 <= v <= 247:
                fail("%s: slave %d is not a Modbus slave id (1-247)", what, v)
            if baud is not None and bus["baud"] != baud:
                fail("%s talks at %d baud, and bus %s is set to %d", what, baud, bname, bus["baud"])
            j = first.get(bname)
            if j is not None and need == "uart":
                fail("%s needs a UART of its own, and bus %s already has sensors[%d] (%s)", what,
                     bname, j, sensors[j]["type"])
            if j is not None and SENSORS[sensors[j]["type"]][0] == "uart":
                fail("%s: bus %s belongs to sensors[%d] (%s), which needs a UART of its own", what,
                     bname, j, sensors[j]["type"])
            first.setdefault(bname, i)
        if key is not None:
            other = seen.get((bname, v))
            if other is not None:
                fail("%s: %s %s on bus %s is already sensors[%d] (%s)", what, key,
                     ("0x%02x" % v) if need == "i2c" else str(v), bname, other, sensors[other]["type"])
            seen[(bname, v)] = i
    _check_air(sensors, fail)


TAG_CHIPS = ("at24cs02", "24aa02e48")     # agent/parts.py TAG_CHIPS


def _check_tags(tags, sensors, buses, fail):
    """ID EEPROM tags (boards/tags.py): a slot name once, a known chip on an
    I2C bus at 0x50-0x57, and no address (an AT24CS02 also answers at its
    serial block, the address | 0x08) that a sensor or another tag holds."""
    if not isinstance(tags, (list, tuple)):
        fail("'tags' must be a list of {slot, chip, bus, addr}")
    held = {}         # (bus, addr) -> what holds it
    for s in sensors:
        if "addr" in s:
            held[(s["bus"], s["addr"])] = "the %s" % s["type"]
    names = set()
    for i, t in enumerate(tags):
        what = "tags[%d]" % i
        if not isinstance(t, dict) or sorted(t) != ["addr", "bus", "chip", "slot"]:
            fail("%s must be a table {slot, chip, bus, addr}", what)
        slot = t["slot"]
        what = "tags[%d] (%s)" % (i, slot)
        if not isinstance(slot, str) or not slot or slot in names:
            fail("%s: the slot name must be text, once on the board", what)
        names.add(slot)
        if t["chip"] not in TAG_CHIPS:
            fail("%s: chip %r is not one of %s", what, t["chip"], _list(TAG_CHIPS))
        if buses.get(t["bus"], {}).get("kind") != "i2c":
            fail("%s: bus %r is not an I2C bus of the board", what, t["bus"])
        a = t["addr"]
        if not _int(a) or not 0x50 <= a <= 0x57:
            fail("%s: addr %r is not an ID EEPROM array address (0x50-0x57)", what, a)
        for x in (a, a | 0x08) if t["chip"] == "at24cs02" else (a,):
            other = held.get((t["bus"], x))
            if other is not None:
                fail("%s: address 0x%02x on bus %s is already %s", what, x, t["bus"], other)
            held[(t["bus"], x)] = "tag %s" % slot


def _check_air(sensors, fail):
    """The air a compressor bills comes from one source: the rated flow x run
    time of its supply sensor (air = "rated", flow_lpm > 0) or a pulse flow
    meter (medium = "air", with air = "measured" on the supply sensor)."""
    rated = [i for i, s in enumerate(sensors) if s["type"] in ("ina219", "ina226")
             and s.get("air", "rated") == "rated" and s.get("flow_lpm", 11 if s["type"] == "ina219" else 0)]
    measured = [i for i, s in enumerate(sensors) if s["type"] == "pulse" and s.get("medium") == "air"]
    wants = [i for i, s in enumerate(sensors) if s.get("air") == "measured"]
    if rated and measured:
        fail("sensors[%d] (pulse) meters air and sensors[%d] (%s) bills rated air (flow_lpm x run "
             "time): set air = \"measured\" on it to bill the pulse meter's air",
             measured[0], rated[0], sensors[rated[0]]["type"])
    if wants and not measured:
        fail("sensors[%d] (%s): air = \"measured\" needs a pulse flow meter with medium = \"air\" "
             "on the board (air = \"measured\" in the config adds the board's)", wants[0],
             sensors[wants[0]]["type"])
    media = {}
    for i, s in enumerate(sensors):
        if s["type"] == "pulse":
            m = s.get("medium", "water")
            if m in media:
                fail("sensors[%d] and sensors[%d] both meter %s: one pulse meter per medium",
                     media[m], i, m)
            media[m] = i
