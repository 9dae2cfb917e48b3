"""tally stubcheck: the device-side modules against the MicroPython ESP32 stubs."""
import os
import subprocess
import sys
import textwrap

import pytest

from agent import cli
from agent.cli import stubcheck as sc

from conftest import ROOT


@pytest.fixture(scope="module")
def stubs():
    try:
        return sc.find_stubs()
    except sc.StubsMissing as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


def run(tmp_path, stubs, source):
    path = tmp_path / "device_mod.py"
    path.write_text(textwrap.dedent(source))
    findings, _ = sc.check([str(path)], stubs=stubs)
    return [(f.line, f.msg) for f in findings]


def test_the_device_tree_has_no_findings(stubs):
    """The CI check: every module flashed on an ESP32 uses only what it has."""
    findings, stats = sc.check(stubs=stubs)
    assert ["%s:%d: %s" % (f.path, f.line, f.msg) for f in findings] == []
    assert stats["modules"] >= 30 and stats["checked"] >= 200
    names = sc.checked_modules()
    assert "agent/port/esp32_flash.py" in names and "drivers/bme280.py" in names
    assert not [n for n in names if n.startswith(("hil/", "agent/cli/"))]
    assert "boards/emulated.py" not in names


def test_catches_what_the_esp32_lacks(tmp_path, stubs):
    v = " is not in the ESP32 stubs (micropython-esp32-stubs %s)" % stubs.version
    got = run(tmp_path, stubs, """\
        import machine
        import time
        import os
        import errno as _errno
        import numpy
        from esp32 import NoSuchThing
        from esp32 import Partition
        from agent.log import nonexistent
        from agent.cli.toml_config import load_config
        machine.I2C.readfrom_mem_intox(1, 2, 3)
        machine.SoftI2C.readfrom_mem(1, 2, 3)
        t = time.time_ns() + time.monotonic()
        os.path.join("a", "b")
        Partition.find(Partition.TYPE_DATA, label="x")
        Partition.TYPE_NOPE
        _errno.ETIMEDOUT, _errno.EWHAT
        getattr(machine, "nothere")
        """)
    assert got == [
        (5, "numpy" + v),
        (6, "esp32.NoSuchThing" + v),
        (8, "agent.log.nonexistent is not defined in agent/log.py"),
        (9, "agent.cli.toml_config is not in the ESP32 bundle (agent/cli/toml_config.py is not flashed)"),
        (10, "machine.I2C.readfrom_mem_intox" + v),
        (12, "time.monotonic" + v),
        (13, "os.path" + v),
        (15, "esp32.Partition.TYPE_NOPE" + v),
        (16, "errno.EWHAT" + v),
        (17, "machine.nothere" + v),
    ]


def test_guards_the_esp32_takes_are_not_findings(tmp_path, stubs):
    assert run(tmp_path, stubs, """\
        import sys
        import machine
        import socket
        try:
            from time import ticks_ms, ticks_diff
        except ImportError:                # CPython: never taken on the ESP32
            import time as _t
            def ticks_ms():
                return int(_t.monotonic() * 1000)
        try:
            from itertools import accumulate
        except ImportError:                # taken on the ESP32: defines what the import would
            def accumulate(xs):
                return xs
        try:
            from typing import List        # allowlisted: annotations only
        except ImportError:
            pass
        if sys.implementation.name == "micropython":
            import gc
        else:
            import resource
        _MP = sys.implementation.name == "micropython"
        if not _MP:
            import numpy

        def reason():
            if not hasattr(machine, "no_such_cause"):
                return None
            return machine.no_such_cause()

        if hasattr(socket, "TCP_NOPE") and socket.TCP_NOPE:
            socket.TCP_NOPE2 if hasattr(socket, "TCP_NOPE2") else getattr(socket, "TCP_NOPE3", 0)
        """) == []


def test_a_fallback_taken_on_the_esp32_is_device_code(tmp_path, stubs):
    v = " is not in the ESP32 stubs (micropython-esp32-stubs %s)" % stubs.version
    assert run(tmp_path, stubs, """\
        try:
            import numpy
        except ImportError:
            pass
        try:
            from itertools import accumulate
        except ImportError:
            import time
            accumulate = time.monotonic
        """) == [
        (2, "numpy" + v + "; its ImportError fallback does not define numpy"),
        (9, "time.monotonic" + v),
    ]


def test_cli(tmp_path, stubs, monkeypatch, capsys):
    r = subprocess.run([sys.executable, "-m", "agent.cli", "stubcheck"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imports/attributes checked against micropython-esp32-stubs" in r.stdout
    assert r.stdout.strip().endswith(": clean")

    r = subprocess.run([sys.executable, "-m", "agent.cli", "stubcheck", "--stubs", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ("tally: stubcheck: no ESP32 stubs in %s: "
                                "pip install micropython-esp32-stubs" % tmp_path)

    bad = tmp_path / "bad.py"
    bad.write_text("import time\n\ntime.monotonic()\n")
    monkeypatch.setattr(sc, "checked_modules", lambda root: [str(bad)])
    assert cli.main(["stubcheck"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "%s:3: time.monotonic is not in the ESP32 stubs (micropython-esp32-stubs %s)" % (
        bad, stubs.version)
    assert out[1].endswith(": 1 findings")
