# Signed over-the-air updates, the device's half (docs/ota.md). Portable
# (MicroPython: unix port and ESP32; CPython for the tests of its parts).
#
# A release is offered on tally/v1/<device>/ota (retained): a small binary
# OFFER (magic, version, the manifest's size and SHA-256) signed with the
# fleet release key, RSA PKCS#1 v1.5 with SHA-256. The device holds only the
# public modulus (file ota.pub beside the config; e = 65537) and checks the
# signature as pow(sig, e, n) against the expected encoding BEFORE it asks
# for a single byte; a version not newer than the running one, or one that
# was rolled back here before, is refused there too.
#
# Then it fetches, one CHUNK at a time, file 0 (the MANIFEST, a text file:
# version, then per file its SHA-256, size and path) and every file it lists,
# into ota/stage/, requesting (tag, file index, offset) on .../ota/get and
# taking the bytes from .../ota/chunk. Each file is hashed as it arrives
# (hashlib.sha256, incremental) and checked against the manifest, whose own
# hash the signed offer fixed. Memory is bounded: one request out, one chunk
# in, one hash state, one open file. After a cut the staged lengths say where
# to resume (the staged bytes are re-hashed from flash, not fetched again).
# A file that fails its hash is fetched again, TRIES times, then the update
# is abandoned: the stage is removed, the running bundle never touched.
#
# When every file is verified the stage is renamed to ota/r-<version> and
# the pointer file ota/boot.json names it as the version on trial; the boot,
# the count of trial boots, the rollback and confirm() are agent/ota_boot.py.
import hashlib
import os
import struct

from agent.ota_boot import MAX_BOOTS, OTA_DIR, flashed, mkdirs, read_pointer, rmtree, size_of, write_pointer

STAGE = "ota/stage"
PUBKEY = "ota.pub"
MAGIC = b"TOTA"
FORMAT = 1
CHUNK = 2048            # bytes of file data per .../ota/chunk message
HDR = ">IHI"            # tag (the manifest's SHA-256, first 4 bytes), file index, offset
HDR_LEN = 10
TRIES = 3               # fetches of a file that fails its hash, then the update is abandoned
REQ_MS = 2000           # a request unanswered this long is sent again
E = 65537
# DER of DigestInfo for SHA-256 (RFC 8017 9.2 note 1), before the 32-byte hash
DIGEST_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


class OtaError(ValueError):
    pass


def vtuple(v):
    """A release version "1.2.3" as (1, 2, 3); OtaError if it is not one."""
    out = []
    for p in v.split("."):
        if not p or not p.isdigit() or len(p) > 6:
            raise OtaError("version %r is not numbers separated by dots" % v)
        out.append(int(p))
    if not 1 <= len(out) <= 4:
        raise OtaError("version %r: 1 to 4 numbers" % v)
    return tuple(out)


def parse_offer(b):
    """(version, manifest size, manifest sha256, signed bytes, signature)."""
    if len(b) < 4 + 2 + 1 + 4 + 32 + 64 or b[:4] != MAGIC:
        raise OtaError("not an OTA offer")
    if b[4] != FORMAT:
        raise OtaError("offer format %d unknown" % b[4])
    n = b[5]
    end = 6 + n + 4 + 32
    if len(b) < end + 64:
        raise OtaError("offer truncated")
    try:
        ver = b[6:6 + n].decode()
    except UnicodeError:
        raise OtaError("offer version is not text")
    size = struct.unpack(">I", b[6 + n:10 + n])[0]
    return ver, size, b[10 + n:end], b[:end], b[end:]


def em_pkcs1(digest, k):
    """EMSA-PKCS1-v1_5 encoding (RFC 8017 9.2) of a SHA-256 digest, k bytes."""
    t = DIGEST_INFO + digest
    return b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def rsa_verify(n, msg, sig):
    """RSA PKCS#1 v1.5 SHA-256 signature check with the public modulus n
    (bytes, big-endian) and e = 65537: pow(sig, e, n) == EM(sha256(msg))."""
    k = len(n)
    if len(sig) != k:
        return False
    nn = int.from_bytes(n, "big")
    s = int.from_bytes(sig, "big")
    if s >= nn:
        return False
    return pow(s, E, nn) == int.from_bytes(em_pkcs1(hashlib.sha256(msg).digest(), k), "big")


def load_pubkey(path=PUBKEY):
    """The modulus from ota.pub (one line of hex, as `tally ota keygen`
    writes it), or None when the file is absent or unusable (said once)."""
    try:
        with open(path) as f:
            h = f.read().strip()
        n = bytes.fromhex(h)
        if len(n) < 256:
            raise ValueError("%d-bit modulus; at least 2048 bits" % (len(n) * 8))
        return n
    except OSError:
        return None
    except ValueError as e:
        print("tally: ota: %s unusable (%s): updates off" % (path, e))
        return None


# -- fetch -------------------------------------------------------------------------

IDLE = "idle"
FETCH = "fetching"
DONE = "switching"


