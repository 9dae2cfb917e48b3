# The whole agent under the MicroPython unix port, as the firmware runs it:
# the emulated compressor board, the ring log in a file, the uplink on our
# MQTT client to a real mosquitto, and a collector on the other side
# (tests/test_mp_agent_sync.py runs this and restarts the broker midway).
#   micropython -X heapsize=... -c "import agent_sync_mp; agent_sync_mp.run(PORT, LOG, HOURS)"
# Prints "H <hour> <depth>" each simulated hour (the test reads them to time
# the broker restart), then "END <json of the last record's odometers>".
import gc
import json
import time

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.log import file_log, R_VALUES
from agent.port.mqtt_mp import MPTransport
from boards.emulated import Emulation

DEV = "mp-agent"
KEY = b"mp-agent-key-16b"


def _settle(up, clock, ms):
    """Real time for acks to come back (the virtual clock stands still)."""
    end = time.ticks_add(time.ticks_ms(), ms)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        up.step(clock.uptime_ms())
        if up.idle():
            return
        time.sleep_ms(2)


def run(port, path, hours=24, sample_ms=30000):
    clock = VirtualClock()
    world = Emulation(clock, seed=9, serial="loopback")
    log = file_log(path, DEV, capacity=64 * 1024, durable=False)
    t = MPTransport(DEV, "127.0.0.1", port, keepalive=30, timeout_ms=3000)
    ag = Agent(DEV, world.channels(), log, clock, transport=t, interval_ms=60000,
               sample_ms=sample_ms, reason="poweron",
               # 15-minute batches (15 records), as the day has always run: the
               # default hour-long batch of 60 needs more heap (docs/firmware.md)
               uplink_opts={"key": KEY, "batch_max": 30, "window": 4, "max_latency_ms": 900000,
                            "backoff_min_ms": 1000, "backoff_max_ms": 5000}).start()
    up = ag.uplink
    low = None
    for h in range(hours):
        for _ in range(3600000 // sample_ms):
            clock.advance_ms(sample_ms)
            ag.tick()
            if up.inflight:
                _settle(up, clock, 200)
        gc.collect()
        f = gc.mem_free()
        low = f if low is None or f < low else low
        print("H", h + 1, log.depth())
    ag.close_now()
    up.flush = True
    for _ in range(600):                 # drain: up to a minute of virtual time, in real time
        clock.advance_ms(100)
        _settle(up, clock, 100)
        if up.idle():
            break
    vals = {}
    for i, name in enumerate(ag.meter.names):
        if ag.meter.is_odometer(i):
            vals[name] = log.last[R_VALUES][i]
    print("END", json.dumps({"depth": log.depth(), "epoch": log.epoch, "logged": log.next_seq - log.epoch_seq0,
                             "odometers": vals, "mem_free_min": low, "errors": t.errors,
                             "sessions": t.session()}))
    t.close()
    ag.stop()
