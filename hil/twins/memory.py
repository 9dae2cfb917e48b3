# A 256-byte register file behind one I2C address, its pointer set by the
# first byte of a write and advancing on every byte read or written, like a
# 24C02 EEPROM: a chip for bus-level tests (long reads, 16-bit pointers),
# not a sensor. Portable.


class Memory:
    def __init__(self):
        self.mem = bytearray(i ^ 0x5A for i in range(256))
        self.ptr = 0

    def write(self, data):
        if data:
            self.ptr = data[0]
            for b in data[1:]:
                self.mem[self.ptr] = b
                self.ptr = (self.ptr + 1) & 0xFF

    def read(self, n):
        out = bytes(self.mem[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out
