"""Signed over-the-air updates (agent/ota.py, agent/cli/ota.py, docs/ota.md):
the unix bundle as `tally flash` builds it runs under the MicroPython unix
port, a directory standing in for the board's flash, and syncs through a real
mosquitto to the collector; the operator's side (agent.cli.ota.Server, what
`tally ota push` runs) offers a signed release and answers the device's chunk
requests. Each boot is a process; the harness starts the next one when the
device resets (exit 75) or crashes, as a board would.

A good update comes up in the next birth; a cut in the middle resumes from
the staged lengths (only the rest fetched); a corrupted file is refused and
the update abandoned after TRIES fetches, the running bundle intact; a wrong
signature and an older version are refused before any fetch; a bundle that
crashes at boot is rolled back after MAX_BOOTS boots. The manifest's bytes
are read at the layout docs/ota.md gives."""
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time

import cbor2
import pytest
from agent.cli.bundle import FILES_HEAP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import cose, ota
from hil.scripted import joined
from agent.cli import bundle as cli_flash
from agent.cli import main
from agent.cli import ota as cli_ota
from agent.collector.service import CollectorService
from agent.collector.store import Collector
from hil.harness import mpbuild
from conftest import MP

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
DEV = "ota-1"
KEY = b"ota-device-key16"
RUNNING = "0.1.0"      # agent.__version__: the bundle as flashed


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    good = cli_ota.keygen(str(d / "good"))
    wrong = cli_ota.keygen(str(d / "wrong"))
    return {"priv": good[0], "pub": good[1], "wrong": wrong[0]}


@pytest.fixture(scope="module")
def base(tmp_path_factory, keys):
    """The unix bundle, built once: the factory image of every test's board."""
    out = str(tmp_path_factory.mktemp("ota") / "bundle")
    cli_flash.build(out, "unix", {"device_id": DEV, "interval_s": 1, "sample_ms": 100,
                                  "key": KEY.hex(), "batch_max": 1, "max_latency_s": 1,
                                  "ota_key": keys["pub"]}, duration_s=6)
    return out


def _board(base, tmp_path, broker, duration=6):
    b = tmp_path / "board"
    shutil.copytree(base, b)
    cfg = json.loads((b / "tally_config.json").read_text())
    cfg["broker"] = broker.url
    cfg["duration_s"] = duration
    (b / "tally_config.json").write_text(json.dumps(cfg))
    return b


def _release(base, tmp_path, keys, version, key=None, name="rel", crash=False):
    """A release dir: the same modules, signed as version (crash: a
    device_main that raises at import)."""
    r = tmp_path / name
    shutil.copytree(base, r, ignore=shutil.ignore_patterns("tally.log", "ota"))
    if crash:
        src = tmp_path / "device_main.py"
        src.write_text("raise RuntimeError('broken release')\n")
        subprocess.run([mpbuild.tool("mpy-cross"), "-o", str(r / "agent" / "device_main.mpy"),
                        "-s", "device_main.py", str(src)], check=True)
    cli_ota.release(str(r), version, key or keys["priv"])
    return r


class Rig:
    """The broker, the collector (acks: the device's health), the operator's
    OTA server and a listener for births."""

    def __init__(self, broker, tmp_path, collector=True):
        self.col = Collector(str(tmp_path / "ledger.sqlite"),
                             keys=lambda d: KEY if d == DEV and collector else None)
        self.svc = CollectorService(broker.url, self.col).start()
        self.svc.wait_ready(10)
        self.stop_ev = threading.Event()
        self.pump = threading.Thread(target=self.svc.run_forever, args=(self.stop_ev,), daemon=True)
        self.pump.start()
        self.srv = cli_ota.Server(broker.url).start()
        self.births = []
        self.srv.c.message_callback_add("tally/v1/%s/birth" % DEV, self._birth)
        self.srv.c.subscribe("tally/v1/%s/birth" % DEV, 1)

    def _birth(self, c, u, m):
        self.births.append(cbor2.loads(cose.verify(m.payload, KEY, DEV))["fw"])

    def close(self):
        self.srv.stop()
        self.stop_ev.set()
        self.pump.join(10)
        self.svc.stop()
        self.col.close()


