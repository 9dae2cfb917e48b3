# The persistent ring log over a NOR-like block device. The format and the
# recovery rules are specified in docs/ring-format.md; read that first.
#
# Invariants kept (DESIGN section 3): a record whose append returned survives
# any power cut unless an ack or a coalesced/gap record covers it; the record
# being written is all or nothing (CRC programmed last); seq never goes back;
# the acked position never goes back; space is the device's, never more;
# recovery reads the sector headers and one sector through a fixed window,
# writes nothing and never raises on content; one damaged byte in a header or
# record is repaired, worse damage is skipped and read back as an exact gap,
# never a rewind; when full, intervals are coalesced before any is dropped.
# Portable: CPython and MicroPython.
#
# Over 500 lines on purpose: it is one job, one class (RingLog), whose
# append, recovery, repair, compaction and ack paths all work on the same
# sector state and layout; the device needs every one of them at boot, so
# splitting it into modules would only spread that state across files.

import binascii
from array import array
from agent import cbor
from agent import port

T_EPOCH = 1
T_BOOT = 2
T_DATA = 3
T_ACK = 5
T_CONFIG = 6
T_HIST = 7          # a stress-histogram snapshot (agent/stress.py): [seq, version, words]
T_EVENT = 8         # a component event (agent/partlog.py, agent/parts.py)

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
F_DAMAGED = 4       # with F_GAP: seqs the log could not read back (damaged flash)

MAGIC = b"TLR1"
HDR = 32
COMP_START = 56     # records of a compacted sector start here (its header is written last)
FL_COMPACTED = 1
MAX_PAYLOAD = 4096
_FRAME = 7          # type, len(2), crc(4)
_MIN_DATA = 20      # the smallest DATA record takes 20 bytes (frame, 12-byte payload, aligned)
_WIN = 256          # recovery and reading go through a window of this many bytes

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


# One damaged byte in a CRC-protected block is located from the syndrome
# (computed CRC XOR stored CRC), which depends only on the error: a byte
# error e at distance d from the end gives Z^d(T[e]), T the CRC-32 table and
# Z one zero byte through the register. Z is inverted step by step, and the
# high bytes of T are all different, so each step is one table look-up.
_T = None
_TI = None


def _tables():
    global _T, _TI
    if _T is None:
        t = array("I", [0] * 256)
        ti = bytearray(256)
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            t[i] = c
            ti[c >> 24] = i
        _T = t
        _TI = ti
    return _T, _TI


def _locate(syn, n):
    """(j, e): the byte j of an n-byte block that, XORed with e, explains
    the CRC syndrome syn; None when no single byte does."""
    T, TI = _tables()
    w = syn
    for d in range(n):
        i = TI[w >> 24]
        if T[i] == w:
            return n - 1 - d, i
        w = ((w ^ T[i]) << 8) | i
    return None


def _uint(x):
    return isinstance(x, int) and x >= 0


def _valid_data(r):
    if not isinstance(r, list) or len(r) != 11:
        return False
    for k in range(10):
        if not isinstance(r[k], int):
            return False
    if r[R_FROM] < 1 or r[R_FROM] > r[R_SEQ] or r[R_FLAGS] < 0 or r[R_FLAGS] > 7:
        return False
    v = r[R_VALUES]
    if not isinstance(v, list):
        return False
    for x in v:
        if not isinstance(x, (int, float)):
            return False
    return True


def _valid_state(st, compacted):
    if not isinstance(st, list):
        return False
    if compacted:
        return len(st) == 2 and _uint(st[0]) and _uint(st[1]) and 1 <= st[0] <= st[1]
    # 9 items; 10 with the newest stress snapshot (or None); 12 with the
    # parts table and the unacked component events after it
    if len(st) != 7 and len(st) != 9 and len(st) != 10 and len(st) != 12:
        return False
    if len(st) >= 10 and not (st[9] is None or _valid_hist(st[9])):
        return False
    if len(st) == 12:
        from agent import partlog
        if not partlog.valid_tail(st):
            return False
    for k in range(5):
        if not _uint(st[k]):
            return False
    if not isinstance(st[5], str) or not (st[6] is None or _valid_data(st[6])):
        return False
    return len(st) == 7 or (_uint(st[7]) and (st[8] is None or isinstance(st[8], str)))


