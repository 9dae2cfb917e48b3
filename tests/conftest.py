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
pytest_plugins = ["hil.pytest_plugin"]


def _need_mosquitto():
    from hil.mosquitto import find_mosquitto
    if not find_mosquitto():
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed (make test installs it)")
        pytest.skip("mosquitto is not installed")


@pytest.fixture
def broker():
    """A real mosquitto on a free loopback port, per test."""
    from hil.mosquitto import Mosquitto
    _need_mosquitto()
    m = Mosquitto().start()
    yield m
    m.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throwaway fleet PKI (CA, broker, collector, devices on demand), per session."""
    from hil.pki import TestPKI
    return TestPKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_broker(pki):
    """A TLS-only mosquitto requiring client certificates from pki's CA, with
    Tally's ACL, on a free loopback port, per test."""
    from hil.mosquitto import Mosquitto
    _need_mosquitto()
    m = Mosquitto(tls=pki.broker_tls).start()
    yield m
    m.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a free loopback port, for the session."""
    from hil.postgres import Postgres, find_postgres
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
