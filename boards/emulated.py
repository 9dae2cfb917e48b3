# The emulated board: an asset scenario (hil/scenario.py) behind chip-level
# models on an emulated I2C bus, a Modbus meter on a serial line (in-process
# loopback, or a real pseudo-terminal opened with pyserial on CPython) and a
# pulse flow meter's twin on a counter (hil/twins/pulse.py).
from boards import asset_tags

BOARD = {
    "name": "emulated",
    "mcu": "emulated",
    "buses": {
        "i2c": {"kind": "i2c", "id": 0},
        "rs485": {"kind": "uart", "port": "emulated", "baud": 9600},
        "flow": {"kind": "counter"},
    },
    "sensors": [
        {"type": "ina219", "bus": "i2c", "addr": 0x40, "shunt_milliohm": 100, "rated_w": 80},
        {"type": "sht3x", "bus": "i2c", "addr": 0x44},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ],
    # the wear parts' ID EEPROM tags (boards/tags.py), twins with passports (Emulation)
    "tags": asset_tags("i2c", "compressor"),
}


# A luminaire sold as light (lux-hours): LED driver supply, light delivered,
# heat-sink climate (hil/scenario.py Luminaire).
LUMINAIRE = {
    "name": "emulated",
    "mcu": "emulated",
    "buses": {"i2c": {"kind": "i2c", "id": 0}},
    "sensors": [
        # 150 W at 48 V is 3.1 A: a 200 uA current LSB reads to 6.5 A
        {"type": "ina226", "bus": "i2c", "addr": 0x40, "shunt_milliohm": 10, "current_lsb_ua": 200,
         "run_threshold_mA": 100,
         # rated as the INA226 reads it at full output: its bus register tops
         # out at 40.96 V, so the 48 V bus reads low (128 W for 150 W)
         "rated_w": 128},
        {"type": "bh1750", "bus": "i2c", "addr": 0x23},
        {"type": "sht4x", "bus": "i2c", "addr": 0x44, "hot_cC": 7000},
    ],
    "tags": asset_tags("i2c", "luminaire"),
}

# A booster pump sold as water (m3, from its water meter's pulses): bearing
# vibration, cabinet climate and a three-phase meter that says when it runs
# (hil/scenario.py BoosterPump).
PUMP = {
    "name": "emulated",
    "mcu": "emulated",
    "buses": {
        "i2c": {"kind": "i2c", "id": 0},
        "rs485": {"kind": "uart", "port": "emulated", "baud": 9600},
        "flow": {"kind": "counter"},
    },
    "sensors": [
        {"type": "adxl345", "bus": "i2c", "addr": 0x53, "window": 16, "alert_mg": 250,
         "vib_class": 4, "vib_hz": 50},
        {"type": "bme280", "bus": "i2c", "addr": 0x76, "hot_cC": 4000},
        {"type": "sdm630", "bus": "rs485", "slave": 1, "run_threshold_W": 1000, "rated_w": 5500},
        {"type": "pulse", "bus": "flow", "ml_per_pulse": 10000, "medium": "water"},
    ],
    "tags": asset_tags("i2c", "pump"),
}

ASSETS = PROFILES = {"compressor": BOARD, "luminaire": LUMINAIRE, "pump": PUMP}
# the compressor's air meter (air = "measured"): 1 L of free air per pulse
AIR_METER = {"type": "pulse", "bus": "flow", "ml_per_pulse": 1000, "medium": "air"}


