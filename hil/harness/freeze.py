"""Build MicroPython firmware with a board's device modules frozen into it
(CPython only; `tally firmware` and `tally flash --freeze` call build()).

Frozen modules are compiled into the firmware image: their bytecode and
constants stay in flash (in the binary, on the unix port) and only what
cannot (module dicts, function objects) goes on the heap, as on a
production ESP32. What is frozen is what the board's bundle carries, chosen
by folder (hil/harness/mpbuild.py's device_sources()).

Targets:
  unix32  the MicroPython unix port built 32-bit (-m32, static), from a
          source tree or the vendored micropython-1.28.0.tar.gz: an ESP32's
          object sizes and GC blocks on this machine. Needs gcc-multilib.
  esp32   ports/esp32 of a full MicroPython checkout, built with ESP-IDF's
          idf.py (IDF_PATH set, its export.sh sourced).

A source given as a .tar.gz is extracted once into the cache directory
(TALLY_CACHE, else ~/.cache/tally) keyed by the tarball's SHA-256, and
built there; a firmware whose source, manifest and frozen files are all
unchanged is taken from the cache without running make."""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

from hil.harness import mpbuild

ROOT = mpbuild.ROOT
TARGETS = ("unix32", "esp32")
# board -> MicroPython's board for ports/esp32
ESP32_BOARDS = {"esp32-devkitc": "ESP32_GENERIC", "esp32-s3-devkitc": "ESP32_GENERIC_S3"}
# the unix port without the parts whose sources are submodules the vendored
# tarball lacks (libffi, mbedtls, berkeley-db)
UNIX_OPTS = ("VARIANT=standard", "BUILD=build-32", "MICROPY_PY_FFI=0", "MICROPY_PY_SSL=0",
             "MICROPY_PY_BTREE=0", "CFLAGS_EXTRA=-m32", "LDFLAGS_EXTRA=-m32 -static")


# what the 32-bit day runs besides the unix bundle (tests/test_unix32.py and
# `tally bench footprint` freeze the same set, so they share one cached build)
DAY_EXTRA = (os.path.join(ROOT, "tests", "mp", "agent_sync_mp.py"),
             os.path.join(ROOT, "hil", "bench", "footprint_mp.py"))


class FreezeError(Exception):
    """A firmware that cannot be built: one line saying why and what to do."""


def cache_dir():
    return os.environ.get("TALLY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tally")


def vendored_tarball(root=ROOT):
    """The MicroPython source tarball kept beside the checkout (../shared/vendor/
    of the repository or of its worktree folder), or None."""
    for up in ("..", os.path.join("..", "..")):
        d = os.path.normpath(os.path.join(root, up, "shared", "vendor"))
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if f.startswith("micropython-") and f.endswith(".tar.gz"):
                    return os.path.join(d, f)
    return None


def default_source(root=ROOT):
    """MICROPYTHON_SRC if set, else the vendored tarball, else None."""
    return os.environ.get("MICROPYTHON_SRC") or vendored_tarball(root)


def multilib():
    """Why a 32-bit program cannot be linked here, or None when it can."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if not shutil.which("make"):
        return "make not found (apt-get install make gcc-multilib)"
    if not cc:
        return "no C compiler (apt-get install gcc-multilib)"
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "t.c")
        with open(c, "w") as f:
            f.write("#include <stdio.h>\nint main(void){return 0;}\n")
        r = subprocess.run([cc, "-m32", "-static", c, "-o", os.path.join(d, "t")],
                           capture_output=True, text=True)
    if r.returncode:
        return "gcc cannot build 32-bit programs (apt-get install gcc-multilib)"
    return None


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def frozen_files(board, extra=(), root=ROOT):
    """[(absolute source, name as frozen)]: the board's device modules
    (agent/log.py freezes as the module agent.log), then each extra file at
    the top level."""
    files = [(os.path.join(root, rel), rel) for rel in mpbuild.device_sources(root, board)]
    files += [(os.path.abspath(p), os.path.basename(p)) for p in extra]
    return files


def manifest(board, target="unix32", extra=(), root=ROOT):
    """The text of a MicroPython manifest freezing the board's device modules
    (and extra files at the top level). For esp32 it first includes the
    port's own manifest, whose _boot.py mounts the filesystem."""
    lines = ["# written by tally firmware: board %s, target %s" % (board, target)]
    if target == "esp32":
        lines.append('include("$(PORT_DIR)/boards/manifest.py")')
    for src, name in frozen_files(board, extra, root):
        base = src[:-len(name)].rstrip("/") or "/"
        lines.append("module(%r, base_path=%r)" % (name, base))
    return "\n".join(lines) + "\n"


