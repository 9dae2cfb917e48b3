# The persistent log (foundation version: one append-only file, rewritten
# whole by compaction). It keeps the invariants of DESIGN section 3:
#
#   - append() returns only after the record is flushed and fsynced;
#   - a record is a frame  A5 | type | len(2, LE) | CBOR payload | CRC-32(4, LE)
#     with the CRC over type, len and payload, so a torn write is detected and
#     the half-written record is dropped whole on recovery;
#   - nothing is rewritten in place: acks are ACK records, and compaction
#     writes a new file, fsyncs it, and renames it over the old one;
#   - recovery never refuses to start: damaged bytes are skipped (resyncing on
#     the next valid frame) and counted;
#   - the file never grows past `capacity`: when full, acked records go first,
#     then adjacent unacked intervals are coalesced (odometers kept), and only
#     then is the oldest interval dropped, leaving a gap flag on its successor.
#
# The flash-native ring of issue 3 replaces this module's storage, not its API.

import binascii
from array import array
from agent import cbor
from agent import port

MAGIC = 0xA5
T_HEADER = 1
T_BOOT = 2
T_DATA = 3
T_ACK = 5

FMT_VERSION = 1

# Record (the decoded payload of a T_DATA frame), a list indexed by:
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

_HDR = 4
_TRAILER = 4
MAX_PAYLOAD = 4096   # a record larger than this is refused at append time


class LogError(OSError):
    pass


def frame(rtype, payload):
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise LogError("log: record of %d bytes is larger than a frame" % n)
    buf = bytearray(_HDR + n + _TRAILER)
    buf[0] = MAGIC
    buf[1] = rtype
    buf[2] = n & 0xFF
    buf[3] = n >> 8
    buf[4:4 + n] = payload
    c = binascii.crc32(memoryview(buf)[1:4 + n]) & 0xFFFFFFFF
    for i in range(4):
        buf[4 + n + i] = (c >> (8 * i)) & 0xFF
    return buf


def scan(f, size, stats=None):
    """Yield (offset, type, payload) for every valid frame in the open file f
    (size bytes), resynchronising byte by byte past damage. Reads in small
    pieces so recovery fits in a small heap. stats (dict) gets 'damaged_bytes'."""
    pos = 0
    damaged = 0
    head = bytearray(_HDR)
    while pos + _HDR + _TRAILER <= size:
        f.seek(pos)
        if f.readinto(head) != _HDR or head[0] != MAGIC:
            pos += 1
            damaged += 1
            continue
        n = head[2] | (head[3] << 8)
        if n > MAX_PAYLOAD or pos + _HDR + n + _TRAILER > size:
            pos += 1
            damaged += 1
            continue
        body = f.read(n + _TRAILER)
        want = body[n] | (body[n + 1] << 8) | (body[n + 2] << 16) | (body[n + 3] << 24)
        c = binascii.crc32(memoryview(head)[1:])
        if binascii.crc32(memoryview(body)[:n], c) & 0xFFFFFFFF != want:
            pos += 1
            damaged += 1
            continue
        yield pos, head[1], body[:n]
        pos += _HDR + n + _TRAILER
    damaged += max(0, size - pos)
    if stats is not None:
        stats["damaged_bytes"] = damaged


