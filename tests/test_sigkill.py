"""A real process appending to the file-backed ring is killed with SIGKILL at
random moments, many times: every record whose append returned (the child
printed its seq) is there after restart, acks never go back, seq never goes
back, and nothing is a phantom."""
import os
import random
import signal
import subprocess
import sys
import time

from agent.log import file_log, R_SEQ, R_FROM, R_VALUES

from conftest import ROOT

CHILD = r"""
import sys
from agent.log import file_log
log = file_log(sys.argv[1], "kill-1", capacity=32 * 1024).open()
log.start_boot("crash")
out = sys.stdout
while True:
    s = log.next_seq
    got = log.append(1, log.boot, 0, 0, 0, 60000, [s * 7, s % 13])
    out.write("S %d\n" % got)
    out.flush()
    if got % 25 == 0 and log.depth() > 40:
        a = log.acked + 20
        if log.ack(log.epoch, a):
            out.write("A %d\n" % a)
            out.flush()
"""


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    path = str(tmp_path / "ring.bin")
    rnd = random.Random(2026)
    returned = set()
    acked = 0
    top = 0
    kills = 0
    for round_ in range(25):
        p = subprocess.Popen([sys.executable, "-c", CHILD, path], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, PYTHONPATH=ROOT))
        time.sleep(rnd.uniform(0.05, 0.35))
        p.send_signal(signal.SIGKILL)
        out, err = p.communicate()
        assert p.returncode == -signal.SIGKILL, err.decode()[-2000:]
        kills += 1
        for line in out.decode().splitlines():
            kind, _, n = line.partition(" ")
            if kind == "S" and n.isdigit():
                returned.add(int(n))
            elif kind == "A" and n.isdigit():
                acked = max(acked, int(n))
        log = file_log(path, "kill-1", capacity=32 * 1024).open()
        assert log.acked >= acked, "ack went back"
        assert log.next_seq > max(returned | {0}) and log.next_seq > top, "seq went back"
        top = log.next_seq - 1
        recs = log.pending(10 ** 6)
        prev = 0
        covered = set()
        for r in recs:
            assert r[R_FROM] > prev, "reordered or duplicate"
            prev = r[R_SEQ]
            assert r[R_VALUES][0] == r[R_SEQ] * 7, "phantom or damaged record %r" % (r,)
            covered.update(range(r[R_FROM], r[R_SEQ] + 1))
        lost = sorted(s for s in returned if s > log.acked and s not in covered)
        assert not lost, "returned appends lost: %r" % lost[:10]
        log.close()
    assert kills == 25 and len(returned) > 200
