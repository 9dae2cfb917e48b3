# The device's TLS identity (MicroPython and CPython): its client
# certificate, private key and the fleet CA, all DER (MicroPython's mbedtls
# parses no PEM; `tally flash` converts), made into one ssl.SSLContext at
# start that every reconnect reuses. The certificate is read with a small
# DER walk (X.509, RFC 5280: only what the checks need): at start it must
# name this device (subject CN or a SAN dNSName equal to the device id);
# when the broker then closes a handshake, doubt() says what is wrong with
# our certificate as far as the device can tell: not issued by the fleet
# CA (issuer name or key identifier differs), expired or not yet valid by
# the device's wall clock. The DER bytes are not kept: mbedtls holds its own
# parsed copy, we keep a few names and two times.

# mqtts://: the config keys naming the DER files in the bundle, and the names
# `tally flash` gives them (agent/cli/bundle.py writes, agent/device_main.py reads)
TLS_FILES = (("tls_cert", "tls_cert.der"), ("tls_key", "tls_key.der"), ("tls_ca", "tls_ca.der"))
_CN = b"\x06\x03\x55\x04\x03"          # OID 2.5.4.3, commonName
_SAN = b"\x55\x1d\x11"                 # 2.5.29.17 subjectAltName
_SKI = b"\x55\x1d\x0e"                 # 2.5.29.14 subjectKeyIdentifier
_AKI = b"\x55\x1d\x23"                 # 2.5.29.35 authorityKeyIdentifier


class CertError(ValueError):
    pass


def _tlv(b, i):
    """(tag, start, end) of the DER element at b[i]."""
    if i + 2 > len(b):
        raise CertError("truncated DER")
    t = b[i]
    n = b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k > 3 or i + k > len(b):
            raise CertError("bad DER length")
        n = 0
        for _ in range(k):
            n = n << 8 | b[i]
            i += 1
    if i + n > len(b):
        raise CertError("truncated DER")
    return t, i, i + n


def _kids(b, i, end):
    """The (tag, start, end) of each element from b[i] to end."""
    out = []
    while i < end:
        t, s, e = _tlv(b, i)
        out.append((t, s, e))
        i = e
    return out


def _cn(b, i, end):
    """The commonName in the Name b[i:end] (its contents), or None."""
    for _, s, e in _kids(b, i, end):             # SET of AttributeTypeAndValue
        for _, s2, e2 in _kids(b, s, e):         # SEQUENCE {OID, value}
            if b[s2:s2 + 5] == _CN:
                _, vs, ve = _tlv(b, s2 + 5)
                return bytes(b[vs:ve]).decode()
    return None


def _time(b, t, s, e):
    """UTCTime or GeneralizedTime (..Z) as Unix seconds."""
    v = bytes(b[s:e]).decode()
    if t == 0x17:                                 # YYMMDDHHMMSSZ: 1950-2049
        v = ("19" if int(v[:2]) >= 50 else "20") + v
    y = int(v[0:4])
    m = int(v[4:6])
    d = int(v[6:8])
    # days from 1970-01-01 to the civil date (proleptic Gregorian)
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + int(v[8:10]) * 3600 + int(v[10:12]) * 60 + int(v[12:14])


def day(v):
    """Unix seconds as YYYY-MM-DD (the inverse of _time's date part)."""
    z = v // 86400 + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return "%04d-%02d-%02d" % (yoe + era * 400 + (1 if m <= 2 else 0), m, d)


