# A flash-like block device on a preallocated file: the ring buffer's backend
# on Linux, and on a board a file on its littlefs. Runs unchanged on CPython
# and MicroPython (only open "r+b", seek, write, readinto, flush are used).
#
# Interface (shared with hil.nor.EmulatedNOR and
# agent.port.esp32_flash.PartitionFlash):
#   sector_size, sector_count, read(addr, buf), program(addr, data),
#   erase(sector), sync(); counters reads, bytes_read, programs,
#   bytes_programmed, erases and erase_counts (one int per sector, erases
#   done through this object).
#
# NOR semantics: a real NOR program leaves old AND data. Here program is a
# plain overwrite. That is the same thing because the log above only ever
# programs areas that are erased (0xFF), where old AND data == data; it never
# relies on AND-ing over programmed bytes. (hil.nor.EmulatedNOR refuses any
# program that would set a bit, so the tests catch a log that breaks this.)
#
# Durability: with durable=True, sync() flushes and fsyncs the file; an
# OSError from fsync propagates (the data is NOT durable). With durable=False
# sync() only flushes and creation skips fsync (tests, throwaway logs).
# A new file is written under path + ".new", fsynced and renamed into place,
# then the directory is fsynced, so a crash during creation never leaves a
# short file at path (which would be refused as the wrong size).
from agent import port

_CHUNK = 512


class BlockDevice:
    """What every block device shares: geometry, counters and argument checks."""

    def _setup(self, sector_size, sector_count):
        if sector_size <= 0 or sector_count <= 0:
            raise ValueError("sector_size and sector_count must be positive")
        self.sector_size = sector_size
        self.sector_count = sector_count
        self.size = sector_size * sector_count
        self.erase_counts = [0] * sector_count
        self.reset_counters()

    def counters(self):
        return {"reads": self.reads, "bytes_read": self.bytes_read,
                "programs": self.programs, "bytes_programmed": self.bytes_programmed,
                "erases": self.erases}

    def reset_counters(self):
        self.reads = 0
        self.bytes_read = 0
        self.programs = 0
        self.bytes_programmed = 0
        self.erases = 0

    def _check_span(self, addr, n):
        if addr < 0 or addr + n > self.size:
            raise ValueError("program of %d bytes at 0x%x is outside the flash (0..0x%x)"
                             % (n, addr, self.size))
        ss = self.sector_size
        if n and addr // ss != (addr + n - 1) // ss:
            raise ValueError("program of %d bytes at 0x%x crosses the end of sector %d (0x%x)"
                             % (n, addr, addr // ss, (addr // ss + 1) * ss))


class FileFlash(BlockDevice):
    def __init__(self, path, sector_size=4096, sector_count=256, durable=True):
        self._setup(sector_size, sector_count)
        self.path = path
        self.durable = durable
        self._ff = b"\xff" * (_CHUNK if sector_size > _CHUNK else sector_size)
        self._f = None
        self.padded = 0     # bytes of 0xFF added to a truncated file
        if port.exists(path):
            actual = port.file_size(path)
            if actual > self.size:
                raise ValueError(
                    "%s is %d bytes but sector_size %d * sector_count %d = %d bytes; "
                    "refusing to cut an existing log" % (path, actual, sector_size,
                                                        sector_count, self.size))
            if actual < self.size:
                # A truncated log: what is missing reads as erased flash, and
                # recovery takes it from there. Never a reason not to start.
                self._fill(path, "ab", self.size - actual)
                self.padded = self.size - actual
        else:
            self._create()
        self._f = open(path, "r+b")

    def _fill(self, path, mode, n):
        """Write n bytes of 0xFF (erased flash) to path, opened with mode."""
        f = open(path, mode)
        try:
            self._write_ff(f, n)
            if self.durable:
                port.fsync_file(f)
            else:
                f.flush()
        finally:
            f.close()

    def _create(self):
        tmp = self.path + ".new"
        port.remove(tmp)
        self._fill(tmp, "wb", self.size)
        port.rename(tmp, self.path)
        if self.durable:
            port.fsync_dir(self.path)

    def _write_ff(self, f, n):
        ff = self._ff
        while n > 0:
            if n >= len(ff):
                self._write_all(f, ff)
                n -= len(ff)
            else:
                self._write_all(f, memoryview(ff)[0:n])
                n = 0

    def _write_all(self, f, data):
        n = f.write(data)
        if n is not None and n != len(data):
            mv = memoryview(data)
            while n < len(mv):
                w = f.write(mv[n:])
                if not w:
                    raise OSError("short write to %s" % self.path)
                n += w

    def _file(self):
        if self._f is None:
            raise ValueError("%s is closed" % self.path)
        return self._f

    # --- block-device interface -------------------------------------------

    def read(self, addr, buf):
        n = len(buf)
        if addr < 0 or addr + n > self.size:
            raise ValueError("read of %d bytes at 0x%x is outside the flash (0..0x%x)"
                             % (n, addr, self.size))
        f = self._file()
        self.reads += 1
        self.bytes_read += n
        f.seek(addr)
        got = f.readinto(buf)
        if got != n:
            raise OSError("short read from %s: %s of %d bytes at 0x%x" % (self.path, got, n, addr))

    def program(self, addr, data):
        n = len(data)
        self._check_span(addr, n)
        f = self._file()
        self.programs += 1
        self.bytes_programmed += n
        f.seek(addr)
        self._write_all(f, data)

    def erase(self, sector):
        if sector < 0 or sector >= self.sector_count:
            raise ValueError("erase of sector %d: flash has sectors 0..%d"
                             % (sector, self.sector_count - 1))
        f = self._file()
        self.erases += 1
        self.erase_counts[sector] += 1
        f.seek(sector * self.sector_size)
        self._write_ff(f, self.sector_size)

    def sync(self):
        f = self._file()
        if self.durable:
            port.fsync_file(f)      # OSError: not durable; let it propagate
        else:
            f.flush()

    # --- housekeeping ---------------------------------------------------------

    def close(self):
        f = self._f
        if f is not None:
            self._f = None
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