class Updater:
    """The fetch state machine. net: publish(topic, payload, retain) -> bool;
    offer() and chunk() take what arrives on the two OTA topics; step(now)
    re-requests what went unanswered and reports state; after it returns
    DONE, the caller shuts the agent down and calls reboot()."""

    def __init__(self, device_id, net, pubkey, running_version, clock_ms, bad=(), probe=None):
        self.dev = device_id
        self.net = net
        self.n = pubkey
        self.ver = running_version
        self.ms = clock_ms
        self.bad = bad
        self.probe = probe
        base = "tally/v1/" + device_id + "/ota"
        self.topic_offer = base
        self.topic_chunk = base + "/chunk"
        self.topic_get = base + "/get"
        self.topic_state = base + "/state"
        self.state = IDLE
        self.seen = None              # the last offer acted on (refused, abandoned or taken)
        self.fetched = 0              # bytes of file data received this boot
        self.resumed = 0              # bytes found staged at the start
        self.total = 0
        self.report = None            # the state message waiting to go out
        self._req = bytearray(HDR_LEN)
        self._rb = bytearray(512)     # re-hashing staged bytes
        self._f = None
        self._m = None                # the open manifest, read a line per file
        self.pending = 0

    def say(self, state, version, reason=None):
        import json
        d = {"state": state, "running": self.ver, "version": version,
             "fetched": self.fetched, "resumed": self.resumed, "total": self.total}
        if reason:
            d["reason"] = reason
        self.report = json.dumps(d)

    def _refuse(self, version, why):
        print("tally: ota: refused %s: %s" % (version, why))
        self.say("refused", version, why)

    def offer(self, b):
        if not b:
            # withdrawn (tally ota push gave up waiting): stop asking; the stage
            # stays, to resume from when the offer comes again
            if self.state == FETCH:
                self._close()
                if self._m is not None:
                    self._m.close()
                    self._m = None
                self.state = IDLE
                self.pending = 0
                print("tally: ota: %s withdrawn; what is staged stays for when it is offered again"
                      % self.version)
            self.seen = None
            return
        if b == self.seen or self.state != IDLE:
            return
        self.seen = b
        if self.n is None:
            print("tally: ota: an update was offered but this device has no ota.pub: ignored")
            return
        try:
            ver, msize, msha, signed, sig = parse_offer(b)
            vt = vtuple(ver)
        except OtaError as e:
            self._refuse("?", str(e))
            return
        if not rsa_verify(self.n, signed, sig):
            self._refuse(ver, "bad signature (not signed by the fleet release key)")
            return
        if vt == vtuple(self.ver):
            self.say("ok", ver)       # the one running (its offer stays retained): nothing to fetch
            return
        if vt < vtuple(self.ver):
            self._refuse(ver, "not newer than the running %s" % self.ver)
            return
        if ver in self.bad:
            self._refuse(ver, "rolled back here before (not healthy in %d boots)" % MAX_BOOTS)
            return
        if self.probe is not None:
            self.probe.mark()         # tally bench ota: the steady loop's live heap, connected
        self.version = ver
        self.tag = struct.unpack(">I", msha[:4])[0]
        self.msha = msha
        old = None
        try:
            with open(STAGE + "/OFFER", "rb") as f:
                old = f.read()
        except OSError:
            pass
        if old != b:
            rmtree(STAGE)
            mkdirs(STAGE)
            with open(STAGE + "/OFFER", "wb") as f:
                f.write(b)
        self.fetched = 0
        self.resumed = 0
        self.total = msize
        self.msize = msize
        self.state = FETCH
        self.say(FETCH, ver)
        self.idx = 0
        self.tries = 0
        self.nfiles = 0
        self._file(STAGE + "/MANIFEST", msize, msha)
        self._pump()

    # A file is begun (_file), resumed from what is staged (_resume: the
    # staged bytes hashed again from flash), fetched chunk by chunk
    # (chunk), checked (_verify) and followed by the next one (_next). _pump
    # runs that in a loop, not by recursion, so a resume over many staged
    # files costs no stack.

    def _file(self, path, size, sha):
        self.path = path
        self.size = size
        self.sha = sha

    def _pump(self):
        """Verify and pass every file that is staged whole; stop at the first
        that needs fetching (its request sent), or at the switch or abandon."""
        while self.state == FETCH:
            if not self._resume():
                return
            if self._verify() and not self._next():
                return

    def _resume(self):
        """Hash what is staged of the current file; True when it is whole,
        else ask for the rest (False)."""
        path = self.path
        size = self.size
        self.h = hashlib.sha256()
        have = size_of(path)
        if have > size:
            os.remove(path)
            have = -1
        if have > 0:
            buf = self._rb
            mv = memoryview(buf)
            with open(path, "rb") as f:
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    self.h.update(mv[:k])
            self.resumed += have
        self.off = have if have > 0 else 0
        if self.off == size:
            return True
        mkdirs(path.rsplit("/", 1)[0])
        self._f = open(path, "ab")
        self._request()
        return False

    def _request(self):
        struct.pack_into(HDR, self._req, 0, self.tag, self.idx, self.off)
        self.t_req = self.ms()
        self.pending = 1
        self.net.publish(self.topic_get, self._req)

    def chunk(self, b):
        if self.state != FETCH or len(b) < HDR_LEN:
            return
        tag, idx, off = struct.unpack_from(HDR, b, 0)
        if tag != self.tag or idx != self.idx or off != self.off:
            return                    # a late answer to a request sent again
        n = len(b) - HDR_LEN
        self.pending = 0
        if n == 0 or off + n > self.size:
            self._close()
            self._bad("%s: the chunk at %d does not fit its size %d" % (self._name(), off, self.size))
            self._pump()
            return
        data = memoryview(b)[HDR_LEN:HDR_LEN + n]
        self._f.write(data)
        self.h.update(data)
        self.off += n
        self.fetched += n
        if self.probe is not None:
            self.probe()              # tally bench ota: the heap with a chunk held
        if self.off < self.size:
            self._request()
            return
        self._close()
        if self._verify() and not self._next():
            return
        self._pump()

    def _name(self):
        return self.path[len(STAGE) + 1:]

    def _close(self):
        f = self._f
        self._f = None
        if f is not None:
            f.flush()
            f.close()

    def _bad(self, why):
        """The current file is refused: removed, to be fetched again, or the
        update abandoned after TRIES."""
        self.tries += 1
        try:
            os.remove(self.path)
        except OSError:
            pass
        print("tally: ota: refused %s (try %d of %d)" % (why, self.tries, TRIES))
        if self.tries >= TRIES:
            self._abandon("%s failed verification %d times" % (self._name(), TRIES))

    def _abandon(self, why):
        self._close()
        if self._m is not None:
            self._m.close()
            self._m = None
        rmtree(STAGE)
        self.state = IDLE
        self.pending = 0
        print("tally: ota: %s abandoned: %s; running %s kept" % (self.version, why, self.ver))
        self.say("abandoned", self.version, why)

    def _verify(self):
        """The whole current file against its SHA-256; True when it matches."""
        if self.h.digest() != self.sha:
            self._bad("%s: SHA-256 mismatch" % self._name())
            return False
        self.h = None
        self.tries = 0
        if self.idx == 0:
            try:
                self._m = open(STAGE + "/MANIFEST")
                head = self._m.readline().split()
                ver = self._m.readline().split()
                if head != ["tally-ota", "1"] or ver != ["version", self.version]:
                    raise OtaError("manifest header does not match the offer")
            except (OSError, OtaError) as e:
                self._abandon(str(e))
                return False
        return True

    def _next(self):
        """Move to the manifest's next file (True), or switch at its end, or
        abandon on a line that is wrong (False)."""
        line = self._m.readline().split()
        self.idx += 1
        if line and line[0] == "file":
            try:
                if len(line) != 4:
                    raise ValueError
                sha = bytes.fromhex(line[1])
                size = int(line[2])
            except ValueError:
                self._abandon("manifest line %d is not file SHA256 SIZE PATH" % (self.idx + 2))
                return False
            path = line[3]
            if ".." in path or path.startswith("/") or len(sha) != 32 or size < 0:
                self._abandon("manifest entry %r refused" % path)
                return False
            self.total += size
            self.nfiles += 1
            self._file(STAGE + "/" + path, size, sha)
            return True
        self._m.close()
        self._m = None
        try:
            ok = len(line) == 3 and line[0] == "total" and int(line[1]) == self.nfiles \
                and int(line[2]) + self.msize == self.total
        except ValueError:
            ok = False
        if not ok:
            self._abandon("manifest total does not match its files")
            return False
        self._switch()
        return False

    def _switch(self):
        slot = "r-" + self.version
        rmtree(OTA_DIR + "/" + slot)
        os.rename(STAGE, OTA_DIR + "/" + slot)
        p = read_pointer()
        write_pointer({"cur": p.get("cur") or "", "new": slot, "boots": 0, "bad": p.get("bad") or [],
                       "flashed": flashed()})
        self.state = DONE
        print("tally: ota: %s verified: %d files, %d bytes; fetched %d bytes this boot, %d were "
              "staged before; switching" % (self.version, self.nfiles, self.total, self.fetched,
                                            self.resumed))
        self.say("switching", self.version)

    def step(self, now, session_new=False):
        """Send the state report when there is one; ask again for what went
        unanswered (or everything outstanding after a reconnect)."""
        if self.report is not None and self.net.publish(self.topic_state, self.report, True):
            self.report = None
        if self.state == FETCH and self.pending and (session_new or now - self.t_req >= REQ_MS):
            self._request()

    def busy(self):
        return self.state == FETCH


class HeapProbe:
    """tally bench ota: the live heap (after gc.collect) as the offer is taken,
    connected, in the steady loop (mark), and its highest with a chunk held."""

    def __init__(self):
        self.peak = 0
        self.base = 0

    def _live(self):
        import gc
        gc.collect()
        return gc.mem_alloc()

    def mark(self):
        self.base = self._live()

    def __call__(self):
        a = self._live()
        if a > self.peak:
            self.peak = a
