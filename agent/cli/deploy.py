"""`tally flash --port`: the bundle onto a board over its USB serial port
(CPython only; pip install 'tally[flash]').

--firmware writes MicroPython itself first, with esptool. The copy speaks
MicroPython's raw REPL through mpremote's SerialTransport (raw-paste mode,
flow controlled): one command lists what the board has under our
directories with the SHA-256 of each file (hashed on the board), only the
files that differ are written, 4 KiB of base64 a command, each beside the
old one until all are there (a copy cut short leaves the old bundle whole),
and our .mpy/.py files that are not in the bundle are removed, so an old
module never shadows a new one. Then a soft reset in the friendly REPL starts main.py.
Every failure is a DeployError: one line for the user."""
import ast
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time

from agent.cli.bundle import build

# board -> esptool's chip, where MicroPython's image goes, the chip id in its header
CHIPS = {"esp32-devkitc": ("esp32", 0x1000, 0), "esp32-s3-devkitc": ("esp32s3", 0x0, 9)}
CHIP_NAMES = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2",
              13: "ESP32-C6", 16: "ESP32-H2"}
PARTITION_TABLE = 0x8000         # in flash, after the bootloader
OURS = ("agent", "boards", "drivers", "hil")        # our directories on the board
CHUNK = 4096
STAGED = ".new"           # a file being copied, until the whole bundle is on the board
BANNER = b"raw REPL; CTRL-B to exit\r\n"
ENOSPC = 28

# On the board: each of our files with its size and SHA-256, then the free bytes.
INVENTORY = """\
import os, hashlib, binascii
def _see(p):
    if os.stat(p)[0] & 0x4000:
        for e in os.ilistdir(p):
            _see(p + '/' + e[0])
        return
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    print(repr((p, os.stat(p)[6], binascii.hexlify(h.digest()).decode())))
for p in %r:
    try:
        os.stat(p)
    except OSError:
        continue
    _see(p)
s = os.statvfs('/')
print(repr(('', s[1] * s[4], '')))
"""
# The new files replace the old ones (a FAT volume will not rename onto a file).
SWITCH = """\
import os
for a, b in %r:
    try:
        os.rename(a, b)
    except OSError:
        os.remove(b)
        os.rename(a, b)
"""
MKDIRS = """\
import os
for d in %r:
    try:
        os.mkdir(d)
    except OSError as e:
        if e.errno != 17:
            raise
"""


class DeployError(Exception):
    pass


def _size(n):
    return "{:,} B".format(n)


# -- MicroPython itself (esptool) ------------------------------------------------------------

def check_firmware(path, board):
    """The flash offset to write MicroPython's image at; DeployError unless
    the file is a whole MicroPython image (bootloader, partition table, app)
    for this board's chip. Nothing touches the board before this passes."""
    if board not in CHIPS:
        raise DeployError("--firmware: the %s board runs no firmware of ours (ESP32 boards: %s)"
                          % (board, ", ".join(sorted(CHIPS))))
    chip, offset, chip_id = CHIPS[board]
    try:
        with open(path, "rb") as f:
            head = f.read(PARTITION_TABLE + 2)
    except OSError as e:
        raise DeployError("--firmware %s: %s" % (path, e.strerror))
    at = None
    if head[:1] == b"\xe9":                      # MicroPython's download: written at the bootloader's offset
        at = 0
    elif offset and head[offset:offset + 1] == b"\xe9" and head[:offset] == b"\xff" * offset:
        at, offset = offset, 0                   # a merged image from 0x0 (esptool merge-bin)
    if at is None or len(head) < at + 16:
        raise DeployError("--firmware %s is not an ESP32 firmware image (no 0xE9 image header at "
                          "its start)" % path)
    image_chip = head[at + 12] | head[at + 13] << 8
    if image_chip != chip_id:
        raise DeployError("--firmware %s is an image for the %s; the %s is an %s" % (
            path, CHIP_NAMES.get(image_chip, "chip id %d" % image_chip), board, CHIP_NAMES[chip_id]))
    pt = PARTITION_TABLE - offset
    if head[pt:pt + 2] != b"\xaa\x50":
        raise DeployError("--firmware %s has no partition table at 0x%x: an app image, not "
                          "MicroPython's whole firmware (get the .bin from micropython.org/download)"
                          % (path, PARTITION_TABLE))
    return offset


