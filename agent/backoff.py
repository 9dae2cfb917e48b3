# Exponential backoff with equal jitter, for whatever retries a remote peer:
# the uplink's broker (agent/sync.py), the Wi-Fi join and SNTP
# (agent/port/net_mp.py).
#
# "Equal jitter" is the name the AWS Architecture Blog ("Exponential Backoff
# And Jitter", Marc Brooker, 2015) gives to this rule: with w the current
# backoff, wait w/2 plus a random time in [0, w/2], so at least half and at
# most all of w (integer ms: w//2 + r % (w//2 + 1)). Unlike "full jitter"
# (a random time in [0, w]) it never retries at once, and it still spreads a
# fleet that failed together. After each failure w doubles, up to bmax;
# reset() puts it back to bmin once the peer answers.
#
# No allocation of its own per call (small ints only); the random draw is
# port.random_u32 (os.urandom on both runtimes).
from agent import port


class Backoff:
    """wait = the backoff to draw the next delay from (ms); bmin <= wait <= bmax."""

    def __init__(self, bmin, bmax):
        self.bmin = bmin
        self.bmax = bmax
        self.wait = bmin

    def reset(self):
        self.wait = self.bmin

    def after(self, now, longest=False):
        """Uptime of the next try after a failure at now: equal jitter over the
        current backoff (over bmax when longest, e.g. after an SNTP
        kiss-o'-death), then the backoff doubles, up to bmax."""
        w = self.bmax if longest else self.wait
        h = w // 2
        self.wait = min(self.wait * 2, self.bmax)
        return now + h + port.random_u32() % (h + 1)
