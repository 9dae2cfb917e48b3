# Two entry points, both self-contained on a fresh Debian/Ubuntu machine (run as root):
#   make demo   - venv, install, simulate an emulated fleet, print the ledger and its billing report, and how to open the console
#   make test   - venv, install test deps (+ mosquitto, postgresql, gcc-multilib, chromium from apt), run the whole suite
# the first Python >= 3.11 on PATH (Ubuntu 22.04's python3 is 3.10)
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
            command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
            && { echo $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv mosquitto postgres multilib chromium clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@[ -n "$(PYTHON)" ] || { echo "Tally needs Python >= 3.11 (on Ubuntu 22.04: apt-get install python3.11 python3.11-venv)"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  { echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,statement]'
	# pysparkplug (for `tally bench payload` only) pins paho-mqtt<2 for a client
	# we never use; its payload encoder works with paho 2, so skip its pins and
	# install the one it does need, protobuf (its own floor), by name.
	$(BIN)/python -m pip install -q --no-deps pysparkplug 'protobuf>=5.28.2'
	$(BIN)/python -c 'import pysparkplug, paho.mqtt; assert int(paho.mqtt.__version__.split(".")[0]) >= 2'
	@touch $@

mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
	  { echo "installing mosquitto"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; }

# the collector's PostgreSQL tests start their own throwaway cluster from these binaries
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing postgresql"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# tests/test_unix32.py builds MicroPython's unix port 32-bit (-m32 -static) from the vendored source
multilib:
	@[ "$$(uname -m)" != x86_64 ] || echo 'int main(void){return 0;}' | gcc -m32 -static -x c - -o /dev/null 2>/dev/null || \
	  { echo "installing gcc-multilib"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-multilib; }

# the console's browser tests (tests/test_console_browser.py) drive Debian's headless Chromium
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { echo "installing chromium and chromium-driver"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# The simulated fleet starts on 2026-01-01 (the virtual clock), so its month is 2026-01.
DEMO_DB := $(VENV)/demo-ledger.sqlite
demo: venv
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(BIN)/tally simulate --devices 3 --days 2 --loss 0.05 --db $(DEMO_DB)
	@echo
	$(BIN)/tally report --db $(DEMO_DB) --rates docs/rates.example.toml --period 2026-01
	@rm -f $(DEMO_DB).console.sqlite
	@pw=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))'); \
	  echo "$$pw" | $(BIN)/tally console user add demo --role operator --db $(DEMO_DB) && \
	  echo && echo "The console on this ledger: run" && \
	  echo "  $(BIN)/tally console --db $(DEMO_DB) --rates docs/rates.example.toml" && \
	  echo "then open http://127.0.0.1:8080/ and log in as demo, password $$pw" && \
	  echo "(more users: $(BIN)/tally console user add NAME --role viewer --db $(DEMO_DB); docs/console.md)"

# The whole suite on the emulated compressor board, then the contract tests
# once more for the ESP32 boards' sensors (INA226, SHT4x, BME280, BH1750,
# ADXL345), on the twins in this process and on the MicroPython unix port.
# Two workers, a test file each at a time (--dist loadfile: a file's module
# fixtures, brokers and ledgers stay in one process): about 8 minutes on 2 cores.
test: venv mosquitto postgres multilib chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile
	for b in esp32-s3-devkitc esp32-devkitc; do for be in emulated micropython-unix; do \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_contract.py --board $$b --backend $$be \
	  || exit 1; done; done

clean:
	rm -rf $(VENV) build *.egg-info
