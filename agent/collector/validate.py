"""What a signed message must be before the collector expands, stores or
formats any of it: one check per message type (data, birth, death, cfgack),
shape as docs/wire.cddl says and every value in its range, at a cost
O(message size). Everything downstream may trust what passes.

Each check takes the decoded payload (cbor2's Python objects) and raises
Invalid with a bounded message that names the field; it never formats the
offending value itself (an integer of thousands of digits raises in repr,
a string may carry terminal control sequences): show() describes a value in
at most a few dozen printable characters. The limits are documented in
docs/wire.md ("Limits"); change both together.
"""
import hashlib
import unicodedata

import cbor2

from agent import cbor
from agent.remote import V_END              # config versions: 1 .. 2^31-1

I64 = 1 << 63               # every stored integer fits a signed 64-bit column
U32 = 1 << 32
CBOR_INT = 1 << 64          # a CBOR integer item: -2^64 .. 2^64-1 (deltas of int64 values need it)

MAX_PAYLOAD = 64 * 1024     # bytes of a signed message (before verifying)
MAX_RECORDS = 600           # records one batch may declare (a device's batch_max is at most 600)
MAX_METRICS = 256           # metrics in a schema, so columns in a batch
MAX_CELLS = 65536           # records x (metrics + 1): the most a batch may expand to
MAX_NAME = 64               # characters of a metric name or unit
MAX_TEXT = 64               # characters of a birth's fw, board and reason
MAX_REASON = 500            # characters of a cfgack's reason
SCALE_MIN, SCALE_MAX = -9, 9
MAX_IVAL_MS = 86400000      # one day: remote config allows interval_s up to 86400
MAX_SPAN = U32              # intervals one (coalesced) record may cover
MAX_WALL_S = U32 - 1        # 2106-02-07: every wall time, ends of intervals included
FLAGS = 1 | 2 | 4           # 1 coalesced, 2 gap, 4 damaged (seqs the log could not read)
WALL_Q_MAX = 3
NHEAD = 12                  # header fields of a batch before the dt column

KINDS = ("odometer", "gauge:min", "gauge:max", "gauge:mean", "gauge:last")

# SenML units (RFC 8428 section 12.1 and the secondary units of RFC 8798),
# and the few the devices send that no registry has (By, mg, lx.h).
UNITS = frozenset("""
m kg g s A K cd mol Hz rad sr N Pa J W C V F Ohm S Wb T H Cel lm lx Bq Gy Sv kat
m2 m3 l m/s m/s2 m3/s l/s W/m2 cd/m2 bit bit/s lat lon pH dB dBW Bspl count / %
%RH %EL EL 1/s 1/min beat/min beats S/m B VA VAs var vars J/m kg/m3 deg
ms min h MHz kW kVA kvar Ah Wh kWh varh kvarh kVAh Wh/km KiB GB Mbit/s B/s MB/s
mV mA dBm ug/m3 mm/h m/h ppm /100 /1000 hPa mm cm km km/h
By mg lx.h lx.s
""".split())


_HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")   # control, format, separators, unassigned


class Invalid(ValueError):
    """A message that does not pass; str() names the field, boundedly. cls is
    the collector's reason class for it."""

    def __init__(self, msg, cls="malformed"):
        ValueError.__init__(self, msg)
        self.cls = cls


def _no_tag(decoder, tag=None):
    raise cbor2.CBORDecodeError("a CBOR tag, which no Tally message holds")


# cbor2 decodes the tags it knows (bignums, decimals, bigfloats, regular
# expressions, MIME messages, sets, shared references ...) as it reads them,
# which costs up to seconds for a 60 KB argument. No Tally payload holds a
# tag, so every tag is refused as it is met, before anything is built from it.
_NO_TAGS = dict.fromkeys(range(1 << 16), _no_tag)


