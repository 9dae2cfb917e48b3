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
