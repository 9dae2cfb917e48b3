"""The console's read-only view of the collector's ledger.

`Reader(db)` is the collector's own Collector class (so ledger(), summary()
and billing read exactly as `tally report` does) on a connection that
cannot write: SQLite opened as a `mode=ro` URI, PostgreSQL in read-only
transactions (default_transaction_read_only). It never creates a table; a
table that a newer collector owns (life, stress, part_events, contracts)
and this ledger does not have is "no data yet", not an error.

The fleet page asks only indexed questions per device (the newest birth,
the newest record of the current epoch, alarm and quarantine counts),
one page of devices at a time, so it costs the same at 10,000 devices as
at 10.
"""
import json
import sqlite3
import threading
import time
import urllib.parse

from agent.collector import store

ONLINE_S = 3 * 3600      # seen in the last 3 hours: online; else offline ("silent since")
MAX_INTERVALS = 5000     # newest intervals kept for an asset's interval chart
CACHE_DEVICES = 64       # devices whose walked history is kept (see Reader._full)
_CACHE = {}              # (ledger, device) -> ((records, epochs), (days, summary, intervals)), oldest first
_LOCK = threading.Lock()


class LedgerError(Exception):
    """The ledger cannot be opened or read (one line for the page)."""


class _ReadOnlySqlite(store._Sqlite):
    def __init__(self, path):
        uri = "file:%s?mode=ro" % urllib.parse.quote(path)
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA query_only=ON")
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise LedgerError("%s cannot be read: %s" % (path, e))
        self.conn.execute("PRAGMA busy_timeout=5000")   # a collector writing: wait, not fail
        self.execute = self.conn.execute


class _ReadOnlyPostgres(store._Postgres):
    def __init__(self, url):
        import psycopg
        self.pg = psycopg
        self.url = url
        self.conn = None
        self._sql = {}

    def connection(self):
        fresh = self.conn is None or self.conn.closed
        conn = store._Postgres.connection(self)
        if fresh:
            conn.execute("SET default_transaction_read_only = on")
        return conn


