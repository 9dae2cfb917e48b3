# The boot side of signed over-the-air updates (docs/ota.md): main.py calls
# boot() before anything else of the bundle is imported, to choose the bundle
# this boot runs; device_main asks running() for the version (the birth's
# "fw") and calls confirm() once a trial version is healthy. Kept apart from
# the fetch (agent/ota.py, loaded only on a device that holds ota.pub) so a
# device pays for it only in these few functions. Portable (MicroPython and
# CPython).
#
# The pointer file ota/boot.json is replaced in one rename: {"cur": slot in
# force, "new": slot on trial, "boots": trial boots so far, "bad": versions
# rolled back, "rolled": the version just rolled back, "flashed": the
# fingerprint of the bundle as flashed when the update came}. A pointer whose
# "flashed" is not the config's "build" is from before a reflash: cleared. A slot is a directory
# ota/r-<version> holding an update's modules; "" is the bundle as flashed.
import os
import sys

OTA_DIR = "ota"
POINTER = "ota/boot.json"
CONFIG = "tally_config.json"
MAX_BOOTS = 3           # trial boots before a rollback
TRIAL_MS = 600000       # a trial version not healthy this long after boot reboots (the count rises)


# -- files ------------------------------------------------------------------------

def isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False


def size_of(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def rmtree(p):
    if not isdir(p):
        try:
            os.remove(p)
        except OSError:
            pass
        return
    for name in os.listdir(p):
        rmtree(p + "/" + name)
    try:
        os.rmdir(p)
    except OSError:
        pass


def mkdirs(p):
    d = ""
    for part in p.split("/"):
        d = part if not d else d + "/" + part
        if not isdir(d):
            os.mkdir(d)


def read_pointer():
    import json
    try:
        with open(POINTER) as f:
            p = json.load(f)
        return p if isinstance(p, dict) else {}
    except (OSError, ValueError):
        return {}


def write_pointer(p):
    """Replace the pointer file in one step (write aside, flush, rename)."""
    import json
    mkdirs(OTA_DIR)
    tmp = POINTER + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(p))
        f.flush()
    os.rename(tmp, POINTER)


def slot_version(slot):
    if slot and slot.startswith("r-"):
        return slot[2:]
    from agent import __version__
    return __version__


def flashed():
    """The fingerprint of the bundle as flashed (its config's "build", set by
    tally flash from the modules), 0 when there is none."""
    import json
    try:
        with open(CONFIG) as f:
            b = json.load(f).get("build", 0)
        return b if type(b) is int else 0
    except (OSError, ValueError, AttributeError):
        return 0


def boot():
    """Choose the bundle this boot runs: count a trial boot, or roll back after
    MAX_BOOTS trial boots without confirm(). Returns the slot ("" = the
    bundle as flashed)."""
    p = read_pointer()
    if not p:
        return ""
    fl = flashed()
    if p.get("flashed", 0) != fl:
        # a different bundle was flashed over the update (USB): it is the one to run
        print("tally: ota: another bundle was flashed since the update: running it, updates cleared")
        rmtree(OTA_DIR)
        return ""
    cur = p.get("cur") or ""
    new = p.get("new")
    slot = cur
    if new:
        b = p.get("boots", 0) + 1
        if b > MAX_BOOTS or not isdir(OTA_DIR + "/" + new):
            bad = p.get("bad") or []
            bad.append(slot_version(new))
            print("tally: ota: %s did not come up healthy (connected, a batch acked) in %d boots: "
                  "rolled back to %s" % (slot_version(new), MAX_BOOTS, slot_version(cur)))
            write_pointer({"cur": cur, "bad": bad[-4:], "rolled": slot_version(new), "flashed": fl})
            rmtree(OTA_DIR + "/" + new)
        else:
            p["boots"] = b
            write_pointer(p)
            slot = new
            print("tally: ota: trial boot %d of %d of %s" % (b, MAX_BOOTS, slot_version(new)))
    if slot:
        here = os.getcwd()
        sys.path.insert(0, (here if here != "/" else "") + "/" + OTA_DIR + "/" + slot)
        for m in list(sys.modules):
            if m == "agent" or m.startswith("agent."):
                del sys.modules[m]
    return slot


def running():
    """(version running, on trial) as the pointer file says after boot()."""
    p = read_pointer()
    if p.get("new"):
        return slot_version(p["new"]), True
    return slot_version(p.get("cur") or ""), False


def confirm():
    """The trial version is healthy: it becomes the one in force, the one
    before it is removed. Returns the version confirmed, or None."""
    p = read_pointer()
    new = p.get("new")
    if not new:
        return None
    old = p.get("cur") or ""
    write_pointer({"cur": new, "bad": p.get("bad") or [], "flashed": p.get("flashed", 0)})
    if old:
        rmtree(OTA_DIR + "/" + old)
    return slot_version(new)


def reboot():
    """Reset the board; on the unix port, exit with 75 for the harness that
    plays the board to start the process again."""
    try:
        from machine import reset
    except ImportError:
        raise SystemExit(75)
    reset()
