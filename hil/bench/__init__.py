"""Benchmarks that print figures (CPython; MicroPython figures come from the
unix port in a subprocess). Timings are medians of repeated runs; nothing here
is asserted. One module per benchmark: ring.py, payload.py, sync.py,
drivers.py (+ drivers_mp.py, its MicroPython half), footprint.py (+
footprint_mp.py and wasm_footprint.mjs). `tally bench` imports the runners
from here."""
from hil.bench.ring import bench_ring, ring_heap  # noqa: F401
from hil.bench.payload import bench_payload  # noqa: F401
from hil.bench.sync import bench_ingest, bench_sync, ingest_parallel, ingest_run  # noqa: F401
from hil.bench.drivers import bench_drivers  # noqa: F401
from hil.bench.footprint import bench_footprint, wasm_port  # noqa: F401
