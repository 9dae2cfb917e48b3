"""A throwaway PostgreSQL for tests and benchmarks: a fresh cluster in a temp
dir (initdb, trust auth for local connections), served on a free loopback
port with its unix socket inside that dir, fsync left on so commits cost
what they cost in production. stop() and start() again (same port, same
data) to inject "database down"; close() removes everything.

PostgreSQL refuses to run as root: as root, initdb and the server run as the
`postgres` user (made by Debian's package) or else `nobody`."""
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

from hil.harness.mosquitto import free_port

SUPERUSER = "tally"


def find_postgres():
    """The bin directory of the newest PostgreSQL with initdb, or None."""
    def version(d):
        m = re.search(r"/(\d+)(?:\.(\d+))?/bin$", d)
        return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)
    dirs = [os.path.dirname(p) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
            if os.access(p, os.X_OK)]
    if dirs:
        return max(dirs, key=version)
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _run_as():
    """(user, argv prefix) to drop root, or (None, []) when not root."""
    if os.geteuid() != 0:
        return None, []
    for user in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            continue
        if shutil.which("setpriv"):      # execs in place: our child is the server itself
            return pw, ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                        "--init-groups", "--"]
        return pw, ["runuser", "-u", user, "--"]
    raise RuntimeError("postgres: running as root and neither a postgres nor a nobody user exists")


class Postgres:
    def __init__(self, port=None):
        self.bin = find_postgres()
        if not self.bin:
            raise RuntimeError("PostgreSQL not found: apt-get install postgresql (make test does this)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="tally-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.proc = None
        self._dbs = 0
        pw, self._as = _run_as()
        if pw:
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        # -N: initdb's own files are not fsync'd (a throwaway cluster); the
        # server's fsync stays on.
        out = subprocess.run(self._as + [os.path.join(self.bin, "initdb"), "-D", self.data,
                                         "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                                         "--locale=C", "-N"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=self.dir)
        if out.returncode:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError("initdb failed (%d): %s" % (out.returncode, out.stdout[-2000:]))

    def url_of(self, dbname):
        return "postgresql://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port, dbname)

    @property
    def url(self):
        return self.url_of("postgres")

    def start(self, timeout=30.0):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self._as + [os.path.join(self.bin, "postgres"), "-D", self.data,
                            "-p", str(self.port), "-k", self.dir,
                            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=50"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited with %s: %s" % (self.proc.returncode, self._log_tail()))
            ready = subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"])
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("postgres did not accept connections on port %d: %s"
                           % (self.port, self._log_tail()))

    def _log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout=30.0):
        """Fast shutdown: clients are disconnected, open transactions roll back."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def create_database(self, name=None):
        """A new empty database; returns its URL."""
        import psycopg
        self._dbs += 1
        name = name or "t%d" % self._dbs
        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute('CREATE DATABASE "%s"' % name)
        return self.url_of(name)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
