# An in-process "broker" between device uplinks and an embedded collector, with
# seeded loss to exercise retries and dedupe. It is the edge of the world for
# the simulator: the collector and the devices run their real code.

from hil.scripted import joined
from hil.rng import Rng


class Hub:
    def __init__(self, collector, loss=0.0, seed=1):
        self.collector = collector
        self.loss = loss
        self.rng = Rng(seed)
        self.down = False
        self.inboxes = {}
        self._connected = {}
        self.retained = {}      # topic -> payload, given to a device on every connect
        self.dropped = 0

    def transport(self, device_id):
        return LoopbackTransport(self, device_id)

    def _lost(self):
        if self.loss and self.rng.chance(self.loss):
            self.dropped += 1
            return True
        return False

    def retain(self, topic, payload):
        """Publish a retained message to a device (a remote config): it gets
        it now if connected, and again on every connect, like MQTT."""
        self.retained[topic] = bytes(payload)
        dev = topic.split("/")[2]
        box = self.inboxes.get(dev)
        if box is not None and self._connected.get(dev):
            box.append((topic, bytes(payload)))

    def deliver(self, topic, payload):
        if self._lost():
            return
        for tp, body in self.collector.handle(topic, payload):
            if self._lost():
                continue
            dev = tp.split("/")[2]
            box = self.inboxes.get(dev)
            if box is not None:
                box.append((tp, body))


class LoopbackTransport:
    def __init__(self, hub, device_id):
        self.hub = hub
        self.device_id = device_id
        self._session = 0
        self._up = False
        hub.inboxes[device_id] = []

    def connect(self):
        if self.hub.down:
            return False
        self._up = True
        self._session += 1
        self.hub._connected[self.device_id] = self
        prefix = "tally/v1/%s/" % self.device_id
        box = self.hub.inboxes[self.device_id]
        for tp, body in self.hub.retained.items():
            if tp.startswith(prefix):
                box.append((tp, body))
        return True

    def connected(self):
        if self.hub.down:
            self._up = False
        if not self._up:
            self.hub._connected.pop(self.device_id, None)
        return self._up

    def session(self):
        return self._session

    def publish(self, topic, payload, retain=False):
        if not self.connected():
            return False
        self.hub.deliver(topic, joined(payload))
        return True

    def poll(self):
        box = self.hub.inboxes[self.device_id]
        if not box:
            return ()
        out = box[:]
        del box[:]
        return out

    def close(self):
        self._up = False
        self.hub._connected.pop(self.device_id, None)
