# The MicroPython half of the TLS heap figure (hil/bench/tls_sync.py runs it
# under the unix port, code in a ROMFS image as on a board): the agent on the
# emulated compressor board syncing through a real mosquitto, over TLS with
# the device's certificate or plain, to a collector that acks; the link is
# dropped halfway so a second handshake is paid too.
#   tls_sync_mp.run(PORT, LOG, MINUTES, TLS)   TLS: (cert, key, ca) DER paths or None
# Prints "END <json>": depth (0: every record acked), sessions, errors.
import gc
import json
import time

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.log import file_log
from agent.port.mqtt_mp import MPTransport
from boards.emulated import Emulation

DEV = "fp-tls"
KEY = b"fp-tls-key-16byt"


def _settle(up, clock, ms):
    end = time.ticks_add(time.ticks_ms(), ms)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        up.step(clock.uptime_ms())
        if up.idle():
            return
        time.sleep_ms(2)


def run(port, path, minutes=60, tls=None, sample_ms=30000):
    clock = VirtualClock()
    ident = None
    if tls:
        from agent.port.tls_mp import Identity
        ident = Identity(DEV, tls[0], tls[1], tls[2], wall=lambda: int(time.time()))
        gc.collect()
    world = Emulation(clock, seed=5, serial="loopback")
    log = file_log(path, DEV, capacity=64 * 1024, durable=False)
    t = MPTransport(DEV, "127.0.0.1", port, keepalive=30, timeout_ms=3000, tls=ident)
    ag = Agent(DEV, world.channels(), log, clock, transport=t, interval_ms=60000,
               sample_ms=sample_ms, reason="poweron",
               uplink_opts={"key": KEY, "batch_max": 10, "window": 4,
                            "backoff_min_ms": 200, "backoff_max_ms": 1000}).start()
    up = ag.uplink
    for m in range(minutes):
        if m == minutes // 2:
            t.c.close()                   # the link drops: a second handshake
        for _ in range(60000 // sample_ms):
            clock.advance_ms(sample_ms)
            ag.tick()
            if up.inflight:
                _settle(up, clock, 200)
    ag.close_now()
    up.flush = True
    for _ in range(300):
        clock.advance_ms(100)
        _settle(up, clock, 100)
        if up.idle():
            break
    print("END", json.dumps({"depth": log.depth(), "sessions": t.session(), "errors": t.errors,
                             "last_error": t.last_error}))
    t.close()
    ag.stop()
