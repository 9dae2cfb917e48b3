"""Every board's bundle, as hil/harness/mpbuild.py draws it by folder: (a)
every module of it imports under the MicroPython unix port (an ESP32 bundle is
compiled from the same module list for this machine's arch, with the emulated
SoC's machine/network/esp32 standing in for the board's firmware), and (b) it
holds nothing its board does not need: no emulation and no other board's file
on an ESP32, no harness or benchmark anywhere. A CPython-only import planted
in a device folder (a temporary copy of the tree) fails with the module and
the import named."""
import ast
import os
import shutil
import subprocess

import pytest

from agent.cli import bundle as cli_flash
from hil.harness import mpbuild

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP = mpbuild.tool("micropython")
pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
BOARDS = sorted(mpbuild.BUNDLES)
ESP32 = [b for b in sorted(mpbuild.BUNDLES) if mpbuild.BUNDLES[b][1]]
NEVER = ("agent/collector/", "agent/cli", "hil/harness/", "hil/bench/")

# imports every module it is given; one line per module that fails
IMPORT_ALL = """
import sys
for name in %r:
    try:
        __import__(name)
    except BaseException as e:
        print("FAIL", name, "%%s: %%s" %% (type(e).__name__, e))
    sys.modules.pop(name, None)
print("DONE")
"""


def _module(rel):
    name = rel[:-3].replace("/", ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def _imports(path):
    """Top-level names a source file imports (at any depth in it)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out.add(n.module.split(".")[0])
    return out


def import_failures(board, root, out):
    """Build board's module list from root for this arch into out and import
    each module under MicroPython. Returns one line per failing module; a
    module that itself imports what the port lacks is named with that import."""
    mpbuild.build(out, root=root, board=board)
    rels = list(mpbuild.device_sources(root, board))
    # the firmware's machine/network/esp32 come first (hil/soc/ puts them at
    # the front): the unix bundle's own copy; for an ESP32 bundle, hil/soc/
    # alone beside it, so the rest of hil/ stays out of reach
    if board in ESP32:
        fw = os.path.join(out + "-firmware", "hil")
        shutil.copytree(os.path.join(root, "hil", "soc"), os.path.join(fw, "soc"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        open(os.path.join(fw, "__init__.py"), "w").close()
        path = [os.path.join(fw, "soc"), out, os.path.dirname(fw)]
    else:
        path = [os.path.join(out, "hil", "soc"), out]
    r = subprocess.run([MP, "-X", "heapsize=4M", "-c", IMPORT_ALL % ([_module(p) for p in rels],)],
                       cwd=out, env=dict(os.environ, MICROPYPATH=":".join(path)),
                       capture_output=True, text=True, timeout=120)
    assert "DONE" in r.stdout, r.stdout + r.stderr
    lines = []
    for line in r.stdout.splitlines():
        if not line.startswith("FAIL "):
            continue
        _, name, err = line.split(" ", 2)
        rel = next(p for p in rels if _module(p) == name)
        missing = err.split("'")[1] if "no module named '" in err else None
        if missing and missing.split(".")[0] in _imports(os.path.join(root, rel)):
            lines.append("%s: imports %s, which MicroPython does not have (%s)" % (rel, missing, err))
        else:
            lines.append("%s: %s" % (rel, err))
    # the module with the import first, then those that fail through it
    return sorted(lines, key=lambda s: "imports " not in s)


@pytest.mark.parametrize("board", BOARDS)
def test_every_module_of_the_bundle_imports_under_micropython(board, tmp_path):
    failures = import_failures(board, ROOT, str(tmp_path))
    assert not failures, "%s bundle:\n  %s" % (board, "\n  ".join(failures))


@pytest.mark.parametrize("board", sorted(mpbuild.BUNDLES))
def test_the_flashed_bundle_holds_only_what_its_board_needs(board, tmp_path):
    cli_flash.build(str(tmp_path), board, {})
    held = sorted(os.path.relpath(os.path.join(d, f), str(tmp_path)).replace(os.sep, "/")
                  for d, _, fs in os.walk(str(tmp_path)) for f in fs if f.endswith(".mpy"))
    own = mpbuild.BUNDLES[board][0]
    assert all("boards/%s.mpy" % b in held for b in own) and "agent/device_main.mpy" in held
    for rel in held:
        assert not rel.startswith(NEVER), "%s bundle holds %s (host only)" % (board, rel)
        if rel.startswith("boards/"):
            name = rel[len("boards/"):-4]
            assert name in ("__init__", "check", "install", "sensors", "tags") + own, \
                "%s bundle holds %s, another board's file" % (board, rel)
        if board in ESP32:
            assert not rel.startswith("hil/"), "%s bundle holds %s (emulation)" % (board, rel)
            assert rel not in ("agent/port/cpython.mpy", "agent/port/mqtt_paho.mpy",
                               "agent/port/linux_bus.mpy"), "%s bundle holds %s" % (board, rel)
    if board not in ESP32:      # the unix port runs the emulated board on the twins
        assert "hil/twins/__init__.mpy" in held and "hil/nor.mpy" in held
        assert "boards/rpi4.mpy" not in held      # a Pi runs CPython


def _copy_tree(dst):
    for pkg in ("agent", "drivers", "boards", "hil"):
        shutil.copytree(os.path.join(ROOT, pkg), os.path.join(dst, pkg),
                        ignore=shutil.ignore_patterns("__pycache__"))


@pytest.mark.parametrize("plant,missing", [
    ("agent/planted.py", "sqlite3"),          # a new device module
    ("agent/meter.py", "threading"),          # an import added to one the others use
])
def test_a_cpython_only_import_in_a_device_folder_fails_naming_module_and_import(tmp_path, plant, missing):
    tree = str(tmp_path / "tree")
    _copy_tree(tree)
    with open(os.path.join(tree, plant), "a") as f:
        f.write("\nimport %s\n" % missing)
    failures = import_failures("esp32-devkitc", tree, str(tmp_path / "out"))
    assert failures, "the planted import of %s in %s was not caught" % (missing, plant)
    assert failures[0].startswith("%s: imports %s" % (plant, missing)), failures
    assert ("'%s'" % missing) in failures[0]
