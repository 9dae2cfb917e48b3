"""Config for `tally run` (CPython only): a TOML file, checked at start.
A wrong key or value stops the agent with a message naming the key."""
import os
import socket

import boards
from agent.remote import SETTINGS

TOP = {
    # key: (type, check, description)
    "device_id": (str, lambda v: 0 < len(v) <= 64 and "/" not in v and "+" not in v and "#" not in v,
                  "1-64 characters without / + #"),
    "board": (str, lambda v: v in boards.HOST_BOARDS, "one of " + ", ".join(boards.HOST_BOARDS)),
    "asset": (str, lambda v: v in boards.ASSETS, "one of " + ", ".join(boards.ASSETS)
              + " (picks the board's sensor set)"),
    "air": (str, lambda v: v in ("rated", "measured"),
            "rated (a compressor's air is rated flow x run time) or measured (by its pulse flow meter)"),
    "interval_s": (int, lambda v: 1 <= v <= 86400, "an integer from 1 to 86400"),
    "sample_ms": (int, lambda v: 10 <= v <= 3600000, "an integer from 10 to 3600000"),
    "log_path": (str, lambda v: len(v) > 0, "a file path"),
    "log_kib": (int, lambda v: 1 <= v <= 1 << 20, "an integer from 1 to 1048576"),
    "broker": (str, lambda v: v.startswith(("mqtt://", "tcp://", "mqtts://", "ssl://")),
               "an mqtt://host:port or mqtts://host:port (TLS) URL"),
    "serial": (str, lambda v: v in ("pty", "loopback"), "pty or loopback (emulated board only)"),
    "seed": (int, lambda v: v >= 0, "a non-negative integer"),
    "key": (str, lambda v: 32 <= len(v) <= 128 and len(v) % 2 == 0 and
            all(c in "0123456789abcdefABCDEF" for c in v),
            "the device's MAC key as 32 to 128 hex digits"),
    # the ESP32 firmware's own (tally flash; tally run on a Pi leaves these to the OS)
    "wifi_ssid": (str, lambda v: 1 <= len(v) <= 32, "the Wi-Fi network's name, 1-32 characters"),
    "wifi_password": (str, lambda v: v == "" or 8 <= len(v) <= 63,
                      "a WPA2 passphrase of 8-63 characters, or \"\" for an open network"),
    "ntp": (str, lambda v: v == "" or _host_port(v),
            "an NTP server as host or host:port, or \"\" for none (default pool.ntp.org with wifi_ssid)"),
    "deep_sleep": (bool, lambda v: True, "true or false"),
    # component identity and swap events (agent/parts.py): adds part_faults to the schema
    "parts": (bool, lambda v: True, "true or false"),
    # ID EEPROM tags on parts with no identity of their own: ["motor=at24cs02@0x50", ...]
    "part_tags": (list, lambda v: _tags_ok(v), 'a list like ["motor=at24cs02@0x50", "fan=24aa02e48@0x51"]'),
    "awake_s": (int, lambda v: 1 <= v <= 3600, "an integer from 1 to 3600 (seconds awake per wake)"),
    "watchdog_s": (int, lambda v: v == 0 or 10 <= v <= 7200,
                   "0 (off) or 10 to 7200 seconds: longer than the longest step that does not feed "
                   "it (an MQTT connect, 5 s; an NTP exchange, 1 s)"),
    "ota_trial_s": (int, lambda v: 10 <= v <= 86400,
                    "10 to 86400 seconds: how long an update on trial may run without a batch acked "
                    "before it reboots (3 such boots roll it back, docs/ota.md; default 600)"),
    "log": (str, lambda v: v in ("partition", "file"),
            "partition (the tallylog flash partition) or file (a file on the board's filesystem)"),
}


def _host_port(v):
    host, _, port = v.partition(":")
    return bool(host) and " " not in host and (not port or port.isdigit() and 0 < int(port) < 65536)


# the uplink's settings, with the ranges a remote config may set them to
UPLINK_KEYS = ("batch_max", "max_latency_s", "window", "drain_bps")
for _k in UPLINK_KEYS:
    _lo, _hi = SETTINGS[_k]
    TOP[_k] = (int, lambda v, lo=_lo, hi=_hi: lo <= v <= hi, "an integer from %d to %d" % (_lo, _hi))
# [tls]: files for an mqtts:// broker (docs/security.md)
TLS_KEYS = {"ca": "the CA certificate file that signed the broker's certificate",
            "cert": "this device's client certificate file",
            "key": "the private key file of the client certificate"}
SENSOR_VALUE_TYPES = {"addr": int, "shunt_milliohm": int, "run_threshold_mA": int, "flow_lpm": int,
                      "hot_cC": int, "port": str, "baud": int, "slave": int, "current_lsb_ua": int,
                      "window": int, "alert_mg": int, "lit_mlux": int, "air": str, "run_threshold_W": int,
                      "ml_per_pulse": int, "medium": str, "stall_s": int}


def _tags_ok(v):
    from agent.parttags import parse_tag
    try:
        return len(v) <= 8 and len(set(parse_tag(x)[0] for x in v)) == len(v) and all(isinstance(x, str) for x in v)
    except (ValueError, AttributeError, TypeError):
        return False


