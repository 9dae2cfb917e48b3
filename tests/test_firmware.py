"""`tally flash`: the unix bundle runs as is under the MicroPython unix port,
metering and syncing through a real mosquitto to the collector; the ESP32
bundle is built for xtensawin without the emulation; bad requests are one
clear line."""
import json
import os
import subprocess
import sys
import threading

import pytest

from agent import cose
from agent.cli import bundle as cli_flash
from agent.cli import main
from agent.collector.service import CollectorService
from agent.collector.store import Collector
from conftest import MP

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
MASTER = "00112233445566778899aabbccddeeff"


# files: `micropython main.py`, the modules loaded into the heap from files;
# romfs: the same bundle with its tally.romfs mapped outside the heap as a
# board maps its ROM partition (hil/harness/romboard.py), code executed in place
RUNS = {"files": lambda out: [MP, "-X", "heapsize=" + cli_flash.FILES_HEAP, "main.py"],
        "romfs": lambda out: [sys.executable, "-m", "hil.harness.romboard", str(out / "tally.romfs"),
                              "main.py", "--heap", cli_flash.ROMFS_HEAP]}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_unix_bundle_runs_as_is_and_syncs_through_mosquitto(broker, tmp_path, run):
    key = cose.device_key(bytes.fromhex(MASTER), "unix-1")
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "unix-1"\ninterval_s = 1\nsample_ms = 100\nbroker = "%s"\nkey = "%s"\n'
                   'batch_max = 2\nmax_latency_s = 1\n' % (broker.url, key.hex()))
    out = tmp_path / "bundle"
    assert main(["flash", "--board", "unix", "--out", str(out), "--config", str(cfg),
                 "--duration", "6"]) == 0
    dev = json.loads((out / "tally_config.json").read_text())
    assert dev["board"] == "unix" and dev["interval_s"] == 1 and dev["duration_s"] == 6
    # plain mqtt://: no TLS files or keys (an mqtts:// bundle: tests/test_tls_mp.py)
    assert not [k for k in dev if k.startswith("tls")] and not list(out.glob("*.der"))
    col = Collector(str(tmp_path / "ledger.sqlite"), keys=lambda d: key if d == "unix-1" else None)
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    stop = threading.Event()
    pump = threading.Thread(target=svc.run_forever, args=(stop,), daemon=True)
    pump.start()
    try:
        # run from the bundle directory, nothing else on the path
        r = subprocess.run(RUNS[run](out), cwd=str(out), capture_output=True,
                           text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    finally:
        stop.set()
        pump.join(10)
        svc.stop()
    print(r.stdout, r.stderr)
    assert r.returncode == 0
    assert "tally: device unix-1 on unix" in r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("tally: stopped;") and last.endswith(" 0 unacked"), last
    logged = int(last.split()[2])
    s = col.summary("unix-1")
    (e,) = s["epochs"].values()
    assert logged >= 4 and e["covered"] == logged and e["gaps"] == 0
    col.close()


def test_esp32_bundle_is_built_without_the_emulation(tmp_path):
    out = tmp_path / "esp32"
    assert main(["flash", "--board", "esp32-s3-devkitc", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["agent", "boards", "drivers", "main.py", "tally.romfs",
                                       "tally_config.json"]
    assert (out / "drivers" / "ina219.mpy").exists() and (out / "agent" / "port" / "mqtt_mp.mpy").exists()
    # the installation's drivers only (no config: the compressor's sensor set), no board checker
    assert not (out / "drivers" / "bme280.mpy").exists() and not (out / "boards" / "check.mpy").exists()
    assert not (out / "agent" / "collector").exists() and not (out / "agent" / "cli.mpy").exists()
    assert json.loads((out / "tally_config.json").read_text())["board"] == "esp32-s3-devkitc"


@pytest.mark.parametrize("args,msg", [
    (["--board", "esp8266", "--out", "X"], "board 'esp8266' is not one of"),
    (["--board", "esp32-devkitc", "--port", "X"], "no serial port"),
    (["--board", "esp32-devkitc", "--firmware", "X"], "give its --port PORT too"),
    (["--board", "unix"], "give --out DIR"),
])
def test_flash_refuses_with_a_clear_line(tmp_path, capsys, args, msg):
    args = [a.replace("X", str(tmp_path / "b")) for a in args]
    assert main(["flash"] + args) == 2
    assert msg in capsys.readouterr().err


def test_flash_refuses_a_tls_broker_without_the_devices_certificate(tmp_path, capsys):
    """mqtts:// bundles are tests/test_tls_mp.py's; a CA alone is not enough for the device."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('broker = "mqtts://b:8883"\nkey = "%s"\n[tls]\nca = "%s"\n' % (MASTER, cfg))
    assert main(["flash", "--board", "unix", "--out", str(tmp_path / "b"), "--config", str(cfg)]) == 2
    assert "needs [tls] cert, key and ca in the config" in capsys.readouterr().err
