"""Benchmarks that print figures (CPython; MicroPython figures come from the
unix port in a subprocess). Timings are medians of repeated runs; nothing here
is asserted. One module per benchmark, each owning its runner, its
MicroPython half and its printer `report(result)`: ring.py,
payload.py, sync.py, drivers.py (+ drivers_mp.py, its MicroPython half),
footprint.py (+ footprint_mp.py and wasm_footprint.mjs; tls_sync.py and
tls_sync_mp.py for its heap with TLS), value.py (statements and prices), ota.py, console.py (the
web console's pages on a generated ledger), soak.py and
hostile.py (their runners live with the CPython harness they drive,
hil/harness/soak.py and hil/harness/hostile.py). `tally bench` parses the
arguments, calls the runner and then the module's report."""
import json


def print_json(r):
    print(json.dumps(r, indent=2, sort_keys=True))


def print_goals(title, goals):
    print(title)
    for g, ok in goals.items():
        print("  [%s] %s" % ("met" if ok else "NOT met", g))


# the runners, defined after the two printers above that every module imports
from hil.bench.ring import bench_ring, ring_heap  # noqa: F401,E402
from hil.bench.payload import bench_payload  # noqa: F401,E402
from hil.bench.sync import bench_ingest, bench_sync, ingest_parallel, ingest_run  # noqa: F401,E402
from hil.bench.drivers import bench_drivers  # noqa: F401,E402
from hil.bench.footprint import bench_footprint, wasm_port  # noqa: F401,E402
