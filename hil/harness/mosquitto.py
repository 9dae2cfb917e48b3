"""A real mosquitto broker for tests and benchmarks: started on a free
loopback port with its own config, restartable on the same port (to inject
broker restarts), stopped cleanly. With tls=dict(ca=, cert=, key=) it is a
TLS-only broker that requires a client certificate from that CA, takes the
certificate's CN as the username and enforces Tally's ACL (agent/cli/pki.py,
docs/security.md). Retained messages and sessions persist across restart()
(saved when the broker stops), as on a production broker."""
import os
import shutil
import socket
import subprocess
import tempfile
import time


def find_mosquitto():
    for c in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if c and os.access(c, os.X_OK):
            return c
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, port=None, tls=None, acl=None):
        self.exe = find_mosquitto()
        if not self.exe:
            raise RuntimeError("mosquitto not found: apt-get install mosquitto (make test does this)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="tally-mosq-")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.tls = tls
        # Persistence on, as on a real broker (Debian's mosquitto.conf has it):
        # a retained config must outlive a broker restart, or a device that
        # reboots while the broker is down comes back on its local settings.
        common = ("persistence true\npersistence_location %s/\nautosave_interval 60\n"
                  "log_dest file %s\n" % (self.dir, self.log))
        if os.geteuid() == 0:
            # as root mosquitto drops to user mosquitto, who may not read our
            # private keys (0600) or write the log in our 0700 directory
            common += "user root\n"
        with open(self.conf, "w") as f:
            if tls:
                from agent.cli import pki
                acl_file = os.path.join(self.dir, "acl")
                with open(acl_file, "w") as a:
                    a.write(pki.mosquitto_acl() if acl is None else acl)
                f.write(pki.mosquitto_tls_conf(self.port, tls["ca"], tls["cert"], tls["key"],
                                               acl_file, bind="127.0.0.1") + common)
            else:
                f.write("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n%s"
                        % (self.port, common))
        self.proc = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("mqtts" if self.tls else "mqtt", self.port)

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([self.exe, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited with %s; see %s" % (self.proc.returncode, self.dir))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s=0.5):
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
