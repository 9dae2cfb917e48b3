# An emulated NOR flash for the ring-buffer tests: counts wear, refuses
# programs that would need to set a bit, and can cut power at any operation,
# tearing it in a chosen way. Runs unchanged on CPython and MicroPython, and
# draws its randomness from hil.rng.Rng, so a given seed tears the same way
# on both.
#
# Block-device interface (shared with agent.flash.FileFlash and
# agent.port.esp32_flash.PartitionFlash):
#   sector_size, sector_count, read(addr, buf), program(addr, data),
#   erase(sector), sync(); counters reads, bytes_read, programs,
#   bytes_programmed, erases and erase_counts (one int per sector).
#
# Power cuts. Every program and every erase is an "op", numbered from 0;
# `ops` counts the ops started. With cut_at = k, when op k starts the tear
# given by `tear` is applied and PowerCut is raised; from then on every read,
# program, erase and sync raises PowerCut until reboot().
#   "before"  the op did not happen at all
#   "after"   the op happened completely, then power went
#   "prefix"  program: only the first 0..len-1 bytes were programmed
#             erase: as "random"
#   "bits"    program: a random subset of the bit-clears happened
#             (each byte becomes old & (new | random_mask))
#             erase: a random subset of the bit-sets happened
#             (each byte becomes old | random_mask)
#   "random"  program: as "bits"; erase: the sector holds random bytes
#
# Arguments are checked before an op starts: an out-of-range address or a
# program crossing a sector end raises ValueError, a program that would set a
# bit raises FlashError; neither counts as an op nor touches the image.
# The counters count calls (and bytes asked for) once the op has started,
# including the op that power cut; erase_counts counts erases that reached the
# cells, i.e. every started erase except one torn "before".
from agent.flash import BlockDevice
from hil.rng import Rng

TEARS = ("before", "after", "prefix", "bits", "random")


class FlashError(OSError):
    """The emulated flash refused an operation (e.g. a program that would set a bit)."""


class PowerCut(Exception):
    """Power failed. Deliberately not an OSError: code under test must not
    mistake it for an I/O error and carry on."""


def _fill_ff(mv, start, n):
    # Set mv[start:start+n] to 0xFF without allocating a buffer of that size.
    if n <= 0:
        return
    mv[start] = 0xFF
    k = 1
    while k < n:
        m = k if k <= n - k else n - k
        mv[start + k:start + k + m] = mv[start:start + m]
        k += m


class EmulatedNOR(BlockDevice):
    def __init__(self, sector_size=4096, sector_count=16, seed=1):
        self._setup(sector_size, sector_count)
        self.image = bytearray(self.size)
        self._mv = memoryview(self.image)
        _fill_ff(self._mv, 0, self.size)
        self.rng = Rng(seed)
        self.ops = 0
        self.cut_at = None
        self.tear = "before"
        self.dead = False

    # --- block-device interface -------------------------------------------

    def read(self, addr, buf):
        if self.dead:
            raise PowerCut("read at 0x%x after a power cut (reboot() first)" % addr)
        n = len(buf)
        if addr < 0 or addr + n > self.size:
            raise ValueError("read of %d bytes at 0x%x is outside the flash (0..0x%x)"
                             % (n, addr, self.size))
        self.reads += 1
        self.bytes_read += n
        buf[0:n] = self._mv[addr:addr + n]

    def program(self, addr, data):
        if self.dead:
            raise PowerCut("program at 0x%x after a power cut (reboot() first)" % addr)
        n = len(data)
        self._check_span(addr, n)
        img = self.image
        for i in range(n):
            d = data[i]
            if img[addr + i] & d != d:
                raise FlashError("program at 0x%x would set bits (flash 0x%02x, data 0x%02x); "
                                 "the area must be erased first" % (addr + i, img[addr + i], d))
        op = self._start()
        self.programs += 1
        self.bytes_programmed += n
        if op == self.cut_at:
            tear = self._tear()
            if tear == "after":
                self._mv[addr:addr + n] = data
            elif tear == "prefix":
                k = self.rng.below(n) if n else 0
                for i in range(k):
                    img[addr + i] = data[i]
            elif tear == "bits" or tear == "random":
                rng = self.rng
                for i in range(n):
                    img[addr + i] &= data[i] | (rng.next() & 0xFF)
            self._cut(op, "program", addr)
        # every byte of data is a subset of the flash byte (checked above), so
        # old & data == data
        self._mv[addr:addr + n] = data

    def erase(self, sector):
        if self.dead:
            raise PowerCut("erase of sector %d after a power cut (reboot() first)" % sector)
        if sector < 0 or sector >= self.sector_count:
            raise ValueError("erase of sector %d: flash has sectors 0..%d"
                             % (sector, self.sector_count - 1))
        ss = self.sector_size
        a = sector * ss
        op = self._start()
        self.erases += 1
        if op == self.cut_at:
            tear = self._tear()
            if tear != "before":
                self.erase_counts[sector] += 1
            img = self.image
            rng = self.rng
            if tear == "after":
                _fill_ff(self._mv, a, ss)
            elif tear == "bits":
                for i in range(a, a + ss):
                    img[i] |= rng.next() & 0xFF
            elif tear == "prefix" or tear == "random":
                for i in range(a, a + ss):
                    img[i] = rng.next() & 0xFF
            self._cut(op, "erase", a)
        self.erase_counts[sector] += 1
        _fill_ff(self._mv, a, ss)

    def sync(self):
        if self.dead:
            raise PowerCut("sync after a power cut (reboot() first)")

    # --- power cuts ---------------------------------------------------------

    def reboot(self):
        """Power comes back: clears cut_at and the dead state. The image stays."""
        self.cut_at = None
        self.dead = False

    def _start(self):
        op = self.ops
        self.ops = op + 1
        return op

    def _tear(self):
        if self.tear not in TEARS:
            raise ValueError("unknown tear mode %r (one of %s)" % (self.tear, ", ".join(TEARS)))
        return self.tear

    def _cut(self, op, what, addr):
        self.dead = True
        raise PowerCut("power cut at op %d (%s at 0x%x, tear %s)" % (op, what, addr, self.tear))


    # --- test helpers -------------------------------------------------------

    def snapshot(self):
        """An opaque copy of the flash state: image, wear, counters, op
        number, PRNG state. cut_at and tear are settings and are not part of it."""
        return (bytes(self.image), list(self.erase_counts), self.ops, self.rng.s, self.dead,
                self.reads, self.bytes_read, self.programs, self.bytes_programmed, self.erases)

    def restore(self, snap):
        (image, counts, self.ops, self.rng.s, self.dead, self.reads, self.bytes_read,
         self.programs, self.bytes_programmed, self.erases) = snap
        self._mv[0:self.size] = image
        self.erase_counts[0:self.sector_count] = counts

    def load_image(self, data):
        """Replace the whole image (corrupt, random or foreign images). Counters untouched."""
        if len(data) != self.size:
            raise ValueError("image is %d bytes, flash is %d" % (len(data), self.size))
        self._mv[0:self.size] = data

    def counters(self):
        c = BlockDevice.counters(self)
        c["ops"] = self.ops
        return c