class Cert:
    """What the checks need of one DER certificate: cn, names (SAN dNSNames),
    issuer_cn, issuer (raw Name), subject (raw Name), not_before, not_after
    (Unix s), ski and aki (key identifiers, or None)."""

    def __init__(self, der):
        try:
            self._parse(der)
        except (IndexError, ValueError, UnicodeError) as e:
            raise CertError("not a DER X.509 certificate (%s)" % e)

    def _parse(self, b):
        t, s, e = _tlv(b, 0)                      # Certificate
        t, s, e = _tlv(b, s)                      # TBSCertificate
        if t != 0x30:
            raise CertError("no TBSCertificate")
        f = _kids(b, s, e)
        if f[0][0] == 0xA0:                       # [0] version
            f = f[1:]
        # serial, signature algorithm, issuer, validity, subject, key, [1] [2] [3]
        _, s, e = f[2]
        self.issuer = bytes(b[s:e])
        self.issuer_cn = _cn(b, s, e)
        v = _kids(b, f[3][1], f[3][2])
        self.not_before = _time(b, *v[0])
        self.not_after = _time(b, *v[1])
        _, s, e = f[4]
        self.subject = bytes(b[s:e])
        self.cn = _cn(b, s, e)
        self.names = []
        self.ski = self.aki = None
        for t, s, e in f[6:]:
            if t != 0xA3:                         # [3] extensions
                continue
            _, s, e = _tlv(b, s)
            for _, xs, xe in _kids(b, s, e):     # Extension {OID, critical?, OCTET STRING}
                x = _kids(b, xs, xe)
                oid = bytes(b[x[0][1]:x[0][2]])
                _, vs, ve = x[-1]
                if oid == _SAN:
                    _, gs, ge = _tlv(b, vs)
                    for gt, ns, ne in _kids(b, gs, ge):
                        if gt == 0x82:            # [2] dNSName
                            self.names.append(bytes(b[ns:ne]).decode())
                elif oid == _SKI:
                    _, ks, ke = _tlv(b, vs)
                    self.ski = bytes(b[ks:ke])
                elif oid == _AKI:
                    _, ks, ke = _tlv(b, vs)
                    for kt, is_, ie in _kids(b, ks, ke):
                        if kt == 0x80:            # [0] keyIdentifier
                            self.aki = bytes(b[is_:ie])

    def names_device(self, device_id):
        return self.cn == device_id or device_id in self.names

    def issued_by(self, ca):
        if self.aki is not None and ca.ski is not None and self.aki != ca.ski:
            return False
        return self.issuer == ca.subject


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class Identity:
    """The device's certificate, key and CA from DER files; ctx: the
    SSLContext (client certificate presented, the broker's certificate
    verified against the CA and the server name). wall: a callable giving
    Unix seconds, 0 while the wall time is unknown. ValueError, one line
    naming the file, for what is missing or wrong, and for a certificate
    that does not name device_id."""

    def __init__(self, device_id, cert, key, ca, wall=None):
        self.wall = wall or (lambda: 0)
        try:
            c = Cert(_read(cert))
        except (OSError, CertError) as e:
            raise ValueError("tls certificate %s: %s" % (cert, e))
        try:
            a = Cert(_read(ca))
        except (OSError, CertError) as e:
            raise ValueError("tls CA %s: %s" % (ca, e))
        if not c.names_device(device_id):
            raise ValueError("certificate %s names %r%s, not this device %r: not connecting"
                             % (cert, c.cn, " (SAN %s)" % ", ".join(c.names) if c.names else "", device_id))
        self.cn = c.cn
        self.issuer_cn = c.issuer_cn
        self.ca_cn = a.cn
        self.from_ca = c.issued_by(a)
        self.not_before = c.not_before
        self.not_after = c.not_after
        del c, a
        try:
            import tls                            # MicroPython's mbedtls (its ssl.py wraps this)
        except ImportError:
            raise ValueError("no tls module on this port (the device's TLS needs MicroPython's)")
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_cert_chain(_read(cert), _read(key))
        except OSError as e:
            raise ValueError("tls key %s: %s" % (key, e))
        except ValueError as e:                   # 'invalid key', 'invalid cert': not DER
            raise ValueError("tls certificate %s with key %s: %s" % (cert, key, e))
        ctx.load_verify_locations(_read(ca))
        ctx.verify_mode = tls.CERT_REQUIRED
        self.ctx = ctx

    def doubt(self):
        """Why the broker may have closed our handshake, as far as our own
        certificate can tell."""
        if not self.from_ca:
            return ("our certificate is issued by %r, not by the fleet CA %r: the broker trusts "
                    "only certificates its CA issued" % (self.issuer_cn, self.ca_cn))
        now = self.wall()
        if now and now > self.not_after:
            return "our certificate expired on %s (this device's clock says %s)" % (
                day(self.not_after), day(now))
        if now and now < self.not_before:
            return "our certificate is not valid before %s (this device's clock says %s)" % (
                day(self.not_before), day(now))
        return ("our certificate (CN %r, from the fleet CA %r, valid to %s) looks right%s: check "
                "that the broker trusts the fleet CA" % (self.cn, self.ca_cn, day(self.not_after),
                                                         "" if now else " (no wall clock yet to check its dates)"))
