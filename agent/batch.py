# Data batches on the wire (format version 2; version 1 batches still decode).
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
# and, from version 2 on:
#   [v0, d1, {i: dd_i, ...}]   sparse second differences (n > 3): the ones not
#                              listed are zero (a counter at a steady rate
#                              that resets, run time while running)
#   [[k], column]              column k plus this column, in any form above:
#                              metric column k (not dt) is an earlier one of
#                              the same unit and scale, itself not a reference
#                              (min/max/mean of one gauge, a meter register
#                              beside its odometer)
# The encoder writes version 2; given the schema, it tries a reference only
# to the nearest earlier column of the same unit and scale written plain.
# After the columns ONE optional map `ext` may follow (the reader knows where
# the columns end from the schema's length; split_ext): key 1 stress
# histograms, key 2 component events (agent/log.py E_* lists whose seq lies
# in the batch's range, docs/wire.md). A batch without ext is unchanged.

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

VERSION = 2
VERSIONS = (1, 2)                   # what decode() reads
_NHEAD = 12

# column forms (the encoder's plan)
F_ZERO = 0
F_STEP = 1
F_DELTA = 2
F_DD = 3
F_SPARSE = 4
F_SPDD = 5


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


def _plan(vals, n):
    """The smallest form for the first n of vals and its size in bytes, as
    one int: size << 3 | form (no tuple: nothing allocated per column)."""
    v0 = vals[0]
    allzero = v0 == 0
    d_prev = 0
    d1 = 0
    same = True
    size_d = _hsize(n) + _isize(v0)                 # first value then deltas
    size_dd = _hsize(3) + _isize(v0) + _hsize(n - 2)  # first, first delta, second differences
    size_sp = 1 + _isize(v0)                        # {0: first, i: delta, ...}, head added below
    size_sd = _isize(v0)                            # [first, first delta, {i: dd}], heads below
    nz = 1
    nzd = 0
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
            size_sd += _isize(d)
        else:
            dd = d - d_prev
            size_dd += _isize(dd)
            if dd:
                nzd += 1
                size_sd += _isize(i) + _isize(dd)
            if d != d1:
                same = False
        d_prev = d
    if allzero:
        return 1 << 3 | F_ZERO
    if n > 2 and same:
        return (1 + _isize(v0) + _isize(d1)) << 3 | F_STEP
    size_sp += _hsize(nz)
    size_sd += _hsize(3) + _hsize(nzd)
    form, best = F_DELTA, size_d
    if n > 3 and size_dd < best:                    # at n == 3 it would read as deltas
        form, best = F_DD, size_dd
    if size_sp < best:
        form, best = F_SPARSE, size_sp
    if n > 3 and size_sd < best:
        form, best = F_SPDD, size_sd
    return best << 3 | form


def _write(buf, vals, n, form):
    """Append the first n of vals as a column of the given form."""
    enc = cbor.encode_into
    if form == F_ZERO:
        buf.append(0)
        return
    v0 = vals[0]
    if form == F_STEP:
        cbor._head(buf, 4, 2)
        enc(buf, v0)
        enc(buf, vals[1] - v0)
        return
    if form == F_SPARSE:
        nz = 1
        for i in range(1, n):
            if vals[i] != vals[i - 1]:
                nz += 1
        cbor._head(buf, 5, nz)                      # index -> delta
        buf.append(0)
        enc(buf, v0)
        for i in range(1, n):
            d = vals[i] - vals[i - 1]
            if d:
                enc(buf, i)
                enc(buf, d)
        return
    if form == F_DD or form == F_SPDD:
        cbor._head(buf, 4, 3)
        enc(buf, v0)
        enc(buf, vals[1] - v0)
        if form == F_DD:
            cbor._head(buf, 4, n - 2)
            for i in range(2, n):
                enc(buf, (vals[i] - vals[i - 1]) - (vals[i - 1] - vals[i - 2]))
            return
        nz = 0
        for i in range(2, n):
            if vals[i] - vals[i - 1] != vals[i - 1] - vals[i - 2]:
                nz += 1
        cbor._head(buf, 5, nz)                      # index -> second difference
        for i in range(2, n):
            dd = (vals[i] - vals[i - 1]) - (vals[i - 1] - vals[i - 2])
            if dd:
                enc(buf, i)
                enc(buf, dd)
        return
    cbor._head(buf, 4, n)                           # first value then deltas
    enc(buf, v0)
    for i in range(1, n):
        enc(buf, vals[i] - vals[i - 1])


def _column(buf, vals):
    """Append one column in the smallest of its plain forms."""
    n = len(vals)
    _write(buf, vals, n, _plan(vals, n) & 7)


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


def encode(recs, schema=None, ext=None):
    """Encode a uniform run (from take_run) as a batch; returns bytes.
    schema: the meter's schema ((name, unit, scale, agg) per column), to
    allow references between columns of one unit and scale; None writes
    every column plain. ext: [(key, encoded value), ...] in key order, sent
    as the one trailing map after the columns (docs/wire.md: 1 stress
    histograms, 2 component events); None or empty: no map, the batch as
    before. Nothing is kept between calls."""
    return bytes(encode_into(bytearray(), recs, schema, ext))


