# Data batches on the wire (foundation format, version 1; issue 4 refines it).
#
# A batch is one CBOR array:
#   [ver, schema_id, epoch, seq, from_seq, flags, boot, uptime_ms, wall_s,
#    wall_q, ival_ms, count, dt, col_0, ..., col_{m-1}]
# Records in a batch are uniform: same epoch, schema, boot and interval,
# contiguous seqs. Only the first record may be coalesced or gap-flagged
# (from_seq < seq); such a record therefore always starts a batch.
# `dt` is the column of uptime jitter: uptime_i - uptime_{i-1} - ival_ms for
# i >= 1 (the first uptime is in the header). Integers only. Each column
# takes the smallest of these forms, told apart by their shape:
#   0                          every value is zero
#   [v0, d1, ..., d(n-1)]      first value, then deltas (n items)
#   [v0, d]                    constant step: v_i = v0 + i*d (n > 2)
#   [v0, d1, [dd2..dd(n-1)]]   first value, first delta, second differences (n > 3)
#   {0: v0, i: d_i, ...}       sparse deltas: the deltas not listed are zero

from agent import cbor
try:
    from itertools import accumulate
except ImportError:                 # MicroPython: the device only encodes, but keep it importable
    def accumulate(xs):
        acc = None
        out = []
        for x in xs:
            acc = x if acc is None else acc + x
            out.append(acc)
        return out
from agent.log import (R_SEQ, R_FROM, R_FLAGS, R_EPOCH, R_SCHEMA, R_BOOT,
                       R_UPTIME, R_WALL, R_WALLQ, R_IVAL, R_VALUES)

VERSION = 1
_NHEAD = 12


def _isize(v):
    """Bytes CBOR takes for the integer v."""
    if v < 0:
        v = -1 - v
    if v < 24:
        return 1
    if v < 0x100:
        return 2
    if v < 0x10000:
        return 3
    if v < 0x100000000:
        return 5
    return 9


def _hsize(n):
    return _isize(n)      # an array or map head takes what an integer n takes


def _column(buf, vals):
    """Append one column in the smallest of its forms (see the module doc)."""
    n = len(vals)
    v0 = vals[0]
    allzero = v0 == 0
    d_prev = 0
    same = True
    size_d = _hsize(n) + _isize(v0)                 # first value then deltas
    size_dd = _hsize(3) + _isize(v0) + _hsize(n - 2)  # first, first delta, second differences
    size_sp = _hsize(1) + 1 + _isize(v0)            # {0: first, i: delta, ...}
    nz = 1
    for i in range(1, n):
        d = vals[i] - vals[i - 1]
        if d:
            allzero = False
            nz += 1
            size_sp += _isize(i) + _isize(d)
        size_d += _isize(d)
        if i == 1:
            d1 = d
            size_dd += _isize(d)
        else:
            size_dd += _isize(d - d_prev)
            if d != d1:
                same = False
        d_prev = d
    if allzero:
        buf.append(0)
        return
    size_sp += _hsize(nz) - _hsize(1)
    if n > 2 and same:
        cbor._head(buf, 4, 2)                       # constant step
        cbor.encode_into(buf, v0)
        cbor.encode_into(buf, vals[1] - v0)
        return
    best = size_d
    if n > 3 and size_dd < best:                    # at n == 3 it would read as deltas
        best = size_dd
    if size_sp < best:
        cbor._head(buf, 5, nz)                      # sparse: index -> delta
        buf.append(0)
        cbor.encode_into(buf, v0)
        for i in range(1, n):
            d = vals[i] - vals[i - 1]
            if d:
                cbor.encode_into(buf, i)
                cbor.encode_into(buf, d)
        return
    if best == size_dd and n > 3 and size_dd < size_d:
        cbor._head(buf, 4, 3)                       # second differences
        cbor.encode_into(buf, v0)
        cbor.encode_into(buf, vals[1] - v0)
        cbor._head(buf, 4, n - 2)
        for i in range(2, n):
            cbor.encode_into(buf, (vals[i] - vals[i - 1]) - (vals[i - 1] - vals[i - 2]))
        return
    cbor._head(buf, 4, n)                           # first value then deltas
    cbor.encode_into(buf, v0)
    for i in range(1, n):
        cbor.encode_into(buf, vals[i] - vals[i - 1])


