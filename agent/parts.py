# Component identity and swap events (issue 15, CIRCULAR.md section 4).
# Portable (CPython and MicroPython), small and allocation-free in the steady
# loop (a check reads one slot, and only when one is due).
#
# A slot is a place in the asset that holds a part with an identity: a chip
# that tells its serial (SHT3x, SHT4x, an Eastron meter), a model id where
# there is none (INA226, BME280: "-model-" ids, not unique), or an ID EEPROM
# tag (AT24CS02, 24AA02E48) on a part with no identity of its own, whose
# user area carries the component passport (agent/passport.py; the tags'
# config and the passport work of their slots are agent/parttags.py, loaded
# only by an installation that has tags).
#
# When identities are read: every slot at boot, then every PERIOD_MS, and at
# once when the slot's channel has counted BURST bus errors since the last
# check. While a change is being confirmed, at every sample.
# What a read means, against the log's slot table (log.parts, the state the
# events left, power-cut safe with them):
#   the same id            nothing (a candidate seen in between: "flicker")
#   another id             a candidate; N_CONFIRM reads of it in a row make
#                          it real: a "removed" event for the old id (if
#                          any), then an "installed" one for the new
#   no answer (NACK,       after N_VANISH in a row, a known part is
#   timeout)               "removed" (detail "vanished"); nothing before
#   a bad CRC              no change; a counted fault "crc"
# Each event is one T_EVENT record in the log (agent/log.py: seq = the
# interval in progress, the odometers of the asset at that moment); the slot
# table changes with it, in the same record, so a power cut between the two
# events of a swap leaves the first done and the second found again at the
# next boot: exactly one of each. A log with no room for another event
# (eight unacked, or its state block full) refuses it: one "log" fault, and
# no retry until an ack has freed room (offline, no fault every sample).
# Faults are counted by reason in `faults` and in total in the part_faults
# odometer; none of them stops metering.
# Passports: read when the part is installed (and at boot); a blank, corrupt,
# foreign or unknown-version passport is a fault with that reason, never a
# swap (the identity is the chip's serial, not the passport). The checkpoint
# odometers are written at most every CHECKPOINT_MS (default 24 h, to one of
# two copies in turn: a copy sees a write every 48 h, about 7,600 in the
# chip's 1,000,000-cycle endurance over a century), and at an install.

from agent import cbor
from agent.log import LogError
from agent import partlog

N_CONFIRM = 3
N_VANISH = 3
BURST = 3
PERIOD_MS = 600000
CHECKPOINT_MS = 86400000
MAX_REASONS = 8

def _clean(cid):
    """A component id as the wire takes it (docs/wire.md): lowercase
    <chip>-<serial> of letters, digits and - . _ :, at most 64 characters;
    ValueError for anything else, so a garbled read never reaches the log."""
    if not isinstance(cid, str) or not 2 < len(cid) <= 64 or "-" not in cid:
        raise ValueError("not a component id")
    for c in cid:
        if "A" <= c <= "Z":
            cid = cid.lower()               # a new string only when it is needed
            break
    for c in cid:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c in "-._:"):
            raise ValueError("not a component id")
    if cid[0] == "-" or cid[-1] == "-":
        raise ValueError("not a component id")
    return cid


# A slot is SLOT items of one flat list (a MicroPython instance would keep
# its attributes in a table of its own, about three times the size, and a
# list per slot would be a header more each). Indexed by:
S_NAME = 0      # where in the asset (text); None for a channel's chip: its driver's name
                # in lower case, made when it is needed (the log's slot table keys it
                # while a part is in: one string, not two)
S_SRC = 1       # where the id comes from: a channel (its driver's ident(), raising OSError
                # typed as in drivers/errors.py; its bus errors trigger a read), a driver
                # with ident(), a function that returns it, the id itself (the node's);
                # or, a tuple (driver class, bus, address), an ID EEPROM with a passport
                # in its user area, its id the chip's serial, its driver made for each
                # use (eeprom())
S_CAND = 2      # (a new id being confirmed, what found it: "boot", "burst", "swap"), or None
S_CNT = 3       # > 0: reads of the candidate in a row; < 0: reads of a part in place
                # without an answer in a row
