# COSE_Mac0 (RFC 9052 section 6) with HMAC 256/64 (RFC 9053: alg 4, the
# HMAC-SHA256 tag truncated to 64 bits) and the device id as external AAD.
# HMAC (RFC 2104) is computed here over hashlib.sha256, because MicroPython
# has no hmac module. Portable: CPython and MicroPython.
#
#   COSE_Mac0 = #6.17([protected: bstr .cbor {1: 4}, unprotected: {},
#                      payload: bstr, tag: bstr .size 8])
#   MAC_structure = ["MAC0", protected, external_aad, payload]

import hashlib
from agent import cbor

ALG_HMAC_256_64 = 4
TAG_MAC0 = 17
PROTECTED = cbor.dumps({1: ALG_HMAC_256_64})
TAG_LEN = 8
PROTECTED_BSTR = cbor.dumps(PROTECTED)     # as it sits in the message: a byte string


class CoseError(ValueError):
    pass


def hmac_sha256(key, msg, *more):
    """HMAC-SHA256 of msg and then each of more, as if joined (no joined copy)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = bytearray(64)
    k[:len(key)] = key
    ipad = bytearray(64)
    opad = bytearray(64)
    for i in range(64):
        ipad[i] = k[i] ^ 0x36
        opad[i] = k[i] ^ 0x5C
    h = hashlib.sha256(ipad)
    h.update(msg)
    for m in more:
        h.update(m)
    o = hashlib.sha256(opad)
    o.update(h.digest())
    return o.digest()


def _mac_head(prot, aad, n):
    """MAC_structure ["MAC0", prot, aad, payload] encoded up to the payload's
    bytes (its byte-string head included): the MAC is taken over this and
    then the payload itself, never a copy of the payload inside a structure."""
    head = bytearray()
    cbor._head(head, 4, 4)
    cbor.encode_into(head, "MAC0")
    cbor.encode_into(head, prot)
    cbor.encode_into(head, aad)
    cbor._head(head, 2, n)
    return head


def _tag(key, aad, payload):
    return hmac_sha256(key, _mac_head(PROTECTED, aad, len(payload)), payload)[:TAG_LEN]


def mac0(payload, key, aad):
    """Wrap payload (bytes) in a tagged COSE_Mac0 keyed with `key`, binding `aad`.
    The message is joined in one allocation of its own size: on a device the
    payload is the largest object of the loop, and a heap of 64 KiB has room
    for few copies of it (docs/firmware.md)."""
    if isinstance(aad, str):
        aad = aad.encode()
    head = bytearray(b"\xd1\x84")                  # tag 17 (COSE_Mac0), an array of 4
    cbor.encode_into(head, PROTECTED)
    head.append(0xA0)                               # unprotected: {}
    cbor._head(head, 2, len(payload))
    return b"".join((head, payload, b"\x48", _tag(key, aad, payload)))   # tag: bstr .size 8


def mac0_into(buf, payload, key, aad):
    """mac0(), appended to the bytearray buf (the uplink's reused message
    buffers: no allocation of the message's size); returns buf."""
    if isinstance(aad, str):
        aad = aad.encode()
    buf.extend(b"\xd1\x84")
    buf.extend(PROTECTED_BSTR)
    buf.append(0xA0)
    cbor._head(buf, 2, len(payload))
    buf.extend(payload)
    buf.append(0x48)
    buf.extend(_tag(key, aad, payload))
    return buf


def mac0_in_place(buf, tail, key, aad):
    """mac0() of a payload held in two bytearrays, buf then tail, made in
    them (the head inserted before buf's bytes, the tag appended to tail): no
    buffer of the payload's size. Returns the message as (buf, tail)."""
    if isinstance(aad, str):
        aad = aad.encode()
    head = bytearray(b"\xd1\x84")
    head.extend(PROTECTED_BSTR)
    head.append(0xA0)
    n = len(buf) + len(tail)
    cbor._head(head, 2, n)
    t = hmac_sha256(key, _mac_head(PROTECTED, aad, n), buf, tail)[:TAG_LEN]
    buf[0:0] = head
    tail.append(0x48)
    tail.extend(t)
    return buf, tail


def _eq(a, b):
    # constant time for equal lengths
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def _bstr(msg, p):
    """(start, end) of the byte string whose head is at msg[p]; CoseError
    if it is not one or runs past the end."""
    if p >= len(msg) or msg[p] >> 5 != 2:
        raise CoseError("cose: not a COSE_Mac0 structure")
    info = msg[p] & 31
    p += 1
    if info < 24:
        n = info
    elif info < 28:
        w = 1 << (info - 24)
        if p + w > len(msg):
            raise CoseError("cose: not a COSE_Mac0 structure")
        n = 0
        for i in range(w):
            n = (n << 8) | msg[p + i]
        p += w
    else:
        raise CoseError("cose: not a COSE_Mac0 structure")
    if p + n > len(msg):
        raise CoseError("cose: not a COSE_Mac0 structure")
    return p, p + n


def verify(msg, key, aad):
    """Payload of a COSE_Mac0 message if its tag verifies; CoseError otherwise.
    The message is read as the one shape Tally sends, head by head (tag 17,
    optional; an array of 4; three byte strings around an empty unprotected
    map; nothing after), so what is not that costs no decoding."""
    if isinstance(aad, str):
        aad = aad.encode()
    msg = memoryview(msg)
    p = 0
    if len(msg) and msg[0] == 0xD1:             # tag 17, COSE_Mac0
        p = 1
    elif len(msg) and msg[0] >> 5 == 6:
        raise CoseError("cose: a tag that is not COSE_Mac0")
    if p >= len(msg) or msg[p] != 0x84:         # an array of 4
        raise CoseError("cose: not a COSE_Mac0 structure")
    a, b = _bstr(msg, p + 1)
    if b >= len(msg) or msg[b] != 0xA0:         # the unprotected header: {}
        raise CoseError("cose: unprotected header not empty")
    c, d = _bstr(msg, b + 1)
    e, f = _bstr(msg, d)
    if f != len(msg):
        raise CoseError("cose: bytes after the COSE_Mac0 structure")
    prot = bytes(msg[a:b])
    if prot != PROTECTED:
        try:
            alg = cbor.loads(prot).get(1) if prot and len(prot) < 64 else None
        except (ValueError, AttributeError):
            raise CoseError("cose: bad protected header")
        if alg != ALG_HMAC_256_64:
            raise CoseError("cose: algorithm is not HMAC 256/64")
    payload = bytes(msg[c:d])
    want = hmac_sha256(key, _mac_head(prot, aad, len(payload)), payload)[:TAG_LEN]
    if not _eq(msg[e:f], want):
        raise CoseError("cose: bad tag")
    return payload


def device_key(master, device_id):
    """A per-device key derived from a fleet master secret (HMAC-SHA256)
    of at least 16 bytes."""
    if len(master) < 16:
        raise ValueError("cose: a master secret takes at least 16 bytes")
    return hmac_sha256(master, b"tally-device-key:" + device_id.encode())[:16]
