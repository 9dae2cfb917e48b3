"""`tally flash`: build the device bundle (CPython only). The device-side
modules compiled with mpy-cross (xtensawin for the ESP32 boards, bytecode for
the unix port), the same modules as a ROMFS image (tally.romfs: executed in
place from a ROM partition, so the code is not copied to the heap), the
config compiled from the TOML file into the JSON the device reads, and
main.py. --board unix builds a bundle that `micropython -X heapsize=320K
DIR/main.py` runs as is, on the emulated board, and that
`python -m hil.harness.romboard DIR/tally.romfs DIR/main.py --heap ROMFS_HEAP` runs
with its code in a mapped ROM image as a board would.

An mqtts:// broker takes the [tls] files of the TOML (cert, key, ca: PEM or
DER): they go into the bundle as DER (the device's mbedtls parses no PEM),
named by TLS_FILES, the config pointing at them; a certificate that does not
name the device id, or has expired, is refused here.

An ESP32 bundle carries only the optional modules its installation uses (the
installed sensors' drivers, parts, TLS, OTA: hil/harness/mpbuild.py's
installation()), compiled with mpy-cross -O3; the unix bundle carries every
module (docs/firmware.md)."""
import base64
import hashlib
import json
import os
import re
import shutil
import time

from agent.port.tls_mp import TLS_FILES
from hil.harness import mpbuild, romboard, romfs

TARGETS = {
    "unix": None,                        # the MicroPython unix port, this machine's arch
    "esp32-devkitc": "xtensawin",
    "esp32-s3-devkitc": "xtensawin",     # the S3's LX7 runs the same xtensawin code
}
# what the device reads: the keys of tally.toml that mean something there
DEVICE_KEYS = ("device_id", "interval_s", "sample_ms", "log_kib", "broker", "key", "seed",
               "batch_max", "window", "drain_bps", "max_latency_s",
               "wifi_ssid", "wifi_password", "ntp", "deep_sleep", "awake_s", "log", "watchdog_s",
               "parts", "part_tags", "asset", "air", "ota_trial_s")
# the board whose sensors a bundle's config is checked against
CHECK_BOARD = {"unix": "emulated"}
# ota_boot.boot() first: it picks the bundle this boot runs (the flashed one, or an
# update on trial or in force: agent/ota_boot.py, docs/ota.md)
MAIN = "from agent import ota_boot\nota_boot.boot()\ndel ota_boot\nfrom agent import device_main\ndevice_main.start()\n"
ROMFS = "tally.romfs"       # the modules as a ROMFS image (not the config, not main.py)
# The heap the unix bundle's ROMFS run line gives (64-bit unix port; a day
# syncing through mosquitto needed 152K since the hardened uplink and the
# damage-repairing log; since issues 14 and 15 (kept message buffers, TLS and
# OTA hooks, stress histograms, component events, the emulated asset sets)
# about 184K, 208K with TLS: 224K). tests/test_firmware.py and tests/test_ring_heap.py run
# at exactly this.
ROMFS_HEAP = "224K"
# The heap the unix bundle needs run from its .mpy files (code loaded into the
# heap, 8-byte slots: twice an ESP32's): issue 14 and 15's device code (TLS,
# OTA, asset sets, pulse meter, stress histograms, component identity) took
# it past 256K. A board runs its code from ROMFS or frozen, not from the heap.
FILES_HEAP = "320K"


class FlashError(ValueError):
    pass


def device_config(board, cfg):
    """What the device reads (tally_config.json): the device's keys of the
    config, and every [sensor] table, checked against the board the bundle is
    for as the asset installs it: a table naming a sensor it does not carry
    is refused (toml_config.ConfigError, one line), not dropped."""
    from agent.cli.toml_config import installed
    installed(cfg, CHECK_BOARD.get(board, board), "config")
    dev = {k: cfg[k] for k in DEVICE_KEYS if k in cfg}
    if cfg.get("sensors"):
        dev["sensors"] = {k: dict(v) for k, v in cfg["sensors"].items()}
    dev["board"] = board
    dev["log_path"] = "tally.log"
    return dev


