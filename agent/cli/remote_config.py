"""`tally config push|status`: a remote config for devices, numbered from
what the ledger knows, published retained; and what each device answered."""
import os
import time

from agent.cli.collect import identity_args, load_keys, tls_opts
from agent.cli.common import err


def _settings(pairs):
    out = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep:
            raise ValueError("--set %r: expected SETTING=INTEGER" % p)
        try:
            out[k.strip()] = int(v)
        except ValueError:
            raise ValueError("--set %s: %r is not an integer" % (k, v))
    return out


def _when(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def run(a):
    from agent.collector.store import Collector, DB_ERRORS, is_postgres_url
    if not a.db:
        return err("config: give the collector's ledger with --db PATH or URL (versions are numbered "
                   "from what the device reported there)")
    if not is_postgres_url(a.db) and not os.path.isfile(a.db):
        # a fresh ledger knows no version the device has seen: its push would be refused
        return err("config: no ledger at %s (give the collector's ledger: --db PATH or URL)" % a.db)
    try:
        col = Collector(a.db, keys=load_keys(a.keys, a.master_key, a.master_key_file))
    except (ValueError, OSError) + DB_ERRORS as e:
        return err("config: %s" % e)
    try:
        if a.action == "status":
            for dev in a.device:
                print(_config_line(dev, col.config_status(dev)))
            return 0
        settings = _settings(a.set)
        if not settings:
            return err("config push: nothing to set (give --set SETTING=VALUE; settings: %s)"
                       % ", ".join(sorted(remote_settings())))
        for dev in a.device:                 # every device's config checked before any is sent
            col.push_config(dev, settings, dry_run=True)
        return _config_push(a, col, settings)
    except (ValueError, OSError) + DB_ERRORS as e:
        return err("config: %s" % e)
    finally:
        col.close()


def _config_line(dev, st):
    """What the device last said of its config, in one line."""
    if st is None:
        return "%s: the device has reported no config yet" % dev
    out = "%s: in force: %s" % (dev, "version %d" % st["in_force"] if st["in_force"]
                                else "its local settings (no remote config)")
    rep = st["reported"]
    if rep is not None and (st["answered_s"] is None or rep[1] > st["answered_s"]):
        out += " (its latest record, %s)" % _when(rep[1])
    if st["version"] is not None:
        out += "; last answer %s: version %d %s; in force: %d%s" % (
            _when(st["answered_s"]), st["version"], "applied" if st["ok"] else "REJECTED",
            st["active"], "; reason: " + st["reason"] if st["reason"] else "")
    return out


def _config_push(a, col, settings):
    from agent.port.mqtt_paho import Client
    tls = tls_opts(a)
    c = None
    try:
        c = Client("tally-config-%d" % os.getpid(), a.broker, tls)
        c.connect(c.host, c.port, 30)
    except (ValueError, OSError) as e:
        why = getattr(c, "last_error", None) or e
        return err("config push: broker %s: %s: nothing published, no version recorded" % (a.broker, why))
    c.loop_start()

    def publish(tp, body):
        info = c.publish(tp, body, qos=1, retain=True)
        try:
            info.wait_for_publish(10)
        except (RuntimeError, ValueError) as e:
            raise OSError("not published: %s" % e)
        if not info.is_published():
            raise OSError("the broker did not take it within 10 s")

    done = []
    try:
        for dev in a.device:
            tp, _ = col.push_config(dev, settings, publish=publish)
            done.append(dev)
            print("%s: config published retained on %s; the device answers on tally/v1/%s/cfgack "
                  "(see tally config status)" % (dev, tp, dev))
    except OSError as e:
        return err("config push: %s: %s: no version recorded for %s"
                   % (a.broker, e, ", ".join(d for d in a.device if d not in done)))
    finally:
        c.disconnect()
        c.loop_stop()
    return 0


def remote_settings():
    from agent.remote import SETTINGS
    return SETTINGS


def add(sub):
    cf = sub.add_parser("config", help="push a remote config to devices, or show their answers",
                        description="push: check a config with the device's own rules, number it "
                        "one above the last version the ledger knows (pushed, or reported by the device), "
                        "publish it retained on tally/v1/<device>/config and, once the broker has it, "
                        "record it in the ledger (a broker that is down records nothing). status: what "
                        "each device last reported: its answer on .../cfgack (applied, or rejected and "
                        "why) or the config version in its latest record, whichever is later. Settings: "
                        + ", ".join("%s %d..%d" % (k, lo, hi) for k, (lo, hi) in
                                    sorted(remote_settings().items())) + ".")
    cf.add_argument("action", choices=("push", "status"))
    cf.add_argument("device", nargs="+", help="device id(s)")
    cf.add_argument("--set", action="append", metavar="SETTING=VALUE", help="push: a setting (repeat)")
    cf.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="push: broker URL")
    cf.add_argument("--db", help="required: the collector's ledger (an existing SQLite file or a "
                    "PostgreSQL URL): versions are numbered from what the device reported there")
    identity_args(cf)
    cf.set_defaults(func=run)
