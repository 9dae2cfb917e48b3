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