def build(out, board, cfg, duration_s=0, progress=None, host=False):
    """Write the bundle to out/; returns {"files", "mpy_bytes", "config", "romfs_bytes",
    "left_out"}. host: an ESP32 board's bundle compiled for this machine's
    MicroPython (tests boot it on the unix port over the emulated SoC, hil/soc/)."""
    say = progress or (lambda s: None)
    if board not in TARGETS:
        raise FlashError("flash: board %r is not one of %s" % (board, ", ".join(sorted(TARGETS))))
    url = cfg.get("broker") or ""
    tls = _tls_files(cfg) if url.startswith(("mqtts://", "ssl://")) else None
    dev = device_config(board, cfg)
    if os.path.exists(out) and os.listdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    board_bundle = TARGETS[board] is not None
    march = None if host else TARGETS[board]
    say("compiling the device modules with mpy-cross%s%s" % (" -march=" + march if march else "",
                                                             " -O%d" % mpbuild.BOARD_OPT if board_bundle else ""))
    # the board's bundle, drawn by folder; on a board only the optional modules
    # its installation uses (mpbuild.installation); the unix bundle keeps them all
    left = {}
    if board_bundle:
        left = mpbuild.installation(board, cfg)[1]
        say("left out, unused by this installation: " + mpbuild.left_out_line(left))
    files = mpbuild.build(out, march=march, board=board, cfg=cfg if board_bundle else None,
                          opt=mpbuild.BOARD_OPT if board_bundle else 0)
    image = romfs.image(out)
    with open(os.path.join(out, ROMFS), "wb") as f:
        f.write(image)
    say("ROMFS image of the modules: %d bytes (%s)" % (len(image), ROMFS))
    # the modules' fingerprint: an update in force on the board gives way to a
    # different bundle flashed over it (agent/ota_boot.py), not to the same one
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(os.path.relpath(p, out).replace(os.sep, "/").encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    dev["build"] = int(h.hexdigest()[:7], 16)
    if duration_s:
        dev["duration_s"] = duration_s
    if tls:
        for k, name in TLS_FILES:
            _write(os.path.join(out, name), tls[k], private=k == "tls_key")
            dev[k] = name
        say("TLS: certificate, key and CA as DER in %s" % ", ".join(n for _, n in TLS_FILES))
    with open(os.path.join(out, "tally_config.json"), "w") as f:
        json.dump(dev, f, indent=1, sort_keys=True)
    if cfg.get("ota_key"):
        # the fleet's public release key (tally ota keygen): updates are checked against it
        from agent import ota
        try:
            with open(cfg["ota_key"]) as f:
                n = bytes.fromhex(f.read().strip())
        except (OSError, ValueError) as e:
            raise FlashError("flash: --ota-key %s: not an ota.pub from tally ota keygen (%s)"
                             % (cfg["ota_key"], e))
        if len(n) < 256:
            raise FlashError("flash: --ota-key %s: a %d-bit key; at least 2048 bits" % (cfg["ota_key"], len(n) * 8))
        with open(os.path.join(out, ota.PUBKEY), "w") as f:
            f.write(n.hex() + "\n")
    with open(os.path.join(out, "main.py"), "w") as f:
        # on a board the firmware mounts its ROM partition itself
        f.write((romboard.MOUNT if board == "unix" else "") + MAIN)
    size = sum(os.path.getsize(p) for p in files)
    say("%d modules, %d bytes of .mpy, config and main.py in %s" % (len(files), size, out))
    return {"files": len(files), "mpy_bytes": size, "config": dev, "romfs_bytes": len(image),
            "left_out": left}


def _write(path, data, private=False):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def der(path, what):
    """The first PEM block of path as DER, or the file as it is when it is DER."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FlashError("flash: tls.%s %s: %s" % (what, path, e.strerror or e))
    if data[:1] == b"\x30":
        return data
    m = re.search(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", data.decode("ascii", "replace"), re.S)
    if not m or "ENCRYPTED" in m.group(0):
        raise FlashError("flash: tls.%s %s is neither PEM nor DER%s" % (
            what, path, "" if not m else " the device can read: an encrypted key (write it unencrypted, "
            "e.g. openssl pkey -in KEY -out KEY.plain)"))
    try:
        return base64.b64decode("".join(m.group(2).split()), validate=True)
    except ValueError as e:
        raise FlashError("flash: tls.%s %s: bad PEM (%s)" % (what, path, e))


def _tls_files(cfg):
    """{config key: DER} for the bundle; FlashError for what the device would refuse."""
    from agent.port.tls_mp import Cert, CertError, day
    t = cfg.get("tls") or {}
    missing = [k for k in ("cert", "key", "ca") if not t.get(k)]
    if missing:
        raise FlashError("flash: an mqtts:// broker needs [tls] cert, key and ca in the config "
                         "(tally pki device makes them); missing: %s" % ", ".join(missing))
    out = {"tls_cert": der(t["cert"], "cert"), "tls_key": der(t["key"], "key"), "tls_ca": der(t["ca"], "ca")}
    for k, what in (("tls_cert", "cert"), ("tls_ca", "ca")):
        try:
            c = Cert(out[k])
        except CertError as e:
            raise FlashError("flash: tls.%s %s: %s" % (what, t[what], e))
        if k == "tls_cert":
            dev = cfg.get("device_id", "")
            if not c.names_device(dev):
                raise FlashError("flash: tls.cert %s names %r, not the device_id %r: the device would "
                                 "not connect with it (tally pki device DIR %s)" % (t["cert"], c.cn, dev, dev or "ID"))
            if c.not_after < time.time():
                raise FlashError("flash: tls.cert %s expired on %s: the broker would refuse it"
                                 % (t["cert"], day(c.not_after)))
    return out
