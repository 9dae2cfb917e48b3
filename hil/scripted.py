# A scripted broker for uplink tests, CPython and MicroPython: the transport
# interface of agent/sync.py, with every data publish held until the test
# releases it (in any order) to whatever answers it: a real collector, or a
# peer that acks with the device's own codecs. The edge of the world.


def joined(msg):
    """A message as one bytes object: the uplink hands a transport its birth
    as a tuple of two buffers (agent/sync.py, Uplink._birth_msg), which the
    MicroPython MQTT client writes one after the other; a broker like this
    one, or paho, takes one object."""
    return b"".join(msg) if isinstance(msg, tuple) else bytes(msg)


class ScriptedBroker:
    will = None

    def __init__(self, answer=None):
        self.answer = answer or (lambda topic, payload: ())   # -> [(topic, payload)] back
        self.held = []            # (topic, payload) of data messages not yet released
        self.box = []             # messages waiting for the device's next poll
        self.up = False
        self.sess = 0
        self.refuse = False       # connect() fails while set

    def connect(self):
        if self.refuse:
            return False
        self.up = True
        self.sess += 1
        return True

    def connected(self):
        return self.up

    def session(self):
        return self.sess

    def publish(self, topic, payload, retain=False):
        if not self.up:
            return False
        payload = joined(payload)
        if topic.endswith("/data"):
            self.held.append((topic, payload))
        else:
            self.box.extend(self.answer(topic, payload))
        return True

    def release(self, i):
        """Deliver the i-th held data message now."""
        topic, payload = self.held.pop(i)
        self.box.extend(self.answer(topic, payload))

    def poll(self):
        out = self.box
        self.box = []
        return out

    def close(self):
        self.up = False