@pytest.fixture
def rig(broker, tmp_path):
    r = Rig(broker, tmp_path)
    yield r
    r.close()


def boots(board, max_boots=8, kill_when=None, timeout=60):
    """Run the board until a boot ends on its own (exit 0). Returns (console
    text, exit codes). kill_when(): checked while a boot runs; True: SIGKILL
    it (a power cut), and the next boot starts."""
    out, codes = [], []
    for _ in range(max_boots):
        p = subprocess.Popen([MP, "-X", "heapsize=" + FILES_HEAP, "main.py"], cwd=str(board),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={"PATH": os.environ.get("PATH", "")})
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
        reader.start()
        end = time.monotonic() + timeout
        killed = False
        while p.poll() is None and time.monotonic() < end:
            if kill_when is not None and not killed and kill_when():
                p.kill()
                killed = True
            time.sleep(0.002)
        if p.poll() is None:
            p.kill()
        p.wait()
        reader.join(5)
        out.append("".join(lines))
        codes.append("killed" if killed else p.returncode)
        if p.returncode == 0:
            break
    return "\n".join(out), codes


def test_a_good_update_comes_up_in_the_next_birth(base, keys, rig, broker, tmp_path, capsys):
    """Through `tally ota push` itself, while the board boots."""
    board = _board(base, tmp_path, broker)
    rdir = _release(base, tmp_path, keys, "0.2.0")
    rel = cli_ota.Release(str(rdir))
    got = {}
    dev = threading.Thread(target=lambda: got.update(zip(("text", "codes"), boots(board))))
    dev.start()
    rc = main(["ota", "push", DEV, "--bundle", str(rdir), "--broker", broker.url, "--timeout", "60"])
    dev.join(90)
    text, codes = got["text"], got["codes"]
    print(text)
    pushed = capsys.readouterr().out
    assert rc == 0, pushed
    assert "%s: running 0.2.0; ok 0.2.0" % DEV in pushed
    assert "; %d bytes served" % rel.total in pushed        # every byte once
    assert codes == [75, 0], codes                       # reset into the update, then ran to the end
    assert "tally: ota: 0.2.0 verified: %d files" % len(rel.files) in text
    assert "tally: ota: 0.2.0 healthy (connected, a batch acked): kept" in text
    assert rig.births[0] == RUNNING and rig.births[-1] == "0.2.0", rig.births
    assert json.loads((board / "ota" / "boot.json").read_text())["cur"] == "r-0.2.0"
    assert not (board / "ota" / "stage").exists()
    # a different bundle flashed over USB (its modules' fingerprint changes): it runs, not the
    # update (the offer withdrawn first: while it stands, the device would take it again)
    rig.srv.withdraw(DEV)
    cfg = json.loads((board / "tally_config.json").read_text())
    (board / "tally_config.json").write_text(json.dumps(dict(cfg, build=cfg["build"] ^ 1, duration_s=2)))
    text, codes = boots(board)
    assert codes == [0] and "tally: ota: another bundle was flashed since the update: running it" in text
    assert rig.births[-1] == RUNNING and not (board / "ota").exists()
    assert main(["ota", "status", DEV, "--broker", broker.url, "--wait", "0.5"]) == 0
    assert "%s: running 0.2.0; ok 0.2.0" % DEV in capsys.readouterr().out


def test_a_cut_in_the_middle_resumes_where_the_stage_ends(base, keys, rig, broker, tmp_path):
    board = _board(base, tmp_path, broker)
    rel = cli_ota.Release(str(_release(base, tmp_path, keys, "0.2.0")))
    rig.srv.offer(DEV, rel)
    half = rel.total // 2
    cut = []

    def once():                       # the power goes once, halfway through
        if not cut and rig.srv.served.get(DEV, 0) >= half:
            cut.append(rig.srv.served[DEV])
            return True
        return False
    text, codes = boots(board, kill_when=once)
    print(text)
    assert codes[0] == "killed" and codes[-1] == 0 and 75 in codes, codes
    line = [x for x in text.splitlines() if "0.2.0 verified" in x][0]
    m = re.search(r"fetched (\d+) bytes this boot, (\d+) were staged before", line)
    fetched, staged = int(m.group(1)), int(m.group(2))
    assert staged >= half - 2 * ota.CHUNK and staged + fetched == rel.total, line
    assert fetched <= rel.total - half + 2 * ota.CHUNK    # the rest only, not everything again
    assert rig.births[-1] == "0.2.0", rig.births


