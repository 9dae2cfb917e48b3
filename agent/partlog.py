# Component events in the ring log (record type T_EVENT = 8, agent/log.py;
# docs/ring-format.md): their shape, how recovery applies one, and how one
# is logged. Loaded only by a log that meets or writes one, so a device that
# tracks no parts never holds this code. Portable.
#
# An event (a T_EVENT payload, and what a batch's ext key 2 carries) is a
# list indexed by:
E_SEQ = 0       # the interval it happened in (next_seq when logged)
E_IDX = 1       # its number among the events of that seq, from 0
E_KIND = 2      # "removed" | "installed"
E_SLOT = 3      # where in the asset (text)
E_COMP = 4      # component id (text)
E_WALL = 5      # wall-clock seconds, 0 if unknown
E_ODO = 6       # {metric: value}: the asset's odometers at that moment
E_DETAIL = 7    # text: what found it ("boot", "swap", "burst", "vanished") or a part number
MAX_EVENTS = 8  # unacked events kept (every head state block carries them)

from agent import cbor


def _uint(x):
    return isinstance(x, int) and x >= 0


def valid(ev):
    if not isinstance(ev, list) or len(ev) != 8:
        return False
    if not (_uint(ev[E_SEQ]) and _uint(ev[E_IDX]) and _uint(ev[E_WALL])):
        return False
    if ev[E_KIND] != "installed" and ev[E_KIND] != "removed":
        return False
    for i in (E_SLOT, E_COMP, E_DETAIL):
        if not isinstance(ev[i], str):
            return False
    return isinstance(ev[E_ODO], dict)


def valid_tail(st):
    """The two items a head state block adds when the log tracks parts
    (after the stress snapshot, st[9], None without one): the slot table
    {slot: component} and the pending events."""
    tab, evs = st[10], st[11]
    if not isinstance(tab, dict) or not isinstance(evs, list) or len(evs) > MAX_EVENTS:
        return False
    for k in tab:
        if not isinstance(k, str) or not isinstance(tab[k], str):
            return False
    for ev in evs:
        if not valid(ev):
            return False
    return True


def apply(log, ev, lost=0):
    """Apply an event record (recovery or a write): keep it until acked,
    update the slot table. False if it is not one the log could have written."""
    if not valid(ev) or ev[E_SEQ] > log.next_seq + lost:
        return False
    for e in log.events:
        if e[E_SEQ] == ev[E_SEQ] and e[E_IDX] == ev[E_IDX]:
            return True
    if ev[E_SEQ] > log.acked:
        log.events.append(ev)
    tab = log.parts
    if ev[E_KIND] == "installed":
        tab[ev[E_SLOT]] = ev[E_COMP]
    elif tab.get(ev[E_SLOT]) == ev[E_COMP]:
        del tab[ev[E_SLOT]]
    return True


def event(log, kind, slot, comp, wall_s, odo, detail=""):
    """RingLog.event: see there."""
    from agent.log import HDR, T_EVENT, LogError
    log._ready()
    a = log.acked
    log.events = [e for e in log.events if e[E_SEQ] > a]
    if len(log.events) >= MAX_EVENTS:
        raise LogError("log: %d component events unacked, no room for another" % MAX_EVENTS)
    seq = log.next_seq
    idx = 0
    for e in log.events:
        if e[E_SEQ] == seq and e[E_IDX] >= idx:
            idx = e[E_IDX] + 1
    ev = [seq, idx, kind, slot, comp, wall_s, odo, detail]
    if not valid(ev):
        raise ValueError("log: not a component event: %r" % (ev,))
    # every head sector's state block carries the pending events: keep it
    # within half a sector, so appends always fit beside it
    n = len(cbor.dumps([log.epoch, log.epoch_seq0, log.next_seq, log.acked, log.boot,
                        log.boot_reason, log.last, log.config_version, log._ident(),
                        log.parts, log.events + [ev]]))
    if HDR + n > log.S // 2:
        raise LogError("log: %d pending component events fill the state block" % len(log.events))
    log._put(T_EVENT, cbor.dumps(ev))
    apply(log, ev)
    return ev