S_ERR = 4       # the channel's error count at the last read
S_REF = 5       # an ID EEPROM's passport: None: not read since boot (or no longer valid);
                # the uptime it was read at, not valid; or its counters' sources at the
                # last checkpoint and that uptime ([run_s, cycles, energy_Wh, uptime])
SLOT = 6        # items in a slot
# after the slots, the tracker's own state: events logged (this boot), log.acked
# when the log last refused an event for room, the uptime of the next
# periodic read, the faults by reason ({reason: count}, this boot; None
# before the first)
P_EVENTS, P_FULL, P_DUE, P_FAULTS = range(-4, 0)


def _check_name(name):
    ok = isinstance(name, str) and 0 < len(name) <= 64 and "a" <= name[0].lower() <= "z"
    for c in name if ok else "":
        if not ("a" <= c.lower() <= "z" or "0" <= c <= "9" or c in "_.-@:/"):
            ok = False
    if not ok:
        raise ValueError("parts: slot name %r: a letter, then letters, digits, _ . - @ : /" % (name,))


def Slot(name, read, eeprom=None):
    """A slot's SLOT items; ValueError for a name the wire would not take.
    read: a driver with ident(), a function, or the id; eeprom: an ID EEPROM
    driver (the slot keeps its class, bus and address).
    The passport itself is not kept: it is read from the EEPROM when it is
    needed (an install, a checkpoint), so a slot holds only its counters'
    sources at the last checkpoint."""
    _check_name(name)
    if eeprom is not None:
        read = eeprom if isinstance(eeprom, tuple) else (type(eeprom), eeprom.i2c, eeprom.addr)
    return [name, read, None, 0, 0, None]


def _driver(ch):
    d = ch.driver
    return getattr(d, "driver", d)             # boards.Pick wraps a driver


def eeprom(sl, b=0):
    """The ID EEPROM driver of the slot at sl[b:b + SLOT], or None: made for
    this use when the slot keeps only how to make one (a driver object is
    some 100 bytes of heap, and a tag is read every PERIOD_MS at most)."""
    e = sl[b + S_SRC]
    return e[0](e[1], e[2]) if isinstance(e, tuple) else None


def slots_for(channels, tags=(), node=None):
    """A slot for every channel whose driver can tell an identity (the slot
    keeps the channel, and its name only while a part is in), one per ID
    EEPROM tag ((name, driver) pairs: the slot keeps the driver's class, bus
    and address, not the driver), and "node" for the node's own id (node:
    the id, or a function that returns it)."""
    out = []
    for ch in channels:
        d = _driver(ch)
        # a pulse meter (drivers/pulse.py) has no identity of its own: its
        # ident() names its input for tally probe, it is no part (and has no name)
        if hasattr(d, "ident") and hasattr(d, "name"):
            _check_name(d.name)
            out.append([None, ch, None, 0, 0, None])
    for name, drv in tags:
        out.append(Slot(name, None, eeprom=drv))
    if node:
        # the id, or a function that reads it (on a device: no string kept
        # for it, one made at each read)
        out.append(Slot("node", node if callable(node) else node.lower()))
    return out


def lookup(t, name):
    """The component id slot `name` holds in a slot table t (RingLog.parts:
    its CBOR map of text to text, or b""), or None; read in place with the
    CBOR decoder's own length reader, no table decoded (a new string only
    for the id found)."""
    if not t:
        return None
    n, p = cbor._arg(t, 1, t[0] & 31)
    k = len(name)
    for _ in range(n):
        m, p = cbor._arg(t, p + 1, t[p] & 31)      # a key: does it name the slot?
        hit = m == k
        i = 0
        while hit and i < k:
            hit = t[p + i] == ord(name[i])
            i += 1
        p += m
        m, p = cbor._arg(t, p + 1, t[p] & 31)      # its value
        if hit:
            return str(t[p:p + m], "utf-8")
        p += m
    return None


