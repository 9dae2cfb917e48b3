"""The test plugin (hil/harness/pytest_plugin.py) and the I2C proxy behind its
micropython-unix and esp32 backends (hil/harness/i2c_proxy.py, hil/buses/i2c_serve.py)."""
import errno
import os
import subprocess
import sys
import types

import pytest

from hil.harness import i2c_proxy
from hil.buses.i2c import EmulatedI2C
from hil.harness.i2c_proxy import MpremoteLink, ProxyI2C
from hil.twins import i2c_buses

from conftest import ROOT

MARKED = '''
import pytest

@pytest.mark.emulator_exact
def test_exact():
    pass

@pytest.mark.fault_injection
def test_fault():
    pass

@pytest.mark.esp32
def test_on_the_board():
    pass

def test_plain(board, backend):
    print("BOARD", board["name"], backend.name, backend.twins)
'''


def run_pytest(tmp_path, *args):
    (tmp_path / "test_marked.py").write_text(MARKED)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "hil.harness.pytest_plugin", "-rs", "-s",
                           "-p", "no:cacheprovider", str(tmp_path / "test_marked.py")] + list(args),
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)


def test_a_bench_run_skips_what_needs_the_emulators(tmp_path):
    r = run_pytest(tmp_path, "--backend", "linux", "--board", "boards/rpi4.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 3 skipped" in r.stdout
    assert "needs exact emulator values: backend linux reads real sensors on board rpi4" in r.stdout
    assert "needs fault injection: backend linux reads real sensors on board rpi4" in r.stdout
    assert "needs an ESP32 over USB: --backend esp32" in r.stdout
    assert "BOARD rpi4 linux False" in r.stdout
    assert "tally: backend linux, board rpi4 (bcm2711)" in r.stdout


@pytest.mark.parametrize("backend", ["emulated", pytest.param("micropython-unix", marks=pytest.mark.micropython)])
def test_emulated_backends_run_them(tmp_path, backend):
    r = run_pytest(tmp_path, "--backend", backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed, 1 skipped" in r.stdout
    assert "BOARD emulated %s True" % backend in r.stdout


@pytest.mark.parametrize("args, words", [
    (["--backend", "esp32", "--board", "rpi4"], "--backend esp32 cannot drive board rpi4 (mcu bcm2711)"),
    (["--backend", "linux", "--board", "boards/esp32_s3_devkitc.py"], "cannot drive board esp32-s3-devkitc"),
    (["--board", "no/such.toml"], "--board: [Errno 2] No such file or directory"),
    (["--board", "esp8266"], "--board: board 'esp8266' is not a board name"),
])
def test_usage_errors(tmp_path, args, words):
    r = run_pytest(tmp_path, *args)
    assert r.returncode == 4, r.stdout + r.stderr
    assert words in r.stderr


# the fixtures, on whatever backend this run uses --------------------------------------

def test_i2c_is_the_first_bus_of_the_board(board, i2c_buses, i2c):
    first = [n for n, b in board["buses"].items() if b["kind"] == "i2c"][0]
    assert i2c is i2c_buses[first]
    assert sorted(i2c_buses) == sorted(n for n, b in board["buses"].items() if b["kind"] == "i2c")


@pytest.mark.esp32
def test_esp32_board_answers_over_mpremote(board, i2c_buses):
    # the helper runs on the board against its machine.I2C: every I2C sensor of
    # the board answers the scan, and a NACK comes back with the board's errno
    for name, bus in i2c_buses.items():
        found = bus.scan()
        for s in board["sensors"]:
            if s["bus"] == name:
                assert s["addr"] in found, "%s 0x%02x not on %s: %s" % (s["type"], s["addr"], name, found)
        free = [a for a in range(0x08, 0x78) if a not in found][0]
        with pytest.raises(OSError) as ei:
            bus.writeto(free, b"")
        assert ei.value.errno == errno.ENODEV


# the proxy without a board: mpremote's transport and machine faked at the USB edge ---------

class FakeTransport:
    """mpremote's SerialTransport as the board's raw REPL sees it: exec and eval
    in one namespace (here: CPython, with a fake machine module)."""
    made = []

    def __init__(self, port, baudrate=115200):
        self.port, self.ns, self.log = port, {}, []
        FakeTransport.made.append(self)

    def enter_raw_repl(self, soft_reset=True):
        self.log.append("raw")

    def mount_local(self, path):
        self.log.append("mount " + path)

    def exec(self, code):
        exec(code, self.ns)

    def eval(self, expr, parse=True):
        return (str(eval(expr, self.ns)) + "\r\n").encode()

    def umount_local(self):
        self.log.append("umount")

    def exit_raw_repl(self):
        self.log.append("exit")

    def close(self):
        self.log.append("close")


def test_mpremote_link_serves_the_boards_machine_i2c(monkeypatch):
    import mpremote.transport_serial
    import boards
    board = boards.load("esp32-devkitc").BOARD
    twins = i2c_buses(board)
    opened = []

    def I2C(id, scl, sda, freq):
        opened.append((id, scl.n, sda.n, freq))
        return twins["i2c0"]
    machine = types.SimpleNamespace(I2C=I2C, Pin=lambda n: types.SimpleNamespace(n=n))
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setattr(mpremote.transport_serial, "SerialTransport", FakeTransport)
    link = MpremoteLink("/dev/ttyUSB7", board)
    t = FakeTransport.made[-1]
    assert t.port == "/dev/ttyUSB7" and t.log == ["raw", "mount " + i2c_proxy.ROOT]
    bus = ProxyI2C(link, "i2c0")
    assert bus.scan() == [0x40, 0x44, 0x53]    # INA219, SHT3x, ADXL345
    assert opened == [(0, 22, 21, 400000)]
    raw = bytearray(2)
    bus.readfrom_mem_into(0x40, 0x00, raw)
    assert raw == b"\x39\x9f"
    with pytest.raises(OSError) as ei:
        bus.writeto(0x29, b"\x00")              # nobody at 0x29
    assert ei.value.errno == errno.ENODEV
    link.close()
    assert t.log[-3:] == ["umount", "exit", "close"]


def test_proxy_round_trips_every_call():
    # the protocol itself, against hil.buses.i2c_serve in this process
    from hil.buses.i2c_serve import Server
    from hil.twins.memory import Memory
    mem = Memory()

    def buses():
        b = EmulatedI2C()
        b.attach(0x50, mem)
        return {"b": b}

    class Local:
        def __init__(self):
            self.srv = Server(buses)

        def call(self, line):
            return self.srv.handle(line)
    link = Local()
    p = ProxyI2C(link, "b")
    p.writeto_mem(0x50, 0x10, bytes(range(40)))
    assert p.readfrom_mem(0x50, 0x10, 40) == bytes(range(40))
    assert p.writeto(0x50, b"\x10") == 1 and p.readfrom(0x50, 3) == b"\x00\x01\x02"
    assert p.writeto(0x50, b"") == 0
    p.fail_next(0x50, 2, errno.ETIMEDOUT)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            p.readfrom(0x50, 1)
    p.absent(0x50)
    assert p.scan() == []
    p.absent(0x50, False)
    assert p.scan() == [0x50]
    with pytest.raises(i2c_proxy.LinkError, match="KeyError"):
        ProxyI2C(link, "nope").scan()