def _esptool_cmd(name):
    try:
        from importlib.metadata import PackageNotFoundError, version
        major = int(version("esptool").split(".")[0])
    except (PackageNotFoundError, ValueError):
        raise DeployError("esptool is not installed: pip install 'tally[flash]'") from None
    return name if major >= 5 else name.replace("-", "_")


def _esptool(what, args, say):
    """Run esptool from this interpreter, its output passed on line by line;
    DeployError with its last error line if it fails."""
    p = subprocess.Popen([sys.executable, "-m", "esptool"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    lines = []
    buf = b""
    while True:
        chunk = p.stdout.read1(4096)
        buf += chunk
        *done, buf = buf.replace(b"\r", b"\n").split(b"\n")
        if not chunk:
            done.append(buf)
        for raw in done:
            s = raw.decode(errors="replace").strip()
            if s and (not lines or s != lines[-1]):
                lines.append(s)
                say("esptool: " + s)
        if not chunk:
            break
    if p.wait():
        errors = [s for s in lines if "error" in s.lower()] or lines or ["exit status %d" % p.returncode]
        msg = errors[-1]
        for prefix in ("ERROR:", "A fatal error occurred:"):
            msg = msg.split(prefix, 1)[-1].strip()
        if "Failed to connect" in msg:
            msg += " (is it the right port? hold the board's BOOT button while esptool connects)"
        raise DeployError("esptool %s failed: %s" % (what, msg))


def write_firmware(port, board, path, erase=False, say=None, baud=460800):
    say = say or (lambda s: None)
    offset = check_firmware(path, board)
    if not os.path.exists(port):
        raise DeployError(_why_not_open(port))
    base = ["--chip", CHIPS[board][0], "--port", port, "--baud", str(baud)]
    if erase:
        say("erasing the whole flash (the board's files too)")
        _esptool("erase-flash", base + [_esptool_cmd("erase-flash")], say)
    say("writing MicroPython %s at 0x%x" % (os.path.basename(path), offset))
    _esptool("write-flash", base + [_esptool_cmd("write-flash"), "-z", "0x%x" % offset, path], say)


# -- the raw REPL --------------------------------------------------------------------------

def _why_not_open(port):
    if not os.path.exists(port):
        return "no serial port %s (is the board plugged in? ls /dev/ttyUSB* /dev/ttyACM*)" % port
    import serial
    try:
        serial.Serial(port, exclusive=True).close()
    except serial.SerialException as e:
        if e.errno in (11, 16):              # EAGAIN from the lock, EBUSY
            return "%s is busy: another program has it open (a serial monitor, mpremote, esptool?)" % port
        if e.errno == 13:
            return ("permission denied on %s: add yourself to the dialout group "
                    "(sudo usermod -aG dialout $USER, then log in again)" % port)
        return "cannot open %s: %s" % (port, e)
    return "cannot open %s" % port


def connect(port, timeout=5.0, boot_wait=0.0):
    """mpremote's SerialTransport on port, in the raw REPL after a soft reset
    (a clean heap, main.py interrupted). boot_wait: keep trying that long
    (a board just flashed boots and makes its filesystem first)."""
    try:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
    except ImportError:
        raise DeployError("mpremote is not installed: pip install 'tally[flash]'") from None
    deadline = time.monotonic() + boot_wait
    while True:
        try:
            # a read timeout: a pty is read byte by byte, and a silent port must not hang
            tr = SerialTransport(port, baudrate=115200, timeout=1)
            break
        except TransportError:
            if time.monotonic() >= deadline:
                raise DeployError(_why_not_open(port)) from None
            time.sleep(0.5)
    try:
        _enter_raw_repl(tr, port, timeout, deadline)
    except BaseException:
        _close(tr)
        raise
    return tr


def _enter_raw_repl(tr, port, timeout, deadline):
    # mpremote's enter_raw_repl prints what it got to stdout on failure: ours says one line
    s = tr.serial
    while True:
        s.write(b"\r\x03")                       # Ctrl-C: interrupt main.py
        time.sleep(0.05)
        s.reset_input_buffer()
        s.write(b"\r\x01")                       # Ctrl-A: the raw REPL
        data = tr.read_until(1, BANNER + b">", timeout=timeout, timeout_overall=timeout)
        if data.endswith(BANNER + b">"):
            break
        if time.monotonic() < deadline:
            continue
        got = "it sent nothing for %g s" % timeout if not data else "it sent %r" % data[-40:]
        raise DeployError("no MicroPython raw REPL on %s: is MicroPython flashed? use --firmware "
                          "FILE (%s)" % (port, got))
    s.write(b"\x04")                             # Ctrl-D: soft reset, staying in the raw REPL
    wait = max(timeout, 10)
    for want in (b"soft reboot\r\n", BANNER):
        if not tr.read_until(1, want, timeout=wait, timeout_overall=wait).endswith(want):
            raise DeployError("the board on %s did not come back from a soft reset" % port)
    tr.in_raw_repl = True


def _close(tr):
    try:
        tr.close()
    except OSError:
        pass


def _exec(tr, code, what):
    """tr.exec; a failure on the board is a DeployError naming what we did."""
    from mpremote.transport import TransportExecError
    try:
        return tr.exec(code)
    except TransportExecError as e:
        err = e.error_output.strip().splitlines() or ["?"]
        raise DeployError("%s: %s" % (what, err[-1])) from None


# -- the copy --------------------------------------------------------------------------------

def bundle_files(bundle):
    """{path on the board: bytes} for every file of the bundle directory but
    the ROMFS image: that goes to a ROM partition (mpremote romfs deploy),
    not to the filesystem, where it would only take space (docs/firmware.md)."""
    from agent.cli.bundle import ROMFS
    out = {}
    for d, dirs, files in os.walk(bundle):
        dirs.sort()
        for f in sorted(files):
            if d == bundle and f == ROMFS:
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, bundle).replace(os.sep, "/")] = fh.read()
    return out


