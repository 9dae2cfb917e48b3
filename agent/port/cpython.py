# CPython (Raspberry Pi, Linux, CI) side of the port: files with fsync, host
# randomness, reset cause. Bus and network adapters live in their own modules
# (agent.port.linux_bus, agent.port.mqtt_paho) so importing this stays cheap.
import os

PLATFORM = "cpython"


def fsync_file(f):
    """Flush f and make it durable. An OSError here means the data is NOT durable."""
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(path):
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(path):
    return os.path.exists(path)


def file_size(path):
    return os.stat(path).st_size


def rename(a, b):
    os.replace(a, b)


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def random_u32():
    return int.from_bytes(os.urandom(4), "little")


def mem_free():
    """Free heap is a MicroPython notion; on CPython report 0 (unknown)."""
    return 0


def reset_cause():
    # A Linux host cannot tell power-on from a crash by itself; the agent
    # records "poweron" unless it finds its own clean-shutdown marker.
    return "poweron"
