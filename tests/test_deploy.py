"""`tally flash --port`: the bundle copied to a board over its serial port
through mpremote's raw REPL, against hil/harness/fakeboard.py (a pseudo-terminal
speaking the REPL protocol, MicroPython's unix port as its CPU, a real
directory as its filesystem); --firmware checked before the board is
touched and esptool's own failure passed on; every error one line."""
import os
import re
import subprocess
import time

import pytest

from agent.cli import main
from agent.cli.deploy import DeployError, deploy
from hil.harness.fakeboard import FakeBoard
from conftest import MP

pytestmark = [pytest.mark.micropython, pytest.mark.skipif(not MP, reason="micropython unix port not installed")]


def tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def flashed(bundle):
    """What goes to the board's filesystem: the bundle but its ROMFS image
    (for a ROM partition, not the filesystem)."""
    files = tree(bundle)
    assert files.pop("tally.romfs")[:3] == b"\xd2\xcd\x31"
    return files


def small_bundle(path, files):
    for rel, data in files.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return str(path)


def one_error_line(err):
    """The failure is one line: the last, and no traceback."""
    lines = [s for s in err.splitlines() if s.startswith("tally:")]
    assert "Traceback" not in err and len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


def test_flash_port_copies_the_bundle_then_only_what_changed_and_it_runs_from_the_board(
        tmp_path, capsys):
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "fake-1"\ninterval_s = 1\nsample_ms = 100\n')
    out, board = tmp_path / "bundle", tmp_path / "board"
    args = ["flash", "--board", "unix", "--config", str(cfg), "--duration", "3", "--out", str(out)]
    with FakeBoard(root=str(board)) as fb:
        assert main(args + ["--port", fb.port]) == 0
        o = capsys.readouterr()
        assert tree(board) == flashed(out)                       # byte for byte
        n = len(flashed(out))
        assert re.search(r"^  \[\d+/%d\] agent/log\.mpy  [\d,]+ B$" % n, o.err, re.M), o.err
        assert "%d files, %d written" % (n, n) in o.out and "soft reset: main.py runs" in o.out
        assert fb.main_starts == 1 and fb.mode == "friendly"

        # left by an older bundle: our stale modules go, anything else stays
        (board / "agent" / "gone.mpy").write_bytes(b"M\x06")
        (board / "drivers" / "gone.py").write_text("X = 1\n")
        (board / "agent" / "data.bin").write_bytes(b"keep")
        (board / "notes.txt").write_text("keep")
        (board / "agent" / "log.mpy").write_bytes(b"damaged")
        assert main(args + ["--port", fb.port, "--no-reset"]) == 0
        o = capsys.readouterr()
        assert "removed agent/gone.mpy (not in the bundle)" in o.err
        assert "removed drivers/gone.py (not in the bundle)" in o.err
        assert re.search(r"^  \[1/1\] agent/log\.mpy  ", o.err, re.M), o.err
        assert ", 1 written" in o.out and "%d unchanged, 2 stale removed" % (n - 1) in o.out
        assert "not reset (--no-reset)" in o.out and fb.main_starts == 1
        left = tree(board)
        assert left.pop(os.path.join("agent", "data.bin")) == b"keep" and left.pop("notes.txt") == b"keep"
        assert left == flashed(out)
        assert fb.error is None

    # the board's filesystem is what a board boots from: run it there
    r = subprocess.run([MP, "-X", "heapsize=256K", "main.py"], cwd=str(board), capture_output=True,
                       text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tally: device fake-1 on unix" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("tally: stopped;"), r.stdout


def test_a_running_main_py_is_interrupted_and_the_new_one_started(tmp_path):
    board = tmp_path / "board"
    board.mkdir()
    (board / "main.py").write_text("import time\nwhile True:\n    time.sleep(0.05)\n")
    bundle = small_bundle(tmp_path / "b", {"main.py": b"print('new main')\n",
                                          "agent/x.mpy": bytes(range(256)) * 40})
    with FakeBoard(root=str(board), run_main=True) as fb:
        time.sleep(0.3)                          # the old main.py is running
        lines = []
        r = deploy(bundle, fb.port, say=lines.append)
        assert r["written"] == 2 and r["reset"]
        assert tree(board) == tree(bundle)
        assert fb.main_starts == 2 and fb.soft_resets == 2 and fb.error is None
        assert "[2/2] agent/x.mpy  10,240 B" in lines


@pytest.mark.parametrize("limit,files,msg", [
    # more bytes than the filesystem has: refused before anything is written
    (16384, {"main.py": b"x" * 20000},
     "the board's filesystem has 16,384 B free, the bundle needs 20,000 B more"),
    # the bytes fit but not the blocks they take (4 KiB each, as littlefs): the write fails
    (8192, {"agent/%d.mpy" % i: b"x" * 100 for i in range(5)},
     "writing agent/2.mpy on the board: its filesystem is full (8,192 B free with the new files "
     "removed; the old bundle is untouched)"),
])
def test_a_full_board_is_named(tmp_path, limit, files, msg):
    bundle = small_bundle(tmp_path / "b", files)
    with FakeBoard(fs_limit=limit) as fb:
        with pytest.raises(DeployError) as e:
            deploy(bundle, fb.port)
        assert msg in str(e.value)
        assert tree(fb.root) == {}                   # nothing staged is left behind


def test_a_copy_cut_short_leaves_the_old_bundle_whole_and_its_leftovers_go_next_time(tmp_path):
    old = {"agent/%d.mpy" % i: b"old%d" % i for i in range(3)}
    old["main.py"] = b"import agent\n"
    new = {k: v.replace(b"old", b"new") for k, v in old.items()}
    with FakeBoard(fs_limit=6 * 4096) as fb:       # 6 blocks: the old bundle takes 4
        deploy(small_bundle(tmp_path / "old", old), fb.port, reset=False)
        assert tree(fb.root) == old
        # the new files are staged beside the old ones: the third does not fit
        with pytest.raises(DeployError) as e:
            deploy(small_bundle(tmp_path / "new", new), fb.port, reset=False)
        assert "writing agent/2.mpy on the board: its filesystem is full" in str(e.value)
        assert tree(fb.root) == old                  # the board still boots the old bundle
        # what a cut cable leaves (staged files) is cleared by the next deploy
        with open(os.path.join(fb.root, "main.py.new"), "wb") as f:
            f.write(b"half")
        with open(os.path.join(fb.root, "agent", "1.mpy.new"), "wb") as f:
            f.write(b"ha")
        r = deploy(small_bundle(tmp_path / "old2", old), fb.port, reset=False)
        assert sorted(r["removed"]) == ["agent/1.mpy.new", "main.py.new"]
        assert tree(fb.root) == old


def test_a_busy_port_is_named(tmp_path):
    import serial
    bundle = small_bundle(tmp_path / "b", {"main.py": b"\n"})
    with FakeBoard() as fb:
        with serial.Serial(fb.port, exclusive=True):
            with pytest.raises(DeployError, match="is busy: another program has it open"):
                deploy(bundle, fb.port)


def test_no_port_and_a_silent_port_are_one_line_and_quick(tmp_path, capsys):
    assert main(["flash", "--board", "unix", "--port", str(tmp_path / "ttyUSB9")]) == 2
    assert "no serial port %s" % (tmp_path / "ttyUSB9") in one_error_line(capsys.readouterr().err)
    master, slave = os.openpty()                 # a port nobody answers on
    port = os.ttyname(slave)
    try:
        t = time.monotonic()
        assert main(["flash", "--board", "unix", "--port", port]) == 2
        took = time.monotonic() - t
    finally:
        os.close(master)
        os.close(slave)
    line = one_error_line(capsys.readouterr().err)
    assert ("no MicroPython raw REPL on %s: is MicroPython flashed? use --firmware FILE"
            % port) in line
    assert took < 30                             # the build, then 5 s of silence: no hang


def image(chip_id, size=0x9000, offset=0):
    """Just enough of an ESP32 firmware image: the 0xE9 header with its chip
    id, the partition table where the bootloader's offset puts it."""
    b = bytearray(b"\xff" * size)
    b[0:16] = bytes([0xE9, 3, 2, 0x20, 0, 0, 0, 0, 0xEE, 0, 0, 0, chip_id, 0, 0, 0])
    if size > 0x8000 - offset:
        b[0x8000 - offset:0x8000 - offset + 2] = b"\xaa\x50"
    return bytes(b)


@pytest.mark.parametrize("board,data,msg", [
    ("esp32-devkitc", None, "No such file or directory"),
    ("esp32-devkitc", b"hello, not firmware", "is not an ESP32 firmware image (no 0xE9 image header"),
    ("esp32-devkitc", image(9, offset=0), "is an image for the ESP32-S3; the esp32-devkitc is an ESP32"),
    ("esp32-s3-devkitc", image(9, size=0x200, offset=0), "no partition table at 0x8000"),
    ("unix", image(0, offset=0x1000), "the unix board runs no firmware of ours"),
])
def test_firmware_is_checked_before_the_board_is_touched(tmp_path, capsys, board, data, msg):
    fw = tmp_path / "fw.bin"
    if data is not None:
        fw.write_bytes(data)
    with FakeBoard() as fb:
        assert main(["flash", "--board", board, "--port", fb.port, "--firmware", str(fw)]) == 2
        assert msg in one_error_line(capsys.readouterr().err)
        assert fb.execs == 0 and fb.soft_resets == 0 and os.listdir(fb.root) == []


def test_esptool_failing_to_connect_is_one_line(tmp_path, capsys, monkeypatch):
    fw = tmp_path / "ESP32_GENERIC.bin"
    fw.write_bytes(image(0, offset=0x1000))
    monkeypatch.setenv("ESPTOOL_CONNECT_ATTEMPTS", "1")      # esptool's own knob: fail fast
    with FakeBoard() as fb:                      # MicroPython answering, not the ROM bootloader
        assert main(["flash", "--board", "esp32-devkitc", "--port", fb.port, "--firmware", str(fw)]) == 2
        err = capsys.readouterr().err
        assert "esptool: " in err                # its progress passed on
        assert "esptool write-flash failed: Failed to connect to ESP32" in one_error_line(err)
        assert os.listdir(fb.root) == []
