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


class CoseError(ValueError):
    pass


def hmac_sha256(key, msg):
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
    o = hashlib.sha256(opad)
    o.update(h.digest())
    return o.digest()


def _tag(key, aad, payload):
    return hmac_sha256(key, cbor.dumps(["MAC0", PROTECTED, aad, payload]))[:TAG_LEN]


def mac0(payload, key, aad):
    """Wrap payload (bytes) in a tagged COSE_Mac0 keyed with `key`, binding `aad`."""
    if isinstance(aad, str):
        aad = aad.encode()
    return cbor.dumps(cbor.Tag(TAG_MAC0, [PROTECTED, {}, bytes(payload), _tag(key, aad, payload)]))


def _eq(a, b):
    # constant time for equal lengths
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def verify(msg, key, aad):
    """Payload of a COSE_Mac0 message if its tag verifies; CoseError otherwise."""
    if isinstance(aad, str):
        aad = aad.encode()
    try:
        obj = cbor.loads(msg)
    except ValueError as e:
        raise CoseError("cose: not CBOR (%s)" % e)
    if isinstance(obj, cbor.Tag):
        if obj.tag != TAG_MAC0:
            raise CoseError("cose: tag %d is not COSE_Mac0" % obj.tag)
        obj = obj.value
    if not (isinstance(obj, list) and len(obj) == 4 and isinstance(obj[0], bytes)
            and isinstance(obj[1], dict) and isinstance(obj[2], bytes) and isinstance(obj[3], bytes)):
        raise CoseError("cose: not a COSE_Mac0 structure")
    prot, _, payload, tag = obj
    try:
        alg = cbor.loads(prot).get(1) if prot else None
    except (ValueError, AttributeError):
        raise CoseError("cose: bad protected header")
    if alg != ALG_HMAC_256_64:
        raise CoseError("cose: algorithm %r is not HMAC 256/64" % (alg,))
    want = hmac_sha256(key, cbor.dumps(["MAC0", prot, aad, payload]))[:TAG_LEN]
    if not _eq(tag, want):
        raise CoseError("cose: bad tag")
    return payload


def device_key(master, device_id):
    """A per-device key derived from a fleet master secret (HMAC-SHA256)
    of at least 16 bytes."""
    if len(master) < 16:
        raise ValueError("cose: a master secret takes at least 16 bytes")
    return hmac_sha256(master, b"tally-device-key:" + device_id.encode())[:16]