class FileLog:
    """Append-only log in one file. `merge(a_vals, b_vals, span_a, span_b)`
    coalesces two adjacent intervals' values (see Meter.merge)."""

    def __init__(self, path, device_id, capacity=256 * 1024, merge=None,
                 durable=True, max_span=1440):
        if capacity < 1024:
            raise ValueError("log: capacity must be at least 1024 bytes")
        self.path = path
        self.device_id = device_id
        self.capacity = capacity
        self.merge = merge
        self.durable = durable
        self.max_span = max_span
        self.epoch = 0
        self.boot = 0
        self.boot_reason = ""
        self.next_seq = 1
        self.epoch_seq0 = 1      # first seq of the current epoch
        self.acked = 0           # highest acked seq
        self.last = None         # last DATA record (decoded), acked or not
        # Index of unacked DATA records, oldest first, as compact arrays so a
        # long offline backlog fits a small heap: file offset, seq, epoch.
        self._offs = array("I")
        self._seqs = array("I")
        self._epochs = array("I")
        self._oldest = None      # decoded oldest unacked record (cache)
        self._size = 0
        self._f = None
        # health, cumulative for this process
        self.damaged_bytes = 0   # bytes skipped as damage at recovery
        self.coalesced = 0       # intervals merged into a neighbour
        self.dropped = 0         # intervals dropped (gap-flagged)
        self.compactions = 0
        self.bytes_programmed = 0

    # -- opening and recovery -------------------------------------------------

    def open(self):
        tmp = self.path + ".tmp"
        if port.exists(tmp):
            if port.exists(self.path):
                port.remove(tmp)       # compaction died before its rename
            else:
                port.rename(tmp, self.path)
        size = port.file_size(self.path) if port.exists(self.path) else 0
        floor = self.next_seq         # a re-open after a failed write never lets seq go back
        boot_floor = self.boot
        self.next_seq = 1
        self.boot = 0
        self.acked = 0
        self.last = None
        stats = {}
        have_header = False
        offs = array("I")
        seqs = array("I")
        epochs = array("I")
        f = open(self.path, "rb") if size else None
        for off, rtype, payload in (scan(f, size, stats) if f else ()):
            try:
                rec = cbor.loads(payload)
            except ValueError:
                stats["damaged_bytes"] = stats.get("damaged_bytes", 0) + len(payload)
                continue
            if rtype == T_HEADER:
                have_header = True
                self.epoch = rec[2]
                self.epoch_seq0 = rec[3]
            elif rtype == T_BOOT:
                if rec[0] > self.boot:
                    self.boot = rec[0]
                    self.boot_reason = rec[1]
            elif rtype == T_DATA:
                seq = rec[R_SEQ]
                if seq < self.next_seq:
                    continue           # never let seq go back, whatever the file says
                self.next_seq = seq + 1
                self.last = rec
                offs.append(off)
                seqs.append(seq)
                epochs.append(rec[R_EPOCH])
            elif rtype == T_ACK:
                if rec[1] > self.acked:
                    self.acked = rec[1]
        if f:
            f.close()
        self.next_seq = max(self.next_seq, floor)
        self.boot = max(self.boot, boot_floor)
        self.damaged_bytes += stats.get("damaged_bytes", 0)
        k = 0
        while k < len(seqs) and seqs[k] <= self.acked:
            k += 1
        self._set_index(offs[k:], seqs[k:], epochs[k:])
        self._size = size
        if not have_header:
            self.epoch = port.random_u32()
            self.epoch_seq0 = self.next_seq
            self._rewrite([self._header()])
        elif stats.get("damaged_bytes", 0):
            self._compact()            # drop the damage so appends land after valid data
        else:
            self._f = open(self.path, "ab")
        return self

    def _header(self):
        return frame(T_HEADER, cbor.dumps([FMT_VERSION, self.device_id, self.epoch, self.epoch_seq0]))

    def close(self):
        if self._f:
            self._f.close()
            self._f = None

    # -- writing ----------------------------------------------------------------

    def _ready(self):
        if self._f is None:
            # A previous write failed half-way: learn from the file what it holds
            # before choosing the next seq.
            self.open()

    def _write(self, buf):
        f = self._f
        try:
            f.write(buf)
            if self.durable:
                port.fsync_file(f)     # raises OSError: the record is not durable
            else:
                f.flush()
        except OSError:
            self.close()               # re-scanned before the next write
            raise
        self._size += len(buf)
        self.bytes_programmed += len(buf)

    def _room(self, need):
        if self._size + need <= self.capacity:
            return
        self._compact(need)
        if self._size + need > self.capacity:
            raise LogError("log: no room for %d bytes even after coalescing" % need)

    def start_boot(self, reason):
        """Record a new boot; returns the boot number (persisted, increments)."""
        self._ready()
        self.boot += 1
        self.boot_reason = reason
        buf = frame(T_BOOT, cbor.dumps([self.boot, reason]))
        self._room(len(buf))
        self._write(buf)
        return self.boot

    def new_epoch(self):
        """Start a new epoch (odometers restart at zero). Pending records of
        the old epoch stay and are still delivered under their own epoch."""
        self._ready()
        self.epoch = port.random_u32()
        self.epoch_seq0 = self.next_seq
        buf = self._header()
        self._room(len(buf))
        self._write(buf)
        self.last = None
        return self.epoch

    def append(self, schema, boot, uptime_ms, wall_s, wall_q, ival_ms, values):
        """Append one interval record; returns its seq once it is durable."""
        self._ready()
        seq = self.next_seq
        rec = [seq, seq, 0, self.epoch, schema, boot, uptime_ms, wall_s, wall_q, ival_ms, values]
        buf = frame(T_DATA, cbor.dumps(rec))
        self._room(len(buf))
        off = self._size
        self._write(buf)
        self.next_seq = seq + 1
        self.last = rec
        self._offs.append(off)
        self._seqs.append(seq)
        self._epochs.append(self.epoch)
        if self._oldest is None:
            self._oldest = rec
        return seq

    def ack(self, epoch, seq):
        """Free records up to seq (inclusive) of the given epoch. Returns the
        number of records freed. An ack for an unknown epoch or an old seq is
        ignored; an ack past what was written is clamped."""
        self._ready()
        if seq <= self.acked:
            return 0
        if seq >= self.next_seq:
            seq = self.next_seq - 1
        n = 0
        seqs = self._seqs
        while n < len(seqs) and seqs[n] <= seq and self._epochs[n] == epoch:
            n += 1
        if n == 0:
            return 0
        seq = seqs[n - 1]
        buf = frame(T_ACK, cbor.dumps([epoch, seq]))
        self._room(len(buf))
        self._write(buf)
        self.acked = seq
        self._set_index(self._offs[n:], self._seqs[n:], self._epochs[n:])
        return n

    # -- reading ----------------------------------------------------------------

    def _set_index(self, offs, seqs, epochs):
        self._offs = offs
        self._seqs = seqs
        self._epochs = epochs
        self._oldest = None

    def depth(self):
        return len(self._seqs)

    def oldest(self):
        """(seq, boot, uptime_ms) of the oldest unacked record, or None; no I/O."""
        if not self._seqs:
            return None
        r = self._oldest
        if r is None:
            r = self._oldest = self.pending(1)[0]
        return r[R_SEQ], r[R_BOOT], r[R_UPTIME]

    def pending(self, limit=60):
        """Up to `limit` unacked records, oldest first (decoded lists)."""
        out = []
        if not self._seqs:
            return out
        with open(self.path, "rb") as f:
            for i in range(min(limit, len(self._offs))):
                f.seek(self._offs[i])
                head = f.read(_HDR)
                n = head[2] | (head[3] << 8)
                out.append(cbor.loads(f.read(n)))
        return out

    # -- compaction, coalescing, dropping ------------------------------------------
    #
    # Compaction streams: it holds at most three records in memory, whatever
    # the backlog, and writes a complete, valid log to a new file before the
    # rename; a pass that still leaves too little room is followed by another
    # over the file just written.

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

    def _fits_merge(self, a, b, gap):
        if a[R_EPOCH] != b[R_EPOCH]:
            return False
        if gap:
            return True
        return (a[R_SCHEMA] == b[R_SCHEMA] and a[R_SEQ] + 1 == b[R_FROM]
                and b[R_SEQ] - a[R_FROM] + 1 <= self.max_span)

    def _pending_bytes(self):
        n = 0
        head = bytearray(_HDR)
        with open(self.path, "rb") as f:
            for off in self._offs:
                f.seek(off)
                f.readinto(head)
                n += _HDR + (head[2] | (head[3] << 8)) + _TRAILER
        return n

    def _compact(self, need=0):
        """Rewrite the log with only what recovery needs: the header, the last
        boot, the last data record (it carries the odometers and the seq) and
        its ack, and every unacked record, coalesced if they do not fit."""
        gap = False
        while True:
            fixed = [self._header()]
            if self.boot:
                fixed.append(frame(T_BOOT, cbor.dumps([self.boot, self.boot_reason])))
            last = self.last
            if last is not None and (not self._seqs or self._seqs[-1] != last[R_SEQ]):
                fixed.append(frame(T_DATA, cbor.dumps(last)))    # acked checkpoint
            if self.acked:
                ep = self.epoch if last is None else last[R_EPOCH]
                fixed.append(frame(T_ACK, cbor.dumps([ep, self.acked])))
            excess = sum(len(b) for b in fixed) + self._pending_bytes() + need - self.capacity
            before = self.coalesced + self.dropped
            self._rewrite(fixed, excess, gap)
            self.compactions += 1
            if self._size + need <= self.capacity:
                return
            if self.coalesced + self.dropped == before:
                if gap or self.depth() < 2:
                    return             # nothing more can be freed; _room reports it
                gap = True             # merging is exhausted: drop the oldest intervals

    def _rewrite(self, fixed, excess=0, gap=False):
        """Write fixed frames, then the pending records (merging the oldest
        while excess > 0), to a new file and atomically put it in place."""
        tmp = self.path + ".tmp"
        offs = array("I")
        seqs = array("I")
        epochs = array("I")
        size = 0
        src = open(self.path, "rb") if len(self._offs) else None
        with open(tmp, "wb") as f:
            for b in fixed:
                f.write(b)
                size += len(b)

            def emit(rec, size):
                b = frame(T_DATA, cbor.dumps(rec))
                f.write(b)
                offs.append(size)
                seqs.append(rec[R_SEQ])
                epochs.append(rec[R_EPOCH])
                return size + len(b)

            carry = None
            head = bytearray(_HDR)
            for off in self._offs:
                src.seek(off)
                src.readinto(head)
                rec = cbor.loads(src.read(head[2] | (head[3] << 8)))
                if carry is None:
                    carry = rec
                    continue
                if excess > 0 and self._fits_merge(carry, rec, gap):
                    old = len(cbor.dumps(carry)) + len(cbor.dumps(rec)) + _HDR + _TRAILER
                    carry, span = self._join(carry, rec, gap)
                    excess -= old - len(cbor.dumps(carry))
                    if gap:
                        self.dropped += span
                    else:
                        self.coalesced += span
                    continue
                if excess > 0 and gap and carry[R_EPOCH] != rec[R_EPOCH]:
                    # an old epoch's last record: its odometers are final, drop it
                    excess -= len(cbor.dumps(carry)) + _HDR + _TRAILER
                    self.dropped += carry[R_SEQ] - carry[R_FROM] + 1
                    carry = rec
                    continue
                size = emit(carry, size)
                carry = rec
            if carry is not None:
                size = emit(carry, size)
                self.last = carry
            if self.durable:
                port.fsync_file(f)
        if src:
            src.close()
        self.close()
        port.rename(tmp, self.path)
        if self.durable:
            port.fsync_dir(self.path)
        self._set_index(offs, seqs, epochs)
        self._size = size
        self.bytes_programmed += size
        self._f = open(self.path, "ab")
