"""`tally firmware` (also `tally flash --freeze`): MicroPython firmware with
a board's device modules frozen into it (hil/harness/freeze.py builds it).
Prints the binary, its size and the frozen modules."""
import json
import sys

from agent.cli.common import err


def run(a):
    from hil.harness import freeze
    target = a.target or ("esp32" if a.board in freeze.ESP32_BOARDS else "unix32")
    if not a.out:
        return err("firmware: give --out PATH (the firmware binary, or a directory for it)")
    try:
        r = freeze.build(a.board, target, src=a.micropython_src, out=a.out,
                         say=lambda s: print("  " + s, file=sys.stderr, flush=True))
    except freeze.FreezeError as e:
        return err("firmware: %s" % e)
    if getattr(a, "json", False):
        print(json.dumps({k: r[k] for k in ("binary", "bytes", "target", "board", "modules", "cached")}))
        return 0
    print("tally: %s firmware for %s: %s, %s B, %d modules frozen%s" % (
        target, a.board, r["binary"], "{:,}".format(r["bytes"]), len(r["modules"]),
        " (cached)" if r["cached"] else ""))
    print("  " + " ".join(r["modules"]))
    if target == "unix32":
        print("  run it: MICROPYPATH=.frozen %s -X heapsize=64K -c 'import agent.agent'" % r["binary"])
    return 0


def add_args(p, board_required=True):
    """The options `tally firmware` and `tally flash --freeze` share."""
    p.add_argument("--target", metavar="unix32|esp32",
                   help="unix32: the MicroPython unix port built 32-bit (gcc-multilib); esp32: "
                   "ports/esp32 with ESP-IDF's idf.py (IDF_PATH set). Default: esp32 for the ESP32 "
                   "boards, unix32 for --board unix")
    p.add_argument("--micropython-src", metavar="DIR", help="a MicroPython source tree or its "
                   ".tar.gz (default: $MICROPYTHON_SRC, else the vendored micropython-1.28.0.tar.gz)")


def add(sub):
    p = sub.add_parser("firmware", help="build MicroPython firmware with a board's modules frozen "
                       "(tally firmware --board B --out PATH)",
                       description="Write a MicroPython manifest freezing the board's device modules "
                       "(the files its bundle carries) and build the firmware: the 32-bit unix port "
                       "(--target unix32, runs the agent on this machine in an ESP32-sized heap) or an "
                       "ESP32 image with ESP-IDF (--target esp32). See docs/firmware.md.")
    p.add_argument("--board", required=True, help="unix (emulated board, for unix32), esp32-devkitc "
                   "or esp32-s3-devkitc")
    p.add_argument("--out", metavar="PATH", help="write the firmware binary here (a file, or a directory)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_args(p)
    p.set_defaults(func=run)
