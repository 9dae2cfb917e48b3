# What the chip twins share: the physical quantities a twin measures come
# from a source() callable (a scenario, one tuple per measurement) or are
# fixed with set(), by position or by name (NAMES). Portable.


class Settable:
    NAMES = ()

    def _quantities(self, source, value):
        self.value = value
        self.source = source if source is not None else self._fixed

    def _fixed(self):
        return self.value

    def set(self, *values, **named):
        """Fix the quantities (the rest keep their value); the source becomes them."""
        v = list(self.value)
        for i in range(len(values)):
            v[i] = values[i]
        for k in named:
            v[self.NAMES.index(k)] = named[k]
        self.value = tuple(v)
        self.source = self._fixed
