"""Damage per failure mechanism (CIRCULAR.md §2): D = sum_b c_b / L_b, with
c_b the usage in histogram bin b and L_b the life at that bin's condition,
both in the mechanism's reference unit (hours, revolutions, operations).
L_ref is the rated life at the card's reference condition; a = D * L_ref is
the equivalent age. Every function takes parameter values as numpy arrays
of shape (S,) (S Monte Carlo samples, or 1) and returns arrays of shape
(S, B), so one matrix product gives the damage of every sample.

Hand-written on purpose: these are the closed forms of the standards and
datasheets, one line each, vectorised over samples and bins; `reliability`'s
palmgren_miner_linear_damage only prints its result (it returns None) and
its ALT fitters fit test data rather than evaluate a given model. The tests
check each form against a published worked example where one was found,
else by hand and at its limits (docs/life.md has the table)."""
import math

import numpy as np

# eV/K: the Boltzmann constant over the elementary charge, both exact since
# the 2019 SI (1.380649e-23 J/K, 1.602176634e-19 C). The truncated
# 8.617333262e-5 missed reliability's printed acceleration factor (88.29574588463338)
# in its 11th figure.
BOLTZMANN_EV = 1.380649e-23 / 1.602176634e-19
KELVIN = 273.15


def col(x):
    """A parameter as a column (S, 1) for broadcasting against bins."""
    return np.asarray(x, dtype=float).reshape(-1, 1)


# -- Palmgren-Miner ------------------------------------------------------------

def miner(rated_life, time_at_stress):
    """Linear damage: the fraction of life each bin uses, and the total.
    rated_life, time_at_stress: same length, same unit."""
    frac = np.asarray(time_at_stress, float) / np.asarray(rated_life, float)
    return frac, float(frac.sum())


# -- run time and cycles (any component, §2.1) ----------------------------------

def runtime_cycles(run_h, starts, life_h, cycles):
    """D = run_h / L_h + starts / N_cyc (either term may be absent: None)."""
    d = 0.0
    if life_h is not None:
        d = d + run_h / col(life_h)
    if cycles is not None:
        d = d + starts / col(cycles)
    return d


# -- Arrhenius (electronics, electrolytic capacitors, §2.4) ----------------------

def arrhenius_10k(temps_c, L0, T0, halving_K=10.0):
    """Capacitor rule: L(T) = L0 * 2^((T0 - T) / halving_K), per bin."""
    t = np.asarray(temps_c, float).reshape(1, -1)
    return col(L0) * np.power(2.0, (col(T0) - t) / col(halving_K))


def arrhenius_ea(temps_c, L0, T0, Ea):
    """L(T) = L0 / AF, AF = exp(Ea/k * (1/T0 - 1/T)), temperatures in K."""
    t = np.asarray(temps_c, float).reshape(1, -1) + KELVIN
    af = np.exp(col(Ea) / BOLTZMANN_EV * (1.0 / (col(T0) + KELVIN) - 1.0 / t))
    return col(L0) / af


def equivalent_temperature(hours, lives, L0, T0, halving_K=10.0):
    """The constant temperature that uses the same life as a mixed profile
    (Cosel FAQ a0057): L = sum(t) / sum(t_i / L_i), T = T0 - k*log2(L/L0)."""
    life = sum(hours) / sum(h / l for h, l in zip(hours, lives))
    return life, T0 - halving_K * math.log2(life / L0)


# -- Peck (humidity, §2.7) -------------------------------------------------------

def peck_af(rh_use, t_use_c, rh_test, t_test_c, n, Ea):
    """Acceleration factor of the test against use: life_use / life_test =
    (RH_use/RH_test)^-n * exp(Ea/k * (1/T_use - 1/T_test))."""
    tu = np.asarray(t_use_c, float) + KELVIN
    tt = np.asarray(t_test_c, float) + KELVIN
    return (np.asarray(rh_use, float) / rh_test) ** (-np.asarray(n, float)) * \
        np.exp(np.asarray(Ea, float) / BOLTZMANN_EV * (1.0 / tu - 1.0 / tt))