def take_run(recs, limit=60):
    """The longest prefix of recs (oldest first) that fits in one batch."""
    if not recs:
        return recs
    a = recs[0]
    n = 1
    while n < len(recs) and n < limit:
        r = recs[n]
        p = recs[n - 1]
        if (r[R_EPOCH] != a[R_EPOCH] or r[R_SCHEMA] != a[R_SCHEMA] or r[R_BOOT] != a[R_BOOT]
                or r[R_IVAL] != a[R_IVAL] or r[R_FROM] != p[R_SEQ] + 1 or r[R_FROM] != r[R_SEQ]
                or r[R_FLAGS]):
            break
        n += 1
    return recs[:n]


def encode(recs, ext=None):
    """Encode a uniform run (from take_run) as a batch; returns bytes. ext:
    [(key, encoded value), ...] in key order, sent as the one trailing map
    after the columns (docs/wire.md); None or empty: no map, the batch as
    before."""
    a = recs[0]
    m = len(a[R_VALUES])
    buf = bytearray()
    cbor._head(buf, 4, _NHEAD + 1 + m + (1 if ext else 0))
    for v in (VERSION, a[R_SCHEMA], a[R_EPOCH], a[R_SEQ], a[R_FROM], a[R_FLAGS], a[R_BOOT],
              a[R_UPTIME], a[R_WALL], a[R_WALLQ], a[R_IVAL], len(recs)):
        cbor.encode_into(buf, v)
    n = len(recs)
    col = [0] * n                                   # one column at a time, reused
    ival = a[R_IVAL]
    for i in range(1, n):
        col[i] = recs[i][R_UPTIME] - recs[i - 1][R_UPTIME] - ival
    _column(buf, col)
    for j in range(m):
        for i in range(n):
            col[i] = recs[i][R_VALUES][j]
        _column(buf, col)
    if ext:
        cbor._head(buf, 5, len(ext))
        for k, v in ext:
            cbor.encode_into(buf, k)
            buf.extend(v)
    return bytes(buf)


def split_ext(obj, ncols):
    """(batch without its ext map, the ext map or None) for a decoded batch
    of a schema of ncols metrics: the columns end where the schema says."""
    if type(obj) is list and len(obj) == _NHEAD + 2 + ncols and type(obj[-1]) is dict:
        return obj[:-1], obj[-1]
    return obj, None


class BatchError(ValueError):
    pass


I64 = 1 << 63     # every value must fit a signed 64-bit integer (ledgers store int64)
_CBOR_INT = 1 << 64   # a column item (a delta of int64 values may need 64 bits and a sign)
MAX_COUNT = 1024      # records a batch may declare (docs/wire.md, Limits)
MAX_CELLS = 65536     # records x (metrics + 1) a batch may expand to
MAX_WALL_S = (1 << 32) - 1


def _ints(vals, what):
    for v in vals:
        if type(v) is not int:          # bool is not int here, by design
            raise BatchError("batch: column %s holds a non-integer" % what)
        if not -_CBOR_INT <= v < _CBOR_INT:
            raise BatchError("batch: column %s holds an integer past 64 bits" % what)
    return vals


def _check(col, n, what):
    """The column's form against n records, in O(its size), before expanding."""
    if type(col) is int and col == 0:
        return
    if type(col) is dict:
        if len(col) > n:
            raise BatchError("batch: column %s has more entries than records" % what)
        for k in col:
            if type(k) is not int or not 0 <= k < n:
                raise BatchError("batch: column %s has a bad index" % what)
        _ints(col.values(), what)
    elif type(col) is not list:
        raise BatchError("batch: column %s is not a column" % what)
    elif len(col) == n or (len(col) == 2 and n > 2):
        _ints(col, what)
    elif len(col) == 3 and n > 3 and type(col[2]) is list and len(col[2]) == n - 2:
        _ints(col[:2], what)
        _ints(col[2], what)
    else:
        raise BatchError("batch: column %s has the wrong length" % what)


