# Power-cut harness for the ring log, after littlefs's: a workload that wraps
# the ring several times with acks, coalescing and overflow is cut at every
# program and every erase in turn, with every way of tearing it; after each
# cut the log is recovered and the seven invariants of DESIGN section 3 are
# checked against a reference model of what the log promised, and an eighth:
# the newest stress snapshot (T_HIST) is the last one written, or the one in
# flight when the power went. With swaps=True (Model) the workload swaps
# parts in three slots, reconciled after every recovery as agent/parts.py
# does: each swap must come out as exactly one removed and one installed
# event (T_EVENT), and the slot table as the parts in place.
# Portable: runs on CPython (with snapshots, fast) and MicroPython (replay).
# Over 500 lines on purpose: the power-cut and the silent-damage harness share
# the reference model and the invariant checks; apart, each would copy them.

from agent.log import (RingLog, R_SEQ, R_FROM, R_VALUES, F_GAP, F_DAMAGED, R_FLAGS, LogError,
                       read_bound)
from agent.partlog import table
from hil.nor import EmulatedNOR, PowerCut, TEARS
from hil.rng import Rng

SCHEMA_ID = 77
MAX_SPAN = 4     # small, so a full ring runs out of merges and must drop


def merge(a, b, span_a, span_b):
    # column 0 is an odometer (later value wins), column 1 a max gauge
    return [b[0], a[1] if a[1] > b[1] else b[1]]


class Model:
    """What the log has promised: appends, acks and boots that returned, and
    the one operation in flight when power went. With events=True the
    workload also logs component events (T_EVENT): those that returned must
    stay, exactly once, until an ack covers their seq, and the slot table
    must be the one they left."""

    def __init__(self, events=False, swaps=False):
        self.appended = {}     # seq -> values, for appends that returned
        self.acked = 0
        self.boot = 0
        self.inflight = None   # ("append", seq, values) | ("ack", seq) | ("boot", n) | ("event", ...) | ("hist", rec)
        self.odo = 0
        self.track = events or swaps
        self.events = {}       # (seq, idx) -> event, for events that returned (kept after acks)
        self.parts = {}        # the slot table they left
        # swaps=True: parts swapped in three slots, reconciled as agent/parts.py
        # does (removed, then installed), again after every recovery
        self.swaps = swaps
        self.phys = {}         # slot -> the part physically in it
        self.swapped = []      # (slot, old part or None, new part), every swap made
        self.nparts = 0
        self.hist = None       # the newest stress snapshot (T_HIST) whose write returned
        self.hists = []        # every one that returned
        self.hcount = 0

    def copy(self):
        m = Model(self.track, self.swaps)
        m.phys = dict(self.phys)
        m.swapped = list(self.swapped)
        m.nparts = self.nparts
        m.events = dict(self.events)
        m.parts = dict(self.parts)
        m.appended = dict(self.appended)
        m.acked = self.acked
        m.boot = self.boot
        m.inflight = self.inflight
        m.odo = self.odo
        m.hist = self.hist
        m.hists = list(self.hists)
        m.hcount = self.hcount
        return m