def loads(payload):
    """A verified payload decoded at the boundary: no tags, no indefinite
    lengths, no key twice, nesting at most 16 deep. Raises Invalid."""
    try:
        return cbor2.loads(payload, tag_hook=_no_tag, semantic_decoders=_NO_TAGS, max_depth=16,
                           allow_indefinite=False, allow_duplicate_keys=False)
    except Exception as e:       # cbor2 raises several types on hostile input
        raise Invalid("not CBOR (%s: %s)" % (type(e).__name__[:40], clean(str(e), 60)))


def clean(s, n=80):
    """Text for an error line: printable ASCII only, at most n characters."""
    s = "".join(c if " " <= c <= "~" else "?" for c in str(s)[:n + 1])
    return s if len(s) <= n else s[:n - 3] + "..."


def show(v, n=40):
    """A printable, bounded description of any value, for an error line."""
    if type(v) is str:
        s = "".join(c if " " <= c <= "~" else "?" for c in v[:n])
        return "'%s'%s" % (s, "..." if len(v) > n else "")
    if type(v) is int:
        if -I64 <= v < I64:
            return str(v)
        return "an integer of %d bits" % v.bit_length()
    if type(v) is bool or v is None:
        return str(v)
    if type(v) in (list, dict, bytes):
        return "a %s of %d" % (type(v).__name__, len(v))
    return "a %s" % type(v).__name__[:n]


def _int(v, what, lo, hi):
    """v must be an int (not a bool) with lo <= v < hi."""
    if type(v) is not int:
        raise Invalid("%s is %s, not an integer" % (what, show(v)))
    if not lo <= v < hi:
        raise Invalid("%s %s is outside %d..%d" % (what, show(v), lo, hi - 1))
    return v


def _text(v, what, limit, free=False):
    """A text string of at most `limit` characters. Names and units may not
    hold control characters (C0, C1, DEL, and the invisible format and
    separator ones: bidi overrides, zero widths); free text (free=True) has
    them replaced by U+FFFD."""
    if type(v) is not str:
        raise Invalid("%s is %s, not text" % (what, show(v)))
    if len(v) > limit:
        raise Invalid("%s is %d characters, more than %d" % (what, len(v), limit))
    clean = "".join("\ufffd" if c < " " or unicodedata.category(c) in _HIDDEN else c for c in v)
    if clean != v and not free:
        raise Invalid("%s %s holds control characters" % (what, show(v)))
    return clean


def _name(v, what):
    _text(v, what, MAX_NAME)
    if not v or not (v[0].isalpha() or v[0] == "_") or not v.isascii() \
            or not all(c.isalnum() or c in "_.-" for c in v):
        raise Invalid("%s %s is not a name (a letter or _, then letters, digits, _ . -)"
                      % (what, show(v)))
    return v


def _map(obj, what):
    if type(obj) is not dict:
        raise Invalid("%s is %s, not a map" % (what, show(obj)))
    return obj


# -- birth --------------------------------------------------------------------------

def schema(metrics):
    """A schema as the birth sends it: 1..MAX_METRICS entries [name, unit,
    scale, kind], names unique. Returns it (the same object)."""
    if type(metrics) is not list:
        raise Invalid("schema is %s, not an array" % show(metrics))
    if not 0 < len(metrics) <= MAX_METRICS:
        raise Invalid("schema has %d metrics, not 1..%d" % (len(metrics), MAX_METRICS))
    names = set()
    for i, m in enumerate(metrics):
        what = "schema entry %d" % i
        if type(m) is not list or len(m) != 4:
            raise Invalid("%s is %s, not [name, unit, scale, kind]" % (what, show(m)))
        name, unit, scale, kind = m
        _name(name, what + " name")
        if name in names:
            raise Invalid("%s name %s appears twice" % (what, show(name)))
        names.add(name)
        _text(unit, what + " unit", MAX_NAME)
        if unit not in UNITS:
            raise Invalid("%s unit %s is not an allowed unit" % (what, show(unit)))
        _int(scale, what + " scale", SCALE_MIN, SCALE_MAX + 1)
        if type(kind) is not str or kind not in KINDS:
            raise Invalid("%s kind %s is not one of %s" % (what, show(kind), "/".join(KINDS)))
    return metrics


