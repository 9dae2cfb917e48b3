"""The `tally` command (CPython only)."""
import argparse
import json
import os
import signal
import sys
import threading
import time

USAGE_HIDE = {"err_nack", "err_crc", "err_timeout", "err_range", "sync_ok", "sync_tries",
              "fail_conn", "fail_pub", "republished", "bad_acks", "bad_configs", "bytes_sent", "overruns",
              "log_errors", "coalesced", "dropped", "backoffs"}


def _err(msg, code=2):
    print("tally: " + msg, file=sys.stderr)
    return code


def _scaled(v, scale):
    if scale >= 0:
        return str(v * 10 ** scale)
    s = "%.*f" % (-scale, v / 10 ** -scale)
    return s


# -- simulate ------------------------------------------------------------------------

def cmd_simulate(a):
    from hil.harness.sim import simulate
    progress = None if a.json or a.quiet else (lambda s: print("  " + s, file=sys.stderr))
    try:
        rep = simulate(devices=a.devices, days=a.days, broker=a.broker, loss=a.loss, seed=a.seed,
                       interval_s=a.interval, sample_s=a.sample, reboot_every_h=a.reboot_every, outage_h=a.outage,
                       log_kib=a.log_kib, db=a.db or ":memory:", serial=a.serial,
                       durable=a.durable, progress=progress, profile=a.profile)
    except (ValueError, ConnectionError, OSError) as e:
        return _err("simulate: %s" % e)
    if a.json:
        print(json.dumps(rep, indent=2, sort_keys=True))
    else:
        _print_sim(rep)
    return 0 if rep["reconciled"] else 1


def _print_sim(rep):
    units = rep["units"]
    cols = [k for k in units if k not in USAGE_HIDE]
    print("Tally simulation: %d devices x %g days, %s collector, %.1f s"
          % (len(rep["devices"]), rep["simulated_days"], rep["mode"], rep["elapsed_s"]))
    print()
    print("Ledger: usage per device and UTC day")
    head = ["device", "day"] + ["%s[%s]" % (c, units[c][0]) for c in cols]
    rows = []
    for dev, days in sorted(rep["ledger"].items()):
        for day, use in sorted(days.items()):
            rows.append([dev, day] + [_scaled(use.get(c, 0), units[c][1]) for c in cols])
    _table(head, rows)
    print()
    print("Reconciliation: device odometers against ledger totals")
    head = ["device", "odometers", "logged", "sent", "in ledger", "dups ignored",
            "republished", "coalesced", "dropped", "gaps", "result"]
    rows = []
    for d in rep["devices"]:
        odo = d["odometers"]
        eq = sum(1 for v in odo.values() if v["ok"])
        rows.append([d["device_id"], "%d/%d equal" % (eq, len(odo)), d["records_logged"],
                     d["records_sent"], d["records_in_ledger"], d["duplicates_ignored"],
                     d["republished"], d["coalesced"], d["dropped"], d["gaps"],
                     "OK" if d["reconciled"] else "MISMATCH"])
    _table(head, rows)
    for d in rep["devices"]:
        for name, v in d["odometers"].items():
            if not v["ok"]:
                print("  %s %s: device %d, ledger %d" % (d["device_id"], name, v["device"], v["ledger"]))
    if "messages_lost" in rep:
        print("\nmessages lost in transit (injected): %d" % rep["messages_lost"])
    print("\n" + ("All devices reconcile." if rep["reconciled"] else "NOT RECONCILED."))


def _table(head, rows):
    w = [len(str(h)) for h in head]
    for r in rows:
        for i, c in enumerate(r):
            w[i] = max(w[i], len(str(c)))
    fmt = "  ".join("%%-%ds" % x for x in w)
    print(fmt % tuple(head))
    for r in rows:
        print(fmt % tuple(str(c) for c in r))


# -- run -------------------------------------------------------------------------------

def cmd_run(a):
    from agent.config import load_config, ConfigError
    try:
        cfg = load_config(a.config, board=a.board)
    except ConfigError as e:
        return _err(str(e))
    from agent.agent import Agent
    from agent.clock import RealClock
    from agent.log import file_log
    from agent.port.cpython import host_clock_synchronised
    import boards
    # the host clock is good only while the system says it is synchronised
    clock = RealClock(host_sync=host_clock_synchronised)
    board = boards.load(cfg["board"])
    world = None
    try:
        if cfg["board"] == "emulated":
            world = board.Emulation(clock, seed=cfg.get("seed", 1), serial=cfg.get("serial", "pty"))
            channels = world.channels(overrides=cfg["sensors"])
        else:
            from agent.port.linux_bus import SMBus2I2C, open_serial
            i2c = SMBus2I2C(board.BOARD.get("i2c_bus", 1))
            channels = boards.make_channels(board.BOARD, i2c, open_serial, overrides=cfg["sensors"])
    except (OSError, ValueError) as e:
        # no /dev/i2c-N, a serial port that will not open, a sensor without a channel
        return _err("run: board %s: %s" % (cfg["board"], e))
    transport = None
    if cfg.get("broker"):
        from agent.port.mqtt_paho import PahoTransport
        try:
            transport = PahoTransport(cfg["device_id"], cfg["broker"], tls=cfg.get("tls"))
        except ValueError as e:
            return _err("run: %s" % e)
    uplink_opts = {"key": bytes.fromhex(cfg["key"])} if cfg.get("key") else None
    if uplink_opts:
        for k in ("batch_max", "window", "drain_bps"):
            if k in cfg:
                uplink_opts[k] = cfg[k]
        if "max_latency_s" in cfg:
            uplink_opts["max_latency_ms"] = cfg["max_latency_s"] * 1000
    os.makedirs(os.path.dirname(os.path.abspath(cfg["log_path"])), exist_ok=True)
    try:
        log = file_log(cfg["log_path"], cfg["device_id"], capacity=cfg["log_kib"] * 1024)
    except (OSError, ValueError) as e:
        return _err("run: log %s: %s" % (cfg["log_path"], e))
    agent = Agent(cfg["device_id"], channels, log, clock, transport=transport,
                  board=cfg["board"], interval_ms=cfg["interval_s"] * 1000,
                  sample_ms=cfg["sample_ms"], uplink_opts=uplink_opts)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: stop.set())
    signal.signal(signal.SIGINT, lambda *x: stop.set())
    try:
        agent.start()
    except OSError as e:          # log.IdentityError: a log written under another device id
        if world:
            world.close()
        return _err("run: log %s: %s" % (cfg["log_path"], str(e).replace("log: ", "", 1)))
    print("tally: device %s on board %s, boot %d (%s), epoch %08x, log %s, %s"
          % (cfg["device_id"], cfg["board"], agent.boot, agent.reason, log.epoch, cfg["log_path"],
             "broker " + cfg["broker"] if cfg.get("broker") else "no broker (logging only)"),
          flush=True)
    if not clock.wall_quality:
        print("tally: the host clock is not synchronised (adjtimex/timedatectl): records carry no "
              "wall time until it is; the collector places them from their boot's other records",
              flush=True)
    t_end = time.monotonic() + a.duration if a.duration else None
    seen = agent.records
    m = agent.meter
    t_note = 0
    said = None
    try:
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            agent.tick()
            if transport and transport.last_error != said:
                said = transport.last_error       # each new cause once, not every retry
                if said:
                    print("tally: broker: %s" % said, file=sys.stderr, flush=True)
            if agent.records != seen:
                seen = agent.records
                v = dict(zip(m.names, log.last[10]))
                print("interval seq=%d run_time=%d s cycles=%d energy=%s Wh mains_energy=%d Wh "
                      "temp_max=%s Cel depth=%d errors=%d sync_ok=%d"
                      % (log.last[0], v["run_time"], v["cycles"], _scaled(v["energy"], -3), v["mains_energy"],
                         _scaled(v["temp_max"], -2), v["depth"],
                         v["err_nack"] + v["err_crc"] + v["err_timeout"] + v["err_range"],
                         v["sync_ok"]), flush=True)
            wait = agent.next_due() - clock.uptime_ms()
            up = agent.uplink
            while wait > 0 and up and up.busy() and not stop.is_set():
                # a backlog is draining: step the uplink between samples so
                # the window refills as acks come back, not once per sample
                up.step(clock.uptime_ms())
                if time.monotonic() >= t_note:
                    t_note = time.monotonic() + 10
                    print("draining backlog: %d intervals unacked, %d batches in flight"
                          % (log.depth(), len(up.inflight)), flush=True)
                stop.wait(0.002)
                wait = agent.next_due() - clock.uptime_ms()
            if wait > 0:
                stop.wait(wait / 1000)
    finally:
        agent.shutdown(3000)
        if transport:
            transport.close()
        agent.stop()
        if world:
            world.close()
    print("tally: stopped; %d records logged this run, %d unacked in the log"
          % (agent.records, log.depth()))
    return 0