def encode_into(buf, recs, schema=None, ext=None):
    """encode(), appended to the bytearray buf; returns buf. The uplink passes
    one buffer it keeps, emptied (buf[:] = b""), so a batch is not grown a few
    bytes at a time in a fresh buffer and then copied out on every send."""
    a = recs[0]
    m = len(a[R_VALUES])
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
    res = None
    if schema:
        res = [0] * n
        plain = bytearray(m)                        # 1: column j went out plain (a reference target)
    for j in range(m):
        for i in range(n):
            col[i] = recs[i][R_VALUES][j]
        p = _plan(col, n)
        form = p & 7
        if res is not None and p >> 3 > 2:
            unit = schema[j][1]
            scale = schema[j][2]
            k = j - 1
            while k >= 0 and not (plain[k] and schema[k][1] == unit and schema[k][2] == scale):
                k -= 1
            if k >= 0:
                for i in range(n):
                    res[i] = col[i] - recs[i][R_VALUES][k]
                rp = _plan(res, n)
                if 2 + _isize(k) + (rp >> 3) < p >> 3:
                    cbor._head(buf, 4, 2)
                    cbor._head(buf, 4, 1)
                    cbor.encode_into(buf, k)
                    _write(buf, res, n, rp & 7)
                    continue
        if res is not None:
            plain[j] = 1
        _write(buf, col, n, form)
    if ext:
        cbor._head(buf, 5, len(ext))
        for k, v in ext:
            cbor.encode_into(buf, k)
            buf.extend(v)
    return buf


def split_ext(obj, nmetrics):
    """(the batch without its ext map, ext or None), given the schema's
    metric count: a batch with one item more than its columns ends in ext."""
    if type(obj) is list and len(obj) == _NHEAD + 2 + nmetrics and type(obj[-1]) is dict:
        return obj[:-1], obj[-1]
    return obj, None


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


def _ref(col):
    """The metric column a version-2 reference column names, else None."""
    if type(col) is list and len(col) == 2 and type(col[0]) is list:
        if len(col[0]) != 1 or type(col[0][0]) is not int:
            raise BatchError("batch: a reference column's index is not [k]")
        return col[0][0]
    return None


def _check(col, n, what, version=1):
    """The column's form against n records, in O(its size), before expanding
    (a version-2 reference column: the column it adds to, checked here)."""
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
    elif version >= 2 and len(col) == 2 and type(col[0]) is list:
        _ref(col)
        if _ref(col[1]) is not None:
            raise BatchError("batch: column %s is a reference to a reference" % what)
        _check(col[1], n, what, version)
    elif len(col) == n or (len(col) == 2 and n > 2):
        _ints(col, what)
    elif len(col) == 3 and n > 3 and type(col[2]) is list and len(col[2]) == n - 2:
        _ints(col[:2], what)
        _ints(col[2], what)
    elif version >= 2 and len(col) == 3 and n > 3 and type(col[2]) is dict and len(col[2]) <= n - 2:
        _ints(col[:2], what)
        for k in col[2]:
            if type(k) is not int or not 2 <= k < n:
                raise BatchError("batch: column %s has a bad index" % what)
        _ints(col[2].values(), what)
    else:
        raise BatchError("batch: column %s has the wrong length" % what)


def _expand(col, n, what, checked=False, base=None):
    """Values of one column, whatever its form (checked first unless it
    was); base: the values of the column a reference adds to."""
    if not checked:
        _check(col, n, what, VERSION)
        if base is None and _ref(col) is not None:
            raise BatchError("batch: column %s is a reference with nothing to add to" % what)
    if base is not None:
        col = col[1]
    if type(col) is int:
        if base is None:
            return [0] * n
        d = [0] * n
    elif type(col) is dict:                         # sparse: index -> delta
        d = [0] * n
        for k, v in col.items():
            d[k] = v
    elif len(col) == n:                             # first value then deltas
        d = col
    elif len(col) == 2:                             # constant step
        d = [col[0]] + [col[1]] * (n - 1)
    elif type(col[2]) is dict:                      # sparse second differences
        dd = [0] * (n - 1)
        dd[0] = col[1]
        for k, v in col[2].items():
            dd[k - 1] = v
        d = [col[0]] + list(accumulate(dd))
    else:                                           # second differences
        d = [col[0]] + list(accumulate([col[1]] + col[2]))
    out = list(accumulate(d))
    if base is not None:
        out = [a + b for a, b in zip(out, base)]
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
    if type(obj[0]) is not int or obj[0] not in VERSIONS:
        raise BatchError("batch: unknown version")
    ver = obj[0]
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
            _check(obj[_NHEAD + j], n, "dt" if j == 0 else str(j - 1), ver if j else 1)
    refs = None                                     # metric column -> the column it adds to (v2)
    if ver >= 2:
        for j in range(ncols):
            k = _ref(obj[_NHEAD + 1 + j])
            if k is not None:
                if refs is None:
                    refs = {}
                refs[j] = k
    if refs:
        for j, k in refs.items():
            if not 0 <= k < ncols or k in refs:
                raise BatchError("batch: column %d refers to column %s, which is no plain column" % (j, k))
    dts = _expand(obj[_NHEAD], n, "dt", True)
    ups = [up0] * n
    for i in range(1, n):
        ups[i] = ups[i - 1] + ival + dts[i]
        if not 0 <= ups[i] < I64:
            raise BatchError("batch: uptime leaves 0..2^63-1")
    span0 = seq - from_seq + 1
    if wall0 and wall0 + ((ups[-1] - up0) + (span0 + n) * ival) // 1000 > MAX_WALL_S:
        raise BatchError("batch: wall time runs past 2^32 s")
    cols = [None if refs and j in refs else _expand(obj[_NHEAD + 1 + j], n, str(j), True)
            for j in range(ncols)]
    if refs:
        for j, k in refs.items():
            cols[j] = _expand(obj[_NHEAD + 1 + j], n, str(j), True, cols[k])
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
