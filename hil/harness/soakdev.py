"""One emulated device as its own process, for the chaos soak: the real agent
(drivers, emulated chips, durable file log, paho uplink) on a clock that runs
`speed` times faster than real time. SIGKILL it at any moment and start it
again on the same log: it comes back as the next boot. SIGTERM stops it
cleanly: it logs the interval in progress, drains what it can, and prints one
JSON line {"device", "depth", "boot", "epoch"}.

    python -m hil.harness.soakdev --id dev-1 --broker mqtt://127.0.0.1:1883 \
        --master-key HEX --log /tmp/dev-1.log --t0 <unix time of the soak start>
"""
import argparse
import json
import signal
import sys
import threading
import time

from agent import cose
from agent.agent import Agent
from agent.log import file_log
from agent.port.mqtt_paho import PahoTransport
from boards.emulated import Emulation

WALL0 = 1767225600          # 2026-01-01T00:00Z: where the soak's world clock starts


class FastClock:
    """Uptime since this process started and world time since the soak began
    (so the scenario carries on across restarts), both `speed` times real."""

    def __init__(self, speed, t0):
        self.speed = speed
        self.t0 = t0
        self.start = time.time()
        self.wall_quality = 2

    def world_ms(self):
        return int((time.time() - self.t0) * self.speed * 1000)

    def uptime_ms(self):
        return int((time.time() - self.start) * self.speed * 1000)

    def wall_s(self):
        return WALL0 + self.world_ms() // 1000

    def sleep_ms(self, ms):
        if ms > 0:
            time.sleep(ms / 1000 / self.speed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--id", required=True)
    p.add_argument("--broker", required=True)
    p.add_argument("--master-key", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--speed", type=float, default=120)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--interval-s", type=int, default=60)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--batch-max", type=int, default=20)
    p.add_argument("--drain-s", type=float, default=20, help="on SIGTERM, drain for at most this long")
    a = p.parse_args(argv)
    clock = FastClock(a.speed, a.t0)
    world = Emulation(clock, seed=a.seed)
    log = file_log(a.log, a.id, capacity=64 * 1024, durable=True)
    t = PahoTransport(a.id, a.broker)
    key = cose.device_key(bytes.fromhex(a.master_key), a.id)
    # timeouts are in device time: 30 s of it is 30/speed s of real time, so
    # scale the ack timeout to stay near a real second
    ag = Agent(a.id, world.channels(), log, clock, transport=t, board="emulated",
               interval_ms=a.interval_s * 1000, sample_ms=a.interval_s * 1000 // 4,
               uplink_opts=dict(key=key, window=a.window, batch_max=a.batch_max,
                                max_latency_ms=a.interval_s * 3000,
                                ack_timeout_ms=int(2 * a.speed * 1000),
                                backoff_min_ms=int(0.2 * a.speed * 1000),
                                backoff_max_ms=int(2 * a.speed * 1000))).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: stop.set())
    print(json.dumps({"device": a.id, "started": True, "boot": ag.boot}), flush=True)
    up = ag.uplink
    while not stop.is_set():
        ag.tick()
        deadline = time.monotonic() + max(0, ag.next_due() - clock.uptime_ms()) / 1000 / a.speed
        while not stop.is_set() and time.monotonic() < deadline:
            up.step(clock.uptime_ms())
            stop.wait(0.003 if up.busy() else 0.02)
    # device time runs `speed` times faster: 5 ms of real time between steps
    ag.shutdown(int(a.drain_s * a.speed * 1000), poll_ms=int(5 * a.speed))
    t.close()
    print(json.dumps({"device": a.id, "depth": log.depth(), "boot": log.boot, "epoch": log.epoch}),
          flush=True)
    ag.stop()
    world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
