"""A flashed ESP32 bundle carries only what its installation uses
(hil/harness/mpbuild.py installation(), tally flash): built as `tally flash`
builds it for each asset, with TLS, OTA and parts on and off, compiled for
this machine and booted on the MicroPython unix port over the emulated SoC
(hil/soc/: the asset's chips behind machine.I2C/UART/Counter), it meters for
a few seconds with no ImportError, loading the modules its features need and
holding none of those it left out. A config edited on the board to ask for
what the bundle left out (another asset's sensors, parts, TLS, OTA) is one
line each, and the device meters on."""
import json
import os
import shutil
import socket
import subprocess

import pytest

from agent import cose
from agent.cli import bundle as cli_bundle
from agent.cli import ota as cli_ota
from hil.harness import mpbuild
from conftest import MP

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
BOARD = "esp32-devkitc"
DEV = "trim-1"
MASTER = bytes.fromhex("00112233445566778899aabbccddeeff")
HEAP = "512K"        # the modules load into the heap here (no ROMFS): not a heap test
# the sensors of each asset on this board, as the device prints them
SENSORS = {"compressor": "ina219, sht3x, adxl345, sdm120", "luminaire": "ina226, bh1750, sht4x",
           "pump": "sdm630, pulse, adxl345, bme280"}
DRIVERS = {"compressor": ("ina219", "sht3x", "adxl345", "sdm120", "modbus"),
           "luminaire": ("ina226", "bh1750", "sht4x"),
           "pump": ("sdm630", "pulse", "adxl345", "bme280", "modbus")}
# what it prints of the modules it loaded, after main.py returns
RUN = "import main\nimport sys\nprint('MODULES', ' '.join(sorted(sys.modules)))\n"


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The emulated SoC and the asset's world around it (hil/, boards/emulated),
    compiled once: what a test adds beside a board's bundle, never a module of it."""
    d = str(tmp_path_factory.mktemp("world"))
    mpbuild.build(d)                      # the unix bundle: it holds the emulation
    return d


@pytest.fixture(scope="module")
def ota_keys(tmp_path_factory):
    return cli_ota.keygen(str(tmp_path_factory.mktemp("otakey")))


@pytest.fixture(scope="module")
def ota_pub(ota_keys):
    return ota_keys[1]


def config(asset, tls=None, ota=None, parts=False, broker=None):
    cfg = {"device_id": DEV, "board": BOARD, "asset": asset, "interval_s": 1, "sample_ms": 100,
           "key": cose.device_key(MASTER, DEV).hex(), "wifi_ssid": "bench", "wifi_password": "secret123",
           "ntp": "", "broker": broker or "mqtt://127.0.0.1:%d" % closed_port()}
    if tls:
        cfg["broker"] = "mqtts://127.0.0.1:%d" % closed_port()
        cfg["tls"] = tls
    if ota:
        cfg["ota_key"] = ota
    if parts:
        cfg["parts"] = True
    return cfg


def flash(tmp_path, cfg, world):
    """The bundle as tally flash builds it for the board (compiled for this
    machine), with the world beside it; returns (run dir, its .mpy modules, built)."""
    out = tmp_path / "dev"
    built = cli_bundle.build(str(out), BOARD, cfg, duration_s=2, host=True)
    mods = set(os.path.relpath(os.path.join(d, f), str(out)).replace(os.sep, "/")[:-4].replace("/", ".")
               .replace(".__init__", "") for d, _, fs in os.walk(str(out)) for f in fs if f.endswith(".mpy"))
    shutil.copytree(os.path.join(world, "hil"), str(out / "hil"))
    shutil.copy(os.path.join(world, "boards", "emulated.mpy"), str(out / "boards"))
    return out, mods, built


