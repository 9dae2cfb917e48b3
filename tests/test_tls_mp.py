"""TLS on the device: the unix bundle `tally flash` builds for an mqtts://
broker, run by the MicroPython unix port (its mbedtls) as a board runs it
(code in a mapped ROMFS image, the bundle's heap), against a real mosquitto
that requires a client certificate from the fleet CA and enforces the
per-device ACL. A good certificate syncs; a certificate from a foreign CA,
an expired one, and one that names another device are refused, each with
its cause on the console, while metering goes on; so is a broker whose
certificate is from another CA or names another host. `tally flash` checks
what it puts in the bundle."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from agent import cose
from agent.cli import bundle as cli_bundle
from agent.cli import main
from agent.cli import pki as agent_pki
from agent.collector.service import CollectorService
from agent.collector.store import Collector
from agent.port.tls_mp import Cert, day
from hil.harness.mosquitto import Mosquitto
from conftest import MP, ROOT

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
MASTER = bytes.fromhex("00112233445566778899aabbccddeeff")
DEV = "mp-tls-1"
KEY = cose.device_key(MASTER, DEV)


def toml(path, broker, tls, device_id=DEV):
    text = ('device_id = "%s"\ninterval_s = 1\nsample_ms = 100\nbroker = "%s"\nkey = "%s"\n'
            'batch_max = 2\nmax_latency_s = 1\n' % (device_id, broker, KEY.hex()))
    if tls:
        text += '[tls]\nca = "%s"\ncert = "%s"\nkey = "%s"\n' % (tls["ca"], tls["cert"], tls["key"])
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def tls_bundle(pki, tmp_path_factory):
    """The unix bundle for DEV with its own certificate, built once (the tests copy it)."""
    d = tmp_path_factory.mktemp("tls-bundle")
    cfg = toml(d / "tally.toml", "mqtts://127.0.0.1:8883", pki.device_tls(DEV))
    assert main(["flash", "--board", "unix", "--out", str(d / "bundle"), "--config", cfg,
                 "--duration", "4"]) == 0
    return d / "bundle"


def device(tls_bundle, tmp_path, broker, tls=None, seconds=4):
    """A copy of the bundle for this broker (tls: other certificate, key or CA
    files swapped in, as DER, as they would sit on a board)."""
    out = tmp_path / "bundle"
    shutil.copytree(str(tls_bundle), str(out))
    c = json.loads((out / "tally_config.json").read_text())
    c["broker"] = broker.url
    c["duration_s"] = seconds
    (out / "tally_config.json").write_text(json.dumps(c))
    for k, v in (tls or {}).items():
        (out / ("tls_%s.der" % k)).write_bytes(cli_bundle.der(v, k))
    return out


def run(out):
    """main.py as a board runs it: code in the ROMFS image, the bundle's heap."""
    r = subprocess.run([sys.executable, "-m", "hil.harness.romboard", str(out / "tally.romfs"), "main.py",
                        "--heap", cli_bundle.ROMFS_HEAP], cwd=str(out), capture_output=True, text=True,
                       timeout=120, env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT})
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    return r.stdout


def said(stdout, start):
    lines = [x for x in stdout.splitlines() if x.startswith(start)]
    assert len(lines) == 1, stdout            # one line, said once
    return lines[0]


def metered_offline(stdout):
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("tally: stopped;"), last
    logged, unacked = int(last.split()[2]), int(last.split()[5])
    assert logged >= 1 and unacked == logged, last      # metering went on, nothing was acked


def test_a_good_certificate_syncs_over_tls(tls_bundle, tls_broker, pki, tmp_path):
    col = Collector(str(tmp_path / "ledger.sqlite"), keys=lambda d: KEY if d == DEV else None)
    svc = CollectorService(tls_broker.url, col, tls=pki.collector_tls).start()
    svc.wait_ready(10)
    stop = threading.Event()
    pump = threading.Thread(target=svc.run_forever, args=(stop,), daemon=True)
    pump.start()
    try:
        out = run(device(tls_bundle, tmp_path, tls_broker, seconds=4))
    finally:
        stop.set()
        pump.join(10)
        svc.stop()
    assert "tally: broker 127.0.0.1:%d connected" % tls_broker.port in out
    assert "unreachable" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("tally: stopped;") and last.endswith(" 0 unacked"), last
    logged = int(last.split()[2])
    (e,) = col.summary(DEV)["epochs"].values()
    assert logged >= 3 and e["covered"] == logged and e["gaps"] == 0
    col.close()


def test_a_certificate_from_a_foreign_ca_is_refused_with_its_cause(tls_bundle, tls_broker, pki, tmp_path):
    out = run(device(tls_bundle, tmp_path, tls_broker, pki.foreign_tls(DEV), seconds=2))
    line = said(out, "tally: broker unreachable")
    assert "the broker closed the handshake" in line
    assert "issued by 'Foreign CA', not by the fleet CA 'Tally fleet CA'" in line, line
    metered_offline(out)


def test_an_expired_certificate_is_refused_with_its_cause(tls_bundle, tls_broker, pki, tmp_path):
    tls = pki.expired_tls(DEV)
    with open(tls["cert"], "rb") as f:
        pem = f.read()
    expired = day(Cert(cli_bundle.der(tls["cert"], "cert")).not_after)
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    out = run(device(tls_bundle, tmp_path, tls_broker, tls, seconds=2))
    line = said(out, "tally: broker unreachable")
    assert "the broker closed the handshake" in line
    assert "our certificate expired on %s" % expired in line, line
    metered_offline(out)


