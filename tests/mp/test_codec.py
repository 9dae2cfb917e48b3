# Codec tests that run under MicroPython (and CPython): CBOR, HMAC, COSE_Mac0.
from agent import cbor


def test_cbor_vectors():
    vecs = [(0, "00"), (24, "1818"), (1000000, "1a000f4240"), (-100, "3863"),
            (18446744073709551615, "1bffffffffffffffff"), ([1, [2, 3]], "8201820203"),
            ({"a": 1}, "a1616101"), (b"\x01\x02", "420102"), (None, "f6")]
    for v, h in vecs:
        got = "".join("%02x" % b for b in cbor.dumps(v))
        assert got == h, (v, got, h)
        assert cbor.loads(cbor.dumps(v)) == v


def test_cbor_map_keys_in_rfc8949_order():
    # RFC 8949 section 4.2.1's example: keys sorted bytewise by their encodings,
    # whatever order the dict holds them in on this runtime
    d = {False: 8, (-1,): 7, (100,): 6, "aa": 5, "z": 4, -1: 3, 100: 2, 10: 1}
    got = "".join("%02x" % b for b in cbor.dumps(d))
    assert got == "a80a011864022003617a046261610581186406812007f408", got
    got = "".join("%02x" % b for b in cbor.dumps({"e": "E", "d": "D", "c": "C", "b": "B", "a": "A"}))
    assert got == "a56161614161626142616361436164614461656145", got
    for dup in (b"\xa2\x61\x61\x01\x61\x61\x02", b"\xa2\x01\x01\x01\x02"):
        try:
            cbor.loads(dup)
        except cbor.CBORError:
            continue
        raise AssertionError("accepted a duplicate key %r" % dup)
    assert cbor.loads(b"\xa2\x61\x62\x02\x61\x61\x01") == {"a": 1, "b": 2}
    assert not cbor.is_deterministic(b"\xa2\x61\x62\x02\x61\x61\x01")


def test_cbor_rejects_garbage():
    for bad in (b"", b"\x18", b"\x83\x01", b"\x01\x02"):
        try:
            cbor.loads(bad)
        except cbor.CBORError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_hmac_sha256_and_cose_mac0():
    from agent import cose
    # RFC 4231 test case 2
    got = cose.hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert "".join("%02x" % b for b in got) == want
    msg = cose.mac0(b"\x82\x01\x02", b"k" * 16, "dev-1")
    assert cose.verify(msg, b"k" * 16, "dev-1") == b"\x82\x01\x02"
    for key, aad in ((b"x" * 16, "dev-1"), (b"k" * 16, "dev-2")):
        try:
            cose.verify(msg, key, aad)
        except cose.CoseError:
            continue
        raise AssertionError("verified with the wrong key or device")
