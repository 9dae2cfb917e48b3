import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def broker():
    """A real mosquitto on a free loopback port, per test."""
    from hil.mosquitto import Mosquitto, find_mosquitto
    if not find_mosquitto():
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed (make test installs it)")
        pytest.skip("mosquitto is not installed")
    m = Mosquitto().start()
    yield m
    m.close()