def test_a_corrupted_file_is_refused_and_the_update_abandoned(base, keys, rig, broker, tmp_path):
    board = _board(base, tmp_path, broker, duration=5)
    rdir = _release(base, tmp_path, keys, "0.2.0")
    victim = rdir / "agent" / "sync.mpy"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40                          # one bit flipped after signing
    victim.write_bytes(bytes(data))
    rig.srv.offer(DEV, cli_ota.Release(str(rdir)))
    text, codes = boots(board)
    print(text)
    assert codes == [0], codes
    for k in (1, 2, 3):
        assert "tally: ota: refused agent/sync.mpy: SHA-256 mismatch (try %d of 3)" % k in text
    assert ("tally: ota: 0.2.0 abandoned: agent/sync.mpy failed verification 3 times; running %s kept"
            % RUNNING) in text
    assert not (board / "ota" / "stage").exists() and not (board / "ota" / "boot.json").exists()
    assert set(rig.births) == {RUNNING} and "stopped;" in text    # metered on, on the old bundle
    assert rig.srv.wait([DEV], "0.2.0", 5)[DEV]["state"] == "abandoned"


@pytest.mark.parametrize("case", ["wrong signature", "older version", "equal version"])
def test_a_bad_offer_is_refused_before_any_fetch(base, keys, rig, broker, tmp_path, case):
    board = _board(base, tmp_path, broker, duration=3)
    version, key = {"wrong signature": ("0.2.0", keys["wrong"]), "older version": ("0.0.9", None),
                    "equal version": (RUNNING, None)}[case]
    rig.srv.offer(DEV, cli_ota.Release(str(_release(base, tmp_path, keys, version, key=key))))
    text, codes = boots(board)
    print(text)
    assert codes == [0]
    why = {"wrong signature": "refused 0.2.0: bad signature (not signed by the fleet release key)",
           "older version": "refused 0.0.9: not newer than the running %s" % RUNNING,
           "equal version": None}[case]
    if why:
        assert text.count("tally: ota: " + why) == 1, text   # one line, not one per reconnect
    else:
        assert "tally: ota:" not in text                     # the one running: nothing to say
    assert rig.srv.requests.get(DEV, 0) == 0                 # not one chunk asked for
    assert not (board / "ota").exists()
    assert set(rig.births) == {RUNNING}


def test_a_release_that_crashes_at_boot_is_rolled_back(base, keys, rig, broker, tmp_path):
    board = _board(base, tmp_path, broker, duration=4)
    rig.srv.offer(DEV, cli_ota.Release(str(_release(base, tmp_path, keys, "0.3.0", crash=True))))
    text, codes = boots(board)
    print(text)
    # flashed bundle: fetched, reset; three trial boots crash; the fourth rolls back and runs on
    assert codes[0] == 75 and codes[1:4] == [1, 1, 1] and codes[4:] == [0], codes
    assert text.count("RuntimeError: broken release") == 3
    assert ("tally: ota: 0.3.0 did not come up healthy (connected, a batch acked) in 3 boots: "
            "rolled back to %s" % RUNNING) in text
    # the retained offer comes again: refused, not fetched again
    assert "tally: ota: refused 0.3.0: rolled back here before (not healthy in 3 boots)" in text
    p = json.loads((board / "ota" / "boot.json").read_text())
    assert p["cur"] == "" and "new" not in p and p["bad"] == ["0.3.0"]
    assert not (board / "ota" / "r-0.3.0").exists()
    assert rig.births[-1] == RUNNING
    assert rig.srv.wait([DEV], "0.3.0", 5)[DEV]["state"] in ("rolledback", "refused")


