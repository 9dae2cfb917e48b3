# The persistent ring log over a NOR-like block device. The format and the
# recovery rules are specified in docs/ring-format.md; read that first.
#
# Invariants kept (DESIGN section 3): a record whose append returned survives
# any power cut unless an ack or a coalesced/gap record covers it; the record
# being written is all or nothing (CRC programmed last); seq never goes back;
# the acked position never goes back; space is the device's, never more;
# recovery reads the sector headers and one sector, writes nothing and never
# raises on content; when full, intervals are coalesced before any is dropped.
# Portable: CPython and MicroPython.

import binascii
from array import array
from agent import cbor
from agent import port

T_EPOCH = 1
T_BOOT = 2
T_DATA = 3
T_ACK = 5
T_CONFIG = 6

# A DATA record (decoded payload), a list indexed by:
R_SEQ = 0       # seq of the last interval covered
R_FROM = 1      # seq of the first interval covered (== seq unless coalesced or gap)
R_FLAGS = 2     # F_COALESCED, F_GAP
R_EPOCH = 3
R_SCHEMA = 4
R_BOOT = 5
R_UPTIME = 6    # uptime_ms at the START of the covered span
R_WALL = 7      # wall-clock seconds at the start, 0 if unknown
R_WALLQ = 8     # wall-clock quality (agent.clock.WALL_*)
R_IVAL = 9      # nominal interval length in ms
R_VALUES = 10   # list of ints in schema order, at the END of the span

F_COALESCED = 1
F_GAP = 2

MAGIC = b"TLR1"
HDR = 32
COMP_START = 56     # records of a compacted sector start here (its header is written last)
FL_COMPACTED = 1
MAX_PAYLOAD = 4096
_FRAME = 7          # type, len(2), crc(4)

# what a physical sector holds
K_DIRTY = 0         # free, must be erased before use
K_CLEAN = 1         # free and erased this session
K_HEAD = 2          # a head-type sector in use (the current head or an older one)
K_COMP = 3          # a compacted sector in use


class LogError(OSError):
    pass


class IdentityError(LogError):
    """The log was written under another device id (open() refuses it)."""


