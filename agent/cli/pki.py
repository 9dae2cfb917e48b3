"""Certificates for TLS between devices, broker and collector (CPython only,
an operator tool behind `tally pki`; never flashed). Needs the `cryptography`
package (`pip install 'tally[pki]'`).

One directory holds a fleet's PKI:

    ca.crt ca.key                  the fleet CA (keep ca.key offline)
    server.crt server.key          the broker's certificate (SAN: the hosts given)
    collector.crt collector.key    the collector's client certificate, CN "collector"
    devices/<id>.crt <id>.key      one client certificate per device, CN = device id
    mosquitto/acl                  the ACL the broker enforces (see docs/security.md)
    mosquitto/tally.conf           a TLS listener for mosquitto 2 using all of the above

Keys are EC P-256, private keys are written 0600. With `use_identity_as_username`
the broker takes a client's CN as its username, and the ACL lets a device write
only under `tally/v1/<its CN>/`."""
import datetime
import ipaddress
import os

from agent.cli.common import err

COLLECTOR = "collector"        # the collector's CN, and its user in the ACL
DAY = datetime.timedelta(days=1)


class PKIError(ValueError):
    pass


def _crypto():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise PKIError("the cryptography package is needed: pip install 'tally[pki]'")
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def check_device_id(device_id):
    """A device id becomes a certificate CN, an MQTT username and a topic level."""
    if not (0 < len(device_id) <= 64) or any(c in device_id for c in "/+#%\0") \
            or device_id != device_id.strip():
        raise PKIError("device id %r: 1-64 characters, no / + # %% and no surrounding space"
                       % device_id)
    if device_id == COLLECTOR:
        raise PKIError("device id %r is reserved for the collector's certificate" % device_id)


def _write(path, data, private=False):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _load_ca(ca_dir):
    x509, _, serialization, _, _, _ = _crypto()
    crt, key = os.path.join(ca_dir, "ca.crt"), os.path.join(ca_dir, "ca.key")
    try:
        with open(crt, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key, "rb") as f:
            pkey = serialization.load_pem_private_key(f.read(), None)
    except OSError as e:
        raise PKIError("no CA in %s (%s): run `tally pki init %s` first"
                       % (ca_dir, e.strerror or e, ca_dir))
    return cert, pkey