def board_files(tr, top=()):
    """({path: (size, sha256 hex)} of the files on the board under our
    directories and top (paths), the free bytes)."""
    out = _exec(tr, INVENTORY % (OURS + tuple(top),), "listing the board's files")
    have = {}
    free = None
    for line in out.decode(errors="replace").splitlines():
        try:
            p, size, digest = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, TypeError):
            continue
        if p:
            have[p] = (size, digest)
        else:
            free = size
    return have, free


def _write(tr, path, data):
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    for k, c in enumerate(chunks):
        code = "f=open(%r,'wb')\n" % path if k == 0 else ""
        if c:
            code += "f.write(a2b_base64(%r))\n" % base64.b64encode(c).decode()
        if k == len(chunks) - 1:
            code += "f.close()\n"
        _exec(tr, code, "writing %s on the board" % path)


def deploy(bundle, port, say=None, reset=True, timeout=5.0, boot_wait=0.0):
    """Copy the bundle directory to the board on port. Returns a summary:
    {"files", "written", "bytes", "unchanged", "removed", "seconds", "reset"}."""
    say = say or (lambda s: None)
    t0 = time.monotonic()
    files = bundle_files(bundle)
    tr = connect(port, timeout, boot_wait)
    try:
        return _deploy(tr, port, files, say, reset, t0)
    except OSError as e:                         # the port went away (unplugged, reset)
        raise DeployError("lost the board on %s: %s" % (port, e)) from None
    finally:
        _close(tr)


