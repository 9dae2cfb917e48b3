# MicroPython (ESP32, unix port) side of the port. Only APIs both the unix
# port and the ESP32 port have are used at import time; machine is optional.
import os
import gc

PLATFORM = "micropython"


def fsync_file(f):
    # MicroPython has no os.fsync; littlefs and the unix VFS commit on flush.
    f.flush()


def fsync_dir(path):
    pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def file_size(path):
    return os.stat(path)[6]


def rename(a, b):
    os.rename(a, b)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def random_u32():
    b = os.urandom(4)
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def mem_free():
    gc.collect()
    return gc.mem_free()


def reset_cause():
    try:
        import machine
    except ImportError:
        return "poweron"
    c = machine.reset_cause()
    names = {
        getattr(machine, "PWRON_RESET", -1): "poweron",
        getattr(machine, "HARD_RESET", -2): "poweron",
        getattr(machine, "WDT_RESET", -3): "watchdog",
        getattr(machine, "DEEPSLEEP_RESET", -4): "deliberate",
        getattr(machine, "SOFT_RESET", -5): "deliberate",
        getattr(machine, "BROWNOUT_RESET", -6): "brownout",
    }
    return names.get(c, "crash")
