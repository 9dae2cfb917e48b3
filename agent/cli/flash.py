"""`tally flash`: build the device bundle (agent/cli/bundle.py) and, with
--port, put it on a board (agent/cli/deploy.py)."""
import sys

from agent.cli.common import err


def run(a):
    from agent.cli.toml_config import ConfigError, load_config
    from agent.cli import bundle
    from agent.cli.bundle import FlashError, build
    if a.freeze:
        from agent.cli import firmware
        return firmware.run(a)
    if a.port:
        return _flash_port(a)
    if a.firmware or a.erase:
        return err("flash: --firmware and --erase write to a board: give its --port PORT too")
    if not a.out:
        return err("flash: give --out DIR (the bundle to build) or --port PORT (build it and "
                   "copy it to the board)")
    try:
        cfg = load_config(a.config, check=False) if a.config else {}
        if a.ota_key:
            cfg["ota_key"] = a.ota_key
        r = build(a.out, a.board, cfg, duration_s=a.duration or 0,
                  progress=lambda s: print("  " + s, file=sys.stderr, flush=True))
    except (ConfigError, FlashError, RuntimeError, OSError) as e:
        return err("flash: %s" % e)
    print("tally: bundle for %s in %s: %d modules, %d bytes of .mpy%s" % (
        a.board, a.out, r["files"], r["mpy_bytes"],
        "; run it in %s: micropython -X heapsize=256K main.py, or with its code in ROM as a board "
        "runs it: python -m hil.harness.romboard tally.romfs main.py --heap %s" % (a.out, bundle.ROMFS_HEAP)
        if a.board == "unix" else ""))
    return 0


def _flash_port(a):
    from agent.cli.toml_config import ConfigError, load_config
    from agent.cli.deploy import DeployError, flash
    from agent.cli.bundle import FlashError
    if a.erase and not a.firmware:
        return err("flash: --erase erases the whole flash before --firmware FILE is written; "
                   "give both")
    try:
        cfg = load_config(a.config, check=False) if a.config else {}
        if a.ota_key:
            cfg["ota_key"] = a.ota_key
        r = flash(a.board, a.port, cfg, out=a.out, duration_s=a.duration or 0, firmware=a.firmware,
                  erase=a.erase, reset=not a.no_reset,
                  say=lambda s: print("  " + s, file=sys.stderr, flush=True))
    except (ConfigError, FlashError, DeployError, RuntimeError, OSError) as e:
        return err("flash: %s" % e)
    print("tally: %s on %s: %d files, %d written (%s B) in %.1f s, %d unchanged, %d stale removed; %s"
          % (a.board, a.port, r["files"], r["written"], "{:,}".format(r["bytes"]), r["seconds"],
             r["unchanged"], len(r["removed"]),
             "soft reset: main.py runs" if r["reset"] else
             "not reset (--no-reset): press EN/RST or Ctrl-D in its REPL to start main.py"
             if a.no_reset else "no soft reboot seen: press EN/RST to start main.py"))
    return 0


def add(sub):
    fl = sub.add_parser("flash", help="build the device bundle and put it on a board "
                        "(tally flash --board B --out DIR | --port PORT)",
                        description="Compile the device-side modules with mpy-cross (xtensawin for "
                        "the ESP32 boards) and into a ROMFS image (tally.romfs, executed in place from a ROM "
                        "partition), compile the TOML config into the JSON the device reads, "
                        "and write main.py. --board unix builds a bundle the MicroPython unix port "
                        "runs as is, on the emulated board. --port copies the bundle to a board "
                        "over USB (changed files only; our stale modules removed) and soft-resets "
                        "it; --firmware writes MicroPython itself first. Needs pip install "
                        "'tally[flash]' (mpremote, esptool).")
    fl.add_argument("--board", required=True, help="unix, esp32-devkitc or esp32-s3-devkitc")
    fl.add_argument("--out", metavar="DIR", help="build the bundle here")
    fl.add_argument("--config", metavar="FILE", help="tally.toml for the device (see docs/tally.example.toml)")
    fl.add_argument("--duration", type=int, help="unix: stop after this many seconds (0: run on)")
    fl.add_argument("--port", help="the board's serial port (/dev/ttyUSB0): build the bundle (in --out "
                    "DIR or a temporary one) and copy it there with mpremote, then soft-reset")
    fl.add_argument("--firmware", metavar="FILE", help="with --port: write this MicroPython .bin with "
                    "esptool first (ESP32 at 0x1000, ESP32-S3 at 0x0)")
    fl.add_argument("--erase", action="store_true", help="with --firmware: erase the whole flash first "
                    "(the board's files too)")
    fl.add_argument("--no-reset", action="store_true", help="with --port: leave the board in its REPL "
                    "(main.py not started)")
    fl.add_argument("--ota-key", metavar="FILE", help="the fleet's public release key (ota.pub from "
                    "tally ota keygen): the device then takes signed updates (docs/ota.md)")
    fl.add_argument("--freeze", action="store_true", help="build MicroPython firmware with the "
                    "board's modules frozen into --out instead (as tally firmware)")
    from agent.cli.firmware import add_args
    add_args(fl)
    fl.set_defaults(func=run)
