"""`tally inspect` tells the truth about what it is given, and the ring
format document is enough to read a real log: a reader written here from
docs/ring-format.md alone recovers the same records as RingLog."""
import binascii
import random

import cbor2
import pytest

from agent import batch, cbor, cose
from agent.agent import Agent
from agent.cli import main
from agent.clock import VirtualClock
from agent.collector.store import Collector
from agent.log import RingLog, file_log, T_DATA, T_ACK, R_SEQ
from boards.emulated import Emulation
from hil import powercut as P
from hil.nor import EmulatedNOR
from hil.loopback import Hub

KEY = bytes(range(16))


def run(capsys, *args):
    rc = main(["inspect"] + [str(a) for a in args])
    o = capsys.readouterr()
    return rc, o.out, o.err


@pytest.mark.parametrize("kib", [16, 32])
def test_small_file_logs_are_read_with_their_own_sector_size(tmp_path, capsys, kib):
    p = str(tmp_path / "ring.bin")
    log = file_log(p, "small-1", capacity=kib * 1024, durable=False).open()
    log.start_boot("poweron")
    seqs = [log.append(7, 1, i * 60000, 0, 0, 60000, [i, 3]) for i in range(40)]
    log.close()
    rc, out, err = run(capsys, p)
    assert rc == 0, err
    assert "ring of %d sectors x 1024 bytes; device small-1" % kib in out
    assert "0 damaged" in out
    for s in seqs:
        assert "DATA    seq=%d " % s in out


def test_a_truncated_log_is_said_to_be_one(tmp_path, capsys):
    p = str(tmp_path / "ring.bin")
    log = file_log(p, "t-1", capacity=16 * 1024, durable=False).open()
    for i in range(60):
        log.append(7, 1, i, 0, 0, 60000, [i, 1])
    log.close()
    with open(p, "r+b") as f:
        f.truncate(8 * 1024 + 100)
    rc, out, _ = run(capsys, p)
    assert rc == 0
    assert out.startswith("%s: truncated ring log: 8292 bytes" % p)
    assert "DATA    seq=1 " in out and "byte string" not in out


def _agent(ticks=5):
    clock = VirtualClock()
    hub = Hub(Collector(keys={"dev-i": KEY}.get))
    dev = EmulatedNOR(4096, 8)
    ag = Agent("dev-i", Emulation(clock, seed=3).channels(), RingLog(dev, "dev-i"), clock,
               transport=hub.transport("dev-i"), interval_ms=60000, sample_ms=60000,
               uplink_opts={"key": KEY}).start()
    for _ in range(ticks):
        clock.advance_ms(60000)
        ag.tick()
    return ag, dev


def test_a_cose_capture_is_decoded_and_verified_and_records_are_named(tmp_path, capsys):
    ag, dev = _agent(20)          # records past 1 KiB: only 4 KiB sectors fit the image
    birth = tmp_path / "birth.cbor"
    birth.write_bytes(ag.uplink.birth())
    data = tmp_path / "data.cbor"
    data.write_bytes(cose.mac0(batch.encode(ag.log.pending(3) or [ag.log.last]), KEY, "dev-i"))
    rc, out, _ = run(capsys, data)
    assert rc == 0 and "COSE_Mac0" in out and "tag not checked" in out and "data batch:" in out
    rc, out, _ = run(capsys, data, "--key", KEY.hex(), "--device", "dev-i")
    assert rc == 0 and "tag verified (device key)" in out
    rc, out, _ = run(capsys, data, "--key", "00" * 16, "--device", "dev-i")
    assert rc == 1 and "does NOT verify" in out
    rc, out, _ = run(capsys, birth, "--key", KEY.hex(), "--device", "dev-i")
    assert rc == 0 and "birth message" in out and "tag verified" in out
    # names and units from the birth, on a payload and on the log itself
    rc, out, _ = run(capsys, data, "--birth", birth)
    schema = cbor2.loads(cbor2.loads(ag.uplink.birth()).value[2])["schema"]
    name, unit = schema[0][0], schema[0][1]
    assert rc == 0 and (" %s=" % name) in out and "values=" not in out
    img = tmp_path / "log.bin"
    img.write_bytes(bytes(dev.image))
    sch = tmp_path / "schema.json"
    sch.write_text(__import__("json").dumps(schema))
    rc, out, _ = run(capsys, img, "--schema", sch)
    assert rc == 0 and "x 4096 bytes" in out and (" %s=" % name) in out
    if unit:
        assert (" " + unit) in out