def _valid_hist(r):
    return (isinstance(r, list) and len(r) == 3 and _uint(r[0]) and r[0] >= 1 and _uint(r[1])
            and isinstance(r[2], (bytes, bytearray)) and len(r[2]) % 4 == 0)


def _cbor_len(v):
    """Length of the CBOR item at the start of v, or -1."""
    try:
        return cbor._decode(v, 0, 0)[1]
    except (ValueError, IndexError, UnicodeError):
        return -1


def _gap(prev, nxt, a, b):
    """A gap record for the seqs a..b that could not be read back."""
    src = prev if prev is not None else nxt
    r = src[:]
    r[R_SEQ] = b
    r[R_FROM] = a
    r[R_FLAGS] = F_GAP | F_DAMAGED
    ival = src[R_IVAL]
    if prev is not None:
        span = prev[R_SEQ] - prev[R_FROM] + 1
        r[R_UPTIME] = prev[R_UPTIME] + span * ival
        r[R_WALL] = prev[R_WALL] + span * ival // 1000 if prev[R_WALL] else 0
    else:
        up = nxt[R_UPTIME] - (b - a + 1) * ival
        r[R_UPTIME] = up if up > 0 else 0
        r[R_WALL] = 0
        r[R_WALLQ] = 0
    return r


class RingLog:
    def __init__(self, dev, device_id, merge=None, max_span=1440, first_seq=1):
        S = dev.sector_size
        N = dev.sector_count
        if S < 512 or S % 4 or N < 4:
            raise ValueError("log: need at least 4 sectors of at least 512 bytes (got %d x %d)" % (N, S))
        self.dev = dev
        self.device_id = device_id
        self.merge = merge
        self.max_span = max_span
        self.first_seq = first_seq           # where seqs start on a flash that holds no log
        self.S = S
        self.N = N
        self._kind = bytearray(N)
        self._order = array("I", [0] * N)
        self._lo = array("I", [0] * N)
        self._gen = array("I", [0] * N)
        self._wear = array("I", [0] * N)
        self._first = array("Q", [0] * N)    # head-type: next seq when opened; compacted: first seq
        self._span = array("I", [0] * N)     # compacted: last seq - first seq
        self._rstart = array("H" if S < 65536 else "I", [0] * N)   # offset of the first record
        self._hbuf = bytearray(HDR)
        self._win = bytearray(_WIN if S > _WIN else S)   # reads go through this window
        self._wa = -1
        self._wn = 0
        self._nz = -1
        self._fv = None
        self._used = 0
        self._body = bytearray(0)            # a record larger than the window
        self._reset()
        # health, cumulative for this object
        self.damaged = 0         # damaged sectors and records met
        self.corrected = 0       # damaged bytes corrected (one per header or record)
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
        # the slot table {slot: component id} as the events left it, kept as
        # its CBOR map (b"" while empty): one object, not a string per slot
        # and per id (agent/partlog.py table() decodes it, agent/parts.py
        # lookup() reads one slot)
        self.parts = b""
        self.events = []         # unacked component events (E_* lists), oldest first
        # the newest stress snapshot (note_hist; `hist` gives it whole): [seq,
        # version, address of its words on the device, their length], its
        # words read back from the head sector (it holds them, in its state
        # block or a HIST record) instead of a copy kept in RAM; the words
        # themselves in place of the address when a corrected read found them
        self.snap = None
        self._head = -1
        self._pos = 0
        self._closed = False
        self._stale = False      # a write failed: re-learn the state from the device first
        self._max_order = 0
        self._oldest = None
        self._seen = {}

    # -- reading the device: a window, frames, one-byte error correction ----------

    def _inval(self):
        self._wa = -1                    # the window no longer matches the device
        self._nz = -1                    # nor is a byte known not to be 0xFF

    def _view(self, addr, n):
        """n bytes at addr (within one sector) as a memoryview into a reused
        buffer: the window when n fits it, else the record buffer."""
        w = self._win
        if n > len(w):
            if len(self._body) < n:
                self._body = bytearray(n)
            mv = memoryview(self._body)[:n]
            self.dev.read(addr, mv)
            return mv
        wa = self._wa
        if wa < 0 or addr < wa or addr + n > wa + self._wn:
            lim = (addr // self.S + 1) * self.S
            k = len(w)
            if addr + k > lim:
                k = lim - addr
            self.dev.read(addr, memoryview(w)[:k])
            self._wa = wa = addr
            self._wn = k
        return memoryview(w)[addr - wa:addr - wa + n]

    def _erased(self, addr, end):
        """True if every byte in addr..end (one sector) reads 0xFF. The last
        byte found not to be is remembered, so a resync does not read the
        rest of the sector again at every offset."""
        if addr <= self._nz < end:
            return False
        while addr < end:
            k = len(self._win)
            if addr + k > end:
                k = end - addr
            v = self._view(addr, k)
            for i in range(k):
                if v[i] != 0xFF:
                    self._nz = addr + i
                    return False
            addr += k
        return True

    def _frame(self, base, pos, end, n=-1, fix=True):
        """Payload length of the record at sector offset pos (its bytes at
        self._fv: type, len, payload, CRC), or -1. The CRC must match, or one
        damaged byte must explain the mismatch (then it is corrected in our
        buffer, never on the device). n >= 0 tries that length instead of the
        stored one (a damaged length field)."""
        self._fixed = False
        if pos + _FRAME > end:
            return -1
        v = self._view(base + pos, 3)
        stored = v[1] | (v[2] << 8)
        t = v[0]
        if n < 0:
            n = stored
        if n > MAX_PAYLOAD or pos + _FRAME + n > end:
            return -1
        fv = self._view(base + pos, _FRAME + n)
        self._fv = fv
        want = _u32(fv, 3 + n)
        if n == stored:
            c = _crc(fv[:3 + n])
        else:
            c = _crc(fv[3:3 + n], _crc(bytes((t, n & 0xFF, n >> 8))))
        if c == want:
            return n
        if want == 0xFFFFFFFF or n != stored or not fix:
            return -1                    # no CRC programmed (a torn write), a wrong guess, or
                                         # not where a record starts: no correction
        syn = c ^ want
        for k in (0, 8, 16, 24):
            if syn & ~(0xFF << k) & 0xFFFFFFFF == 0:
                self._fixed = True
                return n                 # the damaged byte is in the CRC itself
        at = _locate(syn, 3 + n)
        if at is None or at[0] == 1 or at[0] == 2:
            return -1                    # a length byte cannot be fixed in place
        j, e = at
        fv[j] ^= e                       # correct our copy
        if _crc(fv[:3 + n]) != want:
            fv[j] ^= e
            return -1
        self._inval()                    # the buffer no longer mirrors the device
        self._fixed = True
        return n

    def _frames(self, s, pos, end):
        """Yield (type, n, pos) for the records of sector s from offset pos
        up to end, payload at self._fv[3:3 + n], resynchronising past damage:
        an invalid frame is skipped by trying every 4-byte-aligned offset
        after it. A damaged region that is no record is yielded as
        (-1, k, pos), k the DATA records it may have held (0 for a torn
        write: no CRC was ever programmed). self._used is the offset past
        the last record or damaged byte (where free space starts)."""
        base = s * self.S
        bad = -1
        self._used = pos
        while True:
            stop = pos + _FRAME > end
            if not stop and self._view(base + pos, 1)[0] == 0xFF and self._erased(base + pos, base + end):
                stop = True
            n = -1 if stop else self._frame(base, pos, end, -1, bad < 0)
            if bad >= 0 and (stop or n >= 0):
                q = pos if pos < end else end
                got = -1
                for m in range(q - bad - 10, q - bad - 2):
                    if m >= 0 and self._frame(base, bad, end, m) >= 0:
                        got = m
                        break
                if got >= 0:
                    self._note(s, bad, True)
                    self._fixed = True
                    yield self._fv[0], got, bad
                else:
                    self._note(s, bad, False)
                    yield -1, self._lost_estimate(base, bad, q, stop, end), bad
                bad = -1
                self._used = q
                if n >= 0:
                    n = self._frame(base, pos, end, -1, False)     # our buffers were reused
            if stop:
                return
            if n >= 0:
                if self._fixed:
                    self._note(s, pos, True)
                yield self._fv[0], n, pos
                pos = _align(pos + _FRAME + n)
                self._used = pos
            else:
                if bad < 0:
                    bad = pos
                pos += 4

    def _lost_estimate(self, base, p, q, tail, end):
        """How many DATA records the damaged bytes p..q may have held: 0 for
        a torn write at the end of the used space (its CRC never written),
        else the frames its length fields walk through (at least 1)."""
        v = self._view(base + p, 3)
        n = v[1] | (v[2] << 8)
        if tail and (p + _FRAME + n > end or _u32(self._view(base + p + 3 + n, 4), 0) == 0xFFFFFFFF):
            if self._erased(base + _align(p + _FRAME + n) if p + _FRAME + n <= end else base + end,
                            base + end):
                return 0
        c = 0
        while p < q:
            v = self._view(base + p, 3)
            n = v[1] | (v[2] << 8)
            if n > MAX_PAYLOAD or p + _FRAME + n > q:
                return c + (q - p + _MIN_DATA - 1) // _MIN_DATA
            c += 1
            p = _align(p + _FRAME + n)
        return c if c else 1

    def _note(self, s, pos, fixed):
        """Count a corrected or damaged record once, however often it is read."""
        key = (s, self._order[s], pos)
        if key in self._seen:
            return
        if len(self._seen) < 256:
            self._seen[key] = 1
        if fixed:
            self.corrected += 1
        else:
            self.damaged += 1

    # -- recovery -------------------------------------------------------------

    def open(self):
        """Recover the log from the device: reads every sector header and the
        head sector, writes nothing, never raises on what it reads (only on
        a log of another device: IdentityError)."""
        dev = self.dev
        floor = self.next_seq if self._head >= 0 else self.first_seq
        r0 = dev.reads
        self._reset()
        self._inval()
        self._seen = {}
        hb = self._hbuf
        known_wear = 0
        for i in range(self.N):
            self._kind[i] = K_DIRTY
            st = self._sector_state(i)
            if st is None:
                continue
            self._wear[i] = _u32(hb, 16)
            if self._wear[i] > known_wear:
                known_wear = self._wear[i]
            self._order[i] = _u32(hb, 4)
            self._lo[i] = _u32(hb, 8)
            self._gen[i] = _u32(hb, 12)
            if hb[22] & FL_COMPACTED:
                self._rstart[i] = COMP_START
                self._kind[i] = K_COMP
                self._first[i] = st[0]
                self._span[i] = st[1] - st[0] if st[1] - st[0] < 0xFFFFFFFF else 0xFFFFFFFF
                if st[1] + 1 > floor:
                    floor = st[1] + 1
            else:
                self._rstart[i] = _align(HDR + _u16(hb, 20))
                self._kind[i] = K_HEAD
                self._first[i] = st[2]
                if st[2] > floor:
                    floor = st[2]        # a seq floor every head-type header holds
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
            if not self._live():
                self.acked = floor - 1        # nothing pending: all before floor is gone
        else:
            st = self._sector_state(head, True)
            (self.epoch, self.epoch_seq0, self.next_seq, self.acked, self.boot,
             self.boot_reason, self.last) = st[:7]
            if len(st) >= 9:
                self.config_version = st[7]
                self.log_device = st[8]
            if len(st) == 12:
                self.parts = cbor.dumps(st[10]) if st[10] else b""
                self.events = [ev for ev in st[11] if ev[0] > self.acked]
            st = None
            self._head = head
            self._max_order = self._order[head]
            lost = self._scan_head()
            if self.next_seq < floor:
                self.next_seq = floor
            # seqs that damaged records after the last readable one may have
            # used are skipped, never reused: the reader reports them as a gap
            self.next_seq += lost
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

    def _sector_state(self, i, head=False):
        """Sector i's decoded state block if its header is valid (one damaged
        byte in header or state is corrected), else None; self._hbuf holds
        the (corrected) header. head: the head's, whose stress snapshot (if
        any) becomes the newest (its words on the device unless corrected)."""
        hb = self._hbuf
        c0 = self.corrected
        S = self.S
        self.dev.read(i * S, hb)
        m = 0
        for k in range(4):
            if hb[k] == MAGIC[k]:
                m += 1
        if m < 3:
            for b in hb:
                if b != 0xFF:
                    self.damaged += 1     # neither a header nor erased
                    break
            return None
        slen = _u16(hb, 20)
        want = _u32(hb, 24)
        sv = None
        if HDR + slen <= S and slen <= MAX_PAYLOAD + 512:   # a state holds one record at most
            sv = self._view(i * S + HDR, slen)
            if _crc(sv, _crc(memoryview(hb)[:24])) != want and not self._fix_header(sv, want):
                sv = None
        if sv is None:
            sv = self._fix_state_len(i, want)
        if sv is None:
            self.damaged += 1
            return None
        try:
            st = cbor.loads(sv)
        except ValueError:
            st = None
        if not _valid_state(st, hb[22] & FL_COMPACTED):
            self.damaged += 1
            return None
        if head and len(st) >= 10 and st[9] is not None:
            at = -1
            if self.corrected == c0:
                p = 1                                # past the state's array head (< 24 items)
                for _ in range(10):
                    p = cbor._decode(sv, p, 0)[1]    # the snapshot's words end item 9
                at = i * S + HDR + p - len(st[9][2])
            self._snap(st[9], at)
        return st

    def _fix_header(self, sv, want):
        """One damaged byte in the first 24 header bytes, the state block or
        the header CRC: correct it in hb / our copy of the state."""
        hb = self._hbuf
        c = _crc(sv, _crc(memoryview(hb)[:24]))
        syn = c ^ want
        for k in (0, 8, 16, 24):
            if syn & ~(0xFF << k) & 0xFFFFFFFF == 0:
                self.corrected += 1
                return True
        n = 24 + len(sv)
        at = _locate(syn, n)
        if at is None or at[0] == 20 or at[0] == 21:
            return False
        j, e = at
        if j < 24:
            hb[j] ^= e
        else:
            sv[j - 24] ^= e
            self._inval()
        if _crc(sv, _crc(memoryview(hb)[:24])) == want:
            self.corrected += 1
            return True
        if j < 24:
            hb[j] ^= e
        else:
            sv[j - 24] ^= e
        return False

    def _fix_state_len(self, i, want):
        """A damaged state_len: the state block is one CBOR item, so its own
        encoding says how long it is; accept that length if the CRC agrees."""
        S = self.S
        hb = self._hbuf
        k = len(self._win)
        if HDR + k > S:
            k = S - HDR
        v = self._view(i * S + HDR, k)
        n = _cbor_len(v)
        if n <= 0 or n == _u16(hb, 20):
            return None
        old20, old21 = hb[20], hb[21]
        hb[20] = n & 0xFF
        hb[21] = n >> 8
        if _crc(v[:n], _crc(memoryview(hb)[:24])) == want:
            self.corrected += 1
            return v[:n]
        hb[20] = old20
        hb[21] = old21
        return None

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
        """Apply the head sector's records, resynchronising past damage;
        close it unless its free space is clean, so nothing is ever
        programmed over a torn write. Returns how many seqs damaged records
        after the last readable DATA record may have used."""
        h = self._head
        lost = 0
        tail_bad = False
        for t, n, pos in self._frames(h, self._rstart[h], self.S):
            if t < 0:
                lost += n
                tail_bad = True
                continue
            tail_bad = False
            try:
                rec = cbor.loads(self._fv[3:3 + n])
            except ValueError:
                rec = None
            if not self._apply(t, rec, lost) if not self._fixed else not self._apply_fixed(t, rec, lost):
                self._note(h, pos, False)      # a valid CRC but not a record we wrote
                if t == T_DATA:
                    lost += 1
                continue
            if t == T_DATA:
                lost = 0
            elif t == T_HIST and not self._fixed:
                self.snap[2] = h * self.S + pos + 3 + n - self.snap[3]    # its words end the payload
        self._pos = self._used
        if tail_bad:
            self._closed = True
        return lost

    def _apply_fixed(self, t, rec, lost):
        """A repaired head record must follow on exactly from what came
        before it (a repair that made up a record would not)."""
        if not isinstance(rec, list) or not rec:
            return False
        if t == T_DATA:
            if not _valid_data(rec) or rec[R_FROM] != rec[R_SEQ] or \
                    not self.next_seq <= rec[R_FROM] <= self.next_seq + lost:
                return False                 # head sectors hold appends only: from == seq
        elif t == T_BOOT:
            if rec[0] != self.boot + 1:
                return False
        elif t == T_EPOCH:
            if len(rec) != 2 or not self.next_seq <= rec[1] <= self.next_seq + lost:
                return False
        elif t == T_EVENT:
            if not _uint(rec[0]) or not self.next_seq <= rec[0] <= self.next_seq + lost:
                return False
        return self._apply(t, rec, lost)

    def _apply(self, t, rec, lost=0):
        """Apply a head record; False if it is not one the log could have
        written (wrong shape or types, seq not increasing)."""
        if not isinstance(rec, list):
            return False
        if t == T_DATA:
            if not _valid_data(rec) or rec[R_SEQ] < self.next_seq:
                return False
            self.next_seq = rec[R_SEQ] + 1
            if rec[R_EPOCH] != self.epoch:          # its EPOCH record was lost
                self.epoch = rec[R_EPOCH]
                self.epoch_seq0 = rec[R_FROM]
            self.last = rec
        elif t == T_ACK:
            if len(rec) != 2 or not _uint(rec[0]) or not _uint(rec[1]) \
                    or rec[1] >= self.next_seq + lost:
                return False
            if rec[1] > self.acked:
                self.acked = rec[1]
                if self.events:
                    self.events = [e for e in self.events if e[0] > rec[1]]
        elif t == T_BOOT:
            if len(rec) != 2 or not _uint(rec[0]) or not isinstance(rec[1], str):
                return False
            if rec[0] > self.boot:
                self.boot = rec[0]
                self.boot_reason = rec[1]
        elif t == T_EPOCH:
            if len(rec) != 2 or not _uint(rec[0]) or not _uint(rec[1]):
                return False
            self.epoch = rec[0]
            self.epoch_seq0 = rec[1]
            self.last = None
        elif t == T_CONFIG:
            if len(rec) != 1 or not _uint(rec[0]):
                return False
            self.config_version = rec[0]
        elif t == T_EVENT:
            from agent import partlog
            return partlog.apply(self, rec, lost)
        elif t == T_HIST:
            if not _valid_hist(rec) or rec[0] >= self.next_seq + lost:
                return False
            self._snap(rec, -1)          # kept in RAM unless _scan_head finds it read as stored
        return True

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
                done = self._first[s] + self._span[s] <= self.acked
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

    def _nfree(self):
        n = 0
        for k in self._kind:
            if k < K_HEAD:
                n += 1
        return n

    def _pick(self):
        """Least-worn free sector; ties go to the next one after the head
        (no list of N sectors is built: a 1 MiB log has 256)."""
        best = -1
        h = self._head if self._head >= 0 else self.N - 1
        for i in range(self.N):
            if self._kind[i] >= K_HEAD:
                continue
            if best < 0 or self._wear[i] < self._wear[best] or (
                    self._wear[i] == self._wear[best]
                    and (i - h - 1) % self.N < (best - h - 1) % self.N):
                best = i
        return best

    def _prepare(self, s):
        self._inval()
        if self._kind[s] != K_CLEAN:
            self.dev.erase(s)
            self._wear[s] += 1
            self._kind[s] = K_CLEAN

    def _open_head(self, need):
        st = [self.epoch, self.epoch_seq0, self.next_seq, self.acked, self.boot,
              self.boot_reason, self.last, self.config_version, self._ident()]
        h = self.snap
        if h is not None or self.parts or self.events:
            # a log without either keeps its 9-item state; the snapshot's words
            # read back from the old head, which stays until the new one is written
            st.append(None if h is None else [h[0], h[1], bytes(self.hist_words())])
        if self.parts or self.events:
            st.append(self.parts)
            st.append(self.events)
        state = bytearray()
        cbor._head(state, 4, len(st))
        hend = 0
        for k in range(len(st)):
            if k == 10:
                state.extend(st[k] or b"\xa0")     # the slot table, already CBOR
            else:
                cbor.encode_into(state, st[k])
            if k == 9:
                hend = len(state)           # the snapshot's words end here
        hist = st[9] if h is not None else None
        st = None
        rs = _align(HDR + len(state))
        if rs + need > self.S:
            raise LogError("log: a %d-byte record does not fit a %d-byte sector with its state block"
                           % (need, self.S))
        while self._nfree() < 2:          # one for the head, one kept for compaction
            self._compact()
        s = self._pick()
        self._prepare(s)
        order = self._max_order + 1
        self._inval()
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
        if hist is not None:
            self._snap(hist, s * self.S + HDR + hend - len(hist[2]))

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
        self._inval()
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

    @property
    def hist(self):
        """The newest stress snapshot [seq, version, words] (new objects, its
        words read from the device), or None."""
        h = self.snap
        return None if h is None else [h[0], h[1], bytes(self.hist_words())]

    def hist_words(self):
        """The newest stress snapshot's words: a memoryview of the device's
        bytes valid until the log reads again (or the words kept in RAM)."""
        h = self.snap
        return self._view(h[2], h[3]) if isinstance(h[2], int) else h[2]

    def _snap(self, rec, addr):
        """Keep rec [seq, version, words] as the newest snapshot, its words at
        device address addr (-1: not on the device as read: kept in RAM)."""
        self.snap = [rec[0], rec[1], addr if addr >= 0 else rec[2], len(rec[2])]

    def note_config(self, version):
        """Persist the remote config version now in force (an int). It
        survives reboots, compaction and reclaim: every new head sector's
        state block carries it."""
        self._ready()
        if not isinstance(version, int) or version < 0:
            raise ValueError("log: config version must be a non-negative int, not %r" % (version,))
        self._put(T_CONFIG, cbor.dumps([version]))
        self.config_version = version

    def note_hist(self, seq, version, words):
        """Persist a stress-histogram snapshot: the counts (4-byte words) as
        they were when interval seq closed. The newest one survives reboots,
        compaction and reclaim (every new head sector's state block carries
        it); a power cut loses what was counted after it."""
        self._ready()
        if not (_uint(seq) and 1 <= seq < self.next_seq and _uint(version)
                and isinstance(words, (bytes, bytearray)) and len(words) % 4 == 0):
            raise ValueError("log: a stress snapshot is [logged seq, version, 4-byte words]")
        rec = [seq, version, words]
        p = cbor.dumps(rec)
        self._put(T_HIST, p)
        # its words end the record's payload, in the head sector
        self._snap(rec, self._head * self.S + self._pos - _align(_FRAME + len(p)) + 3 + len(p) - len(words))

    def start_boot(self, reason):
        """Record a new boot; returns the boot number (persisted, increments)."""
        self._ready()
        b = self.boot + 1
        self._put(T_BOOT, cbor.dumps([b, reason]))
        self.boot = b
        self.boot_reason = reason
        return b

    def event(self, kind, slot, comp, wall_s, odo, detail=""):
        """Log a component event in the interval in progress (seq = next_seq);
        returns it (agent/partlog.py E_* list) once durable; self.parts, the
        slot table, follows it. At most MAX_EVENTS stay unacked, in a state
        block of at most half a sector: past that LogError, nothing written.
        (The code is agent/parts.py's, in a bundle only with parts on.)"""
        from agent.parts import log_event
        return log_event(self, kind, slot, comp, wall_s, odo, detail)

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
        if self.events:
            self.events = [e for e in self.events if e[0] > seq]
        self._oldest = None
        self._reclaim()
        return n

    # -- reading ----------------------------------------------------------------

    def depth(self):
        """Unacked intervals."""
        return self.next_seq - 1 - self.acked

    def _data(self, srcs, floor, tail):
        """Yield the DATA records of sectors srcs (in logical order) with seq
        > floor, decoded and checked, oldest first. Wherever seqs are missing
        (records lost to damage), a gap record stands for them: F_GAP |
        F_DAMAGED, from_seq..seq the missing range, the odometers of the
        record before it (of the one after it when none was read). With tail,
        seqs missing after the last record up to next_seq - 1 get one too."""
        prev = None
        top = floor           # every seq up to top is acked or yielded
        seen = 0              # highest seq read: later records must exceed it
        for s in srcs:
            end = self._pos if s == self._head else self.S
            for t, n, pos in self._frames(s, self._rstart[s], end):
                if t != T_DATA:
                    continue
                try:
                    rec = cbor.loads(self._fv[3:3 + n])
                except ValueError:
                    rec = None
                if not _valid_data(rec) or rec[R_SEQ] <= seen or (self._fixed and not self._follows(
                        s, rec, seen)):
                    self._note(s, pos, False)    # a valid CRC but not a record we wrote
                    continue
                seen = rec[R_SEQ]
                if seen <= floor:
                    prev = rec
                    continue
                if rec[R_FROM] > top + 1:
                    yield _gap(prev, rec, top + 1, rec[R_FROM] - 1)
                top = seen
                prev = rec
                yield rec
        if tail and top < self.next_seq - 1:
            if prev is None:
                prev = self.last
            if prev is not None:
                yield _gap(prev, None, top + 1, self.next_seq - 1)

    def _follows(self, s, rec, seen):
        """A repaired record must continue the seqs exactly, fit its sector
        (a compacted one's range; one seq per record in a head-type one)."""
        if rec[R_FROM] != (seen + 1 if seen else self._first[s]):
            return False
        if self._kind[s] == K_COMP:
            return rec[R_SEQ] <= self._first[s] + self._span[s]
        return rec[R_FROM] == rec[R_SEQ]

    def pending(self, limit=60, after=0):
        """Up to `limit` unacked DATA records with seq > after, oldest first
        (decoded lists; gap records where damage lost seqs). Sectors wholly
        at or below that seq are skipped unread, so a pipelined drain costs
        one pass, not one per batch."""
        out = []
        floor = self.acked if self.acked > after else after
        if self.next_seq - 1 <= floor:
            return out
        live = self._live()
        last = len(live) - 1
        srcs = []
        for j in range(len(live)):
            if j < last and self._first[live[j + 1]] <= floor + 1:
                continue                    # every record here is <= floor
            srcs.append(live[j])
        for rec in self._data(srcs, floor, True):
            out.append(rec)
            if len(out) >= limit:
                break
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
            end = self._pos if s == self._head else self.S
            for t, n, pos in self._frames(s, self._rstart[s], end):
                if t >= 0:
                    yield s, self._kind[s], t, self._fv[3:3 + n]

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
            # dropping: an intact record does not take in the damage gap after
            # it (the merged record would end on a seq nobody appended, with
            # the damaged flag over intact ones); the gap goes on into the
            # records after it, or stays alone. gap == 2 (that still does not
            # fit) merges everything, as a last resort.
            return gap == 2 or not (b[R_FLAGS] & F_DAMAGED and not a[R_FLAGS] & F_DAMAGED)
        # a damage gap (seqs the log could not read back) is never coalesced:
        # merged with intact intervals its flags would call them unreadable
        # and its copied values would count twice in their gauges
        return ((a[R_FLAGS] | b[R_FLAGS]) & F_DAMAGED == 0
                and a[R_SCHEMA] == b[R_SCHEMA] and a[R_SEQ] + 1 == b[R_FROM]
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
        if gap == 1 and not a[R_FLAGS] & b[R_FLAGS] & F_DAMAGED:
            r[R_FLAGS] &= ~F_DAMAGED            # it ends on an intact record: a drop, not damage
        if not gap and self.merge:
            r[R_VALUES] = self.merge(a[R_VALUES], b[R_VALUES], span_a, span_b)
        return r, span_a

    def _stream(self, srcs, excess, gap, emit):
        """Feed the unacked DATA records of srcs (oldest first) to emit(rec),
        merging the oldest while excess > 0. Returns (remaining excess,
        records merged away). At most three records are in memory."""
        carry = None
        merged = 0
        for rec in self._data(srcs, self.acked, False):
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
        if len(live) < 2 or not self._nfree():
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
                size[0] = 0
                rest, _ = self._stream((a, b), excess, True, measure)
                if rest > 0:
                    gap = 2                     # damage gaps kept apart still do not fit
        spare = self._pick()
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
        self._inval()
        self.dev.program(base, hdr)
        self.dev.sync()
        self._kind[spare] = K_COMP
        self._order[spare] = self._order[b]
        self._lo[spare] = self._lo[a]
        self._gen[spare] = gen
        self._first[spare] = pos[1]
        self._span[spare] = pos[2] - pos[1] if pos[2] > pos[1] else 0
        self._rstart[spare] = COMP_START
        self._kind[a] = K_DIRTY
        self._kind[b] = K_DIRTY
        self._oldest = None
        self.compactions += 1
        if not pos[2]:
            self._kind[spare] = K_DIRTY         # nothing was pending after all


def read_bound(S, N, damaged=0):
    """Device reads recovery makes at most: a header and a state block per
    sector, the head's again, its records through the window (a record
    that crosses the window's end costs a read of its own), and for each
    damaged or corrected header or record a few more (resync and repair)."""
    w = _WIN if S > _WIN else S
    return 2 * N + 2 + 2 * ((S + w - 1) // w) + 2 + 16 * damaged


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
