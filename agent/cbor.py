# Minimal deterministic CBOR (RFC 8949) for the device: unsigned and negative
# integers (up to 64 bits), byte and text strings, arrays, maps, tags,
# false/true/null. Portable: CPython and MicroPython.
#
# The encoder follows the core deterministic encoding requirements of RFC 8949
# section 4.2.1: every argument (integer, length, tag) in its shortest form,
# definite lengths only, and the keys of every map sorted by the bytewise
# lexicographic order of their own deterministic encodings, with no key twice.
# So one message has one encoding, byte for byte the same on CPython and
# MicroPython (whose dicts iterate in another order). That order is not cbor2's
# `canonical=True` (RFC 7049's length-first order) where keys of different
# major types have encodings of different lengths: RFC 8949 puts 100 (0x1864)
# before -1 (0x20); RFC 7049 puts -1 first.
#
# The decoder takes any well-formed item of the subset in any key order and
# with any argument width (firmware before this encoder sent unsorted maps, and
# a MAC is over the bytes as sent, so order adds nothing to authenticity). It
# refuses what is not valid or not ours: a map with a key twice (RFC 8949
# section 5.6: two readers could see two values), indefinite lengths, floats,
# undefined and simple values, nesting deeper than 16. `is_deterministic()`
# says whether bytes are in the encoding this module writes.

_U64 = 1 << 64


class Tag:
    """A tagged item (major type 6), e.g. Tag(17, [...]) for COSE_Mac0."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and other.tag == self.tag and other.value == self.value


def _head(buf, major, n):
    mt = major << 5
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf.append(mt | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.append(mt | 25)
        buf.append(n >> 8)
        buf.append(n & 0xFF)
    elif n < 0x100000000:
        buf.append(mt | 26)
        for s in (24, 16, 8, 0):
            buf.append((n >> s) & 0xFF)
    elif n < _U64:
        buf.append(mt | 27)
        for s in (56, 48, 40, 32, 24, 16, 8, 0):
            buf.append((n >> s) & 0xFF)
    else:
        raise ValueError("cbor: integer too large")


def encode_into(buf, obj):
    """Append the CBOR encoding of obj to the bytearray buf."""
    if obj is True:
        buf.append(0xF5)
    elif obj is False:
        buf.append(0xF4)
    elif obj is None:
        buf.append(0xF6)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(buf, 0, obj)
        else:
            _head(buf, 1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(buf, 2, len(obj))
        buf.extend(obj)
    elif isinstance(obj, str):
        b = obj.encode()
        _head(buf, 3, len(b))
        buf.extend(b)
    elif isinstance(obj, (list, tuple)):
        _head(buf, 4, len(obj))
        for x in obj:
            encode_into(buf, x)
    elif isinstance(obj, dict):
        _map(buf, obj)
    elif isinstance(obj, Tag):
        _head(buf, 6, obj.tag)
        encode_into(buf, obj.value)
    else:
        raise TypeError("cbor: cannot encode " + type(obj).__name__)
    return buf


def _key0(pair):
    return pair[0]


def _map(buf, obj):
    n = len(obj)
    _head(buf, 5, n)
    if n < 2:
        for k in obj:
            encode_into(buf, k)
            encode_into(buf, obj[k])
        return
    # Each key's encoding, then the pairs in the bytewise order of those
    # (RFC 8949 section 4.2.1); one list and one bytes per key, and only for
    # maps of two keys or more (a batch has none in its records).
    pairs = []
    for k in obj:
        pairs.append((dumps(k), k))
    pairs.sort(key=_key0)
    prev = None
    for kb, k in pairs:
        if kb == prev:
            raise ValueError("cbor: duplicate map key")
        prev = kb
        buf.extend(kb)
        encode_into(buf, obj[k])


def dumps(obj):
    return bytes(encode_into(bytearray(), obj))


def is_deterministic(data):
    """True when data is one item in exactly the encoding dumps() writes
    (RFC 8949 section 4.2.1 for this subset); False for any other bytes."""
    try:
        return dumps(loads(data)) == bytes(data)
    except (ValueError, TypeError):
        return False


class CBORError(ValueError):
    pass


def _arg(data, pos, info):
    if info < 24:
        return info, pos
    if info == 24:
        n = 1
    elif info == 25:
        n = 2
    elif info == 26:
        n = 4
    elif info == 27:
        n = 8
    else:
        raise CBORError("cbor: indefinite or reserved length at %d" % (pos - 1))
    if pos + n > len(data):
        raise CBORError("cbor: truncated")
    v = 0
    for i in range(n):
        v = (v << 8) | data[pos + i]
    return v, pos + n


def _decode(data, pos, depth):
    if depth > 16:
        raise CBORError("cbor: nested too deep")
    if pos >= len(data):
        raise CBORError("cbor: truncated")
    ib = data[pos]
    major = ib >> 5
    v, pos = _arg(data, pos + 1, ib & 31)
    if major == 0:
        return v, pos
    if major == 1:
        return -1 - v, pos
    if major == 2 or major == 3:
        if pos + v > len(data):
            raise CBORError("cbor: truncated string")
        s = bytes(data[pos:pos + v])
        if major == 3:
            s = s.decode()
        return s, pos + v
    if major == 4:
        if v > len(data) - pos:
            raise CBORError("cbor: array longer than data")
        out = [None] * v      # one allocation: no growth garbage in a small heap
        for i in range(v):
            out[i], pos = _decode(data, pos, depth + 1)
        return out, pos
    if major == 5:
        if 2 * v > len(data) - pos:
            raise CBORError("cbor: map longer than data")
        out = {}
        for _ in range(v):
            k, pos = _decode(data, pos, depth + 1)
            x, pos = _decode(data, pos, depth + 1)
            if isinstance(k, (list, dict, Tag)):
                raise CBORError("cbor: map key of a type that cannot be a key")
            if k in out:
                raise CBORError("cbor: duplicate map key")
            out[k] = x
        return out, pos
    if major == 6:
        x, pos = _decode(data, pos, depth + 1)
        return Tag(v, x), pos
    if major == 7:
        if ib == 0xF4:
            return False, pos
        if ib == 0xF5:
            return True, pos
        if ib == 0xF6:
            return None, pos
    raise CBORError("cbor: unsupported item 0x%02x" % ib)


def loads(data):
    """Decode one CBOR item that must fill data exactly; CBORError otherwise."""
    try:
        obj, pos = _decode(data, 0, 0)
    except (IndexError, UnicodeError) as e:
        raise CBORError("cbor: malformed (%s)" % e)
    if pos != len(data):
        raise CBORError("cbor: %d trailing bytes" % (len(data) - pos))
    return obj
