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
    ("vib_zone_s", 1): {"unit": "zone", "values": ["A", "B", "C", "D"]},
    ("sw_ops", 1): {"unit": "Ic/Ie", "values": [1.0, 2.1, 4.75, 8.0]},
    ("dim_s", 1): {"unit": "%", "values": [12.5, 37.5, 62.5, 87.5]},
}


def layout(hist, version):
    return LAYOUTS.get((hist, version))
