"""Every `tally` command ends the same way (agent/cli/__init__.py main()):
Ctrl-C stops with exit 130 and no traceback, a reader that closes the pipe
early (`tally export ... | head -1`) stops it with exit 141 and nothing on
standard error (no "Exception ignored" from Python's last flush), and a path
that cannot be written is one line naming it, exit 2. Run as a user runs
them: `python -m agent.cli` in a subprocess."""
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TALLY = [sys.executable, "-m", "agent.cli"]
RATES = os.path.join(ROOT, "docs", "rates.example.toml")


def start(*args, **kw):
    return subprocess.Popen(TALLY + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def tally(*args):
    return subprocess.run(TALLY + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite")
    r = tally("simulate", "--devices", "2", "--days", "1", "-q", "--db", db)
    assert r.returncode == 0, r.stderr
    return db


@pytest.mark.parametrize("args", [
    ("export", "--db", "LEDGER"),
    ("export", "--db", "LEDGER", "--format", "senml"),
    ("report", "--db", "LEDGER", "--rates", RATES, "--period", "2026-01", "--format", "csv"),
    ("simulate", "--days", "0.1", "-q"),
    ("bench", "payload", "--hours", "1.5"),
], ids=lambda a: " ".join(a[:2]))
def test_a_closed_pipe_stops_quietly(ledger, args):
    args = [ledger if x == "LEDGER" else x for x in args]
    p = start(*args)
    p.stdout.close()                 # as `| head -1` does once it has its line: before we write
    err = p.stderr.read()
    rc = p.wait(timeout=120)
    assert rc == 141, err
    assert err == "", err            # no traceback, no "Exception ignored ... BrokenPipeError"


def test_a_pipe_closed_after_the_first_line_stops_quietly(ledger):
    p = start("export", "--db", ledger)         # thousands of events: more than a pipe holds
    assert p.stdout.readline() == "[\n"
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141 and err == "", err


def test_ctrl_c_stops_simulate_with_130_and_no_traceback():
    p = start("simulate", "--days", "30")
    assert "simulated" in p.stderr.readline()   # its first progress line: the run is under way
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and out == "", err


def test_ctrl_c_stops_run_cleanly_with_130(tmp_path):
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "pi-int"\ninterval_s = 1\nsample_ms = 100\nlog_path = "%s"\n'
                   'serial = "loopback"\n' % (tmp_path / "log.bin"))
    p = start("run", "--board", "emulated", "--config", str(cfg))
    assert p.stdout.readline().startswith("tally: device pi-int on board emulated")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err, err
    assert "tally: stopped;" in out            # it still finished the interval and closed the log


@pytest.mark.parametrize("args,named", [
    (("simulate", "--days", "0.05", "-q", "--db", "/nonexistent/dir/x.sqlite"), "/nonexistent/dir/x.sqlite"),
    (("export", "--db", "LEDGER", "--out", "/nonexistent/dir/x.json"), "/nonexistent/dir/x.json"),
    (("export", "--db", "/nonexistent/dir/x.sqlite"), "/nonexistent/dir/x.sqlite"),
    (("report", "--db", "LEDGER", "--rates", RATES, "--period", "2026-01", "-o", "/nonexistent/x.csv"),
     "/nonexistent/x.csv"),
    (("bench", "soak", "--db", "/nonexistent/dir/x.sqlite"), "/nonexistent/dir/x.sqlite"),
    (("flash", "--board", "unix", "--out", "/proc/x"), "/proc/x"),
], ids=lambda a: " ".join(a[:2]) if isinstance(a, tuple) else None)
def test_an_unwritable_path_is_one_line_naming_it(ledger, args, named):
    if args[:2] == ("bench", "soak"):
        from hil.harness.mosquitto import find_mosquitto
        if not find_mosquitto():
            pytest.skip("bench soak checks for mosquitto first")
    r = tally(*[ledger if x == "LEDGER" else x for x in args])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    last = lines[-1]                  # flash prints progress lines first
    assert last.startswith("tally: %s: " % args[0]) and named in last, r.stderr
    assert "Traceback" not in r.stderr
    assert args[0] == "flash" or len(lines) == 1, r.stderr


# An optional package missing (mpremote is in the `flash` extra): the import
# is refused in the child process, as on a machine installed without extras.
_NO_MPREMOTE = """
import builtins, sys
real = builtins.__import__
def refuse(name, *a, **k):
    if name.split(".")[0] == "mpremote":
        raise ImportError("No module named 'mpremote'", name="mpremote")
    return real(name, *a, **k)
builtins.__import__ = refuse
from agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_missing_optional_package_names_the_extra_that_brings_it(tmp_path):
    r = subprocess.run([sys.executable, "-c", _NO_MPREMOTE, "flash", "--board", "unix",
                        "--out", str(tmp_path / "b")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        "tally: flash: needs the Python package mpremote: pip install 'tally[flash]'"], r.stderr