class Emulation:
    """The world around an emulated device: an asset profile (compressor,
    luminaire or pump) behind chip-level models on an emulated I2C bus and,
    where it has one, a Modbus meter on a serial line. faults: scheduled
    (at_ms, kind, target, duration_ms) for the luminaire and the pump, kinds
    absent, nack, short_read, silent_reset, crc, garble, drop, timeout,
    exception, swap (the part is replaced: its twin gets another serial);
    the target is a sensor type. swaps: add the profile's scheduled part
    swaps (hil/scenario.py SWAPS). tags: fit the board's ID EEPROM tags with
    twins (a device with parts on reads them; off, they would only take heap).
    physics: keyword arguments for the scenario (site, duty, the pump's
    bearing: hil/scenario.py), for the fleet simulation (hil/harness/fleet.py)."""

    def __init__(self, clock, seed=1, serial="loopback", profile="compressor", faults=(), swaps=False,
                 air="rated", overrides=None, tags=False, physics=None):
        from hil.buses.i2c import EmulatedI2C
        from hil import scenario as sc
        if profile not in PROFILES:
            raise ValueError("emulated board: profile %r is not one of %s"
                             % (profile, ", ".join(sorted(PROFILES))))
        self.profile = profile
        # the board as installed: its settings (overrides) and the air source
        # applied and checked; as it is otherwise (checked by the tests)
        import boards
        self.board = boards.board("emulated", profile, overrides, air) \
            if overrides or air != "rated" else PROFILES[profile]
        self.i2c = EmulatedI2C()
        ph = physics or {}
        self.meter = None
        self.pulse = None
        if profile == "compressor":
            from hil.twins.ina219 import INA219Model
            from hil.twins.sht3x import SHT3xModel
            from hil.twins.sdm120 import SDM120Model
            self.scenario = sc.Compressor(clock, seed, **ph)
            self.ina219 = INA219Model(self.scenario.ina219)
            self.sht3x = SHT3xModel(self.scenario.sht3x)
            self.meter = self.sdm120 = SDM120Model(self.scenario.sdm120)
            self.models = {"ina219": self.ina219, "sht3x": self.sht3x}
        elif profile == "luminaire":
            from hil.twins.ina226 import INA226Model
            from hil.twins.bh1750 import BH1750Model
            from hil.twins.sht4x import SHT4xModel
            s = self.scenario = sc.Luminaire(clock, seed, **ph)
            self.models = {"ina226": INA226Model(s.ina226, shunt_milliohm=10),
                           "bh1750": BH1750Model(s.bh1750), "sht4x": SHT4xModel(s.sht4x)}
        else:
            from hil.twins.adxl345 import ADXL345Model
            from hil.twins.bme280 import BME280Model
            from hil.twins.sdm630 import SDM630Model
            s = self.scenario = sc.BoosterPump(clock, seed, **ph)
            self.models = {"adxl345": ADXL345Model(s.adxl345), "bme280": BME280Model(s.bme280)}
            self.meter = SDM630Model(s.sdm630)
        for m in list(self.models.values()) + [self.meter]:
            if m is not None and hasattr(m, "serial"):
                m.serial = (m.serial + 7919 * seed) & 0x7FFFFFFF    # each device its own parts
        if profile == "pump" or air == "measured":
            from hil.twins.pulse import of_asset
            self.pulse = of_asset(self.scenario, self.board)
        self.addr = {}
        for sensor in self.board["sensors"]:
            if sensor["type"] in self.models:
                self.addr[sensor["type"]] = sensor["addr"]
                self.i2c.attach(sensor["addr"], self.models[sensor["type"]])
        self.tag_models = self._tags(seed) if tags else {}
        swaps = self.scenario.swaps(seed) if hasattr(self.scenario, "swaps") and swaps else []
        if faults or swaps:
            self._schedule(list(faults) + swaps)
        self.serial = serial
        self._pty = None
        self._ser = None

    def _tags(self, seed):
        """A twin for each of the board's ID EEPROM tags (boards/tags.py), with
        its own serial (seeded per device and slot) and the passport of the
        scenario's part in that slot (hil/scenario.py PARTS): part number,
        manufacture date, rated hours and cycles. A slot the scenario has no
        part for stays empty (no answer)."""
        out = {}
        try:
            from agent.passport import Passport
        except ImportError:
            return out          # a bundle built with parts off: nothing reads tags, none are fitted
        from hil.rng import Rng
        from hil.twins.eeprom24 import tag
        parts = getattr(self.scenario, "PARTS", {})
        for t in self.board.get("tags", ()):
            p = parts.get(t["slot"])
            if p is None:
                continue
            h = 0
            for k, c in enumerate(t["slot"]):
                h += (k + 1) * ord(c)             # the slot's own stream: no two profiles' parts alike
            r = Rng(seed * 1000003 + h)
            pp = Passport(p[0], 1, 2025, 1 + r.below(12), 1 + r.below(28), p[1], p[2])
            m = out[t["slot"]] = tag(t["chip"], r, pp)
            self.i2c.attach(t["addr"], m)
            if t["chip"] == "at24cs02":
                self.i2c.attach(t["addr"] | 0x08, m.security())
        return out

    def tags(self, extra=()):
        """(slot, EEPROM driver) for the board's tags and extra part_tags specs."""
        from agent import parttags
        return parttags.tags(parttags.tag_specs(self.board, extra), self.i2c)

    def _schedule(self, events):
        from hil.scenario import FaultSchedule
        fs = self.scenario.faults = FaultSchedule(events)
        bus = self.i2c
        for t, addr in self.addr.items():
            m = self.models[t]
            fs.on("absent", t, lambda a=addr: bus.absent(a), lambda a=addr: bus.absent(a, False))
            fs.on("nack", t, lambda a=addr: bus.fail_next(a, 1))
            fs.on("short_read", t, lambda a=addr: bus.short_read(a, 1))
            if hasattr(m, "silent_reset"):
                fs.on("silent_reset", t, m.silent_reset)
            if hasattr(m, "corrupt_crc_next"):
                fs.on("crc", t, lambda m=m: setattr(m, "corrupt_crc_next", True))
            if hasattr(m, "serial"):
                fs.on("swap", t, lambda m=m: _swap(m))
        p = self.pulse
        if p is not None:
            fs.on("stuck", "pulse", lambda: setattr(p, "stuck", True), lambda: setattr(p, "stuck", False))
        m = self.meter
        if m is not None:
            t = [x["type"] for x in self.board["sensors"] if "slave" in x][0]
            fs.on("garble", t, lambda: setattr(m, "garble_next", True))
            fs.on("crc", t, lambda: setattr(m, "corrupt_crc_next", True))
            fs.on("timeout", t, lambda: setattr(m, "drop_next", True))
            fs.on("exception", t, lambda: setattr(m, "exception_next", 4))
            fs.on("swap", t, lambda: _swap(m))

    def open_serial(self, port, baud):
        if self.serial == "pty":
            import serial as pyserial
            from hil.harness.pty_serial import PtyServer
            self._pty = PtyServer(self.meter)
            self._pty.start()
            self._ser = pyserial.Serial(self._pty.port, baud, timeout=0.2)
            return self._ser
        from hil.buses.serial_loop import LoopbackPort
        return LoopbackPort(self.meter)

    def open_counter(self, o):
        """The pulse meter's twin, counting as a PCNT unit would."""
        if self.pulse is None:
            raise OSError("emulated board: no pulse meter on the %s" % self.profile)
        self.pulse.ml_per_pulse = o.get("ml_per_pulse", 1000)
        return self.pulse

    def channels(self, overrides=None):
        import boards
        return boards.make_channels(self.board, self.i2c, self.open_serial,
                                    sleep_ms=lambda ms: None, overrides=overrides,
                                    open_counter=self.open_counter)

    def close(self):
        if self._ser is not None:
            self._ser.close()
        if self._pty is not None:
            self._pty.stop()


def _swap(model):
    """Another part of the same kind: a new serial (deterministic)."""
    model.serial = (model.serial * 1103515245 + 12345) & 0x7FFFFFFF or 1