def test_a_certificate_naming_another_device_is_not_used(tls_bundle, tls_broker, pki, tmp_path):
    """Checked at start: not a byte goes to the broker, the device meters offline."""
    out = run(device(tls_bundle, tmp_path, tls_broker, pki.device_tls("mp-tls-2"), seconds=2))
    line = said(out, "tally: broker mqtts://")
    assert "names 'mp-tls-2', not this device 'mp-tls-1': not connecting: no uplink" in line, line
    assert "tally: device mp-tls-1 on unix, boot 1 (poweron), no broker (logging only)" in out
    assert "connected" not in out and "unreachable" not in out
    metered_offline(out)


def test_an_expired_certificate_is_named_once_the_wall_clock_is_known(tls_bundle, pki, tmp_path):
    """A board knows no time until NTP: before, the cause cannot be the dates."""
    tls = pki.expired_tls(DEV)
    for k in ("cert", "key", "ca"):
        (tmp_path / (k + ".der")).write_bytes(cli_bundle.der(tls[k], k))
    code = ("from agent.port.tls_mp import Identity\nw = [0]\n"
            "i = Identity(%r, 'cert.der', 'key.der', 'ca.der', wall=lambda: w[0])\n"
            "print(i.doubt())\nw[0] = %d\nprint(i.doubt())" % (DEV, int(time.time())))
    r = subprocess.run([MP, "-X", "heapsize=64K", "-c", code], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, MICROPYPATH=str(tls_bundle)))
    before, after = r.stdout.splitlines()
    assert "looks right (no wall clock yet to check its dates)" in before, r.stdout + r.stderr
    assert after.startswith("our certificate expired on "), after


@pytest.fixture
def elsewhere_broker(pki):
    """A TLS broker whose certificate, from the fleet CA, names another host."""
    stem = os.path.join(pki.root, "elsewhere")
    crt, key = agent_pki.issue(pki.root, "broker.example", stem, server_hosts=("broker.example",))
    m = Mosquitto(tls={"ca": pki.ca, "cert": crt, "key": key}).start()
    yield m
    m.close()


def test_the_brokers_certificate_is_checked(tls_bundle, tls_broker, elsewhere_broker, pki, tmp_path):
    """From another CA than the device's, or for another host name: the device says so."""
    out = run(device(tls_bundle, tmp_path / "a", tls_broker, {"ca": pki.foreign_ca()}, seconds=2))
    line = said(out, "tally: broker unreachable")
    assert "the broker's certificate: The certificate is not correctly signed by the trusted CA" in line, line
    out = run(device(tls_bundle, tmp_path / "b", elsewhere_broker, seconds=2))
    line = said(out, "tally: broker unreachable")
    assert "the broker's certificate: The certificate Common Name (CN) does not match" in line, line


def test_flash_puts_the_tls_files_in_the_bundle_as_der(tls_bundle):
    """(A plain mqtt:// bundle has none: tests/test_firmware.py.)"""
    c = json.loads((tls_bundle / "tally_config.json").read_text())
    assert {k: c[k] for k in ("tls_cert", "tls_key", "tls_ca")} == {
        "tls_cert": "tls_cert.der", "tls_key": "tls_key.der", "tls_ca": "tls_ca.der"}
    assert Cert((tls_bundle / "tls_cert.der").read_bytes()).cn == DEV
    assert Cert((tls_bundle / "tls_ca.der").read_bytes()).cn == "Tally fleet CA"
    assert (tls_bundle / "tls_key.der").read_bytes()[:1] == b"\x30"           # DER, not PEM
    assert os.stat(str(tls_bundle / "tls_key.der")).st_mode & 0o077 == 0


@pytest.mark.parametrize("case,needle", [
    ("other", "names 'mp-tls-2', not the device_id 'mp-tls-1'"),
    ("expired", "expired on"),
    ("none", "an mqtts:// broker needs [tls] cert, key and ca"),
])
def test_flash_refuses_a_certificate_the_device_could_not_use(pki, tmp_path, capsys, case, needle):
    tls = {"other": pki.device_tls("mp-tls-2"), "expired": pki.expired_tls(DEV), "none": None}[case]
    cfg = toml(tmp_path / "t.toml", "mqtts://127.0.0.1:8883", tls)
    assert main(["flash", "--board", "unix", "--out", str(tmp_path / "b"), "--config", cfg]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err


def test_the_client_speaks_tls_on_cpython_too(tls_broker, pki):
    """The same MQTTClient with CPython's ssl (PEM files): a QoS 1 round trip
    under the ACL, and a broker certificate from another CA named."""
    import ssl
    from agent.port.mqtt_mp import MQTTClient, TLSError

    def ctx(tls):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_cert_chain(tls["cert"], tls["key"])
        c.load_verify_locations(cafile=tls["ca"])
        return c
    c = MQTTClient(DEV, "127.0.0.1", tls_broker.port, ssl=ctx(pki.device_tls(DEV)))
    c.connect()
    try:
        c.subscribe(["tally/v1/%s/birth" % DEV])       # the ACL lets a device read nothing but
        pid = c.publish("tally/v1/%s/birth" % DEV, b"hello", qos=1)   # ack/config: no echo
        c.wait_puback(pid)
        assert not c.pend and c.connected()
    finally:
        c.disconnect()
    c = MQTTClient(DEV, "127.0.0.1", tls_broker.port, ssl=ctx(dict(pki.device_tls(DEV), ca=pki.foreign_ca())))
    with pytest.raises(TLSError, match="the broker's certificate: .*certificate verify failed"):
        c.connect()
    assert not c.connected()