def peck_life(cells, L0, RH0, T0, n, Ea):
    """Life per (RH, T) cell: L0 at (RH0, T0) times Peck's AF of the cell."""
    rh = np.array([c[0] for c in cells], float).reshape(1, -1)
    t = np.array([c[1] for c in cells], float).reshape(1, -1) + KELVIN
    af = (rh / col(RH0)) ** (-col(n)) * np.exp(col(Ea) / BOLTZMANN_EV * (1.0 / t - 1.0 / (col(T0) + KELVIN)))
    return col(L0) * af


# -- ISO 281 basic rating life from a load spectrum (§2.2) ------------------------

def iso281_l10(C, P, p=3.0):
    """Basic rating life L10 in millions of revolutions: (C/P)^p."""
    return (np.asarray(C, float) / np.asarray(P, float)) ** p


def iso281_l10h(C, P, rpm, p=3.0):
    """L10h = 10^6 / (60 n) * (C/P)^p operating hours."""
    return 1e6 / (60.0 * np.asarray(rpm, float)) * iso281_l10(C, P, p)


def iso281_mean_load(loads, revs, p=3.0):
    """Equivalent mean load of a spectrum (ISO 281): (sum U_i P_i^p / U)^(1/p)."""
    loads = np.asarray(loads, float)
    revs = np.asarray(revs, float)
    return float((np.sum(revs * loads ** p) / np.sum(revs)) ** (1.0 / p))


def iso281_life_h(load_pct, C, P_static, k_load, rpm, p):
    """Hours of life per load bin: P_i = P_static + k_load * load%/100 (the
    asset-type mapping of electrical load to bearing load), L10h per bin."""
    frac = np.asarray(load_pct, float).reshape(1, -1) / 100.0
    P = col(P_static) + col(k_load) * frac
    return 1e6 / (60.0 * col(rpm)) * (col(C) / P) ** col(p)


# -- TM-21 lumen maintenance (LEDs, §2.5) -----------------------------------------

def tm21_fit(hours, flux):
    """Least-squares fit of ln(flux) = ln(B) - alpha * t (TM-21's exponential
    model; flux normalised to 1 at t = 0). Returns (alpha, B)."""
    t = np.asarray(hours, float)
    y = np.log(np.asarray(flux, float))
    slope, icept = np.polyfit(t, y, 1)
    return float(-slope), float(math.exp(icept))


def tm21_select(hours, flux):
    """The data TM-21 fits for a test of D hours: the last 5,000 h when D is
    from 6,000 to 10,000 h, the last half when D is longer, never a point
    before 1,000 h (TM-21-11 [mem]; an earlier version took the
    last half at every D, which at D = 6,000 h fitted from 3,000 h instead of
    1,000 h). Shorter tests are not projected (the cards refuse them)."""
    d = max(hours)
    start = d - 5000.0 if d < 10000.0 else d / 2.0
    keep = [(t, f) for t, f in zip(hours, flux) if t >= max(1000.0, start)]
    return [t for t, _ in keep], [f for _, f in keep]


def tm21_lp(alpha, B, p=70.0):
    """Hours until lumen maintenance reaches p %: ln(100 B / p) / alpha."""
    return math.log(100.0 * B / p) / alpha


def tm21_limit(test_h, samples):
    """TM-21's cap on a reported projection: 6x the test duration for 20 or
    more samples, 5.5x for 10 to 19; fewer than 10: no projection (None)."""
    if samples >= 20:
        return 6.0 * test_h
    if samples >= 10:
        return 5.5 * test_h
    return None


def tm21_report(alpha, B, test_h, samples, p=70.0):
    """(projected Lp, reported Lp, capped): reported is min(projected, cap)."""
    lp = tm21_lp(alpha, B, p)
    cap = tm21_limit(test_h, samples)
    if cap is None:
        return lp, None, True
    return lp, min(lp, cap), lp > cap


# -- contactors (§2.6) -------------------------------------------------------------

def contactor_mixed(A, B, inching_pct):
    """Endurance in mixed AC-3/AC-4 duty: X = A / (1 + (C/100) (A/B - 1))."""
    return A / (1.0 + inching_pct / 100.0 * (A / B - 1.0))


def contactor_life(N_per_class):
    """Operations to end of electrical life per breaking-current class."""
    return np.asarray(N_per_class, float).reshape(1, -1) if np.ndim(N_per_class) == 1 \
        else np.asarray(N_per_class, float)
