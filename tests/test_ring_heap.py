"""A 1 MiB log boots, again and again, in the heap `tally flash --board unix`
prints for its ROMFS run line (--heap ROMFS_HEAP): recovery reads through a fixed
window, so its memory does not grow with the log."""
import os
import subprocess
import sys

import pytest

from agent.agent import Agent
from agent.cli import bundle
from agent.cli import main
from agent.clock import VirtualClock
from agent.device_main import _channels, _config
from agent.log import file_log
from conftest import MP

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]


def test_a_full_1mib_log_boots_repeatedly_at_the_printed_heap(tmp_path, capsys):
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "heap-1"\ninterval_s = 1\nsample_ms = 100\nlog_kib = 1024\n')
    out = tmp_path / "bundle"
    assert main(["flash", "--board", "unix", "--out", str(out), "--config", str(cfg),
                 "--duration", "2"]) == 0
    line = capsys.readouterr().out
    heap = line.split("--heap ")[1].split()[0]
    assert heap == bundle.ROMFS_HEAP
    # the device's own channels and schema, a week offline at one record a
    # minute: the ring wraps and coalesces (CPython writes it, faster)
    conf = _config(str(out / "tally_config.json"))
    clock = VirtualClock()
    log = file_log(str(out / "tally.log"), "heap-1", capacity=1 << 20, durable=False)
    ag = Agent("heap-1", _channels(conf, clock), log, clock, board="unix",
               interval_ms=60000, sample_ms=60000).start()
    for _ in range(7 * 1440):
        clock.advance_ms(60000)
        ag.tick()
    assert log.compactions > 0
    n = log.next_seq
    log.close()
    for boot in range(3):
        r = subprocess.run([sys.executable, "-m", "hil.harness.romboard", str(out / "tally.romfs"), "main.py",
                            "--heap", heap], cwd=str(out), capture_output=True, text=True,
                           timeout=120, env={"PATH": os.environ.get("PATH", "")})
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        last = r.stdout.strip().splitlines()[-1]
        assert last.startswith("tally: stopped;"), last
    back = file_log(str(out / "tally.log"), "heap-1", capacity=1 << 20).open()
    assert back.next_seq > n and back.boot >= 4
    back.close()