def _build(cn, key, issuer_cert, issuer_key, not_before, not_after, ca=False,
           server_hosts=(), client=False):
    x509, hashes, _, _, EKU, NameOID = _crypto()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder()
         .subject_name(name)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    b = b.add_extension(x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=not ca, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False), critical=True)
    if issuer_cert is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()), critical=False)
    if server_hosts:
        alt = []
        for h in server_hosts:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                alt.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH]), critical=False)
    if client:
        b = b.add_extension(x509.ExtendedKeyUsage([EKU.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _save(stem, cert, key):
    _, _, serialization, _, _, _ = _crypto()
    _write(stem + ".key", key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()), private=True)
    _write(stem + ".crt", cert.public_bytes(serialization.Encoding.PEM))
    return stem + ".crt", stem + ".key"


def _validity(days, not_before=None, not_after=None):
    if days < 1:
        raise PKIError("validity must be at least one day, got %d" % days)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    nb = not_before or now - DAY      # a day of slack for devices whose clock lags
    return nb, not_after or now + days * DAY


def new_ca(ca_dir, name="Tally fleet CA", days=3650):
    """A self-signed CA in ca_dir/ca.crt, ca.key. Returns the certificate path."""
    _, _, _, ec, _, _ = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build(name, key, None, key, *_validity(days), ca=True)
    return _save(os.path.join(ca_dir, "ca"), cert, key)[0]


def issue(ca_dir, cn, stem, days=825, server_hosts=(), not_before=None, not_after=None):
    """A certificate for cn signed by the CA in ca_dir, written to stem.crt and
    stem.key: a server certificate when server_hosts are given, else a client
    one. not_before/not_after (aware datetimes) override the validity, e.g. to
    make an expired certificate for a test. Returns (crt, key) paths."""
    _, _, _, ec, _, _ = _crypto()
    ca_cert, ca_key = _load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build(cn, key, ca_cert, ca_key, *_validity(days, not_before, not_after),
                  server_hosts=server_hosts, client=not server_hosts)
    return _save(stem, cert, key)


def paths(pki_dir):
    """Where init() puts things."""
    j = lambda *p: os.path.join(pki_dir, *p)
    return {"ca": j("ca.crt"), "server_cert": j("server.crt"), "server_key": j("server.key"),
            "collector_cert": j("collector.crt"), "collector_key": j("collector.key"),
            "acl": j("mosquitto", "acl"), "conf": j("mosquitto", "tally.conf")}


def init(pki_dir, hosts=("localhost", "127.0.0.1"), days=825, port=8883):
    """A new fleet PKI in pki_dir: CA, broker certificate for hosts, collector
    certificate, and the mosquitto ACL and listener config. Refuses to replace
    an existing CA. Returns paths(pki_dir), absolute."""
    pki_dir = os.path.abspath(pki_dir)
    p = paths(pki_dir)
    if os.path.exists(os.path.join(pki_dir, "ca.key")):
        raise PKIError("%s already holds a CA (ca.key); not replacing it" % pki_dir)
    if not hosts:
        raise PKIError("give the broker's host names or addresses for its certificate")
    new_ca(pki_dir)
    issue(pki_dir, hosts[0], os.path.join(pki_dir, "server"), days, server_hosts=hosts)
    issue(pki_dir, COLLECTOR, os.path.join(pki_dir, "collector"), days)
    _write(p["acl"], mosquitto_acl().encode())
    _write(p["conf"], mosquitto_tls_conf(port, p["ca"], p["server_cert"], p["server_key"],
                                         p["acl"]).encode())
    return p


def device(pki_dir, device_id, days=825):
    """A client certificate for device_id in pki_dir/devices/. Returns (crt, key)."""
    check_device_id(device_id)
    return issue(pki_dir, device_id, os.path.join(pki_dir, "devices", device_id), days)


# The topic kinds under tally/v1/<device>/ (docs/wire.md), by who writes them.
DEVICE_WRITES = ("birth", "data", "death", "cfgack")
COLLECTOR_WRITES = ("ack", "config")
# Signed updates (docs/ota.md): the device asks for chunks and says its state;
# the operator's `tally ota push`, with the collector's certificate, offers
# releases and answers with chunks. A device reads only its own.
OTA_DEVICE_WRITES = ("ota/get", "ota/state")
OTA_OPERATOR_WRITES = ("ota", "ota/chunk")


def mosquitto_acl(collector=COLLECTOR):
    """The broker ACL: a device (username = its certificate's CN) writes only
    its own birth/data/death/cfgack and reads only its own ack/config; the
    collector reads those of every device and writes every device's
    ack/config. No $share rule is needed: mosquitto 2's acl_file grants every
    SUBSCRIBE (shared or not) and checks read access per message, on its real
    topic, when it delivers it (tests/test_tls.py shows both)."""
    lines = ["# Tally: who may publish and subscribe where (mosquitto acl_file).",
             "# Usernames are certificate CNs (use_identity_as_username true).",
             "",
             "# The collector: every device's uplink in, acks and configs out.",
             "user " + collector]
    lines += ["topic read tally/v1/+/" + k for k in DEVICE_WRITES]
    lines += ["topic write tally/v1/+/" + k for k in COLLECTOR_WRITES]
    lines += ["# ... and signed updates (tally ota push): offers and chunks out, requests in."]
    lines += ["topic read tally/v1/+/" + k for k in OTA_DEVICE_WRITES]
    lines += ["topic write tally/v1/+/" + k for k in OTA_OPERATOR_WRITES]
    lines += ["", "# Every device: only under its own id (%u is the username, the CN)."]
    lines += ["pattern write tally/v1/%u/" + k for k in DEVICE_WRITES + OTA_DEVICE_WRITES]
    lines += ["pattern read tally/v1/%u/" + k for k in COLLECTOR_WRITES + OTA_OPERATOR_WRITES]
    return "\n".join(lines) + "\n"


def mosquitto_tls_conf(port, ca, cert, key, acl, bind=None):
    """A mosquitto 2 TLS listener that requires a client certificate from the
    fleet CA and enforces the ACL. tls_version is the minimum in mosquitto 2."""
    return ("per_listener_settings false\n"
            "allow_anonymous false\n"
            "set_tcp_nodelay true\n"
            "acl_file %s\n"
            "listener %d%s\n"
            "cafile %s\n"
            "certfile %s\n"
            "keyfile %s\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
            "tls_version tlsv1.2\n" % (acl, port, " " + bind if bind else "", ca, cert, key))


# -- the command --------------------------------------------------------------------------

def run(a):
    try:
        if a.action == "init":
            p = init(a.dir, hosts=a.host or ("localhost", "127.0.0.1"), days=a.days, port=a.port)
            print("tally: new fleet PKI in %s\n"
                  "  CA         %s (keep ca.key offline: it signs every certificate)\n"
                  "  broker     %s for %s\n"
                  "  collector  %s\n"
                  "  mosquitto  %s, %s (docs/security.md)\n"
                  "next: tally pki device %s DEVICE_ID, for each device"
                  % (a.dir, p["ca"], p["server_cert"], ", ".join(a.host or ("localhost", "127.0.0.1")),
                     p["collector_cert"], p["conf"], p["acl"], a.dir))
        else:
            crt, key = device(a.dir, a.device_id, days=a.days)
            print("tally: %s, %s\ncopy them and ca.crt to the device's /etc/tally/ (the key 0600, "
                  "owned by the agent's user); its tally.toml then has:\n"
                  "broker = \"mqtts://BROKER:8883\"\n[tls]\nca = \"/etc/tally/ca.crt\"\n"
                  "cert = \"/etc/tally/%s.crt\"\nkey = \"/etc/tally/%s.key\"\n"
                  "(an ESP32: the same [tls] table, with these files' paths, in the TOML given to "
                  "tally flash, which puts them into its bundle)"
                  % (crt, key, a.device_id, a.device_id))
    except (PKIError, OSError) as e:
        return err("pki: %s" % e)
    return 0


def add(sub):
    k = sub.add_parser("pki", help="make a fleet CA and TLS certificates (tally pki init|device)",
                       description="TLS certificates for broker, collector and devices, EC P-256, "
                       "and a mosquitto listener config and ACL that let a device publish only "
                       "under its own id (see docs/security.md). Needs the cryptography package.")
    ks = k.add_subparsers(dest="action", metavar="ACTION", required=True)
    ki = ks.add_parser("init", help="a new CA, broker and collector certificates, mosquitto config")
    ki.add_argument("dir", help="directory for the fleet PKI")
    ki.add_argument("--host", action="append", help="the broker's DNS name or address, for its "
                    "certificate (repeat; default localhost and 127.0.0.1)")
    ki.add_argument("--port", type=int, default=8883, help="TLS listener port in the config (default 8883)")
    ki.add_argument("--days", type=int, default=825, help="validity of the certificates (default 825)")
    kd = ks.add_parser("device", help="a client certificate for one device (CN = its id)")
    kd.add_argument("dir", help="the directory of tally pki init")
    kd.add_argument("device_id")
    kd.add_argument("--days", type=int, default=825, help="validity (default 825)")
    k.set_defaults(func=run)