def test_a_release_that_never_gets_a_batch_acked_is_rolled_back(base, keys, broker, tmp_path):
    """Up, but not healthy: the collector does not know the device's key, so
    no batch is ever acked; each trial boot gives up after ota_trial_s."""
    rig = Rig(broker, tmp_path, collector=False)
    try:
        board = _board(base, tmp_path, broker, duration=3)
        cfg = json.loads((board / "tally_config.json").read_text())
        (board / "tally_config.json").write_text(json.dumps(dict(cfg, ota_trial_s=2)))
        rig.srv.offer(DEV, cli_ota.Release(str(_release(base, tmp_path, keys, "0.4.0"))))
        text, codes = boots(board)
    finally:
        rig.close()
    print(text)
    assert codes == [75, 75, 75, 75, 0], codes
    assert text.count("tally: ota: not healthy after 2 s on trial: rebooting") == 3
    assert "0.4.0 did not come up healthy (connected, a batch acked) in 3 boots: rolled back to 0.1.0" in text
    assert rig.births[-1] == RUNNING and "0.4.0" in rig.births


def test_the_manifest_and_offer_bytes_are_as_documented(base, keys, tmp_path):
    """docs/ota.md: OFFER = "TOTA", format 1, version length, version,
    manifest size (u32 BE), manifest SHA-256, RSA PKCS#1 v1.5 signature of
    all before it; MANIFEST = text lines."""
    r = _release(base, tmp_path, keys, "1.2.3")
    offer = (r / "ota-release" / "OFFER").read_bytes()
    man = (r / "ota-release" / "MANIFEST").read_bytes()
    assert offer[:4] == b"TOTA" and offer[4] == 1 and offer[5] == 5 and offer[6:11] == b"1.2.3"
    assert struct.unpack(">I", offer[11:15])[0] == len(man)
    assert offer[15:47] == hashlib.sha256(man).digest()
    assert len(offer) == 47 + 256                             # RSA-2048
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    with open(keys["priv"], "rb") as f:
        pub = serialization.load_pem_private_key(f.read(), None).public_key()
    pub.verify(offer[47:], offer[:47], padding.PKCS1v15(), hashes.SHA256())   # raises if not
    lines = man.decode().splitlines()
    assert lines[0] == "tally-ota 1" and lines[1] == "version 1.2.3"
    files = [ln.split() for ln in lines[2:-1]]
    assert all(f[0] == "file" and len(f) == 4 for f in files)
    for _, sha, size, path in files:
        data = (r / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == int(size)
    assert "agent/device_main.mpy" in [f[3] for f in files]
    assert not any(f[3].startswith(("ota", "tally_config")) or "/" not in f[3] for f in files)
    assert lines[-1] == "total %d %d" % (len(files), sum(int(f[2]) for f in files))
    # the device's own check, on CPython: the signature with the modulus it holds
    n = bytes.fromhex(open(keys["pub"]).read().strip())
    assert ota.rsa_verify(n, offer[:47], offer[47:])
    assert not ota.rsa_verify(n, offer[:46] + b"\x00", offer[47:])


def test_ota_cli_keygen_release_and_refusals(tmp_path, base, capsys):
    assert main(["ota", "keygen", "--out", str(tmp_path / "k")]) == 0
    assert oct(os.stat(tmp_path / "k" / "release.pem").st_mode & 0o777) == "0o600"
    assert main(["ota", "keygen", "--out", str(tmp_path / "k")]) == 2        # never overwrites
    assert "release.pem exists" in capsys.readouterr().err
    rel = tmp_path / "b"
    shutil.copytree(base, rel)
    assert main(["ota", "release", "--bundle", str(rel), "--version", "1.x",
                 "--key", str(tmp_path / "k" / "release.pem")]) == 2
    assert "version '1.x' is not numbers separated by dots" in capsys.readouterr().err
    assert main(["ota", "push", "d1", "--bundle", str(rel)]) == 2
    assert "not released" in capsys.readouterr().err
    assert main(["ota", "release", "--bundle", str(rel), "--version", "1.0",
                 "--key", str(tmp_path / "k" / "release.pem")]) == 0
    (rel / "agent" / "agent.mpy").write_bytes(b"changed")
    assert main(["ota", "push", "d1", "--bundle", str(rel)]) == 2
    assert "changed since it was released (agent/agent.mpy)" in capsys.readouterr().err


class _Client:
    """A bare MQTT client with a device's certificate, doing what our device
    code never does."""

    def __init__(self, url, name, tls):
        from agent.port.mqtt_paho import Client
        self.got = []
        self.subbed = threading.Event()
        self.c = Client(name, url, tls, on_connect=lambda *a: None)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_subscribe = lambda *a: self.subbed.set()
        self.c.connect(self.c.host, self.c.port)
        self.c.loop_start()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_the_acl_keeps_each_device_to_its_own_ota_topics(tls_broker, pki, base, keys, tmp_path):
    """With the ACL of `tally pki` (docs/security.md): a device reads only its
    own offer and chunks, cannot ask for another device's, and cannot offer a
    release; the operator (the collector's certificate) serves both."""
    from conftest import until
    rel = cli_ota.Release(str(_release(base, tmp_path, keys, "0.2.0")))
    srv = cli_ota.Server(tls_broker.url, tls=pki.collector_tls).start()
    a = _Client(tls_broker.url, "dev-a", pki.device_tls("dev-a"))
    b = _Client(tls_broker.url, "dev-b", pki.device_tls("dev-b"))
    try:
        srv.offer("dev-a", rel)
        srv.offer("dev-b", rel)
        for c in (a, b):
            c.c.subscribe([("tally/v1/+/ota", 1), ("tally/v1/+/ota/chunk", 1)])
            assert c.subbed.wait(5)
        a.c.publish("tally/v1/dev-b/ota", b"TOTA forged", qos=1, retain=True).wait_for_publish(5)
        a.c.publish("tally/v1/dev-b/ota/get", struct.pack(ota.HDR, rel.tag, 1, 0), qos=1).wait_for_publish(5)
        a.c.publish("tally/v1/dev-a/ota/get", struct.pack(ota.HDR, rel.tag, 1, 0), qos=1).wait_for_publish(5)
        assert until(lambda: any(t.endswith("/chunk") for t, _ in a.got))
        time.sleep(0.3)
    finally:
        a.close()
        b.close()
        srv.stop()
    assert srv.requests == {"dev-a": 1}                       # dev-a's request for dev-b's file: dropped
    assert sorted(t for t, _ in a.got) == ["tally/v1/dev-a/ota", "tally/v1/dev-a/ota/chunk"]
    assert b.got == [("tally/v1/dev-b/ota", rel.offer)]      # its own offer only, not the forgery


class _Wire:
    """The edge of the world for an Updater on CPython: what it publishes."""

    def __init__(self):
        self.out = []

    def publish(self, topic, payload, retain=False):
        self.out.append((topic, joined(payload)))
        return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=400))
