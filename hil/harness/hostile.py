"""Hostile traffic for the collector, and `tally bench hostile`.

(Over 500 lines on purpose: a catalogue of hostile variants, each a few
lines, plus the runner that measures them; the catalogue is read as a list.)

An attacker holds a device's own key (devices get stolen, cloned and flashed
with buggy builds) and sends whatever bytes it likes on any topic. This module
makes such messages, deterministically from a seed, in four classes:

  unsigned   no valid MAC under the topic's device: garbage, wrong or missing
             tag, wrong key, another device's AAD, unknown devices, floods of
             fresh device ids (with and without a master key), bad topics,
             truncated and bit-flipped copies of real messages
  signed     validly MAC'd with the stolen key of an "evil" device, every
             message type (data, birth, death, cfgack, unknown kinds): wrong
             shapes, huge/negative/bool/float/NaN/bytes/tagged/undefined values,
             sets, shared (self-referencing) and deeply nested CBOR, schemas
             with bad units/scales/kinds, schema ids reused with other content
             or not matching the schema, zero-column bombs, deltas past int64,
             and bit flips and structural mutations of the real device code's
             own births and batches, re-signed
  oversized  just past MAX_PAYLOAD (signed and not) and just under it
  replay     the same batch again, a captured honest batch again, conflicting
             replays (the same seqs, other values), and a small batch claiming
             many records over a range already stored

Every message is labelled `authentic` by checking its MAC the way a collector
must (topic tally/v1/<device>/<kind>, the device's key, the device id as AAD):
what is not authentic must write nothing to the ledger.

The honest traffic (births and batches) comes from the device's own code:
agent.sync.Uplink.birth() and agent.batch.encode() over agent.log.RingLog
records. The runner (Harness) feeds messages to a real Collector one at a
time and keeps score: escapes (an exception out of handle(), or an increment
of collector.escapes), rows written by unauthenticated messages, alarm rows
per message, time per message, and memory per message on a sample.
"""
import gc
import hashlib
from array import array
import math
import os
import random
import sys
import tempfile
import time
import tracemalloc

import cbor2

from agent import batch as wire
from agent import cose
from agent.log import RingLog
from agent.meter import Meter
from agent.sync import Uplink
from hil.nor import EmulatedNOR

try:
    from agent.collector.store import MAX_PAYLOAD
except ImportError:                  # pragma: no cover
    MAX_PAYLOAD = 64 * 1024

CLASSES = ("unsigned", "signed", "oversized", "replay")
KINDS = ("data", "birth", "death", "cfgack")
I64 = 1 << 63

# the fleet the hostile traffic runs against
HONEST = "honest-1"                        # its key is not the attacker's
EVIL = ("evil-1", "evil-2", "evil-3")      # keys stolen
MASTER = b"hostile-fleet-master-0123456789!"  # devices "m-*" have keys derived from it
SCHEMA = [("run_s", "s", 0, "odo"), ("cycles", "count", 0, "odo"),
          ("energy_mWh", "Wh", -3, "odo"), ("tmax_cC", "Cel", -2, "max")]
WALL0 = 1767225600                          # 2026-01-01T00:00:00Z


def device_key(device):
    return hashlib.sha256(b"tally-hostile:" + device.encode()).digest()[:16]


def keys(device):
    """The collector's key lookup for the hostile fleet: named devices,
    master-derived "m-*" devices (so a flood of fresh ids reaches the MAC
    check), None for anything else."""
    if device == HONEST or device in EVIL:
        return device_key(device)
    if isinstance(device, str) and device.startswith("m-"):
        return cose.device_key(MASTER, device)
    return None


def topic(device, kind):
    return "tally/v1/%s/%s" % (device, kind)


def authentic(tp, payload):
    """Does the message carry a valid MAC under its topic's device key?"""
    parts = tp.split("/") if isinstance(tp, str) else ()
    if len(parts) != 4 or parts[0] != "tally" or parts[1] != "v1" or not parts[2]:
        return False
    k = keys(parts[2])
    if k is None or len(payload) > 4 * MAX_PAYLOAD:
        return False
    try:
        cose.verify(payload, k, parts[2])
        return True
    except Exception:
        return False


class Msg:
    __slots__ = ("cls", "variant", "topic", "payload", "authentic", "heavy", "cpu")

    def __init__(self, cls, variant, tp, payload, heavy=False, cpu=False):
        self.cls = cls
        self.variant = variant
        self.topic = tp
        self.payload = payload
        self.authentic = authentic(tp, payload)
        self.heavy = heavy       # may cost memory: traced more often
        self.cpu = cpu           # costs a parser time: never traced (tracemalloc would make it minutes)

    def reproducer(self):
        """A short description to rebuild this message from."""
        p = self.payload
        return "%s/%s on %r: %d bytes, %s%s" % (
            self.cls, self.variant, self.topic[:80], len(p), p[:48].hex(),
            "..." if len(p) > 48 else "")


# -- the device's own code ----------------------------------------------------------------

class RealDevice:
    """A device as the firmware builds it: a Meter, a RingLog on emulated NOR,
    births from agent.sync.Uplink, batches from agent.batch.encode."""

    def __init__(self, device_id, key=None, epoch=0x5EED, sectors=64, seed=0):
        self.id = device_id
        self.key = key if key is not None else device_key(device_id)
        self.meter = Meter(SCHEMA)
        self.log = RingLog(EmulatedNOR(4096, sectors), device_id).open()
        self.log.epoch = epoch
        self.log.epoch_seq0 = 1
        self.log.start_boot("poweron")
        self.up = Uplink(device_id, None, self.log, self.meter, board="hostile-bench", key=self.key)
        self.up.wall_q = 2
        self.up.ival_ms = 60000
        self.rng = random.Random(seed)
        self.vals = [0, 0, 0, 2000]
        self.uptime = 0
        self.wall = WALL0
        self.sent = 0                    # last seq put in a batch

    @property
    def schema_id(self):
        return self.meter.id

    @property
    def epoch(self):
        return self.log.epoch

    def seal(self, payload):
        return cose.mac0(payload, self.key, self.id)

    def birth(self):
        return self.up.birth()

    def birth_dict(self):
        return cbor2.loads(cose.verify(self.birth(), self.key, self.id))

    def tick(self, n=1):
        r = self.rng
        for _ in range(n):
            v = self.vals
            v[0] += 60
            v[1] += r.randrange(2)
            v[2] += 18000 + r.randrange(700)
            v[3] = 2000 + r.randrange(800)
            self.log.append(self.meter.id, self.log.boot, self.uptime, self.wall, 2, 60000, list(v))
            self.uptime += 60000 + r.randrange(-20, 21)
            self.wall += 60

    def batches(self, batch_max=60):
        """Real batches of everything logged since the last call:
        [(payload, (epoch, first, last))]."""
        out = []
        while True:
            run = wire.take_run(self.log.pending(batch_max, self.sent), batch_max)
            if not run:
                return out
            out.append((self.seal(wire.encode(run)), (run[0][3], run[0][0], run[-1][0])))
            self.sent = run[-1][0]


def honest_traffic(batches=40, per_batch=(1, 60), seed=7):
    """The honest device's messages: its birth, then `batches` real batches
    (sizes drawn from per_batch). Returns (device, [(topic, payload, ack)])
    where ack is (epoch, first, last) for data and None otherwise."""
    d = RealDevice(HONEST, epoch=0x4F11E57, seed=seed)
    r = random.Random(seed)
    out = [(topic(HONEST, "birth"), d.birth(), None)]
    for _ in range(batches):
        d.tick(r.randint(*per_batch))
        for payload, ack in d.batches():
            out.append((topic(HONEST, "data"), payload, ack))
    out.append((topic(HONEST, "birth"), d.birth(), None))    # a reconnect
    return d, out


