"""`tally flash`: build the device bundle (CPython only). The device-side
modules compiled with mpy-cross (xtensawin for the ESP32 boards, bytecode for
the unix port), the same modules as a ROMFS image (tally.romfs: executed in
place from a ROM partition, so the code is not copied to the heap), the
config compiled from the TOML file into the JSON the device reads, and
main.py. --board unix builds a bundle that `micropython -X heapsize=256K
DIR/main.py` runs as is, on the emulated board, and that
`python -m hil.harness.romboard DIR/tally.romfs DIR/main.py --heap ROMFS_HEAP` runs
with its code in a mapped ROM image as a board would."""
import json
import os
import shutil

from hil.harness import mpbuild, romboard, romfs

TARGETS = {
    "unix": None,                        # the MicroPython unix port, this machine's arch
    "esp32-devkitc": "xtensawin",
    "esp32-s3-devkitc": "xtensawin",     # the S3's LX7 runs the same xtensawin code
}
# what the device reads: the keys of tally.toml that mean something there
DEVICE_KEYS = ("device_id", "interval_s", "sample_ms", "log_kib", "broker", "key", "seed",
               "batch_max", "window", "drain_bps", "max_latency_s",
               "wifi_ssid", "wifi_password", "ntp", "deep_sleep", "awake_s", "log", "watchdog_s")
MAIN = "from agent import device_main\ndevice_main.start()\n"
ROMFS = "tally.romfs"       # the modules as a ROMFS image (not the config, not main.py)
# The heap the unix bundle's ROMFS run line gives (64-bit unix port; a day
# syncing through mosquitto needs 152K since the hardened uplink and the
# damage-repairing log: 8K of headroom). tests/test_firmware.py and
# tests/test_ring_heap.py run at exactly this.
ROMFS_HEAP = "168K"


class FlashError(ValueError):
    pass


def build(out, board, cfg, duration_s=0, progress=None):
    """Write the bundle to out/; returns {"files", "mpy_bytes", "config", "romfs_bytes"}."""
    say = progress or (lambda s: None)
    if board not in TARGETS:
        raise FlashError("flash: board %r is not one of %s" % (board, ", ".join(sorted(TARGETS))))
    if cfg.get("broker") and not cfg["broker"].startswith(("mqtt://", "tcp://")):
        raise FlashError("flash: the device's MQTT client speaks plain mqtt:// only (no TLS on "
                         "MicroPython yet), not %r" % cfg["broker"])
    if os.path.exists(out) and os.listdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    march = TARGETS[board]
    say("compiling the device modules with mpy-cross%s" % (" -march=" + march if march else ""))
    files = mpbuild.build(out, march=march, board=board)     # the board's bundle, drawn by folder
    image = romfs.image(out)
    with open(os.path.join(out, ROMFS), "wb") as f:
        f.write(image)
    say("ROMFS image of the modules: %d bytes (%s)" % (len(image), ROMFS))
    dev = {k: cfg[k] for k in DEVICE_KEYS if k in cfg}
    dev["board"] = board
    dev["log_path"] = "tally.log"
    if duration_s:
        dev["duration_s"] = duration_s
    with open(os.path.join(out, "tally_config.json"), "w") as f:
        json.dump(dev, f, indent=1, sort_keys=True)
    with open(os.path.join(out, "main.py"), "w") as f:
        # on a board the firmware mounts its ROM partition itself
        f.write((romboard.MOUNT if board == "unix" else "") + MAIN)
    size = sum(os.path.getsize(p) for p in files)
    say("%d modules, %d bytes of .mpy, config and main.py in %s" % (len(files), size, out))
    return {"files": len(files), "mpy_bytes": size, "config": dev, "romfs_bytes": len(image)}