def _deploy(tr, port, files, say, reset, t0):
    from mpremote.transport import TransportError
    try:
        top = sorted({p.split("/")[0] for p in files} - set(OURS))
        have, free = board_files(tr, top + [t + STAGED for t in top])
        todo = [p for p, data in files.items()
                if have.get(p, (None, None))[1] != hashlib.sha256(data).hexdigest()]
        # ours and not in the bundle, and what an interrupted deploy left behind
        stale = sorted(p for p in have if p not in files and (p.endswith(STAGED) or
                       p.split("/")[0] in OURS and p.endswith((".mpy", ".py"))))
        # the new files are staged next to the old ones: both take space until the switch
        need = sum(len(files[p]) for p in todo) - sum(have[p][0] for p in stale)
        if free is not None and need > free:
            raise DeployError("the board's filesystem has %s free, the bundle needs %s more: "
                              "remove old files (mpremote fs rm) or erase the flash with "
                              "--firmware FILE --erase" % (_size(free), _size(need)))
        say("%s: %d of %d files to write, %d unchanged, %d stale" % (
            port, len(todo), len(files), len(files) - len(todo), len(stale)))
        if stale:
            _exec(tr, "import os\nfor p in %r:\n os.remove(p)\n" % (stale,), "removing stale files")
            for p in stale:
                say("removed %s (not in the bundle)" % p)
        dirs = sorted({"/".join(p.split("/")[:i]) for p in todo for i in range(1, p.count("/") + 1)})
        if dirs:
            _exec(tr, MKDIRS % (dirs,), "making directories on the board")
        if todo:
            _exec(tr, "from binascii import a2b_base64", "the board's binascii")
        # Every changed file is written beside the old one first; only when
        # all are there do they replace the old ones, in one command. A copy
        # cut short (a cable pulled, a full filesystem) leaves the old bundle
        # whole, so the board still boots and meters.
        for i, p in enumerate(todo, 1):
            try:
                _write(tr, p + STAGED, files[p])
            except DeployError as e:
                # littlefs full: "OSError: 28" on an ESP32 (no ENOSPC in its errno table)
                _unstage(tr, [q + STAGED for q in todo[:i]],
                         p, re.search(r"OSError: (\[Errno )?%d\b" % ENOSPC, str(e)))
                raise
            say("[%d/%d] %s  %s" % (i, len(todo), p, _size(len(files[p]))))
        if todo:
            # modules first, main.py and the config last
            order = sorted(todo, key=lambda q: ("/" not in q, q))
            _exec(tr, SWITCH % ([(q + STAGED, q) for q in order],), "switching to the new files")
        booted = False
        tr.exit_raw_repl()                       # Ctrl-B: the friendly REPL
        if reset:
            tr.serial.write(b"\x04")             # Ctrl-D there: soft reset, main.py starts
            booted = tr.read_until(1, b"soft reboot\r\n", timeout=5, timeout_overall=5).endswith(
                b"soft reboot\r\n")
    except TransportError as e:
        raise DeployError("the board on %s stopped answering: %s" % (port, e)) from None
    return {"files": len(files), "written": len(todo), "bytes": sum(len(files[p]) for p in todo),
            "unchanged": len(files) - len(todo), "removed": stale,
            "seconds": time.monotonic() - t0, "reset": booted}


def _unstage(tr, staged, path, full):
    """After a failed write: the staged files removed (the old bundle stays as
    it was), and if the filesystem is full, how full."""
    from mpremote.transport import TransportError
    try:
        tr.exec("try:\n f.close()\nexcept Exception:\n pass\nimport os\nfor p in %r:\n try:\n"
                "  os.remove(p)\n except OSError:\n  pass" % (staged,))
        if not full:
            return
        s = ast.literal_eval(tr.exec("import os\nprint(tuple(os.statvfs('/')))").decode().strip())
    except (TransportError, ValueError, SyntaxError):
        return
    free = s[1] * s[4]
    raise DeployError("writing %s on the board: its filesystem is full (%s free with the new "
                      "files removed; the old bundle is untouched): remove old files or erase "
                      "the flash with --firmware FILE --erase" % (path, _size(free)))


# -- tally flash --port ----------------------------------------------------------------------

def flash(board, port, cfg, out=None, duration_s=0, firmware=None, erase=False, reset=True,
          say=None, timeout=5.0):
    """Build the bundle (into out, or a temporary directory), write
    MicroPython first if firmware, then copy the bundle to the board."""
    say = say or (lambda s: None)
    if firmware:
        check_firmware(firmware, board)          # before anything touches the board
    if not os.path.exists(port):
        raise DeployError(_why_not_open(port))
    with tempfile.TemporaryDirectory(prefix="tally-bundle-") as tmp:
        out = out or os.path.join(tmp, "bundle")
        built = build(out, board, cfg, duration_s=duration_s, progress=say)
        if firmware:
            write_firmware(port, board, firmware, erase=erase, say=say)
            say("waiting for MicroPython to boot on %s" % port)
        r = deploy(out, port, say=say, reset=reset, timeout=timeout,
                   boot_wait=20.0 if firmware else 0.0)
    r["mpy_bytes"] = built["mpy_bytes"]
    return r
