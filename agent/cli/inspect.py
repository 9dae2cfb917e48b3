"""`tally inspect`: a ring log image, a data batch or a captured MQTT
payload (COSE_Mac0, verified with the key) decoded into readable text."""
import json
import time

from agent.cli.common import err


_SECTOR_SIZES = (65536, 32768, 16384, 8192, 4096, 2048, 1024, 512)


def _ring_header_at(data, off, crc=True):
    import binascii
    if data[off:off + 4] != b"TLR1" or off + 32 > len(data):
        return False
    if not crc:
        return True
    slen = data[off + 20] | (data[off + 21] << 8)
    if off + 32 + slen > len(data):
        return False
    c = binascii.crc32(data[off:off + 24] + data[off + 32:off + 32 + slen]) & 0xFFFFFFFF
    return c == int.from_bytes(data[off + 24:off + 28], "little")


def ring_geometry(data):
    """(sector size, truncated) of a ring log image, or None if it is not
    one: sectors hold a header (magic, CRC) at multiples of the sector
    size, which divides the size and leaves at least 4 sectors; when more
    than one size fits, the one a file log of that size uses."""
    from agent.log import file_geometry
    hdrs = [o for o in range(0, len(data), 512) if _ring_header_at(data, o)]
    if not hdrs:
        hdrs = [o for o in range(0, len(data), 512) if _ring_header_at(data, o, False)]
    if not hdrs:
        return None
    cands = [ss for ss in _SECTOR_SIZES if all(o % ss == 0 for o in hdrs)]
    if not cands:
        return None
    whole = [ss for ss in cands if len(data) % ss == 0 and len(data) // ss >= 4]
    pick = whole or cands
    g = file_geometry(len(data))[0]

    def odd(ss):
        # sector starts that are neither a header nor erased: records of a
        # larger sector running on past a smaller size's boundary
        return sum(1 for o in range(0, len(data), ss)
                   if o not in hdrs and data[o:o + 32].strip(b"\xff"))
    ss = min(pick, key=lambda x: (odd(x), x != g, x != 4096, x))   # ties: a file log, NOR
    return ss, not whole


def _load_schema(path):
    """Metric schema [[name, unit, scale, kind], ...] from a birth capture
    (COSE-wrapped or bare CBOR) or a schema file (JSON or CBOR: the list,
    or a map with "schema")."""
    import cbor2
    with open(path, "rb") as f:
        raw = f.read()
    try:
        obj = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        try:
            obj = cbor2.loads(raw)
        except Exception as e:
            raise ValueError("%s: neither JSON nor CBOR (%s)" % (path, e))
    if isinstance(obj, cbor2.CBORTag) and obj.tag == 17:
        obj = obj.value
    if isinstance(obj, (list, tuple)) and len(obj) == 4 and isinstance(obj[2], bytes):
        obj = cbor2.loads(obj[2])                   # a COSE_Mac0 birth: its payload
    if isinstance(obj, dict):
        obj = obj.get("schema")
    if not (isinstance(obj, list) and obj and all(isinstance(m, (list, tuple)) and len(m) >= 2
                                                  and isinstance(m[0], str) for m in obj)):
        raise ValueError("%s: no metric schema in it (a birth message, or a list of "
                         "[name, unit, scale, kind])" % path)
    return obj


def _named(values, schema):
    if not schema:
        return "values=%s" % (values,)
    if len(schema) != len(values):
        return "values=%s (schema has %d metrics, record %d)" % (values, len(schema), len(values))
    out = []
    for m, v in zip(schema, values):
        unit = m[1] if len(m) > 1 and m[1] else ""
        scale = m[2] if len(m) > 2 and isinstance(m[2], int) else 0
        x = v * 10 ** scale if scale else v
        if isinstance(x, float):
            x = round(x, 6)
        out.append("%s=%s%s" % (m[0], x, (" " + unit) if unit else ""))
    return " ".join(out)


def run(a):
    try:
        with open(a.file, "rb") as f:
            data = f.read()
    except OSError as e:
        return err("inspect: %s" % e)
    schema = None
    for src in (a.schema, a.birth):
        if src:
            try:
                schema = _load_schema(src)
            except (OSError, ValueError) as e:
                return err("inspect: %s" % e)
    if (a.key is None) != (a.device is None):
        return err("inspect: give --key HEX and --device ID together to verify a capture")
    key = None
    if a.key is not None:
        try:
            key = bytes.fromhex(a.key)
        except ValueError:
            return err("inspect: --key must be hex")
    geo = ring_geometry(data)
    if geo:
        return _inspect_ring(a.file, data, geo[0], geo[1], schema)
    return _inspect_payload(data, schema, key, a.device)


def _inspect_ring(path, data, ss, truncated, schema):
    from agent import cbor
    from agent import log as L
    from agent import partlog as P
    from hil.nor import EmulatedNOR
    n = max(4, -(-len(data) // ss))
    if truncated or len(data) < n * ss:
        print("%s: truncated ring log: %d bytes, %d short of %d sectors of %d bytes; the missing "
              "bytes read as erased flash" % (path, len(data), n * ss - len(data), n, ss))
        data = data + b"\xff" * (n * ss - len(data))
    dev = EmulatedNOR(ss, n)
    dev.load_image(data)
    log = L.RingLog(dev, None).open()
    kinds = {L.K_DIRTY: "free", L.K_CLEAN: "free", L.K_HEAD: "records", L.K_COMP: "compacted"}
    print("%s: ring of %d sectors x %d bytes; device %s, epoch %08x, boot %d (%s), next seq %d, "
          "acked %d, %d unacked, config v%d, %d damaged, %d repaired"
          % (path, log.N, ss, log.log_device or "?", log.epoch, log.boot, log.boot_reason,
             log.next_seq, log.acked, log.depth(), log.config_version, log.damaged, log.corrected))
    for i, (k, order, lo, gen, wear) in enumerate(log.sectors()):
        if k >= L.K_HEAD:
            print("  sector %3d  %-9s order %d%s gen %d wear %d%s" % (
                i, kinds[k], order, "" if lo == order else " (from %d)" % lo, gen, wear,
                "  <- head" if i == log._head else ""))
    names = {L.T_EPOCH: "EPOCH", L.T_BOOT: "BOOT", L.T_DATA: "DATA", L.T_ACK: "ACK", L.T_CONFIG: "CONFIG",
             L.T_HIST: "HIST", L.T_EVENT: "EVENT"}
    for s, _, t, payload in log.walk():
        try:
            rec = cbor.loads(payload)
        except ValueError as e:
            print("  [%3d] %-6s  undecodable: %s" % (s, names.get(t, t), e))
            continue
        if t == L.T_DATA and L._valid_data(rec):
            flags = ("coalesced " if rec[L.R_FLAGS] & L.F_COALESCED else "") + \
                    ("gap " if rec[L.R_FLAGS] & L.F_GAP else "") + \
                    ("damaged " if rec[L.R_FLAGS] & L.F_DAMAGED else "")
            print("  [%3d] DATA    seq=%d from=%d %sepoch=%08x boot=%d uptime_ms=%d wall=%s "
                  "ival_ms=%d schema=%08x %s"
                  % (s, rec[0], rec[1], flags, rec[3], rec[5], rec[6],
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec[7])) if rec[7] else "-",
                     rec[9], rec[4], _named(rec[10], schema)))
        elif t == L.T_BOOT and isinstance(rec, list) and len(rec) == 2:
            print("  [%3d] BOOT    boot=%s reason=%s" % (s, rec[0], rec[1]))
        elif t == L.T_ACK and isinstance(rec, list) and len(rec) == 2:
            print("  [%3d] ACK     epoch=%08x seq<=%d" % (s, rec[0], rec[1]))
        elif t == L.T_EPOCH and isinstance(rec, list) and len(rec) == 2:
            print("  [%3d] EPOCH   epoch=%08x first_seq=%d" % (s, rec[0], rec[1]))
        elif t == L.T_CONFIG and isinstance(rec, list) and len(rec) == 1:
            print("  [%3d] CONFIG  version=%s" % (s, rec[0]))
        elif t == L.T_EVENT and P.valid(rec):
            print("  [%3d] EVENT   seq=%d idx=%d %s %s in %s (%s)"
                  % (s, rec[0], rec[1], rec[2], rec[4], rec[3], rec[7]))
        elif t == L.T_HIST and L._valid_hist(rec):
            w = rec[2]
            counts = [int.from_bytes(w[k:k + 4], "little") for k in range(0, len(w), 4)]
            print("  [%3d] HIST    seq=%d version=%08x %d counts (stress histograms, agent/stress.py): %s"
                  % (s, rec[0], rec[1], len(counts), " ".join(str(c) for c in counts)))
        else:
            print("  [%3d] type %d, not a record this log writes: %r" % (s, t, rec))
    return 0


def _inspect_payload(data, schema, key, device):
    import cbor2
    from agent import batch, cose
    try:
        _, end = _cbor_item_end(data)
        obj = cbor2.loads(data)
    except Exception as e:
        return err("inspect: neither a Tally log nor a Tally payload (not CBOR: %s)" % e)
    if end != len(data):
        return err("inspect: neither a Tally log nor a Tally payload (%d bytes after one CBOR "
                   "item)" % (len(data) - end))
    if isinstance(obj, cbor2.CBORTag) and obj.tag == 17:
        v = obj.value
        if not (isinstance(v, (list, tuple)) and len(v) == 4 and isinstance(v[2], bytes)):
            return err("inspect: tag 17 but not a COSE_Mac0 structure")
        inner = v[2]
        if key is not None:
            ok = None
            for k, how in ((key, "device key"), (cose.device_key(key, device), "master key")):
                try:
                    cose.verify(data, k, device)
                    ok = how
                    break
                except cose.CoseError:
                    pass
            if ok is None:
                print("COSE_Mac0 from %s: tag does NOT verify with the key given (as device or "
                      "master key)" % device)
                rc = _show_inner(inner, schema)
                return 1 if rc == 0 else rc
            print("COSE_Mac0 from %s: tag verified (%s), %d-byte payload" % (device, ok, len(inner)))
        else:
            print("COSE_Mac0: %d-byte payload, tag not checked (give --key HEX --device ID)" % len(inner))
        return _show_inner(inner, schema)
    return _show_obj(obj, data, schema)


def _cbor_item_end(data):
    from agent import cbor
    try:
        return cbor._decode(data, 0, 0)
    except (IndexError, UnicodeError) as e:
        raise ValueError("malformed CBOR (%s)" % e)


def _show_inner(inner, schema):
    import cbor2
    try:
        obj = cbor2.loads(inner)
    except Exception as e:
        return err("inspect: COSE payload is not CBOR (%s)" % e)
    return _show_obj(obj, inner, schema)


def _show_obj(obj, data, schema):
    from agent import batch
    from agent.collector import parts
    if isinstance(obj, list):
        obj, ext = parts.split(obj, lambda sid: schema or None)
        try:
            recs = batch.decode(obj)
        except batch.BatchError as e:
            return err("inspect: CBOR array but not a batch: %s" % e)
        if not recs:
            return err("inspect: an empty batch")
        print("data batch: %d records, %d bytes (%.1f B/record)" % (len(recs), len(data), len(data) / len(recs)))
        for r in recs:
            print("  seq=%d from=%d flags=%d epoch=%08x boot=%d uptime_ms=%d %s"
                  % (r["seq"], r["from_seq"], r["flags"], r["epoch"], r["boot"], r["uptime_ms"],
                     _named(list(r["values"]), schema)))
        for k, v in sorted((ext or {}).items(), key=lambda kv: str(kv[0])):
            if k == 2 and isinstance(v, list):
                for ev in v:
                    print("  part event: %s" % json.dumps(ev))
            elif k == 1 and isinstance(v, list) and len(v) == 4:
                print("  ext 1, stress snapshot: version %08x at seq %s, %s, histograms (by birth index): %s"
                      % (v[0], v[1], "whole" if v[2] == 0 else "changed since seq %s" % v[2],
                         json.dumps(v[3], default=repr)))
            else:
                print("  ext %s: %s" % (k, json.dumps(v, default=repr)))
        return 0
    if isinstance(obj, dict) and "v" in obj:
        kind = "birth" if "schema" in obj else ("ack" if "seq" in obj else
                                                 ("death" if set(obj) == {"v", "boot", "epoch"} else "message"))
        print("%s message:" % kind)
        print(json.dumps(obj, indent=2, default=repr))
        return 0
    return err("inspect: CBOR, but not a Tally payload (a %s)" % type(obj).__name__)


def add(sub):
    i = sub.add_parser("inspect", help="decode a log file or a payload into readable text",
                       description="A ring log image (its sector size read from the image; a "
                       "truncated one said to be), a data batch, or a captured MQTT payload "
                       "(COSE_Mac0: decoded, and verified with --key and --device). Anything "
                       "else is an error (exit 2).")
    i.add_argument("file")
    i.add_argument("--birth", metavar="FILE", help="a captured birth message: name the metrics")
    i.add_argument("--schema", metavar="FILE", help="a schema file (JSON or CBOR list of "
                   "[name, unit, scale, kind]): name the metrics")
    i.add_argument("--key", metavar="HEX", help="the device key (or the fleet master key) to verify "
                   "a COSE capture")
    i.add_argument("--device", metavar="ID", help="the device id the capture is bound to")
    i.set_defaults(func=run)