def schema_id(metrics):
    """The id a schema must carry (docs/wire.md): the first 4 bytes, big
    endian, of SHA-256 over its deterministic CBOR encoding (agent.cbor, as
    the device computes it in agent.meter.schema_hash)."""
    return int.from_bytes(hashlib.sha256(cbor.dumps(metrics)).digest()[:4], "big")


def birth(b, device):
    """A birth for `device` (its topic's id). Returns a dict of the fields the
    collector uses, each checked: device, schema_id, schema, and when
    present v, boot, epoch, seq0, wall_q, ival_ms, config, fw, board, reason
    (free text: control characters replaced). Keys not listed are ignored."""
    _map(b, "birth")
    if type(b.get("v")) is not int or b["v"] != 1:
        raise Invalid("birth v is %s, not 1" % show(b.get("v")))
    if type(b.get("device")) is not str or b["device"] != device:
        raise Invalid("birth says %s on %s's topic" % (show(b.get("device")), show(device)),
                      "topic/device mismatch")
    out = {"device": device, "schema_id": _int(b.get("schema_id"), "birth schema_id", 0, U32),
           "schema": schema(b.get("schema"))}
    for k, lo, hi in (("boot", 0, U32), ("epoch", 0, U32), ("seq0", 0, I64), ("wall_q", 0, WALL_Q_MAX + 1),
                      ("ival_ms", 0, MAX_IVAL_MS + 1), ("config", 0, I64)):
        if k in b:
            out[k] = _int(b[k], "birth " + k, lo, hi)
    for k in ("fw", "board", "reason"):
        if k in b:
            out[k] = _text(b[k], "birth " + k, MAX_TEXT, free=True)
    if "parts" in b:
        out["parts"] = birth_parts(b["parts"])
    return out


# -- component identity (agent/parts.py, docs/wire.md "Component events") -----------

MAX_SLOTS = 16              # slots in a birth's parts map
MAX_EVENTS = 64             # component events in one batch's ext
MAX_ODO = 64                # odometers in one event's snapshot
EVENT_KINDS = ("installed", "removed")


def _component(v, what):
    """A component id: lowercase <chip>-<serial> (letters, digits, - . _ :)."""
    _text(v, what, MAX_NAME)
    if not v or not v.isascii() or v != v.lower() or "-" not in v \
            or not all(c.isalnum() or c in "-._:" for c in v):
        raise Invalid("%s %s is not a component id (lowercase <chip>-<serial>)" % (what, show(v)))
    return v


def _slot(v, what):
    """A slot name: a letter, then letters, digits and _ . - @ : /."""
    _text(v, what, MAX_NAME)
    if not v or not v[0].isalpha() or not v.isascii() or not all(c.isalnum() or c in "_.-@:/" for c in v):
        raise Invalid("%s %s is not a slot name" % (what, show(v)))
    return v


def birth_parts(m):
    """A birth's "parts": {slot: component id}, at most MAX_SLOTS."""
    _map(m, "birth parts")
    if len(m) > MAX_SLOTS:
        raise Invalid("birth parts has %d slots, more than %d" % (len(m), MAX_SLOTS))
    for k, v in m.items():
        _slot(k, "birth parts slot")
        _component(v, "birth parts component")
    return dict(m)


def ext(e):
    """A batch's trailing ext map: integer keys (1 stress histograms, 2
    component events, 3+ reserved), at most 8."""
    _map(e, "batch ext")
    if not e or len(e) > 8:
        raise Invalid("batch ext has %d keys, not 1..8" % len(e))
    for k in e:
        _int(k, "batch ext key", 1, 256)
    return e


