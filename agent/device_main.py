# The firmware's entry point (main.py calls start(), which runs run() and,
# should it ever raise, leaves a crash marker and resets): read the config that
# `tally flash` compiled from the TOML file, build the board's channels, the
# ring log and, with a broker, the uplink on our MQTT client; join Wi-Fi and
# set the wall clock from NTP where configured; then meter in real time,
# or in wake/sleep cycles with deep_sleep. The config's asset (compressor,
# luminaire, pump) picks the board's sensor set, its sensors table every
# sensor's settings (boards.board). Portable: the unix port (board "unix":
# the emulated board) and the ESP32 boards (machine.I2C / machine.UART /
# machine.Counter, esp32.Partition, network.WLAN, a watchdog).
#
# Whatever is wrong at boot is one console line, and the agent meters what it
# still can: a broken config runs on defaults, a pin the chip lacks leaves
# out that bus's sensors, a missing or small log partition falls back to the
# file log, an unreachable broker or network is retried with backoff while
# the records wait in the log.

import json

from agent import port
from agent.agent import Agent
from agent.readout import summary
from agent.channels import Channel
from agent.clock import RealClock, WALL_HOST, WALL_NONE
from agent.log import IdentityError, RingLog, file_log

CRASH = "tally.crash"      # left by a crash: the next boot's reason is "crash"
CRASH_WAIT_S = 5           # between a crash and the reset: time to read the console
LOG_PARTITION = "tallylog"
MIN_LOG_SECTORS = 8        # 32 KiB of 4 KiB sectors: room to coalesce when full
SLEEP_DRAIN_MS = 5000      # deep sleep: the uplink's chance to drain before sleeping
_STR = ("device_id", "board", "broker", "key", "log", "log_path", "ntp", "wifi_ssid", "wifi_password",
        "tls_cert", "tls_key", "tls_ca", "asset", "air")
_KIND = {str: "a string", bool: "true or false", int: "a non-negative integer",
         dict: "a table of sensor settings"}


def _config(path):
    """The compiled config. What is wrong in it is said and left out (its
    default then applies), so the device meters whatever it still can."""
    try:
        with open(path) as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        print("tally: config %s unusable (%s): running on defaults: no board, no uplink; "
              "rebuild it with tally flash" % (path, e))
        raw = {}
    cfg = {}
    for k in raw:
        v = raw[k]
        t = str if k in _STR else bool if k in ("deep_sleep", "parts") else dict if k == "sensors" else int
        if type(v) is not t or (t is int and v < 0):
            print("tally: config %s: key %r must be %s, got %r: left out" % (path, k, _KIND[t], v))
        else:
            cfg[k] = v
    if cfg.get("interval_s", 1) < 1:
        print("tally: config %s: interval_s must be at least 1: using 60" % path)
        cfg["interval_s"] = 60
    ival = cfg.setdefault("interval_s", 60) * 1000
    s = cfg.get("sample_ms", 1000)
    if not 10 <= s <= ival:
        s = 1000 if ival >= 1000 else ival
        print("tally: config %s: sample_ms must be from 10 to interval_s * 1000: using %d" % (path, s))
    cfg["sample_ms"] = s
    if "device_id" not in cfg:
        from agent.port.micropython import unique_id
        cfg["device_id"] = "tally-" + (unique_id() or "device")
        print("tally: config %s: no device_id: using %s" % (path, cfg["device_id"]))
    return cfg


def _missing(what, e):
    # tally flash leaves out of a board's bundle the modules its config does not
    # use (hil/harness/mpbuild.py): a config edited on the board may ask for one
    print("tally: %s: %s: rebuild the bundle with tally flash for this config" % (what, e))


def _broker(url):
    # mqtt://host[:port], mqtts://host[:port] (TLS)
    scheme, _, rest = url.rstrip("/").partition("://")
    host, _, port = rest.partition(":")
    return host, int(port) if port else 8883 if scheme in ("mqtts", "ssl") else 1883