def log_event(log, kind, slot, comp, wall_s, odo, detail=""):
    """RingLog.event: see there."""
    from agent.log import HDR, T_EVENT
    log._ready()
    a = log.acked
    log.events = [e for e in log.events if e[0] > a]
    if len(log.events) >= partlog.MAX_EVENTS:
        raise LogError("log: %d component events unacked, no room for another" % partlog.MAX_EVENTS)
    seq = log.next_seq
    idx = 0
    for e in log.events:
        if e[0] == seq and e[1] >= idx:
            idx = e[1] + 1
    ev = [seq, idx, kind, slot, comp, wall_s, odo, detail]
    if not partlog.valid(ev):
        raise ValueError("log: not a component event: %r" % (ev,))
    # every head sector's state block carries the slot table and the pending
    # events: keep it within half a sector, so appends always fit beside it
    n = len(cbor.dumps([log.epoch, log.epoch_seq0, log.next_seq, log.acked, log.boot,
                        log.boot_reason, log.last, log.config_version, log._ident(),
                        None, log.events + [ev]])) + len(log.parts)
    if HDR + n > log.S // 2:
        raise LogError("log: %d pending component events fill the state block" % len(log.events))
    log._put(T_EVENT, cbor.dumps(ev))
    partlog.apply(log, ev)
    return ev


