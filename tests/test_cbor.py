import cbor2
import pytest
from hypothesis import given, settings, strategies as st

from agent import cbor

ints = st.integers(min_value=-(2 ** 64), max_value=2 ** 64 - 1)
leaf = ints | st.binary(max_size=40) | st.text(max_size=20) | st.booleans() | st.none()
tree = st.recursive(leaf, lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=5), c, max_size=5),
                    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(tree)
def test_encoder_matches_cbor2_and_round_trips(obj):
    ours = cbor.dumps(obj)
    assert ours == cbor2.dumps(obj)
    assert cbor.loads(ours) == obj
    assert cbor2.loads(ours) == obj


@pytest.mark.parametrize("hexs,value", [
    # RFC 8949 Appendix A examples within our subset
    ("00", 0), ("17", 23), ("1818", 24), ("1903e8", 1000), ("1a000f4240", 1000000),
    ("1b000000e8d4a51000", 1000000000000), ("1bffffffffffffffff", 18446744073709551615),
    ("3bffffffffffffffff", -18446744073709551616), ("20", -1), ("3863", -100),
    ("40", b""), ("4401020304", b"\x01\x02\x03\x04"), ("60", ""), ("6449455446", "IETF"),
    ("80", []), ("83010203", [1, 2, 3]), ("8301820203820405", [1, [2, 3], [4, 5]]),
    ("a201020304", {1: 2, 3: 4}), ("f4", False), ("f5", True), ("f6", None),
])
def test_rfc8949_examples(hexs, value):
    assert cbor.loads(bytes.fromhex(hexs)) == value
    assert cbor.dumps(value).hex() == hexs


@pytest.mark.parametrize("hexs,tag,value", [
    # RFC 8949 Appendix A, tagged items
    ("c074323031332d30332d32315432303a30343a30305a", 0, "2013-03-21T20:04:00Z"),
    ("c11a514b67b0", 1, 1363896240),
    ("d74401020304", 23, b"\x01\x02\x03\x04"),
    ("d818456449455446", 24, b"dIETF"),
    ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", 32, "http://www.example.com"),
])
def test_rfc8949_tagged_examples(hexs, tag, value):
    got = cbor.loads(bytes.fromhex(hexs))
    assert got == cbor.Tag(tag, value)
    assert cbor.dumps(got).hex() == hexs
    assert cbor2.dumps(cbor2.CBORTag(tag, value)).hex() == hexs


@pytest.mark.parametrize("hexs", [
    # RFC 8949 Appendix A items outside our deterministic, integer-only subset:
    # floats, undefined and unassigned simple values, indefinite lengths. They are
    # refused with CBORError, never mis-decoded.
    "f90000", "f93c00", "fa47c35000", "fb3ff199999999999a", "f7", "f0", "f8ff",
    "5f42010243030405ff", "7f657374726561646d696e67ff", "9fff", "bf61610161629f0203ffff",
])
def test_rfc8949_items_outside_our_subset_are_refused_cleanly(hexs):
    with pytest.raises(cbor.CBORError):
        cbor.loads(bytes.fromhex(hexs))


@settings(max_examples=200, deadline=None)
@given(tree)
def test_we_decode_what_cbor2_encodes(obj):
    assert cbor.loads(cbor2.dumps(obj)) == obj


@pytest.mark.parametrize("bad", [b"", b"\x18", b"\x42\x01", b"\x83\x01\x02", b"\x9f\x01\xff",
                                 b"\x01\x02", b"\xfb" + b"\x00" * 8, b"\x81" * 40 + b"\x01",
                                 b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
                                 b"\xa1\x80\x01", b"\xa1\xa0\x01", b"\xa1\xd1\x01\x01"])
def test_decoder_rejects_malformed_without_crashing(bad):
    with pytest.raises(cbor.CBORError):
        cbor.loads(bad)


def test_too_large_integer_is_refused():
    with pytest.raises(ValueError):
        cbor.dumps(2 ** 64)