def _channels(cfg, clock, tags=None):
    """The board's channels; with a list `tags` (parts on), the ID EEPROM
    tags of its asset and the config's part_tags go into it as (slot, driver)."""
    name = cfg.get("board")
    if not name:
        print("tally: no board configured: metering the system counters only")
        return []
    asset = cfg.get("asset", "compressor")
    air = cfg.get("air", "rated")
    import boards
    if name == "unix":
        from boards.emulated import Emulation
        try:
            w = Emulation(clock, seed=cfg.get("seed", 1), profile=asset, air=air, overrides=cfg.get("sensors"),
                          tags=tags is not None)
            _tags(tags, cfg, w.board, {"i2c": w.i2c})
            return w.channels()
        except ValueError as e:
            print("tally: %s: metering the system counters only" % e)
            return []
    try:
        board = _installed(boards, name, asset, cfg.get("sensors"), air)
    except ValueError as e:                  # BoardError: unknown board, or a wrong board file
        print("tally: %s: metering the system counters only" % e)
        return []
    boards.drop(boards.MODULES[name])        # the other assets' sets: only this one is kept
    boards.drop("tags")
    print("tally: board %s as a %s: %s" % (name, asset, ", ".join([s["type"] for s in board["sensors"]])))
    # bus by bus, sensor by sensor in the board's order (the schema's order):
    # a bus that will not open leaves out its sensors, not the others'
    opened = {}
    chans = []
    out = []
    from boards import sensors   # held across the loop, dropped after it (boards.make_channels)
    for s in board["sensors"]:
        b = s["bus"]
        if b not in opened:
            opened[b] = _open_bus(name, b, board["buses"][b])
        bus = opened[b]
        if bus is None:
            out.append(s["type"])
            continue
        try:
            # bus is a machine.I2C or a machine.UART: the sensor takes the one it needs
            chans += boards.make_channels({"name": name, "buses": board["buses"], "sensors": [s]},
                                          bus, lambda port, baud, u=bus: u)
        except (OSError, ValueError, ImportError) as e:   # ImportError: its driver is not in the bundle
            print("tally: board %s: %s on bus %s: %s" % (name, s["type"], b, e))
            out.append(s["type"])
    del sensors
    boards.drop("sensors")
    _tags(tags, cfg, board, opened, lambda b: _open_bus(name, b, board["buses"][b]))
    if out:
        print("tally: board %s: metering %d of %d sensors; left out: %s"
              % (name, len(chans), len(board["sensors"]), ", ".join(out)))
    return chans


def _tags(tags, cfg, board, opened, open_bus=None):
    """With parts on (a list `tags`), the board's ID EEPROM tags and the
    config's part_tags into it (agent/parttags.py board_tags)."""
    if tags is not None:
        try:
            from agent.parttags import board_tags
            tags += board_tags(board, cfg.get("part_tags", ()), opened, open_bus)
        except ImportError:
            pass                             # said where Parts is made


def _installed(boards, name, asset, sensors, air):
    """The board as installed on its asset with the config's sensor settings;
    settings it refuses (tally flash checks them, so a hand-edited config)
    are said in one line and the board's own are used."""
    try:
        return boards.board(name, asset, sensors, air)
    except ValueError as e:
        if not sensors:
            raise
        print("tally: %s: using the board's own sensor settings" % e)
        return boards.board(name, asset, None, air)


def _open_bus(name, b, bus):
    from agent.port.micropython import open_i2c, open_uart
    try:
        k = bus["kind"]
        if k == "counter":
            from agent.port.counter_mp import open_counter
            return open_counter(bus)
        return open_i2c(bus) if k == "i2c" else open_uart(bus)
    except (ImportError, OSError, ValueError) as e:
        print("tally: board %s: bus %s did not open: %s" % (name, b, e))
        return None


