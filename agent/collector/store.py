"""The collector's core: verify and decode messages, dedupe on
(device_id, epoch, seq) in the same transaction as the write, ack only
after the commit, and answer ledger questions.

`Collector.handle(topic, payload)` is transport-free: the MQTT service and the
simulator's in-process hub both feed it and publish what it returns.

The ledger is SQLite (a file path, or ":memory:") or PostgreSQL (a
postgresql:// or postgres:// URL, through psycopg 3). There is one collector;
the few things the two databases say differently (types, the write lock,
"insert unless stored, how many were new", reconnecting) are in _Sqlite and
_Postgres at the end of this file.

Over 500 lines on purpose: one class, the ledger's single writer and reader,
whose message boundary, dedupe-and-write transaction, ack and ledger walk
share its connection and caches; the checks themselves are in validate.py,
the time placement in timeline.py, and the two databases' differences are
the short classes at the end. Split further, each part would need the
others open to be read.
"""
import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import cbor2

from agent import batch as wire
from agent import cose
from agent import remote
from agent.collector import parts
from agent.collector import stress
from agent.collector import timeline
from agent.collector import validate
from agent.collector.validate import MAX_PAYLOAD, show

MAX_QUARANTINE = 100      # quarantined messages kept per device; past it counted, not kept
MAX_REJECT_KEYS = 64      # reason classes kept in Collector.rejects (the rest count as "other")
MAX_SCHEMA_CACHE = 10000  # (device, schema id) pairs kept in memory
_JSON = json.JSONEncoder(separators=(",", ":")).encode    # values as compact JSON

