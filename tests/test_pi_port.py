"""The Pi's side of the port (agent/port/cpython.py) and the systemd unit:
the boot reason from what the last run left (clean stop, systemd's watchdog,
power loss, crash) with a fake /proc/uptime, sd_notify datagrams read off a
real unix socket, `tally run` under a NOTIFY_SOCKET end to end, and
docs/systemd/tally.service checked by `systemd-analyze verify`."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from agent.port import cpython as P
from conftest import ROOT


def _uptime(tmp_path, secs):
    p = tmp_path / "uptime"
    p.write_text("%.2f 1234.56\n" % secs)
    return str(p)


def test_boot_reason_follows_the_documented_rule(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    long_up, fresh = _uptime(tmp_path, 86400.5), str(tmp_path / "fresh")
    open(fresh, "w").write("42.17 80.00\n")
    assert P.boot_reason(str(d), long_up) == "poweron"            # no state yet: a first start
    P.mark_state(str(d), "running")
    assert P.boot_reason(str(d), long_up) == "crash"              # died while the host ran on
    assert P.boot_reason(str(d), fresh) == "poweron"              # the host came up with us: power loss
    (d / P.STOP_FILE).write_text("watchdog\n")                    # what the unit's ExecStopPost writes
    assert P.boot_reason(str(d), long_up) == "watchdog"
    assert P.boot_reason(str(d), fresh) == "watchdog"             # systemd said so: it wins over uptime
    P.mark_state(str(d), "running")                               # the next start consumes the stop result
    assert not (d / P.STOP_FILE).exists()
    assert P.boot_reason(str(d), long_up) == "crash"
    (d / P.STOP_FILE).write_text("success\n")
    P.mark_state(str(d), "clean")
    assert P.boot_reason(str(d), long_up) == "deliberate"         # a clean stop, whatever the uptime
    assert P.boot_reason(str(d), fresh) == "deliberate"           # a clean shutdown, then power on
    assert (d / P.STATE_FILE).read_text() == "clean\n" and not (d / (P.STATE_FILE + ".tmp")).exists()
    # an unreadable /proc/uptime is not a fresh host
    P.mark_state(str(d), "running")
    assert P.host_uptime_s(str(tmp_path / "none")) is None
    assert P.boot_reason(str(d), str(tmp_path / "none")) == "crash"
    assert P.host_uptime_s(long_up) == 86400.5
    assert P.host_uptime_s("/proc/uptime") > 0                    # the real one reads


def _listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    return s


def _drain(s):
    out = []
    while True:
        try:
            out.append(s.recv(256).decode())
        except socket.timeout:
            return out


def test_notifier_pings_at_half_the_watchdog_time_on_a_real_socket(tmp_path):
    path = str(tmp_path / "notify")
    s = _listener(path)
    n = P.Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert n.every_ms == 1000
    assert n.notify("READY=1")
    assert n.ping(0) and not n.ping(500) and n.ping(1000) and not n.ping(1999) and n.ping(2000)
    assert _drain(s) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]
    assert n.wait_ms(2500, 5000) == 500 and n.wait_ms(2500, 100) == 100   # wakes for the next ping
    s.close()
    # an abstract socket name ("@..."), as systemd may give
    name = "tally-test-%d" % os.getpid()
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.bind("\0" + name)
    a.settimeout(0.2)
    assert P.Notifier({"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
    assert _drain(a) == ["STOPPING=1"]
    a.close()
    # the watchdog is another process's, or there is no systemd: nothing sent, nothing raised
    assert P.Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).every_ms == 0
    assert not P.Notifier({}).notify("READY=1") and not P.Notifier({}).ping(0)
    assert not P.Notifier({"NOTIFY_SOCKET": path}).notify("READY=1")   # nobody listening any more


def _run(cfg, env, duration):
    return subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--board", "emulated", "--config",
                             str(cfg), "--duration", str(duration)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _Reader:
    """Reads the datagrams as systemd does, as they come (a unix datagram
    queue holds only a few)."""
    def __init__(self, path):
        import threading
        self.s = _listener(path)
        self.got = []
        self.on = True
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while self.on:
            try:
                self.got.append(self.s.recv(256).decode())
            except socket.timeout:
                pass

    def take(self):
        time.sleep(0.3)
        out, self.got = self.got, []
        return out

    def close(self):
        self.on = False
        self.t.join(2)
        self.s.close()


def test_tally_run_tells_systemd_and_says_why_it_started(tmp_path):
    path = str(tmp_path / "notify")
    s = _Reader(path)
    d = tmp_path / "lib"
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "pi-1"\ninterval_s = 1\nsample_ms = 500\nlog_path = "%s"\n'
                   'serial = "pty"\n' % (d / "log.bin"))
    env = dict(os.environ, PYTHONPATH=ROOT, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    p = _run(cfg, env, 2.5)
    out, errs = p.communicate(timeout=60)
    assert p.returncode == 0, errs
    assert "boot 1 (poweron)" in out                              # a first start
    got = s.take()
    assert got[0] == "READY=1" and got[-1] == "STOPPING=1"
    assert got.count("WATCHDOG=1") >= 8                           # every 200 ms over 2.5 s, not per sample
    assert (d / P.STATE_FILE).read_text() == "clean\n"
    p = _run(cfg, env, 1)
    out, _ = p.communicate(timeout=60)
    assert "boot 2 (deliberate)" in out                           # after a clean stop
    # killed hard while the host runs on (this host has been up for a while)
    if P.host_uptime_s() < P.FRESH_S:
        pytest.skip("this host booted less than %d s ago" % P.FRESH_S)
    p = _run(cfg, env, 30)
    deadline = time.monotonic() + 30
    while (d / P.STATE_FILE).read_text() != "running\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    p = _run(cfg, env, 1)
    out, _ = p.communicate(timeout=60)
    assert "boot 4 (crash)" in out                               # boot 3 was killed
    (d / P.STATE_FILE).write_text("running\n")                    # died again, and systemd said why
    (d / P.STOP_FILE).write_text("watchdog\n")
    p = _run(cfg, env, 1)
    out, _ = p.communicate(timeout=60)
    assert "boot 5 (watchdog)" in out
    assert not (d / P.STOP_FILE).exists()
    s.close()


UNIT = os.path.join(ROOT, "docs", "systemd", "tally.service")


def _verify(text, tmp_path, name="tally.service"):
    f = tmp_path / name
    f.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", str(f)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies_with_its_watchdog(tmp_path):
    text = open(UNIT).read()
    tally = os.path.join(os.path.dirname(sys.executable), "tally")
    if not os.path.exists(tally):
        pytest.skip("no tally console script beside %s (pip install -e .)" % sys.executable)
    assert "ExecStart=/opt/tally/.venv/bin/tally run " in text
    mine = text.replace("/opt/tally/.venv/bin/tally", tally)      # the unit as installed, on this venv
    r = _verify(mine, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    keys = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert keys["Type"] == "notify" and keys["NotifyAccess"] == "main"
    assert int(keys["WatchdogSec"]) > 0 and keys["Restart"] == "always"
    # where the stop result goes is where tally run reads it: beside the example config's log
    import tomllib
    log_dir = os.path.dirname(tomllib.load(open(os.path.join(ROOT, "docs", "tally.example.toml"), "rb"))["log_path"])
    assert os.path.join(log_dir, P.STOP_FILE) in keys["ExecStopPost"] and "$$SERVICE_RESULT" in keys["ExecStopPost"]
    assert keys["ReadWritePaths"] == log_dir
    # and verify does fail a unit whose program is not there
    r = _verify(text.replace("/opt/tally/.venv/bin/tally", str(tmp_path / "nowhere" / "tally")), tmp_path, "bad.service")
    assert r.returncode != 0 and "nowhere" in r.stdout + r.stderr