# -- hostile values --------------------------------------------------------------------------

def _self_ref_list():
    a = ["x", "count", 0, "odometer"]
    a.append(a)
    return a


def _self_ref_entry():
    a = ["x", "count", 0, None]
    a[3] = a
    return a


def _self_ref_map():
    m = {"v": 1}
    m["device"] = m
    return m


def _nested(depth, leaf=0):
    x = leaf
    for _ in range(depth):
        x = [x]
    return x


def nasty(r):
    """One hostile value (for cbor2 with value_sharing)."""
    vals = (
        10 ** 4000, -10 ** 4000, 10 ** 5000, 2 ** 63, 2 ** 64, -2 ** 63 - 1, 2 ** 63 - 1, -1,
        True, False, None, 1.5, float("nan"), float("inf"), -0.0, b"\x00" * 8,
        "", "x" * r.choice((300, 5000, 20000)), "\x00", "=cmd|' /C calc'!A0", "a\r\nb", "\x1b[2J\x1b]0;pwn\x07",
        [], {}, [[[]]], cbor2.undefined, cbor2.CBORTag(999, 1), cbor2.CBORTag(2, b"\x01" * 40),
        frozenset({1, 2}), cbor2.CBORSimpleValue(99), _self_ref_list(), _nested(350),
        {"a": 1, 1: "b", b"k": [1]}, cbor2.CBORTag(4, [-2, 12345]), cbor2.CBORTag(30, [1, 3]),
        cbor2.CBORTag(1, 2 ** 62), cbor2.CBORTag(0, "not a date"), cbor2.CBORTag(3, b"\xff" * 600),
        -10 ** 30, 10 ** 18, "\u202egnp.exe", "\ufffe", {None: None},
    )
    return vals[r.randrange(len(vals))]


def _keyed(v):
    """{v: 1}, or a map with an array key when v can't be a dict key here."""
    try:
        return {v: 1}
    except Exception:
        return cbor2.CBORTag(999, 0)


def dumps(obj):
    """CBOR as an attacker would send it: plain, or with shared references
    (tags 28/29) where the value refers to itself."""
    try:
        return cbor2.dumps(obj)
    except Exception:                 # cyclic: cbor2 says so in its own error types
        return cbor2.dumps(obj, value_sharing=True)


def _flip(b, r, n=None):
    b = bytearray(b)
    if not b:
        return bytes(b)
    for _ in range(n or r.randint(1, 6)):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
    return bytes(b)


def _bytes_mutate(b, r):
    b = bytearray(b)
    c = r.randrange(6)
    if c == 0 and b:                               # truncate
        del b[r.randrange(len(b)):]
    elif c == 1:                                   # insert a byte
        b.insert(r.randrange(len(b) + 1), r.randrange(256))
    elif c == 2 and b:                             # delete a byte
        del b[r.randrange(len(b))]
    elif c == 3 and b:                             # set a byte to an edge value
        b[r.randrange(len(b))] = r.choice((0x00, 0x17, 0x18, 0x1b, 0x1f, 0x3b, 0x5f, 0x7f, 0x9f, 0xbf,
                                           0xc2, 0xd8, 0xf7, 0xf9, 0xfb, 0xff))
    elif c == 4:                                   # splice a huge length head in
        i = r.randrange(len(b) + 1)
        b[i:i] = bytes([r.choice((0x5b, 0x7b, 0x9b, 0xbb))]) + b"\xff" * 8
    else:
        return _flip(b, r)
    return bytes(b)


def _paths(obj, path=(), out=None, depth=0):
    """Every position in a decoded CBOR tree: [path tuple]."""
    if out is None:
        out = []
    out.append(path)
    if depth > 8 or len(out) > 400:
        return out
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            _paths(x, path + (i,), out, depth + 1)
    elif isinstance(obj, dict):
        for k in list(obj):
            _paths(obj[k], path + (k,), out, depth + 1)
    return out