class ConfigError(ValueError):
    pass


def defaults():
    dev = "tally-" + socket.gethostname().split(".")[0]
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return {"device_id": dev, "board": "emulated", "interval_s": 60, "sample_ms": 1000,
            "log_path": os.path.join(state, "tally", "log.bin"), "log_kib": 1024, "sensors": {},
            "asset": "compressor", "air": "rated"}


def validate(raw, where="config"):
    from boards.sensors import CHOICES, SENSORS
    keys = {name: row[3] for name, row in SENSORS.items()}    # sensor type -> its settings
    cfg = defaults()
    for key, val in raw.items():
        if key in keys:
            if not isinstance(val, dict):
                raise ConfigError("%s: [%s] must be a table" % (where, key))
            for k, v in val.items():
                if k not in keys[key]:
                    raise ConfigError("%s: unknown key '%s.%s' (known: %s)"
                                      % (where, key, k, ", ".join(keys[key])))
                t = SENSOR_VALUE_TYPES[k]
                if not isinstance(v, t) or isinstance(v, bool) or (t is int and v < 0):
                    raise ConfigError("%s: key '%s.%s' must be a %s, got %r"
                                      % (where, key, k, "non-negative integer" if t is int else "string", v))
                if k in CHOICES and v not in CHOICES[k]:
                    raise ConfigError("%s: key '%s.%s' must be one of %s, got %r"
                                      % (where, key, k, ", ".join(CHOICES[k]), v))
            cfg["sensors"][key] = dict(val)
            continue
        if key == "tls":
            cfg["tls"] = _tls(val, where)
            continue
        if key not in TOP:
            raise ConfigError("%s: unknown key '%s' (known: %s)"
                              % (where, key, ", ".join(sorted(list(TOP) + list(keys)
                                                              + ["tls"]))))
        t, ok, desc = TOP[key]
        if not isinstance(val, t) or (isinstance(val, bool) and t is not bool) or not ok(val):
            raise ConfigError("%s: key '%s' must be %s, got %r" % (where, key, desc, val))
        cfg[key] = val
    if cfg.get("tls") and not cfg.get("broker", "").startswith(("mqtts://", "ssl://")):
        raise ConfigError("%s: [tls] needs an mqtts:// broker URL in key 'broker'" % where)
    if cfg.get("broker") and not cfg.get("key"):
        raise ConfigError("%s: key 'key' is required with a broker: every message is MAC'd "
                          "with the device's key (32 hex digits, shared with the collector)" % where)
    if "wifi_password" in cfg and not cfg.get("wifi_ssid"):
        raise ConfigError("%s: key 'wifi_password' needs key 'wifi_ssid', the network's name" % where)
    if cfg.get("deep_sleep") and cfg.get("awake_s", 10) >= cfg["interval_s"]:
        raise ConfigError("%s: key 'awake_s' (%d) must be below interval_s (%d) with deep_sleep: "
                          "a wake is part of an interval" % (where, cfg.get("awake_s", 10), cfg["interval_s"]))
    if cfg["sample_ms"] > cfg["interval_s"] * 1000:
        raise ConfigError("%s: key 'sample_ms' (%d) must not exceed interval_s * 1000"
                          % (where, cfg["sample_ms"]))
    return cfg


def _tls(val, where):
    if not isinstance(val, dict):
        raise ConfigError("%s: [tls] must be a table" % where)
    for k, v in val.items():
        if k not in TLS_KEYS:
            raise ConfigError("%s: unknown key 'tls.%s' (known: %s)" % (where, k, ", ".join(TLS_KEYS)))
        if not isinstance(v, str) or not os.path.isfile(v):
            raise ConfigError("%s: key 'tls.%s' must be %s, and %r is not a file"
                              % (where, k, TLS_KEYS[k], v))
        if not os.access(v, os.R_OK):
            raise ConfigError("%s: key 'tls.%s': %s is not readable by this user" % (where, k, v))
    if ("cert" in val) != ("key" in val):
        raise ConfigError("%s: keys 'tls.cert' and 'tls.key' go together" % where)
    return dict(val)


def installed(cfg, board, where="config"):
    """The board as the config installs it: its asset's sensor set, the air
    source and every [sensor] table applied, checked (boards.board). A table
    naming a sensor the board does not carry, or a setting boards/check.py
    refuses, is one ConfigError line."""
    try:
        return boards.board(board, cfg.get("asset", "compressor"), cfg.get("sensors"),
                            cfg.get("air", "rated"))
    except boards.BoardError as e:
        raise ConfigError("%s: %s" % (where, e))


def load_config(path=None, board=None, check=True):
    """The config file checked; with check, its sensor tables against the
    board it names (tally flash checks them against the board it builds for)."""
    raw = {}
    if path:
        import tomllib
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as e:
            raise ConfigError("config %s: %s" % (path, e.strerror or e))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("config %s: not valid TOML: %s" % (path, e))
    cfg = validate(raw, "config " + path if path else "config")
    if board is not None:
        if board not in boards.HOST_BOARDS:
            raise ConfigError("--board: %r is not one of %s" % (board, ", ".join(boards.HOST_BOARDS)))
        cfg["board"] = board
    if check:
        installed(cfg, cfg["board"], "config " + path if path else "config")
    return cfg