def _log(cfg, dev):
    path = cfg.get("log_path", "tally.log")
    kind = cfg.get("log") or ("file" if cfg.get("board") in (None, "unix") else "partition")
    if kind == "partition":
        try:
            from agent.port.esp32_flash import PartitionFlash
            fl = PartitionFlash(LOG_PARTITION)
            if fl.sector_count < MIN_LOG_SECTORS:
                raise OSError("partition %r has %d sectors; the log needs at least %d (%d KiB)"
                              % (LOG_PARTITION, fl.sector_count, MIN_LOG_SECTORS,
                                 MIN_LOG_SECTORS * fl.sector_size // 1024))
            print("tally: log on partition %r (%d KiB)" % (LOG_PARTITION, fl.size // 1024))
            return RingLog(fl, dev)
        except (ImportError, OSError, ValueError) as e:
            print("tally: log: %s; falling back to the file log %s" % (e, path))
    elif kind != "file":
        print("tally: config: log %r is not partition or file: using the file log %s" % (kind, path))
    return file_log(path, dev, capacity=cfg.get("log_kib", 64) * 1024)


def _wifi(cfg):
    ssid = cfg.get("wifi_ssid")
    if not ssid:
        return None                          # the host's network, or one boot.py set up
    from agent.port.net_mp import WifiLink
    try:
        return WifiLink(ssid, cfg.get("wifi_password", ""))
    except ImportError as e:
        print("tally: wifi %r: no network module on this port (%s): using the host's network" % (ssid, e))
        return None


class _Net:
    """The uplink's transport, tried only while the network is up; says on
    the console when the broker becomes reachable or stops being so."""

    def __init__(self, t, wifi):
        self.t = t
        self.wifi = wifi
        self.will = None
        self._ok = None
        self._why = None
        self.ota = None              # an agent.ota.Updater: takes the two OTA topics

    def connect(self):
        if self.wifi is not None and not self.wifi.up:
            return False
        t = self.t
        t.will = self.will
        ok = t.connect()
        why = t.last_error
        # said once per outage; again only when a TLS refusal's cause changes
        # (an expired certificate shows once NTP has set the wall clock)
        if ok != self._ok or (not ok and why != self._why and "TLS:" in why):
            self._ok = ok
            self._why = why
            if ok:
                print("tally: broker %s:%d connected" % (t.c.host, t.c.port))
            else:
                print("tally: broker unreachable (%s): metering on, records kept in the log; "
                      "retrying with backoff" % why)
        return ok

    def connected(self):
        return self.t.connected()

    def session(self):
        return self.t.session()

    def publish(self, topic, payload, retain=False):
        return self.t.publish(topic, payload, retain)

    def poll(self):
        msgs = self.t.poll()
        u = self.ota
        if u is None or not msgs:
            return msgs
        out = []
        for m in msgs:
            if m[0] == u.topic_chunk:
                u.chunk(m[1])
            elif m[0] == u.topic_offer:
                u.offer(m[1])
            else:
                out.append(m)
        return out

    def close(self):
        self.t.close()


def _uplink(cfg, dev, wifi, clock):
    url = cfg.get("broker")
    if not url:
        return None, None
    tls = None
    try:
        if not url.startswith(("mqtt://", "tcp://", "mqtts://", "ssl://")):
            raise ValueError("the device speaks mqtt:// and mqtts:// only")
        host, port = _broker(url)
        key = bytes.fromhex(cfg.get("key", ""))
        if len(key) < 16:
            raise ValueError("key 'key' must be 32 to 128 hex digits")
        if url.startswith(("mqtts://", "ssl://")):
            # the certificate must name this device, or not a byte goes out
            from agent.port.tls_mp import Identity, TLS_FILES
            tls = Identity(dev, *[cfg.get(k, f) for k, f in TLS_FILES], wall=clock.wall_s)
    except (ValueError, ImportError) as e:   # ImportError: no TLS module in the bundle
        print("tally: broker %s: %s: no uplink, logging only" % (url, e))
        return None, None
    from agent.port.mqtt_mp import MPTransport
    opts = {"key": key}
    for k in ("batch_max", "window", "drain_bps"):
        if k in cfg:
            opts[k] = cfg[k]
    if "max_latency_s" in cfg:
        opts["max_latency_ms"] = cfg["max_latency_s"] * 1000
    return _Net(MPTransport(dev, host, port, tls=tls), wifi), opts


def _ota(cfg, dev, net, up, clock):
    """The updater, when the bundle carries the fleet's release key (ota.pub)
    and there is an uplink; the running release goes into the birth."""
    from agent import ota_boot
    ver, trial = ota_boot.running()
    if up is not None:
        up.fw = ver
    if trial:
        print("tally: ota: running %s on trial: kept once connected and a batch is acked" % ver)
    if net is None or not port.exists("ota.pub"):
        return None, trial
    try:
        from agent import ota       # the fetch: loaded only where updates can be checked
    except ImportError as e:
        _missing("ota", e)
        return None, trial
    n = ota.load_pubkey()
    if n is None:
        return None, trial
    # tally bench ota (config ota_heap = 1): the live heap with a chunk held, at most
    probe = ota.HeapProbe() if cfg.get("ota_heap") else None
    p = ota_boot.read_pointer()
    u = ota.Updater(dev, net, n, ver, clock.uptime_ms, bad=p.get("bad") or (),
                    probe=probe)
    net.ota = u
    net.t.subs += [u.topic_offer, u.topic_chunk]
    rolled = p.get("rolled")
    if rolled:
        u.say("rolledback", rolled, "not healthy in %d boots" % ota_boot.MAX_BOOTS)
    return u, trial


def _ntp(cfg, clock):
    # default: NTP wherever the device joins a network itself
    server = cfg.get("ntp", "pool.ntp.org" if cfg.get("wifi_ssid") else "")
    if not server:
        return None
    from agent.port.net_mp import Sntp
    return Sntp(server, clock)


def _deep(cfg, channels):
    """Awake ms per wake with deep sleep on, else 0; says what it costs."""
    if not cfg.get("deep_sleep"):
        return 0
    ival = cfg["interval_s"]
    awake = cfg.get("awake_s", 10)
    if not 1 <= awake < ival:
        print("tally: deep sleep: awake_s (%d) must be from 1 to below interval_s (%d): deep sleep off"
              % (awake, ival))
        return 0
    whole = [type(c).__name__ for c in channels if c.per_interval]
    part = [type(c).__name__ for c in channels if not c.per_interval]
    print("tally: deep sleep on: wake every %d s, meter %d s, log the interval, give the uplink up "
          "to %d s, sleep. The open interval does not survive a sleep: cumulative registers (%s) "
          "cover the whole interval, counters from samples (%s) only the awake time"
          % (ival, awake, SLEEP_DRAIN_MS // 1000, ", ".join(whole) or "none", ", ".join(part) or "none"))
    return awake * 1000


def _sleep(ag, net, sleeper, wake, net_up):
    """End a wake: log the interval, let the uplink drain (bounded), then
    deep sleep until the next interval is due. Returns the uptime the next
    wake starts at (light sleep), or None once the board is going down."""
    clock = ag.clock
    ag.shutdown(SLEEP_DRAIN_MS if net is not None and net_up else 0)
    now = clock.uptime_ms()
    ms = wake + ag.interval - now
    if ms < 1000:
        ms = 1000
    print("tally: %d records logged, %d unacked; sleep %d ms" % (ag.records, ag.log.depth(), ms))
    if sleeper is None:
        clock.sleep_ms(ms)                   # no deep sleep here: the agent stays up
        return clock.uptime_ms()
    if net is not None:
        net.close()
    ag.stop()
    sleeper(ms)                              # the board powers down and boots afresh
    return None



class _Counters:
    """The network's own counters, read as a sensor would be (no bus: a
    read never fails)."""

    def __init__(self, wifi, ntp):
        self.wifi = wifi
        self.ntp = ntp

    def read(self):
        w = self.wifi
        n = self.ntp
        return (w.failures if w else 0, w.drops if w else 0, n.failures if n else 0)


class NetChannel(Channel):
    """The device's network health in every record, as odometers: Wi-Fi
    attempts that did not join, links lost, NTP exchanges that failed. Read
    once per interval; each boot's counters start at zero and add on."""
    metrics = [
        ("wifi_fail", "count", 0, "odo"),
        ("wifi_drops", "count", 0, "odo"),
        ("ntp_fail", "count", 0, "odo"),
    ]
    per_interval = True

    def __init__(self, wifi, ntp):
        Channel.__init__(self, _Counters(wifi, ntp))
        self._seen = (0, 0, 0)

    def _bind(self, m):
        self._i = [m.index(x[0]) for x in self.metrics]

    def update(self, m, now_ms, dt_ms, r):
        seen = self._seen
        for k in range(3):
            m.add(self._i[k], r[k] - seen[k])
        self._seen = r


def run(path="tally_config.json"):
    cfg = _config(path)
    dev = cfg["device_id"]
    board = cfg.get("board")
    # the unix port's clock is the host's; a board knows no time until NTP
    clock = RealClock(WALL_HOST if board == "unix" else WALL_NONE)
    tags = [] if cfg.get("parts") else None
    channels = _channels(cfg, clock, tags)
    log = _log(cfg, dev)
    wifi = _wifi(cfg)
    net, opts = _uplink(cfg, dev, wifi, clock)
    ntp = _ntp(cfg, clock)
    if wifi is not None or ntp is not None:
        channels.append(NetChannel(wifi, ntp))   # wifi_fail, wifi_drops, ntp_fail in every record
    if cfg.get("parts"):
        # component identity: every sensor that can tell one, and the node's own (the ESP32's MAC)
        try:
            from agent.parts import Parts, slots_for
            from agent.port.micropython import node_id
            channels.append(Parts(slots_for(channels, tags, node=node_id if node_id() else None)))
        except ImportError as e:
            _missing("parts", e)
    reason = None
    if port.exists(CRASH):
        reason = "crash"                     # the board reset itself after one (start())
        port.remove(CRASH)
    try:
        ag = Agent(dev, channels, log, clock, transport=net, board=board or "none",
                   interval_ms=cfg["interval_s"] * 1000, sample_ms=cfg["sample_ms"],
                   reason=reason, uplink_opts=opts).start()
    except IdentityError as e:
        # A renamed device on an existing log: metering under the new id would
        # bill the old device's odometers to it. Not a crash (a reset would
        # only loop): say it once and stop, leaving the log as it is.
        print("tally: %s; not metering" % e)
        if net:
            net.close()
        return
    upd, trial = _ota(cfg, dev, net, ag.uplink, clock)
    wdt = None
    if cfg.get("watchdog_s"):
        try:
            from machine import WDT
            wdt = WDT(timeout=cfg["watchdog_s"] * 1000)
        except (ImportError, AttributeError, ValueError):
            wdt = None                       # no watchdog on this port
    print("tally: device %s on %s, boot %d (%s), %s%s%s" % (
        dev, board or "no board", ag.boot, ag.reason, cfg.get("broker") if net else "no broker (logging only)",
        ", wifi %r" % wifi.ssid if wifi else "", ", ntp %s" % ntp.host if ntp else ""))
    awake = _deep(cfg, channels)
    sleeper = None
    if awake:
        from agent.port.micropython import deepsleep
        sleeper = deepsleep()
        if sleeper is None:
            print("tally: deep sleep: this port has no machine.deepsleep: light sleep instead, "
                  "the agent stays up")
    end = cfg.get("duration_s", 0) * 1000
    seen = ag.records
    up = ag.uplink
    wake = 0
    net_up = wifi is None
    while not end or clock.uptime_ms() < end:
        now = clock.uptime_ms()
        if now >= ag.next_due():
            now = ag.tick()                  # sample on schedule (and step the uplink)
        elif up is not None and up.busy():
            up.step(now)                     # a backlog drains between samples
        if wdt:
            wdt.feed()
        if upd is not None:
            upd.step(now)
            if upd.state == "switching":
                _switch(ag, net, upd)
                return
        if trial and _trial(upd, up, now, cfg.get("ota_trial_s", 0) * 1000):
            trial = False
        if ag.records != seen:
            seen = ag.records
            print(summary(ag.meter, log.last))
        due = ag.next_due()
        if wifi is not None:
            if wifi.step(now) and not net_up and up is not None:
                up.kick(now)                 # the network is back: try the broker now
            net_up = wifi.up
            d = wifi.due(now)
            due = d if d < due else due
        if ntp is not None and net_up:
            ntp.step(now)
        if awake:
            if now - wake >= awake:
                wake = _sleep(ag, net, sleeper, wake, net_up)
                if wake is None:
                    return
                continue
            due = wake + awake if wake + awake < due else due
        wait = due - clock.uptime_ms()
        if up is not None and up.busy():
            wait = 5 if wait > 5 else wait
        if upd is not None and upd.pending:
            up.step(now)                     # the next chunk: take it as soon as it is there
            wait = 1 if wait > 1 else wait
        clock.sleep_ms(wait)
    ag.shutdown(3000 if net_up else 0)
    if net:
        net.close()
    print("tally: stopped; %d records logged, %d unacked" % (ag.records, log.depth()))
    ag.stop()


def _switch(ag, net, upd):
    """Every file of an update is verified and the pointer names it: stop
    metering cleanly (the open interval logged, the uplink drained, bounded)
    and reset into it."""
    from agent import ota_boot
    if upd.probe is not None:
        print("tally: ota: heap live %d B in the steady loop, at most %d B while fetching"
              % (upd.probe.base, upd.probe.peak))
    ag.shutdown(3000)
    if upd.report is not None:
        upd.step(ag.clock.uptime_ms())
    net.close()
    ag.stop()
    print("tally: ota: rebooting into %s" % upd.version)
    ota_boot.reboot()


def _trial(upd, up, now, limit_ms):
    """A version on trial: kept once it is connected and a batch is acked;
    rebooted (a trial boot counted) when that has not happened in limit_ms
    (config ota_trial_s; default TRIAL_MS).
    True once it is settled."""
    from agent import ota_boot as ota
    if up is not None and up.t.connected() and up.h["sync_ok"]:
        v = ota.confirm()
        print("tally: ota: %s healthy (connected, a batch acked): kept" % v)
        if upd is not None:
            upd.say("ok", v)
        return True
    limit_ms = limit_ms or ota.TRIAL_MS
    if now > limit_ms:
        print("tally: ota: not healthy after %d s on trial: rebooting" % (limit_ms // 1000))
        ota.reboot()
    return False


def start(path="tally_config.json"):
    """main.py's call: run(). Should it ever raise (a bug; every expected
    fault is handled inside), the traceback goes to the console, a marker
    file makes the next boot's reason "crash", and the board resets, so
    metering resumes instead of the board idling at its REPL. A port without
    machine.reset (the unix port) raises on. Ctrl-C is not caught."""
    try:
        run(path)
    except Exception as e:
        import sys
        sys.print_exception(e)
        try:
            with open(CRASH, "w") as f:
                f.write(repr(e))
        except OSError:
            pass
        try:
            from machine import reset
        except ImportError:
            raise e
        print("tally: crashed (%r); resetting in %d s" % (e, CRASH_WAIT_S))
        import time
        time.sleep(CRASH_WAIT_S)
        reset()
