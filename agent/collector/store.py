"""The collector's core: verify and decode messages, dedupe on
(device_id, epoch, seq) in the same SQLite transaction as the write, ack only
after the commit, and answer ledger questions.

`Collector.handle(topic, payload)` is transport-free: the MQTT service and the
simulator's in-process hub both feed it and publish what it returns.
"""
import json
import sqlite3
import time

import cbor2

from agent import batch as wire
from agent import cose

MAX_PAYLOAD = 64 * 1024
_JSON = json.JSONEncoder(separators=(",", ":")).encode    # values as compact JSON

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    from_seq INTEGER NOT NULL, flags INTEGER NOT NULL, schema_id INTEGER NOT NULL,
    boot INTEGER NOT NULL, uptime_ms INTEGER NOT NULL, wall_s INTEGER NOT NULL,
    wall_q INTEGER NOT NULL, ival_ms INTEGER NOT NULL, vals TEXT NOT NULL,
    received_s REAL NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE TABLE IF NOT EXISTS schemas (
    device_id TEXT NOT NULL, schema_id INTEGER NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (device_id, schema_id)
);
CREATE TABLE IF NOT EXISTS epochs (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq0 INTEGER NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE TABLE IF NOT EXISTS births (
    device_id TEXT NOT NULL, boot INTEGER, epoch INTEGER, reason TEXT, fw TEXT,
    board TEXT, received_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    stored TEXT NOT NULL, received TEXT NOT NULL, at_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    device_id TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (device_id, name)
);
"""


class Reject(ValueError):
    pass


def parse_topic(topic):
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "tally" or parts[1] != "v1" or not parts[2]:
        raise Reject("topic: %r is not tally/v1/<device>/<kind>" % topic)
    return parts[2], parts[3]


class Collector:
    """keys(device_id) -> the device's MAC key, or None for an unknown device."""

    def __init__(self, db=":memory:", keys=None):
        if keys is None:
            raise ValueError("collector: a key lookup is required (every message is MAC'd)")
        self.keys = keys
        self.db_path = db
        self.db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        if db != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")   # durable before we ack
        self.db.executescript(_SCHEMA_SQL)
        self.rejects = {}        # reason -> count, for this process
        self.on_reject = None    # callback(device, reason), e.g. to log each one
        self._schemas = {}

    # -- counters ---------------------------------------------------------------

    def _bump(self, device, name, n=1):
        self.db.execute(
            "INSERT INTO counters(device_id, name, n) VALUES (?,?,?) "
            "ON CONFLICT(device_id, name) DO UPDATE SET n = n + excluded.n", (device, name, n))

    def counter(self, device, name):
        row = self.db.execute("SELECT n FROM counters WHERE device_id=? AND name=?",
                              (device, name)).fetchone()
        return row[0] if row else 0

    def _reject(self, device, reason):
        key = reason.split(":")[0]
        self.rejects[key] = self.rejects.get(key, 0) + 1
        if self.on_reject:
            self.on_reject(device, reason)
        if device:
            self._bump(device, "rejected")
        return []

    # -- messages -----------------------------------------------------------------

    def handle(self, topic, payload):
        """Process one message; returns [(topic, payload)] to publish (acks).
        Never raises on bad input: it is counted as a reject with a reason."""
        device = None
        try:
            device, kind = parse_topic(topic)
            if len(payload) > MAX_PAYLOAD:
                raise Reject("oversized: %d bytes" % len(payload))
            if kind not in ("data", "birth", "death"):
                return []
            key = self.keys(device)
            if key is None:
                raise Reject("unknown device: %s" % device)
            try:
                payload = cose.verify(payload, key, device)
            except cose.CoseError as e:
                raise Reject("bad tag: %s" % e)
            if kind == "data":
                return self._data(device, payload, key)
            if kind == "birth":
                self._birth(device, payload)
            elif kind == "death":
                self._bump(device, "deaths")
            return []
        except Reject as e:
            return self._reject(device, str(e))

    def _decode(self, payload):
        try:
            return cbor2.loads(payload)
        except Exception as e:   # cbor2 raises several types on hostile input
            raise Reject("malformed: %s" % e)

    def _birth(self, device, payload):
        b = self._decode(payload)
        if not isinstance(b, dict) or not isinstance(b.get("schema"), list):
            raise Reject("malformed: birth is not a map with a schema")
        if b.get("device") != device:
            raise Reject("topic/device mismatch: birth says %r on %s's topic" % (b.get("device"), device))
        sid = b.get("schema_id")
        metrics = b["schema"]
        for m in metrics:
            if not (isinstance(m, list) and len(m) == 4 and isinstance(m[0], str)):
                raise Reject("malformed: schema entry %r" % (m,))
        for k in ("schema_id", "epoch", "seq0", "boot"):
            v = b.get(k)
            if k == "schema_id" or v is not None:
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < wire.I64:
                    raise Reject("malformed: birth field %s" % k)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO schemas VALUES (?,?,?)",
                            (device, sid, json.dumps(metrics)))
            if isinstance(b.get("epoch"), int) and isinstance(b.get("seq0"), int):
                self.db.execute("INSERT OR IGNORE INTO epochs VALUES (?,?,?)",
                                (device, b["epoch"], b["seq0"]))
            self.db.execute("INSERT INTO births VALUES (?,?,?,?,?,?,?)",
                            (device, b.get("boot"), b.get("epoch"), str(b.get("reason")),
                             str(b.get("fw")), str(b.get("board")), time.time()))
        self._schemas[(device, sid)] = metrics

    def schema(self, device, sid):
        m = self._schemas.get((device, sid))
        if m is None:
            row = self.db.execute("SELECT metrics FROM schemas WHERE device_id=? AND schema_id=?",
                                  (device, sid)).fetchone()
            if row:
                m = self._schemas[(device, sid)] = json.loads(row[0])
        return m

    def _data(self, device, payload, key):
        obj = self._decode(payload)
        try:
            recs = wire.decode(obj)
        except wire.BatchError as e:
            raise Reject("malformed: %s" % e)
        sid = recs[0]["schema_id"]
        metrics = self.schema(device, sid)
        if metrics is None:
            # No ack: the device re-sends after its next birth tells us the schema.
            raise Reject("unknown schema: %08x from %s" % (sid, device))
        if len(recs[0]["values"]) != len(metrics):
            raise Reject("malformed: %d columns for a %d-metric schema"
                         % (len(recs[0]["values"]), len(metrics)))
        now = time.time()
        enc = _JSON
        rows = [(device, r["epoch"], r["seq"], r["from_seq"], r["flags"], sid, r["boot"],
                 r["uptime_ms"], r["wall_s"], r["wall_q"], r["ival_ms"], enc(r["values"]), now)
                for r in recs]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            dup = len(rows) - (db.total_changes - before)
            if dup:
                for r in recs:          # which ones, and are they the same content?
                    self._replay(device, r, now)
            self._bump(device, "batches")
            if dup:
                self._bump(device, "duplicates", dup)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        # Only now, with the records durable, is the batch acknowledged.
        ack = cbor2.dumps([recs[0]["epoch"], recs[0]["seq"], recs[-1]["seq"]])
        return [("tally/v1/%s/ack" % device, cose.mac0(ack, key, device))]

    def _replay(self, device, r, now):
        """Same key again: a quiet duplicate if the content is the same, an
        alarm (kept, counted) if it differs: the ledger keeps the first.
        (A record inserted by this very batch compares equal to itself.)"""
        row = self.db.execute(
            "SELECT from_seq, flags, boot, uptime_ms, vals FROM records "
            "WHERE device_id=? AND epoch=? AND seq=?", (device, r["epoch"], r["seq"])).fetchone()
        got = (r["from_seq"], r["flags"], r["boot"], r["uptime_ms"], _JSON(r["values"]))
        if row is not None and tuple(row) != got:
            self.db.execute("INSERT INTO alarms VALUES (?,?,?,?,?,?)",
                            (device, r["epoch"], r["seq"], json.dumps(list(row)), json.dumps(list(got)),
                             time.time()))
            self._bump(device, "conflicts")

    # -- ledger ---------------------------------------------------------------------

    def devices(self):
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT device_id FROM records ORDER BY device_id")]

    def _walk(self, device):
        """Yield per record: (epoch, rec dict, {odometer: delta}, metrics) in
        seq order; odometers start at zero with each epoch."""
        rows = self.db.execute(
            "SELECT epoch, seq, from_seq, flags, schema_id, boot, uptime_ms, wall_s, wall_q, "
            "ival_ms, vals, received_s FROM records WHERE device_id=? ORDER BY epoch, seq",
            (device,))
        prev_epoch = None
        base = {}
        for (epoch, seq, frm, flags, sid, boot, up, wall, wq, ival, vals, rx) in rows:
            if epoch != prev_epoch:
                prev_epoch = epoch
                base = {}
            metrics = self.schema(device, sid) or []
            vals = json.loads(vals)
            deltas = {}
            for m, v in zip(metrics, vals):
                if m[3] == "odometer":
                    deltas[m[0]] = v - base.get(m[0], 0)
                    base[m[0]] = v
            rec = {"epoch": epoch, "seq": seq, "from_seq": frm, "flags": flags, "boot": boot,
                   "uptime_ms": up, "wall_s": wall, "wall_q": wq, "ival_ms": ival,
                   "received_s": rx, "values": dict(zip((m[0] for m in metrics), vals))}
            yield epoch, rec, deltas, metrics

    def ledger(self, device=None):
        """Usage per device and UTC day: {device: {day: {odometer: total}}}.
        A record's usage is booked on the day its interval ends; records with
        no good wall clock are booked by the time the collector received them."""
        out = {}
        for dev in ([device] if device else self.devices()):
            days = out.setdefault(dev, {})
            for epoch, r, deltas, _ in self._walk(dev):
                span = r["seq"] - r["from_seq"] + 1
                if r["wall_q"] and r["wall_s"]:
                    end = r["wall_s"] + span * r["ival_ms"] // 1000
                else:
                    end = int(r["received_s"])
                day = time.strftime("%Y-%m-%d", time.gmtime(end - 1))
                acc = days.setdefault(day, {})
                for k, d in deltas.items():
                    acc[k] = acc.get(k, 0) + d
        return out

    def summary(self, device):
        """Per device: totals per epoch (last odometer values), records, the
        seqs they cover, coalesced and dropped intervals, and unexplained gaps."""
        epochs = {}
        for epoch, r, deltas, metrics in self._walk(device):
            e = epochs.get(epoch)
            if e is None:
                row = self.db.execute("SELECT seq0 FROM epochs WHERE device_id=? AND epoch=?",
                                      (device, epoch)).fetchone()
                start = row[0] if row else r["from_seq"]
                e = epochs[epoch] = {"totals": {}, "records": 0, "covered": 0, "coalesced": 0,
                                     "dropped": 0, "gaps": 0, "gap_ranges": [],
                                     "first_seq": start, "last_seq": start - 1,
                                     "units": {m[0]: (m[1], m[2]) for m in metrics
                                               if m[3] == "odometer"}}
            span = r["seq"] - r["from_seq"] + 1
            if r["from_seq"] > e["last_seq"] + 1:
                e["gaps"] += r["from_seq"] - e["last_seq"] - 1
                e["gap_ranges"].append((e["last_seq"] + 1, r["from_seq"] - 1))
            e["last_seq"] = r["seq"]
            e["records"] += 1
            e["covered"] += span
            if r["flags"] & 2:
                e["dropped"] += span - 1
            elif r["flags"] & 1:
                e["coalesced"] += span - 1
            for k, d in deltas.items():
                e["totals"][k] = e["totals"].get(k, 0) + d
        return {"epochs": epochs, "duplicates": self.counter(device, "duplicates"),
                "batches": self.counter(device, "batches"),
                "rejected": self.counter(device, "rejected")}

    def close(self):
        self.db.close()
