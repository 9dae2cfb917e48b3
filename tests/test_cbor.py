import os
import subprocess
import sys

import cbor2
import pytest
from hypothesis import given, settings, strategies as st

from agent import cbor
from hil.harness import mpbuild

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP = mpbuild.tool("micropython")

ints = st.integers(min_value=-(2 ** 64), max_value=2 ** 64 - 1)
leaf = ints | st.binary(max_size=40) | st.text(max_size=20) | st.booleans() | st.none()
tree = st.recursive(leaf, lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=5), c, max_size=5),
                    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(tree)
def test_encoder_matches_cbor2_canonical_for_text_keys_and_round_trips(obj):
    # with text keys only, RFC 7049's length-first order (cbor2 canonical) and
    # RFC 8949's bytewise order agree: the length is in the first bytes
    ours = cbor.dumps(obj)
    assert ours == cbor2.dumps(obj, canonical=True)
    assert cbor.loads(ours) == obj
    assert cbor2.loads(ours) == obj
    assert cbor.is_deterministic(ours)


mixed_keys = st.integers(min_value=-(2 ** 64), max_value=2 ** 64 - 1) | st.text(max_size=30) | st.binary(max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(mixed_keys, st.integers(min_value=0, max_value=2 ** 40), min_size=2, max_size=12))
def test_map_keys_are_in_bytewise_order_of_their_encodings(d):
    ours = cbor.dumps(d)
    keys = [cbor2.dumps(k) for k in cbor2.loads(ours)]     # in the order written
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == len(d)
    assert cbor.loads(ours) == d and cbor.is_deterministic(ours)
    # where RFC 7049's length-first order gives the same sequence, so is cbor2's canonical
    if sorted(keys, key=lambda k: (len(k), k)) == keys:
        assert ours == cbor2.dumps(d, canonical=True)
    else:
        assert ours != cbor2.dumps(d, canonical=True)


def test_rfc8949_section_4_2_1_key_order_and_where_cbor2_canonical_differs():
    # RFC 8949 section 4.2.1: keys sorted bytewise by their encodings give
    # 10, 100, -1, "z", "aa", [100], [-1], false; section 4.2.3 (RFC 7049's
    # length-first order, cbor2's canonical) gives 10, -1, false, 100, "z",
    # [-1], "aa", [100]. Arrays as keys are tuples here.
    d = {False: 8, (-1,): 7, (100,): 6, "aa": 5, "z": 4, -1: 3, 100: 2, 10: 1}
    order_8949 = "0a 1864 20 617a 626161 811864 8120 f4"
    order_7049 = "0a 20 f4 1864 617a 8120 626161 811864"
    vals = {"0a": 1, "1864": 2, "20": 3, "617a": 4, "626161": 5, "811864": 6, "8120": 7, "f4": 8}

    def enc(order):
        return "a8" + "".join(k + "%02x" % vals[k] for k in order.split())
    assert cbor.dumps(d).hex() == enc(order_8949)
    assert cbor2.dumps(d, canonical=True).hex() == enc(order_7049)


@pytest.mark.parametrize("hexs,pairs", [
    # RFC 8949 Appendix A maps, built here with their keys inserted backwards
    ("a201020304", [(1, 2), (3, 4)]),
    ("a26161016162820203", [("a", 1), ("b", [2, 3])]),
    ("a56161614161626142616361436164614461656145",
     [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D"), ("e", "E")]),
])
def test_rfc8949_appendix_a_maps_whatever_the_insertion_order(hexs, pairs):
    assert cbor.dumps(dict(reversed(pairs))).hex() == hexs
    assert cbor.dumps(dict(pairs)).hex() == hexs


def test_decoder_takes_non_deterministic_input_but_not_duplicate_keys():
    # unsorted keys and a non-shortest argument are well-formed and valid:
    # decoded (old firmware sent unsorted maps), but not deterministic
    for hexs, value in (("a2616202616101", {"a": 1, "b": 2}), ("1817", 23), ("5800", b""),
                        ("9a00000001f6", [None])):
        assert cbor.loads(bytes.fromhex(hexs)) == value
        assert not cbor.is_deterministic(bytes.fromhex(hexs))
        assert cbor.is_deterministic(cbor.dumps(value))
    # a key twice is invalid (RFC 8949 section 5.6): refused, never last-one-wins
    for hexs in ("a2616101616102", "a201010102", "a2f501f502"):
        with pytest.raises(cbor.CBORError, match="duplicate"):
            cbor.loads(bytes.fromhex(hexs))
    assert not cbor.is_deterministic(b"\xff") and not cbor.is_deterministic(b"")


def _messages_on(runtime):
    """{name: hex} of tests/mp/cbor_msgs.py's messages, encoded by this
    process's runtime or the MicroPython unix port."""
    if runtime == "cpython":
        cmd = [sys.executable, "-c", "import cbor_msgs; cbor_msgs.main()"]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.path.join(ROOT, "tests", "mp"))
    else:
        cmd = [MP, "-X", "heapsize=512K", "-c", "import cbor_msgs; cbor_msgs.main()"]
        env = dict(os.environ, MICROPYPATH=ROOT + ":" + os.path.join(ROOT, "tests", "mp"))
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return dict(line.split() for line in r.stdout.splitlines())


@pytest.mark.skipif(not MP, reason="micropython unix port not installed")
def test_real_messages_encode_to_the_same_bytes_on_cpython_and_micropython():
    cp, mp = _messages_on("cpython"), _messages_on("micropython")
    assert set(cp) == {"birth", "death", "batch", "data", "config", "cfgack7", "cfgack8", "ack", "mixed",
                       "rfc8949"}
    assert cp == mp
    for name, hexs in cp.items():
        b = bytes.fromhex(hexs)
        if name == "rfc8949":
            continue                          # arrays as keys: ours encodes them, never decodes them
        assert cbor.is_deterministic(b), name
        if name == "mixed":
            continue
        # text keys only (births, configs, acks) and arrays: cbor2's canonical agrees
        assert cbor2.dumps(cbor2.loads(b), canonical=True) == b, name
    # the mixed map: ints first (non-negative ascending, then negative), then
    # byte strings, then texts by length then bytes, each key once
    keys = [cbor2.dumps(k) for k in cbor2.loads(bytes.fromhex(cp["mixed"]))]
    assert keys == sorted(keys)
    assert list(cbor2.loads(bytes.fromhex(cp["mixed"]))) == [0, 23, 24, 1000, -1, -1000, b"k", "", "a", "zz",
                                                             "b" * 30]
    assert cp["rfc8949"] == "a80a011864022003617a046261610581186406812007f408"


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