class Driver:
    """Runs workload operations on a log, keeping the model in step."""

    def __init__(self, log, model, rng, hists=True):
        self.log = log
        self.m = model
        self.rng = rng
        self.hists = hists      # stress snapshots among the operations

    def append(self):
        m = self.m
        m.odo += self.rng.below(100)
        vals = [m.odo, self.rng.below(5000)]
        seq = self.log.next_seq
        m.inflight = ("append", seq, vals)
        got = self.log.append(SCHEMA_ID, m.boot, seq * 60000, 0, 0, 60000, vals)
        m.appended[got] = vals
        m.inflight = None

    def ack(self):
        log = self.log
        m = self.m
        if log.depth() <= 0:
            return
        seq = log.acked + 1 + self.rng.below(log.depth())
        m.inflight = ("ack", seq)
        if log.ack(log.epoch, seq):
            m.acked = seq
        m.inflight = None

    def boot(self):
        m = self.m
        m.inflight = ("boot", m.boot + 1)
        m.boot = self.log.start_boot("watchdog")
        m.inflight = None

    def event(self):
        """A part installed in or removed from one of three slots."""
        m = self.m
        slot = "s%d" % self.rng.below(3)
        after = dict(m.parts)
        if slot in m.parts:
            kind, comp = "removed", m.parts[slot]
            del after[slot]
        else:
            kind, comp = "installed", "c-%d" % self.rng.below(1000)
            after[slot] = comp
        m.inflight = ("event", kind, slot, comp, after)
        try:
            ev = self.log.event(kind, slot, comp, 0, {"odo": m.odo}, "")
        except LogError:
            m.inflight = None           # eight unacked already: refused, nothing written
            return
        m.events[(ev[0], ev[1])] = ev
        m.parts = after

    def _event(self, kind, slot, comp):
        m = self.m
        after = dict(m.parts)
        if kind == "installed":
            after[slot] = comp
        else:
            del after[slot]
        m.inflight = ("event", kind, slot, comp, after)
        try:
            ev = self.log.event(kind, slot, comp, 0, {"odo": m.odo}, "swap")
        except LogError:
            m.inflight = None           # no room (unacked events): tried again at the next reconcile
            return False
        m.events[(ev[0], ev[1])] = ev
        m.parts = after
        m.inflight = None
        return True

    def reconcile(self):
        """What agent/parts.py does when it reads a slot: a part other than
        the table's is a removed event for the old one (if any), then an
        installed one for the new; the table as the events left it is the
        log's, so after a cut between the two only the second is logged."""
        m = self.m
        for slot in sorted(m.phys):
            want = m.phys[slot]
            known = table(self.log).get(slot)
            if known == want:
                continue
            if known is not None and not self._event("removed", slot, known):
                return
            self._event("installed", slot, want)

    def swap(self):
        """A part in one of three slots replaced by a new one (the first
        time: fitted), then reconciled."""
        m = self.m
        if len(self.log.events) > 1:
            self.append()               # room for both events of a swap: keep them acked first
            return
        slot = "s%d" % self.rng.below(3)
        m.nparts += 1
        new = "c-%d" % m.nparts
        m.swapped.append((slot, m.phys.get(slot), new))
        m.phys[slot] = new
        self.reconcile()

    def hist(self):
        """A stress-histogram snapshot (T_HIST) of the last logged seq: two
        counts that only grow."""
        m = self.m
        log = self.log
        if log.next_seq <= 1:
            return
        m.hcount += 1 + self.rng.below(1000)
        c = m.hcount
        words = bytes([c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF, c >> 24, 7, 0, 0, 0])
        rec = [log.next_seq - 1, 77, words]
        m.inflight = ("hist", rec)
        log.note_hist(rec[0], rec[1], rec[2])
        m.hist = rec
        m.hists.append(rec)
        m.inflight = None

    def step(self, i, n):
        """Operation i of a workload of n: acks flow in the first and last
        thirds; the middle third is offline, so the ring fills and coalesces."""
        r = self.rng.below(100)
        if self.m.swaps and r >= 96:
            self.swap()
        elif self.m.track and r >= 96:
            self.event()
        elif r < 3:
            self.boot()
        elif r < 15 and not (n // 3 <= i < 2 * n // 3):
            self.ack()
        elif r >= 95 and self.hists:
            self.hist()
        else:
            self.append()


def _events_check(log, m, bad):
    inf = m.inflight if m.inflight and m.inflight[0] == "event" else None
    got = {}
    for e in log.events:
        k = (e[0], e[1])
        if k in got:
            bad.append("E: event %r twice" % (k,))
        got[k] = e
    for k, e in m.events.items():
        if k[0] > log.acked and got.get(k) != e:
            bad.append("E: event %r lost or changed (acked %d)" % (k, log.acked))
    for k, e in got.items():
        if k not in m.events and not (inf and (e[2], e[3], e[4]) == inf[1:4]):
            bad.append("E: phantom event %r" % (e,))
    tab = table(log)
    if tab != m.parts and not (inf and tab == inf[4]):
        bad.append("E: slot table %r, model %r" % (tab, m.parts))


def _swaps_check(log, m, bad):
    """Every swap made is exactly one removed event for the old part and one
    installed for the new among every event the log made durable (acked or
    not), and the slot table is the parts physically in place."""
    n = {}
    for e in m.events.values():
        k = (e[2], e[3], e[4])
        n[k] = n.get(k, 0) + 1
    for slot, old, new in m.swapped:
        for k in ((("removed", slot, old),) if old else ()) + (("installed", slot, new),):
            if n.get(k, 0) != 1:
                bad.append("swap: %s %s in %s logged %d times" % (k[0], k[2], slot, n.get(k, 0)))
    if table(log) != m.phys:
        bad.append("swap: slot table %r, parts in place %r" % (table(log), m.phys))


def workload(log, model, seed, n, hists=True):
    d = Driver(log, model, Rng(seed), hists)
    if model.boot == 0:
        d.boot()
    if model.swaps and not model.swapped:
        for slot in ("s0", "s1", "s2"):         # the parts fitted at the start
            model.nparts += 1
            new = "c-%d" % model.nparts
            model.swapped.append((slot, None, new))
            model.phys[slot] = new
        d.reconcile()
    for i in range(n):
        d.step(i, n)
    return d


def recover(dev):
    """Power back: recovery, exactly as a device boots (fresh object)."""
    dev.reboot()
    return RingLog(dev, "dev-cut", merge=merge, max_span=MAX_SPAN).open()


def check(log, m, dev, lose=None, floor=None, recs=None):
    """Violations of the invariants (list of strings; empty when all hold).
    lose: (from, seq) of the record silent damage made unreadable (it may
    come back as a gap);
    floor: (next_seq, acked, odometer) before the damage, which must not go back."""
    bad = []
    inf = m.inflight
    S = dev.sector_size
    N = dev.sector_count
    # 6. recovery bounded: every header with its state block, then the head
    #    sector through a fixed window
    bound = read_bound(S, N, log.damaged + log.corrected)
    if log.recovery_reads > bound:
        bad.append("6: recovery made %d reads (bound %d)" % (log.recovery_reads, bound))
    # 4. the acked position never goes back (nor beyond an ack in flight)
    hi = m.acked
    if inf and inf[0] == "ack" and inf[1] > hi:
        hi = inf[1]
    if not m.acked <= log.acked <= hi:
        bad.append("4: acked %d, model %d..%d" % (log.acked, m.acked, hi))
    b_hi = m.boot + (1 if inf and inf[0] == "boot" else 0)
    if not m.boot <= log.boot <= b_hi:
        bad.append("boot %d, model %d..%d" % (log.boot, m.boot, b_hi))
    if recs is None:
        recs = log.pending(1 << 30)
    # 3. no phantom, duplicate or reordered records; seq never goes back
    prev = 0
    top = max(m.appended) if m.appended else 0
    for r in recs:
        s = r[R_SEQ]
        if r[R_FROM] <= prev or s < r[R_FROM]:
            bad.append("3: record %d..%d after %d" % (r[R_FROM], s, prev))
        prev = s
        if r[R_FLAGS] & F_DAMAGED:
            # seqs damage made unreadable: only the one hit, or the append
            # torn by the power cut, may be among them; the odometer of a
            # gap never goes back
            for q in range(r[R_FROM], s + 1):
                if q in m.appended and not (lose and lose[0] <= q <= lose[1]):
                    bad.append("lost: intact record %d reported as damaged" % q)
                    break
            continue
        if s in m.appended:
            want = m.appended[s]
        elif inf and inf[0] == "append" and inf[1] == s:
            want = inf[2]
        else:
            bad.append("3: phantom record seq %d" % s)
            continue
        # 1/2. intact: a plain record exactly, a merged one keeps the odometer
        if r[R_FROM] == s:
            if r[R_VALUES] != want:
                bad.append("1: seq %d values %r, appended %r" % (s, r[R_VALUES], want))
        elif r[R_VALUES][0] != want[0]:
            bad.append("1: merged record %d lost its odometer (%r vs %r)" % (s, r[R_VALUES], want))
    if log.next_seq <= top:
        bad.append("3: next seq %d does not exceed %d" % (log.next_seq, top))
    if floor is not None:
        nx, ak, odo = floor
        if log.next_seq < nx:
            bad.append("rewind: next seq %d, was %d before the damage" % (log.next_seq, nx))
        if log.acked < ak:
            bad.append("rewind: acked %d, was %d before the damage" % (log.acked, ak))
        o = -1
        for r in recs:
            if r[R_VALUES][0] < o:
                bad.append("rewind: odometer %d after %d at seq %d" % (r[R_VALUES][0], o, r[R_SEQ]))
                break
            o = r[R_VALUES][0]
        if log.last is not None and log.last[R_VALUES][0] < odo:
            bad.append("rewind: last odometer %d, was %d" % (log.last[R_VALUES][0], odo))
    # 1. every returned append is covered: acked, or by a (merged) record
    j = 0
    for s in sorted(m.appended):
        if s <= log.acked:
            continue
        while j < len(recs) and recs[j][R_SEQ] < s:
            j += 1
        if j == len(recs) or recs[j][R_FROM] > s:
            bad.append("1: appended seq %d is gone (acked %d)" % (s, log.acked))
            break
        if recs[j][R_FLAGS] & F_DAMAGED and not (lose and lose[0] <= s <= lose[1]):
            bad.append("lost: appended seq %d is in a damage gap" % s)
            break
    if m.track:
        _events_check(log, m, bad)
    # 8. the newest stress snapshot (T_HIST): after a cut, the last one that
    #    returned or the one in flight; after silent damage, one the log wrote
    got = log.hist
    if floor is None and lose is None:
        if got != m.hist and not (inf and inf[0] == "hist" and got == inf[1]):
            bad.append("hist: newest snapshot %r, model %r" % (got, m.hist))
    elif got is not None and got not in m.hists:
        bad.append("hist: a snapshot the log never wrote: %r" % (got,))
    # 5. space: the log lives in the device it was given
    if len(dev.image) != S * N:
        bad.append("5: flash image changed size")
    return bad


def settle(log, m):
    """After a recovery, bring the model in line with what survived."""
    inf = m.inflight
    if inf and inf[0] == "append":
        for r in log.pending(1 << 30):
            if r[R_SEQ] == inf[1] and not r[R_FLAGS] & F_DAMAGED:
                m.appended[inf[1]] = inf[2]
    if inf and inf[0] == "event":
        for e in log.events:
            if (e[0], e[1]) not in m.events and (e[2], e[3], e[4]) == inf[1:4]:
                m.events[(e[0], e[1])] = e
        m.parts = table(log)
    if inf and inf[0] == "hist" and log.hist == inf[1]:
        m.hist = inf[1]
        m.hists.append(inf[1])
    m.acked = log.acked
    m.boot = log.boot
    m.inflight = None


class Result:
    def __init__(self):
        self.cuts = 0
        self.double = 0
        self.violations = []
        self.ops = 0
        self.wraps = 0
        self.coalesced = 0
        self.dropped = 0
        self.events = 0          # component events logged by the traced runs (events=True)
        self.swaps = 0           # swaps checked after the cuts (swaps=True), summed over cut points
        self.hists = 0          # stress snapshots (T_HIST) written by the workloads

    def add(self, where, bad):
        for b in bad:
            if len(self.violations) < 20:
                self.violations.append("%s: %s" % (where, b))


def _after_cut(dev, m, res, where, seed, double_at):
    """Recover, check, run a little more (optionally cutting again), check."""
    log = recover(dev)
    res.add(where, check(log, m, dev))
    settle(log, m)
    d = Driver(log, m, Rng(seed))
    if double_at is not None:
        dev.cut_at = dev.ops + double_at
        dev.tear = TEARS[seed % len(TEARS)]
        res.double += 1
    try:
        if m.swaps:
            d.reconcile()               # the slots read at boot
        for i in range(12):
            d.append() if i % 4 else d.ack()
    except PowerCut:
        log = recover(dev)
        res.add(where + " +second cut", check(log, m, dev))
        settle(log, m)
        d = Driver(log, m, Rng(seed + 1))
        if m.swaps:
            d.reconcile()
        for i in range(4):
            d.append()
    bad = check(log, m, dev)
    if m.swaps:
        _swaps_check(log, m, bad)
        res.swaps += len(m.swapped)
    res.add(where + " +continued", bad)


def run_snapshots(geometry=(512, 8), n=300, seed=1, tears=TEARS, every=1, double_every=10,
                  res=None, events=False):
    """CPython: one traced run records the flash and the model before every
    op; each cut restores that state, tears op k, recovers and checks."""
    ss, count = geometry
    trace = []
    model = Model(events)

    class Tracing(EmulatedNOR):
        def program(self, addr, data):
            trace.append((self.snapshot(), model.copy(), "p", addr, bytes(data)))
            return EmulatedNOR.program(self, addr, data)

        def erase(self, sector):
            trace.append((self.snapshot(), model.copy(), "e", sector, None))
            return EmulatedNOR.erase(self, sector)

    dev = Tracing(ss, count, seed=seed)
    log = RingLog(dev, "dev-cut", merge=merge, max_span=MAX_SPAN).open()
    workload(log, model, seed, n)
    res = res or Result()
    res.ops += len(trace)
    res.wraps += sum(dev.erase_counts) // count
    res.coalesced += log.coalesced
    res.dropped += log.dropped
    res.events += len(model.events)
    res.hists += len(model.hists)
    final = check(recover(dev), model, dev)
    res.add("seed %d uncut" % seed, final)
    plain = EmulatedNOR(ss, count, seed=seed)
    for k in range(0, len(trace), every):
        snap, m0, kind, a, data = trace[k]
        for tear in tears:
            if kind == "e" and tear == "prefix":
                continue            # an erase has no prefix; "random" covers it
            plain.restore(snap)
            plain.cut_at = k
            plain.tear = tear
            m = m0.copy()
            try:
                if kind == "p":
                    plain.program(a, data)
                else:
                    plain.erase(a)
            except PowerCut:
                pass
            res.cuts += 1
            dbl = (k * 7 + len(tear)) % 30 if double_every and k % double_every == 0 else None
            _after_cut(plain, m, res, "seed %d op %d (%s %s)" % (seed, k, kind, tear),
                       seed + k, dbl)
    return res


def _wipe(dev, seed):
    """A factory-fresh device again, without allocating a new image."""
    dev.reboot()
    for i in range(dev.sector_count):
        dev.erase(i)
        dev.erase_counts[i] = 0
    dev.ops = 0
    dev.reset_counters()
    dev.rng = Rng(seed)


def run_replay(geometry=(512, 4), n=80, seed=1, tears=TEARS, every=3, res=None, limit=None, swaps=False):
    """MicroPython: replay the workload from scratch up to op k for each cut
    (no snapshots: a small heap cannot hold them); swaps=True: parts are
    swapped in the workload (component events, Model)."""
    ss, count = geometry
    res = res or Result()
    k = 0
    done = 0
    dev = EmulatedNOR(ss, count, seed=seed)
    while True:
        _wipe(dev, seed)
        tear = tears[(k // every) % len(tears)]
        dev.cut_at = k
        dev.tear = tear
        m = Model(swaps=swaps)
        try:
            log = RingLog(dev, "dev-cut", merge=merge, max_span=MAX_SPAN).open()
            workload(log, m, seed, n)
            res.hists += len(m.hists)
            res.events += len(m.events)
            return res                      # no op k: every op has been cut
        except PowerCut:
            pass
        res.cuts += 1
        _after_cut(dev, m, res, "seed %d op %d (%s)" % (seed, k, tear), seed + k,
                   (k % 7) if k % 5 == 0 else None)
        k += every
        done += 1
        if limit and done >= limit:
            return res


# -- silent damage ------------------------------------------------------------------
# Flash also fails quietly: a bit flips in a sector written fine, a byte reads
# back wrong. A workload's image is damaged at one point at a time (a single
# bit flipped, or one byte replaced), in every offset class of every sector
# position, then recovered and checked: the invariants above, plus no intact
# record lost (single-point damage is corrected, so not even the damaged one)
# and neither seq, the acked position nor the odometers go back. Two more
# classes reach the resync path: two damaged bytes in one record (beyond
# correction: that record alone becomes a gap) and a crafted record (a valid
# CRC over a payload the log never writes: likewise).

CLASSES = ("header", "state", "type", "length", "body", "crc", "ack", "hist", "event", "free",
           "two-bytes", "crafted")


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def layout(img, S, s):
    """Byte ranges of sector s by class, parsed at the offsets
    docs/ring-format.md gives: [(class, start, end, seq or 0), ...]."""
    base = s * S
    out = []
    if bytes(img[base:base + 4]) != b"TLR1":
        return out
    slen = _u16(img, base + 20)
    comp = img[base + 22] & 1
    out.append(("header", base, base + 23, 0))
    out.append(("header", base + 24, base + 28, 0))
    out.append(("state", base + 32, base + 32 + slen, 0))
    pos = 56 if comp else (32 + slen + 3) & ~3
    while pos + 7 <= S:
        t = img[base + pos]
        if t == 0xFF:
            break
        n = _u16(img, base + pos + 1)
        if pos + 7 + n > S:
            break
        seq = 0
        a = base + pos
        if t == 3:
            seq = _seq_of(img, a + 3)
            out.append(("type", a, a + 1, seq))
            out.append(("length", a + 1, a + 3, seq))
            out.append(("body", a + 3, a + 3 + n, seq))
            out.append(("crc", a + 3 + n, a + 7 + n, seq))
            out.append(("two-bytes", a + 3, a + 3 + n, seq))
            out.append(("crafted", a + 3, a + 3 + n, seq))
        elif t == 5:
            out.append(("ack", a, a + 7 + n, 0))
        elif t == 7:
            out.append(("hist", a, a + 7 + n, 0))
        elif t == 8:
            out.append(("event", a, a + 7 + n, 0))
        pos = (pos + 7 + n + 3) & ~3
    if pos < S:
        out.append(("free", base + pos, base + S, 0))
    return out


def _uint_at(img, a):
    ib = img[a]
    if ib < 24:
        return ib, a + 1
    k = {24: 1, 25: 2, 26: 4, 27: 8}.get(ib, 0)
    v = 0
    for i in range(k):
        v = (v << 8) | img[a + 1 + i]
    return v, a + 1 + k


def _seq_of(img, a):
    """(from_seq, seq) of the DATA payload at a: 0x8b (array of 11), seq, from."""
    seq, p = _uint_at(img, a + 1)
    frm, _ = _uint_at(img, p)
    return (frm, seq)


def _crc_fix(img, a, n):
    """Recompute the CRC of the record whose payload (n bytes) starts at a."""
    import binascii
    c = binascii.crc32(bytes(img[a - 3:a + n])) & 0xFFFFFFFF
    for i in range(4):
        img[a + n + i] = (c >> (8 * i)) & 0xFF


def damage_points(img, S, N, head, kinds, rng, per_range=None):
    """(description, list of (addr, new byte), lose seq) for each damage
    point of the clean image: every byte of every range, each flipped bit
    (and a random byte value) for single-point classes."""
    for s in range(N):
        pos_name = "newest" if s == head else ("compacted" if kinds[s] == 3 else "older")
        if kinds[s] < 2:
            continue
        for cls, a, b, seq in layout(img, S, s):
            if a >= b:
                continue
            offs = range(a, b)
            if per_range and b - a > per_range:
                offs = [a + rng.below(b - a) for _ in range(per_range)]
            where = "%s %s" % (pos_name, cls)
            if cls == "two-bytes":
                for o in offs:
                    o2 = a + (o - a + 1 + rng.below(b - a - 1)) % (b - a) if b - a > 1 else o
                    if o2 == o:
                        continue
                    yield where, [(o, img[o] ^ (1 + rng.below(255))), (o2, img[o2] ^ (1 + rng.below(255)))], seq
            elif cls == "crafted":
                continue                # _crafted: one image per DATA record
            else:
                for o in offs:
                    for bit in range(8):
                        yield where, [(o, img[o] ^ (1 << bit))], 0
                    yield where, [(o, img[o] ^ (1 + rng.below(255)))], 0


def _state(lg):
    return (lg.sectors(), lg.next_seq, lg.acked, lg.boot, lg.epoch, lg.last, lg._head, lg._pos,
            lg._closed, lg.config_version, lg.hist, lg.parts, lg.events)


class DamageResult:
    def __init__(self):
        self.points = 0
        self.classes = {}
        self.violations = []
        self.corrected = 0
        self.counted = {}        # class -> points whose damage the recovery counted (corrected or a gap)
        self.gaps = 0
        self.fast = 0

    def add(self, where, bad):
        for b in bad:
            if len(self.violations) < 20:
                self.violations.append("%s: %s" % (where, b))


def _crafted(img, S, N, head, kinds):
    """Images with one DATA record rewritten to a valid CRC but a payload
    the log never writes, one per DATA record: (image, seq)."""
    for s in range(N):
        if kinds[s] < 2:
            continue
        for cls, a, b, seq in layout(img, S, s):
            if cls != "crafted":
                continue
            im = bytearray(img)
            im[a] = 0x8a             # an array of 10, then a trailing byte
            _crc_fix(im, a, b - a)
            yield im, seq, s


def run_damage(geometry=(512, 8), n=300, seed=1, per_range=None, continue_every=8, res=None,
               limit=None, swaps=False):
    """Damage a workload's image at every point (or per_range sampled
    offsets per range), recover, check; every continue_every-th point the
    log also appends and acks afterwards and is checked again. swaps=True:
    the workload swaps parts (component events, T_EVENT records among the
    damaged): a damaged event record is corrected or counted as damage,
    never a slot table that differs from the parts in place (which the
    device would take for a swap)."""
    ss, count = geometry
    res = res or DamageResult()
    dev = EmulatedNOR(ss, count, seed=seed)
    model = Model(swaps=swaps)
    log = RingLog(dev, "dev-cut", merge=merge, max_span=MAX_SPAN).open()
    # (the silent-damage workload keeps its layout of sectors, with free space
    # left in older ones; its one stress snapshot is written at the end)
    d = workload(log, model, seed, n, hists=False)
    # then offline until sectors are compacted, one small ack (the compacted
    # sectors stay live) and a few appends: the newest sector holds data and an ack
    c0 = log.compactions
    while log.compactions < c0 + 3:
        d.append()
    seq = log.acked + 1
    if log.ack(log.epoch, seq):
        model.acked = seq
    d.hist()                                 # the newest sector holds a stress snapshot too
    if swaps:
        d.swap()                             # ... and both events of a swap
    for _ in range(3):
        d.append()
    log = recover(dev)
    clean = bytes(dev.image)
    kinds = [k for k, _, _, _, _ in log.sectors()]
    head = log._head
    top = max(model.appended)
    rng = Rng(seed)
    k = 0
    img = bytearray(clean)
    # the clean image's recovery passes every check; a damaged image whose
    # recovery ends in the same state and reads the damaged sector's records
    # back the same (other sectors are byte for byte the clean ones) passes
    # them too, so only the damaged sector is read back for most points
    ref = recover(dev)
    ref_recs = ref.pending(1 << 30)
    ref_state = _state(ref)
    bad = check(ref, model, dev, recs=ref_recs)
    res.add("seed %d clean" % seed, bad)
    per = {}
    for s in range(count):
        seqs = [r[1] for r in [x[3] for x in layout(clean, ss, s)] if r]
        if seqs:
            lo, hi = min(seqs), max(seqs)
            per[s] = (lo, [r for r in ref_recs if lo <= r[R_SEQ] <= hi])

    def one(cls, where, lose, sector):
        # a record beyond repair takes its odometer with it: the floor is the
        # newest one of an intact record
        top_ok = top if not lose or top < lose[0] else max(q for q in model.appended if q < lose[0])
        floor = (log.next_seq, log.acked, model.appended[top_ok][0])
        lg = recover(dev)
        res.corrected += lg.corrected
        if lg.corrected or lg.damaged:
            res.counted[cls] = res.counted.get(cls, 0) + 1
        cont = continue_every and k % continue_every == 0
        if not cont and sector in per and _state(lg) == ref_state:
            lo, want = per[sector]
            got = lg.pending(len(want) + 1, lo - 1)
            if got[:len(want)] == want and (len(got) == len(want) or got[-1][R_SEQ] > want[-1][R_SEQ]):
                res.points += 1
                res.fast += 1
                res.classes[cls] = res.classes.get(cls, 0) + 1
                return
        recs = lg.pending(1 << 30)
        bad = check(lg, model, dev, lose=lose, floor=floor, recs=recs)
        if swaps and table(lg) != model.phys:
            bad.append("false swap: slot table %r, parts in place %r" % (table(lg), model.phys))
        if bad:
            res.add("seed %d %s" % (seed, where), bad)
        for r in recs:
            if r[R_FLAGS] & F_DAMAGED:
                res.gaps += 1
        if cont:
            m = model.copy()
            settle(lg, m)
            dd = Driver(lg, m, Rng(seed + k))
            bad = []
            if swaps:
                e0 = len(m.events)
                dd.reconcile()
                if len(m.events) != e0:
                    bad.append("false swap: %d events logged after recovery" % (len(m.events) - e0))
            dd.append()
            dd.ack()
            dd.append()
            bad += check(recover(dev), m, dev, lose=lose)
            if bad:
                res.add("seed %d %s +continued" % (seed, where), bad)
        res.points += 1
        res.classes[cls] = res.classes.get(cls, 0) + 1

    for where, pts, lose in damage_points(clean, ss, count, head, kinds, rng, per_range):
        for a, v in pts:
            img[a] = v
        dev.load_image(img)
        dev.erase_counts[:] = [0] * count
        one(where, "%s @0x%x" % (where, pts[0][0]), lose or None, pts[0][0] // ss)
        for a, v in pts:
            img[a] = clean[a]
        k += 1
        if limit and res.points >= limit:
            return res
    for im, seq, sector in _crafted(clean, ss, count, head, kinds):
        dev.load_image(im)
        one("crafted", "crafted seq %d..%d" % seq, seq, sector)
        k += 1
    return res