def _align(n):
    return (n + 3) & ~3


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def _u32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _put32(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF
    b[o + 2] = (v >> 16) & 0xFF
    b[o + 3] = (v >> 24) & 0xFF


def _crc(data, start=0):
    return binascii.crc32(data, start) & 0xFFFFFFFF


class RingLog:
    def __init__(self, dev, device_id, merge=None, max_span=1440):
        S = dev.sector_size
        N = dev.sector_count
        if S < 512 or S % 4 or N < 4:
            raise ValueError("log: need at least 4 sectors of at least 512 bytes (got %d x %d)" % (N, S))
        self.dev = dev
        self.device_id = device_id
        self.merge = merge
        self.max_span = max_span
        self.S = S
        self.N = N
        self._kind = bytearray(N)
        self._order = array("I", [0] * N)
        self._lo = array("I", [0] * N)
        self._gen = array("I", [0] * N)
        self._wear = array("I", [0] * N)
        self._first = array("I", [0] * N)    # head-type: next seq when opened; compacted: first seq
        self._lastseq = array("I", [0] * N)  # compacted: last seq
        self._rstart = array("I", [0] * N)   # offset of the first record
        self._hbuf = bytearray(HDR)
        self._rbuf = bytearray(3)
        self._body = bytearray(256)          # record reads reuse this buffer
        self._reset()
        # health, cumulative for this object
        self.damaged = 0         # damaged sectors and records met
        self.coalesced = 0       # records merged into a neighbour (gauges merged)
        self.dropped = 0         # records folded into a gap-flagged successor (gauges lost)
        self.compactions = 0
        self.data_bytes = 0      # payload bytes of DATA records appended (for write amplification)
        self.recovery_reads = 0  # device read calls made by the last open()

    def _reset(self):
        self.epoch = 0
        self.epoch_seq0 = 1
        self.next_seq = 1
        self.acked = 0
        self.boot = 0
        self.boot_reason = ""
        self.last = None
        self.config_version = 0  # the remote config version in force (note_config)
        self.log_device = None   # the device id the log was written under (None: unknown)
        self._head = -1
        self._pos = 0
        self._closed = False
        self._stale = False      # a write failed: re-learn the state from the device first
        self._max_order = 0
        self._oldest = None
        self._damaged_sectors = {}

    # -- recovery -------------------------------------------------------------

    def open(self):
        """Recover the log from the device: reads every sector header and the
        head sector, writes nothing, never raises on what it reads."""
        dev = self.dev
        S = self.S
        floor = self.next_seq if self._head >= 0 else 1
        r0 = dev.reads
        self._reset()
        hb = self._hbuf
        known_wear = 0
        for i in range(self.N):
            self._kind[i] = K_DIRTY
            dev.read(i * S, hb)
            st = self._header_state(hb, i)
            if st is None:
                continue
            self._wear[i] = _u32(hb, 16)
            if self._wear[i] > known_wear:
                known_wear = self._wear[i]
            self._order[i] = _u32(hb, 4)
            self._lo[i] = _u32(hb, 8)
            self._gen[i] = _u32(hb, 12)
            self._rstart[i] = _align(HDR + _u16(hb, 20))
            if hb[22] & FL_COMPACTED:
                self._rstart[i] = COMP_START
                if len(st) != 2:
                    self.damaged += 1
                    continue
                self._kind[i] = K_COMP
                self._first[i] = st[0]
                self._lastseq[i] = st[1]
                if st[1] + 1 > floor:
                    floor = st[1] + 1
            else:
                if len(st) != 7 and len(st) != 9:
                    self.damaged += 1
                    continue
                self._kind[i] = K_HEAD
                self._first[i] = st[2]
        for i in range(self.N):
            if self._kind[i] < K_HEAD:
                self._wear[i] = known_wear     # unknown wear: assume the worst seen
        self._drop_superseded()
        head = -1
        for i in range(self.N):
            if self._kind[i] == K_HEAD and (head < 0 or self._order[i] > self._order[head]):
                head = i
        if head < 0:
            self.epoch = port.random_u32()
            self.epoch_seq0 = floor
            self.next_seq = floor
        else:
            dev.read(head * S, hb)
            st = self._header_state(hb, head)
            (self.epoch, self.epoch_seq0, self.next_seq, self.acked, self.boot,
             self.boot_reason, self.last) = st[:7]
            if len(st) == 9:
                self.config_version = st[7]
                self.log_device = st[8]
            self._head = head
            self._max_order = self._order[head]
            self._scan_head()
            if self.next_seq < floor:
                self.next_seq = floor
        for i in range(self.N):
            if self._kind[i] >= K_HEAD and self._order[i] > self._max_order:
                self._max_order = self._order[i]
        self._reclaim()
        self.recovery_reads = dev.reads - r0
        if (self.device_id is not None and self.log_device is not None
                and self.log_device != self.device_id):
            raise IdentityError(
                "log: written by device %r, this device is %r: refusing to bill one device's "
                "odometers under another's id (set device_id back, or move the log away to "
                "start a new one)" % (self.log_device, self.device_id))
        return self

    def _header_state(self, hb, i):
        """Decoded state block of sector i if its header is valid, else None."""
        if hb[0:4] != MAGIC:
            for b in hb:
                if b != 0xFF:
                    self.damaged += 1     # neither a header nor erased
                    break
            return None
        slen = _u16(hb, 20)
        if HDR + slen > self.S:
            self.damaged += 1
            return None
        sb = bytearray(slen)
        self.dev.read(i * self.S + HDR, sb)
        if _crc(sb, _crc(memoryview(hb)[:24])) != _u32(hb, 24):
            self.damaged += 1
            return None
        try:
            st = cbor.loads(sb)
        except ValueError:
            self.damaged += 1
            return None
        if not isinstance(st, list):
            self.damaged += 1
            return None
        return st

    def _drop_superseded(self):
        kind = self._kind
        for y in range(self.N):
            if kind[y] != K_COMP:
                continue
            for x in range(self.N):
                if (x != y and kind[x] >= K_HEAD and self._gen[x] < self._gen[y]
                        and self._lo[y] <= self._order[x] <= self._order[y]):
                    kind[x] = K_DIRTY

    def _scan_head(self):
        """Apply the head sector's records; close it unless its free space is
        clean, so nothing is ever programmed over a torn write."""
        h = self._head
        S = self.S
        rest = bytearray(S - self._rstart[h])
        self.dev.read(h * S + self._rstart[h], rest)
        pos = 0
        n = len(rest)
        while pos + _FRAME <= n and rest[pos] != 0xFF:
            ln = rest[pos + 1] | (rest[pos + 2] << 8)
            end = pos + 3 + ln
            if ln > MAX_PAYLOAD or end + 4 > n or _crc(memoryview(rest)[pos:end]) != _u32(rest, end):
                break
            try:
                self._apply(rest[pos], cbor.loads(memoryview(rest)[pos + 3:end]))
            except (ValueError, TypeError, IndexError):
                break
            pos = _align(end + 4)
        self._pos = self._rstart[h] + pos
        for i in range(pos, n):
            if rest[i] != 0xFF:
                self._closed = True
                self.damaged += 1
                break

    def _apply(self, t, rec):
        if t == T_DATA:
            if rec[R_SEQ] + 1 > self.next_seq:
                self.next_seq = rec[R_SEQ] + 1
            self.last = rec
        elif t == T_ACK:
            if rec[1] > self.acked:
                self.acked = rec[1]
        elif t == T_BOOT:
            if rec[0] > self.boot:
                self.boot = rec[0]
                self.boot_reason = rec[1]
        elif t == T_EPOCH:
            self.epoch = rec[0]
            self.epoch_seq0 = rec[1]
            self.last = None
        elif t == T_CONFIG:
            self.config_version = rec[0]

    def _live(self):
        """Sectors in use, in logical order."""
        out = [i for i in range(self.N) if self._kind[i] >= K_HEAD]
        out.sort(key=lambda i: self._order[i])
        return out

    def _reclaim(self):
        """Sectors whose records are all acked become free."""
        live = self._live()
        for j in range(len(live)):
            s = live[j]
            if s == self._head:
                continue
            if self._kind[s] == K_COMP:
                done = self._lastseq[s] <= self.acked
            else:
                done = j + 1 < len(live) and self._first[live[j + 1]] - 1 <= self.acked
            if done:
                self._kind[s] = K_DIRTY

    # -- writing ----------------------------------------------------------------

    def _header(self, order, lo, gen, flags, wear, state):
        b = bytearray(HDR + len(state))
        b[0:4] = MAGIC
        _put32(b, 4, order)
        _put32(b, 8, lo)
        _put32(b, 12, gen)
        _put32(b, 16, wear)
        b[20] = len(state) & 0xFF
        b[21] = len(state) >> 8
        b[22] = flags
        b[23] = 0xFF
        b[HDR:] = state
        _put32(b, 24, _crc(memoryview(b)[HDR:], _crc(memoryview(b)[:24])))
        for k in range(28, 32):
            b[k] = 0xFF
        return b

    def _free(self):
        return [i for i in range(self.N) if self._kind[i] < K_HEAD]

    def _pick(self, free):
        """Least-worn free sector; ties go to the next one after the head."""
        best = -1
        h = self._head if self._head >= 0 else self.N - 1
        for i in free:
            if best < 0 or self._wear[i] < self._wear[best] or (
                    self._wear[i] == self._wear[best]
                    and (i - h - 1) % self.N < (best - h - 1) % self.N):
                best = i
        return best

    def _prepare(self, s):
        if self._kind[s] != K_CLEAN:
            self.dev.erase(s)
            self._wear[s] += 1
            self._kind[s] = K_CLEAN

    def _open_head(self, need):
        state = cbor.dumps([self.epoch, self.epoch_seq0, self.next_seq, self.acked,
                            self.boot, self.boot_reason, self.last, self.config_version,
                            self._ident()])
        rs = _align(HDR + len(state))
        if rs + need > self.S:
            raise LogError("log: a %d-byte record does not fit a %d-byte sector with its state block"
                           % (need, self.S))
        while len(self._free()) < 2:      # one for the head, one kept for compaction
            self._compact()
        s = self._pick(self._free())
        self._prepare(s)
        order = self._max_order + 1
        self.dev.program(s * self.S, self._header(order, order, 0, 0, self._wear[s], state))
        self.dev.sync()
        self._kind[s] = K_HEAD
        self._order[s] = order
        self._lo[s] = order
        self._gen[s] = 0
        self._first[s] = self.next_seq
        self._rstart[s] = rs
        self._max_order = order
        self._head = s
        self._pos = rs
        self._closed = False

    def _program_record(self, addr, t, payload):
        """Two programs: type, length and payload, then the CRC, which commits it."""
        n = len(payload)
        body = bytearray(3 + n)
        body[0] = t
        body[1] = n & 0xFF
        body[2] = n >> 8
        body[3:] = payload
        c = bytearray(4)
        _put32(c, 0, _crc(body))
        self.dev.program(addr, body)
        self.dev.program(addr + 3 + n, c)

    def _put(self, t, payload):
        n = len(payload)
        size = _align(_FRAME + n)
        if n > MAX_PAYLOAD or HDR + 2 * size > self.S:
            raise LogError("log: a %d-byte record is larger than a %d-byte sector can hold"
                           % (n, self.S))
        if self._head < 0 or self._closed or self._pos + size > self.S:
            self._open_head(size)
        try:
            self._program_record(self._head * self.S + self._pos, t, payload)
            self.dev.sync()
        except OSError:
            # Never program over what may be half there, and learn from the
            # device whether the record landed before choosing the next seq.
            self._stale = True
            raise
        self._pos += size

    def _ready(self):
        if self._stale:
            self.open()
            self._closed = True

    def _ident(self):
        return self.device_id if self.device_id is not None else self.log_device

    def note_config(self, version):
        """Persist the remote config version now in force (an int). It
        survives reboots, compaction and reclaim: every new head sector's
        state block carries it."""
        self._ready()
        if not isinstance(version, int) or version < 0:
            raise ValueError("log: config version must be a non-negative int, not %r" % (version,))
        self._put(T_CONFIG, cbor.dumps([version]))
        self.config_version = version

    def start_boot(self, reason):
        """Record a new boot; returns the boot number (persisted, increments)."""
        self._ready()
        b = self.boot + 1
        self._put(T_BOOT, cbor.dumps([b, reason]))
        self.boot = b
        self.boot_reason = reason
        return b

    def new_epoch(self):
        """Start a new epoch (odometers restart at zero). Pending records of
        the old epoch stay and are delivered under their own epoch."""
        self._ready()
        e = port.random_u32()
        self._put(T_EPOCH, cbor.dumps([e, self.next_seq]))
        self.epoch = e
        self.epoch_seq0 = self.next_seq
        self.last = None
        return e

    def append(self, schema, boot, uptime_ms, wall_s, wall_q, ival_ms, values):
        """Append one interval record; returns its seq once it is durable."""
        self._ready()
        seq = self.next_seq
        rec = [seq, seq, 0, self.epoch, schema, boot, uptime_ms, wall_s, wall_q, ival_ms, values]
        payload = cbor.dumps(rec)
        self._put(T_DATA, payload)
        self.data_bytes += len(payload)
        self.next_seq = seq + 1
        self.last = rec
        if self._oldest is None and seq == self.acked + 1:
            self._oldest = rec
        return seq

    def ack(self, epoch, seq):
        """Free every record up to seq (inclusive) of the given epoch. Returns
        the number of intervals freed; an ack for another epoch than the
        oldest pending record's, or for an old seq, frees nothing."""
        self._ready()
        if seq >= self.next_seq:
            seq = self.next_seq - 1
        if seq <= self.acked:
            return 0
        old = self.pending(1)
        if not old or old[0][R_EPOCH] != epoch:
            return 0
        self._put(T_ACK, cbor.dumps([epoch, seq]))
        n = seq - self.acked
        self.acked = seq
        self._oldest = None
        self._reclaim()
        return n

    # -- reading ----------------------------------------------------------------

    def depth(self):
        """Unacked intervals."""
        return self.next_seq - 1 - self.acked

    def _records(self, s):
        """Yield (type, payload) of sector s's valid records in order; an
        invalid record ends the sector (counted once per sector)."""
        S = self.S
        base = s * S
        pos = self._rstart[s]
        end_ = self._pos if s == self._head else S
        hb = self._rbuf
        while pos + _FRAME <= end_:
            self.dev.read(base + pos, hb)
            if hb[0] == 0xFF:
                return
            n = hb[1] | (hb[2] << 8)
            if n > MAX_PAYLOAD or pos + _FRAME + n > S:
                self._damage(s)
                return
            if len(self._body) < n + 4:
                self._body = bytearray(n + 4)
            body = memoryview(self._body)[:n + 4]   # reused: the caller decodes before the next
            self.dev.read(base + pos + 3, body)
            c = _crc(body[:n], _crc(hb))
            if c != _u32(body, n):
                self._damage(s)
                return
            yield hb[0], body[:n]
            pos = _align(pos + _FRAME + n)

    def _damage(self, s):
        key = (s, self._order[s])
        if key not in self._damaged_sectors:
            self._damaged_sectors[key] = 1
            self.damaged += 1

    def pending(self, limit=60, after=0):
        """Up to `limit` unacked DATA records with seq > after, oldest first
        (decoded lists). Sectors wholly at or below that seq are skipped
        unread, so a pipelined drain costs one pass, not one per batch."""
        out = []
        floor = self.acked if self.acked > after else after
        if self.next_seq - 1 <= floor:
            return out
        live = self._live()
        last = len(live) - 1
        for j in range(len(live)):
            s = live[j]
            if j < last and self._first[live[j + 1]] <= floor + 1:
                continue                    # every record here is <= floor
            for t, payload in self._records(s):
                if t != T_DATA:
                    continue
                try:
                    rec = cbor.loads(payload)
                except ValueError:
                    self._damage(s)
                    break
                if rec[R_SEQ] > floor:
                    out.append(rec)
                    if len(out) >= limit:
                        return out
        return out

    def oldest(self):
        """(seq, boot, uptime_ms) of the oldest unacked record, or None."""
        if self.depth() <= 0:
            return None
        r = self._oldest
        if r is None:
            p = self.pending(1)
            if not p:
                return None
            r = self._oldest = p[0]
        return r[R_SEQ], r[R_BOOT], r[R_UPTIME]

    def walk(self):
        """Yield (sector, kind, type, payload) for every valid record of the
        sectors in use, in logical order (for inspection tools)."""
        for s in self._live():
            for t, payload in self._records(s):
                yield s, self._kind[s], t, payload

    def sectors(self):
        """Per physical sector: (kind, order, lo, gen, wear)."""
        return [(self._kind[i], self._order[i], self._lo[i], self._gen[i], self._wear[i])
                for i in range(self.N)]

    def close(self):
        c = getattr(self.dev, "close", None)
        if c:
            c()

    # -- compaction: coalesce, then drop -------------------------------------------

    def _fits_merge(self, a, b, gap):
        if a[R_EPOCH] != b[R_EPOCH]:
            return False
        if gap:
            return True
        return (a[R_SCHEMA] == b[R_SCHEMA] and a[R_SEQ] + 1 == b[R_FROM]
                and b[R_SEQ] - a[R_FROM] + 1 <= self.max_span)

    def _join(self, a, b, gap):
        span_a = a[R_SEQ] - a[R_FROM] + 1
        span_b = b[R_SEQ] - b[R_FROM] + 1
        r = b[:]
        r[R_FROM] = a[R_FROM]
        r[R_UPTIME] = a[R_UPTIME]
        r[R_WALL] = a[R_WALL]
        r[R_BOOT] = a[R_BOOT]
        r[R_FLAGS] = a[R_FLAGS] | b[R_FLAGS] | (F_GAP if gap else F_COALESCED)
        if not gap and self.merge:
            r[R_VALUES] = self.merge(a[R_VALUES], b[R_VALUES], span_a, span_b)
        return r, span_a

    def _stream(self, srcs, excess, gap, emit):
        """Feed the unacked DATA records of srcs (oldest first) to emit(rec),
        merging the oldest while excess > 0. Returns (remaining excess,
        records merged away). At most three records are in memory."""
        carry = None
        merged = 0
        for s in srcs:
            for t, payload in self._records(s):
                if t != T_DATA:
                    continue
                rec = cbor.loads(payload)
                if rec[R_SEQ] <= self.acked:
                    continue
                if carry is None:
                    carry = rec
                    continue
                if excess > 0 and self._fits_merge(carry, rec, gap):
                    old = _align(_FRAME + len(cbor.dumps(carry))) + _align(_FRAME + len(cbor.dumps(rec)))
                    carry, _ = self._join(carry, rec, gap)
                    excess -= old - _align(_FRAME + len(cbor.dumps(carry)))
                    merged += 1
                    continue
                if excess > 0 and gap and carry[R_EPOCH] != rec[R_EPOCH]:
                    # an old epoch's last record: its odometers are final, drop it
                    excess -= _align(_FRAME + len(cbor.dumps(carry)))
                    merged += 1
                    carry = rec
                    continue
                emit(carry)
                carry = rec
        if carry is not None:
            emit(carry)
        return excess, merged

    def _compact(self):
        """Merge the two oldest sectors in use into the reserve sector."""
        live = [s for s in self._live() if s != self._head]
        free = self._free()
        if len(live) < 2 or not free:
            raise LogError("log: full, and nothing left to coalesce")
        a, b = live[0], live[1]
        budget = self.S - COMP_START            # state [first, last] takes at most 19 bytes
        size = [0]

        def measure(rec):
            size[0] += _align(_FRAME + len(cbor.dumps(rec)))
        self._stream((a, b), 0, False, measure)
        excess = size[0] - budget
        gap = False
        if excess > 0:
            size[0] = 0
            rest, _ = self._stream((a, b), excess, False, measure)
            if rest > 0:
                gap = True                      # merging cannot make room: drop the oldest
        spare = self._pick(free)
        self._prepare(spare)
        pos = [COMP_START, 0, 0]                # offset, first seq, last seq
        base = spare * self.S

        def write(rec):
            p = cbor.dumps(rec)
            n = len(p)
            if pos[0] + _align(_FRAME + n) > self.S:
                raise LogError("log: compaction overflow")
            self._program_record(base + pos[0], T_DATA, p)
            pos[0] = _align(pos[0] + _FRAME + n)
            if not pos[1]:
                pos[1] = rec[R_FROM]
            pos[2] = rec[R_SEQ]
        _, merged = self._stream((a, b), excess, gap, write)
        if gap:
            self.dropped += merged
        else:
            self.coalesced += merged
        state = cbor.dumps([pos[1], pos[2]])
        assert HDR + len(state) <= COMP_START
        gen = max(self._gen[a], self._gen[b]) + 1
        hdr = self._header(self._order[b], self._lo[a], gen, FL_COMPACTED, self._wear[spare], state)
        # the header last: a compacted sector with a valid header is complete
        self.dev.sync()
        self.dev.program(base, hdr)
        self.dev.sync()
        self._kind[spare] = K_COMP
        self._order[spare] = self._order[b]
        self._lo[spare] = self._lo[a]
        self._gen[spare] = gen
        self._first[spare] = pos[1]
        self._lastseq[spare] = pos[2]
        self._rstart[spare] = COMP_START
        self._kind[a] = K_DIRTY
        self._kind[b] = K_DIRTY
        self._oldest = None
        self.compactions += 1
        if not pos[2]:
            self._kind[spare] = K_DIRTY         # nothing was pending after all


def file_geometry(capacity):
    """Sector size and count for a file-backed ring of about `capacity` bytes:
    4 KiB sectors like NOR flash from 64 KiB up, 1 KiB below."""
    ss = 4096 if capacity >= 64 * 1024 else 1024
    return ss, max(4, capacity // ss)


def file_log(path, device_id, capacity=256 * 1024, durable=True, merge=None, max_span=1440):
    """A ring log over a preallocated file (a Linux host, or a file on the
    board's littlefs). Call open() on the result."""
    from agent.flash import FileFlash
    ss, n = file_geometry(capacity)
    if port.exists(path):
        have = port.file_size(path)
        if have > ss * n and have % ss == 0:
            n = have // ss        # a larger log from an earlier config: keep all of it
    return RingLog(FileFlash(path, ss, n, durable=durable), device_id, merge=merge, max_span=max_span)