# -- collect -----------------------------------------------------------------------------

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


def cmd_collect(a):
    from agent.collector.store import DB_ERRORS, Collector, display_name
    from agent.collector.service import CollectorService
    from agent.port.mqtt_paho import parse_url
    try:
        parse_url(a.broker)
        keys = load_keys(a.keys, a.master_key, a.master_key_file)
        col = Collector(a.db, keys=keys)
    except (ValueError, OSError, *DB_ERRORS) as e:
        return _err("collect: %s" % e)
    def log_reject(device, reason):
        print("%s reject %s: %s" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   device or "-", reason), file=sys.stderr, flush=True)
    col.on_reject = log_reject
    tls = _tls_opts(a)
    try:
        svc = CollectorService(a.broker, col, group=a.group, tls=tls,
                               client_id=a.client_id).start()
    except ValueError as e:
        col.close()
        return _err("collect: %s" % e)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: stop.set())
    signal.signal(signal.SIGINT, lambda *x: stop.set())
    try:
        svc.wait_ready(a.connect_timeout)
    except ConnectionError as e:
        svc.stop()
        return _err("collect: %s" % e)
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
    return 0


# -- config ------------------------------------------------------------------------------

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


def cmd_config(a):
    from agent.collector.store import Collector, DB_ERRORS, is_postgres_url
    if not a.db:
        return _err("config: give the collector's ledger with --db PATH or URL (versions are numbered "
                    "from what the device reported there)")
    if not is_postgres_url(a.db) and not os.path.isfile(a.db):
        # a fresh ledger knows no version the device has seen: its push would be refused
        return _err("config: no ledger at %s (give the collector's ledger: --db PATH or URL)" % a.db)
    try:
        col = Collector(a.db, keys=load_keys(a.keys, a.master_key, a.master_key_file))
    except (ValueError, OSError) + DB_ERRORS as e:
        return _err("config: %s" % e)
    try:
        if a.action == "status":
            for dev in a.device:
                print(_config_line(dev, col.config_status(dev)))
            return 0
        settings = _settings(a.set)
        if not settings:
            return _err("config push: nothing to set (give --set SETTING=VALUE; settings: %s)"
                        % ", ".join(sorted(remote_settings())))
        for dev in a.device:                 # every device's config checked before any is sent
            col.push_config(dev, settings, dry_run=True)
        return _config_push(a, col, settings)
    except (ValueError, OSError) + DB_ERRORS as e:
        return _err("config: %s" % e)
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
    tls = _tls_opts(a)
    c = None
    try:
        c = Client("tally-config-%d" % os.getpid(), a.broker, tls)
        c.connect(c.host, c.port, 30)
    except (ValueError, OSError) as e:
        why = getattr(c, "last_error", None) or e
        return _err("config push: broker %s: %s: nothing published, no version recorded" % (a.broker, why))
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
        return _err("config push: %s: %s: no version recorded for %s"
                    % (a.broker, e, ", ".join(d for d in a.device if d not in done)))
    finally:
        c.disconnect()
        c.loop_stop()
    return 0


def remote_settings():
    from agent.remote import SETTINGS
    return SETTINGS


def _collector_identity_args(p):
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


def _tls_opts(a):
    return {k: v for k, v in (("ca", a.ca), ("cert", a.cert), ("key", a.key)) if v} or None


# -- flash -------------------------------------------------------------------------------

def cmd_flash(a):
    from agent.config import ConfigError, load_config
    from agent import cli_flash
    from agent.cli_flash import FlashError, build
    if a.port:
        return _flash_port(a)
    if a.firmware or a.erase:
        return _err("flash: --firmware and --erase write to a board: give its --port PORT too")
    if not a.out:
        return _err("flash: give --out DIR (the bundle to build) or --port PORT (build it and "
                    "copy it to the board)")
    try:
        cfg = load_config(a.config) if a.config else {}
        r = build(a.out, a.board, cfg, duration_s=a.duration or 0,
                  progress=lambda s: print("  " + s, file=sys.stderr, flush=True))
    except (ConfigError, FlashError, RuntimeError, OSError) as e:
        return _err("flash: %s" % e)
    print("tally: bundle for %s in %s: %d modules, %d bytes of .mpy%s" % (
        a.board, a.out, r["files"], r["mpy_bytes"],
        "; run it in %s: micropython -X heapsize=256K main.py, or with its code in ROM as a board "
        "runs it: python -m hil.harness.romboard tally.romfs main.py --heap %s" % (a.out, cli_flash.ROMFS_HEAP)
        if a.board == "unix" else ""))
    return 0


def _flash_port(a):
    from agent.config import ConfigError, load_config
    from agent.cli_deploy import DeployError, flash
    from agent.cli_flash import FlashError
    if a.erase and not a.firmware:
        return _err("flash: --erase erases the whole flash before --firmware FILE is written; "
                    "give both")
    try:
        cfg = load_config(a.config) if a.config else {}
        r = flash(a.board, a.port, cfg, out=a.out, duration_s=a.duration or 0, firmware=a.firmware,
                  erase=a.erase, reset=not a.no_reset,
                  say=lambda s: print("  " + s, file=sys.stderr, flush=True))
    except (ConfigError, FlashError, DeployError, RuntimeError, OSError) as e:
        return _err("flash: %s" % e)
    print("tally: %s on %s: %d files, %d written (%s B) in %.1f s, %d unchanged, %d stale removed; %s"
          % (a.board, a.port, r["files"], r["written"], "{:,}".format(r["bytes"]), r["seconds"],
             r["unchanged"], len(r["removed"]),
             "soft reset: main.py runs" if r["reset"] else
             "not reset (--no-reset): press EN/RST or Ctrl-D in its REPL to start main.py"
             if a.no_reset else "no soft reboot seen: press EN/RST to start main.py"))
    return 0


