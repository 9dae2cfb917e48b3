# Linux bus adapters (Raspberry Pi): smbus2 behind the machine.I2C method
# names our drivers use, and pyserial for Modbus. Transactions go through
# i2c_rdwr, so command-based chips (SHT3x) and reads past 32 bytes work.
from smbus2 import SMBus, i2c_msg


class SMBus2I2C:
    def __init__(self, bus=1):
        self.bus = SMBus(bus)

    def writeto(self, addr, buf, stop=True):
        self.bus.i2c_rdwr(i2c_msg.write(addr, bytes(buf)))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        msg = i2c_msg.read(addr, len(buf))
        self.bus.i2c_rdwr(msg)
        buf[:] = bytes(msg)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        reg = memaddr.to_bytes(addrsize // 8, "big")
        rd = i2c_msg.read(addr, len(buf))
        self.bus.i2c_rdwr(i2c_msg.write(addr, reg), rd)   # repeated start between them
        buf[:] = bytes(rd)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self.bus.i2c_rdwr(i2c_msg.write(addr, memaddr.to_bytes(addrsize // 8, "big") + bytes(buf)))

    def close(self):
        self.bus.close()


def open_serial(port, baud):
    import serial
    return serial.Serial(port, baud, timeout=0.2)
