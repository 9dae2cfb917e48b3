# The firmware's entry point (main.py calls run()): read the config that
# `tally flash` compiled from the TOML file, build the board's channels, the
# ring log and, with a broker, the uplink on our MQTT client; then meter in
# real time. Portable: the unix port (board "unix": the emulated compressor
# board) and the ESP32 boards (machine.I2C / machine.UART, a watchdog).

import json

from agent.agent import Agent
from agent.clock import RealClock
from agent.log import file_log


def _broker(url):
    # mqtt://host[:port]
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.partition(":")
    return host, int(port) if port else 1883


def _channels(cfg, clock):
    name = cfg["board"]
    if name == "unix":
        from boards.emulated import Emulation
        return Emulation(clock, seed=cfg.get("seed", 1)).channels()
    import boards
    from agent.port.micropython import open_i2c, open_uart
    board = boards.load(name).BOARD
    i2c = None
    uart = None
    for b in board["buses"].values():
        if b["kind"] == "i2c" and i2c is None:
            i2c = open_i2c(b)
        elif b["kind"] == "uart" and uart is None:
            uart = b
    return boards.make_channels(board, i2c, lambda port, baud: open_uart(uart))


def run(path="tally_config.json"):
    with open(path) as f:
        cfg = json.load(f)
    dev = cfg["device_id"]
    clock = RealClock()
    try:
        channels = _channels(cfg, clock)
    except (OSError, ValueError) as e:
        print("tally: board %s: %s" % (cfg["board"], e))
        raise
    log = file_log(cfg.get("log_path", "tally.log"), dev, capacity=cfg.get("log_kib", 64) * 1024)
    transport = None
    opts = None
    if cfg.get("broker"):
        from agent.port.mqtt_mp import MPTransport
        host, port = _broker(cfg["broker"])
        transport = MPTransport(dev, host, port)
        opts = {"key": bytes.fromhex(cfg["key"])}
        for k in ("batch_max", "window", "drain_bps"):
            if k in cfg:
                opts[k] = cfg[k]
        if "max_latency_s" in cfg:
            opts["max_latency_ms"] = cfg["max_latency_s"] * 1000
    ag = Agent(dev, channels, log, clock, transport=transport, board=cfg["board"],
               interval_ms=cfg.get("interval_s", 60) * 1000, sample_ms=cfg.get("sample_ms", 1000),
               uplink_opts=opts).start()
    wdt = None
    if cfg.get("watchdog_s"):
        try:
            from machine import WDT
            wdt = WDT(timeout=cfg["watchdog_s"] * 1000)
        except (ImportError, AttributeError, ValueError):
            wdt = None                       # no watchdog on this port
    print("tally: device %s on %s, boot %d (%s), %s" % (
        dev, cfg["board"], ag.boot, ag.reason, cfg.get("broker") or "no broker (logging only)"))
    end = cfg.get("duration_s", 0) * 1000
    seen = ag.records
    while not end or clock.uptime_ms() < end:
        ag.tick()
        if wdt:
            wdt.feed()
        if ag.records != seen:
            seen = ag.records
            print("interval seq=%d depth=%d" % (log.last[0], log.depth()))
        wait = ag.next_due() - clock.uptime_ms()
        if ag.uplink and ag.uplink.busy():
            wait = 5 if wait > 5 else wait
        clock.sleep_ms(wait)
    ag.shutdown(3000)
    if transport:
        transport.close()
    print("tally: stopped; %d records logged, %d unacked" % (ag.records, log.depth()))
    ag.stop()
