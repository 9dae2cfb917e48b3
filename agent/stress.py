# Stress histograms (issue 15, /work/shared/CIRCULAR.md sections 2 and 3):
# monotonic, never-reset counters of the conditions an asset lives under, so
# a life model at the collector (none runs here) can weigh its usage. Only
# parameter-free counts: seconds per load, temperature, humidity x
# temperature, dim-level and vibration-zone bin, condensation seconds and
# entries, switching operations per breaking-current bin, start-rest
# violations; and four readings (vibration baseline and maximum, most starts
# in one hour, lux per watt at full output).
#
# Which histograms a device keeps follows from its channels (agent/channels):
# a power channel gives load (or dim level with a light channel), switching
# and starts; a climate channel temperature, humidity and condensation; an
# accelerometer vibration zones. Bin edges are fixed here and in the board's
# settings (rated power, vibration class and speed); the set's version is a
# hash of the definitions the birth announces (docs/wire.md, "Stress
# histograms").
#
# Persistence and exactly-once (docs/wire.md, docs/ring-format.md): every
# count lives in one array of u32. When an interval closes and `every`
# intervals (60) have passed since the last one, a snapshot (the counts as
# 4-byte little-endian words) goes into the ring log as a T_HIST record
# tagged with that interval's seq; at boot the newest snapshot is restored,
# so a power cut loses at most what was counted since it. A batch
# that holds the snapshot's seq carries it in its `ext` map under key 1:
# the bins changed since the last acked snapshot (two bit masks say which),
# as cumulative values; a full snapshot after every boot and every
# `full_every` snapshots. Portable: CPython and MicroPython; the steady loop
# allocates nothing but small ints.

from array import array
from agent import cbor
from agent.log import _u32       # a 4-byte little-endian word

COUNT = 0         # cumulative, monotonic per bin
LEVEL = 1         # a reading: the latest value (vibration base/max, lux per watt)

# ISO 10816-1 / 10816-3 zone boundaries A/B, B/C, C/D in 0.01 mm/s RMS
# (CIRCULAR.md 2.3): 1, 2 class I and II machines (10816-1); 3, 4 group 2
# rigid and flexible; 5, 6 group 1 rigid and flexible (10816-3).
VIB_CLASSES = ((71, 180, 450), (112, 280, 710), (140, 280, 450), (230, 450, 710),
               (230, 450, 710), (350, 710, 1100))

H_LOAD, H_T, H_RH, H_COND_S, H_COND_N, H_VIB_S, H_VIB, H_SW, H_VIOL, H_STARTS_H, H_DIM, H_LUXW = range(12)

# name, kind, unit, scale, bins, edges (None: from settings)
DEFS = (
    ("load_s", COUNT, "s", 0, 8, (10, 30, 50, 70, 85, 100, 115)),   # % of rated power, while running
    ("t_s", COUNT, "s", 0, 16, (-5, 0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65)),   # Cel
    ("rh_s", COUNT, "s", 0, 24, ((40, 60, 70, 80, 90), (15, 30, 45))),  # %RH x Cel, cell = rh * 4 + t
    ("cond_s", COUNT, "s", 0, 1, (2,)),         # T - dew point < 2 K
    ("cond_events", COUNT, "count", 0, 1, (2,)),    # entries into it
    ("vib_s", COUNT, "s", 0, 4, None),          # zones A..D while running, edges 0.01 mm/s
    ("vib", LEVEL, "mm/s", -2, 2, ()),          # [baseline, maximum] while running
    ("sw_ops", COUNT, "count", 0, 4, (12, 30, 65)),     # breaking current / rated, tenths
    ("starts_viol", COUNT, "count", 0, 1, None),        # starts after less than min rest (s)
    ("starts_h", LEVEL, "count", 0, 1, ()),             # most starts in one hour
    ("dim_s", COUNT, "s", 0, 4, (25, 50, 75)),  # % of rated power, while lit
    ("lux_w", LEVEL, "lx/W", -2, 1, ()),        # lowest lux per watt at full output, this day
)

