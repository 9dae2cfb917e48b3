"""Histogram layouts: for each histogram name and edges version, the value
that stands for each bin (its midpoint; the open end bins one half-width
beyond their edge). Version 1 is the layout of CIRCULAR.md §2-§3; a later
version is added here, never changed in place, so old snapshots keep their
meaning. A stress row whose (hist, edges_version) is not here cannot be
evaluated: the figure that needs it is marked uncertain."""

# t_s[16]: 5 K bins, <-5 ... >65 degC
_T_EDGES = [-5.0 + 5.0 * i for i in range(15)]
# load_s[8]: seconds running per P_el/P_rated bin, percent
_LOAD_EDGES = [10.0, 30.0, 50.0, 70.0, 85.0, 100.0, 115.0]
# rh_s[24]: RH bins x temperature bins, index = rh * 4 + t
_RH_EDGES = [40.0, 60.0, 70.0, 80.0, 90.0]
_RH_T_EDGES = [15.0, 30.0, 45.0]


def mids(edges, low_width=None, high_width=None):
    """Bin representatives of len(edges) + 1 bins: open ends extend by half
    of the neighbouring bin's width (or the width given)."""
    inner = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
    w0 = low_width if low_width is not None else edges[1] - edges[0]
    w1 = high_width if high_width is not None else edges[-1] - edges[-2]
    return [edges[0] - w0 / 2] + inner + [edges[-1] + w1 / 2]


def _rh_cells():
    rh = mids(_RH_EDGES, low_width=20.0, high_width=10.0)     # 30, 50, 65, 75, 85, 95 %
    t = mids(_RH_T_EDGES)                                      # 7.5, 22.5, 37.5, 52.5 degC
    return [(r, tc) for r in rh for tc in t]


# (hist, edges_version) -> {"unit": ..., "values": [per-bin representative]}
LAYOUTS = {
    ("t_s", 1): {"unit": "degC", "values": mids(_T_EDGES)},
    ("load_s", 1): {"unit": "%", "values": mids(_LOAD_EDGES, low_width=10.0, high_width=10.0)},
    ("rh_s", 1): {"unit": "(%RH, degC)", "values": _rh_cells()},
    ("vib_s", 1): {"unit": "zone", "values": ["A", "B", "C", "D"]},
    ("sw_ops", 1): {"unit": "Ic/Ie", "values": mids([1.2, 3.0, 6.5])},
    ("dim_s", 1): {"unit": "%", "values": [12.5, 37.5, 62.5, 87.5]},
}


LEVELS = ("vib", "starts_h", "lux_w")


def layout(hist, version):
    return LAYOUTS.get((hist, version))


def from_def(d):
    """The layout of one birth definition [name, kind, unit, scale, bins,
    edges, ref], or None (a level, or a shape this module cannot read)."""
    try:
        name, kind, _unit, _scale, nb, edges = d[:6]
    except (TypeError, ValueError):
        return None
    if kind != "count":
        return None
    if name == "vib_s" and nb == 4:
        return {"unit": "zone", "values": ["A", "B", "C", "D"]}
    if name == "rh_s":
        if not (isinstance(edges, list) and len(edges) == 2 and len(edges[0]) + 1 == 6 and len(edges[1]) + 1 == 4):
            return None
        rh = mids([float(x) for x in edges[0]], low_width=20.0, high_width=10.0)
        t = mids([float(x) for x in edges[1]])
        return {"unit": "(%RH, degC)", "values": [(r, tc) for r in rh for tc in t]}
    if not isinstance(edges, list) or len(edges) + 1 != nb or len(edges) < 2:
        return None
    e = [float(x) / (10.0 if name == "sw_ops" else 1.0) for x in edges]     # sw_ops edges are tenths
    if name in ("load_s", "dim_s"):
        vals = mids(e, low_width=e[0] if name == "load_s" else None, high_width=10.0 if name == "load_s" else None)
    else:
        vals = mids(e)
    unit = {"t_s": "degC", "load_s": "%", "dim_s": "%", "sw_ops": "Ic/Ie"}.get(name, "")
    return {"unit": unit, "values": vals}