def modules(board, extra=(), root=ROOT):
    """The dotted names of the modules frozen for board."""
    out = []
    for _, name in frozen_files(board, extra, root):
        n = name[:-3].replace("/", ".")
        out.append(n[:-len(".__init__")] if n.endswith(".__init__") else n)
    return out


def _locked(path):
    """An exclusive lock on path (a file), held until the returned file is closed:
    two test sessions or helpers building in one cache take turns."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def source_tree(src, say=None):
    """(a MicroPython source tree, its identity for the cache key) from src:
    a directory (used in place) or a .tar.gz (extracted into the cache once)."""
    say = say or (lambda s: None)
    if not src:
        raise FreezeError("no MicroPython source: give --micropython-src DIR (a checkout or the "
                          "micropython-1.28.0.tar.gz) or set MICROPYTHON_SRC")
    if os.path.isdir(src):
        if not os.path.isdir(os.path.join(src, "py")) or not os.path.isdir(os.path.join(src, "ports")):
            raise FreezeError("%s is not a MicroPython source tree (no py/ and ports/ in it)" % src)
        return os.path.abspath(src), "dir:" + os.path.abspath(src)
    if not os.path.isfile(src):
        raise FreezeError("no MicroPython source at %s" % src)
    if not (src.endswith(".tar.gz") or src.endswith(".tgz")):
        raise FreezeError("%s: give a MicroPython source directory or a .tar.gz of one" % src)
    digest = _sha256(src)
    dest = os.path.join(cache_dir(), "micropython", digest[:16])
    with _locked(dest + ".lock"):
        done = os.path.join(dest, ".extracted")
        if not os.path.exists(done):
            say("extracting %s into %s" % (os.path.basename(src), dest))
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            try:
                with tarfile.open(src) as t:
                    t.extractall(dest, filter="data")
            except (tarfile.TarError, OSError) as e:
                raise FreezeError("cannot extract %s: %s" % (src, e))
            open(done, "w").close()
    tops = [d for d in sorted(os.listdir(dest)) if os.path.isdir(os.path.join(dest, d))]
    if len(tops) != 1 or not os.path.isdir(os.path.join(dest, tops[0], "py")):
        raise FreezeError("%s does not hold one MicroPython source tree" % src)
    return os.path.join(dest, tops[0]), "tar:" + digest


def _run(cmd, cwd, what, env=None, log=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if log:
        with open(log, "a") as f:
            f.write("$ %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    if r.returncode:
        tail = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()][-3:]
        raise FreezeError("%s failed: %s%s" % (what, " | ".join(tail),
                                                "; full log in %s" % log if log else ""))
    return r


def _key(identity, target, text, files):
    h = hashlib.sha256(("%s\n%s\n%s\n%s\n" % (identity, target, " ".join(UNIX_OPTS), text)).encode())
    for src, _ in files:
        with open(src, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def build(board, target="unix32", src=None, out=None, extra=(), say=None, root=ROOT):
    """Build the firmware; returns {"binary", "bytes", "modules", "manifest",
    "target", "board", "cached"}. out: where to copy the binary (a file, or a
    directory to put it in); without it the binary stays in the build or cache."""
    say = say or (lambda s: None)
    if target not in TARGETS:
        raise FreezeError("unknown target %r (known: %s)" % (target, ", ".join(TARGETS)))
    if board not in mpbuild.BUNDLES:
        raise FreezeError("no bundle for board %r (known: %s)" % (board, ", ".join(sorted(mpbuild.BUNDLES))))
    if target == "esp32" and board not in ESP32_BOARDS:
        raise FreezeError("target esp32 needs an ESP32 board (%s), not %r" % (", ".join(sorted(ESP32_BOARDS)), board))
    if target == "esp32" and not os.environ.get("IDF_PATH"):
        raise FreezeError("target esp32 needs ESP-IDF: IDF_PATH is not set (install ESP-IDF and "
                          "source its export.sh; docs/firmware.md)")
    if target == "unix32":
        why = multilib()
        if why:
            raise FreezeError(why)
    tree, identity = source_tree(src or default_source(root), say)
    text = manifest(board, target, extra, root)
    files = frozen_files(board, extra, root)
    if target == "unix32":
        binary, cached = _build_unix32(tree, identity, text, files, say)
    else:
        binary, cached = _build_esp32(tree, board, text, say)
    if out:
        if os.path.isdir(out) or out.endswith(os.sep):
            dest = os.path.join(out, os.path.basename(binary))
        else:
            dest = out
        try:
            os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
            shutil.copy2(binary, dest)
        except OSError as e:
            raise FreezeError("cannot write %s: %s" % (dest, e.strerror or e))
        binary = dest
    return {"binary": binary, "bytes": os.path.getsize(binary), "modules": modules(board, extra, root),
            "manifest": text, "target": target, "board": board, "cached": cached}


def _build_unix32(tree, identity, text, files, say):
    key = _key(identity, "unix32", text, files)
    done = os.path.join(cache_dir(), "unix32", key)
    binary = os.path.join(done, "micropython")
    if os.path.exists(binary):
        return binary, True
    with _locked(os.path.join(tree, ".tally-build.lock")):
        if os.path.exists(binary):
            return binary, True
        log = os.path.join(tree, "tally-build.log")
        open(log, "w").close()
        # a frozen manifest is refused unless micropython-lib is there; nothing
        # from it is frozen, so an empty stand-in does (the vendored tarball's README)
        mlib = os.path.join(tree, "lib", "micropython-lib", "README.md")
        if not os.path.exists(mlib):
            os.makedirs(os.path.dirname(mlib), exist_ok=True)
            open(mlib, "w").close()
        man = os.path.join(tree, "tally_manifest.py")
        with open(man, "w") as f:
            f.write(text)
        jobs = "-j%d" % min(4, os.cpu_count() or 1)
        if not os.path.exists(os.path.join(tree, "mpy-cross", "build", "mpy-cross")):
            say("building mpy-cross")
            _run(["make", "-C", "mpy-cross", jobs], tree, "make mpy-cross", log=log)
        say("building the 32-bit unix port with %d modules frozen (the first build takes a minute)"
            % len(files))
        # the frozen modules are compiled again from this manifest's files: the build
        # directory is shared by every checkout building from this tree, and make takes
        # a compiled module newer than its source (another checkout's) as up to date
        shutil.rmtree(os.path.join(tree, "ports", "unix", "build-32", "frozen_mpy"), ignore_errors=True)
        _run(["make", "-C", "ports/unix", jobs] + list(UNIX_OPTS) + ["FROZEN_MANIFEST=" + man],
             tree, "make ports/unix (32-bit)", log=log)
        built = os.path.join(tree, "ports", "unix", "build-32", "micropython")
        if not os.path.exists(built):
            built = os.path.join(tree, "ports", "unix", "micropython")
        os.makedirs(done, exist_ok=True)
        shutil.copy2(built, binary + ".tmp")
        with open(os.path.join(done, "manifest.py"), "w") as f:
            f.write(text)
        os.replace(binary + ".tmp", binary)
        _prune(os.path.dirname(done), keep=4)
    return binary, False


def _prune(d, keep):
    """Leave only the `keep` newest firmwares in the cache (one per code version built)."""
    olds = sorted((os.path.getmtime(os.path.join(d, k)), k) for k in os.listdir(d))
    for _, k in olds[:-keep]:
        shutil.rmtree(os.path.join(d, k), ignore_errors=True)


def _build_esp32(tree, board, text, say):
    port = os.path.join(tree, "ports", "esp32")
    if not os.path.isdir(port):
        raise FreezeError("%s has no ports/esp32 (the vendored tarball holds only the unix port): "
                          "give a full MicroPython checkout with its submodules" % tree)
    idf = shutil.which("idf.py")
    if not idf:
        raise FreezeError("idf.py is not on PATH: source $IDF_PATH/export.sh first")
    mp_board = ESP32_BOARDS[board]
    man = os.path.join(port, "tally_manifest.py")
    with open(man, "w") as f:
        f.write(text)
    bdir = os.path.join(port, "build-tally-" + mp_board)
    say("building %s with idf.py in %s" % (mp_board, bdir))
    _run([idf, "-D", "MICROPY_BOARD=" + mp_board, "-D", "MICROPY_FROZEN_MANIFEST=" + man,
          "-B", bdir, "build"], port, "idf.py build", log=os.path.join(port, "tally-build.log"))
    binary = os.path.join(bdir, "firmware.bin")
    if not os.path.exists(binary):
        raise FreezeError("idf.py built no %s" % binary)
    return binary, False


def day_firmware(src=None, say=None):
    """The 32-bit unix port with the unix bundle and DAY_EXTRA frozen (built
    once, then from the cache): build()'s dict."""
    return build("unix", "unix32", src=src, extra=DAY_EXTRA, say=say)


def unavailable(src=None):
    """Why day_firmware() cannot be built on this machine, or None."""
    src = src or default_source()
    if not src:
        return ("no MicroPython source: MICROPYTHON_SRC is unset and no "
                "shared/vendor/micropython-*.tar.gz beside the checkout")
    if not os.path.exists(src):
        return "MICROPYTHON_SRC=%s does not exist" % src
    return multilib()


if __name__ == "__main__":
    # python -m hil.harness.freeze [BOARD [TARGET]]: print the manifest
    sys.stdout.write(manifest(*(sys.argv[1:3] or ["unix"])))
