"""`tally ota keygen|release|push|status`: signed over-the-air updates, the
operator's half (CPython only; the device's half is agent/ota.py; the format,
topics and rules are in docs/ota.md).

    keygen --out DIR      the fleet release key: DIR/release.pem (private, 0600;
                          it never leaves this machine) and DIR/ota.pub (the
                          public modulus in hex: the file a device holds)
    release --bundle DIR --version V --key release.pem
                          writes DIR/ota-release/MANIFEST (every file of the
                          bundle with its SHA-256 and size) and OFFER (the
                          version and the manifest's hash, signed)
    push DEVICE... --bundle DIR
                          publishes the OFFER retained on tally/v1/<device>/ota
                          and answers each device's chunk requests until every
                          device has taken it (or refused, abandoned, rolled back)
    status [DEVICE...]    what every device last said on .../ota/state

Signing needs the `cryptography` package (pip install 'tally[pki]')."""
import hashlib
import json
import os
import struct
import threading
import time

from agent import ota as dev_ota
from agent.cli.common import err

RELEASE_DIR = "ota-release"
PRIVATE = "release.pem"
# top-level entries of a bundle that are the device's own, never part of a release
NOT_RELEASED = ("ota", RELEASE_DIR, "__pycache__")
FINAL = ("ok", "refused", "abandoned", "rolledback")


class OtaError(ValueError):
    pass


def _crypto():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    return hashes, serialization, padding, rsa


def keygen(out, bits=2048):
    """Write out/release.pem (0600) and out/ota.pub; refuses to overwrite a key."""
    hashes, serialization, padding, rsa = _crypto()
    priv = os.path.join(out, PRIVATE)
    if os.path.exists(priv):
        raise OtaError("%s exists: a new release key would orphan every device that holds the old "
                       "ota.pub; remove it yourself if you mean it" % priv)
    if bits not in (2048, 3072, 4096):
        raise OtaError("--bits must be 2048, 3072 or 4096")
    k = rsa.generate_private_key(public_exponent=dev_ota.E, key_size=bits)
    os.makedirs(out, exist_ok=True)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    n = k.public_key().public_numbers().n
    pub = os.path.join(out, dev_ota.PUBKEY)
    with open(pub, "w") as f:
        f.write(n.to_bytes((n.bit_length() + 7) // 8, "big").hex() + "\n")
    return priv, pub


def _load_private(path):
    hashes, serialization, padding, rsa = _crypto()
    try:
        with open(path, "rb") as f:
            k = serialization.load_pem_private_key(f.read(), None)
    except (ValueError, TypeError) as e:
        raise OtaError("%s: not an unencrypted PEM private key (%s)" % (path, e))
    if not isinstance(k, rsa.RSAPrivateKey) or k.public_key().public_numbers().e != dev_ota.E:
        raise OtaError("%s: not an RSA key with e = 65537 (make one with tally ota keygen)" % path)
    return k


def bundle_files(bundle):
    """The files a release carries, sorted: everything in the bundle's folders
    (the modules), not its top-level files (config, main.py, ROMFS image,
    log: the device's own)."""
    out = []
    for top in sorted(os.listdir(bundle)):
        full = os.path.join(bundle, top)
        if top in NOT_RELEASED or not os.path.isdir(full):
            continue
        for d, dirs, files in os.walk(full):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(d, f), bundle).replace(os.sep, "/")
                if any(c.isspace() for c in rel):
                    raise OtaError("%s: a path with a space cannot go in a manifest" % rel)
                out.append(rel)
    if not out:
        raise OtaError("%s: no modules to release (build it with tally flash --out DIR)" % bundle)
    return out


def manifest(bundle, version):
    """The MANIFEST text (docs/ota.md) of the bundle's files, as bytes."""
    lines = ["tally-ota 1", "version " + version]
    total = 0
    files = bundle_files(bundle)
    for rel in files:
        with open(os.path.join(bundle, rel), "rb") as f:
            data = f.read()
        total += len(data)
        lines.append("file %s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), rel))
    lines.append("total %d %d" % (len(files), total))
    return ("\n".join(lines) + "\n").encode()


def offer_signed_part(version, man):
    v = version.encode()
    return (dev_ota.MAGIC + bytes((dev_ota.FORMAT, len(v))) + v + struct.pack(">I", len(man))
            + hashlib.sha256(man).digest())


def sign(key, msg):
    hashes, serialization, padding, rsa = _crypto()
    return key.sign(msg, padding.PKCS1v15(), hashes.SHA256())


def release(bundle, version, key_path):
    """Write bundle/ota-release/{MANIFEST,OFFER}; returns (offer, manifest)."""
    dev_ota.vtuple(version)
    if not os.path.isdir(bundle):
        raise OtaError("%s: no such bundle directory" % bundle)
    if not os.path.exists(os.path.join(bundle, "agent", "ota.mpy")):
        # tally flash leaves the updater out of a bundle built without an OTA key
        raise OtaError("%s has no agent/ota.mpy: a device updated to it would take no further "
                       "update; build it with tally flash --ota-key ota.pub" % bundle)
    key = _load_private(key_path)
    man = manifest(bundle, version)
    signed = offer_signed_part(version, man)
    offer = signed + sign(key, signed)
    d = os.path.join(bundle, RELEASE_DIR)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "MANIFEST"), "wb") as f:
        f.write(man)
    with open(os.path.join(d, "OFFER"), "wb") as f:
        f.write(offer)
    return offer, man


