# The ring buffer's backend on an ESP32: a raw data partition, programmed and
# erased directly (no filesystem, no wear levelling underneath; the ring does
# its own). MicroPython on ESP32 only: only agent/device_main.py imports it,
# when the config's log is "partition" (a board's default), and falls back to
# the file log when the partition is missing or too small.
#
# Interface (shared with agent.flash.FileFlash and hil.nor.EmulatedNOR):
#   sector_size, sector_count, read(addr, buf), program(addr, data),
#   erase(sector), sync(); counters reads, bytes_read, programs,
#   bytes_programmed, erases and erase_counts (one int per sector, erases
#   done through this object).
#
# The partition must be in the board's partition table, e.g. in
# partitions.csv:
#   tallylog, data, , , 0x40000,
# (a data partition of 64 sectors of 4 KiB), then rebuild and reflash the
# firmware with that table.
import esp32

_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_BLOCK_ERASE = 6


from agent.flash import BlockDevice


class PartitionFlash(BlockDevice):
    def __init__(self, label="tallylog"):
        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
        if not found:
            raise OSError(
                "no data partition labelled %r: add a line such as "
                "'%s, data, , , 0x40000,' to the board's partitions.csv and "
                "reflash the firmware with that partition table" % (label, label))
        self.label = label
        self._p = found[0]
        self._setup(self._p.ioctl(_IOCTL_BLOCK_SIZE, 0), self._p.ioctl(_IOCTL_BLOCK_COUNT, 0))

    def read(self, addr, buf):
        n = len(buf)
        if addr < 0 or addr + n > self.size:
            raise ValueError("read of %d bytes at 0x%x is outside partition %r (0..0x%x)"
                             % (n, addr, self.label, self.size))
        self.reads += 1
        self.bytes_read += n
        ss = self.sector_size
        self._p.readblocks(addr // ss, buf, addr % ss)

    def program(self, addr, data):
        n = len(data)
        if addr < 0 or addr + n > self.size:
            raise ValueError("program of %d bytes at 0x%x is outside partition %r (0..0x%x)"
                             % (n, addr, self.label, self.size))
        ss = self.sector_size
        if n and addr // ss != (addr + n - 1) // ss:
            raise ValueError("program of %d bytes at 0x%x crosses the end of sector %d (0x%x)"
                             % (n, addr, addr // ss, (addr // ss + 1) * ss))
        self.programs += 1
        self.bytes_programmed += n
        # With an offset, writeblocks programs without erasing first.
        self._p.writeblocks(addr // ss, data, addr % ss)

    def erase(self, sector):
        if sector < 0 or sector >= self.sector_count:
            raise ValueError("erase of sector %d: partition %r has sectors 0..%d"
                             % (sector, self.label, self.sector_count - 1))
        self.erases += 1
        self.erase_counts[sector] += 1
        r = self._p.ioctl(_IOCTL_BLOCK_ERASE, sector)
        if r:
            raise OSError("erase of sector %d of partition %r failed (%r)" % (sector, self.label, r))

    def sync(self):
        # A program is durable once writeblocks returns: nothing to do.
        pass

    def close(self):
        pass