# {id}: a device id; {int}: a signed 64-bit integer; {real}: a double; {blob}: bytes.
_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS records (
    device_id {id} NOT NULL, epoch {int} NOT NULL, seq {int} NOT NULL,
    from_seq {int} NOT NULL, flags {int} NOT NULL, schema_id {int} NOT NULL,
    boot {int} NOT NULL, uptime_ms {int} NOT NULL, wall_s {int} NOT NULL,
    wall_q {int} NOT NULL, ival_ms {int} NOT NULL, vals TEXT NOT NULL,
    received_s {real} NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE TABLE IF NOT EXISTS schemas (
    device_id {id} NOT NULL, schema_id {int} NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (device_id, schema_id)
);
CREATE TABLE IF NOT EXISTS epochs (
    device_id {id} NOT NULL, epoch {int} NOT NULL, seq0 {int} NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE TABLE IF NOT EXISTS births (
    device_id {id} NOT NULL, boot {int}, epoch {int}, reason TEXT, fw TEXT,
    board TEXT, received_s {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    device_id {id} NOT NULL, epoch {int} NOT NULL, seq {int} NOT NULL,
    stored TEXT NOT NULL, received TEXT NOT NULL, at_s {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS configs (
    device_id {id} NOT NULL, version {int} NOT NULL, body TEXT NOT NULL,
    pushed_s {real} NOT NULL, ok {int}, reason TEXT, active {int}, acked_s {real},
    PRIMARY KEY (device_id, version)
);
CREATE TABLE IF NOT EXISTS counters (
    device_id {id} NOT NULL, name TEXT NOT NULL, n {int} NOT NULL,
    PRIMARY KEY (device_id, name)
);
CREATE TABLE IF NOT EXISTS quarantine (
    device_id {id} NOT NULL, digest TEXT NOT NULL, topic TEXT NOT NULL,
    payload {blob} NOT NULL, reason TEXT NOT NULL, at_s {real} NOT NULL,
    PRIMARY KEY (device_id, digest)
);
"""
# Columns added to tables of older ledgers (CREATE TABLE IF NOT EXISTS
# leaves an existing table as it is): table -> [(column, type)].
_ADDED_COLUMNS = {"alarms": [("last_seq", "{int}"), ("what", "TEXT")]}


class PostgresError(Exception):
    """PostgreSQL failed or could not be reached (the driver's error is the
    __cause__). Nothing of the message was committed, so nothing is acked."""


# What a database failure raises from Collector, for either database: the
# MQTT service catches these, does not ack, and keeps serving.
DB_ERRORS = (sqlite3.Error, PostgresError)


class Reject(ValueError):
    """A message refused, with its reason class (the text before the first
    colon: "bad tag", "malformed", ...) and a bounded description.
    quarantine: keep the signed message (an authenticated one that cannot
    be processed); alarm: an alarms row to write with it."""

    def __init__(self, reason, quarantine=False, alarm=None):
        ValueError.__init__(self, reason)
        self.quarantine = quarantine
        self.alarm = alarm


# Reasons of messages nobody is known to have signed: no row is written for them.
UNAUTHENTICATED = ("topic", "oversized", "unknown device", "bad tag")


def parse_topic(topic):
    if type(topic) is not str:
        raise Reject("topic: %s is not text" % show(topic))
    parts = topic.split("/", 4)
    # (MQTT forbids NUL in a topic; a database text column can't hold one either)
    if len(parts) != 4 or "\x00" in topic or parts[0] != "tally" or parts[1] != "v1" or not parts[2]:
        raise Reject("topic: %s is not tally/v1/<device>/<kind>" % show(topic))
    try:
        topic.encode()
    except UnicodeError:
        raise Reject("topic: %s is not UTF-8" % show(topic))
    return parts[2], parts[3]


WALK_BATCH = 4096         # records fetched at a time by the ledger walk
_SCAN = json.JSONDecoder().scan_once    # the C scanner json.loads ends in: (value, end)


def _walk_one(metrics, vals, base):
    """One record's ({odometer: delta}, rewound names), the epoch's highs in
    base updated: Collector._walk's rule, metric by metric."""
    deltas = {}
    rewound = ()
    for m, v in zip(metrics, vals):
        if m[3] == "odometer":
            high = base.get(m[0], 0)
            if v >= high:
                deltas[m[0]] = v - high
                base[m[0]] = v
            else:
                deltas[m[0]] = 0
                rewound += (m[0],)
    return deltas, rewound


def _shape(metrics):
    """(names, ((index, name) of each odometer)) of a schema for the walk,
    or (None, None) when an entry is not [name, unit, scale, kind]-like (the
    walk then takes each record metric by metric, as _walk_one)."""
    try:
        names = tuple(m[0] for m in metrics)
        odo = tuple((i, m[0]) for i, m in enumerate(metrics) if m[3] == "odometer")
        for name in names:
            hash(name)                   # (a name that cannot be a key fails in _walk_one)
        return names, odo
    except (TypeError, IndexError, KeyError):
        return None, None


class Collector:
    """keys(device_id) -> the device's MAC key, or None for an unknown device.
    db: a SQLite file, ":memory:", or postgresql://user@host:port/dbname."""

    def __init__(self, db=":memory:", keys=None):
        if keys is None:
            raise ValueError("collector: a key lookup is required (every message is MAC'd)")
        self.keys = keys
        self.db_path = db
        self._b = _Postgres(db) if is_postgres_url(db) else _Sqlite(db)
        parts.ensure(self._b)                   # part_events (agent/collector/parts.py)
        stress.setup(self._b)
        self.rejects = {}        # reason class -> count, for this process (bounded keys)
        self.on_reject = None    # callback(device or None, reason), e.g. to log each one
        self.escapes = 0         # messages that raised something other than a Reject
        self._schemas = {}
        # Fault injection for the chaos soak only (hil/harness/soak.py): hold every
        # data transaction open this long, with a marker file present while
        # it is open, so a SIGKILL can be aimed inside one.
        self._hold_s = int(os.environ.get("TALLY_CHAOS_HOLD_MS", "0") or 0) / 1000
        self._txn_mark = os.environ.get("TALLY_CHAOS_TXN_MARK")

    @property
    def db(self):
        """The DB-API connection (sqlite3 or psycopg), for ad-hoc queries in the
        driver's own parameter style."""
        return self._b.connection()

    # -- counters ---------------------------------------------------------------

    def _bump(self, device, name, n=1):
        self._b.execute(
            "INSERT INTO counters(device_id, name, n) VALUES (?,?,?) "
            "ON CONFLICT(device_id, name) DO UPDATE SET n = counters.n + excluded.n",
            (device, name, n))

    def counter(self, device, name):
        row = self._b.execute("SELECT n FROM counters WHERE device_id=? AND name=?",
                              (device, name)).fetchone()
        return row[0] if row else 0

    def _reject(self, device, e, topic, signed, ack):
        """Count a refused message. Unauthenticated (device None): only the
        in-memory aggregate and the callback, no row. Authenticated: the
        device's counters ("rejected" and "rejected:<class>"), and for a
        message that cannot be processed a quarantine row (and an alarm row
        if the reason has one), all in one transaction. Returns the replies:
        ack() when the message's bytes are kept (see docs/collector.md)."""
        reason = str(e)
        cls = reason.split(":")[0]
        if cls not in self.rejects and len(self.rejects) >= MAX_REJECT_KEYS:
            cls = "other"
        self.rejects[cls] = self.rejects.get(cls, 0) + 1
        if self.on_reject:
            try:
                self.on_reject(device, reason)
            except Exception:            # a logger's failure is not the message's
                pass
        if device is None:
            return []
        kept = False
        with self._b.transaction(write=True):
            self._bump(device, "rejected")
            self._bump(device, "rejected:" + cls)
            if e.quarantine:
                kept = self._quarantine(device, topic, signed, reason, e.alarm)
        return ack() if kept and ack else []

    def _quarantine(self, device, topic, signed, reason, alarm):
        """Keep a signed message that cannot be processed; True if its bytes
        are kept (now or before). Past MAX_QUARANTINE rows for the device it
        is counted (quarantine_full) and not kept. The alarm row, if any, is
        written once per distinct message."""
        digest = hashlib.sha256(signed).hexdigest()
        x = self._b.execute
        if x("SELECT 1 FROM quarantine WHERE device_id=? AND digest=?", (device, digest)).fetchone():
            return True                     # the same message again: kept already
        if x("SELECT COUNT(*) FROM quarantine WHERE device_id=?", (device,)).fetchone()[0] >= MAX_QUARANTINE:
            self._bump(device, "quarantine_full")
            return False
        now = time.time()
        cur = x("INSERT INTO quarantine(device_id, digest, topic, payload, reason, at_s) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(device_id, digest) DO NOTHING",
                (device, digest, topic, bytes(signed), reason, now))
        if cur.rowcount == 0:
            return True                     # another worker kept it just now
        self._bump(device, "quarantined")
        if alarm:
            what, epoch, seq, last, stored, received = alarm
            x("INSERT INTO alarms(device_id, epoch, seq, last_seq, stored, received, at_s, what) "
              "VALUES (?,?,?,?,?,?,?,?)", (device, epoch, seq, last, stored, received, now, what))
        return True

    def quarantined(self, device=None):
        """The quarantine: [(device, topic, payload bytes, reason, at_s)]
        oldest first, of one device or all."""
        q = "SELECT device_id, topic, payload, reason, at_s FROM quarantine"
        rows = (self._b.execute(q + " WHERE device_id=? ORDER BY at_s", (device,)) if device
                else self._b.execute(q + " ORDER BY at_s, device_id"))
        return [(d, t, bytes(p), r, at) for d, t, p, r, at in rows]

    # -- messages -----------------------------------------------------------------

    def handle(self, topic, payload):
        """Process one message; returns [(topic, payload)] to publish (acks).
        Nothing raises out of here but a database error (DB_ERRORS: nothing
        was committed or acked; the caller keeps serving). Bad input is a
        reject counted by reason class; anything else a message makes raise
        is an escape: counted (self.escapes) and quarantined as "internal"."""
        device = None
        signed = payload
        ack = None
        try:
            device, kind = parse_topic(topic)
            if kind not in ("data", "birth", "death", "cfgack"):
                return []
            if not isinstance(payload, (bytes, bytearray)):
                raise Reject("malformed: payload is %s, not bytes" % show(payload))
            if len(payload) > MAX_PAYLOAD:
                raise Reject("oversized: %d bytes" % len(payload))
            key = self.keys(device)
            if key is None:
                raise Reject("unknown device: %s" % show(device))
            try:
                payload = cose.verify(bytes(payload), key, device)
            except cose.CoseError as e:
                raise Reject("bad tag: %s" % validate.clean(e))
        except Reject as e:
            return self._reject(None, e, topic, signed, None)
        except Exception as e:           # (e.g. a key lookup that raised): no row either
            self.escapes += 1
            return self._reject(None, Reject("internal: %s" % type(e).__name__[:60]), topic, signed, None)
        # authenticated from here: the device signed this payload
        try:
            if kind == "data":
                obj = self._decode(payload)
                rng = validate.ack_range(obj)
                if rng:                  # what a poison batch's ack would say, made if needed
                    ack = lambda: [("tally/v1/%s/ack" % device, cose.mac0(cbor2.dumps(list(rng)), key, device))]
                return self._data(device, obj, key)
            if kind == "birth":
                self._birth(device, payload)
            elif kind == "death":
                validate.death(self._decode(payload))
                with self._b.transaction(write=True):
                    self._bump(device, "deaths")
            elif kind == "cfgack":
                self._cfgack(device, payload)
            return []
        except Reject as e:
            return self._reject(device, e, topic, signed, ack)
        except validate.Invalid as e:
            return self._reject(device, Reject("%s: %s" % (e.cls, e), quarantine=True), topic, signed, ack)
        except DB_ERRORS:
            raise
        except Exception as e:           # a bug the message found: keep it, go on
            self.escapes += 1
            return self._reject(device, Reject("internal: %s" % type(e).__name__[:60], quarantine=True),
                                topic, signed, ack)

    def _decode(self, payload):
        try:
            return validate.loads(payload)
        except validate.Invalid as e:
            raise Reject("malformed: %s" % e, quarantine=True)

    def _birth(self, device, payload):
        raw = self._decode(payload)
        try:
            b = validate.birth(raw, device)
        except validate.Invalid as e:
            raise Reject("%s: %s" % (e.cls, e), quarantine=True)
        sid, metrics = b["schema_id"], b["schema"]
        want = validate.schema_id(metrics)
        if sid != want:
            raise Reject("schema id: birth says %08x, its schema hashes to %08x" % (sid, want),
                         quarantine=True)
        text = json.dumps(metrics)
        x = self._b.execute
        with self._b.transaction(write=True):
            row = x("SELECT metrics FROM schemas WHERE device_id=? AND schema_id=?",
                    (device, sid)).fetchone()
            if row is not None and json.loads(row[0]) != metrics:
                # never rewritten: past bills were made with the stored one
                raise Reject("schema conflict: schema id %08x is stored with other metrics" % sid,
                             quarantine=True,
                             alarm=("schema %08x" % sid, b.get("epoch", 0), 0, 0, row[0], text))
            if row is None:
                x("INSERT INTO schemas VALUES (?,?,?) ON CONFLICT(device_id, schema_id) DO NOTHING",
                  (device, sid, text))
            if "epoch" in b and "seq0" in b:
                x("INSERT INTO epochs VALUES (?,?,?) ON CONFLICT DO NOTHING",
                  (device, b["epoch"], b["seq0"]))
            x("INSERT INTO births VALUES (?,?,?,?,?,?,?)",
              (device, b.get("boot"), b.get("epoch"), b.get("reason", "None"), b.get("fw", "None"),
               b.get("board", "None"), time.time()))
            stress.on_birth(self, device, raw)

    def _cache(self, device, sid, metrics):
        if len(self._schemas) >= MAX_SCHEMA_CACHE:
            self._schemas.clear()
        self._schemas[(device, sid)] = metrics

    def schema(self, device, sid):
        m = self._schemas.get((device, sid))
        if m is None:
            row = self._b.execute("SELECT metrics FROM schemas WHERE device_id=? AND schema_id=?",
                                  (device, sid)).fetchone()
            if row:
                m = json.loads(row[0])
                self._cache(device, sid, m)
        return m

    def _data(self, device, obj, key):
        obj, ext = parts.split(obj, lambda sid: self.schema(device, sid))
        try:
            head = validate.data(obj)           # shape and ranges, nothing expanded yet
        except validate.Invalid as e:
            raise Reject("%s: %s" % (e.cls, e), quarantine=True)
        sid = head["schema_id"]
        metrics = self.schema(device, sid)
        if metrics is None:
            # No ack: the device re-sends after its next birth tells us the schema.
            raise Reject("unknown schema: %08x" % sid)
        if head["columns"] != len(metrics):
            raise Reject("malformed: %d columns for a %d-metric schema" % (head["columns"], len(metrics)),
                         quarantine=True)
        try:
            recs = wire.decode(obj, checked=True)   # the forms were checked by validate.data
        except wire.BatchError as e:
            raise Reject("malformed: %s" % validate.clean(e, 160), quarantine=True)
        events = parts.check(ext, recs[0]["from_seq"], recs[-1]["seq"])   # validate.Invalid: quarantined
        now = time.time()
        enc = _JSON
        rows = [(device, r["epoch"], r["seq"], r["from_seq"], r["flags"], sid, r["boot"],
                 r["uptime_ms"], r["wall_s"], r["wall_q"], r["ival_ms"], enc(r["values"]), now)
                for r in recs]
        b = self._b
        with b.transaction(write=True):
            if self._hold_s:
                self._chaos_hold()
            dup = len(rows) - b.insert_new(rows)
            parts.book(b, device, recs[0]["epoch"], events)
            if dup:
                self._replay(device, recs, now)     # which ones, and are they the same content?
            stress.on_data(self, device, recs, ext, now)
            self._bump(device, "batches")
            if dup:
                self._bump(device, "duplicates", dup)
        # Only now, with the records durable, is the batch acknowledged.
        ack = cbor2.dumps([recs[0]["epoch"], recs[0]["seq"], recs[-1]["seq"]])
        return [("tally/v1/%s/ack" % device, cose.mac0(ack, key, device))]

    def _chaos_hold(self):
        if self._txn_mark:
            open(self._txn_mark, "w").close()
        try:
            time.sleep(self._hold_s)
        finally:
            if self._txn_mark:
                os.unlink(self._txn_mark)

    # -- remote config ----------------------------------------------------------------

    def push_config(self, device, settings, version=None, publish=None, dry_run=False):
        """Sign a config for a device: (topic, payload) to publish retained.
        Checked with the device's own rules first; the version defaults to
        one more than any the ledger knows for the device (pushed, answered,
        or reported in force by its records). Raises ValueError with the
        reason. With publish(topic, payload) (which raises unless the broker
        took it) the version is recorded only once publish returns; without
        it, at once. dry_run: check and sign only, record nothing."""
        key = self.keys(device)
        if key is None:
            raise ValueError("config: unknown device %s" % device)
        # versions we pushed, and what the device applied or says is in force
        # (not the number of a message it refused: that could be anything)
        row = self._b.execute("SELECT MAX(CASE WHEN body <> '{}' OR ok = 1 THEN version END), "
                              "MAX(active) FROM configs WHERE device_id=?", (device,)).fetchone()
        last = max(row[0] or 0, row[1] or 0, (self._reported_config(device) or (0,))[0])
        cfg = dict(settings, v=1, version=version if version is not None else last + 1)
        remote.check(cfg, last)
        msg = ("tally/v1/%s/config" % device, cose.mac0(cbor2.dumps(cfg), key, device))
        if dry_run:
            return msg
        if publish is not None:
            publish(*msg)
        with self._b.transaction(write=True):
            self._b.execute("INSERT INTO configs(device_id, version, body, pushed_s) VALUES (?,?,?,?) "
                            "ON CONFLICT(device_id, version) DO UPDATE SET body = excluded.body, "
                            "pushed_s = excluded.pushed_s",
                            (device, cfg["version"], json.dumps(cfg, sort_keys=True), time.time()))
        return msg

    def _reported_config(self, device):
        """(version, at_s) of the `config` gauge in the device's latest record
        (the version in force when that interval closed, at_s), or None."""
        row = self._b.execute("SELECT epoch FROM records WHERE device_id=? "
                              "ORDER BY received_s DESC LIMIT 1", (device,)).fetchone()
        if row is None:
            return None
        row = self._b.execute("SELECT schema_id, vals, received_s, wall_s, wall_q, ival_ms, seq, from_seq "
                              "FROM records WHERE device_id=? AND epoch=? ORDER BY seq DESC LIMIT 1",
                              (device, row[0])).fetchone()
        names = [m[0] for m in (self.schema(device, row[0]) or [])]
        if "config" not in names:
            return None
        vals = json.loads(row[1])
        i = names.index("config")
        if i >= len(vals) or not isinstance(vals[i], int):
            return None
        # when the interval closed: by the device's real clock where it has one
        # (a batch may arrive long after), else when it was received
        at = row[2]
        if row[4] in (1, 2) and row[3]:
            at = min(at, row[3] + (row[6] - row[7] + 1) * row[5] / 1000)
        return (vals[i], at)

    def _cfgack(self, device, payload):
        """What the device said of a config: applied, or rejected and why.
        Every worker sees it (a plain subscription): the upsert is idempotent."""
        try:
            version, ok, active, reason = validate.cfgack(self._decode(payload))
        except validate.Invalid as e:
            raise Reject("%s: %s" % (e.cls, e), quarantine=True)
        reason = reason.replace("\x00", "\ufffd")
        with self._b.transaction(write=True):
            self._b.execute(
                "INSERT INTO configs(device_id, version, body, pushed_s, ok, reason, active, acked_s) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(device_id, version) DO UPDATE SET "
                "ok = excluded.ok, reason = excluded.reason, active = excluded.active, "
                "acked_s = excluded.acked_s",
                (device, version, "{}", time.time(), int(ok), reason, active, time.time()))

    def config_status(self, device):
        """What the device last reported of its config, never what was pushed:
        {version, ok, active, reason, answered_s} of its latest answer on
        cfgack (None each before any), "reported": (version, at_s) from the
        `config` gauge of its latest record (None before any), "in_force":
        the version in force by the later of the two (0: its local settings),
        and "pushed"/"answered": how many versions. None when the device has
        said nothing."""
        row = self._b.execute(
            "SELECT version, ok, active, reason, acked_s FROM configs "
            "WHERE device_id=? AND acked_s IS NOT NULL "
            "ORDER BY acked_s DESC, version DESC LIMIT 1", (device,)).fetchone()
        rep = self._reported_config(device)
        if row is None and rep is None:
            return None
        n = self._b.execute("SELECT COUNT(*), COUNT(acked_s) FROM configs WHERE device_id=?",
                            (device,)).fetchone()
        out = {"version": None, "ok": None, "active": None, "reason": "", "answered_s": None,
               "reported": rep, "pushed": n[0], "answered": n[1]}
        if row is not None:
            out.update(version=row[0], ok=bool(row[1]), active=row[2], reason=row[3] or "",
                       answered_s=row[4])
        if rep is not None and (row is None or rep[1] > row[4]):
            out["in_force"] = rep[0]
        else:
            out["in_force"] = out["active"]
        return out

    def _replay(self, device, recs, now):
        """Same key again: a quiet duplicate if the content is the same, an
        alarm (kept, counted) if it differs: the ledger keeps the first.
        (A record inserted by this very batch compares equal to itself.) A
        batch is one epoch and contiguous seqs, so one range read has them
        all. One alarm row per batch: the range of seqs that differ, the
        first of them as stored and as received; `conflicts` counts records."""
        stored = {row[0]: tuple(row[1:]) for row in self._b.execute(
            "SELECT seq, from_seq, flags, boot, uptime_ms, vals FROM records "
            "WHERE device_id=? AND epoch=? AND seq BETWEEN ? AND ?",
            (device, recs[0]["epoch"], recs[0]["seq"], recs[-1]["seq"]))}
        first = last = None
        n = 0
        for r in recs:
            row = stored.get(r["seq"])
            got = (r["from_seq"], r["flags"], r["boot"], r["uptime_ms"], _JSON(r["values"]))
            if row is not None and row != got:
                if first is None:
                    first = (r["seq"], row, got)
                last = r["seq"]
                n += 1
        if n:
            seq, row, got = first
            self._b.execute(
                "INSERT INTO alarms(device_id, epoch, seq, last_seq, stored, received, at_s, what) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (device, recs[0]["epoch"], seq, last, json.dumps(list(row)), json.dumps(list(got)),
                 now, "replay: %d records differ" % n))
            self._bump(device, "conflicts", n)

    # -- ledger ---------------------------------------------------------------------

    def devices(self):
        return [r[0] for r in self._b.execute(
            "SELECT DISTINCT device_id FROM records ORDER BY device_id")]

    def _walk(self, device, values=True):
        """Yield per record: (epoch, rec dict, {odometer: delta}, metrics) in
        seq order; odometers start at zero with each epoch. Usage is what an
        odometer gained above the highest value it had in the epoch: a device
        whose newest record was lost to flash damage after it was sent
        resumes from an older value: the dip is booked as zero, not as
        negative usage, and only the climb past the old high is booked after
        it (the epoch's total is unchanged). rec["rewound"] names the
        odometers that went back (data quality, never usage).
        values=False: rec has no "values" (for callers that only book
        usage: ledger(), summary(); the deltas are the same).

        Every record's tuple is new (callers keep and change them); what
        is per schema (its names and which are odometers) is worked out
        once per walk, and vals are read by json's own C scanner (what
        json.loads ends in), json.loads itself whenever that is not the
        whole text. tests/test_walk.py holds it to the plain per-record walk
        on ledgers with epochs, rewinds, reboots and records that nothing
        places in time, on both databases."""
        cur = self._b.execute(
            "SELECT epoch, seq, from_seq, flags, schema_id, boot, uptime_ms, wall_s, wall_q, "
            "ival_ms, vals, received_s FROM records WHERE device_id=? ORDER BY epoch, seq",
            (device,))
        prev_epoch = None
        base = {}
        shapes = {}                  # schema id -> (metrics, names, odometers), this walk
        scan, loads, walk_one = _SCAN, json.loads, _walk_one
        while True:
            rows = cur.fetchmany(WALK_BATCH)
            if not rows:
                break
            for (epoch, seq, frm, flags, sid, boot, up, wall, wq, ival, text, rx) in rows:
                if epoch != prev_epoch:
                    prev_epoch = epoch
                    base = {}
                shape = shapes.get(sid)
                if shape is None:
                    metrics = self.schema(device, sid) or []
                    shape = (metrics,) + _shape(metrics)
                    if metrics:              # (an unknown schema is asked again, as before)
                        shapes[sid] = shape
                metrics, names, odo = shape
                try:
                    vals, end = scan(text, 0)
                    if end != len(text):
                        vals = loads(text)   # (raises as json.loads does)
                except Exception:
                    vals = loads(text)
                if names is None or type(vals) is not list:
                    # metric by metric, the values built (or failing) as they always were
                    deltas, rewound = walk_one(metrics, vals, base)
                    rec = {"rewound": rewound, "epoch": epoch, "seq": seq, "from_seq": frm,
                           "flags": flags, "boot": boot, "uptime_ms": up, "wall_s": wall, "wall_q": wq,
                           "ival_ms": ival, "received_s": rx}
                    plain = dict(zip((m[0] for m in metrics), vals))
                    if values:
                        rec["values"] = plain
                    yield epoch, rec, deltas, metrics
                    continue
                deltas = {}
                rewound = ()
                n = len(vals)
                for i, name in odo:
                    if i >= n:
                        break
                    v = vals[i]
                    high = base.get(name, 0)
                    if v >= high:
                        deltas[name] = v - high
                        base[name] = v
                    else:
                        deltas[name] = 0
                        rewound += (name,)
                rec = {"rewound": rewound, "epoch": epoch, "seq": seq, "from_seq": frm, "flags": flags,
                       "boot": boot, "uptime_ms": up, "wall_s": wall, "wall_q": wq, "ival_ms": ival,
                       "received_s": rx}
                if values:
                    rec["values"] = dict(zip(names, vals))
                yield epoch, rec, deltas, metrics

    def ledger(self, device=None):
        """Usage per device and UTC day: {device: {day: {odometer: total}}}.
        A record's usage is booked on the day its interval ends, placed by
        the evidence of its boot (agent/collector/timeline.py): its own wall
        time, else re-anchored from a record of the same boot that has one,
        and only when nothing anchors it the time the collector received it."""
        out = {}
        for dev in ([device] if device else self.devices()):
            days = out.setdefault(dev, {})
            for epoch, r, deltas, _ in timeline.placed(self._walk(dev, values=False)):
                timeline.book(days, r, deltas)
        return out

    def summary(self, device):
        """Per device: totals per epoch (last odometer values), records, the
        seqs they cover, coalesced and dropped intervals, unexplained gaps, and
        how many records were placed in time by which evidence ("placed");
        "time_quality": the records placed by receive time or whose wall time
        was contradicted, in groups with their usage (timeline.note)."""
        epochs = {}
        tq = []
        note, noted = timeline.note, (timeline.RECEIVED, timeline.FLAGGED)
        e = cur = None
        for epoch, r, deltas, metrics in timeline.placed(self._walk(device, values=False)):
            if r["flag"] or r["placed"] in noted:     # (the only records note() keeps)
                note(tq, epoch, r, deltas)
            if e is None or epoch != cur:             # (a walk's epochs come one after another)
                cur = epoch
                e = epochs.get(epoch)
                if e is None:
                    row = self._b.execute("SELECT seq0 FROM epochs WHERE device_id=? AND epoch=?",
                                          (device, epoch)).fetchone()
                    start = row[0] if row else r["from_seq"]
                    e = epochs[epoch] = {"totals": {}, "records": 0, "covered": 0, "coalesced": 0,
                                         "rewinds": 0,
                                         "placed": dict.fromkeys(timeline.KINDS, 0),
                                         "dropped": 0, "gaps": 0, "gap_ranges": [],
                                         "first_seq": start, "last_seq": start - 1,
                                         "units": {m[0]: (m[1], m[2]) for m in metrics
                                                   if m[3] == "odometer"}}
                totals, placed = e["totals"], e["placed"]
            seq, frm = r["seq"], r["from_seq"]
            span = seq - frm + 1
            last = e["last_seq"]
            if frm > last + 1:
                e["gaps"] += frm - last - 1
                e["gap_ranges"].append((last + 1, frm - 1))
            e["last_seq"] = seq
            e["records"] += 1
            placed[r["placed"]] += 1
            if r["rewound"]:
                e["rewinds"] += 1
            e["covered"] += span
            flags = r["flags"]
            if flags & 2:
                e["dropped"] += span - 1
            elif flags & 1:
                e["coalesced"] += span - 1
            for k, d in deltas.items():
                totals[k] = totals.get(k, 0) + d
        return {"epochs": epochs, "time_quality": tq,
                "duplicates": self.counter(device, "duplicates"),
                "batches": self.counter(device, "batches"),
                "rejected": self.counter(device, "rejected")}

    def close(self):
        self._b.close()


# -- the databases ------------------------------------------------------------------

def is_postgres_url(db):
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def display_name(db):
    """db as it may be printed: a URL without its password."""
    if not is_postgres_url(db):
        return str(db)
    u = urlsplit(db)
    if u.password is None:
        return db
    netloc = "%s:***@%s" % (u.username or "", u.netloc.rpartition("@")[2])
    return u._replace(netloc=netloc).geturl()


class _Backend:
    """What differs between the databases, and nothing else. SQL is written
    with ? placeholders; execute(sql, params) -> a DB-API cursor."""
    BEGIN_WRITE = "BEGIN"
    in_tx = False

    @contextmanager
    def transaction(self, write=False):
        """Commit when the block ends, roll back if it raises. write=True
        takes the write lock up front where the database has one to take."""
        self.execute(self.BEGIN_WRITE if write else "BEGIN")
        self.in_tx = True
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        finally:
            self.in_tx = False


class _Sqlite(_Backend):
    # IMMEDIATE: the dedupe read and the write under one lock, across processes
    BEGIN_WRITE = "BEGIN IMMEDIATE"
    TYPES = {"id": "TEXT", "int": "INTEGER", "real": "REAL", "blob": "BLOB"}
    INSERT = "INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")   # durable before we ack
        self.conn.executescript(_SCHEMA_SQL.format(**self.TYPES))
        for table, cols in _ADDED_COLUMNS.items():
            have = {r[1] for r in self.conn.execute("PRAGMA table_info(%s)" % table)}
            for name, typ in cols:
                if name not in have:
                    self.conn.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, name, typ.format(**self.TYPES)))
        self.execute = self.conn.execute

    def connection(self):
        return self.conn

    def insert_new(self, rows):
        """Insert the records whose key is not stored yet; return how many."""
        before = self.conn.total_changes
        self.conn.executemany(self.INSERT, rows)
        return self.conn.total_changes - before

    def rollback(self):
        if self.conn.in_transaction:     # (some errors have rolled back already)
            self.conn.execute("ROLLBACK")

    def close(self):
        self.conn.close()


class _Postgres(_Backend):
    """psycopg 3 in autocommit mode with explicit transactions. Concurrent
    workers are safe at READ COMMITTED: a second insert of a key waits for
    the first transaction and then does nothing (or inserts, if that one
    rolled back); counters are upserts; rows go in seq order, so two workers
    with overlapping batches of a device lock keys in the same order. A lost
    connection is replaced before the next statement outside a transaction,
    so a restarted server is picked up without restarting the collector."""
    TYPES = {"id": 'TEXT COLLATE "C"', "int": "BIGINT", "real": "DOUBLE PRECISION", "blob": "BYTEA"}
    # one statement a batch, whatever its size: the records as 13 column arrays
    INSERT = ("INSERT INTO records SELECT * FROM unnest(?::text[], ?::int8[], ?::int8[], "
              "?::int8[], ?::int8[], ?::int8[], ?::int8[], ?::int8[], ?::int8[], ?::int8[], "
              "?::int8[], ?::text[], ?::float8[]) ON CONFLICT DO NOTHING")
    TEXT_COLUMNS = (0, 11)             # device_id, vals
    DDL_LOCK = 0x7A11E                 # advisory lock: workers starting together

    def __init__(self, url):
        try:
            import psycopg
        except ImportError:
            raise ValueError("a PostgreSQL ledger needs psycopg 3: pip install 'tally[postgres]'")
        self.pg = psycopg
        self.url = url
        self.conn = None
        self._sql = {}                     # ? -> %s, once per statement
        try:
            with self.transaction():
                self.execute("SELECT pg_advisory_xact_lock(?)", (self.DDL_LOCK,))
                for ddl in _SCHEMA_SQL.format(**self.TYPES).split(";"):
                    if ddl.strip():
                        self.execute(ddl)
                for table, cols in _ADDED_COLUMNS.items():
                    for name, typ in cols:
                        self.execute("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s"
                                     % (table, name, typ.format(**self.TYPES)))
        except BaseException:
            self.close()
            raise

    def _fail(self, e):
        return PostgresError("PostgreSQL %s: %s" % (display_name(self.url), " ".join(str(e).split())))

    def connection(self):
        if self.conn is None or (self.conn.closed and not self.in_tx):
            try:
                opts = {} if "connect_timeout" in self.url else {"connect_timeout": 10}
                self.conn = self.pg.connect(self.url, autocommit=True, **opts)
            except self.pg.Error as e:
                raise self._fail(e) from e
        return self.conn

    def execute(self, sql, params=None):
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = sql.replace("?", "%s")
        conn = self.connection()
        try:
            return conn.execute(q, params)
        except self.pg.Error as e:
            raise self._fail(e) from e

    def insert_new(self, rows):
        # number columns go as array literals joined in C (a third faster
        # than psycopg's per-element list dumping); text ones through psycopg
        cols = [list(c) if i in self.TEXT_COLUMNS else "{%s}" % ",".join(map(str, c))
                for i, c in enumerate(zip(*rows))]
        return self.execute(self.INSERT, cols).rowcount

    def rollback(self):
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.execute("ROLLBACK")
            except self.pg.Error:
                self.conn.close()          # the next statement starts afresh

    def close(self):
        if self.conn is not None:
            self.conn.close()