class Release:
    """A released bundle as push serves it: the offer, the manifest (file 0)
    and the files it lists (1..n), read from disk chunk by chunk."""

    def __init__(self, bundle):
        d = os.path.join(bundle, RELEASE_DIR)
        try:
            with open(os.path.join(d, "OFFER"), "rb") as f:
                self.offer = f.read()
            with open(os.path.join(d, "MANIFEST"), "rb") as f:
                self.manifest = f.read()
        except OSError:
            raise OtaError("%s: not released (run tally ota release --bundle %s --version V --key "
                           "release.pem first)" % (bundle, bundle))
        self.version, msize, msha, _, _ = dev_ota.parse_offer(self.offer)
        if hashlib.sha256(self.manifest).digest() != msha:
            raise OtaError("%s: MANIFEST does not match OFFER: release it again" % d)
        self.tag = struct.unpack(">I", msha[:4])[0]
        self.bundle = bundle
        self.files = []            # (path, size, sha256 hex)
        for line in self.manifest.decode().splitlines():
            p = line.split()
            if p[0] == "file":
                self.files.append((p[3], int(p[2]), p[1]))
        self.total = len(self.manifest) + sum(f[1] for f in self.files)

    def changed(self):
        """Files on disk that no longer match the manifest."""
        bad = []
        for rel, size, sha in self.files:
            try:
                with open(os.path.join(self.bundle, rel), "rb") as f:
                    ok = hashlib.sha256(f.read()).hexdigest() == sha
            except OSError:
                ok = False
            if not ok:
                bad.append(rel)
        return bad

    def chunk(self, idx, off):
        """File idx's bytes from off (CHUNK at most), or None for no such file."""
        if idx == 0:
            return self.manifest[off:off + dev_ota.CHUNK]
        if not 0 < idx <= len(self.files):
            return None
        with open(os.path.join(self.bundle, self.files[idx - 1][0]), "rb") as f:
            f.seek(off)
            return f.read(dev_ota.CHUNK)


