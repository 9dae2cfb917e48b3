# agent.port.mqtt_mp under the MicroPython unix port, against a real
# mosquitto (tests/test_mqtt_mp.py starts it and runs this):
#   micropython -X heapsize=64K -c "import mqtt_echo_mp; mqtt_echo_mp.main(PORT)"
# The transport publishes at QoS 1 to its own ack topic and gets each message
# back; then the bytes a publish allocates are counted with the GC off.
# Prints "ECHO ok=N/N ..." with the heap figures.
import gc
from agent.port.mqtt_mp import MPTransport

DEV = "mp-echo"


def _free(low):
    gc.collect()
    f = gc.mem_free()
    return f if low is None or f < low else low


def _alloc(fn, n):
    fn()                                  # once first: caches, the packet-id table's slot
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(n):
        fn()
    a = gc.mem_alloc() - a
    gc.enable()
    return a // n


def main(port, n=20):
    low = base = _free(None)              # free heap with the client's code loaded
    t = MPTransport(DEV, "127.0.0.1", port, keepalive=10, timeout_ms=5000)
    t.will = ("tally/v1/%s/death" % DEV, b"gone")
    if not t.connect():
        print("ECHO connect failed:", t.last_error)
        return
    ack = "tally/v1/%s/ack" % DEV
    ok = 0
    for i in range(n):
        body = b"echo-%d" % i
        if not t.publish(ack, body):
            print("ECHO publish failed:", t.last_error)
            break
        got = ()
        for _ in range(50):               # up to 50 x 100 ms
            t.c.check_msg(100)
            got = t.poll()
            if got or not t.connected():
                break
        if len(got) == 1 and got[0] == (ack, body):
            ok += 1
        low = _free(low)
    c = t.c
    sink = "tally/v1/%s/sink" % DEV       # nobody subscribes: nothing comes back
    payload = bytes(64)
    per_pub0 = _alloc(lambda: c.publish(sink, payload), 10)

    def pub1():                           # publish, then poll until its PUBACK is in
        c.publish(sink, payload, False, 1)
        while c.pend and c.sock:
            c.check_msg(100)
    per_pub1 = _alloc(pub1, 10)
    per_poll = _alloc(t.poll, 10)
    low = _free(low)
    t.close()
    print("ECHO ok=%d/%d session=%d pings=%d alloc_qos0=%d alloc_qos1=%d alloc_poll=%d "
          "mem_free_after_import=%d mem_free_min=%d"
          % (ok, n, t.session(), c.pings, per_pub0, per_pub1, per_poll, base, low))
