# The meter: a fixed list of metrics, each an odometer (cumulative, monotonic,
# persisted through the log) or a gauge aggregated over one interval
# (min, max, mean, last). Values are integers in the metric's unit.
#
# A schema entry is a tuple (name, unit, scale, agg) where agg is one of
# "odo", "min", "max", "mean", "last"; scale is a power of ten exponent
# (value * 10**scale is in the SI-ish unit named), e.g. ("temp_max", "Cel", -2, "max").

from agent import cbor

ODO = "odo"
_AGG_CODE = {"odo": 0, "min": 1, "max": 2, "mean": 3, "last": 4}


def wire_schema(schema):
    """The schema as the birth sends it: lists of [name, unit, scale, kind],
    kind "odometer" or "gauge:min|max|mean|last" (docs/wire.md)."""
    out = []
    for m in schema:
        k = m[3]
        if k in _AGG_CODE:
            k = "odometer" if k == ODO else "gauge:" + k
        out.append([m[0], m[1], m[2], k])
    return out


def schema_hash(wire):
    """The schema id of a schema in its wire form (docs/wire.md): the first 4
    bytes, big-endian, of SHA-256 over its deterministic CBOR encoding."""
    import hashlib
    return int.from_bytes(hashlib.sha256(cbor.dumps(wire)).digest()[:4], "big")


def schema_id(schema):
    """Short id (32-bit) of a schema, as the collector recomputes it from
    the birth: schema_hash of its wire form."""
    return schema_hash(wire_schema(schema))


class Meter:
    def __init__(self, schema):
        self.schema = schema
        n = len(schema)
        self.n = n
        self.names = [m[0] for m in schema]
        self._agg = bytearray(_AGG_CODE[m[3]] for m in schema)
        self.values = [0] * n        # odometers: running totals; gauges: current aggregate
        self._count = [0] * n        # samples seen this interval (gauges)
        self._sum = [0] * n          # running sum for means
        self._prev = [0] * n         # last closed value (repeated when a gauge got no sample)
        self.id = schema_id(schema)

    def index(self, name):
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError("meter: no metric named %r" % name)

    def is_odometer(self, i):
        return self._agg[i] == 0

    def add(self, i, n=1):
        """Advance odometer i by n (n >= 0)."""
        if n > 0:
            self.values[i] += n

    def observe(self, i, v):
        """Feed one reading to gauge i."""
        a = self._agg[i]
        c = self._count[i]
        if a == 1:
            if c == 0 or v < self.values[i]:
                self.values[i] = v
        elif a == 2:
            if c == 0 or v > self.values[i]:
                self.values[i] = v
        elif a == 3:
            self._sum[i] += v
        else:
            self.values[i] = v
        self._count[i] = c + 1

    def close(self):
        """End the interval: return the values to log (a new list) and reset gauges.
        A gauge that got no sample this interval repeats its previous value; the
        error odometers say why."""
        out = self.values[:]
        agg = self._agg
        for i in range(self.n):
            a = agg[i]
            if a == 0:
                continue
            c = self._count[i]
            if c == 0:
                out[i] = self._prev[i]
            elif a == 3:
                s = self._sum[i]
                out[i] = (s + c // 2) // c if s >= 0 else -((-s + c // 2) // c)
            self._prev[i] = out[i]
            self._count[i] = 0
            self._sum[i] = 0
        return out

    def restore(self, values):
        """Restart odometers from the last logged values (same schema)."""
        for i in range(self.n):
            if self._agg[i] == 0:
                self.values[i] = values[i]
            else:
                self._prev[i] = values[i]

    def last_value(self, i):
        """The value metric i had in the last closed (or restored) interval."""
        return self.values[i] if self._agg[i] == 0 else self._prev[i]

    def merge(self, a, b, span_a, span_b):
        """Coalesce two adjacent intervals (a older than b) into one value list:
        odometers keep the later value, so no usage is lost."""
        out = b[:]
        agg = self._agg
        for i in range(self.n):
            k = agg[i]
            if k == 1:
                out[i] = a[i] if a[i] < b[i] else b[i]
            elif k == 2:
                out[i] = a[i] if a[i] > b[i] else b[i]
            elif k == 3:
                t = span_a + span_b
                out[i] = (a[i] * span_a + b[i] * span_b + t // 2) // t
        return out