def boot(out, asset, edit=None, clean=True):
    """main.py on the unix port over the emulated SoC; (stdout, loaded modules)."""
    if edit:
        c = json.loads((out / "tally_config.json").read_text())
        c.update(edit)
        (out / "tally_config.json").write_text(json.dumps(c))
    # an access point that refuses the password: the uplink is made at boot
    # (TLS identity, updater) but not tried, and the run ends without a drain
    (out / "soc.json").write_text(json.dumps({"asset": asset, "partition": {"sectors": 16},
                                              "wifi": {"ssid": "bench", "password": "other", "join_ms": 50}}))
    r = subprocess.run([MP, "-X", "heapsize=" + HEAP, "-c", RUN], cwd=str(out), capture_output=True,
                       text=True, timeout=60,
                       env={"PATH": os.environ.get("PATH", ""), "MICROPYPATH": "%s:%s" % (out / "hil" / "soc", out)})
    print(r.stdout, r.stderr)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert "ImportError" not in r.stdout and (not clean or "no module named" not in r.stdout)
    last = [x for x in r.stdout.splitlines() if x.startswith("tally: stopped;")]
    assert last and int(last[0].split()[2]) >= 2, "did not meter"
    loaded = next(x for x in r.stdout.splitlines() if x.startswith("MODULES ")).split()[1:]
    return r.stdout, set(loaded)


@pytest.mark.parametrize("features", ["none", "tls+ota+parts"])
@pytest.mark.parametrize("asset", sorted(SENSORS))
def test_each_assets_trimmed_bundle_boots_and_meters_without_an_import_error(
        asset, features, tmp_path, world, pki, ota_pub):
    on = features.split("+")
    cfg = config(asset, tls=pki.device_tls(DEV) if "tls" in on else None,
                 ota=ota_pub if "ota" in on else None, parts="parts" in on)
    out, mods, built = flash(tmp_path, cfg, world)
    # what it holds: this asset's drivers, the features asked for, no checker
    held = set(m for m in mods if m.startswith("drivers."))
    for d in DRIVERS[asset]:
        assert "drivers." + d in held
    others = set("drivers." + d for a in DRIVERS for d in DRIVERS[a]) - set("drivers." + d for d in DRIVERS[asset])
    assert not held & others, held & others
    assert "boards.check" not in mods and "drivers.pms5003" not in mods
    assert ("agent.port.tls_mp" in mods) == ("tls" in on)
    assert ("agent.ota" in mods) == ("ota" in on)
    assert ("agent.parts" in mods) == ("parts" in on)
    # the asset's ID EEPROM tags (boards/tags.py) come with parts: their module, the passport
    # and the EEPROM driver; without parts none of them
    tag_mods = {"agent.parttags", "agent.passport", "drivers.eeprom24"}
    assert (tag_mods & mods) == (tag_mods if "parts" in on else set())
    assert ("agent.port.counter_mp" in mods) == (asset == "pump")
    assert set(built["left_out"]) == set(mpbuild.optional()) - set(m.replace(".", "/") + ".py" for m in mods)
    assert "drivers/bme280.py" in built["left_out"] or asset == "pump"
    stdout, loaded = boot(out, asset)
    assert "tally: board %s as a %s: %s" % (BOARD, asset, SENSORS[asset]) in stdout
    assert "tally: board %s: metering" % BOARD not in stdout        # no sensor left out
    # the modules it ran: each from the bundle (the world adds hil.* and boards.emulated only)
    device = set(m for m in loaded if m.split(".")[0] in ("agent", "drivers", "boards"))
    assert device - mods == {"boards.emulated"}, device - mods
    for d in DRIVERS[asset]:
        assert "drivers." + d in loaded
    assert ("agent.port.tls_mp" in loaded) == ("tls" in on)
    assert ("agent.ota" in loaded) == ("ota" in on)
    assert ("agent.parts" in loaded) == ("parts" in on)


REBUILD = ": rebuild the bundle with tally flash for this config"