# -- pki ---------------------------------------------------------------------------------

def cmd_pki(a):
    from agent.collector import pki
    try:
        if a.action == "init":
            p = pki.init(a.dir, hosts=a.host or ("localhost", "127.0.0.1"), days=a.days, port=a.port)
            print("tally: new fleet PKI in %s\n"
                  "  CA         %s (keep ca.key offline: it signs every certificate)\n"
                  "  broker     %s for %s\n"
                  "  collector  %s\n"
                  "  mosquitto  %s, %s (docs/security.md)\n"
                  "next: tally pki device %s DEVICE_ID, for each device"
                  % (a.dir, p["ca"], p["server_cert"], ", ".join(a.host or ("localhost", "127.0.0.1")),
                     p["collector_cert"], p["conf"], p["acl"], a.dir))
        else:
            crt, key = pki.device(a.dir, a.device_id, days=a.days)
            print("tally: %s, %s\ncopy them and ca.crt to the device's /etc/tally/ (the key 0600, "
                  "owned by the agent's user); its tally.toml then has:\n"
                  "broker = \"mqtts://BROKER:8883\"\n[tls]\nca = \"/etc/tally/ca.crt\"\n"
                  "cert = \"/etc/tally/%s.crt\"\nkey = \"/etc/tally/%s.key\""
                  % (crt, key, a.device_id, a.device_id))
    except (pki.PKIError, OSError) as e:
        return _err("pki: %s" % e)
    return 0


# -- inspect -----------------------------------------------------------------------------

_SECTOR_SIZES = (65536, 32768, 16384, 8192, 4096, 2048, 1024, 512)


def _ring_header_at(data, off, crc=True):
    import binascii
    if data[off:off + 4] != b"TLR1" or off + 32 > len(data):
        return False
    if not crc:
        return True
    slen = data[off + 20] | (data[off + 21] << 8)
    if off + 32 + slen > len(data):
        return False
    c = binascii.crc32(data[off:off + 24] + data[off + 32:off + 32 + slen]) & 0xFFFFFFFF
    return c == int.from_bytes(data[off + 24:off + 28], "little")


