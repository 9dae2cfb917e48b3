# Model of an Eastron SDM630 three-phase energy meter speaking Modbus RTU: the
# SDM120 model (hil/twins/sdm120.py: framing, exceptions, fault injection) with the
# SDM630's register map. Portable. Serve it with hil/buses/serial_loop.py or
# hil/harness/pty_serial.py like the SDM120.
#
# source() -> ((V1, V2, V3), (A1, A2, A3), total W, import kWh[, export kWh
# [, Hz]]) floats (hil/scenario.py's BoosterPump.sdm630 gives the first four),
# sampled once per request. Phase power splits the total in proportion to
# V*A; total kWh = import + export; frequency 50 Hz unless given.
# Input registers (fc 0x04), readable blocks 0x0000-0x00FF and 0x0156-0x0181,
# register pairs only (odd address -> exception 2, odd count -> 3), at most 80
# registers a request (-> 3):
#   0x0000/02/04 V   0x0006/08/0A A   0x000C/0E/10 W   0x0012/14/16 VA
#   0x001E/20/22 PF  0x0034 total W   0x0038 total VA  0x003E total PF
#   0x0046 Hz   0x0048 import kWh   0x004A export kWh   0x0156 total kWh
#   (other registers inside a block read 0.0)

from hil.twins.sdm120 import SDM120Model


class SDM630Model(SDM120Model):
    INPUT_BLOCKS = ((0x0000, 0x0100), (0x0156, 0x0182))
    MAX_COUNT = 80
    PAIRS = True

    def _values(self, fc):
        if fc == 0x03:
            return SDM120Model._values(self, fc)
        s = self.source()
        (v1, v2, v3), (a1, a2, a3), w, imp = s[0], s[1], s[2], s[3]
        exp = s[4] if len(s) > 4 else 0.0
        hz = s[5] if len(s) > 5 else 50.0
        va = (v1 * a1, v2 * a2, v3 * a3)
        tva = va[0] + va[1] + va[2]
        p = [w * x / tva for x in va] if tva else [w / 3] * 3
        vals = {0x0034: w, 0x0038: tva, 0x003E: (w / tva) if tva else 1.0, 0x0046: hz,
                0x0048: imp, 0x004A: exp, 0x0156: imp + exp}
        for k, v, a, x, pk in ((0, v1, a1, va[0], p[0]), (1, v2, a2, va[1], p[1]),
                               (2, v3, a3, va[2], p[2])):
            vals[2 * k] = v
            vals[0x0006 + 2 * k] = a
            vals[0x000C + 2 * k] = pk
            vals[0x0012 + 2 * k] = x
            vals[0x001E + 2 * k] = (pk / x) if x else 1.0
        return vals