def part_events(evs, lo, hi):
    """ext key 2: a list of [seq, idx, kind, slot, component, wall_s,
    {odometer: value}, detail], each seq within the batch's lo..hi, (seq,
    idx) unique. Returns them as dicts."""
    if type(evs) is not list or not 0 < len(evs) <= MAX_EVENTS:
        raise Invalid("batch part events is %s, not a list of 1..%d" % (show(evs), MAX_EVENTS))
    out = []
    seen = set()
    for ev in evs:
        if type(ev) is not list or len(ev) != 8:
            raise Invalid("part event is %s, not an array of 8" % show(ev))
        seq = _int(ev[0], "part event seq", lo, hi + 1)
        idx = _int(ev[1], "part event idx", 0, 256)
        if (seq, idx) in seen:
            raise Invalid("part event %d/%d appears twice" % (seq, idx))
        seen.add((seq, idx))
        if ev[2] not in EVENT_KINDS:
            raise Invalid("part event kind %s is not installed or removed" % show(ev[2]))
        odo = _map(ev[6], "part event odometers")
        if len(odo) > MAX_ODO:
            raise Invalid("part event has %d odometers, more than %d" % (len(odo), MAX_ODO))
        for k, v in odo.items():
            _name(k, "part event odometer")
            _int(v, "part event odometer " + k, -I64, I64)
        out.append({"seq": seq, "idx": idx, "kind": ev[2], "slot": _slot(ev[3], "part event slot"),
                    "component": _component(ev[4], "part event component"),
                    "wall_s": _int(ev[5], "part event wall_s", 0, MAX_WALL_S + 1),
                    "odometers": odo, "detail": _text(ev[7], "part event detail", MAX_TEXT, free=True)})
    return out


# -- death, cfgack ------------------------------------------------------------------

def death(d):
    """{"v": 1, "boot", "epoch"}: a map; the fields present in range."""
    _map(d, "death")
    if "v" in d and (type(d["v"]) is not int or d["v"] != 1):
        raise Invalid("death v is %s, not 1" % show(d["v"]))
    for k in ("boot", "epoch"):
        if k in d:
            _int(d[k], "death " + k, 0, U32)
    return d


def cfgack(a):
    """{"v": 1, "version", "ok", "active", ? "reason"}. Returns (version, ok,
    active, reason) with reason's control characters replaced."""
    _map(a, "cfgack")
    if "v" in a and (type(a["v"]) is not int or a["v"] != 1):
        raise Invalid("cfgack v is %s, not 1" % show(a["v"]))
    version = _int(a.get("version"), "cfgack version", 0, V_END)
    active = _int(a.get("active"), "cfgack active", 0, V_END)
    ok = a.get("ok")
    if type(ok) is not bool:
        raise Invalid("cfgack ok is %s, not a bool" % show(ok))
    reason = _text(a.get("reason", ""), "cfgack reason", MAX_REASON, free=True)
    return version, ok, active, reason


# -- data ---------------------------------------------------------------------------

def ack_range(obj):
    """(epoch, first seq, last seq) of a batch whose header can at least be
    read that far, else None: what an ack of it would say."""
    if type(obj) is not list or len(obj) < NHEAD:
        return None
    epoch, seq, n = obj[2], obj[3], obj[11]
    if type(epoch) is not int or type(seq) is not int or type(n) is not int:
        return None
    if not (0 <= epoch < U32 and 0 < seq < I64 and 0 < n <= MAX_RECORDS and seq + n <= I64):
        return None
    return epoch, seq, seq + n - 1