COND_MARGIN_CK = 200      # condensation: T - Td below 2 K
COND_HYST_CP = 100        # leave it again 1 %RH below the threshold
VIB_SETTLE_MS = 15000     # a start's transient is not the machine's vibration
VIB_BASE_MS = 3600000     # baseline: the mean over the first hour of running
DAY_MS = 86400000
HOUR_MS = 3600000
# Stress._st, one list: the detectors' state (last stop (ms), current while on
# (mA), hour of the start count, starts in it, degree of the condensation
# thresholds, the thresholds at it and one above (<< 14 | ), start of the
# vibration run, baseline ms and sum, flags, snapshots since the last full
# one, seq of the acked snapshot the deltas are against) ...
_STOP, _ONMA, _HOUR, _STARTS, _CDEG, _CTHR, _VSTART, _VBMS, _VBSUM, _FLAGS, _SNAPS, _BASE = range(12)
# ... the settings (intervals between snapshots, snapshots between full ones,
# interval ms, min rest ms, rated W, rated mA, running speed (Hz), vibration
# zone edges) ...
_EVERY, _FULL_EVERY, _IVAL, _REST, _RATED_W, _RATED_MA, _VHZ, _VEDGES = range(12, 20)
# ... the channels it reads (None where the board has none) and the counts.
# Some slots serve two uses that never meet in one Stress, so that the list
# has 24 items (6 GC blocks on a 32-bit port): the switching detector's
# (_STOP, _HOUR, _STARTS, _REST: a power channel, no light) are the mains
# channel's (no power channel), the lux/W day's and the light channel's (a
# luminaire: power and light) and the vibration run level's (mg, without a
# power channel)
_POWER, _CLIMATE, _VIB, _C = range(20, 24)
_MAINS, _DAY, _LIGHT, _VRUN = _STOP, _HOUR, _STARTS, _REST
F_ON = 1          # the power channel saw the asset running
F_COND = 2        # condensing
F_VRUN = 4        # vibrating as running
F_FULL = 8        # no acked snapshot this boot (or full_every since a full one): the next goes whole
F_MINE = 16       # the log's newest snapshot is of our version


def dew_point(t_c, rh_pct):
    """Dew point (Cel) by the Magnus formula with Sensirion's constants
    (b = 17.62, c = 243.12 Cel, valid -45..60 Cel)."""
    import math
    h = math.log(rh_pct / 100.0) + 17.62 * t_c / (243.12 + t_c)
    return 243.12 * h / (17.62 - h)


def _cond_rh(t_c, margin_k):
    """The RH (0.01 %) at which the dew point is margin_k below t_c: the
    condensation threshold, exactly (RH is monotonic in the dew point)."""
    import math
    g0 = 17.62 * t_c / (243.12 + t_c)
    t1 = t_c - margin_k
    g1 = 17.62 * t1 / (243.12 + t1)
    return int(10000 * math.exp(g1 - g0) + 0.5)


def _bin(v, edges):
    i = 0
    for e in edges:
        if v < e:
            return i
        i += 1
    return i