def test_any_offer_or_chunk_bytes_are_refused_in_one_line_never_raised(junk, tmp_path, monkeypatch, keys,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    n = bytes.fromhex(open(keys["pub"]).read().strip())
    u = ota.Updater("d", _Wire(), n, RUNNING, lambda: 0)
    u.chunk(junk)
    u.offer(junk)
    u.chunk(junk)
    assert u.state == "idle" and not u.net.out and not os.path.exists("ota")
    said = [x for x in capsys.readouterr().out.splitlines() if x]
    assert len(said) <= 1 and all(x.startswith("tally: ota: refused ") for x in said)


def test_truncated_or_tampered_offers_are_refused_before_any_request(base, keys, tmp_path, capsys,
                                                                    monkeypatch):
    rel = cli_ota.Release(str(_release(base, tmp_path, keys, "0.2.0")))
    n = bytes.fromhex(open(keys["pub"]).read().strip())
    monkeypatch.chdir(tmp_path)
    cases = {"truncated": rel.offer[:-1], "header only": rel.offer[:47],
             "signature flipped": rel.offer[:-1] + bytes([rel.offer[-1] ^ 1]),
             "version changed": rel.offer[:10] + b"9" + rel.offer[11:],
             "manifest hash changed": rel.offer[:20] + bytes([rel.offer[20] ^ 1]) + rel.offer[21:]}
    for name, b in cases.items():
        u = ota.Updater("d", _Wire(), n, RUNNING, lambda: 0)
        u.offer(b)
        assert u.state == "idle" and not u.net.out, name          # nothing asked for
        assert json.loads(u.report)["state"] == "refused", name
        line = capsys.readouterr().out.strip()
        assert line.startswith("tally: ota: refused ") and line.count("\n") == 0, (name, line)
    assert not os.path.exists("ota")