def _column(col, n, what, version=1):
    """A column's form against the record count n, in O(its size): values are
    ints in the 64-bit range (their running sums are checked when expanded).
    Returns the metric column a version-2 reference column adds to, else None."""
    if type(col) is int:
        if col != 0:
            raise Invalid("%s is %s, not 0 or a column" % (what, show(col)))
        return None
    if type(col) is dict:
        if len(col) > n:
            raise Invalid("%s has %d sparse entries for %d records" % (what, len(col), n))
        for k, v in col.items():
            _int(k, what + " index", 0, n)
            _int(v, what + " value", -CBOR_INT, CBOR_INT)
        return None
    if type(col) is not list:
        raise Invalid("%s is %s, not a column" % (what, show(col)))
    if version >= 2 and len(col) == 2 and type(col[0]) is list:
        if len(col[0]) != 1:
            raise Invalid("%s is a reference of %s, not [k]" % (what, show(col[0])))
        k = _int(col[0][0], what + " reference", 0, MAX_METRICS)
        if type(col[1]) is list and len(col[1]) == 2 and type(col[1][0]) is list:
            raise Invalid("%s is a reference to a reference" % what)
        _column(col[1], n, what, version)
        return k
    if len(col) == n:
        vals = col
    elif len(col) == 2 and n > 2:
        vals = col
    elif len(col) == 3 and n > 3 and type(col[2]) is list and len(col[2]) == n - 2:
        vals = col[:2] + col[2]
    elif version >= 2 and len(col) == 3 and n > 3 and type(col[2]) is dict:
        if len(col[2]) > n - 2:
            raise Invalid("%s has %d second differences for %d records" % (what, len(col[2]), n))
        for k, v in col[2].items():
            _int(k, what + " index", 2, n)
            _int(v, what + " value", -CBOR_INT, CBOR_INT)
        vals = col[:2]
    else:
        raise Invalid("%s has %d items, no column form for %d records" % (what, len(col), n))
    for v in vals:
        _int(v, what + " value", -CBOR_INT, CBOR_INT)
    return None


def data(obj):
    """A data batch, before its schema is looked up and before any column is
    expanded. Returns the header as a dict (schema_id, epoch, seq, count,
    columns: the number of metric columns)."""
    if type(obj) is not list:
        raise Invalid("batch is %s, not an array" % show(obj))
    if len(obj) < NHEAD + 1:
        raise Invalid("batch has %d items, fewer than %d" % (len(obj), NHEAD + 1))
    ncols = len(obj) - NHEAD - 1
    if ncols > MAX_METRICS:
        raise Invalid("batch has %d columns, more than %d" % (ncols, MAX_METRICS))
    if type(obj[0]) is not int or obj[0] not in (1, 2):
        raise Invalid("batch version is %s, not 1 or 2" % show(obj[0]))
    ver = obj[0]
    sid = _int(obj[1], "batch schema_id", 0, U32)
    epoch = _int(obj[2], "batch epoch", 0, U32)
    seq = _int(obj[3], "batch seq", 1, I64)
    frm = _int(obj[4], "batch from_seq", 0, seq + 1)
    if seq - frm >= MAX_SPAN:
        raise Invalid("batch first record covers %d intervals, more than %d" % (seq - frm + 1, MAX_SPAN))
    flags = _int(obj[5], "batch flags", 0, 8)
    if flags & ~FLAGS:
        raise Invalid("batch flags %d has unknown bits" % flags)
    _int(obj[6], "batch boot", 0, U32)
    _int(obj[7], "batch uptime_ms", 0, I64)
    _int(obj[8], "batch wall_s", 0, MAX_WALL_S + 1)
    _int(obj[9], "batch wall_q", 0, WALL_Q_MAX + 1)
    _int(obj[10], "batch ival_ms", 1, MAX_IVAL_MS + 1)
    n = _int(obj[11], "batch count", 1, MAX_RECORDS + 1)
    if seq + n > I64:
        raise Invalid("batch seqs run past 2^63")
    if n * (ncols + 1) > MAX_CELLS:
        raise Invalid("batch declares %d records of %d columns, more than %d values"
                      % (n, ncols + 1, MAX_CELLS))
    _column(obj[NHEAD], n, "batch dt column")
    refs = [_column(obj[NHEAD + 1 + j], n, "batch column %d" % j, ver) for j in range(ncols)]
    for j, k in enumerate(refs):
        if k is not None and (k >= ncols or k == j or refs[k] is not None):
            raise Invalid("batch column %d refers to column %d, which is not a plain column" % (j, k))
    return {"schema_id": sid, "epoch": epoch, "seq": seq, "count": n, "columns": ncols}


