"""The chaos soak: emulated devices in their own processes, through a real
mosquitto, to collector workers sharing one subscription, while the harness
restarts the broker, cuts the devices' connections, SIGKILLs devices and
restarts them, SIGKILLs a collector worker in the middle of a transaction and
re-delivers data messages. Then everything settles, every device drains and
stops, and the ledger is reconciled with what each device logged:

* every odometer total in the ledger equals the device's last logged value;
* every interval the device logged is in the ledger exactly once (the ledger
  covers seq0..last with no unexplained gap, and no replay alarm);
* every gap is a gap record (coalesced or dropped intervals, counted).

`soak()` returns a report dict; tests run it small, `tally bench soak` big.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from agent import cose
from agent.collector.store import Collector
from agent.log import file_log, R_VALUES
from hil.harness.mosquitto import Mosquitto
from hil.harness.proxy import Proxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAULTS = ("broker_restart", "link_cut", "agent_kill", "worker_kill", "duplicates")
# a collector worker holds each transaction open this long (only in the soak)
# so a SIGKILL lands inside one
HOLD_MS = 40


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Replayer:
    """A plain MQTT client that sees every data message and publishes copies
    of some of them again later: duplicates from the network's side."""

    def __init__(self, url, rng):
        import paho.mqtt.client as mqtt
        from agent.port.mqtt_paho import parse_url
        host, port = parse_url(url)[:2]
        self.rng = rng
        self.seen = []
        self.sent = 0
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-replayer")
        c.on_connect = lambda c, u, f, rc, p=None: c.subscribe("tally/v1/+/data", 1)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 1)
        c.connect_async(host, port, 10)
        c.loop_start()
        self.c = c

    def _on_message(self, c, u, m):
        with self._lock:
            self.seen.append((m.topic, bytes(m.payload)))
            if len(self.seen) > 500:
                del self.seen[:250]

    def replay(self, n):
        with self._lock:
            pick = [self.rng.choice(self.seen) for _ in range(min(n, len(self.seen)))]
        for tp, body in pick:
            if self.c.publish(tp, body, qos=1).rc == 0:
                self.sent += 1
        return len(pick)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Soak:
    def __init__(self, devices=3, seconds=30.0, speed=120.0, workers=2, db=None, seed=1,
                 fault_every=2.0, progress=None, workdir=None):
        self.n = devices
        self.seconds = seconds
        self.speed = speed
        self.nworkers = workers
        self.rng = random.Random(seed)
        self.fault_every = fault_every
        self.progress = progress or (lambda s: None)
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="tally-soak-")
        self.db = db or os.path.join(self.dir, "ledger.sqlite")
        self.master = bytes(self.rng.getrandbits(8) for _ in range(16))
        self.ids = ["soak-%02d" % i for i in range(devices)]
        self.faults = dict.fromkeys(FAULTS, 0)
        self.kills_in_txn = 0
        self.devs = {}
        self.workers = []
        self.t0 = time.time()

    # -- processes ------------------------------------------------------------------

    def _mark(self, i):
        return os.path.join(self.dir, "worker-%d.txn" % i)

    def _start_dev(self, dev):
        p = subprocess.Popen(
            [sys.executable, "-m", "hil.harness.soakdev", "--id", dev, "--broker", self.proxy.url,
             "--master-key", self.master.hex(), "--log", os.path.join(self.dir, dev + ".log"),
             "--t0", repr(self.t0), "--speed", repr(self.speed),
             "--seed", str(self.ids.index(dev) + 1)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(), cwd=ROOT)
        self.devs[dev] = p

    def _start_worker(self, i):
        env = _env()
        env["TALLY_CHAOS_HOLD_MS"] = str(HOLD_MS)
        env["TALLY_CHAOS_TXN_MARK"] = self._mark(i)
        env["TALLY_MASTER_KEY"] = self.master.hex()      # not on the command line
        p = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "collect", "--broker", self.broker.url,
             "--db", self.db, "--group", "soak",
             "--client-id", "soak-worker-%d" % i],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        if i < len(self.workers):
            self.workers[i] = p
        else:
            self.workers.append(p)

    def _stop_dev(self, dev):
        """SIGTERM: the device logs its open interval, drains, reports."""
        p = self.devs.pop(dev)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
        last = {}
        for line in out.splitlines():
            try:
                last = json.loads(line)
            except ValueError:
                pass
        return last

    # -- faults ----------------------------------------------------------------------

    def _fault(self, kind):
        rng = self.rng
        if kind == "broker_restart":
            self.broker.stop()
            time.sleep(rng.uniform(0.2, 1.0))
            self.broker.start()
            what = "broker restarted"
        elif kind == "link_cut":
            what = "cut %d device links" % self.proxy.cut()
        elif kind == "agent_kill":
            dev = rng.choice(sorted(self.devs))
            self.devs.pop(dev).kill()
            time.sleep(rng.uniform(0.0, 0.5))
            self._start_dev(dev)
            what = "SIGKILL %s, restarted" % dev
        elif kind == "worker_kill":
            i = rng.randrange(len(self.workers))
            # aim inside a transaction: the worker's marker file exists
            # while one is open (HOLD_MS each)
            deadline = time.monotonic() + 3
            while not os.path.exists(self._mark(i)) and time.monotonic() < deadline:
                time.sleep(0.002)
            inside = os.path.exists(self._mark(i))
            self.workers[i].kill()
            self.workers[i].wait()
            if os.path.exists(self._mark(i)):
                os.unlink(self._mark(i))
            if inside:
                self.kills_in_txn += 1
            time.sleep(rng.uniform(0.2, 0.8))
            self._start_worker(i)
            what = "SIGKILL collector worker %d %s, restarted" % (
                i, "inside a transaction" if inside else "(no transaction open)")
        else:
            what = "re-delivered %d data messages" % self.replayer.replay(rng.randint(5, 30))
        self.faults[kind] += 1
        self.progress("%6.1fs  %s" % (time.time() - self.t0, what))

    # -- the run ---------------------------------------------------------------------

    def run(self):
        self.broker = Mosquitto().start()
        self.proxy = Proxy(self.broker.port)
        try:
            for i in range(self.nworkers):
                self._start_worker(i)
            for dev in self.ids:
                self._start_dev(dev)
            self.replayer = _Replayer(self.broker.url, self.rng)
            self.progress("soak: %d devices at %gx time, %d collector workers, %gs of faults, db %s"
                          % (self.n, self.speed, self.nworkers, self.seconds, self.db))
            end = time.monotonic() + self.seconds
            order = list(FAULTS)
            k = 0
            while time.monotonic() < end:
                time.sleep(self.rng.uniform(0.5, 1.5) * self.fault_every)
                self._fault(order[k % len(order)])
                k += 1
                if k % len(order) == 0:
                    self.rng.shuffle(order)
            self.progress("faults stop; devices drain and stop")
            time.sleep(1.0)
            finals = self._drain_all()
            for p in self.workers:
                p.send_signal(signal.SIGTERM)
            for p in self.workers:
                try:
                    p.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.communicate()
            self.replayer.close()
            return self._reconcile(finals)
        finally:
            for p in list(self.devs.values()) + self.workers:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            self.proxy.close()
            self.broker.close()
            if self.own_dir and not os.environ.get("TALLY_SOAK_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def _drain_all(self):
        finals = {}
        pending = list(self.ids)
        for attempt in range(4):
            for dev in pending:
                if dev not in self.devs:
                    self._start_dev(dev)
            time.sleep(1.0)
            for dev in pending:
                finals[dev] = self._stop_dev(dev)
            pending = [d for d in pending if finals[d].get("depth", 1) != 0]
            if not pending:
                break
            self.progress("still draining: %s" % ", ".join(pending))
        return finals

    def _reconcile(self, finals):
        col = Collector(self.db, keys=lambda d: cose.device_key(self.master, d))
        devices = []
        ok_all = True
        for dev in self.ids:
            log = file_log(os.path.join(self.dir, dev + ".log"), dev, capacity=64 * 1024).open()
            s = col.summary(dev)
            e = s["epochs"].get(log.epoch, {"totals": {}, "records": 0, "covered": 0, "gaps": 0,
                                              "coalesced": 0, "dropped": 0})
            names = [m[0] for m in col.schema(dev, log.last[1]) or []]
            kinds = [m[3] for m in col.schema(dev, log.last[1]) or []]
            odo_ok = True
            mism = {}
            for name, kind, v in zip(names, kinds, log.last[R_VALUES]):
                if kind == "odometer" and e["totals"].get(name, 0) != v:
                    odo_ok = False
                    mism[name] = {"device": v, "ledger": e["totals"].get(name, 0)}
            logged = log.next_seq - log.epoch_seq0
            conflicts = col.counter(dev, "conflicts")
            row = {"device_id": dev, "boots": log.boot, "records_logged": logged,
                   "intervals_in_ledger": e["covered"], "records_in_ledger": e["records"],
                   "lost": logged - e["covered"] if logged > e["covered"] else 0,
                   "counted_twice": conflicts + (e["covered"] - logged if e["covered"] > logged else 0),
                   "duplicates_ignored": s["duplicates"], "gaps_unexplained": e["gaps"],
                   "gap_records_coalesced": e["coalesced"], "gap_records_dropped": e["dropped"],
                   "unacked_at_end": log.depth(), "odometers_match": odo_ok,
                   "mismatches": mism, "final": finals.get(dev, {})}
            row["reconciled"] = (odo_ok and row["lost"] == 0 and row["counted_twice"] == 0
                                 and e["gaps"] == 0 and log.depth() == 0)
            ok_all = ok_all and row["reconciled"]
            devices.append(row)
            log.close()
        col.close()
        return {
            "reconciled": ok_all,
            "devices": len(self.ids), "workers": self.nworkers, "seconds": self.seconds,
            "speed": self.speed, "faults": dict(self.faults),
            "duplicates_injected": self.replayer.sent,
            "worker_kills_inside_a_transaction": self.kills_in_txn,
            "records": sum(d["records_logged"] for d in devices),
            "lost": sum(d["lost"] for d in devices),
            "counted_twice": sum(d["counted_twice"] for d in devices),
            "duplicates_ignored": sum(d["duplicates_ignored"] for d in devices),
            "per_device": devices,
        }


def soak(**kw):
    return Soak(**kw).run()
