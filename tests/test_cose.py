"""COSE_Mac0 with HMAC 256/64: RFC vectors and interop with pycose both ways."""
import hashlib
import hmac
import os

import cbor2
import pytest
from hypothesis import given, settings, strategies as st

from agent import cose

pycose = pytest.importorskip("pycose")
from pycose.algorithms import HMAC25664  # noqa: E402
from pycose.headers import Algorithm  # noqa: E402
from pycose.keys import SymmetricKey  # noqa: E402
from pycose.messages import Mac0Message  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=100), st.binary(max_size=300))
def test_hmac_matches_the_standard_library(key, msg):
    assert cose.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def _pycose_from(msg):
    # pycose 1.1 expects list/dict; cbor2 6 hands back tuple/frozendict
    v = cbor2.loads(msg).value
    return Mac0Message.from_cose_obj([v[0], dict(v[1]), v[2], v[3]], True)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_pycose_verifies_ours(payload, dev):
    k = os.urandom(16)
    m = _pycose_from(cose.mac0(payload, k, dev))
    m.key = SymmetricKey(k=k)
    m.external_aad = dev.encode()
    assert m.verify_tag()
    assert m.payload == payload
    m.external_aad = (dev + "x").encode()
    assert not m.verify_tag()


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_we_verify_pycose(payload, dev):
    k = os.urandom(16)
    p = Mac0Message(phdr={Algorithm: HMAC25664}, payload=payload, external_aad=dev.encode())
    p.key = SymmetricKey(k=k)
    enc = p.encode()
    assert cose.verify(enc, k, dev) == payload
    with pytest.raises(cose.CoseError):
        cose.verify(enc, k, dev + "x")
    with pytest.raises(cose.CoseError):
        cose.verify(enc, os.urandom(16), dev)


def test_tampering_anywhere_is_detected():
    k = os.urandom(16)
    msg = bytearray(cose.mac0(b"\x83\x01\x02\x03", k, "dev-1"))
    for i in range(len(msg)):
        for bit in (1, 0x80):
            bad = bytearray(msg)
            bad[i] ^= bit
            with pytest.raises(cose.CoseError):
                cose.verify(bytes(bad), k, "dev-1")