class Stress:
    """Histograms for these channels. opts (board or config settings):
    rated_w (load and dim bins; none: no load/switching/dim histograms),
    rated_ma (the switched current's rating; default rated_w at the bus
    voltage), min_rest_s (60), vib_class (1..6, VIB_CLASSES), vib_hz (25,
    the running speed for mg -> mm/s), vib_run_mg (20: running, without a
    power channel), every (60 intervals between snapshots at most),
    full_every (24 snapshots between full ones), interval_ms (for a
    per-interval meter's freshness)."""

    def __init__(self, channels, opts=None):
        from agent.channels import PowerChannel, MainsChannel, ClimateChannel, VibrationChannel, LightChannel
        o = opts or {}
        cs = [None] * 5                     # power, mains, climate, vibration, light
        for ch in channels:
            for k, cls in ((0, PowerChannel), (1, MainsChannel), (2, ClimateChannel),
                           (3, VibrationChannel), (4, LightChannel)):
                if isinstance(ch, cls):
                    if cs[k] is None:
                        cs[k] = ch
                    break
        power, mains, climate, vib, light = cs
        rated_w = o.get("rated_w", 0)
        for ch in (power, mains):
            if ch is not None and not rated_w:
                rated_w = getattr(ch, "rated_w", 0)
        rated_ma = o.get("rated_ma", 0)
        vc = o.get("vib_class", getattr(vib, "vib_class", 1))
        lum = light is not None and power is not None
        on = []
        if rated_w and (power or mains) and not lum:
            on.append(H_LOAD)
        if climate:
            on += [H_T, H_RH, H_COND_S, H_COND_N]
        if vib:
            on += [H_VIB_S, H_VIB]
        if power and not lum:
            if rated_w or rated_ma:
                on.append(H_SW)
            on += [H_VIOL, H_STARTS_H]
        if lum and rated_w:
            on += [H_DIM, H_LUXW]
        # off[h]: offset of histogram h in the counts, or 0xFFFF; off[12 + h %
        # 10]: its ms not yet a whole second (the seconds histograms: load and
        # dim level, never both, share one); from off[18]: one bit a bin, 16 a
        # word, changed since the newest snapshot (the first half), changed
        # from the acked snapshot to the newest (the second half)
        off = [0xFFFF] * 12
        n = 0
        for h in on:
            off[h] = n
            n += DEFS[h][4]
        self.off = array("H", off + [0] * (6 + 2 * ((n + 15) >> 4)))
        # Two attributes (a MicroPython instance keeps them in a hash table of
        # its own, 8 bytes a slot, grown in steps: 2 slots, then 4, 6, 8) and
        # the rest in one list; the version (a 32-bit hash: an object of its
        # own on a 32-bit port) is worked out when asked, not kept. The counts
        # are zeroed without a list of n ints first (n x 8 bytes on a 64-bit
        # port, one block: the biggest the agent asked for at start)
        self._st = [mains if power is None else -1, 0, -1,              # _STOP or _MAINS, _ONMA, _HOUR or _DAY
                    light if lum else 0, -1000, 0, 0, 0, 0, F_FULL, 0, 0,   # _STARTS or _LIGHT .. _BASE
                    o.get("every", 60), o.get("full_every", 24), o.get("interval_ms", 60000),
                    o.get("vib_run_mg", 20) if power is None else o.get("min_rest_s", 60) * 1000,
                    rated_w, rated_ma, o.get("vib_hz", getattr(vib, "vib_hz", 25)) or 25,
                    VIB_CLASSES[vc - 1 if 1 <= vc <= len(VIB_CLASSES) else 0],
                    power, climate, vib, array("I", bytes(4 * n))]

    @property
    def n(self):
        """The number of bins (counts) kept."""
        return len(self._st[_C])

    @property
    def on(self):
        """The histograms kept (H_* in ext order), as bytes: made from off
        when asked (definitions, ext), not kept."""
        off = self.off
        return bytes(h for h in range(12) if off[h] != 0xFFFF)

    # -- definitions ------------------------------------------------------------

    def defs(self):
        """The definitions as the birth's "hist" sends them: [name, kind,
        unit, scale, bins, edges, ref] per histogram kept, in ext order;
        edges and ref from the settings where DEFS has none."""
        st = self._st
        out = []
        for h in self.on:
            d = DEFS[h]
            e = d[5]
            ref = 0
            if h in (H_LOAD, H_DIM):
                ref = st[_RATED_W]
            elif h == H_SW:
                ref = st[_RATED_MA]
            elif h == H_VIB_S:
                e = st[_VEDGES]
                ref = st[_VHZ]
            elif h == H_VIOL:
                e = (st[_REST] // 1000,)
            out.append([d[0], "count" if d[1] == COUNT else "level", d[2], d[3], d[4], _list(e), ref])
        return out

    @property
    def version(self):
        """The definitions' version: a hash of defs(), made when asked."""
        return self.birth_value()["v"]

    def birth_value(self):
        import hashlib
        d = self.defs()
        return {"v": int.from_bytes(hashlib.sha256(cbor.dumps(d)).digest()[:4], "big"), "defs": d}

    def _mine(self, h):
        """Whether h, the log's newest snapshot, is of our version: once it
        is (the one we restored or wrote), it stays so, as only we write one."""
        st = self._st
        if h is not None and not st[_FLAGS] & F_MINE and h[1] == self.version:
            st[_FLAGS] |= F_MINE
        return h is not None and st[_FLAGS] & F_MINE

    # -- counting -----------------------------------------------------------------

    def _add_s(self, h, b, dt):
        """Count dt ms in bin b of histogram h (whole seconds, the rest carried)."""
        off = self.off
        k = 12 + h % 10
        r = off[k] + dt
        s = r // 1000
        off[k] = r - s * 1000
        if s:
            self._set(h, b, s, 1)

    def _set(self, h, b, v, add=0):
        """Bin b of histogram h to v (add: by v), marked changed if it did."""
        off = self.off
        c = self._st[_C]
        i = off[h] + b
        if add:
            v += c[i]
        if c[i] != v:
            c[i] = v
            off[18 + (i >> 4)] |= 1 << (i & 15)

    def _fresh(self, ch, now):
        t = getattr(ch, "read_ms", -1)
        if ch.per_interval:
            return t >= 0 and now - t <= self._st[_IVAL] + 60000
        return t == now

    def sample(self, now, dt):
        """After the channels sampled at uptime now (dt ms since the last
        tick): count dt in the bins of what they read."""
        off = self.off
        cs = self._st
        if not cs[_C] or dt <= 0:
            return
        rated_w = cs[_RATED_W]
        running = False
        p_mw = -1
        pw = cs[_POWER]
        if pw is not None:
            running = pw.running
            if self._fresh(pw, now):
                r = pw.reading
                p_mw = r[2]
                if running:
                    cs[_ONMA] = r[1]
                if off[H_VIOL] != 0xFFFF:
                    self._switching(now, running, r)
        elif cs[_MAINS] is not None and self._fresh(cs[_MAINS], now):
            p_mw = cs[_MAINS].reading[2] * 1000
            running = rated_w and p_mw >= rated_w * 100      # 10 % of rated
        if p_mw >= 0 and running and rated_w:
            pct = p_mw // (rated_w * 10)
            if off[H_LOAD] != 0xFFFF:
                self._add_s(H_LOAD, _bin(pct, DEFS[H_LOAD][5]), dt)
            if off[H_DIM] != 0xFFFF:
                self._add_s(H_DIM, _bin(pct, DEFS[H_DIM][5]), dt)
                lt = cs[_LIGHT]
                if pct >= 95 and self._fresh(lt, now) and p_mw > 0:
                    self._luxw(now, lt.reading * 100 // p_mw)
        cl = cs[_CLIMATE]
        if cl is not None and self._fresh(cl, now):
            self._climate(cl.reading[0], cl.reading[1], dt)
        vb = cs[_VIB]
        if vb is not None and self._fresh(vb, now):
            self._vibration(now, dt, vb.reading, running if pw is not None else None)

    def _switching(self, now, on, r):
        st = self._st
        if on == bool(st[_FLAGS] & F_ON):
            return
        st[_FLAGS] ^= F_ON
        if on:
            if st[_STOP] >= 0 and now - st[_STOP] < st[_REST]:
                self._set(H_VIOL, 0, 1, 1)
            hour = now // HOUR_MS
            if hour != st[_HOUR]:
                st[_HOUR] = hour
                st[_STARTS] = 0
            st[_STARTS] += 1
            if st[_STARTS] > st[_C][self.off[H_STARTS_H]]:
                self._set(H_STARTS_H, 0, st[_STARTS])
        else:
            st[_STOP] = now
            if self.off[H_SW] != 0xFFFF:
                ie = st[_RATED_MA]
                if not ie and r[0] > 0:
                    ie = st[_RATED_W] * 1000000 // r[0]
                if ie:
                    self._set(H_SW, _bin(st[_ONMA] * 10 // ie, DEFS[H_SW][5]), 1, 1)

    def _climate(self, t, rh, dt):
        self._add_s(H_T, _bin(t // 100, DEFS[H_T][5]), dt)
        rb = _bin(rh // 100, DEFS[H_RH][5][0])
        self._add_s(H_RH, rb * 4 + _bin(t // 100, DEFS[H_RH][5][1]), dt)
        # condensation: RH at or above the RH whose dew point is 2 K below T,
        # interpolated between whole degrees (recomputed when the degree changes)
        st = self._st
        deg = t // 100
        if deg != st[_CDEG]:
            st[_CDEG] = deg
            if -45 <= deg < 60:
                m = COND_MARGIN_CK / 100
                st[_CTHR] = _cond_rh(deg, m) << 14 | _cond_rh(deg + 1, m)
            else:
                st[_CTHR] = 10001 << 14 | 10001         # outside Magnus' range: not judged
        thr = st[_CTHR] >> 14
        thr += ((st[_CTHR] & 16383) - thr) * (t - deg * 100) // 100
        if st[_FLAGS] & F_COND:
            if rh < thr - COND_HYST_CP:
                st[_FLAGS] &= ~F_COND
        elif rh >= thr:
            st[_FLAGS] |= F_COND
            self._set(H_COND_N, 0, 1, 1)
        if st[_FLAGS] & F_COND:
            self._add_s(H_COND_S, 0, dt)

    def _vibration(self, now, dt, mg, running):
        st = self._st
        if running is None:
            running = mg >= st[_VRUN]
        if running and not st[_FLAGS] & F_VRUN:
            st[_VSTART] = now
        if running:
            st[_FLAGS] |= F_VRUN
        else:
            st[_FLAGS] &= ~F_VRUN
            return
        v = mg * 15608 // (100 * st[_VHZ])       # 0.01 mm/s: mg * 9.80665 / (2 pi f)
        self._add_s(H_VIB_S, _bin(v, st[_VEDGES]), dt)
        if now - st[_VSTART] < VIB_SETTLE_MS:
            return
        i = self.off[H_VIB]
        if v > st[_C][i + 1]:
            self._set(H_VIB, 1, v)
        if st[_C][i] == 0 and st[_VBMS] < VIB_BASE_MS:
            st[_VBMS] += dt
            st[_VBSUM] += v * dt // 1000
            if st[_VBMS] >= VIB_BASE_MS:
                self._set(H_VIB, 0, st[_VBSUM] * 1000 // st[_VBMS] or 1)

    def _luxw(self, now, v):
        day = now // DAY_MS
        st = self._st
        if day != st[_DAY] or v < st[_C][self.off[H_LUXW]]:
            st[_DAY] = day
            self._set(H_LUXW, 0, v)

    # -- snapshots: log, restore, wire ----------------------------------------------

    def snapshot(self):
        """The counts as 4-byte little-endian words (what T_HIST stores)."""
        c = self._st[_C]
        b = bytearray(4 * len(c))
        for i in range(len(b)):
            b[i] = (c[i >> 2] >> (8 * (i & 3))) & 0xFF
        return bytes(b)

    def restore(self, hist):
        """Carry on from the newest snapshot in the log ([seq, version,
        words] or None); one of another version (other bins) is not
        continued: its counts stay in the ledger, ours start at zero."""
        c = self._st[_C]
        if not c or not self._mine(hist) or len(hist[2]) != 4 * len(c):
            return False
        b = hist[2]
        for i in range(len(c)):
            c[i] = _u32(b, 4 * i)
        return True

    def closed(self, log, seq):
        """Interval seq was just logged: write a snapshot when `every`
        intervals have passed since the newest one (or there is none of
        this version): at most `every` intervals of counts are lost to a
        power cut, and one snapshot goes per `every` intervals on the wire."""
        st = self._st
        if not st[_C]:
            return False
        h = log.snap
        mine = self._mine(h)
        if mine and seq - h[0] < st[_EVERY]:
            return False
        log.note_hist(seq, h[1] if mine else self.version, self.snapshot())
        st[_FLAGS] |= F_MINE
        b = self.off
        nb = (len(b) - 18) >> 1
        for i in range(18, 18 + nb):
            b[nb + i] |= b[i]               # changed since the acked snapshot, now in the newest
            b[i] = 0
        return True

    def acked(self, log):
        """The log's acked seq moved: the snapshot it covers is the new base."""
        h = log.snap
        st = self._st
        if not self._mine(h) or log.acked < h[0] or h[0] <= st[_BASE]:
            return
        st[_FLAGS] &= ~F_FULL
        st[_BASE] = h[0]
        b = self.off
        for i in range((len(b) + 18) >> 1, len(b)):
            b[i] = 0
        st[_SNAPS] += 1
        if st[_SNAPS] >= st[_FULL_EVERY]:
            st[_SNAPS] = 0
            st[_FLAGS] |= F_FULL

    def ext(self, log, first, last):
        """The encoded ext value (key 1) for a batch of seqs first..last, or
        None: the newest snapshot when its seq is among them and not acked.
        [version, seq, base seq (0: full), {index: [all counts] or {bin: count}}]"""
        h = log.snap
        st = self._st
        if not st[_C] or not self._mine(h) or not first <= h[0] <= last or h[0] <= log.acked:
            return None
        b = log.hist_words()          # on the device: valid while nothing reads the log
        s = memoryview(self.off)[(len(self.off) + 18) >> 1:]     # changed since the acked snapshot
        full = st[_FLAGS] & F_FULL
        buf = bytearray()
        cbor._head(buf, 4, 4)
        cbor.encode_into(buf, h[1])
        cbor.encode_into(buf, h[0])
        cbor.encode_into(buf, 0 if full else st[_BASE])
        nh = 0
        on = self.on
        for k in range(len(on)):
            if self._changed(on[k], full, s, b):
                nh += 1
        cbor._head(buf, 5, nh)
        for k in range(len(on)):
            hh = on[k]
            o = self.off[hh]
            nb = DEFS[hh][4]
            if not self._changed(hh, full, s, b):
                continue
            cbor.encode_into(buf, k)
            m = 0
            for j in range(o, o + nb):
                if s[j >> 4] & (1 << (j & 15)):
                    m += 1
            if full or 2 * m >= nb:
                cbor._head(buf, 4, nb)
                for j in range(o, o + nb):
                    cbor.encode_into(buf, _u32(b, 4 * j))
            else:
                cbor._head(buf, 5, m)
                for j in range(o, o + nb):
                    if s[j >> 4] & (1 << (j & 15)):
                        cbor.encode_into(buf, j - o)
                        cbor.encode_into(buf, _u32(b, 4 * j))
        return bytes(buf)

    def _changed(self, hh, full, s, b):
        o = self.off[hh]
        for j in range(o, o + DEFS[hh][4]):
            if full:
                if _u32(b, 4 * j):
                    return True
            elif s[j >> 4] & (1 << (j & 15)):
                return True
        return False

    def named(self):
        """{name: [counts]} now, for tools and reports (allocates)."""
        out = {}
        for h in self.on:
            o = self.off[h]
            out[DEFS[h][0]] = [self._st[_C][j] for j in range(o, o + DEFS[h][4])]
        return out


def _list(e):
    if isinstance(e, tuple):
        return [_list(x) for x in e]
    return e


def make(channels, opts=None):
    """A Stress for these channels, or None when they give no histogram."""
    s = Stress(channels, opts)
    return s if s.n else None