# -- stress histograms (agent/stress.py; docs/wire.md "Stress histograms") ---------

MAX_HISTS = 32              # histograms a device may define
MAX_BINS = 256              # bins of one histogram
HIST_KINDS = ("count", "level")


def _edges(e, what, depth=0):
    if type(e) is int:
        _int(e, what, -I64, I64)
        return
    if type(e) is not list or len(e) > MAX_BINS or depth > 1:
        raise Invalid("%s is %s, not numbers or lists of them" % (what, show(e)))
    for x in e:
        _edges(x, what, depth + 1)


def hist_birth(h):
    """The birth's "hist": {"v": version, "defs": [[name, kind, unit, scale,
    bins, edges, ref], ...]}. Returns (version, defs)."""
    _map(h, "birth hist")
    version = _int(h.get("v"), "birth hist v", 0, U32)
    defs = h.get("defs")
    if type(defs) is not list or not 0 < len(defs) <= MAX_HISTS:
        raise Invalid("birth hist defs is %s, not 1..%d definitions" % (show(defs), MAX_HISTS))
    names = set()
    for i, d in enumerate(defs):
        what = "birth hist def %d" % i
        if type(d) is not list or len(d) != 7:
            raise Invalid("%s is %s, not [name, kind, unit, scale, bins, edges, ref]" % (what, show(d)))
        name, kind, unit, scale, bins, edges, ref = d
        _name(name, what + " name")
        if name in names:
            raise Invalid("%s name %s appears twice" % (what, show(name)))
        names.add(name)
        if type(kind) is not str or kind not in HIST_KINDS:
            raise Invalid("%s kind %s is not count or level" % (what, show(kind)))
        _text(unit, what + " unit", MAX_NAME)
        _int(scale, what + " scale", SCALE_MIN, SCALE_MAX + 1)
        _int(bins, what + " bins", 1, MAX_BINS + 1)
        _edges(edges, what + " edges")
        _int(ref, what + " ref", 0, I64)
    if schema_id(defs) != version:
        raise Invalid("birth hist v %s is not the hash of its defs" % show(version))
    return version, defs


def hist_ext(v, first, last):
    """ext key 1 of a batch of seqs first..last: [version, seq, base seq,
    {index: [counts] or {bin: count}}], seq among the batch's and base below
    it (0: a full snapshot). Shape and ranges only; the bins against the
    definitions are checked by agent.collector.stress. Returns the four."""
    if type(v) is not list or len(v) != 4:
        raise Invalid("hist is %s, not [version, seq, base, counts]" % show(v))
    version = _int(v[0], "hist version", 0, U32)
    seq = _int(v[1], "hist seq", first, last + 1)
    base = _int(v[2], "hist base", 0, seq)
    hists = _map(v[3], "hist counts")
    if len(hists) > MAX_HISTS:
        raise Invalid("hist counts has %d histograms, more than %d" % (len(hists), MAX_HISTS))
    for k, c in hists.items():
        _int(k, "hist index", 0, MAX_HISTS)
        what = "hist %d" % k
        if type(c) is list:
            if not 0 < len(c) <= MAX_BINS:
                raise Invalid("%s has %d counts" % (what, len(c)))
            for x in c:
                _int(x, what + " count", 0, U32)
        elif type(c) is dict:
            if not 0 < len(c) <= MAX_BINS:
                raise Invalid("%s has %d entries" % (what, len(c)))
            for b, x in c.items():
                _int(b, what + " bin", 0, MAX_BINS)
                _int(x, what + " count", 0, U32)
        else:
            raise Invalid("%s is %s, not counts" % (what, show(c)))
    return version, seq, base, hists