def _thaw(obj):
    """cbor2's decoded tree, with its immutable arrays made lists again."""
    if isinstance(obj, (list, tuple)):
        return [_thaw(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _thaw(v) for k, v in obj.items()}
    return obj


def structural(obj, r):
    """A structural mutation of a decoded tree: replace, delete, insert,
    duplicate, wrap in a tag, or swap an item for a hostile value."""
    obj = _thaw(obj)
    paths = _paths(obj)
    p = r.choice(paths)
    if not p:
        return r.choice((nasty(r), [obj], cbor2.CBORTag(r.choice((17, 24, 55799, 999)), obj),
                         {"x": obj}))
    parent = obj
    for k in p[:-1]:
        parent = parent[k]
    k = p[-1]
    c = r.randrange(7)
    if c <= 2:
        parent[k] = nasty(r)
    elif c == 3:
        del parent[k]
    elif c == 4 and isinstance(parent, list):
        parent.insert(k, nasty(r) if r.randrange(2) else parent[k])
    elif c == 5:
        parent[k] = cbor2.CBORTag(r.choice((2, 3, 17, 258, 999, 55799)), parent[k])
    elif isinstance(parent[k], int) and not isinstance(parent[k], bool):
        parent[k] = r.choice((parent[k] + 1, -parent[k] - 1, parent[k] * 2 ** 40, I64 - 1, I64, 0))
    else:
        parent[k] = nasty(r)
    return obj


# -- the generator -----------------------------------------------------------------------------

class Hostile:
    """Hostile messages, deterministic from `seed`. stream(n) yields Msg.
    `bombs`: how large the cost bombs are (1.0: the full size a 4 KB message
    can declare; the test suite uses a fraction so current code that expands
    before it checks does not take minutes)."""

    WEIGHTS = (("unsigned", 35), ("signed", 45), ("oversized", 5), ("replay", 15))

    def __init__(self, seed=1, bombs=1.0):
        self.r = random.Random(seed)
        self.bombs = bombs
        self.devs = {d: RealDevice(d, epoch=0xE000 + i, seed=seed * 31 + i) for i, d in enumerate(EVIL)}
        self.pool = {}                   # device -> real batch payloads (inner CBOR) to mutate
        self.sent = []                   # (device, decoded batch list) accepted-looking batches sent
        self.captured = []               # honest (topic, payload) seen on the wire
        self.wide = {}                   # device -> (seq, count) of a wide range sent
        self.alt = {}                    # device -> [schema id, epoch, next seq] of a re-unit-ed schema
        self.next_seq = {d: 10 ** 6 for d in EVIL}
        for d in self.devs.values():
            d.tick(200)
            self.pool[d.id] = [cose.verify(p, d.key, d.id) for p, _ in d.batches(batch_max=r_choice(seed))]
        self._builders = {c: [getattr(self, n) for n in sorted(dir(self)) if n.startswith("_%s_" % c[0:3])]
                          for c in CLASSES}

    def capture(self, tp, payload):
        """Let the attacker see an honest message (for replays)."""
        self.captured.append((tp, payload))
        del self.captured[:-50]

    # the evil devices' legitimate-looking setup: births and real batches
    def prelude(self):
        out = []
        for d in self.devs.values():
            out.append(Msg("signed", "real-birth", topic(d.id, "birth"), d.birth()))
            for inner in self.pool[d.id][:3]:
                out.append(Msg("signed", "real-batch", topic(d.id, "data"), d.seal(inner)))
        return out

    def stream(self, n):
        classes = [c for c, w in self.WEIGHTS for _ in range(w)]
        r = self.r
        pre = self.prelude()[:n]
        for m in pre:
            yield m
        for i in range(n - len(pre)):
            if i % 500 == 499:               # births now and then keep the evil schemas known
                d = self.devs[EVIL[i // 500 % len(EVIL)]]
                yield Msg("signed", "real-birth", topic(d.id, "birth"), d.birth())
                continue
            cls = r.choice(classes)
            yield r.choice(self._builders[cls])()

    def only(self, cls, n):
        b = self._builders[cls]
        for _ in range(n):
            yield self.r.choice(b)()

    # helpers
    def _dev(self):
        return self.devs[self.r.choice(EVIL)]

    def _signed(self, variant, d, kind, obj, heavy=False, raw=None, cls="signed"):
        inner = raw if raw is not None else dumps(obj)
        return Msg(cls, variant, topic(d.id, kind), d.seal(inner), heavy)

    def _real_batch(self, d):
        return cbor2.loads(self.r.choice(self.pool[d.id]))

    def _header(self, d, seq, count, ival=60000, up=10 ** 7, wall=WALL0 + 86400, flags=0):
        return [1, d.schema_id, d.epoch, seq, seq, flags, d.log.boot, up, wall, 2, ival, count]

    def _fresh_seqs(self, d, n):
        s = self.next_seq[d.id]
        self.next_seq[d.id] = s + n
        return s

    # ---- unsigned -----------------------------------------------------------------------------

    def _uns_garbage(self):
        r = self.r
        dev = r.choice(EVIL + (HONEST,))
        kind = r.choice(KINDS + ("ack", "config", "status"))
        return Msg("unsigned", "garbage", topic(dev, kind), r.randbytes(r.choice((0, 1, 7, 40, 300, 2000))))

    def _uns_garbage_cbor(self):
        r = self.r
        dev = r.choice(EVIL + (HONEST,))
        obj = r.choice((nasty(r), [nasty(r)] * 4, cbor2.CBORTag(17, nasty(r)),
                        cbor2.CBORTag(17, [b"\xa1\x01\x04", {}, nasty(r), b"\x00" * 8]),
                        cbor2.CBORTag(17, [b"\xa1\x01\x04", nasty(r), b"", b"\x00" * 8]),
                        cbor2.CBORTag(17, [nasty(r), {}, b"", b"\x00" * 8])))
        return Msg("unsigned", "garbage-cbor", topic(dev, r.choice(KINDS)), dumps(obj))

    def _uns_wrong_key(self):
        r = self.r
        d = self._dev()
        dev = r.choice((d.id, HONEST))
        kind, inner = self._inner_any(d)
        key = r.choice((r.randbytes(16), r.randbytes(32), device_key("evil-x"), b"", b"\x00"))
        return Msg("unsigned", "wrong-key", topic(dev, kind), cose.mac0(inner, key, dev))

    def _uns_wrong_aad(self):
        r = self.r
        d = self._dev()
        kind, inner = self._inner_any(d)
        # signed by an evil device for itself, published on another device's topic
        other = r.choice([x for x in EVIL if x != d.id] + [HONEST, "m-" + d.id])
        return Msg("unsigned", "topic-device-mismatch", topic(other, kind), d.seal(inner))

    def _uns_bad_tag(self):
        r = self.r
        d = self._dev()
        kind, inner = self._inner_any(d)
        prot = r.choice((cose.PROTECTED, b"\xa1\x01\x05", b"\xa1\x01\x04\xff", b"", b"\xa0", b"\x04",
                         dumps({1: 10 ** 4000}), dumps({1: nasty(r)}), dumps(nasty(r)), b"\x9b" + b"\xff" * 8))
        tag = r.choice((r.randbytes(8), r.randbytes(7), r.randbytes(9), b"", r.randbytes(32)))
        unprot = r.choice(({}, {1: 4}, nasty(r), []))
        arr = [prot, unprot, inner, tag]
        if r.randrange(4) == 0:
            arr = arr[:r.randrange(4)] + [nasty(r)] * r.randrange(3)
        wrap = r.choice((lambda a: cbor2.CBORTag(17, a), lambda a: cbor2.CBORTag(18, a), lambda a: a,
                         lambda a: cbor2.CBORTag(97, a), lambda a: cbor2.CBORTag(17, cbor2.CBORTag(17, a))))
        return Msg("unsigned", "bad-cose", topic(d.id, kind), dumps(wrap(arr)))

    def _uns_unknown_device(self):
        r = self.r
        dev = "u-%012x" % r.getrandbits(48)
        kind = r.choice(KINDS)
        d = self._dev()
        _, inner = self._inner_any(d)
        return Msg("unsigned", "unknown-device-flood", topic(dev, kind), cose.mac0(inner, r.randbytes(16), dev))

    def _uns_master_flood(self):
        r = self.r
        dev = "m-%012x" % r.getrandbits(48)             # the collector derives a key for it
        d = self._dev()
        kind, inner = self._inner_any(d)
        return Msg("unsigned", "master-id-flood", topic(dev, kind), cose.mac0(inner, r.randbytes(16), dev))

    BAD_TOPICS = ("", "/", "tally", "tally/v1", "tally/v1//data", "tally/v2/%s/data", "tally/v1/%s/data/x",
                  "TALLY/v1/%s/data", "tally/v1/%s\x00/data", "tally/v1/%s/", "tally/v1/=cmd()/birth",
                  "tally/v1/dev\r\nX-Bad: 1/birth", "tally/v1/\u202e%s/data", "tally/v1/+/data", "tally/v1/#/birth",
                  "$SYS/broker/%s", "tally/v1/%s/ack", "tally/v1/%s/config", "tally/v1/%s/status",
                  "tally/v1/%s/DATA", "tally/v1/%s/birth ", "tally/v1/ %s/birth", "tally/v1/../%s/data",
                  "tally/v1/%s/data\x00", "tally/v1/@sum(1)/cfgack", "tally/v1/-2+3/death",
                  "tally/v1/\x1b[2J/death", "tally/v1/%s/\ud7ff", "tally/v1/%s")

    def _uns_bad_topic(self):
        r = self.r
        d = self._dev()
        kind, inner = self._inner_any(d)
        t = r.choice(self.BAD_TOPICS)
        t = t % d.id if "%s" in t else t
        if r.randrange(8) == 0:
            t = "tally/v1/%s/%s" % ("x" * r.choice((200, 5000, 70000)), kind)
        return Msg("unsigned", "bad-topic", t, r.choice((d.seal(inner), r.randbytes(30), b"")))

    def _uns_truncated(self):
        r = self.r
        d = self._dev()
        kind, inner = self._inner_any(d)
        p = d.seal(inner)
        return Msg("unsigned", "truncated", topic(d.id, kind), p[:r.randrange(len(p))])

    def _uns_outer_mutation(self):
        # bit flips and structural damage to a real signed message, not re-signed:
        # labelled by checking the MAC (a flip outside the MAC'd bytes may leave it valid)
        r = self.r
        d = self._dev()
        kind, inner = self._inner_any(d)
        p = d.seal(inner)
        p = _flip(p, r) if r.randrange(2) else _bytes_mutate(p, r)
        return Msg("unsigned", "outer-mutation", topic(d.id, kind), p)

    def _uns_declared_huge(self):
        r = self.r
        d = self._dev()
        heads = (b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",
                 b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00", b"\x9a\xff\xff\xff\xff", b"\xd1\x9b" + b"\xff" * 8,
                 b"\xd1\x84\x43\xa1\x01\x04\xa0\x5b" + b"\xff" * 8, b"\x81" * 5000, b"\xc2\x5b" + b"\x7f" * 8,
                 b"\xd1" * 3000 + b"\x00", b"\x9f" * 3000, b"\x7f" + b"\x61a" * 10000)
        return Msg("unsigned", "declared-huge", topic(d.id, r.choice(KINDS)), r.choice(heads) + r.randbytes(r.randrange(16)))

    def _uns_outer_bulk(self):
        # valid CBOR up to the size limit that is not a COSE_Mac0, or is one
        # with a bulky unprotected header (not covered by the MAC): decoded
        # whole before its shape or its tag is checked, by anyone who can publish
        r = self.r
        d = self._dev()
        k = int(MAX_PAYLOAD * min(1.0, self.bombs * 4)) - 100
        if r.randrange(10):          # full size one time in ten: ~100 ms each where decoding comes first
            k = min(k, 3000)
        c = r.randrange(4)
        if c == 0:
            obj = [[]] * k
        elif c == 1:
            obj = [{}] * k
        elif c == 2:
            obj = list(range(k // 3))
        else:
            obj = cbor2.CBORTag(17, [cose.PROTECTED, {i: [i] for i in range(k // 7)}, b"", b"\x00" * 8])
        return Msg("unsigned", "outer-bulk", topic(d.id, r.choice(KINDS)), cbor2.dumps(obj)[:MAX_PAYLOAD])

    def _inner_any(self, d):
        """(kind, inner payload) of a plausible message of the evil device."""
        r = self.r
        kind = r.choice(KINDS)
        if kind == "data":
            return kind, r.choice(self.pool[d.id])
        if kind == "birth":
            return kind, cose.verify(d.birth(), d.key, d.id)
        if kind == "death":
            return kind, cose.verify(d.up.death(), d.key, d.id)
        return kind, dumps({"v": 1, "version": r.randrange(1, 9), "ok": True, "active": 1, "reason": ""})

    # ---- signed: births -------------------------------------------------------------------------

    def _sig_birth_field(self):
        r = self.r
        d = self._dev()
        b = d.birth_dict()
        k = r.choice(list(b) + ["extra", 0, None])
        b[k] = nasty(r)
        return self._signed("birth-field", d, "birth", b)

    def _sig_birth_entry(self):
        r = self.r
        d = self._dev()
        b = d.birth_dict()
        s = b["schema"] = _thaw(b["schema"])
        i = r.randrange(len(s))
        if r.randrange(5) == 0:
            s[i] = r.choice((nasty(r), _self_ref_entry(), s[i][:3], s[i] + ["x"], frozenset(s[i][:2]),
                             cbor2.CBORTag(999, s[i]), {"name": "x"}))
        else:
            s[i][r.randrange(4)] = nasty(r)
        self._bind(b)
        return self._signed("birth-schema-entry", d, "birth", b)

    BAD_UNITS = ("lx.h", "", "W" * 300, "m3/", "\x00", "Wh\r\n", "=1+1", ["W"], 5, None, b"Wh", "°C", "s ",
                 "count\x1b[31m")
    BAD_SCALES = (10 ** 9, -10 ** 9, 400, -400, 10 ** 4000, "3", 1.5, float("nan"), float("inf"), True,
                  None, [0], 2 ** 63, -2 ** 63 - 1)
    BAD_KINDS = ("odo", "gauge", "gauge:median", "ODOMETER", "odometer ", "", None, 1, ["odometer"],
                 "gauge:max\x00")

    def _sig_birth_semantics(self):
        r = self.r
        d = self._dev()
        b = d.birth_dict()
        s = b["schema"] = _thaw(b["schema"])
        i = r.randrange(len(s))
        c = r.randrange(6)
        if c == 0:
            s[i][1] = r.choice(self.BAD_UNITS)
        elif c == 1:
            s[i][2] = r.choice(self.BAD_SCALES)
        elif c == 2:
            s[i][3] = r.choice(self.BAD_KINDS)
        elif c == 3:
            s[i][0] = r.choice(("", "x" * 3000, s[(i + 1) % len(s)][0], "=HYPERLINK(\"http://x\")",
                                "a\rb", "\x1b]0;x\x07", "+1", "-1", "@x", "\x00"))
        elif c == 4:
            b["schema"] = r.choice(([], [["a", "count", 0, "odometer"]] * r.choice((300, 2000)),
                                    s * 50, {"a": 1}, "schema", 7, [s], _nested(380, s[0])))
        else:
            b["schema"] = [[("m%d" % j), "count", 0, "odometer"] for j in range(r.choice((65, 256, 1000, 3000)))]
        self._bind(b)
        return self._signed("birth-semantics", d, "birth", b)

    def _sig_birth_reuse(self):
        # the same schema_id with other content: other units, scales, kinds, order
        r = self.r
        d = self._dev()
        b = d.birth_dict()
        s = b["schema"] = _thaw(b["schema"])
        c = r.randrange(4)
        if c == 0:
            s[0][1] = "h"
        elif c == 1:
            s[2][2] = 3
        elif c == 2:
            s[3][3] = "odometer"
        else:
            s.reverse()
        return self._signed("birth-id-reuse", d, "birth", b)

    def _sig_birth_id(self):
        r = self.r
        d = self._dev()
        b = d.birth_dict()
        b["schema_id"] = r.choice((r.getrandbits(32), 0, 2 ** 32, 2 ** 63 - 1, b["schema_id"] ^ 1))
        return self._signed("birth-id-mismatch", d, "birth", b)

    def _sig_birth_device(self):
        r = self.r
        d = self._dev()
        b = d.birth_dict()
        b["device"] = r.choice((HONEST, "evil-2" if d.id != "evil-2" else "evil-3", "", None, d.id + "\x00",
                                d.id.upper(), 7, [d.id]))
        return self._signed("birth-device-mismatch", d, "birth", b)

    def _sig_birth_shape(self):
        r = self.r
        d = self._dev()
        obj = r.choice((nasty(r), [d.birth_dict()], cbor2.CBORTag(999, d.birth_dict()), _self_ref_map(),
                        {"v": 1, "device": d.id, "schema": _self_ref_list(), "schema_id": 1}))
        return self._signed("birth-shape", d, "birth", obj)

    def _sig_birth_mutation(self):
        # the real device code's birth, bit-flipped or structurally mutated, re-signed
        r = self.r
        d = self._dev()
        inner = cose.verify(d.birth(), d.key, d.id)
        if r.randrange(2):
            return self._signed("birth-bitflip", d, "birth", None, raw=_bytes_mutate(inner, r))
        return self._signed("birth-struct", d, "birth", structural(cbor2.loads(inner), r))

    def _bind(self, b):
        """Half the time, give a hostile schema the id the device would compute
        for it, so it gets past the id check to the checks behind it."""
        if self.r.randrange(2):
            sid = schema_id_of(b.get("schema"))
            if sid is not None:
                b["schema_id"] = sid

    # ---- signed: data ------------------------------------------------------------------------------

    def _sig_data_header(self):
        r = self.r
        d = self._dev()
        b = self._real_batch(d)
        b[r.randrange(12)] = r.choice((nasty(r), nasty(r), I64 - 1, I64, 0))
        return self._signed("data-header", d, "data", b)

    def _sig_data_column(self):
        r = self.r
        d = self._dev()
        b = self._real_batch(d)
        i = r.randrange(12, len(b))
        n = b[11]
        v = nasty(r)
        b[i] = r.choice((v, [v] * n, [0, v], [0, 1, [v] * max(n - 2, 1)], {0: 1, 1: v}, _keyed(v), {0: 1, n: 1},
                         {-1: 5}, {10 ** 4000: 1}, [1.5] * n, [True] * n, [[0]] * n, {0: 1, 0.0: 2}))
        return self._signed("data-column", d, "data", b)

    def _sig_data_shape(self):
        r = self.r
        d = self._dev()
        b = self._real_batch(d)
        c = r.randrange(8)
        if c == 0:
            obj = nasty(r)
        elif c == 1:
            obj = b[:r.randrange(13)]
        elif c == 2:
            obj = b + [0] * r.randint(1, 5)                      # more columns than the schema
        elif c == 3:
            obj = b[:-1]                                         # fewer
        elif c == 4:
            obj = cbor2.CBORTag(999, b)
        elif c == 5:
            b[0] = r.choice((2, 0, 10 ** 4000, -1, "1", 1.0, True))
            obj = b
        elif c == 6:
            b[1] = r.getrandbits(32)                             # a schema never born
            obj = b
        else:
            obj = {i: x for i, x in enumerate(b)}
        return self._signed("data-shape", d, "data", obj)

    def _sig_data_bomb(self):
        # declares many records and thousands of zero (or constant-step) columns in ~4 KB
        r = self.r
        d = self._dev()
        count = r.choice((10000, 10 ** 6, I64 - 1, 9999))
        count = max(1, int(count * self.bombs)) if count <= 10000 else count
        cols = int(r.choice((4000, 4090, 1300)) * self.bombs) or 1
        col = r.choice((0, 0, [0, 1], {0: 1}))
        seq = self._fresh_seqs(d, 1)
        b = self._header(d, seq, count) + [0] + [col] * cols
        return self._signed("data-zero-bomb", d, "data", b, heavy=True)

    def _sig_data_int64(self):
        # every header field in range, but the sums leave int64
        r = self.r
        d = self._dev()
        seq = self._fresh_seqs(d, 10)
        c = r.randrange(6)
        m = len(SCHEMA)
        if c == 0:                                   # uptime_ms = up0 + i*ival
            b = self._header(d, seq, 3, ival=I64 - 1, up=I64 - 2) + [0] + [0] * m
        elif c == 1:                                 # dt column pushes uptime past
            b = self._header(d, seq, 3, up=I64 - 100) + [[0, I64 - 1, -I64 + 1]] + [0] * m
        elif c == 2:                                 # wall_s + elapsed seconds
            b = self._header(d, seq, 2, ival=I64 // 2, up=0, wall=I64 - 1) + [0] + [0] * m
        elif c == 3:                                 # a value column whose deltas sum past int64
            b = self._header(d, seq, 3) + [0] + [[I64 - 1, I64 - 1, I64 - 1]] + [0] * (m - 1)
        elif c == 4:                                 # second differences that grow past
            b = self._header(d, seq, 6) + [0] + [[0, 2 ** 61, [2 ** 61] * 4]] + [0] * (m - 1)
        else:                                        # sparse deltas past
            b = self._header(d, seq, 4) + [0] + [{0: I64 - 1, 3: I64 - 1}] + [0] * (m - 1)
        return self._signed("data-int64-sum", d, "data", b)

    def _sig_data_mutation(self):
        # the real device code's batch, bit-flipped or structurally mutated, re-signed
        r = self.r
        d = self._dev()
        inner = r.choice(self.pool[d.id])
        if r.randrange(2):
            return self._signed("data-bitflip", d, "data", None, raw=_bytes_mutate(inner, r))
        return self._signed("data-struct", d, "data", structural(cbor2.loads(inner), r))

    ALT_UNITS = (("run_s", "h", 0), ("run_s", "s", 3), ("energy_mWh", "s", 0), ("energy_mWh", "Wh", 3),
                 ("energy_mWh", "count", 0), ("cycles", "kWh", -3), ("run_s", "min", 0))

    def _sig_alt_schema(self):
        # a valid birth, its id the schema's own, for a schema whose units or
        # scales differ from the device's earlier ones (a new epoch), then
        # valid batches under it: nothing here is malformed, but a bill that
        # adds totals across epochs, or converts units, meets it
        r = self.r
        d = self._dev()
        alt = self.alt.get(d.id)
        if alt is None or r.randrange(4) == 0:
            b = d.birth_dict()
            s = b["schema"] = _thaw(b["schema"])
            name, unit, scale = r.choice(self.ALT_UNITS)
            for m in s:
                if m[0] == name:
                    m[1], m[2] = unit, scale
            sid = schema_id_of(s)
            if sid is None:
                return self._sig_birth_reuse()
            b["schema_id"] = sid
            b["epoch"] = 0xA000 + r.randrange(0x1000)
            b["seq0"] = 1
            self.alt[d.id] = [sid, b["epoch"], 1]
            return self._signed("alt-schema-birth", d, "birth", b)
        sid, epoch, seq = alt
        n = r.randint(1, 30)
        alt[2] = seq + n
        head = [1, sid, epoch, seq, seq, 0, d.log.boot, 10 ** 6, WALL0 + 3600 * r.randrange(24 * 28), 2, 60000, n]
        b = head + [0] + [[r.randrange(10 ** 6), r.randrange(1, 100)] if n > 2 else [r.randrange(10 ** 6)] * n
                          for _ in range(len(SCHEMA))]
        return self._signed("alt-schema-data", d, "data", b)

    def _sig_semantic_tags(self):
        # CBOR tags a generic decoder acts on: a regular expression compiled
        # (tag 35), a MIME message parsed (tag 36), a decimal fraction or
        # bigfloat with a 60 KB mantissa (tags 4, 5), rationals, dates; up to
        # a second or more of work in 60 KB
        r = self.r
        d = self._dev()
        k = int(60000 * min(1.0, self.bombs * 4))
        # the costly forms (regex, MIME) one time in ten: a few hundred ms each
        # where a decoder acts on them, and this is a bench of minutes
        c = r.choice((0, 1, 2, 3, 6, 7)) if r.randrange(10) == 0 else r.randrange(4, 6)
        if c == 0:
            v = cbor2.CBORTag(35, ("(a)?(?(1)b|c)%d" % r.getrandbits(30)) * (k // 24))
        elif c == 1:
            v = cbor2.CBORTag(35, "(a)\\1(?:x|y)" * (k // 12) + "%d" % r.getrandbits(30))
        elif c == 2:
            depth = max(2, k // 60)
            v = cbor2.CBORTag(36, "".join("Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
                                          for i in range(depth)))
        elif c == 3:
            v = cbor2.CBORTag(36, "Content-Type: multipart/mixed; boundary=x\n\n" + "--x\n\n" * (k // 5))
        elif c == 4:
            v = [cbor2.CBORTag(4, [-10 ** 6, 10 ** 4000]), cbor2.CBORTag(5, [10 ** 6, 3]),
                 cbor2.CBORTag(30, [10 ** 4000, 7]), cbor2.CBORTag(1, 10 ** 30), cbor2.CBORTag(100, -10 ** 12),
                 cbor2.CBORTag(1004, "0000-00-00"), cbor2.CBORTag(37, b"\x00" * 16),
                 cbor2.CBORTag(260, b"\x00" * 16), cbor2.CBORTag(261, {b"\xff" * 16: 128})]
        elif c == 5:
            v = cbor2.CBORTag(256, ["abc" * 10] + [cbor2.CBORTag(25, 0)] * (k // 4))
        else:                                        # a decimal fraction or bigfloat, 60 KB of mantissa
            v = cbor2.CBORTag(4 if c == 6 else 5, [-r.randrange(1, 30), int.from_bytes(r.randbytes(k), "big")])
        kind = r.choice(KINDS)
        if kind == "birth" and r.randrange(2):
            b = d.birth_dict()
            b[r.choice(("fw", "reason", "board", "x"))] = v
            obj = b
        elif kind == "data" and r.randrange(2):
            obj = self._real_batch(d)
            obj[r.randrange(len(obj))] = v
        else:
            obj = r.choice((v, {"v": 1, "version": 1, "ok": True, "active": 1, "reason": v}))
        m = self._signed("semantic-tags", d, kind, obj)
        m.cpu = c not in (4, 5)
        return m

    # ---- signed: death, cfgack, unknown kinds -------------------------------------------------------

    def _sig_death(self):
        r = self.r
        d = self._dev()
        obj = r.choice(({"v": 1, "boot": nasty(r), "epoch": nasty(r)}, nasty(r), _self_ref_map(),
                        {"v": nasty(r)}, [nasty(r)] * 3))
        return self._signed("death", d, "death", obj)

    def _sig_cfgack(self):
        r = self.r
        d = self._dev()
        a = {"v": 1, "version": r.randrange(1, 5), "ok": r.choice((True, False)), "active": 1, "reason": ""}
        c = r.randrange(6)
        if c == 0:
            a["version"] = r.choice((10 ** 4000, 10 ** 5000, 2 ** 63, 2 ** 64, -1, -2 ** 63 - 1, True, 0))
        elif c == 1:
            a["active"] = r.choice((10 ** 4000, 10 ** 5000, 2 ** 63, 2 ** 64, -1, -2 ** 63 - 1, False))
        elif c == 2:
            a["reason"] = r.choice((10 ** 5000, "r" * 60000, b"\x00" * 100, _self_ref_list(), _nested(350),
                                    "\x1b[2J=cmd", cbor2.undefined, frozenset({1})))
        elif c == 3:
            a["ok"] = r.choice((1, 0, "true", None, nasty(r)))
        elif c == 4:
            a[r.choice(("v", "version", "active", "ok", "reason", "x"))] = nasty(r)
        else:
            a = r.choice((nasty(r), [a], cbor2.CBORTag(999, a), _self_ref_map()))
        return self._signed("cfgack", d, "cfgack", a)

    def _sig_unknown_kind(self):
        r = self.r
        d = self._dev()
        _, inner = self._inner_any(d)
        kind = r.choice(("ack", "config", "status", "state", "Data", "x" * 300, "birth2"))
        return Msg("signed", "unknown-kind", topic(d.id, kind), d.seal(inner))

    # ---- oversized ------------------------------------------------------------------------------------

    def _ove_past(self):
        r = self.r
        d = self._dev()
        extra = r.choice((1, 2, 100, 4096, 10 ** 6))
        kind = r.choice(KINDS)
        if r.randrange(2):                                # signed, with a huge text field
            b = d.birth_dict() if kind == "birth" else {"v": 1, "pad": ""}
            b["fw" if kind == "birth" else "pad"] = "x" * (MAX_PAYLOAD + extra)
            return Msg("oversized", "signed-past", topic(d.id, kind), d.seal(dumps(b)), heavy=True)
        dev = r.choice((d.id, HONEST, "u-%x" % r.getrandbits(32)))
        return Msg("oversized", "garbage-past", topic(dev, kind), r.randbytes(MAX_PAYLOAD + extra), heavy=True)

    def _ove_under(self):
        r = self.r
        d = self._dev()
        c = r.randrange(3)
        if c == 0:                                       # a birth padded to just under the limit
            b = d.birth_dict()
            b["fw"] = ""
            base = len(d.seal(dumps(b)))
            b["fw"] = "x" * (MAX_PAYLOAD - base - 8 - r.randrange(3))
            p = d.seal(dumps(b))
            return Msg("oversized", "birth-just-under", topic(d.id, "birth"), p, heavy=True)
        if c == 1:                                       # a batch of up to 10000 records, random deltas
            n = 10000 if self.bombs >= 1 else max(2, int(10000 * self.bombs))
            seq = self._fresh_seqs(d, n)
            col = [r.randrange(1, 2 ** 20) for _ in range(n)]
            pad = []                                     # scaled down: a surplus column fills the bytes
            b = self._header(d, seq, n) + [0] + [col, [0, 1], [5, 0], 0]
            if n < 10000:
                pad = [r.randrange(1, 2 ** 20) for _ in range(MAX_PAYLOAD // 3)]
                b.append(pad)
            p = d.seal(dumps(b))
            while len(p) > MAX_PAYLOAD:
                if pad:
                    del pad[-max(1, (len(p) - MAX_PAYLOAD) // 3):]
                else:
                    n = n * 19 // 20
                    b = self._header(d, seq, n) + [0] + [col[:n], [0, 1], [5, 0], 0]
                p = d.seal(dumps(b))
            return Msg("oversized", "data-just-under", topic(d.id, "data"), p, heavy=True)
        return Msg("oversized", "garbage-just-under", topic(d.id, r.choice(KINDS)),
                   r.randbytes(MAX_PAYLOAD - r.randrange(100)), heavy=True)

    # ---- replay -----------------------------------------------------------------------------------------

    def _rep_same(self):
        r = self.r
        d = self._dev()
        inner = r.choice(self.pool[d.id])
        return Msg("replay", "same-batch", topic(d.id, "data"), d.seal(inner))

    def _rep_captured(self):
        if not self.captured:
            return self._rep_same()
        tp, p = self.r.choice(self.captured)
        return Msg("replay", "captured-honest", tp, p)

    def _rep_conflict(self):
        # a real batch again with other values: the same seqs, other content
        r = self.r
        d = self._dev()
        b = _thaw(self._real_batch(d))
        i = r.randrange(13, len(b))
        b[i] = [r.randrange(1, 10 ** 6), r.randrange(1, 1000)] if b[11] > 2 else [r.randrange(10 ** 6)] * b[11]
        return self._signed("conflict-small", d, "data", b, cls="replay")

    def _rep_wide(self):
        # a batch of many records in a few bytes, then conflicting replays of the
        # whole range: one alarm row per message at most, not one per record
        r = self.r
        d = self._dev()
        m = len(SCHEMA)
        count = 600                                  # the most a device puts in one batch
        w = self.wide.get(d.id)
        if w is None:
            seq = self._fresh_seqs(d, count)
            w = self.wide[d.id] = (seq, count)
            b = self._header(d, seq, count) + [0] + [[0, 1]] * (m - 1) + [[2000, 0]]
            return Msg("replay", "wide-batch", topic(d.id, "data"), d.seal(dumps(b)), heavy=True)
        seq, count = w
        k = r.randrange(2, 50)
        c = r.randrange(3)
        if c == 0:                                   # the whole range, other values
            b = self._header(d, seq, count) + [0] + [[0, k]] * (m - 1) + [[2000, 0]]
        elif c == 1:                                 # overlapping the start, a small batch
            b = self._header(d, seq, 3) + [0] + [[k, 1, 1]] * (m - 1) + [[2000, 0, 0]]
        else:                                        # the range with another flag/from_seq
            b = self._header(d, seq, count, flags=1) + [0] + [[0, 1]] * (m - 1) + [[2000, k]]
            b[4] = seq - k
        return Msg("replay", "conflict-wide", topic(d.id, "data"), d.seal(dumps(b)), heavy=True)

    def _rep_birth(self):
        d = self._dev()
        return Msg("replay", "same-birth", topic(d.id, "birth"), d.birth())

    def _rep_cross(self):
        # one evil device's real batch, re-signed by another evil device
        r = self.r
        d = self._dev()
        e = self.devs[r.choice([x for x in EVIL if x != d.id])]
        return Msg("replay", "cross-device", topic(e.id, "data"), e.seal(r.choice(self.pool[d.id])))


def r_choice(seed):
    return (13, 20, 60)[seed % 3]


def schema_id_of(schema):
    """The id the device would compute for a birth schema, or None when
    it can't (a hostile schema the device code can't even encode)."""
    from agent import meter
    for name in ("schema_hash", "birth_schema_id", "wire_schema_id"):
        f = getattr(meter, name, None)
        if f is not None:
            try:
                return f(schema)
            except Exception:
                return None
    try:
        back = {"odometer": "odo"}
        s = [[m[0], m[1], m[2], back.get(m[3], m[3][6:] if isinstance(m[3], str) and m[3].startswith("gauge:")
                                          else m[3])] for m in schema]
        return meter.schema_id(s)
    except Exception:
        return None


# -- the runner --------------------------------------------------------------------------------------

def _errtext(e):
    try:
        s = str(e)
    except Exception:
        s = "(unprintable)"
    return "%s: %s" % (type(e).__name__, s[:200])


class Harness:
    """Feeds messages to a Collector one at a time and keeps score.
    Rows written: on SQLite, the connection's total_changes (every row
    inserted, updated or deleted); on PostgreSQL, the row counts of every
    table, around each unauthenticated message (count_rows=True)."""

    def __init__(self, collector, trace_every=50, count_rows=None, rss=False):
        self.c = collector
        self.sqlite = hasattr(collector.db, "total_changes")
        self.count_rows = (not self.sqlite) if count_rows is None else count_rows
        self.trace_every = trace_every
        self.tried = 0
        self.per = {}
        self.escapes = []
        self.unauth = 0
        self.unauth_rows = 0
        self.unauth_examples = []
        self.alarm_max = 0
        self.alarm_examples = []
        # figures only (floats), and the message of each maximum as text: the
        # harness keeps no message, so its own memory does not grow with the run
        self.ms = array("d")
        self.cpu = array("d")    # CPU ms of each timed message (the worker's own cost, no waits)
        self.sizes = array("q")  # payload bytes of each timed message
        self.mb = array("d")
        self.top = {}            # "ms" | "mb" -> (value, reproducer)
        # rss: peak RSS during each message over RSS before it (Linux: VmHWM
        # reset through /proc/self/clear_refs before each message)
        self.rss = rss and _reset_peak_rss()
        self.rss_peak_kb = 0
        self.rss_mb = array("d")

    def tables(self):
        db = self.c.db
        if self.sqlite:
            q = "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        else:
            q = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return sorted(r[0] for r in db.execute(q).fetchall())

    def rows(self):
        db = self.c.db
        return {t: db.execute('SELECT COUNT(*) FROM "%s"' % t).fetchone()[0] for t in self.tables()}

    def _alarms(self):
        try:
            return self.c.db.execute("SELECT COUNT(*) FROM alarms").fetchone()[0]
        except Exception:
            return 0

    def _changes(self):
        return self.c.db.total_changes if self.sqlite else 0

    def feed(self, m, trace=None):
        """Handle one hostile Msg; returns the collector's replies (or None on an escape)."""
        c = self.c
        if trace is None:
            trace = not m.cpu and (m.heavy and self.tried % 5 == 0 or self.tried % self.trace_every == 0)
        st = self.per.get(m.cls)
        if st is None:
            st = self.per[m.cls] = {"tried": 0, "escapes": 0, "ms": array("d"), "mb": array("d"),
                                    "rss_mb": array("d"), "authentic": 0}
        esc0 = getattr(c, "escapes", 0)
        ch0 = self._changes()
        a0 = self._alarms() if m.authentic else 0
        rows0 = self.rows() if self.count_rows and not m.authentic else None
        if trace:
            gc.collect()
            tracemalloc.start()
        if self.rss:
            self.rss_peak_kb = max(self.rss_peak_kb, _rss_kb("VmHWM") or 0)   # what ran since the last one
            _reset_peak_rss()
            rss0 = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        c0 = time.process_time()
        err = None
        replies = None
        try:
            replies = c.handle(m.topic, m.payload)
        except BaseException as e:       # every exception is an escape, a database error too
            if isinstance(e, KeyboardInterrupt):
                raise
            err = _errtext(e)
        dt = (time.perf_counter() - t0) * 1000
        dc = (time.process_time() - c0) * 1000
        if self.rss:
            hwm = _rss_kb("VmHWM")
            self.rss_peak_kb = max(self.rss_peak_kb, hwm)
            self.rss_mb.append((hwm - rss0) / 1024)
            self._top("mb", (hwm - rss0) / 1024, m)
            st["rss_mb"].append((hwm - rss0) / 1024)
        if trace:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            st["mb"].append(peak / 2 ** 20)
            self.mb.append(peak / 2 ** 20)
            self._top("mb", peak / 2 ** 20, m)
        else:
            st["ms"].append(dt)
            self.ms.append(dt)
            self.cpu.append(dc)
            self.sizes.append(len(m.payload))
            self._top("ms", dt, m)
            self._top("cpu", dc, m)
        self.tried += 1
        st["tried"] += 1
        st["authentic"] += m.authentic
        if err is None and getattr(c, "escapes", 0) != esc0:
            err = "counted as an escape by the collector (collector.escapes)"
        if err is not None:
            st["escapes"] += 1
            self.escapes.append((m, err))
            if len(self.escapes) > 200:
                del self.escapes[100:-50]
        if not m.authentic:
            self.unauth += 1
            n = self._changes() - ch0
            if rows0 is not None:
                rows1 = self.rows()
                n += sum(abs(rows1.get(t, 0) - rows0.get(t, 0)) for t in set(rows0) | set(rows1))
            if n:
                self.unauth_rows += n
                if len(self.unauth_examples) < 20:
                    self.unauth_examples.append((m, n))
        else:
            na = self._alarms() - a0
            if na > self.alarm_max:
                self.alarm_max = na
            if na > 1 and len(self.alarm_examples) < 20:
                self.alarm_examples.append((m, na))
        return replies

    def _top(self, what, v, m):
        if v > self.top.get(what, (-1, ""))[0]:
            self.top[what] = (v, m.reproducer())

    def escape_classes(self):
        """{(cls, variant, kind): (count, first error, reproducer)}"""
        out = {}
        for m, err in self.escapes:
            k = (m.cls, m.variant, m.topic.rsplit("/", 1)[-1][:10])
            n, e, rep = out.get(k, (0, err, m.reproducer()))
            out[k] = (n + 1, e, rep)
        return out


def _median(xs):
    xs = sorted(xs)
    if not xs:
        return 0.0
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _rss_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Make VmHWM start again from now (Linux 4.0+); False if it can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def collector_for(db):
    from agent.collector.store import Collector
    return Collector(db, keys=keys)


def honest_baseline(db, traffic):
    """The honest device's ledger and summary from its traffic alone."""
    c = collector_for(db)
    try:
        for tp, p, _ in traffic:
            c.handle(tp, p)
        return honest_view(c)
    finally:
        c.close()


def honest_view(c):
    s = c.summary(HONEST)
    return {"ledger": c.ledger(HONEST), "epochs": s["epochs"], "rejected": s["rejected"]}


def bench_hostile(count=100000, seed=1, progress=None, db=None, bombs=1.0):
    """Run `count` hostile messages (and an honest device's real traffic
    interleaved) through Collector.handle on a SQLite ledger in a temp file.
    Returns the figures (see docs/bench.md)."""
    if count < 1:
        raise ValueError("bench hostile: --count must be positive")
    tmp = tempfile.mkdtemp(prefix="tally-hostile-")
    db = db or os.path.join(tmp, "ledger.sqlite")
    try:
        _, honest = honest_traffic(batches=max(10, min(200, count // 1000)), seed=seed)
        base = honest_baseline(os.path.join(tmp, "baseline.sqlite"), honest)
        gen = Hostile(seed=seed, bombs=bombs)
        c = collector_for(db)
        h = Harness(c, rss=True)
        every = max(1, count // len(honest))
        hi = 0
        acks_ok = 0
        acks_want = sum(1 for _, _, a in honest if a)
        gc.collect()
        rest_kb = _rss_kb("VmRSS")
        peak_reset = _reset_peak_rss()
        t_start = time.monotonic()
        t_last = t_start
        for i, m in enumerate(gen.stream(count)):
            if i % every == 0 and hi < len(honest):
                tp, p, ack = honest[hi]
                hi += 1
                gen.capture(tp, p)
                acks_ok += _honest(c, tp, p, ack)
            h.feed(m)
            if progress and time.monotonic() - t_last > 5:
                t_last = time.monotonic()
                progress("%d/%d messages, %d escapes, %.0f s" % (h.tried, count, len(h.escapes), t_last - t_start))
        while hi < len(honest):
            tp, p, ack = honest[hi]
            hi += 1
            acks_ok += _honest(c, tp, p, ack)
        elapsed = time.monotonic() - t_start
        peak_kb = max(_rss_kb("VmHWM"), h.rss_peak_kb) if peak_reset else None
        if peak_kb is None:
            import resource
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        view = honest_view(c)
        c.close()
        return _figures(h, rest_kb, peak_kb, peak_reset, elapsed, seed, view == base, acks_ok, acks_want)
    finally:
        for f in os.listdir(tmp):
            try:
                os.unlink(os.path.join(tmp, f))
            except OSError:
                pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass


def _honest(c, tp, p, ack):
    """Feed one honest message; 1 if it is a batch acked as it should be."""
    try:
        rep = c.handle(tp, p)
    except Exception:
        return 0
    return int(bool(ack) and _ack_of(rep, tp) == list(ack))


def _ack_of(replies, tp):
    try:
        dev = tp.split("/")[2]
        for t, p in replies:
            if t.endswith("/ack"):
                return list(cbor2.loads(cose.verify(p, keys(dev), dev)))
    except Exception:
        return None
    return None


def _figures(h, rest_kb, peak_kb, peak_reset, elapsed, seed, honest_same, acks_ok, acks_want):
    ms_all = h.ms
    max_ms, slowest = h.top.get("ms", (0.0, ""))
    max_mb, largest = h.top.get("mb", (0.0, ""))
    med_size = _median(h.sizes)
    small = [(t, c, i) for i, (t, c, n) in enumerate(zip(h.ms, h.cpu, h.sizes)) if n <= med_size]
    max_ms_median_size = max([t for t, _, _ in small] or [0])
    max_cpu_median_size = max([c for _, c, _ in small] or [0])
    max_cpu, slowest_cpu = h.top.get("cpu", (0.0, ""))
    max_traced = max(h.mb or [0])
    max_rss = max(h.rss_mb or [0])
    growth = max(0.0, ((peak_kb or 0) - (rest_kb or 0)) / 1024)
    auth = sum(s["authentic"] for s in h.per.values())
    per_class = {}
    for cls in CLASSES:
        s = h.per.get(cls, {"tried": 0, "escapes": 0, "ms": [], "mb": [], "rss_mb": [], "authentic": 0})
        per_class[cls] = {"tried": s["tried"], "escapes": s["escapes"], "authenticated": s["authentic"],
                          "median_ms_per_message": round(_median(s["ms"]), 3),
                          "max_ms_per_message": round(max(s["ms"] or [0]), 3),
                          "max_mb_per_message": round(max(max(s["mb"] or [0]), max(s["rss_mb"] or [0])), 3),
                          "max_mb_per_message_traced": round(max(s["mb"] or [0]), 3),
                          "max_rss_growth_mb_per_message": round(max(s["rss_mb"] or [0]), 3),
                          "memory_samples": len(s["mb"])}
    escapes = len(h.escapes)
    r = {
        "tried": h.tried,
        "escapes": escapes,
        "max_ms_per_message": round(max_ms, 3),
        "median_ms_per_message": round(_median(ms_all), 3),
        "median_message_bytes": int(med_size),
        "max_ms_per_message_up_to_median_size": round(max_ms_median_size, 3),
        "max_cpu_ms_per_message": round(max_cpu, 3),
        "max_cpu_ms_per_message_up_to_median_size": round(max_cpu_median_size, 3),
        "median_cpu_ms_per_message": round(_median(h.cpu), 3),
        "slowest_cpu": slowest_cpu,
        "max_mb_per_message": round(max_mb, 3),
        "max_mb_per_message_traced": round(max_traced, 3),
        "max_rss_growth_mb_per_message": round(max_rss, 3),
        "rows_per_unauthenticated": round(h.unauth_rows / h.unauth, 6) if h.unauth else 0.0,
        "alarm_rows_per_message": h.alarm_max,
        "per_class": per_class,
        "authenticated": auth,
        "unauthenticated": h.unauth,
        "rows_by_unauthenticated": h.unauth_rows,
        "peak_rss_growth_mb": round(growth, 1),
        "seconds": round(elapsed, 1),
        "seed": seed,
        "honest_ledger_unchanged": honest_same,
        "honest_batches_acked": "%d/%d" % (acks_ok, acks_want),
        "slowest": slowest,
        "largest": largest,
        "escape_examples": ["%s/%s (%s) x%d: %s | %s" % (k[0], k[1], k[2], n, e, rep)
                            for k, (n, e, rep) in sorted(h.escape_classes().items())][:40],
        "unauthenticated_row_examples": ["%d rows: %s" % (n, m.reproducer()) for m, n in h.unauth_examples],
        "alarm_examples": ["%d alarm rows: %s" % (n, m.reproducer()) for m, n in h.alarm_examples],
        "method": ("one process, messages fed to Collector.handle one at a time on a SQLite file ledger; "
                   "time: perf_counter (wall) and process_time (CPU, the worker's own cost without "
                   "waits for the disk or other processes) around handle() for every message not "
                   "traced; the time goal is on CPU; memory per message: "
                   "the larger of the tracemalloc peak during handle() (every %dth message and every 5th "
                   "of the heavy variants: zero-column bombs, wide and oversized batches; never the "
                   "parser-costly CBOR tags, which tracing slows a hundredfold) and the process's peak "
                   "RSS during handle() over its RSS before (VmHWM reset before every message); "
                   "rows: the SQLite connection's "
                   "total_changes around each unauthenticated message; alarm rows: COUNT(*) of alarms "
                   "around each authenticated one; peak RSS growth: the highest VmHWM of the run "
                   "%s minus VmRSS at rest after setup"
                   % (h.trace_every, "" if peak_reset else "(ru_maxrss: VmHWM could not be reset)")),
    }
    r["goals"] = {
        "0 escapes in %d hostile messages (%d signed): %d" % (h.tried, auth, escapes): escapes == 0,
        "0 rows from %d unauthenticated messages: %d" % (h.unauth, h.unauth_rows): h.unauth_rows == 0,
        "at most 1 alarm row per message: %d" % h.alarm_max: h.alarm_max <= 1,
        "peak memory growth <= 64 MB over rest: %.1f MB" % growth: growth <= 64,
        "no message of the median size (%d B) or less over 50 ms of CPU: %.1f ms"
        % (med_size, max_cpu_median_size): max_cpu_median_size <= 50,
        "honest device's ledger unchanged by the hostile traffic": honest_same and acks_ok == acks_want,
    }
    return r
