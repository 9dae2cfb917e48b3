# Remote config: the retained, MAC'd message on tally/v1/<device>/config.
# Portable; the device applies it and the collector checks one before it
# signs and publishes it, with the same rules.
#
# A config is a map {"v": 1, "version": n, <setting>: int, ...}. Versions
# only go up: a device ignores the one it already runs (a retained message
# comes again on every connect) and rejects an older one. A rejected config
# changes nothing; the device answers every new version on .../cfgack with
# {"v": 1, "version": n, "ok": bool, "active": version in force, "reason": str}.

from agent import cbor
from agent import cose

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


def check(cfg, active=0):
    """The settings of a decoded config, validated; raises ConfigError with
    the reason. active is the version in force (a new one must be higher)."""
    if not isinstance(cfg, dict):
        raise ConfigError("config is not a map")
    if cfg.get("v") != 1:
        raise ConfigError("unknown config format v=%r" % (cfg.get("v"),))
    ver = cfg.get("version")
    if type(ver) is not int or ver < 1:
        raise ConfigError("version must be a positive integer")
    if ver <= active:
        raise ConfigError("version %d is not newer than %d" % (ver, active))
    out = {}
    for k in cfg:
        if k in ("v", "version"):
            continue
        if k not in SETTINGS:
            raise ConfigError("unknown setting %r" % (k,))
        val = cfg[k]
        lo, hi = SETTINGS[k]
        if type(val) is not int or not lo <= val <= hi:
            raise ConfigError("%s=%r is not an integer in %d..%d" % (k, val, lo, hi))
        out[k] = val
    if "interval_s" in out and "sample_ms" in out and out["sample_ms"] > out["interval_s"] * 1000:
        raise ConfigError("sample_ms=%d is longer than interval_s=%d"
                          % (out["sample_ms"], out["interval_s"]))
    return out


class Config:
    """The device's side: the version in force and what to answer."""

    def __init__(self):
        self.version = 0
        self.rejected = 0

    def offer(self, payload, key, device_id):
        """Returns None for the config already in force; otherwise a dict
        with "ack" (CBOR to MAC and publish on .../cfgack) and "apply"
        (the settings to apply, or None when rejected)."""
        try:
            body = cose.verify(payload, key, device_id)
        except ValueError as e:
            return self._no(0, "bad tag: %s" % e)
        try:
            cfg = cbor.loads(body)
        except ValueError as e:
            return self._no(0, "malformed: %s" % e)
        ver = cfg.get("version", 0) if isinstance(cfg, dict) else 0
        if type(ver) is not int:
            ver = 0
        if ver == self.version and ver:
            return None
        try:
            settings = check(cfg, self.version)
        except ConfigError as e:
            return self._no(ver, str(e))
        self.version = ver
        return {"apply": settings,
                "ack": cbor.dumps({"v": 1, "version": ver, "ok": True, "active": ver})}

    def _no(self, ver, reason):
        self.rejected += 1
        return {"apply": None,
                "ack": cbor.dumps({"v": 1, "version": ver, "ok": False, "active": self.version,
                                   "reason": reason})}
