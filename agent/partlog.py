# Component events in the ring log (record type T_EVENT = 8, agent/log.py;
# docs/ring-format.md): their shape, how recovery applies one, and how one
# is logged. Loaded only by a log that meets or writes one, so a device that
# tracks no parts never holds this code. Portable. (How one is written is
# agent/parts.py's log_event(): only a device with parts on writes one.)
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
    tab = table(log)
    if ev[E_KIND] == "installed":
        tab[ev[E_SLOT]] = ev[E_COMP]
    elif tab.get(ev[E_SLOT]) == ev[E_COMP]:
        del tab[ev[E_SLOT]]
    log.parts = cbor.dumps(tab) if tab else b""
    return True


def table(log):
    """The log's slot table as a new dict {slot: component id} (RingLog.parts
    keeps it as its CBOR map)."""
    return cbor.loads(log.parts) if log.parts else {}
