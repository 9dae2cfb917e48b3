"""`tally collect`: the collector against an MQTT broker; and the device
keys it verifies with (a keys file or a fleet master secret, with the key
hygiene warnings) and its TLS client identity, which `tally config` shares."""
import json
import os
import sys
import time

from agent.cli.common import Stop, err


MIN_KEY, MAX_KEY = 16, 64        # bytes of a MAC key or master secret (the device's own rule)
# The keys this repository shows (docs/tally.example.toml, tests, benchmarks):
# anyone can read them, so a collector using one gets a warning.
EXAMPLE_KEYS = (bytes.fromhex("00112233445566778899aabbccddeeff"), bytes(range(16)))


def _key(hexkey, what):
    try:
        k = bytes.fromhex(hexkey.strip())
    except (AttributeError, TypeError, ValueError):
        raise ValueError("%s is not hex" % what)
    if not MIN_KEY <= len(k) <= MAX_KEY:
        raise ValueError("%s is %d bytes; a key takes %d to %d" % (what, len(k), MIN_KEY, MAX_KEY))
    if k in EXAMPLE_KEYS:
        print("tally: warning: %s is the repository's example key, which anyone can read"
              % what, file=sys.stderr, flush=True)
    return k


def load_keys(path=None, master_hex=None, master_file=None, environ=None):
    """Device keys for the collector: a JSON file {device_id: hex key}, or a
    fleet master secret from which each device's key is derived, read from
    a file (master_file), the command line (master_hex: other users see it
    in ps, so it warns) or $TALLY_MASTER_KEY. Every key 16 to 64 bytes."""
    from agent import cose
    environ = os.environ if environ is None else environ
    if path:
        try:
            with open(path) as f:
                table = json.load(f)
        except OSError as e:
            raise ValueError("keys file %s: %s" % (path, e.strerror or e))
        except json.JSONDecodeError as e:
            raise ValueError("keys file %s is not JSON: %s" % (path, e))
        if not isinstance(table, dict):
            raise ValueError("keys file %s must map device ids to hex keys" % path)
        keys = {}
        for dev, hexkey in table.items():
            keys[dev] = _key(hexkey, "keys file %s: the key of %s" % (path, json.dumps(dev)[:80]))
        return keys.get
    if master_hex and master_file:
        raise ValueError("give --master-key-file or --master-key, not both")
    if master_file:
        try:
            with open(master_file) as f:
                master_hex = f.read(4096)
        except (OSError, UnicodeError) as e:
            raise ValueError("--master-key-file %s: %s" % (master_file, getattr(e, "strerror", None) or e))
        master = _key(master_hex, "--master-key-file %s" % master_file)
    elif master_hex:
        print("tally: warning: --master-key on the command line is visible to other users (ps); "
              "use --master-key-file FILE or TALLY_MASTER_KEY", file=sys.stderr, flush=True)
        master = _key(master_hex, "--master-key")
    elif environ.get("TALLY_MASTER_KEY"):
        master = _key(environ["TALLY_MASTER_KEY"], "TALLY_MASTER_KEY")
    else:
        raise ValueError("give --keys FILE or --master-key-file FILE (or set TALLY_MASTER_KEY): "
                         "every message is MAC'd")
    return lambda dev: cose.device_key(master, dev)


def run(a):
    from agent.collector.store import DB_ERRORS, Collector, display_name
    from agent.collector.service import CollectorService
    from agent.port.mqtt_paho import parse_url
    try:
        parse_url(a.broker)
        keys = load_keys(a.keys, a.master_key, a.master_key_file)
        col = Collector(a.db, keys=keys)
    except (ValueError, OSError, *DB_ERRORS) as e:
        return err("collect: %s" % e)
    def log_reject(device, reason):
        print("%s reject %s: %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   device or "-", reason), file=sys.stderr, flush=True)
    col.on_reject = log_reject
    tls = tls_opts(a)
    try:
        svc = CollectorService(a.broker, col, group=a.group, tls=tls,
                               client_id=a.client_id).start()
    except ValueError as e:
        col.close()
        return err("collect: %s" % e)
    stop = Stop()
    try:
        svc.wait_ready(a.connect_timeout)
    except ConnectionError as e:
        svc.stop()
        return err("collect: %s" % e)
    print("tally: collecting from %s (group %s) into %s" % (a.broker, a.group, display_name(a.db)),
          flush=True)

    def report(s):
        print("handled %d messages; rejects %s" % (s.handled, s.collector.rejects or "none"),
              flush=True)
    t_end = time.monotonic() + a.duration if a.duration else None
    while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
        svc.pump(0.5)
    svc.stop()
    report(svc)
    col.close()
    return stop.exit_code()


def identity_args(p):
    """The collector's MAC keys and TLS client identity (collect, config)."""
    p.add_argument("--keys", help="JSON file mapping device ids to their hex MAC keys")
    p.add_argument("--master-key-file", metavar="FILE", help="file holding the fleet master secret "
                   "(hex, 16 to 64 bytes); device keys are derived from it. Or set TALLY_MASTER_KEY")
    p.add_argument("--master-key", metavar="HEX", help="the fleet master secret on the command line "
                   "(other users see it in ps: prefer --master-key-file or TALLY_MASTER_KEY)")
    p.add_argument("--ca", metavar="FILE", help="with mqtts://: the CA file that signed the broker's "
                   "certificate (default: the system's CAs)")
    p.add_argument("--cert", metavar="FILE", help="with mqtts://: the collector's client certificate "
                   "(CN collector; tally pki init makes one)")
    p.add_argument("--key", metavar="FILE", help="with mqtts://: the private key of --cert "
                   "(not the MAC keys: those are --keys)")


def tls_opts(a):
    return {k: v for k, v in (("ca", a.ca), ("cert", a.cert), ("key", a.key)) if v} or None


def add(sub):
    c = sub.add_parser("collect", help="run the collector against an MQTT broker")
    c.add_argument("--broker", required=True, help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883")
    c.add_argument("--db", default="tally-ledger.sqlite",
                   help="the ledger: a SQLite file (default tally-ledger.sqlite) or a PostgreSQL URL, "
                   "postgresql://user@host:port/dbname")
    c.add_argument("--group", default="tally", help="shared-subscription group (default tally)")
    c.add_argument("--client-id", help="MQTT client id (default: tally-collector-<pid>-<n>; "
                   "each worker needs its own)")
    identity_args(c)
    c.add_argument("--duration", type=float, help="stop after this many seconds")
    c.add_argument("--connect-timeout", type=float, default=10.0)
    c.set_defaults(func=run)
