"""Stress histograms in the ledger (issue 15; the device side is agent/stress.py,
the wire docs/wire.md "Stress histograms").

The birth's "hist" defines a device's histograms under a version (the hash of
the definitions): kept in `stress_defs`. A batch's ext key 1 carries one
snapshot, the cumulative counts when interval `seq` closed: whole, or as
the bins changed since an earlier snapshot the collector acked. Each is
stored as one `stress` row per histogram, cumulative counts per bin, keyed
(device, epoch, seq, hist): a replay or a re-send finds its rows there and
adds nothing. A delta is completed from the newest stored row of that
histogram before `seq`: the device leaves out only bins unchanged since
its base, a snapshot the collector acked, so a row at or after the base
holds their values, and so does an older one when every snapshot between
was stored. When a snapshot could not be stored (its base missing, counts
that went down), a row in `stress_gaps` says so, and no delta is completed
across it from an older row; a whole snapshot (the device sends one after
every boot and every 24 snapshots) starts afresh. A count lower than the stored one before it, or higher
than the one after it, is an alarm and a counter, never stored over.

Called from agent/collector/store.py at three points (setup, birth, data),
inside its transactions.
"""
import json

from agent.batch import split_ext
from agent.collector import validate

_SQL = """
CREATE TABLE IF NOT EXISTS stress (
    device {id} NOT NULL, epoch {int} NOT NULL, seq {int} NOT NULL, hist TEXT NOT NULL,
    edges_version {int} NOT NULL, counts TEXT NOT NULL,
    PRIMARY KEY (device, epoch, seq, hist)
);
CREATE TABLE IF NOT EXISTS stress_defs (
    device {id} NOT NULL, edges_version {int} NOT NULL, defs TEXT NOT NULL,
    PRIMARY KEY (device, edges_version)
);
CREATE TABLE IF NOT EXISTS stress_gaps (
    device {id} NOT NULL, epoch {int} NOT NULL, seq {int} NOT NULL, hist TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (device, epoch, seq, hist)
)
"""
_J = json.JSONEncoder(separators=(",", ":")).encode


def setup(backend):
    """Create the tables (both databases) if they are not there."""
    for ddl in _SQL.format(**backend.TYPES).split(";"):
        if ddl.strip():
            backend.execute(ddl)


def on_birth(col, device, raw):
    """A verified birth's "hist" (raw: the decoded birth map): its
    definitions kept under their version. A bad one is counted, and the
    birth goes on without it (metering does not wait for histograms)."""
    h = raw.get("hist") if type(raw) is dict else None
    if h is None:
        return
    try:
        version, defs = validate.hist_birth(h)
    except validate.Invalid:
        col._bump(device, "hist_bad_defs")
        return
    col._b.execute("INSERT INTO stress_defs VALUES (?,?,?) ON CONFLICT DO NOTHING",
                   (device, version, _J(defs)))


def split(col, device, obj):
    """(batch, ext or None): the trailing ext map goes where the schema of the
    batch says the columns end. With the schema not known (yet), a trailing
    map that cannot be a sparse column (a value not an integer) is taken as
    the ext, so the batch is refused as of an unknown schema, never as
    malformed."""
    if type(obj) is not list or len(obj) < 14 or type(obj[-1]) is not dict:
        return obj, None
    sid = obj[1]
    metrics = col.schema(device, sid) if type(sid) is int and 0 <= sid < validate.U32 else None
    if metrics is None:
        if any(type(v) is not int for v in obj[-1].values()):
            return obj[:-1], obj[-1]
        return obj, None
    return split_ext(obj, len(metrics))


def defs(col, device, version):
    row = col._b.execute("SELECT defs FROM stress_defs WHERE device=? AND edges_version=?",
                         (device, version)).fetchone()
    return json.loads(row[0]) if row else None