class Server:
    """The operator's side on the broker: offers a release to devices
    (retained) and answers their chunk requests; keeps what each device says
    on .../ota/state. served[device] counts the file bytes sent."""

    def __init__(self, url, tls=None, client_id=None):
        from agent.port.mqtt_paho import Client
        self.releases = {}         # device -> Release
        self.states = {}           # device -> its latest state (a dict)
        self.served = {}
        self.requests = {}
        self.first = {}            # device -> monotonic time of its first request, and
        self.last = {}             # of the last chunk sent (tally bench ota)
        self._cv = threading.Condition()
        self._ready = threading.Event()
        c = Client(client_id or "tally-ota-%d-%x" % (os.getpid(), id(self) & 0xffffff), url, tls,
                   on_connect=self._on_connect)
        c.on_subscribe = lambda *a: self._ready.set()
        c.on_message = self._on_message
        self.c = c

    def _on_connect(self, c, userdata, flags, rc, props=None):
        if rc == 0:
            # requests and chunks at QoS 0: no PUBACK to hold the next packet back
            # behind a delayed ACK; a lost one is asked for again (REQ_MS)
            c.subscribe([("tally/v1/+/ota/get", 0), ("tally/v1/+/ota/state", 1)])

    def start(self, timeout=10):
        self.c.connect_async(self.c.host, self.c.port, 30)
        self.c.loop_start()
        if not self._ready.wait(timeout):
            self.stop()
            raise OSError("broker %s: no subscription after %g s%s" % (
                self.c.where, timeout, "; " + self.c.last_error if self.c.last_error else ""))
        return self

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()

    def offer(self, device, rel, offer=None):
        """Publish rel's offer (or another offer's bytes) retained for device."""
        self.releases[device] = rel
        info = self.c.publish("tally/v1/%s/ota" % device, offer or rel.offer, qos=1, retain=True)
        info.wait_for_publish(10)

    def withdraw(self, device):
        """Clear the retained offer."""
        self.c.publish("tally/v1/%s/ota" % device, b"", qos=1, retain=True).wait_for_publish(10)

    def _on_message(self, c, userdata, m):
        parts = m.topic.split("/")
        if len(parts) != 5:
            return
        dev = parts[2]
        if parts[4] == "state":
            try:
                st = json.loads(m.payload)
            except ValueError:
                return
            if isinstance(st, dict):
                st["retained"] = bool(m.retain)
                with self._cv:
                    self.states[dev] = st
                    self._cv.notify_all()
            return
        rel = self.releases.get(dev)
        if rel is None or len(m.payload) != dev_ota.HDR_LEN:
            return
        tag, idx, off = struct.unpack(dev_ota.HDR, m.payload)
        self.requests[dev] = self.requests.get(dev, 0) + 1
        if tag != rel.tag:
            return
        data = rel.chunk(idx, off)
        if not data:
            return
        self.first.setdefault(dev, time.monotonic())
        self.served[dev] = self.served.get(dev, 0) + len(data)
        c.publish("tally/v1/%s/ota/chunk" % dev, m.payload + data, qos=0)
        self.last[dev] = time.monotonic()

    def wait(self, devices, version, timeout, done=None):
        """Until every device's state is final for version (or timeout):
        {device: state dict or None}."""
        end = time.monotonic() + timeout
        done = done or (lambda st: st.get("version") == version and st.get("state") in FINAL
                        and not st.get("retained"))
        with self._cv:
            while True:
                out = {d: self.states.get(d) for d in devices}
                if all(s is not None and done(s) for s in out.values()):
                    return out
                left = end - time.monotonic()
                if left <= 0:
                    return out
                self._cv.wait(left)


def _line(dev, st):
    if st is None:
        return "%s: no OTA state reported" % dev
    out = "%s: running %s; %s %s" % (dev, st.get("running"), st.get("state"), st.get("version"))
    if st.get("total"):
        out += " (fetched %d B, %d B staged before, of %d B)" % (st.get("fetched", 0),
                                                                st.get("resumed", 0), st["total"])
    if st.get("reason"):
        out += ": " + st["reason"]
    return out


def _tls(a):
    return {k: v for k, v in (("ca", a.ca), ("cert", a.cert), ("key", a.key)) if v} or None