class Reader(store.Collector):
    """A Collector that only reads (see the module's doc)."""

    def __init__(self, db):
        self.keys = lambda dev: None
        self.db_path = db
        self._b = _ReadOnlyPostgres(db) if store.is_postgres_url(db) else _ReadOnlySqlite(db)
        self.rejects, self.on_reject, self.escapes, self._schemas = {}, None, 0, {}
        self._hold_s, self._txn_mark = 0, None
        self._tables = None
        self._tap = None

    def q(self, sql, args=()):
        return self._b.execute(sql, args).fetchall()

    def has(self, table):
        """Whether the ledger has this table (the newer helpers' tables may be absent)."""
        if self._tables is None:
            if store.is_postgres_url(self.db_path):
                rows = self.q("SELECT table_name FROM information_schema.tables "
                              "WHERE table_schema = current_schema()")
            else:
                rows = self.q("SELECT name FROM sqlite_master WHERE type='table'")
            self._tables = {r[0] for r in rows}
        return table in self._tables

    # -- the fleet -------------------------------------------------------------

    def device_ids(self, search=""):
        """Every device the ledger knows (a schema or a birth), sorted; those
        whose id contains `search`."""
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.q("SELECT device_id FROM schemas WHERE device_id LIKE ? ESCAPE '\\' "
                      "UNION SELECT device_id FROM births WHERE device_id LIKE ? ESCAPE '\\' "
                      "ORDER BY 1", (like, like))
        return [r[0] for r in rows]

    def known(self, device):
        return bool(self.q("SELECT 1 FROM schemas WHERE device_id=? UNION "
                           "SELECT 1 FROM births WHERE device_id=?", (device, device)))

    def births(self, devices=None):
        """{device: newest birth row as a dict} for these devices (None: all)."""
        out = {}
        if devices is not None and not devices:
            return out
        where, args = "", ()
        if devices is not None:
            where, args = "WHERE device_id IN (%s) " % ",".join("?" * len(devices)), tuple(devices)
        for dev, boot, epoch, reason, fw, board, rx in self.q(
                "SELECT device_id, boot, epoch, reason, fw, board, received_s FROM births "
                + where + "ORDER BY received_s", args):
            out[dev] = {"boot": boot, "epoch": epoch, "reason": reason, "fw": fw, "board": board,
                        "received_s": rx}
        return out

    def _counts(self, table, devices=None):
        if devices is None:
            return dict(self.q("SELECT device_id, COUNT(*) FROM %s GROUP BY device_id" % table))
        if not devices:
            return {}
        marks = ",".join("?" * len(devices))
        return dict(self.q("SELECT device_id, COUNT(*) FROM %s WHERE device_id IN (%s) GROUP BY device_id"
                           % (table, marks), tuple(devices)))

    def last_record(self, device, epoch):
        """The newest record of the device's epoch, with its values by name, or None."""
        rows = self.q("SELECT seq, wall_s, wall_q, received_s, vals, schema_id FROM records "
                      "WHERE device_id=? AND epoch=? ORDER BY seq DESC LIMIT 1", (device, epoch))
        if not rows:
            rows = self.q("SELECT seq, wall_s, wall_q, received_s, vals, schema_id FROM records "
                          "WHERE device_id=? ORDER BY received_s DESC LIMIT 1", (device,))
            if not rows:
                return None
        seq, wall, wq, rx, vals, sid = rows[0]
        metrics = self.schema(device, sid) or []
        return {"seq": seq, "wall_s": wall, "wall_q": wq, "received_s": rx,
                "values": dict(zip((m[0] for m in metrics), json.loads(vals)))}

    def seq_gaps(self, device):
        """Missing seqs over the device's epochs from the primary key alone:
        (last seq - first seq + 1) - records. A coalesced record covers
        several seqs, so this counts them too; the asset page tells them apart."""
        missing = 0
        for epoch, n, lo, hi in self.q("SELECT epoch, COUNT(*), MIN(seq), MAX(seq) FROM records "
                                       "WHERE device_id=? GROUP BY epoch", (device,)):
            row = self.q("SELECT seq0 FROM epochs WHERE device_id=? AND epoch=?", (device, epoch))
            first = row[0][0] if row else lo
            missing += max(0, hi - first + 1 - n)
        return missing

    def last_seen(self, devices):
        """{device: when the collector last heard from it (unix s) or 0}: the
        newest birth and the newest record of its current epoch, without
        reading the record's values (the online/offline filter)."""
        births = self.births(None)
        out = {}
        x = self._b.execute
        for dev in devices:
            b = births.get(dev)
            row = x("SELECT received_s FROM records WHERE device_id=? AND epoch=? ORDER BY seq DESC LIMIT 1",
                    (dev, b["epoch"])).fetchone() if b else None
            out[dev] = max((row[0] if row else 0), (b["received_s"] if b else 0))
        return out

    def fleet_rows(self, devices, now=None, everyone=False):
        """One row per device of this page (see the fleet page). everyone:
        `devices` is most of the fleet (a filter walks it): births, alarm and
        quarantine counts read for all devices at once, not per page."""
        now = time.time() if now is None else now
        some = None if everyone else devices
        births = self.births(some)
        alarms = self._counts("alarms", some)
        quarantined = self._counts("quarantine", some)
        rows = []
        for dev in devices:
            b = births.get(dev, {})
            last = self.last_record(dev, b.get("epoch"))
            seen = max(x for x in ((last or {}).get("received_s"), b.get("received_s"), 0) if x is not None)
            v = (last or {}).get("values", {})
            flags = []
            # the device's own count of intervals it merged or dropped (storage full); the
            # collector's gap count needs a walk of the records and is on the asset page
            gaps = (v.get("dropped") or 0) + (v.get("coalesced") or 0)
            if v.get("dropped"):
                flags.append("dropped: %d intervals" % v["dropped"])
            if v.get("coalesced"):
                flags.append("merged: %d intervals" % v["coalesced"])
            if last and not last["wall_q"]:
                flags.append("no clock: newest record re-anchored or by receive time")
            if alarms.get(dev):
                flags.append("alarms: %d" % alarms[dev])
            if quarantined.get(dev):
                flags.append("quarantined: %d" % quarantined[dev])
            rows.append({"device": dev, "online": bool(seen) and now - seen < ONLINE_S,
                         "last_seen": seen or None, "fw": b.get("fw"), "reason": b.get("reason"),
                         "board": b.get("board"), "backlog": v.get("depth"), "unacked_s": v.get("unacked_s"),
                         "flags": flags, "gaps": gaps, "alarms": alarms.get(dev, 0),
                         "quarantined": quarantined.get(dev, 0)})
        return rows

    # -- one asset ---------------------------------------------------------------

    # -- one device's history, walked once and kept --------------------------------
    #
    # The asset page and the bill both need the device's whole history walked
    # (Collector._walk placed by timeline: a record's day needs its whole
    # boot). One walk gives the usage per day, the summary and the newest
    # intervals; they are kept per (ledger, device) until the device's
    # record or epoch count changes. The ledger only ever gains rows (records
    # and epochs are insert-only, schemas never rewritten), so a count that
    # did not change means nothing the walk read changed. The counters the
    # summary carries are read fresh every time.

    def _walk(self, device, values=True):
        for item in store.Collector._walk(self, device, values):
            if self._tap is not None:
                self._tap.append((item[1], item[2]))
            yield item

    def _full(self, device):
        key = (self.q("SELECT COUNT(*) FROM records WHERE device_id=?", (device,))[0][0],
               self.q("SELECT COUNT(*) FROM epochs WHERE device_id=?", (device,))[0][0])
        ck = (self.db_path, device)
        with _LOCK:
            hit = _CACHE.pop(ck, None)
            if hit is not None and hit[0] == key:
                _CACHE[ck] = hit
                return hit[1]
        from agent.collector import timeline
        seen = self._tap = []
        try:
            summ = store.Collector.summary(self, device)
        finally:
            self._tap = None
        days = {}
        for r, deltas in seen:
            timeline.book(days, r, deltas)
        ivals = [(r["end_s"], deltas) for r, deltas in seen[-MAX_INTERVALS:]]
        val = (days, summ, ivals)
        with _LOCK:
            _CACHE[ck] = (key, val)
            while len(_CACHE) > CACHE_DEVICES:
                _CACHE.pop(next(iter(_CACHE)))
        return val

    def asset_walk(self, device, limit=None):
        """(usage per UTC day {day: {odometer: total}}, the summary (as
        Collector.summary), the newest MAX_INTERVALS records as
        [(end_s, {odometer: delta})] oldest first)."""
        days, summ, ivals = self._full(device)
        return days, self.summary(device), ivals[-limit:] if limit else ivals

    def devices(self):
        return self.device_ids()

    def ledger(self, device=None):
        return {d: self._full(d)[0] for d in ([device] if device else self.device_ids())}

    def summary(self, device):
        s = dict(self._full(device)[1])
        s.update(duplicates=self.counter(device, "duplicates"), batches=self.counter(device, "batches"),
                 rejected=self.counter(device, "rejected"))
        return s

    def customers(self):
        """Customers, their contracts and the assets assigned to them, from the
        contract tables (agent/collector/contracts.py, issue 17), or None when
        the ledger has none of them yet."""
        if not (self.has("customers") and self.has("contracts") and self.has("assignments")):
            return None
        out = []
        for cid, name in self.q("SELECT id, name FROM customers ORDER BY id"):
            cons = []
            for kid, start, end in self.q("SELECT id, start_day, end_day FROM contracts WHERE customer=? "
                                          "ORDER BY id", (cid,)):
                assets = [a[0] for a in self.q("SELECT DISTINCT asset FROM assignments WHERE contract=? "
                                               "ORDER BY asset", (kid,))]
                cons.append({"id": kid, "start": start, "end": end, "assets": assets})
            out.append({"id": cid, "name": name, "contracts": cons})
        return out

    def counters_of(self, device):
        return dict(self.q("SELECT name, n FROM counters WHERE device_id=? ORDER BY name", (device,)))

    def alarms(self, device=None, limit=200):
        q = ("SELECT device_id, epoch, seq, last_seq, what, stored, received, at_s FROM alarms %s "
             "ORDER BY at_s DESC LIMIT ?" % ("WHERE device_id=?" if device else ""))
        rows = self.q(q, ((device,) if device else ()) + (limit,))
        return [dict(zip(("device", "epoch", "seq", "last_seq", "what", "stored", "received", "at_s"), r))
                for r in rows]

    def quarantine(self, device=None, limit=200):
        q = ("SELECT device_id, topic, reason, at_s FROM quarantine %s ORDER BY at_s DESC LIMIT ?"
             % ("WHERE device_id=?" if device else ""))
        rows = self.q(q, ((device,) if device else ()) + (limit,))
        return [dict(zip(("device", "topic", "reason", "at_s"), r)) for r in rows]

    def reboots(self, device=None, limit=200):
        q = ("SELECT device_id, boot, epoch, reason, fw, received_s FROM births %s "
             "ORDER BY received_s DESC LIMIT ?" % ("WHERE device_id=?" if device else ""))
        rows = self.q(q, ((device,) if device else ()) + (limit,))
        return [dict(zip(("device", "boot", "epoch", "reason", "fw", "at_s"), r)) for r in rows]

    def table_rows(self, table, device, limit=500):
        """Rows of a newer helper's table for one device, or None when the
        ledger has no such table ("no data yet")."""
        if not self.has(table):
            return None
        cur = self._b.execute("SELECT * FROM %s WHERE device_id=? LIMIT ?" % table
                              if table not in ("stress", "part_events")
                              else "SELECT * FROM %s WHERE device=? LIMIT ?" % table, (device, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