def on_data(col, device, recs, ext, now):
    """Store the snapshot of ext key 1, if any, in the data transaction."""
    if not ext or 1 not in ext:
        return
    bump = col._bump
    try:
        version, seq, base, hists = validate.hist_ext(ext[1], recs[0]["seq"], recs[-1]["seq"])
    except validate.Invalid:
        bump(device, "hist_malformed")
        return
    d = defs(col, device, version)
    if d is None:
        bump(device, "hist_unknown_version")
        return
    for k, c in hists.items():
        if k >= len(d) or (type(c) is list and len(c) != d[k][4]) or \
                (type(c) is dict and max(c) >= d[k][4]):
            bump(device, "hist_malformed")
            return
    epoch = recs[0]["epoch"]
    x = col._b.execute
    for k, df in enumerate(d):
        name, kind, nb = df[0], df[1], df[4]
        body = hists.get(k)
        if base and body is None:
            continue                        # unchanged since the base: no row
        prev = x("SELECT seq, counts FROM stress WHERE device=? AND epoch=? AND hist=? AND "
                 "edges_version=? AND seq<? ORDER BY seq DESC LIMIT 1",
                 (device, epoch, name, version, seq)).fetchone()
        if type(body) is list:
            vals = list(body)
        elif base == 0:
            vals = [0] * nb
            for b, v in (body or {}).items():
                vals[b] = v
        else:
            # a row at or after the base holds the unchanged bins; an older one
            # only when no snapshot between it and this one was refused
            gap = prev is not None and prev[0] < base and x(
                "SELECT 1 FROM stress_gaps WHERE device=? AND epoch=? AND hist=? AND seq>? AND seq<?",
                (device, epoch, name, prev[0], seq)).fetchone()
            if prev is None or gap:
                bump(device, "hist_nobase")
                _gap(col, device, epoch, seq, name, "no base")
                continue
            vals = json.loads(prev[1])
            for b, v in body.items():
                vals[b] = v
        if kind == "count":
            nxt = x("SELECT seq, counts FROM stress WHERE device=? AND epoch=? AND hist=? AND "
                    "edges_version=? AND seq>? ORDER BY seq LIMIT 1",
                    (device, epoch, name, version, seq)).fetchone()
            bad = None
            if prev is not None and any(a > b for a, b in zip(json.loads(prev[1]), vals)):
                bad = prev
            elif nxt is not None and any(a < b for a, b in zip(json.loads(nxt[1]), vals)):
                bad = nxt
            if bad is not None:
                bump(device, "hist_decreasing")
                _gap(col, device, epoch, seq, name, "decreasing")
                x("INSERT INTO alarms(device_id, epoch, seq, last_seq, stored, received, at_s, what) "
                  "VALUES (?,?,?,?,?,?,?,?)",
                  (device, epoch, seq, bad[0], bad[1], _J(vals), now,
                   "stress: %s counts go down between seq %d and %d" % (name, min(seq, bad[0]),
                                                                         max(seq, bad[0]))))
                continue
        text = _J(vals)
        row = x("SELECT counts FROM stress WHERE device=? AND epoch=? AND seq=? AND hist=?",
                (device, epoch, seq, name)).fetchone()
        if row is None:
            x("INSERT INTO stress VALUES (?,?,?,?,?,?)", (device, epoch, seq, name, version, text))
        elif row[0] != text:
            bump(device, "hist_conflicts")      # the ledger keeps the first


def _gap(col, device, epoch, seq, name, reason):
    col._b.execute("INSERT INTO stress_gaps VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                   (device, epoch, seq, name, reason))


def latest(col, device):
    """{hist: (epoch, seq, counts)} of the newest stored snapshot of each
    histogram, with its definition: [(name, kind, unit, scale, edges,
    ref, epoch, seq, counts)] in definition order."""
    row = col._b.execute("SELECT edges_version FROM stress WHERE device=? "
                         "ORDER BY epoch DESC, seq DESC LIMIT 1", (device,)).fetchone()
    if row is None:
        return []
    d = defs(col, device, row[0]) or []
    out = []
    for df in d:
        r = col._b.execute("SELECT epoch, seq, counts FROM stress WHERE device=? AND hist=? AND "
                           "edges_version=? ORDER BY epoch DESC, seq DESC LIMIT 1",
                           (device, df[0], row[0])).fetchone()
        if r:
            out.append((df[0], df[1], df[2], df[3], df[5], df[6], r[0], r[1], json.loads(r[2])))
    return out


def _edge_labels(edges, n):
    if not edges or type(edges[0]) is list:
        return None
    labels = ["<%s" % edges[0]]
    for a, b in zip(edges, edges[1:]):
        labels.append("%s-%s" % (a, b))
    labels.append(">=%s" % edges[-1])
    return labels if len(labels) == n else None


def report(col, device):
    """Readable lines: each histogram's newest counts, binned."""
    lines = []
    for name, kind, unit, scale, edges, ref, epoch, seq, counts in latest(col, device):
        if kind == "level":
            lines.append("  %-12s %s (%s%s)" % (name, " ".join(
                ("%g" % (c * 10 ** scale)) for c in counts), unit, ", at seq %d" % seq))
            continue
        labels = _edge_labels(edges, len(counts))
        if name == "rh_s":
            rh, t = edges
            cells = []
            for i, c in enumerate(counts):
                if c:
                    cells.append("rh%s t%s:%d" % (_cell(rh, i // (len(t) + 1)),
                                                  _cell(t, i % (len(t) + 1)), c))
            body = " ".join(cells) or "-"
        elif labels:
            body = " ".join("%s:%d" % (lb, c) for lb, c in zip(labels, counts) if c) or "-"
        else:
            body = " ".join(str(c) for c in counts)
        lines.append("  %-12s %s  [%s, at seq %d]" % (name, body, unit, seq))
    return lines


def _cell(edges, i):
    if i == 0:
        return "<%s" % edges[0]
    if i >= len(edges):
        return ">=%s" % edges[-1]
    return "%s-%s" % (edges[i - 1], edges[i])
