# The emulation and the test harness, sorted by where each runs.
#
# Portable (MicroPython and CPython; bundled for the unix port only, never on
# an ESP32; hil/harness/mpbuild.py draws that line by these folders):
#   twins/      one model per chip at bus level (ina219, ina226, sht3x, sht4x,
#               bme280, bh1750, adxl345, sdm120, sdm630, pms5003, memory) and
#               settable.py; twins/__init__ builds a board's I2C buses of twins
#   buses/      the emulated buses: i2c.py (an I2C bus of twins),
#               serial_loop.py (a UART loopback for Modbus and PMS5003),
#               i2c_serve.py (serves a bus of twins over stdio to a host proxy)
#   soc/        the ESP32's machine/network/esp32 modules, emulated
#   nor.py      EmulatedNOR: NOR flash (erase to 0xFF, program by AND, tears)
#   powercut.py power-cut campaigns against the ring log on EmulatedNOR
#   scenario.py, rng.py, refbatch.py, scripted.py, loopback.py: load
#               profiles, the seeded PRNG, reference batches, a scripted
#               broker, an in-process hub
#
# CPython only (never bundled):
#   harness/    mosquitto.py, postgres.py (throwaway servers), proxy.py,
#               sntp_server.py, pki.py, fakeboard.py, pty_serial.py,
#               i2c_proxy.py, romboard.py, sim.py (the simulated fleet),
#               soak.py, soakdev.py, hostile.py, pytest_plugin.py, mpday.py (a
#               MicroPython day through mosquitto, reconciled), the bundle
#               builders mpbuild.py and romfs.py (the image by mpremote's romfs)
#               and freeze.py (firmware with the modules frozen: tally firmware)
#   bench/      `tally bench`: one module per benchmark (ring, payload, sync,
#               drivers, footprint, soak, hostile, console), each with its runner and
#               its printer report(result); tls_sync.py, footprint's heap with TLS
#               through a real mosquitto; the MicroPython halves drivers_mp.py, footprint_mp.py
#               and tls_sync_mp.py (passed to the unix bundle as extra top-level modules), and
#               wasm_footprint.mjs (the WebAssembly port's driver)