class Parts:
    """The identity tracker, run by the agent like a channel (its metric
    joins the schema; bind, restore, sample) plus boot(agent)."""
    metrics = [("part_faults", "count", 0, "odo")]
    per_interval = False
    driver = None
    family = 1
    period_ms = PERIOD_MS
    checkpoint_ms = CHECKPOINT_MS

    def __init__(self, slots, family=1, period_ms=PERIOD_MS, checkpoint_ms=CHECKPOINT_MS):
        # the slots in one flat list, a slot at every SLOT items, then the
        # tracker's own state (P_*): one list object instead of one per slot,
        # one holding them and a bigger attribute table
        n = SLOT * len(slots)
        sl = [None] * n + [0, -1, 0, None]
        for i in range(n):
            sl[i] = slots[i // SLOT][i % SLOT]
        self.slots = sl
        # the settings: instance attributes only where they are not the
        # class's (each one is a slot in the instance's own table)
        if family != Parts.family:
            self.family = family
        if period_ms != Parts.period_ms:
            self.period_ms = period_ms
        if checkpoint_ms != Parts.checkpoint_ms:
            self.checkpoint_ms = checkpoint_ms
        self.ag = None              # the agent (its log and clock), from boot()

    @property
    def events(self):
        """Events logged (this boot)."""
        return self.slots[P_EVENTS]

    @property
    def faults(self):
        """{reason: count} of the faults this boot."""
        return self.slots[P_FAULTS] or {}

    @property
    def meter(self):
        return self.ag.meter

    @property
    def log(self):
        return self.ag.log

    @property
    def clock(self):
        return self.ag.clock

    @property
    def n(self):
        """How many slots."""
        return (len(self.slots) + P_EVENTS) // SLOT

    def name(self, b):
        """The name of the slot at slots[b:]."""
        n = self.slots[b + S_NAME]
        return _driver(self.slots[b + S_SRC]).name.lower() if n is None else n

    # -- the channel interface ------------------------------------------------------

    def bind(self, meter):
        meter.index("part_faults")              # KeyError now if the schema lacks it

    def restore(self, meter):
        pass

    def boot(self, agent):
        """After the log is open and the odometers restored: read every slot
        N_CONFIRM times (a change found now is confirmed at once)."""
        self.ag = agent
        now = agent.clock.uptime_ms()
        sl = self.slots
        for b in range(0, len(sl) + P_EVENTS, SLOT):
            for _ in range(N_CONFIRM):
                self._check(b, now, "boot")
                if sl[b + S_CAND] is None:
                    break           # the same part, or no answer: a part slow to wake is
                                    # read again at the next samples, not removed at once
            if (isinstance(sl[b + S_SRC], tuple) and sl[b + S_REF] is None
                    and lookup(agent.log.parts, sl[b + S_NAME])):
                self._passport(b, now)
        sl[P_DUE] = now + self.period_ms

    def sample(self, meter, now, dt):
        sl = self.slots
        due = now >= sl[P_DUE]
        if due:
            sl[P_DUE] = now + self.period_ms
        b = -SLOT
        while b + SLOT < len(sl) + P_EVENTS:    # (no range object made per sample)
            b += SLOT
            burst = sl[b + S_NAME] is None and sl[b + S_SRC].errors - sl[b + S_ERR] >= BURST
            if sl[b + S_CAND] is not None or sl[b + S_CNT] < 0 or due or burst:
                self._check(b, now, "burst" if burst else "")
            r = sl[b + S_REF]
            if isinstance(r, list) and now - r[3] >= self.checkpoint_ms:
                self._checkpoint(b, now)
        return True

    # -- checks ------------------------------------------------------------------------

    def fault(self, reason):
        sl = self.slots
        f = sl[P_FAULTS]
        if f is None:
            sl[P_FAULTS] = f = {}
        if reason in f or len(f) < MAX_REASONS:
            f[reason] = f.get(reason, 0) + 1
        if self.ag is not None:
            m = self.ag.meter
            m.add(m.index("part_faults"), 1)

    def _check(self, b, now, why):
        sl = self.slots
        f = sl[b + S_SRC]
        if sl[b + S_NAME] is None:                  # a channel's chip
            sl[b + S_ERR] = f.errors
            f = _driver(f)
        name = self.name(b)
        known = lookup(self.log.parts, name)
        try:
            if isinstance(f, tuple):
                f = eeprom(sl, b)
            cid = _clean(f if isinstance(f, str) else f() if callable(f) else f.ident())
        except ValueError:
            self.fault("garbled")                   # not an identity a ledger would take
            return
        except OSError as e:
            if getattr(e, "kind", "nack") in ("crc", "range"):
                self.fault(e.kind)                  # an answer, but not one to trust
                return
            sl[b + S_CAND] = None
            if not known:
                sl[b + S_CNT] = 0                   # an empty slot stays empty: read again when due
                return
            n = sl[b + S_CNT]
            sl[b + S_CNT] = n = (n if n < 0 else 0) - 1          # one more read without an answer
            if -n >= N_VANISH:
                if self._event("removed", name, known, "vanished"):
                    sl[b + S_CNT] = 0
                    sl[b + S_REF] = None
            return
        c = sl[b + S_CAND]
        if cid == known:
            if c is not None:
                self.fault("flicker")
            sl[b + S_CAND] = None
            sl[b + S_CNT] = 0
            return
        if c is not None and c[0] == cid:
            sl[b + S_CNT] += 1
        else:
            if c is not None:
                self.fault("flicker")
            sl[b + S_CAND] = c = (cid, why or "swap")    # what found it: boot, burst, swap
            sl[b + S_CNT] = 1
        if sl[b + S_CNT] < N_CONFIRM:
            return
        if known and not self._event("removed", name, known, c[1]):
            return
        sl[b + S_REF] = None
        detail = c[1]
        p = None
        if isinstance(sl[b + S_SRC], tuple):
            p = self._passport(b, now)
            if p is not None:
                detail = p.part
        if self._event("installed", name, cid, detail):
            sl[b + S_CAND] = None
            sl[b + S_CNT] = 0
            if p is not None:
                p.installs += 1
                self._checkpoint(b, now, p)

    def _event(self, kind, slot, comp, detail):
        sl = self.slots
        if sl[P_FULL] == self.log.acked:
            return False                            # no room until an ack frees some: not retried
        clock = self.clock
        wall = clock.wall_s() if clock.wall_quality else 0
        # the asset's odometers (not the agent's own counters), found for
        # each event (a rare thing) rather than kept
        m = self.ag.meter
        skip = {"part_faults"}
        from agent.agent import SYSTEM_METRICS
        from agent.channels import ERROR_METRICS
        for x in SYSTEM_METRICS + ERROR_METRICS:
            skip.add(x[0])
        odo = {}
        for i in range(m.n):
            if m.is_odometer(i) and m.names[i] not in skip:
                odo[m.names[i]] = m.values[i]
        skip = None
        try:
            self.log.event(kind, slot, comp, wall, odo, detail[:32])
        except LogError:
            # no room for another pending event (or the state block is full):
            # counted once, tried again when an ack has freed some
            sl[P_FULL] = self.log.acked
            self.fault("log")
            return False
        except (OSError, ValueError):
            self.fault("log")                       # not durable: found again at the next check
            return False
        sl[P_EVENTS] += 1
        return True

    # -- passports (agent/parttags.py: only an installation with ID EEPROM tags loads it) --

    def _passport(self, b, now):
        from agent.parttags import found
        return found(self, b, now)

    def _checkpoint(self, b, now, p=None):
        from agent.parttags import checkpoint
        checkpoint(self, b, now, p)
