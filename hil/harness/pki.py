"""A throwaway fleet PKI for tests (agent/cli/pki.py does the work): the CA,
broker and collector certificates of `tally pki init`, device certificates on
demand, and for negative tests a certificate from a foreign CA and an expired
one. EC P-256, so a whole set takes well under a second."""
import datetime
import os

from agent.cli import pki


class TestPKI:
    __test__ = False          # not a pytest test class

    def __init__(self, root):
        self.root = root
        self.p = pki.init(root)
        self.ca = self.p["ca"]

    @property
    def broker_tls(self):
        """For hil.harness.mosquitto.Mosquitto(tls=...)."""
        return {"ca": self.ca, "cert": self.p["server_cert"], "key": self.p["server_key"]}

    @property
    def collector_tls(self):
        return {"ca": self.ca, "cert": self.p["collector_cert"], "key": self.p["collector_key"]}

    def tls_for(self, name):
        """The TLS settings of a device id, or of "collector"."""
        return self.collector_tls if name == pki.COLLECTOR else self.device_tls(name)

    def device_tls(self, device_id):
        """The device's own certificate from the fleet CA (issued once)."""
        crt = os.path.join(self.root, "devices", device_id + ".crt")
        if not os.path.exists(crt):
            pki.device(self.root, device_id)
        return {"ca": self.ca, "cert": crt, "key": crt[:-4] + ".key"}

    def foreign_tls(self, device_id):
        """A certificate with the device's CN from a CA the broker does not know
        (the client still trusts the fleet CA, so only the broker can object)."""
        ca_dir = os.path.join(self.root, "foreign")
        if not os.path.exists(os.path.join(ca_dir, "ca.crt")):
            pki.new_ca(ca_dir, "Foreign CA")
        crt, key = pki.issue(ca_dir, device_id, os.path.join(ca_dir, device_id))
        return {"ca": self.ca, "cert": crt, "key": key}

    def expired_tls(self, device_id):
        """A certificate from the fleet CA that expired yesterday."""
        now = datetime.datetime.now(datetime.timezone.utc)
        crt, key = pki.issue(self.root, device_id, os.path.join(self.root, "expired", device_id),
                             not_before=now - 30 * pki.DAY, not_after=now - pki.DAY)
        return {"ca": self.ca, "cert": crt, "key": key}

    def foreign_ca(self):
        """A CA file that did not sign the broker's certificate."""
        self.foreign_tls("nobody")
        return os.path.join(self.root, "foreign", "ca.crt")
