# Remote config: the retained, MAC'd message on tally/v1/<device>/config.
# Portable; the device applies it and the collector checks one before it
# signs and publishes it, with the same rules.
#
# A config is a map {"v": 1, "version": n, <setting>: int, ...}. Versions
# only go up: a device ignores the one it already runs (a retained message
# comes again on every connect) and rejects an older one, also after a reboot
# (the highest version applied is kept in the log). A rejected config changes
# nothing; the device answers every new message on .../cfgack with
# {"v": 1, "version": n, "ok": true, "active": n}, or on a refusal
# {"v": 1, "version": n, "ok": false, "active": version in force, "reason": str}.
# Whatever it is sent, of whatever shape, is answered or ignored, never raised.

import hashlib

from agent import cbor
from agent import cose

I64 = 1 << 63      # settings fit a signed 64-bit ledger column
V_END = 1 << 31    # versions are 1 .. 2^31-1: no cfgack can push the next one out of any column

# setting -> (lowest, highest)
SETTINGS = {
    "interval_s": (1, 86400),
    "sample_ms": (10, 3600000),
    "batch_max": (1, 600),
    "max_latency_s": (0, 7 * 86400),
    "window": (1, 32),
    "drain_bps": (0, 100000000),
}


class ConfigError(ValueError):
    pass


def _show(x):
    """A received value, short enough for a reason (a huge one is not printed)."""
    if type(x) is int and not -I64 <= x < I64:
        return "an integer out of range"
    if isinstance(x, (str, bytes)) and len(x) > 32:
        x = x[:32]
    return repr(x)[:40]


def check(cfg, active=0):
    """The settings of a decoded config, validated; raises ConfigError with
    the reason. active is the version in force (a new one must be higher)."""
    if not isinstance(cfg, dict):
        raise ConfigError("config is not a map")
    if cfg.get("v") != 1:
        raise ConfigError("unknown config format v=%s" % _show(cfg.get("v")))
    ver = cfg.get("version")
    if type(ver) is not int or not 0 < ver < V_END:
        raise ConfigError("version must be an integer from 1 to %d" % (V_END - 1))
    if ver <= active:
        raise ConfigError("version %d is not newer than %d" % (ver, active))
    out = {}
    for k in cfg:
        if type(k) is not str:
            raise ConfigError("a setting's name is not text: %s" % _show(k))
        if k == "v" or k == "version":
            continue
        if k not in SETTINGS:
            raise ConfigError("unknown setting %s" % _show(k))
        val = cfg[k]
        lo, hi = SETTINGS[k]
        if type(val) is not int or not lo <= val <= hi:
            raise ConfigError("%s=%s is not an integer in %d..%d" % (k, _show(val), lo, hi))
        out[k] = val
    if "interval_s" in out and "sample_ms" in out and out["sample_ms"] > out["interval_s"] * 1000:
        raise ConfigError("sample_ms=%d is longer than interval_s=%d"
                          % (out["sample_ms"], out["interval_s"]))
    return out


REASON_MAX = 120     # characters of a refusal reason sent back on cfgack


class Config:
    """The device's side: the version in force and what to answer.

    floor is the highest version this device ever applied, persisted in its
    log (persist(version) is called before a newer one takes effect), so an
    older config is refused after a reboot too. version is the one whose
    settings are in force in this boot: 0 (the local settings) after a
    reboot until the retained config comes again and is re-applied."""

    def __init__(self, floor=0):
        self.version = 0
        self.floor = floor
        self.rejected = 0
        self.persist = None           # callable(version), may raise OSError
        self._refused = None          # digest of the last refused message

    def offer(self, payload, key, device_id):
        """Returns None for the config already in force, or a refused message
        seen again (a retained one comes back on every connect); otherwise a
        dict with "ack" (CBOR to MAC and publish on .../cfgack) and "apply"
        (the settings to apply, or None when refused). Never raises on what
        it is sent."""
        try:
            d = hashlib.sha256(bytes(payload)).digest()
        except (TypeError, ValueError):
            return self._no(0, "not bytes", None)
        if d == self._refused:
            return None
        try:
            return self._offer(payload, key, device_id, d)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            return self._no(0, "malformed: %s" % (e,), d)

    def _offer(self, payload, key, device_id, d):
        try:
            body = cose.verify(payload, key, device_id)
        except ValueError as e:
            return self._no(0, "bad tag: %s" % e, d)
        try:
            cfg = cbor.loads(body)
        except ValueError as e:
            return self._no(0, "malformed: %s" % e, d)
        ver = cfg.get("version", 0) if isinstance(cfg, dict) else 0
        if type(ver) is not int or not 0 < ver < I64:
            ver = 0
        if ver and ver == self.version:
            return None
        try:
            # the one in force before a reboot comes again: re-apply it
            settings = check(cfg, ver - 1 if ver and ver == self.floor else self.floor)
        except ConfigError as e:
            return self._no(ver, str(e), d)
        if ver > self.floor and self.persist is not None:
            try:
                self.persist(ver)
            except OSError as e:
                # not durable: refused, so a reboot cannot bring back an older one;
                # the retained message comes again on the next connect
                return self._no(ver, "log: cannot persist the version: %s" % (e,), None)
        self.version = ver
        if ver > self.floor:
            self.floor = ver
        self._refused = None
        return {"apply": settings,
                "ack": cbor.dumps({"v": 1, "version": ver, "ok": True, "active": ver})}

    def _no(self, ver, reason, digest):
        self.rejected += 1
        self._refused = digest
        return {"apply": None,
                "ack": cbor.dumps({"v": 1, "version": ver, "ok": False, "active": self.version,
                                   "reason": reason[:REASON_MAX]})}