def ring_geometry(data):
    """(sector size, truncated) of a ring log image, or None if it is not
    one: sectors hold a header (magic, CRC) at multiples of the sector
    size, which divides the size and leaves at least 4 sectors; when more
    than one size fits, the one a file log of that size uses."""
    from agent.log import file_geometry
    hdrs = [o for o in range(0, len(data), 512) if _ring_header_at(data, o)]
    if not hdrs:
        hdrs = [o for o in range(0, len(data), 512) if _ring_header_at(data, o, False)]
    if not hdrs:
        return None
    cands = [ss for ss in _SECTOR_SIZES if all(o % ss == 0 for o in hdrs)]
    if not cands:
        return None
    whole = [ss for ss in cands if len(data) % ss == 0 and len(data) // ss >= 4]
    pick = whole or cands
    g = file_geometry(len(data))[0]

    def odd(ss):
        # sector starts that are neither a header nor erased: records of a
        # larger sector running on past a smaller size's boundary
        return sum(1 for o in range(0, len(data), ss)
                   if o not in hdrs and data[o:o + 32].strip(b"\xff"))
    ss = min(pick, key=lambda x: (odd(x), x != g, x != 4096, x))   # ties: a file log, NOR
    return ss, not whole


def _load_schema(path):
    """Metric schema [[name, unit, scale, kind], ...] from a birth capture
    (COSE-wrapped or bare CBOR) or a schema file (JSON or CBOR: the list,
    or a map with "schema")."""
    import cbor2
    with open(path, "rb") as f:
        raw = f.read()
    try:
        obj = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        try:
            obj = cbor2.loads(raw)
        except Exception as e:
            raise ValueError("%s: neither JSON nor CBOR (%s)" % (path, e))
    if isinstance(obj, cbor2.CBORTag) and obj.tag == 17:
        obj = obj.value
    if isinstance(obj, (list, tuple)) and len(obj) == 4 and isinstance(obj[2], bytes):
        obj = cbor2.loads(obj[2])                   # a COSE_Mac0 birth: its payload
    if isinstance(obj, dict):
        obj = obj.get("schema")
    if not (isinstance(obj, list) and obj and all(isinstance(m, (list, tuple)) and len(m) >= 2
                                                  and isinstance(m[0], str) for m in obj)):
        raise ValueError("%s: no metric schema in it (a birth message, or a list of "
                         "[name, unit, scale, kind])" % path)
    return obj


def _named(values, schema):
    if not schema:
        return "values=%s" % (values,)
    if len(schema) != len(values):
        return "values=%s (schema has %d metrics, record %d)" % (values, len(schema), len(values))
    out = []
    for m, v in zip(schema, values):
        unit = m[1] if len(m) > 1 and m[1] else ""
        scale = m[2] if len(m) > 2 and isinstance(m[2], int) else 0
        x = v * 10 ** scale if scale else v
        if isinstance(x, float):
            x = round(x, 6)
        out.append("%s=%s%s" % (m[0], x, (" " + unit) if unit else ""))
    return " ".join(out)


def cmd_inspect(a):
    try:
        with open(a.file, "rb") as f:
            data = f.read()
    except OSError as e:
        return _err("inspect: %s" % e)
    schema = None
    for src in (a.schema, a.birth):
        if src:
            try:
                schema = _load_schema(src)
            except (OSError, ValueError) as e:
                return _err("inspect: %s" % e)
    if (a.key is None) != (a.device is None):
        return _err("inspect: give --key HEX and --device ID together to verify a capture")
    key = None
    if a.key is not None:
        try:
            key = bytes.fromhex(a.key)
        except ValueError:
            return _err("inspect: --key must be hex")
    geo = ring_geometry(data)
    if geo:
        return _inspect_ring(a.file, data, geo[0], geo[1], schema)
    return _inspect_payload(data, schema, key, a.device)


def _inspect_ring(path, data, ss, truncated, schema):
    from agent import cbor
    from agent import log as L
    from hil.nor import EmulatedNOR
    n = max(4, -(-len(data) // ss))
    if truncated or len(data) < n * ss:
        print("%s: truncated ring log: %d bytes, %d short of %d sectors of %d bytes; the missing "
              "bytes read as erased flash" % (path, len(data), n * ss - len(data), n, ss))
        data = data + b"\xff" * (n * ss - len(data))
    dev = EmulatedNOR(ss, n)
    dev.load_image(data)
    log = L.RingLog(dev, None).open()
    kinds = {L.K_DIRTY: "free", L.K_CLEAN: "free", L.K_HEAD: "records", L.K_COMP: "compacted"}
    print("%s: ring of %d sectors x %d bytes; device %s, epoch %08x, boot %d (%s), next seq %d, "
          "acked %d, %d unacked, config v%d, %d damaged, %d repaired"
          % (path, log.N, ss, log.log_device or "?", log.epoch, log.boot, log.boot_reason,
             log.next_seq, log.acked, log.depth(), log.config_version, log.damaged, log.corrected))
    for i, (k, order, lo, gen, wear) in enumerate(log.sectors()):
        if k >= L.K_HEAD:
            print("  sector %3d  %-9s order %d%s gen %d wear %d%s" % (
                i, kinds[k], order, "" if lo == order else " (from %d)" % lo, gen, wear,
                "  <- head" if i == log._head else ""))
    names = {L.T_EPOCH: "EPOCH", L.T_BOOT: "BOOT", L.T_DATA: "DATA", L.T_ACK: "ACK", L.T_CONFIG: "CONFIG"}
    for s, _, t, payload in log.walk():
        try:
            rec = cbor.loads(payload)
        except ValueError as e:
            print("  [%3d] %-6s  undecodable: %s" % (s, names.get(t, t), e))
            continue
        if t == L.T_DATA and L._valid_data(rec):
            flags = ("coalesced " if rec[L.R_FLAGS] & L.F_COALESCED else "") + \
                    ("gap " if rec[L.R_FLAGS] & L.F_GAP else "") + \
                    ("damaged " if rec[L.R_FLAGS] & L.F_DAMAGED else "")
            print("  [%3d] DATA    seq=%d from=%d %sepoch=%08x boot=%d uptime_ms=%d wall=%s "
                  "ival_ms=%d schema=%08x %s"
                  % (s, rec[0], rec[1], flags, rec[3], rec[5], rec[6],
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec[7])) if rec[7] else "-",
                     rec[9], rec[4], _named(rec[10], schema)))
        elif t == L.T_BOOT and isinstance(rec, list) and len(rec) == 2:
            print("  [%3d] BOOT    boot=%s reason=%s" % (s, rec[0], rec[1]))
        elif t == L.T_ACK and isinstance(rec, list) and len(rec) == 2:
            print("  [%3d] ACK     epoch=%08x seq<=%d" % (s, rec[0], rec[1]))
        elif t == L.T_EPOCH and isinstance(rec, list) and len(rec) == 2:
            print("  [%3d] EPOCH   epoch=%08x first_seq=%d" % (s, rec[0], rec[1]))
        elif t == L.T_CONFIG and isinstance(rec, list) and len(rec) == 1:
            print("  [%3d] CONFIG  version=%s" % (s, rec[0]))
        else:
            print("  [%3d] type %d, not a record this log writes: %r" % (s, t, rec))
    return 0


def _inspect_payload(data, schema, key, device):
    import cbor2
    from agent import batch, cose
    try:
        _, end = _cbor_item_end(data)
        obj = cbor2.loads(data)
    except Exception as e:
        return _err("inspect: neither a Tally log nor a Tally payload (not CBOR: %s)" % e)
    if end != len(data):
        return _err("inspect: neither a Tally log nor a Tally payload (%d bytes after one CBOR "
                    "item)" % (len(data) - end))
    if isinstance(obj, cbor2.CBORTag) and obj.tag == 17:
        v = obj.value
        if not (isinstance(v, (list, tuple)) and len(v) == 4 and isinstance(v[2], bytes)):
            return _err("inspect: tag 17 but not a COSE_Mac0 structure")
        inner = v[2]
        if key is not None:
            ok = None
            for k, how in ((key, "device key"), (cose.device_key(key, device), "master key")):
                try:
                    cose.verify(data, k, device)
                    ok = how
                    break
                except cose.CoseError:
                    pass
            if ok is None:
                print("COSE_Mac0 from %s: tag does NOT verify with the key given (as device or "
                      "master key)" % device)
                rc = _show_inner(inner, schema)
                return 1 if rc == 0 else rc
            print("COSE_Mac0 from %s: tag verified (%s), %d-byte payload" % (device, ok, len(inner)))
        else:
            print("COSE_Mac0: %d-byte payload, tag not checked (give --key HEX --device ID)" % len(inner))
        return _show_inner(inner, schema)
    return _show_obj(obj, data, schema)


def _cbor_item_end(data):
    from agent import cbor
    try:
        return cbor._decode(data, 0, 0)
    except (IndexError, UnicodeError) as e:
        raise ValueError("malformed CBOR (%s)" % e)


def _show_inner(inner, schema):
    import cbor2
    try:
        obj = cbor2.loads(inner)
    except Exception as e:
        return _err("inspect: COSE payload is not CBOR (%s)" % e)
    return _show_obj(obj, inner, schema)


def _show_obj(obj, data, schema):
    from agent import batch
    if isinstance(obj, list):
        try:
            recs = batch.decode(obj)
        except batch.BatchError as e:
            return _err("inspect: CBOR array but not a batch: %s" % e)
        if not recs:
            return _err("inspect: an empty batch")
        print("data batch: %d records, %d bytes (%.1f B/record)" % (len(recs), len(data), len(data) / len(recs)))
        for r in recs:
            print("  seq=%d from=%d flags=%d epoch=%08x boot=%d uptime_ms=%d %s"
                  % (r["seq"], r["from_seq"], r["flags"], r["epoch"], r["boot"], r["uptime_ms"],
                     _named(list(r["values"]), schema)))
        return 0
    if isinstance(obj, dict) and "v" in obj:
        kind = "birth" if "schema" in obj else ("ack" if "seq" in obj else
                                                 ("death" if set(obj) == {"v", "boot", "epoch"} else "message"))
        print("%s message:" % kind)
        print(json.dumps(obj, indent=2, default=repr))
        return 0
    return _err("inspect: CBOR, but not a Tally payload (a %s)" % type(obj).__name__)


# -- export --------------------------------------------------------------------------------

def cmd_export(a):
    from agent.collector.store import DB_ERRORS, Collector, is_postgres_url
    from agent.collector import billing, export
    if not is_postgres_url(a.db) and not os.path.exists(a.db):
        return _err("export: no ledger at %s" % billing.clean(a.db))
    skipped = set()
    try:
        col = Collector(a.db, keys=lambda d: None)
        try:
            if a.format == "senml":
                items = export.senml(col, a.device, skipped)
            else:
                items = export.cloudevents(col, a.device, skipped)
        finally:
            col.close()
    except DB_ERRORS as e:
        return _err("export: %s is not a Tally ledger (%s)" % (billing.clean(a.db), billing.clean(str(e))))
    for dev, name, unit in sorted(skipped):
        print("tally: export: %s %s left out: its unit %s or its scale cannot be exported"
              % (billing.clean(dev), billing.clean(name), billing.clean(unit)), file=sys.stderr)
    if a.out:
        try:
            with open(a.out, "w") as f:
                export.write(items, f)
        except OSError as e:
            return _err("export: %s: %s" % (billing.clean(a.out), e.strerror or e))
        print("tally: %d %s items written to %s" % (len(items), a.format, billing.clean(a.out)), file=sys.stderr)
    else:
        export.write(items, sys.stdout)
    return 0


# -- report --------------------------------------------------------------------------------

def cmd_report(a):
    from agent.collector import billing
    try:
        text = billing.run(a.db, a.rates, period=a.period, start=a.start, end=a.end,
                           devices=a.device, fmt=a.format)
    except billing.BillingError as e:
        return _err("report: %s" % billing.clean(str(e)))
    if not a.out:
        sys.stdout.write(text)
        return 0
    try:
        with open(a.out, "w", newline="") as f:
            f.write(text)
    except OSError as e:
        return _err("report: %s: %s" % (billing.clean(a.out), e.strerror or e))
    print("tally: %s report written to %s" % (a.format, billing.clean(a.out)), file=sys.stderr)
    return 0


# -- bench ---------------------------------------------------------------------------------

def _print_goals(title, goals):
    print(title)
    for g, ok in goals.items():
        print("  [%s] %s" % ("met" if ok else "NOT met", g))


def _bench_footprint(a):
    from hil.bench import bench_footprint
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    r = bench_footprint(intervals=a.intervals, progress=progress)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    print("tally bench footprint (MicroPython: bytes of heap unless named)")
    for group, n in sorted(r["bundle_mpy_bytes"].items()):
        print("  bundle, %-32s %7d B of .mpy (xtensawin)" % (group, n))
    s = r.get("steady_loop")
    if not isinstance(s, dict):
        print("  steady loop: %s" % (s or r.get("micropython")))
        return 0
    cols = [("unix64 files", s), ("unix64 ROMFS", r.get("steady_loop_romfs")),
            ("wasm32 files", r.get("wasm32")), ("wasm32 ROMFS", r.get("wasm32_romfs"))]
    cols = [(h, c) for h, c in cols if isinstance(c, dict)]
    rows = (("heap for code: all of it", "heap_code"), ("  of it the device's modules", "heap_code_device"),
            ("  of it the emulation's (not on a board)", "heap_code_emulation"),
            ("heap for data after setup", "heap_data_after_setup"),
            ("heap for data in the steady loop (peak)", "heap_data_peak"),
            ("time per interval (12 samples, 4 sensors, log, sync), us", "us_per_interval"),
            ("heap free at idle in a 256K heap (unix64)", "heap_free_idle"))
    print("  %-58s" % "" + "".join(" %13s" % h for h, _ in cols))
    for label, k in rows:
        print("  %-58s" % label + "".join(" %13s" % c.get(k, "-") for _, c in cols))
    print("  %-58s %13d %13s" % ("smallest heap a simulated day runs in, KiB (capped)", r["smallest_heap_for_a_day_kib"],
                                  r.get("smallest_heap_for_a_day_romfs_kib", "-")))
    if isinstance(r.get("wasm32"), str):
        print("  32-bit figures: %s" % r["wasm32"])
    print("  heap data growth over %d intervals: %d B; ROMFS image %d B"
          % (s["intervals"], r["heap_data_growth_bytes"], r.get("romfs_image_bytes", 0)))
    print("  unix64: the MicroPython unix port, 64-bit (object slots and GC blocks twice an ESP32's);")
    print("  wasm32: the WebAssembly port, 32-bit like an ESP32; it collects only between intervals,")
    print("  so its figures are live heap measured there, not a capped run")
    _print_goals('goals (issue 7):', r["goals"])
    return 0


def _bench_drivers(a):
    from hil.bench import bench_drivers
    r = bench_drivers()
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    cp, mp = r["cpython"], r["micropython"] or {}
    print("tally bench drivers: reads through the emulated buses (median of 5 runs of 200)")
    print("  %-10s %14s %18s %14s" % ("driver", "CPython r/s", "MicroPython r/s", "bus tx/read"))
    for name in cp:
        c, m = cp[name], mp.get(name, {})
        print("  %-10s %14s %18s %14s" % (
            name, c.get("reads_per_s", c.get("error")),
            m.get("reads_per_s", m.get("error", "n/a" if not r["micropython"] else "-")),
            c.get("transactions_per_read", "-")))
    if r.get("micropython_error"):
        print("MicroPython run failed: %s" % r["micropython_error"])
    elif r["micropython"] is None:
        print("(micropython unix port not found: only CPython measured)")
    return 0


def _bench_soak(a):
    from hil.harness.mosquitto import find_mosquitto
    from hil.harness.soak import soak
    if not find_mosquitto():
        return _err("bench soak: mosquitto is not installed (apt-get install mosquitto)")
    if a.devices < 1 or a.seconds <= 0 or a.workers < 1:
        return _err("bench soak: --devices, --seconds and --workers must be positive")
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    r = soak(devices=a.devices, seconds=a.seconds, speed=a.speed, workers=a.workers,
             db=a.db, seed=a.seed, fault_every=a.fault_every, progress=progress)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0 if r["reconciled"] else 1
    print("tally bench soak: %d devices at %gx time, %d collector workers, %gs of faults"
          % (r["devices"], r["speed"], r["workers"], r["seconds"]))
    for k, n in sorted(r["faults"].items()):
        print("  fault %-16s %d" % (k, n))
    print("  worker kills inside a transaction  %d of %d"
          % (r["worker_kills_inside_a_transaction"], r["faults"]["worker_kill"]))
    print("  duplicates injected    %d" % r["duplicates_injected"])
    print("  records logged         %d" % r["records"])
    print("  lost                   %d" % r["lost"])
    print("  counted twice          %d" % r["counted_twice"])
    print("  duplicates ignored     %d" % r["duplicates_ignored"])
    for d in r["per_device"]:
        print("  %s  boots %d  logged %d  in ledger %d  gaps %d (coalesced %d, dropped %d)  %s"
              % (d["device_id"], d["boots"], d["records_logged"], d["intervals_in_ledger"],
                 d["gaps_unexplained"], d["gap_records_coalesced"], d["gap_records_dropped"],
                 "reconciled" if d["reconciled"] else "NOT reconciled: %s" % d["mismatches"]))
    print("reconciled: %s" % ("yes" if r["reconciled"] else "NO"))
    return 0 if r["reconciled"] else 1


def _bench_hostile(a):
    from hil.harness.hostile import bench_hostile
    if a.count is not None and a.count < 1:
        return _err("bench hostile: --count must be positive")
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    r = bench_hostile(count=a.count or 100000, seed=a.seed, progress=progress)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    print("tally bench hostile: %d hostile messages through Collector.handle, SQLite, seed %d, %.0f s"
          % (r["tried"], r["seed"], r["seconds"]))
    print("  %-10s %8s %8s %8s %10s %10s %10s" % ("class", "tried", "signed", "escapes", "median ms",
                                                   "max ms", "max MB"))
    for cls, c in r["per_class"].items():
        print("  %-10s %8d %8d %8d %10.3f %10.1f %10.2f" % (cls, c["tried"], c["authenticated"], c["escapes"],
                                                          c["median_ms_per_message"], c["max_ms_per_message"],
                                                          c["max_mb_per_message"]))
    rows = [("escapes", r["escapes"]), ("rows per unauthenticated message", r["rows_per_unauthenticated"]),
            ("alarm rows per message (most)", r["alarm_rows_per_message"]),
            ("time per message, median / max", "%.3f / %.1f ms" % (r["median_ms_per_message"],
                                                                   r["max_ms_per_message"])),
            ("CPU per message, median / max", "%.3f / %.1f ms" % (r["median_cpu_ms_per_message"],
                                                                 r["max_cpu_ms_per_message"])),
            ("time per message of the median size (%d B) or less, max" % r["median_message_bytes"],
             "%.1f ms (CPU %.1f ms)" % (r["max_ms_per_message_up_to_median_size"],
                                        r["max_cpu_ms_per_message_up_to_median_size"])),
            ("memory per message, max (tracemalloc sample, RSS)", "%.2f MB" % r["max_mb_per_message"]),
            ("peak RSS growth over rest", "%.1f MB" % r["peak_rss_growth_mb"]),
            ("honest device's batches acked", r["honest_batches_acked"]),
            ("slowest", r["slowest"]), ("largest", r["largest"])]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("  %-*s  %s" % (w, k, v))
    for e in r["escape_examples"][:10]:
        print("  escape: " + e)
    for e in r["unauthenticated_row_examples"][:5] + r["alarm_examples"][:5]:
        print("  " + e)
    print("  (how: %s)" % r["method"])
    _print_goals('goals (issue 11):', r["goals"])
    return 0


def cmd_bench(a):
    if a.what == "hostile":
        return _bench_hostile(a)
    if a.what == "payload":
        return _bench_payload(a)
    if a.what == "sync":
        return _bench_sync(a)
    if a.what == "soak":
        return _bench_soak(a)
    if a.what == "drivers":
        return _bench_drivers(a)
    if a.what == "footprint":
        return _bench_footprint(a)
    from hil.bench import bench_ring
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    if a.cuts < 1 or a.days <= 0 or a.damage < 1:
        return _err("bench: --cuts, --damage and --days must be positive")
    r = bench_ring(cuts=a.cuts, days=a.days, progress=progress, damage=a.damage)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    mp = r["appends_per_s_micropython_emulated"]
    rows = [
        ("cut points tested (double cuts)", "%d (%d) over %d workloads, %.0f s"
         % (r["cut_points"], r["double_cuts"], r["cut_workloads"], r["cut_seconds"])),
        ("invariant violations", r["violations"]),
        ("silent-damage points tested", "%d over %d workloads, %.0f s (%d repaired, %d gap records)"
         % (r["damage_points"], r["damage_workloads"], r["damage_seconds"], r["damage_corrected"],
            r["damage_gap_records"])),
        ("silent-damage violations (lost records, rewinds)", r["damage_violations"]),
        ("appends/s, CPython, emulated NOR (median of 5)", r["appends_per_s_cpython_emulated"]),
        ("appends/s, CPython, file + fsync (median of 5)", r["appends_per_s_cpython_file_fsync"]),
        ("appends/s, MicroPython unix, emulated NOR (median of 5)", mp if mp else "micropython not found"),
        ("record payload (agent, 31 metrics)", "%.1f B" % r["record_payload_bytes"]),
        ("write amplification (programmed / payload)", r["write_amplification"]),
        ("erase counts after %.1f wraps" % r["wraps"], "min %d, max %d, spread %d"
         % (r["erase_min"], r["erase_max"], r["erase_spread"])),
        ("projected life, 1 MiB, 100k-cycle NOR, 1 record/min",
         "%s years" % r["projected_life_years_1mib_100k_cycles"]),
        ("reads to recover a full 1 MiB region", "%d calls, %d bytes (bound %d calls)"
         % (r["recovery_reads"], r["recovery_bytes"], r["recovery_read_bound"])),
        ("MicroPython heap to recover a full 1 / 4 MiB log", "%s / %s KiB (%s B per MiB of log)"
         % (r.get("recovery_heap_kib_1mib_micropython"), r.get("recovery_heap_kib_4mib_micropython"),
            r["recovery_heap_bytes_per_mib_micropython"])),
        ("capacity of 1 MiB before coalescing", "%d records (%.1f days at 1/min)"
         % (r["capacity_records_1mib"], r["capacity_days_at_1_per_min"])),
    ]
    print("tally bench ring")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("  %-*s  %s" % (w, k, v))
    _print_goals('goals:', r["goals"])
    for v in r["violation_examples"] + r["damage_violation_examples"]:
        print("  violation: " + v)
    return 0


def _bench_sync(a):
    from hil.bench import bench_sync
    from hil.harness.mosquitto import Mosquitto, find_mosquitto
    m = None
    broker = a.broker
    if not broker and find_mosquitto():
        m = Mosquitto().start()          # a private broker on a free loopback port
        broker = m.url
    try:
        r = bench_sync(broker=broker, db=a.db, quick=a.quick, progress=None if a.json else
                       (lambda s: print("  " + s, file=sys.stderr, flush=True)))
    finally:
        if m:
            m.close()
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    print("tally bench sync")
    ing = r["ingest_records_per_s"]
    print("  collector ingest, records/s (medians; all workers together)")
    for label, k in (("SQLite, one worker", "sqlite_1_worker"), ("SQLite, two workers", "sqlite_2_workers"),
                     ("PostgreSQL, one worker", "postgres_1_worker"),
                     ("PostgreSQL, two workers", "postgres_2_workers")):
        print("    %-28s %s" % (label, ing.get(k, ing.get("postgres", "-"))))
    print("  backlog after %d days offline at 1 record/min         %d records"
          % (r["backlog_records"] // 1440, r["backlog_records"]))
    print("  drain, embedded collector, window 4                  %s records/s" % r["drain_records_per_s_embedded"])
    for w in (1, 4, 16):
        print("  drain, through mosquitto, window %-2d                  %s records/s"
              % (w, r.get("drain_records_per_s_mosquitto_window_%d" % w, "no broker")))
    print("  bytes per device-day (payload / with MQTT framing)   %d / %d"
          % (r["bytes_per_device_day_payload"], r["bytes_per_device_day_with_mqtt"]))
    _print_goals('goals (issue 5):', r["goals"])
    return 0


def _bench_payload(a):
    from hil.bench import bench_payload
    r = bench_payload()
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    names = [("ours_bare", "ours, bare batch"), ("ours_cose_mac0", "ours + COSE_Mac0 (HMAC 256/64)"),
             ("ours_cose_mqtt", "ours + COSE + MQTT 3.1.1 PUBLISH, QoS 1, topic"),
             ("senml_cbor", "SenML-CBOR, integer labels, base name/time"),
             ("senml_json", "SenML JSON"), ("sparkplug_b_ddata_aliases", "Sparkplug B DDATA, aliases"),
             ("plain_json", "plain JSON")]
    print("tally bench payload: reference batch of %d one-minute records x %d metrics"
          % (r["records"], r["metrics"]))
    print("  %-48s %10s %8s" % ("encoding", "B/record", "x ours"))
    for k, label in names:
        v = r["bytes_per_record"][k]
        print("  %-48s %10s %8s" % (label, "-" if v is None else "%.2f" % v,
                                     "-" if v is None else "%.1f" % r["ratio_to_ours_end_to_end"][k]))
    print("  (x ours: against ours end to end, MAC and MQTT framing included)")
    mp = r["encode_us_per_batch_micropython"]
    print("  encode + MAC per batch: %d us CPython, %s MicroPython unix port (medians)"
          % (r["encode_us_per_batch_cpython"], "%d us" % mp if mp else "micropython not found"))
    _print_goals('goals:', r["goals"])
    return 0


# -- stubcheck -----------------------------------------------------------------------------

def cmd_stubcheck(a):
    from agent import cli_stubcheck as sc
    try:
        findings, stats = sc.check(stubs=sc.find_stubs(a.stubs))
    except sc.StubsMissing as e:
        return _err("stubcheck: %s" % e)
    if a.json:
        print(json.dumps(sc.as_json(stats, findings), indent=1))
    else:
        for f in findings:
            print("%s:%d: %s" % (f.path, f.line, f.msg))
        print("tally: stubcheck: " + sc.summary(stats, findings))
    return 1 if findings else 0


# -- main ----------------------------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(prog="tally", description="Tally: outcome-metering edge agent and collector.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("simulate", help="run emulated devices on a virtual clock and reconcile the ledger",
                       description="Run N emulated compressors for D simulated days through the real "
                       "agent, log and collector; print the ledger and a reconciliation. Exit 1 if any "
                       "device does not reconcile.")
    s.add_argument("--devices", type=int, default=3, help="number of devices (default 3)")
    s.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    s.add_argument("--broker", help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883; "
                   "default: an embedded in-process collector")
    s.add_argument("--json", action="store_true", help="print one JSON object with a top-level 'reconciled'")
    s.add_argument("--loss", type=float, default=0.0,
                   help="embedded mode: probability that a message or ack is lost (default 0)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--interval", type=float, default=60, help="record interval in seconds (default 60)")
    s.add_argument("--sample", type=float, default=5, help="sample period in seconds (default 5)")
    s.add_argument("--reboot-every", type=float, default=0.0, metavar="HOURS",
                   help="reboot each device about every HOURS simulated hours (default never)")
    s.add_argument("--outage", type=float, default=0.0, metavar="HOURS",
                   help="embedded mode: the uplink is down for HOURS from a quarter of the run; "
                   "devices store and forward (default 0)")
    s.add_argument("--log-kib", type=int, default=256, help="log capacity per device in KiB (default 256)")
    s.add_argument("--db", help="SQLite file for the ledger (default in memory); one that already holds "
                   "the simulated device ids (sim-001, ...) is refused, so a second run never bills them twice")
    s.add_argument("--profile", choices=("compressor", "luminaire", "pump"), default="compressor",
                   help="the asset on the emulated board: a compressor (air, m3), a luminaire "
                   "(light, lux-hours) or a booster pump (energy, vibration) (default compressor)")
    s.add_argument("--serial", choices=("loopback", "pty"), default="loopback",
                   help="Modbus line: in-process loopback (default) or a real pseudo-terminal")
    s.add_argument("--durable", action="store_true", help="fsync every log append (slower)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("run", help="run the agent in real time (what a Raspberry Pi runs)",
                       description="Run the agent in real time on a board. Stops cleanly on SIGTERM or "
                       "Ctrl-C, logging the interval in progress.")
    r.add_argument("--board", help="board name (emulated, rpi4, rpi-zero2w); overrides the config")
    r.add_argument("--config", help="TOML config file (see docs/running-on-a-pi.md)")
    r.add_argument("--duration", type=float, help="stop after this many seconds")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("collect", help="run the collector against an MQTT broker")
    c.add_argument("--broker", required=True, help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883")
    c.add_argument("--db", default="tally-ledger.sqlite",
                   help="the ledger: a SQLite file (default tally-ledger.sqlite) or a PostgreSQL URL, "
                   "postgresql://user@host:port/dbname")
    c.add_argument("--group", default="tally", help="shared-subscription group (default tally)")
    c.add_argument("--client-id", help="MQTT client id (default: tally-collector-<pid>-<n>; "
                   "each worker needs its own)")
    _collector_identity_args(c)
    c.add_argument("--duration", type=float, help="stop after this many seconds")
    c.add_argument("--connect-timeout", type=float, default=10.0)
    c.set_defaults(func=cmd_collect)

    e = sub.add_parser("export", help="export the ledger as SenML JSON or CloudEvents JSON",
                       description="SenML JSON (RFC 8428; SenML primary units, odometers as readings) or CloudEvents JSON "
                       "(one event per record, id = device/epoch/seq) from a collector's ledger.")
    e.add_argument("--db", required=True, help="the collector's ledger: a SQLite file or a PostgreSQL URL")
    e.add_argument("--format", choices=("senml", "cloudevents"), default="cloudevents")
    e.add_argument("--device", help="only this device")
    e.add_argument("--out", help="write to this file instead of standard output")
    e.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="billing report for a period from a rate card (text, CSV, JSON)",
                        description="Price the ledger's usage for a calendar month (--period) or an "
                        "inclusive range of UTC days (--from/--to) with a TOML rate card (see "
                        "docs/billing.md): per device each priced metric, run-hours, base fee and "
                        "subtotal, a fleet total, and data-quality lines. Amounts are exact decimals.")
    rp.add_argument("--db", required=True, help="the collector's SQLite ledger")
    rp.add_argument("--rates", required=True, metavar="RATES.toml", help="the rate card")
    rp.add_argument("--period", metavar="YYYY-MM", help="a calendar month, UTC")
    rp.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (with --to)")
    rp.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day, inclusive")
    rp.add_argument("--format", choices=("text", "csv", "json"), default="text")
    rp.add_argument("--device", nargs="+", action="extend", metavar="ID", help="only these devices")
    rp.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of standard output")
    rp.set_defaults(func=cmd_report)

    b = sub.add_parser("bench", help="benchmarks that print figures (tally bench ring|payload|sync|soak|drivers|footprint|hostile)",
                       description="Measure and print figures; nothing is asserted. "
                       "ring: power-cut and silent-damage points and violations, appends/s on CPython and the "
                       "MicroPython unix port, write amplification, wear spread, projected flash "
                       "life, recovery reads, capacity. payload: bytes per record of our signed batches "
                       "against SenML-CBOR, SenML JSON, Sparkplug B and plain JSON, and encode times. "
                       "sync: collector ingest rate, backlog drain rate, bytes per device-day. "
                       "soak: device and collector processes through a real mosquitto under "
                       "broker restarts, link cuts, SIGKILLs and duplicates, then the ledger "
                       "reconciled with every device's log (exit 1 if it is not). "
                       "drivers: reads/s per driver through the emulated buses on CPython and the "
                       "MicroPython unix port, and bus transactions per reading. "
                       "hostile: hostile messages by class (unsigned, signed with a device's own key, "
                       "oversized, replay) through the collector: escapes, rows written by "
                       "unauthenticated messages, alarm rows per message, time and memory per message. "
                       "footprint: bundle size for the ESP32, heap for code (device and emulation "
                       "apart) and data, data growth, time per interval (median of 100-interval "
                       "stretches) and the smallest capped heap a day runs in, with the code from "
                       "files and from a ROMFS image, on the 64-bit unix port and, when node is "
                       "installed, the 32-bit WebAssembly port (see docs/firmware.md).")
    b.add_argument("what", choices=("ring", "payload", "sync", "soak", "drivers", "footprint", "hostile"),
                   help="what to measure")
    b.add_argument("--broker", help="sync: a broker to drain through (default: start a private mosquitto)")
    b.add_argument("--db", help="sync: also measure collector ingest into this PostgreSQL database "
                   "(a URL; use a scratch database); soak: the ledger (SQLite path or "
                   "postgresql:// URL; default a fresh SQLite file)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--quick", action="store_true",
                   help="sync: one run of each and a one-day backlog (checks that it runs; "
                   "the figures are not medians)")
    b.add_argument("--devices", type=int, default=6, help="soak: device processes (default 6)")
    b.add_argument("--seconds", type=float, default=60, help="soak: seconds of faults (default 60)")
    b.add_argument("--speed", type=float, default=600,
                   help="soak: device time runs this many times real time (default 600)")
    b.add_argument("--workers", type=int, default=2, help="soak: collector worker processes (default 2)")
    b.add_argument("--fault-every", type=float, default=2.0,
                   help="soak: mean seconds between faults (default 2)")
    b.add_argument("--seed", type=int, default=1, help="soak: seed of the fault schedule; "
                   "hostile: seed of the messages")
    b.add_argument("--count", type=int, help="hostile: messages to send (default 100000)")
    b.add_argument("--intervals", type=int, default=10000,
                   help="footprint: intervals of the steady loop (default 10000)")
    b.add_argument("--cuts", type=int, default=100000, help="power-cut points to test (default 100000)")
    b.add_argument("--damage", type=int, default=100000,
                   help="ring: silent-damage points to test (default 100000)")
    b.add_argument("--days", type=float, default=60, help="simulated days of the agent on 1 MiB (default 60)")
    b.set_defaults(func=cmd_bench)

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
    _collector_identity_args(cf)
    cf.set_defaults(func=cmd_config)

    fl = sub.add_parser("flash", help="build the device bundle and put it on a board "
                        "(tally flash --board B --out DIR | --port PORT)",
                        description="Compile the device-side modules with mpy-cross (xtensawin for "
                        "the ESP32 boards) and into a ROMFS image (tally.romfs, executed in place from a ROM "
                        "partition), compile the TOML config into the JSON the device reads, "
                        "and write main.py. --board unix builds a bundle the MicroPython unix port "
                        "runs as is, on the emulated board. --port copies the bundle to a board "
                        "over USB (changed files only; our stale modules removed) and soft-resets "
                        "it; --firmware writes MicroPython itself first. Needs pip install "
                        "'tally[flash]' (mpremote, esptool).")
    fl.add_argument("--board", required=True, help="unix, esp32-devkitc or esp32-s3-devkitc")
    fl.add_argument("--out", metavar="DIR", help="build the bundle here")
    fl.add_argument("--config", metavar="FILE", help="tally.toml for the device (see docs/tally.example.toml)")
    fl.add_argument("--duration", type=int, help="unix: stop after this many seconds (0: run on)")
    fl.add_argument("--port", help="the board's serial port (/dev/ttyUSB0): build the bundle (in --out "
                    "DIR or a temporary one) and copy it there with mpremote, then soft-reset")
    fl.add_argument("--firmware", metavar="FILE", help="with --port: write this MicroPython .bin with "
                    "esptool first (ESP32 at 0x1000, ESP32-S3 at 0x0)")
    fl.add_argument("--erase", action="store_true", help="with --firmware: erase the whole flash first "
                    "(the board's files too)")
    fl.add_argument("--no-reset", action="store_true", help="with --port: leave the board in its REPL "
                    "(main.py not started)")
    fl.set_defaults(func=cmd_flash)

    k = sub.add_parser("pki", help="make a fleet CA and TLS certificates (tally pki init|device)",
                       description="TLS certificates for broker, collector and devices, EC P-256, "
                       "and a mosquitto listener config and ACL that let a device publish only "
                       "under its own id (see docs/security.md). Needs the cryptography package.")
    ks = k.add_subparsers(dest="action", metavar="ACTION", required=True)
    ki = ks.add_parser("init", help="a new CA, broker and collector certificates, mosquitto config")
    ki.add_argument("dir", help="directory for the fleet PKI")
    ki.add_argument("--host", action="append", help="the broker's DNS name or address, for its "
                    "certificate (repeat; default localhost and 127.0.0.1)")
    ki.add_argument("--port", type=int, default=8883, help="TLS listener port in the config (default 8883)")
    ki.add_argument("--days", type=int, default=825, help="validity of the certificates (default 825)")
    kd = ks.add_parser("device", help="a client certificate for one device (CN = its id)")
    kd.add_argument("dir", help="the directory of tally pki init")
    kd.add_argument("device_id")
    kd.add_argument("--days", type=int, default=825, help="validity (default 825)")
    k.set_defaults(func=cmd_pki)

    i = sub.add_parser("inspect", help="decode a log file or a payload into readable text",
                       description="A ring log image (its sector size read from the image; a "
                       "truncated one said to be), a data batch, or a captured MQTT payload "
                       "(COSE_Mac0: decoded, and verified with --key and --device). Anything "
                       "else is an error (exit 2).")
    i.add_argument("file")
    i.add_argument("--birth", metavar="FILE", help="a captured birth message: name the metrics")
    i.add_argument("--schema", metavar="FILE", help="a schema file (JSON or CBOR list of "
                   "[name, unit, scale, kind]): name the metrics")
    i.add_argument("--key", metavar="HEX", help="the device key (or the fleet master key) to verify "
                   "a COSE capture")
    i.add_argument("--device", metavar="ID", help="the device id the capture is bound to")
    i.set_defaults(func=cmd_inspect)

    sc = sub.add_parser("stubcheck", help="check the device-side modules against the MicroPython ESP32 stubs",
                        description="Check every import and module attribute of the modules flashed "
                        "on an ESP32 against the micropython-esp32-stubs package (a static check: "
                        "no type inference). Exit 0 clean, 1 with findings (path:line: what), 2 "
                        "without the stubs.")
    sc.add_argument("--stubs", metavar="DIR", help="stubs installed with pip install --target DIR "
                    "(default: the installed micropython-esp32-stubs)")
    sc.add_argument("--json", action="store_true", help="the findings and counts as JSON")
    sc.set_defaults(func=cmd_stubcheck)
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    if not a.cmd:
        p.print_help()
        return 2
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
