"""`tally run`: the agent in real time, what a Raspberry Pi runs (the loop
device_main runs on a MicroPython board, here on CPython with a host clock,
the Linux buses and paho). SIGTERM stops it with exit 0, Ctrl-C (SIGINT)
with 130 as any command; both after logging the interval in progress."""
import os
import sys
import time

from agent.readout import summary
from agent.cli.common import Stop, err


def run(a):
    from agent.cli.toml_config import load_config, ConfigError
    try:
        cfg = load_config(a.config, board=a.board)
    except ConfigError as e:
        return err(str(e))
    from agent.agent import Agent
    from agent.clock import RealClock
    from agent.log import file_log
    from agent.port.cpython import host_clock_synchronised, boot_reason, mark_state, Notifier
    import boards
    # the host clock is good only while the system says it is synchronised
    clock = RealClock(host_sync=host_clock_synchronised)
    world = None
    try:
        if cfg["board"] == "emulated":
            from boards.emulated import Emulation
            world = Emulation(clock, seed=cfg.get("seed", 1), serial=cfg.get("serial", "pty"),
                              profile=cfg["asset"], air=cfg["air"], overrides=cfg["sensors"],
                              tags=bool(cfg.get("parts")))
            channels = world.channels()
            board = world.board
        else:
            from agent.port.linux_bus import SMBus2I2C, open_counter, open_serial
            board = boards.board(cfg["board"], cfg["asset"], cfg["sensors"], cfg["air"])
            i2c = SMBus2I2C(board.get("i2c_bus", 1))
            channels = boards.make_channels(board, i2c, open_serial, open_counter=open_counter)
    except (OSError, ValueError) as e:
        # no /dev/i2c-N, a serial port that will not open, a sensor without a channel
        return err("run: board %s: %s" % (cfg["board"], e))
    if cfg.get("parts"):
        # component identity and swap events: the sensors that can tell one, the ID EEPROM
        # tags of the board's asset (boards/tags.py) with the config's part_tags over them,
        # and the Pi's own id
        from agent import parts, parttags
        from agent.port.cpython import node_id
        tags = parttags.tags(parttags.tag_specs(board, cfg.get("part_tags", [])),
                          world.i2c if world is not None else i2c)
        channels.append(parts.Parts(parts.slots_for(channels, tags, node=node_id())))
    transport = None
    if cfg.get("broker"):
        from agent.port.mqtt_paho import PahoTransport
        try:
            transport = PahoTransport(cfg["device_id"], cfg["broker"], tls=cfg.get("tls"))
        except ValueError as e:
            return err("run: %s" % e)
    uplink_opts = {"key": bytes.fromhex(cfg["key"])} if cfg.get("key") else None
    if uplink_opts:
        for k in ("batch_max", "window", "drain_bps"):
            if k in cfg:
                uplink_opts[k] = cfg[k]
        if "max_latency_s" in cfg:
            uplink_opts["max_latency_ms"] = cfg["max_latency_s"] * 1000
    state_dir = os.path.dirname(os.path.abspath(cfg["log_path"]))
    os.makedirs(state_dir, exist_ok=True)
    # why this start (clean stop, systemd's watchdog, power loss, crash), from
    # what the last run left beside the log (agent/port/cpython.py)
    reason = boot_reason(state_dir)
    try:
        log = file_log(cfg["log_path"], cfg["device_id"], capacity=cfg["log_kib"] * 1024)
    except (OSError, ValueError) as e:
        return err("run: log %s: %s" % (cfg["log_path"], e))
    agent = Agent(cfg["device_id"], channels, log, clock, transport=transport,
                  board=cfg["board"], interval_ms=cfg["interval_s"] * 1000,
                  sample_ms=cfg["sample_ms"], uplink_opts=uplink_opts, reason=reason)
    stop = Stop()
    notifier = Notifier()          # systemd: READY=1, WATCHDOG=1 from the loop, STOPPING=1
    try:
        agent.start()
    except OSError as e:          # log.IdentityError: a log written under another device id
        if world:
            world.close()
        return err("run: log %s: %s" % (cfg["log_path"], str(e).replace("log: ", "", 1)))
    mark_state(state_dir, "running")
    notifier.notify("READY=1")
    print("tally: device %s on board %s, boot %d (%s), epoch %08x, log %s, %s"
          % (cfg["device_id"], cfg["board"], agent.boot, agent.reason, log.epoch, cfg["log_path"],
             "broker " + cfg["broker"] if cfg.get("broker") else "no broker (logging only)"),
          flush=True)
    print("tally: board %s as a %s: %s" % (cfg["board"], cfg["asset"],
                                          ", ".join(s["type"] for s in board["sensors"])), flush=True)
    if not clock.wall_quality:
        print("tally: the host clock is not synchronised (adjtimex/timedatectl): records carry no "
              "wall time until it is; the collector places them from their boot's other records",
              flush=True)
    t_end = time.monotonic() + a.duration if a.duration else None
    seen = agent.records
    m = agent.meter
    t_note = 0
    said = None
    clean = False
    try:
        while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
            agent.tick()
            notifier.ping(clock.uptime_ms())       # the loop went round: the watchdog is fed
            if transport and transport.last_error != said:
                said = transport.last_error       # each new cause once, not every retry
                if said:
                    print("tally: broker: %s" % said, file=sys.stderr, flush=True)
            if agent.records != seen:
                seen = agent.records
                print(summary(m, log.last), flush=True)
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
                notifier.ping(clock.uptime_ms())
                wait = agent.next_due() - clock.uptime_ms()
            wait = notifier.wait_ms(clock.uptime_ms(), wait)
            if wait > 0:
                stop.wait(wait / 1000)
        clean = True
    finally:
        notifier.notify("STOPPING=1")
        agent.shutdown(3000)
        if transport:
            transport.close()
        agent.stop()
        if world:
            world.close()
    if clean:
        mark_state(state_dir, "clean")    # the next start says "deliberate"
    print("tally: stopped; %d records logged this run, %d unacked in the log"
          % (agent.records, log.depth()))
    return stop.exit_code()


def add(sub):
    r = sub.add_parser("run", help="run the agent in real time (what a Raspberry Pi runs)",
                       description="Run the agent in real time on a board. Stops cleanly on SIGTERM or "
                       "Ctrl-C, logging the interval in progress.")
    r.add_argument("--board", help="board name (emulated, rpi4, rpi-zero2w); overrides the config")
    r.add_argument("--config", help="TOML config file (see docs/running-on-a-pi.md)")
    r.add_argument("--duration", type=float, help="stop after this many seconds")
    r.set_defaults(func=run)
