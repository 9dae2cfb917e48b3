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
"""
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
from agent.collector import timeline

MAX_PAYLOAD = 64 * 1024
_JSON = json.JSONEncoder(separators=(",", ":")).encode    # values as compact JSON

# {id}: a device id; {int}: a signed 64-bit integer; {real}: a double.
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
"""


class PostgresError(Exception):
    """PostgreSQL failed or could not be reached (the driver's error is the
    __cause__). Nothing of the message was committed, so nothing is acked."""


# What a database failure raises from Collector, for either database: the
# MQTT service catches these, does not ack, and keeps serving.
DB_ERRORS = (sqlite3.Error, PostgresError)


class Reject(ValueError):
    pass


def parse_topic(topic):
    parts = topic.split("/")
    # (MQTT forbids NUL in a topic; a database text column can't hold one either)
    if len(parts) != 4 or "\x00" in topic or parts[0] != "tally" or parts[1] != "v1" or not parts[2]:
        raise Reject("topic: %r is not tally/v1/<device>/<kind>" % topic)
    return parts[2], parts[3]


class Collector:
    """keys(device_id) -> the device's MAC key, or None for an unknown device.
    db: a SQLite file, ":memory:", or postgresql://user@host:port/dbname."""

    def __init__(self, db=":memory:", keys=None):
        if keys is None:
            raise ValueError("collector: a key lookup is required (every message is MAC'd)")
        self.keys = keys
        self.db_path = db
        self._b = _Postgres(db) if is_postgres_url(db) else _Sqlite(db)
        self.rejects = {}        # reason -> count, for this process
        self.on_reject = None    # callback(device, reason), e.g. to log each one
        self._schemas = {}
        # Fault injection for the chaos soak only (hil/soak.py): hold every
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
            if kind not in ("data", "birth", "death", "cfgack"):
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
            elif kind == "cfgack":
                self._cfgack(device, payload)
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
        # (a text column can't hold NUL in PostgreSQL)
        reason, fw, board = (str(b.get(k)).replace("\x00", "\ufffd") for k in ("reason", "fw", "board"))
        x = self._b.execute
        with self._b.transaction():
            x("INSERT INTO schemas VALUES (?,?,?) ON CONFLICT(device_id, schema_id) "
              "DO UPDATE SET metrics = excluded.metrics", (device, sid, json.dumps(metrics)))
            if isinstance(b.get("epoch"), int) and isinstance(b.get("seq0"), int):
                x("INSERT INTO epochs VALUES (?,?,?) ON CONFLICT DO NOTHING",
                  (device, b["epoch"], b["seq0"]))
            x("INSERT INTO births VALUES (?,?,?,?,?,?,?)",
              (device, b.get("boot"), b.get("epoch"), reason, fw, board, time.time()))
        self._schemas[(device, sid)] = metrics

    def schema(self, device, sid):
        m = self._schemas.get((device, sid))
        if m is None:
            row = self._b.execute("SELECT metrics FROM schemas WHERE device_id=? AND schema_id=?",
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
        b = self._b
        with b.transaction(write=True):
            if self._hold_s:
                self._chaos_hold()
            dup = len(rows) - b.insert_new(rows)
            if dup:
                self._replay(device, recs, now)     # which ones, and are they the same content?
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
        a = self._decode(payload)
        if not (isinstance(a, dict) and isinstance(a.get("version"), int)
                and isinstance(a.get("ok"), bool) and isinstance(a.get("active"), int)):
            raise Reject("malformed: cfgack %r" % (a,))
        reason = str(a.get("reason", ""))[:500].replace("\x00", "\ufffd")
        with self._b.transaction(write=True):
            self._b.execute(
                "INSERT INTO configs(device_id, version, body, pushed_s, ok, reason, active, acked_s) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(device_id, version) DO UPDATE SET "
                "ok = excluded.ok, reason = excluded.reason, active = excluded.active, "
                "acked_s = excluded.acked_s",
                (device, a["version"], "{}", time.time(), int(a["ok"]), reason, a["active"],
                 time.time()))

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
        batch is one epoch and contiguous seqs, so one range read has them all."""
        stored = {row[0]: tuple(row[1:]) for row in self._b.execute(
            "SELECT seq, from_seq, flags, boot, uptime_ms, vals FROM records "
            "WHERE device_id=? AND epoch=? AND seq BETWEEN ? AND ?",
            (device, recs[0]["epoch"], recs[0]["seq"], recs[-1]["seq"]))}
        for r in recs:
            row = stored.get(r["seq"])
            got = (r["from_seq"], r["flags"], r["boot"], r["uptime_ms"], _JSON(r["values"]))
            if row is not None and row != got:
                self._b.execute("INSERT INTO alarms VALUES (?,?,?,?,?,?)",
                                (device, r["epoch"], r["seq"], json.dumps(list(row)),
                                 json.dumps(list(got)), now))
                self._bump(device, "conflicts")

    # -- ledger ---------------------------------------------------------------------

    def devices(self):
        return [r[0] for r in self._b.execute(
            "SELECT DISTINCT device_id FROM records ORDER BY device_id")]

    def _walk(self, device):
        """Yield per record: (epoch, rec dict, {odometer: delta}, metrics) in
        seq order; odometers start at zero with each epoch."""
        rows = self._b.execute(
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
        A record's usage is booked on the day its interval ends, placed by
        the evidence of its boot (agent/collector/timeline.py): its own wall
        time, else re-anchored from a record of the same boot that has one,
        and only when nothing anchors it the time the collector received it."""
        out = {}
        for dev in ([device] if device else self.devices()):
            days = out.setdefault(dev, {})
            for epoch, r, deltas, _ in timeline.placed(self._walk(dev)):
                acc = days.setdefault(timeline.day(r["end_s"]), {})
                for k, d in deltas.items():
                    acc[k] = acc.get(k, 0) + d
        return out

    def summary(self, device):
        """Per device: totals per epoch (last odometer values), records, the
        seqs they cover, coalesced and dropped intervals, unexplained gaps, and
        how many records were placed in time by which evidence ("placed");
        "time_quality": the records placed by receive time or whose wall time
        was contradicted, in groups with their usage (timeline.note)."""
        epochs = {}
        tq = []
        for epoch, r, deltas, metrics in timeline.placed(self._walk(device)):
            timeline.note(tq, epoch, r, deltas)
            e = epochs.get(epoch)
            if e is None:
                row = self._b.execute("SELECT seq0 FROM epochs WHERE device_id=? AND epoch=?",
                                      (device, epoch)).fetchone()
                start = row[0] if row else r["from_seq"]
                e = epochs[epoch] = {"totals": {}, "records": 0, "covered": 0, "coalesced": 0,
                                     "placed": dict.fromkeys(timeline.KINDS, 0),
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
            e["placed"][r["placed"]] += 1
            e["covered"] += span
            if r["flags"] & 2:
                e["dropped"] += span - 1
            elif r["flags"] & 1:
                e["coalesced"] += span - 1
            for k, d in deltas.items():
                e["totals"][k] = e["totals"].get(k, 0) + d
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
    TYPES = {"id": "TEXT", "int": "INTEGER", "real": "REAL"}
    INSERT = "INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"

    def __init__(self, path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")   # durable before we ack
        self.conn.executescript(_SCHEMA_SQL.format(**self.TYPES))
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
    TYPES = {"id": 'TEXT COLLATE "C"', "int": "BIGINT", "real": "DOUBLE PRECISION"}
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