@pytest.mark.parametrize("what", ["random", "trailing", "int", "empty"])
def test_anything_unrecognised_is_an_error_with_exit_2(tmp_path, capsys, what):
    rnd = random.Random(what)
    data = {"random": bytes(rnd.getrandbits(8) for _ in range(5000)),
            "trailing": cbor2.dumps([1, 2]) + b"junk",
            "int": cbor2.dumps(7),
            "empty": b""}[what]
    p = tmp_path / "x.bin"
    p.write_bytes(data)
    rc, out, err = run(capsys, p)
    assert rc == 2 and err.startswith("tally: inspect: ") and len(err.splitlines()) == 1


# -- a reader written from docs/ring-format.md alone ----------------------------------

def _u(b, o, n):
    return int.from_bytes(b[o:o + n], "little")


def doc_reader(img, S):
    """Every record of the sectors in use, by the document's offsets: DATA
    seqs and ACK seqs, in logical order."""
    N = len(img) // S
    secs = {}
    for i in range(N):
        b = img[i * S:(i + 1) * S]
        if b[0:4] != b"TLR1":
            continue
        slen = _u(b, 20, 2)
        if 32 + slen > S or binascii.crc32(b[0:24] + b[32:32 + slen]) & 0xFFFFFFFF != _u(b, 24, 4):
            continue
        comp = b[22] & 1
        secs[i] = dict(order=_u(b, 4, 4), lo=_u(b, 8, 4), gen=_u(b, 12, 4), comp=comp,
                       start=56 if comp else (32 + slen + 3) & ~3, state=cbor2.loads(b[32:32 + slen]))
    for y, sy in list(secs.items()):                  # superseded by a compacted sector
        if sy["comp"]:
            for x, sx in list(secs.items()):
                if x != y and sx["gen"] < sy["gen"] and sy["lo"] <= sx["order"] <= sy["order"]:
                    secs.pop(x, None)
    out = []
    for i in sorted(secs, key=lambda k: secs[k]["order"]):
        b = img[i * S:(i + 1) * S]
        pos = secs[i]["start"]
        while pos + 7 <= S and b[pos] != 0xFF:
            t, n = b[pos], _u(b, pos + 1, 2)
            if pos + 7 + n > S or binascii.crc32(b[pos:pos + 3 + n]) & 0xFFFFFFFF != _u(b, pos + 3 + n, 4):
                break
            rec = cbor2.loads(b[pos + 3:pos + 3 + n])
            out.append((i, t, rec))
            pos = (pos + 7 + n + 3) & ~3
    return out


def test_a_reader_from_the_document_recovers_what_the_log_does():
    dev = EmulatedNOR(512, 8)
    log = RingLog(dev, "doc-1", merge=P.merge, max_span=4).open()
    log.start_boot("poweron")
    n = 0
    while log.compactions < 4:                        # offline: compacted sectors in use
        log.append(7, 1, n, 0, 0, 60000, [n, n % 7])
        n += 1
    log.ack(log.epoch, log.acked + 3)
    log.note_config(5)
    for i in range(5):
        log.append(7, 1, n + i, 0, 0, 60000, [n + i, 1])
    img = bytes(dev.image)
    mine = doc_reader(img, 512)
    again = RingLog(dev, None).open()
    theirs = [(s, t, cbor.loads(p)) for s, _, t, p in again.walk()]
    assert mine == theirs
    assert any(t == T_DATA for _, t, _ in mine) and any(t == T_ACK for _, t, _ in mine)
    assert any(s in [i for i, (k, *_r) in enumerate(again.sectors()) if k == 3] for s, _, _ in mine)
    # and the head's state holds what the document says, in order
    heads = [s for s in range(8) if img[s * 512:s * 512 + 4] == b"TLR1" and not img[s * 512 + 22] & 1]
    h = max(heads, key=lambda s: _u(img, s * 512 + 4, 4)) * 512
    st = cbor2.loads(img[h + 32:h + 32 + _u(img, h + 20, 2)])
    assert st[0] == again.epoch and st[8] == "doc-1" and len(st) == 9
    pend = [r[R_SEQ] for r in again.pending(10 ** 6)]
    assert pend and pend[-1] == n + 5
