"""The 32-bit tier (issue 14): MicroPython's unix port built 32-bit from the
vendored source (or MICROPYTHON_SRC) with the device modules frozen into it,
as a production ESP32 holds them in flash, runs the whole agent for a
simulated day through a real mosquitto restarted at noon, in a 64 KiB heap;
the ledger reconciles. The firmware is built once (about a minute on 2 cores)
and then taken from ~/.cache/tally until the code changes. `tally firmware`
refuses bad requests in one line."""
import json
import os
import subprocess

import pytest

from agent.cli import main
from hil.harness import freeze, mpday

WHY = freeze.unavailable()
HEAP = "64K"          # the goal of issues 7 and 14: an ESP32's heap


@pytest.fixture(scope="session")
def unix32():
    if WHY:
        pytest.skip("no 32-bit MicroPython: " + WHY)
    return freeze.day_firmware()


def _mp(fw, code, cwd, heap=HEAP):
    return subprocess.run([fw["binary"], "-X", "heapsize=" + heap, "-c", code], cwd=str(cwd),
                          env=mpday.mp_env(), capture_output=True, text=True, timeout=60)


def test_firmware_is_32_bit_and_imports_the_agent_frozen(unix32, tmp_path):
    with open(unix32["binary"], "rb") as f:
        ident = f.read(5)
    assert ident == b"\x7fELF\x01"                    # ELFCLASS32
    assert "agent.agent" in unix32["modules"] and "agent_sync_mp" in unix32["modules"]
    assert "agent.collector.store" not in unix32["modules"]
    code = ("import sys, agent.agent, agent.port.mqtt_mp, boards.emulated, agent_sync_mp; "
            "print(sys.maxsize, sys.path, sorted(sys.modules)[:3])")
    r = _mp(unix32, code, tmp_path)
    assert r.returncode == 0, r.stderr
    maxsize, rest = r.stdout.split(" ", 1)
    assert maxsize == str(2 ** 31 - 1)               # a 32-bit build
    assert rest.startswith("['', '.frozen'] ")        # the working directory, then the frozen modules
    assert os.listdir(str(tmp_path)) == []            # nothing on a path to import from: frozen


def test_32_bit_frozen_agent_syncs_a_day_in_64k_through_mosquitto_and_reconciles(unix32, broker, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cmd = [unix32["binary"], "-X", "heapsize=" + HEAP, "-c", mpday.day_code(broker.port, "mp.log")]
    r = mpday.run_day(cmd, broker, str(tmp_path / "ledger.sqlite"), str(run), env=mpday.mp_env())
    end = r["end"]
    assert end is not None, "\n".join(r["lines"][-20:])
    print(end)
    assert sorted(os.listdir(str(run))) == ["mp.log"]     # its log; no module files
    assert end["sessions"] >= 2, end                     # it lost the broker at noon and came back
    assert end["logged"] == 1440                         # a day of one-minute intervals
    assert end["depth"] == 0, end                        # every record acked
    assert r["reconciled"], r["why"]
    assert r["ledger"]["covered"] == end["logged"] and r["ledger"]["gaps"] == 0
    for name, v in end["odometers"].items():
        assert r["ledger"]["totals"].get(name, 0) == v, name
    assert end["odometers"]["run_time"] > 3600           # a day of a compressor: it ran


def test_manifest_freezes_the_boards_bundle_by_folder():
    esp = freeze.manifest("esp32-devkitc", "esp32")
    assert esp.splitlines()[1] == 'include("$(PORT_DIR)/boards/manifest.py")'   # _boot.py mounts the fs
    names = freeze.modules("esp32-devkitc")
    assert "boards.esp32_devkitc" in names and "agent.log" in names and "drivers.sht4x" in names
    for absent in ("boards.emulated", "boards.esp32_s3_devkitc", "boards.rpi4", "agent.port.cpython",
                   "hil.twins", "agent.cli.flash"):
        assert absent not in names, absent
    assert "module('agent/__init__.py', base_path=" in esp
    unix = freeze.modules("unix", extra=freeze.DAY_EXTRA)
    assert "boards.emulated" in unix and "hil.twins" in unix and unix[-1] == "footprint_mp"


@pytest.mark.parametrize("args,msg", [
    (["--target", "esp32", "--board", "esp32-devkitc"], "IDF_PATH is not set"),
    (["--target", "esp32", "--board", "unix"], "target esp32 needs an ESP32 board"),
    (["--target", "vax", "--board", "unix"], "unknown target 'vax' (known: unix32, esp32)"),
    (["--board", "rpi4"], "no bundle for board 'rpi4'"),
    (["--board", "unix", "--micropython-src", "/nonexistent/mp.tar.gz"], "no MicroPython source at /nonexistent"),
    (["--board", "unix", "--micropython-src", "/etc"], "/etc is not a MicroPython source tree"),
])
def test_firmware_bad_requests_are_one_line(args, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("IDF_PATH", raising=False)
    if "--micropython-src" in args and WHY and "gcc" in WHY:
        pytest.skip(WHY)
    rc = main(["firmware", "--out", str(tmp_path / "fw")] + args)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err, err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err
    assert not (tmp_path / "fw").exists()


@pytest.mark.skipif(bool(WHY), reason="no 32-bit MicroPython: %s" % WHY)
def test_tally_firmware_builds_the_unix32_firmware_and_says_what_is_frozen(capsys, tmp_path):
    assert main(["firmware", "--board", "unix", "--out", str(tmp_path / "fw") + "/", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["binary"] == str(tmp_path / "fw" / "micropython") and r["target"] == "unix32"
    assert r["bytes"] == os.path.getsize(r["binary"]) > 100000
    assert r["modules"] == freeze.modules("unix") and "agent_sync_mp" not in r["modules"]
    run = tmp_path / "run"
    run.mkdir()
    p = subprocess.run([r["binary"], "-X", "heapsize=64K", "-c", "import agent.sync; print(agent.sync.BUF0)"],
                       cwd=str(run), env=mpday.mp_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "1024", p.stderr