def _expand(col, n, what, checked=False):
    """Values of one column, whatever its form (checked first unless it was)."""
    if not checked:
        _check(col, n, what)
    if type(col) is int:
        return [0] * n
    if type(col) is dict:                           # sparse: index -> delta
        d = [0] * n
        for k, v in col.items():
            d[k] = v
    elif len(col) == n:                             # first value then deltas
        d = col
    elif len(col) == 2:                             # constant step
        d = [col[0]] + [col[1]] * (n - 1)
    else:                                           # second differences
        d = [col[0]] + list(accumulate([col[1]] + col[2]))
    out = list(accumulate(d))
    if out and (min(out) < -I64 or max(out) >= I64):
        raise BatchError("batch: column %s leaves the 64-bit range" % what)
    return out


def decode(obj, max_count=MAX_COUNT, max_cells=MAX_CELLS, checked=False):
    """Expand a decoded batch (the CBOR array as Python lists) to records:
    a list of dicts with seq, from_seq, flags, epoch, schema_id, boot,
    uptime_ms, wall_s, wall_q, ival_ms, values. Every column's form is
    checked before any is expanded, and records x columns is bounded, so
    the cost is bounded by the message's size. checked=True: the columns'
    forms were checked already (agent.collector.validate.data does).
    Raises BatchError."""
    if type(obj) is not list or len(obj) < _NHEAD + 1:
        raise BatchError("batch: not a batch array")
    if type(obj[0]) is not int or obj[0] != VERSION:
        raise BatchError("batch: unknown version")
    for i in range(_NHEAD):
        v = obj[i]
        if type(v) is not int or v < 0 or v >= I64:
            raise BatchError("batch: header field %d is not a valid integer" % i)
    (_, schema, epoch, seq, from_seq, flags, boot, up0, wall0, wq, ival, n) = obj[:_NHEAD]
    if not 0 < n <= max_count:
        raise BatchError("batch: count %d out of range" % n)
    if from_seq > seq or seq == 0 or seq + n > I64:
        raise BatchError("batch: bad seq range %d..%d" % (from_seq, seq))
    ncols = len(obj) - _NHEAD - 1
    if n * (ncols + 1) > max_cells:
        raise BatchError("batch: %d records of %d columns is more than %d values"
                         % (n, ncols + 1, max_cells))
    if not checked:
        for j in range(ncols + 1):                  # all forms first: nothing expanded yet
            _check(obj[_NHEAD + j], n, "dt" if j == 0 else str(j - 1))
    dts = _expand(obj[_NHEAD], n, "dt", True)
    ups = [up0] * n
    for i in range(1, n):
        ups[i] = ups[i - 1] + ival + dts[i]
        if not 0 <= ups[i] < I64:
            raise BatchError("batch: uptime leaves 0..2^63-1")
    span0 = seq - from_seq + 1
    if wall0 and wall0 + ((ups[-1] - up0) + (span0 + n) * ival) // 1000 > MAX_WALL_S:
        raise BatchError("batch: wall time runs past 2^32 s")
    cols = [_expand(c, n, str(j), True) for j, c in enumerate(obj[_NHEAD + 1:])]
    recs = []
    for i in range(n):
        s = seq + i
        up = ups[i]
        recs.append({
            "seq": s, "from_seq": from_seq if i == 0 else s, "flags": flags if i == 0 else 0,
            "epoch": epoch, "schema_id": schema, "boot": boot, "uptime_ms": up,
            "wall_s": (wall0 + (up - up0) // 1000) if wall0 else 0, "wall_q": wq,
            "ival_ms": ival, "values": [c[i] for c in cols],
        })
    return recs
