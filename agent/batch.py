# Data batches on the wire (foundation format, version 1; issue 4 refines it).
#
# A batch is one CBOR array:
#   [ver, schema_id, epoch, seq, from_seq, flags, boot, uptime_ms, wall_s,
#    wall_q, ival_ms, count, dt, col_0, ..., col_{m-1}]
# Records in a batch are uniform: same epoch, schema, boot and interval,
# contiguous seqs. Only the first record may be coalesced or gap-flagged
# (from_seq < seq); such a record therefore always starts a batch.
# `dt` is the column of uptime jitter: uptime_i - uptime_{i-1} - ival_ms for
# i >= 1 (the first uptime is in the header). Every column is
# [first value, delta, delta, ...]; a column whose values are all zero is 0.
# Integers only.

from agent import cbor
from agent.log import (R_SEQ, R_FROM, R_FLAGS, R_EPOCH, R_SCHEMA, R_BOOT,
                       R_UPTIME, R_WALL, R_WALLQ, R_IVAL, R_VALUES)

VERSION = 1
_NHEAD = 12


def _column(buf, recs, j):
    """Append column j (values of recs, or uptime jitter when j < 0) to buf
    without building an intermediate list: all zero -> 0, else first value
    then deltas."""
    n = len(recs)
    if j < 0:
        ival = recs[0][R_IVAL]
        zero = True
        for i in range(1, n):
            if recs[i][R_UPTIME] - recs[i - 1][R_UPTIME] != ival:
                zero = False
                break
        if zero:
            buf.append(0)
            return
        cbor._head(buf, 4, n)
        buf.append(0)
        prev = 0
        for i in range(1, n):
            d = recs[i][R_UPTIME] - recs[i - 1][R_UPTIME] - ival
            cbor.encode_into(buf, d - prev)
            prev = d
        return
    for r in recs:
        if r[R_VALUES][j]:
            break
    else:
        buf.append(0)
        return
    cbor._head(buf, 4, n)
    prev = 0
    for r in recs:
        v = r[R_VALUES][j]
        cbor.encode_into(buf, v - prev)
        prev = v


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


def encode(recs):
    """Encode a uniform run (from take_run) as a batch; returns bytes."""
    a = recs[0]
    m = len(a[R_VALUES])
    buf = bytearray()
    cbor._head(buf, 4, _NHEAD + 1 + m)
    for v in (VERSION, a[R_SCHEMA], a[R_EPOCH], a[R_SEQ], a[R_FROM], a[R_FLAGS], a[R_BOOT],
              a[R_UPTIME], a[R_WALL], a[R_WALLQ], a[R_IVAL], len(recs)):
        cbor.encode_into(buf, v)
    _column(buf, recs, -1)
    for j in range(m):
        _column(buf, recs, j)
    return bytes(buf)


class BatchError(ValueError):
    pass


I64 = 1 << 63     # every value must fit a signed 64-bit integer (ledgers store int64)


def _expand(col, n, what):
    if col == 0:
        return [0] * n
    if not isinstance(col, list) or len(col) != n:
        raise BatchError("batch: column %s has the wrong length" % what)
    out = []
    acc = 0
    for i, v in enumerate(col):
        if not isinstance(v, int) or isinstance(v, bool):
            raise BatchError("batch: column %s holds a non-integer" % what)
        acc = v if i == 0 else acc + v
        if not -I64 <= acc < I64:
            raise BatchError("batch: column %s leaves the 64-bit range" % what)
        out.append(acc)
    return out


def decode(obj, max_count=10000):
    """Expand a decoded batch (the CBOR array as Python lists) to records:
    a list of dicts with seq, from_seq, flags, epoch, schema_id, boot,
    uptime_ms, wall_s, wall_q, ival_ms, values. Raises BatchError."""
    if not isinstance(obj, list) or len(obj) < _NHEAD + 1:
        raise BatchError("batch: not a batch array")
    if obj[0] != VERSION:
        raise BatchError("batch: unknown version %r" % (obj[0],))
    for i in range(_NHEAD):
        v = obj[i]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= I64:
            raise BatchError("batch: header field %d is not a valid integer" % i)
    (_, schema, epoch, seq, from_seq, flags, boot, up0, wall0, wq, ival, n) = obj[:_NHEAD]
    if not 0 < n <= max_count:
        raise BatchError("batch: count %d out of range" % n)
    if from_seq > seq or seq == 0 or seq + n >= I64:
        raise BatchError("batch: bad seq range %d..%d" % (from_seq, seq))
    dts = _expand(obj[_NHEAD], n, "dt")
    cols = [_expand(c, n, str(j)) for j, c in enumerate(obj[_NHEAD + 1:])]
    recs = []
    up = up0
    for i in range(n):
        if i:
            up += ival + dts[i]
        s = seq + i
        recs.append({
            "seq": s, "from_seq": from_seq if i == 0 else s, "flags": flags if i == 0 else 0,
            "epoch": epoch, "schema_id": schema, "boot": boot, "uptime_ms": up,
            "wall_s": (wall0 + (up - up0) // 1000) if wall0 else 0, "wall_q": wq,
            "ival_ms": ival, "values": [c[i] for c in cols],
        })
    return recs
