"""What the command modules share: the one-line error and scaled numbers."""
import sys


def err(msg, code=2):
    print("tally: " + msg, file=sys.stderr)
    return code


def scaled(v, scale):
    if scale >= 0:
        return str(v * 10 ** scale)
    s = "%.*f" % (-scale, v / 10 ** -scale)
    return s


class Stop:
    """SIGTERM and SIGINT set an event the long-running commands (run,
    collect) wait on, so they finish the interval in progress and close
    cleanly. exit_code(): 130 after Ctrl-C (SIGINT), as every command ends
    on it; 0 after SIGTERM (a service manager's stop) or a timeout."""

    def __init__(self):
        import signal
        import threading
        self.event = threading.Event()
        self.signals = []
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._on)
        self._sigint = signal.SIGINT

    def _on(self, signum, frame):
        self.signals.append(signum)
        self.event.set()

    def is_set(self):
        return self.event.is_set()

    def wait(self, t):
        return self.event.wait(t)

    def exit_code(self):
        return 130 if self._sigint in self.signals else 0