def run(a):
    try:
        if a.action == "keygen":
            priv, pub = keygen(a.out, a.bits)
            print("release key %s (private, 0600: keep it on this machine, offline when not "
                  "releasing); %s is what devices hold (tally flash --ota-key %s)" % (priv, pub, pub))
            return 0
        if a.action == "release":
            if not (a.bundle and a.version and a.key):
                return err("ota release: give --bundle DIR --version V --key release.pem")
            offer, man = release(a.bundle, a.version, a.key)
            n = man.count(b"\nfile ")
            print("release %s: %d files, %d bytes, manifest %d bytes, signed; in %s"
                  % (a.version, n, sum(os.path.getsize(os.path.join(a.bundle, p))
                                       for p in bundle_files(a.bundle)),
                     len(man), os.path.join(a.bundle, RELEASE_DIR)))
            return 0
        if a.action == "push":
            return _push(a)
        return _status(a)
    except (OtaError, dev_ota.OtaError) as e:
        return err("ota %s: %s" % (a.action, e))


def _push(a):
    if not a.device or not a.bundle:
        return err("ota push: give DEVICE... and --bundle DIR")
    rel = Release(a.bundle)
    changed = rel.changed()
    if changed:
        return err("ota push: %s changed since it was released (%s): release it again"
                   % (a.bundle, ", ".join(changed[:3])))
    try:
        srv = Server(a.broker, _tls(a)).start()
    except (ValueError, OSError) as e:
        return err("ota push: %s" % e)
    t0 = time.monotonic()
    try:
        for d in a.device:
            srv.offer(d, rel)
            print("%s: offered %s (%d bytes) on tally/v1/%s/ota" % (d, rel.version, rel.total, d))
        out = srv.wait(a.device, rel.version, a.timeout)
        for d in a.device:
            st = out[d]
            if st is None or st.get("state") not in FINAL or st.get("version") != rel.version:
                srv.withdraw(d)     # nobody serves it once we stop: the device stops asking
    finally:
        srv.stop()
    ok = True
    for d in a.device:
        st = out[d]
        print(_line(d, st))
        ok = ok and st is not None and st.get("state") == "ok"
    print("%.1f s; %d bytes served" % (time.monotonic() - t0, sum(srv.served.values())))
    return 0 if ok else 1


def _status(a):
    try:
        srv = Server(a.broker, _tls(a)).start()
    except (ValueError, OSError) as e:
        return err("ota status: %s" % e)
    time.sleep(a.wait)
    srv.stop()
    devs = a.device or sorted(srv.states)
    if not devs:
        print("no device has reported an OTA state on %s" % a.broker)
    for d in devs:
        print(_line(d, srv.states.get(d)))
    return 0


def add(sub):
    p = sub.add_parser("ota", help="signed over-the-air updates: keygen, release, push, status",
                       description="Signed over-the-air updates (docs/ota.md). keygen: the fleet release key. "
                       "release: sign a bundle built by tally flash. push: offer it to devices and "
                       "serve it in chunks until each has taken, refused or rolled it back. status: "
                       "what each device last reported.")
    p.add_argument("action", choices=("keygen", "release", "push", "status"))
    p.add_argument("device", nargs="*", help="push, status: device id(s)")
    p.add_argument("--out", default=".", help="keygen: directory for release.pem and ota.pub")
    p.add_argument("--bits", type=int, default=2048, help="keygen: RSA key size (default 2048)")
    p.add_argument("--bundle", help="release, push: the bundle directory (tally flash --out DIR)")
    p.add_argument("--version", help="release: the release version, numbers and dots (1.2.0)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="push, status: broker URL")
    p.add_argument("--timeout", type=float, default=600, help="push: seconds to wait for the devices")
    p.add_argument("--wait", type=float, default=1.0, help="status: seconds to collect retained states")
    p.add_argument("--ca", metavar="FILE", help="with mqtts://: the CA of the broker's certificate")
    p.add_argument("--cert", metavar="FILE", help="with mqtts://: the client certificate (the collector's)")
    p.add_argument("--key", metavar="FILE", help="release: the release key (release.pem); push, status "
                   "with mqtts://: the private key of --cert")
    p.set_defaults(func=run)
