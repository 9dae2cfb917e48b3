"""Component events in the ledger: the `part_events` table (one row per
installed/removed event a device logged, agent/parts.py), booked exactly once
in the same transaction as the batch that carried them.

A device sends its unacked events with every batch whose seq range holds
their seq (ext key 2, docs/wire.md), so a replayed or re-cut batch carries
them again: the key (device, epoch, seq, idx) makes the second insert a
no-op. The collector-life module reads this table; the shape is the shared
contract (do not change it without them)."""
import json

from agent.collector import validate

_DDL = """
CREATE TABLE IF NOT EXISTS part_events (
    device {id} NOT NULL, epoch {int} NOT NULL, seq {int} NOT NULL, idx {int} NOT NULL,
    kind TEXT NOT NULL, slot TEXT NOT NULL, component TEXT NOT NULL, wall_s {int} NOT NULL,
    odometers TEXT NOT NULL, detail TEXT NOT NULL,
    PRIMARY KEY (device, epoch, seq, idx)
)"""
_INSERT = ("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?) "
           "ON CONFLICT(device, epoch, seq, idx) DO NOTHING")


def ensure(backend):
    """Create the table once per backend (either database)."""
    if not getattr(backend, "_parts_ready", False):
        lock = getattr(backend, "DDL_LOCK", None)
        if lock is None:
            backend.execute(_DDL.format(**backend.TYPES))
        else:                       # PostgreSQL: workers starting together take turns
            with backend.transaction():
                backend.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
                backend.execute(_DDL.format(**backend.TYPES))
        backend._parts_ready = True


def check(ext, lo, hi):
    """The events of a batch's ext map (validated), [] when it has none.
    Raises validate.Invalid."""
    if ext is None:
        return []
    validate.ext(ext)
    if 2 not in ext:
        return []
    return validate.part_events(ext[2], lo, hi)


def book(backend, device, epoch, events):
    """Insert the events not booked yet (inside the caller's transaction);
    returns how many were new."""
    if not events:
        return 0
    ensure(backend)
    n = 0
    for e in events:
        cur = backend.execute(_INSERT, (device, epoch, e["seq"], e["idx"], e["kind"], e["slot"],
                                        e["component"], e["wall_s"],
                                        json.dumps(e["odometers"], sort_keys=True), e["detail"]))
        n += max(cur.rowcount, 0)
    return n


def history(backend, device=None):
    """Booked events, oldest first, as dicts (for tools and tests)."""
    ensure(backend)
    q = ("SELECT device, epoch, seq, idx, kind, slot, component, wall_s, odometers, detail "
         "FROM part_events")
    args = ()
    if device is not None:
        q += " WHERE device = ?"
        args = (device,)
    rows = backend.execute(q + " ORDER BY device, epoch, seq, idx", args).fetchall()
    keys = ("device", "epoch", "seq", "idx", "kind", "slot", "component", "wall_s", "odometers", "detail")
    out = []
    for r in rows:
        d = dict(zip(keys, r))
        d["odometers"] = json.loads(d["odometers"])
        out.append(d)
    return out


def split(obj, schema_of):
    """(batch, ext): a data batch's trailing ext map taken off. The batch's
    schema (schema_of(schema id) -> metrics or None) says where its columns
    end; when it is not known yet, a trailing map holding anything but
    integers is ext (a sparse column holds integers only), so an unknown
    schema stays a plain "unknown schema" (re-sent after the next birth),
    not a malformed batch. (obj, None) otherwise: validate.data judges it."""
    if type(obj) is not list or len(obj) < 2 or type(obj[1]) is not int or type(obj[-1]) is not dict:
        return obj, None
    from agent import batch as wire
    metrics = schema_of(obj[1])
    if metrics is not None:
        return wire.split_ext(obj, len(metrics))
    for v in obj[-1].values():
        if type(v) is not int:
            return obj[:-1], obj[-1]
    return obj, None