@pytest.mark.parametrize("edit,says", [
    # another asset's sensors, parts and TLS on a bundle flashed for a compressor without them
    ({"asset": "luminaire", "parts": True, "broker": "mqtts://127.0.0.1:8883", "tls_cert": "c.der",
      "tls_key": "k.der", "tls_ca": "a.der"},
     ["tally: board esp32-devkitc: ina226 on bus i2c0: no module named 'drivers.ina226'",
      "tally: board esp32-devkitc: bh1750 on bus i2c0: no module named 'drivers.bh1750'",
      "tally: board esp32-devkitc: sht4x on bus i2c0: no module named 'drivers.sht4x'",
      "tally: board esp32-devkitc: metering 0 of 3 sensors; left out: ina226, bh1750, sht4x",
      "tally: broker mqtts://127.0.0.1:8883: no module named 'agent.port.tls_mp': no uplink, logging only",
      "tally: parts: no module named 'agent.parts'" + REBUILD]),
    # the fleet's release key put on a board whose bundle has no updater
    ({"ota.pub": True}, ["tally: ota: no module named 'agent.ota'" + REBUILD]),
])
def test_a_feature_the_bundle_left_out_is_one_line_and_the_device_meters_on(edit, says, tmp_path, world, ota_pub):
    out, mods, _ = flash(tmp_path, config("compressor"), world)
    assert not mods & {"agent.parts", "agent.port.tls_mp", "agent.ota", "drivers.ina226"}
    if edit.pop("ota.pub", None):
        shutil.copy(ota_pub, str(out / "ota.pub"))
    stdout, _ = boot(out, edit.get("asset", "compressor"), edit, clean=False)
    for line in says:
        assert line in stdout.splitlines(), line


def test_a_release_without_the_updater_is_refused(tmp_path, ota_keys):
    """A bundle built without an OTA key has no agent/ota: released, it would
    leave the devices it updates unable to take another update."""
    out = tmp_path / "rel"
    cli_bundle.build(str(out), BOARD, config("compressor"))
    with pytest.raises(cli_ota.OtaError, match="has no agent/ota.mpy: a device updated to it would take no"):
        cli_ota.release(str(out), "1.0", ota_keys[0])
    out2 = tmp_path / "rel2"
    cli_bundle.build(str(out2), BOARD, config("compressor", ota=ota_keys[1]))
    cli_ota.release(str(out2), "1.0", ota_keys[0])
    assert (out2 / cli_ota.RELEASE_DIR / "OFFER").exists()


def test_the_footprint_bench_sizes_each_assets_firmware(tmp_path):
    from hil.bench.footprint import firmware_sizes
    r = firmware_sizes(str(tmp_path), lambda s: None)
    assert set(r["firmware_mpy_bytes"]) == set(SENSORS) == set(r["firmware_parts_mpy_bytes"])
    for a, n in r["firmware_mpy_bytes"].items():
        assert 0 < n < r["firmware_parts_mpy_bytes"][a] < r["bundle_mpy_bytes"]["every_module"]
    assert r["bundle_mpy_bytes"]["firmware"] == max(r["firmware_mpy_bytes"].values()) \
        == r["firmware_mpy_bytes"][r["firmware_largest_asset"]]


def test_id_eeprom_tags_bring_their_passport_modules_and_parts_alone_does_not(monkeypatch):
    # agent/parts.py imports agent/parttags.py (hence the passport and the
    # EEPROM driver) only for a tag's slot: with parts on and no tags (neither
    # the board's nor part_tags) they stay out, left out with that reason;
    # with the board's tags or part_tags they come in
    base = {"asset": "compressor", "parts": True}
    tag_mods = {"agent/parttags.py", "agent/passport.py", "drivers/eeprom24.py"}
    kept, left = mpbuild.installation(BOARD, base)                 # the compressor's board tags
    assert "agent/parts.py" in kept and tag_mods <= kept
    import boards
    as_built = boards.board
    monkeypatch.setattr(boards, "board", lambda *a, **k: dict(as_built(*a, **k), tags=[]))   # a board without tags
    kept, left = mpbuild.installation(BOARD, base)
    assert "agent/parts.py" in kept and not tag_mods & kept
    assert set(left[m] for m in tag_mods) == {"no ID EEPROM tags"}
    kept, left = mpbuild.installation(BOARD, dict(base, part_tags=["motor=at24cs02@0x50"]))
    assert tag_mods <= kept and not tag_mods & set(left)
    kept, _ = mpbuild.installation(BOARD, {"asset": "compressor", "part_tags": ["motor=at24cs02@0x50"]})
    assert not ({"agent/parts.py"} | tag_mods) & kept          # tags without parts: nothing tracks them
