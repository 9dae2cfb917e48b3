"""The component ledger (CIRCULAR.md §4, §5): where each part has been and
how much life it has used, read from the same exactly-once ledger that
makes the bill.

Reads two tables other modules own (their shapes are the contract in
/work/wt/BRIEF.md): `part_events` (the identity helper: 'installed' and
'removed' per device, slot and component, with wall time and an odometer
snapshot) and `stress` (the stress helper: cumulative counts per histogram
bin at (device, epoch, seq)), joined with `records` for the wall time of a
snapshot. Owns two: `component_records` (ISO 14224-style failure, repair and
inspection records, added by the operator with `tally event add`) and
`life_decisions` (every next-use decision with its trace). Failures the
data shows (a part removed right after an error burst on its asset) are
derived on every read and listed with source 'derived'.

A component's installation segments run from an 'installed' event to the
matching 'removed' one (or to the newest snapshot while it is still in).
The usage of a segment is the difference of the device's cumulative counts
at its two ends; the segments of one component add up (Miner), so a part
moved to another asset arrives with its history. A part that tells only its
model (`<chip>-model-<id>`, not unique) is a part of its asset, keyed
`<id>@<device>`: every such chip has the same id, so following it across
assets would put one part in many at once.

Bad input is said, never repaired by guessing: a component installed in a
second asset while still in the first, a removal with no install, counts
that go down or change layout inside a segment: each is one line in
`problems` and marks that component's figures uncertain. An operator record
for an unknown part or with a code outside ISO 14224's tables is refused
with one line (LedgerError) and nothing is written.

Over 500 lines on purpose: one class reads the five tables once and keeps
the series index, the segments, the problems and the records that every
question (usage, window, history, derived failures, operator records) is
answered from; the ISO 14224 code tables are data at the top. Split, each
part would need the others' state open to be read."""
import bisect
import json
import time

import numpy as np

from agent.collector.life import bins

_SCHEMA = """
CREATE TABLE IF NOT EXISTS component_records (
    component TEXT NOT NULL, at_s {int} NOT NULL, kind TEXT NOT NULL,
    mode TEXT, mechanism TEXT, cause TEXT, detection TEXT, note TEXT,
    source TEXT NOT NULL,
    PRIMARY KEY (component, at_s, kind)
);
CREATE TABLE IF NOT EXISTS life_decisions (
    subject TEXT NOT NULL, digest TEXT NOT NULL, at_s {real} NOT NULL,
    decision TEXT NOT NULL, health TEXT NOT NULL, cards TEXT NOT NULL,
    trace TEXT NOT NULL,
    PRIMARY KEY (subject, digest)
);
"""
KINDS = ("failure", "repair", "inspection")
ERRORS = ("err_nack", "err_crc", "err_timeout", "err_range", "log_errors")
BURST_DAYS = 7          # a removal within this many days of an error burst is a derived failure
BURST_RATIO = 3.0       # errors of those days against the same span before them
BURST_MIN = 5           # and at least this many errors in them
# a component id with this in it is a model id, not a serial (docs/wire.md):
# every asset's part of that kind has it, so the ledger keys it <id>@<asset>
NOT_UNIQUE = "-model-"
# part_events.detail words (docs/wire.md); anything else is a part number
REASONS = ("boot", "swap", "burst", "vanished")

# ISO 14224:2016 Annex B codes [mem: from the standard's tables as summarised
# in public extracts; check against the purchased text]. Failure modes are
# per equipment class; these are the ones common to rotating and electrical
# equipment and instruments.
MODES = {
    "BRD": "breakdown", "ELP": "external leakage, process medium", "ERO": "erratic output",
    "FTS": "fail to start on demand", "STP": "fail to stop on demand", "FTF": "fail to function",
    "HIO": "high output", "LOO": "low output", "NOI": "noise", "OHE": "overheating",
    "PDE": "parameter deviation", "SER": "minor in-service problems", "SPO": "spurious operation",
    "STD": "structural deficiency", "UST": "spurious stop", "VIB": "vibration", "OTH": "other",
    "UNK": "unknown"}
MECHANISMS = {
    "1.0": "mechanical failure", "1.1": "leakage", "1.2": "vibration", "1.3": "clearance/alignment",
    "1.4": "deformation", "1.5": "looseness", "1.6": "sticking",
    "2.0": "material failure", "2.1": "cavitation", "2.2": "corrosion", "2.3": "erosion", "2.4": "wear",
    "2.5": "breakage", "2.6": "fatigue", "2.7": "overheating", "2.8": "burst",
    "3.0": "instrument failure", "3.1": "control failure", "3.2": "no signal/indication/alarm",
    "3.3": "faulty signal/indication/alarm", "3.4": "out of adjustment", "3.5": "software failure",
    "3.6": "common cause/mode failure",
    "4.0": "electrical failure", "4.1": "short circuiting", "4.2": "open circuit",
    "4.3": "no power/voltage", "4.4": "faulty power/voltage", "4.5": "earth/isolation fault",
    "5.0": "external influence", "5.1": "blockage/plugged", "5.2": "contamination",
    "5.3": "miscellaneous external influences",
    "6.0": "miscellaneous", "6.1": "no cause found", "6.2": "combined causes", "6.3": "other",
    "6.4": "unknown"}
CAUSES = {
    "1.0": "design-related causes", "1.1": "improper capacity", "1.2": "improper material",
    "2.0": "fabrication/installation-related causes", "2.1": "fabrication error", "2.2": "installation error",
    "3.0": "failure related to operation/maintenance", "3.1": "off-design service",
    "3.2": "operating error", "3.3": "maintenance error", "3.4": "expected wear and tear",
    "4.0": "failure related to management", "4.1": "documentation error", "4.2": "management error",
    "5.0": "miscellaneous", "5.1": "no cause found", "5.2": "common cause", "5.3": "combined causes",
    "5.4": "other unit/cascading failure", "5.5": "other", "5.6": "unknown"}
DETECTION = {
    "1": "periodic maintenance", "2": "functional testing", "3": "inspection",
    "4": "periodic condition monitoring", "5": "continuous condition monitoring (Tally CM)",
    "6": "production interference", "7": "casual observation", "8": "corrective maintenance",
    "9": "on demand", "10": "other"}
CODES = {"mode": MODES, "mechanism": MECHANISMS, "cause": CAUSES, "detection": DETECTION}


class LedgerError(ValueError):
    pass


def ensure(backend, types):
    for stmt in _SCHEMA.format(**types).split(";"):
        if stmt.strip():
            backend.execute(stmt)


def _table_rows(backend, sql, params=()):
    """Rows of a table another module owns; none while it does not exist."""
    try:
        return list(backend.execute(sql, params))
    except Exception as e:         # sqlite3.OperationalError / psycopg UndefinedTable
        if "no such table" in str(e) or "does not exist" in str(e):
            if getattr(backend, "in_tx", False):
                raise
            try:
                backend.rollback()
            except Exception:
                pass
            return []
        raise


class Ledger:
    """The component ledger over a Collector's database (SQLite or
    PostgreSQL). Reading builds everything from the tables each time: the
    history is the truth, figures are never stored except decisions."""

    def __init__(self, col, asset=None, component=None):
        """asset or component: read the stress snapshots of only the assets
        that matter to it (the asset and wherever its parts have been, or
        wherever the component has been); figures of other components are
        then not made from this Ledger."""
        self.col = col
        self.b = col._b
        ensure(self.b, self.b.TYPES)
        self.problems = []
        self._load(asset, component)

    # -- reading ---------------------------------------------------------------

    def _load(self, asset=None, component=None):
        self.events = _table_rows(self.b,
            "SELECT device, epoch, seq, idx, kind, slot, component, wall_s, odometers, detail FROM part_events "
            "ORDER BY device, epoch, seq, idx")
        # a model id names a kind, not a part: one per asset
        self.events = [e if NOT_UNIQUE not in e[6] else tuple(e[:6]) + ("%s@%s" % (e[6], e[0]),) + tuple(e[7:])
                       for e in self.events]
        self.scope = None
        if asset or component:
            comps = {e[6] for e in self.events if e[0] == asset} if asset else {component}
            self.scope = sorted({e[0] for e in self.events if e[6] in comps} | ({asset} if asset else set()))
        where, args = "", ()
        if self.scope is not None:
            where, args = "WHERE s.device IN (%s) " % ",".join("?" * len(self.scope)), tuple(self.scope)
        rows = _table_rows(self.b,
            "SELECT s.device, s.epoch, s.seq, s.hist, s.edges_version, s.counts, r.wall_s, r.wall_q, r.received_s "
            "FROM stress s "
            "LEFT JOIN records r ON r.device_id = s.device AND r.epoch = s.epoch AND r.seq = s.seq " + where +
            "ORDER BY s.device, s.hist, s.epoch, s.seq", args)
        self.snaps = {}            # (device, hist) -> [(pos, wall or None, version, counts)]
        raw = {}
        for dev, ep, seq, hist, ver, counts, wall, wall_q, rx in rows:
            # the record's own wall time when the device had a good clock,
            # else when the collector received it (timeline.py's last resort)
            wall = wall if wall_q and wall and wall > 0 else (int(rx) if rx else None)
            raw.setdefault((dev, hist), []).append(((ep, seq), wall, ver, counts))
        for key, items in raw.items():
            try:                                  # one parse per series: the rows' lists side by side
                lists = json.loads("[%s]" % ",".join(x[3] for x in items))
            except (ValueError, TypeError):
                lists = None
            snaps = []
            grid = _grid(lists)
            for i, (pos, wall, ver, counts) in enumerate(items):
                c = grid[i] if grid is not None else _row(lists[i] if lists is not None else _parse(counts))
                if c is None:
                    self.problems.append("stress %s %s epoch %s seq %s: counts are not a JSON list of numbers"
                                         % (key[0], key[1], pos[0], pos[1]))
                    continue
                snaps.append((pos, wall, ver, c))
            if snaps:
                self.snaps[key] = snaps
        self._index()
        self.layouts = {}          # (device, edges_version) -> {hist: layout, or None for a level}
        for dev, ver, defs in _table_rows(self.b, "SELECT device, edges_version, defs FROM stress_defs"):
            try:
                ds = json.loads(defs)
            except ValueError:
                continue
            self.layouts[(dev, ver)] = {d[0]: bins.from_def(d) for d in ds if isinstance(d, list) and d}
        self.records = {}
        for r in self.b.execute("SELECT component, at_s, kind, mode, mechanism, cause, detection, note, source "
                                "FROM component_records ORDER BY component, at_s"):
            self.records.setdefault(r[0], []).append(dict(zip(
                ("component", "at_s", "kind", "mode", "mechanism", "cause", "detection", "note", "source"), r)))
        self._segments()
        self._derive()

    def _index(self):
        """Per (device, hist): positions, walls, versions, and where the
        counts go down or the layout version changes, computed once, so a
        segment's use is a few bisections however long the history."""
        self.idx = {}
        self.newest = {}
        self.hists = {}            # device -> [(hist, its snapshots)], so a segment looks at its device's only
        for key, snaps in self.snaps.items():
            self.hists.setdefault(key[0], []).append((key[1], snaps))
            pos = [x[0] for x in snaps]
            walls = [x[1] for x in snaps]
            vers = [x[2] for x in snaps]
            vchg = [i for i in range(1, len(vers)) if vers[i] != vers[i - 1]]
            try:
                diff = np.diff(np.vstack([x[3] for x in snaps]), axis=0)
                down = [int(i) + 1 for i in np.nonzero(np.any(diff < 0, axis=1))[0]]
            except ValueError:                    # bins of different lengths: compare pairwise
                down = [i for i in range(1, len(snaps)) if snaps[i][3].shape != snaps[i - 1][3].shape
                        or np.any(snaps[i][3] < snaps[i - 1][3])]
            self.idx[key] = (pos, walls, vchg, down)
            w = [x for x in walls if x]
            if w:
                self.newest[key[0]] = max(self.newest.get(key[0], 0), max(w))

    def _derive(self):
        """Failures the data shows without an operator: a part removed right
        after an error burst on its asset (the errors of the BURST_DAYS days
        before the removal at least BURST_RATIO times those of the span before
        and at least BURST_MIN). Derived on every read, never stored; source
        'derived', detection 5 (continuous condition monitoring)."""
        days_of = {}
        for comp, segs in self.segs.items():
            for seg in segs:
                end = seg["end"]
                if not end or end.get("cut"):
                    continue
                said = end.get("detail")
                if said in ("vanished", "burst"):
                    self._derived(comp, end, "FTF" if said == "vanished" else "ERO",
                                  "3.2" if said == "vanished" else "3.3",
                                  "stopped answering in %s slot %s (three failed reads in a row)"
                                  % (seg["device"], seg["slot"]) if said == "vanished" else
                                  "swapped in %s slot %s after a burst of bus errors" % (seg["device"], seg["slot"]))
                    continue
                if not end.get("wall"):
                    continue
                dev = seg["device"]
                if self.scope is not None and dev not in self.scope:
                    continue
                if dev not in days_of:
                    try:
                        days_of[dev] = self.col.ledger(dev).get(dev, {})
                    except Exception:
                        days_of[dev] = {}
                days = days_of[dev]
                if not days:
                    continue
                day = time.strftime("%Y-%m-%d", time.gmtime(end["wall"]))
                keys = sorted(k for k in days if k <= day)
                last, prev = keys[-BURST_DAYS:], keys[-2 * BURST_DAYS:-BURST_DAYS]
                n_last = sum(days[k].get(e, 0) for k in last for e in ERRORS)
                n_prev = sum(days[k].get(e, 0) for k in prev for e in ERRORS)
                if n_last >= BURST_MIN and n_last >= BURST_RATIO * max(n_prev, 1):
                    self._derived(comp, end, "ERO", "3.3",
                                  "removed from %s slot %s after an error burst: %d errors in the %d days before, "
                                  "%d in the %d days before those" % (dev, seg["slot"], n_last, BURST_DAYS, n_prev,
                                                                       BURST_DAYS))

    def _derived(self, comp, end, mode, mechanism, note):
        self.records.setdefault(comp, []).append({
            "component": comp, "at_s": int(end.get("wall") or 0), "kind": "failure", "mode": mode,
            "mechanism": mechanism, "cause": "5.6", "detection": "5", "source": "derived", "note": note})
        self.records[comp].sort(key=lambda r: r["at_s"])

    def _segments(self):
        self.segs = {}             # component -> [segment]
        self.uncertain = {}        # component -> [reason]
        self.rate_notes = {}       # component -> [reason]: the subset of uncertain about the recent rate only
        self.part_numbers = {}     # component -> part number its install event read from its passport
        open_ = {}                 # component -> its open segment
        # one device's events in its own order (epoch, seq, idx); across
        # devices by wall time, an unknown one (0) or one that goes back
        # taking the device's latest before it
        eff, last = [], {}
        for e in sorted(self.events, key=lambda e: (e[0], e[1], e[2], e[3])):
            w = max(last.get(e[0], 0), e[7] or 0)
            last[e[0]] = w
            eff.append((w, e))
        evs = [e for _, e in sorted(eff, key=lambda x: (x[0], x[1][0], x[1][1], x[1][2], x[1][3]))]
        for dev, ep, seq, idx, kind, slot, comp, wall, odo, detail in evs:
            here = "%s slot %s (epoch %s seq %s)" % (dev, slot, ep, seq)
            try:
                odo = json.loads(odo) if odo else {}
            except ValueError:
                odo = {}
            if kind == "installed" and detail and detail not in REASONS:
                self.part_numbers[comp] = detail           # the part number from the part's passport
            end = {"device": dev, "pos": (ep, seq), "wall": wall or None, "odo": odo, "detail": detail}
            cur = open_.get(comp)
            if kind == "installed":
                if cur is not None and (cur["device"], cur["slot"]) == (dev, slot):
                    continue                                   # the same install seen again
                if cur is not None and cur["device"] == dev:
                    self._flag(comp, "%s moved within %s from slot %s to slot %s with no removal on record "
                               "(in %s since %s); its time in slot %s is cut at this install"
                               % (comp, dev, cur["slot"], slot, cur["slot"], _when(cur["start"]), cur["slot"]))
                elif cur is not None:
                    self._flag(comp, "%s is in two assets at once: installed in %s while still in %s slot %s "
                               "since %s; its time in %s is cut at this install"
                               % (comp, here, cur["device"], cur["slot"], _when(cur["start"]), cur["device"]))
                    cur["end"] = dict(self._cut(cur["device"], wall), cut=True)
                open_[comp] = {"component": comp, "device": dev, "slot": slot, "start": end, "end": None}
                self.segs.setdefault(comp, []).append(open_[comp])
            elif kind == "removed":
                if cur is None or cur["device"] != dev:
                    self._flag(comp, "%s removed from %s with no install there on record: a gap in its history"
                               % (comp, here))
                    continue
                cur["end"] = end
                del open_[comp]
            else:
                self.problems.append("part event %s: kind %r is neither installed nor removed" % (here, kind))

    def _cut(self, device, wall):
        """The device's newest position at or before a wall time."""
        best = None
        for (dev, _h), snaps in self.snaps.items():
            if dev != device:
                continue
            for pos, w, _v, _c in snaps:
                if w is not None and wall is not None and w <= wall and (best is None or pos > best):
                    best = pos
        return {"device": device, "pos": best or (0, 0), "wall": wall, "odo": {}}

    def _flag(self, comp, why):
        self.problems.append(why)
        self.uncertain.setdefault(comp, []).append(why)

    def components(self):
        return sorted(set(self.segs) | set(self.records))

    def assets(self):
        return sorted({s["device"] for segs in self.segs.values() for s in segs})

    def installed(self, device):
        """The components in the asset now: {component: slot}."""
        return {c: s["slot"] for c, segs in self.segs.items() for s in segs
                if s["device"] == device and s["end"] is None}

    def installed_anywhere(self, comp):
        """Whether the component is in an asset now."""
        segs = self.segs.get(comp)
        return bool(segs) and segs[-1]["end"] is None

    def _at(self, device, hist, pos):
        """Index of the newest snapshot at or before pos (-1: before the
        first; counters start at zero and are never reset), or None."""
        ix = self.idx.get((device, hist))
        if not ix:
            return None
        return bisect.bisect_right(ix[0], pos) - 1

    def _layout(self, device, hist, version):
        """The layout of a device's histogram: from its birth definitions
        (stress_defs), else the built-in one of that version; None for a
        level histogram; False when it is not known."""
        defs = self.layouts.get((device, version))
        if defs is not None and hist in defs:
            return defs[hist]
        if hist in bins.LEVELS:
            return None
        return bins.layout(hist, version) or False

    def _odometers_now(self, device, epoch):
        """The device's odometers in its newest record, if that record is of
        the given epoch (odometers start at zero with each epoch, so across
        epochs the difference means nothing): {metric: value} or {}."""
        row = self.b.execute("SELECT epoch, schema_id, vals FROM records WHERE device_id = ? "
                             "ORDER BY epoch DESC, seq DESC LIMIT 1", (device,)).fetchone()
        if not row or row[0] != epoch:
            return {}
        metrics = self.col.schema(device, row[1]) or []
        try:
            vals = json.loads(row[2])
        except ValueError:
            return {}
        return {m[0]: v for m, v in zip(metrics, vals) if m[3] == "odometer"}

    def segment_usage(self, seg, since_wall=None):
        """{hist: counts used in the segment} plus run_h, starts, "_layouts"
        and "_lux_w" (the segment's first and newest lux per watt); with
        since_wall, only the part of it after that wall time (the recent
        window). Problems found mark the component."""
        dev = seg["device"]
        out = {"_versions": {}, "_layouts": {}}
        for hist, snaps in self.hists.get(dev, ()):
            pos, walls, vchg, down = self.idx[(dev, hist)]
            ia = self._at(dev, hist, seg["start"]["pos"])
            ib = self._at(dev, hist, seg["end"]["pos"]) if seg["end"] else len(snaps) - 1
            if ib < 0 or ib < ia:
                continue
            if since_wall is not None:
                j = ib
                while j > max(ia, 0) and (walls[j] is None or walls[j] > since_wall):
                    j -= 1
                if j >= 0 and walls[j] is not None and walls[j] <= since_wall and j > ia:
                    ia = j
                if ia >= 0 and walls[ia] is not None:          # where this histogram's window really starts
                    out["_from_wall"] = min(out.get("_from_wall", walls[ia]), walls[ia])
            lay = self._layout(dev, hist, snaps[ib][2])
            if lay is None:                                   # a level: readings, never summed
                if hist == "lux_w":
                    lv = [float(x[3][0]) for x in snaps[max(ia, 0):ib + 1] if x[3].size and x[3][0] > 0]
                    if lv:
                        out["_lux_w"] = (lv[0], lv[-1])
                continue
            lo = max(ia, 0)
            if bisect.bisect_right(vchg, ib) > bisect.bisect_right(vchg, lo):
                self._flag(seg["component"], "%s: %s changed bin layout inside %s's segment: not evaluated"
                           % (dev, hist, seg["component"]))
                continue
            k = bisect.bisect_right(down, lo)
            if k < len(down) and down[k] <= ib:
                p = pos[down[k]]
                self._flag(seg["component"], "%s: %s counts went down at epoch %s seq %s (counters never reset): "
                           "%s's use of it is uncertain" % (dev, hist, p[0], p[1], seg["component"]))
                continue
            a_counts = snaps[ia][3] if ia >= 0 else np.zeros_like(snaps[ib][3])
            out[hist] = snaps[ib][3] - a_counts
            out["_versions"][hist] = snaps[ib][2]
            if lay:
                out["_layouts"][hist] = lay
        so = seg["start"].get("odo", {})
        eo = (seg["end"] or {}).get("odo", {}) if seg["end"] else self._odometers_now(dev, seg["start"]["pos"][0])
        if "load_s" in out:
            out["run_h"] = float(out["load_s"].sum()) / 3600.0
        elif "dim_s" in out:                                  # a luminaire: its lit hours
            out["run_h"] = float(out["dim_s"].sum()) / 3600.0
        elif since_wall is None and _num(so.get("run_time")) and _num(eo.get("run_time")):
            out["run_h"] = float(eo["run_time"] - so["run_time"]) / 3600.0
        for name in ("starts", "cycles"):
            if since_wall is None and _num(so.get(name)) and _num(eo.get(name)):
                out["starts"] = float(eo[name] - so[name])
                break
        return out

    def usage(self, comp):
        """Everything the component has used over all its segments, in any
        asset: the counts add up (Miner is linear)."""
        total = {"_versions": {}, "_layouts": {}}
        dropped = set()
        for seg in self.segs.get(comp, []):
            u = self.segment_usage(seg)
            for h, lay in u["_layouts"].items():
                have = total["_layouts"].get(h)
                if have is not None and have["values"] != lay["values"]:
                    self._flag(comp, "%s: the %s bins of %s differ from those of its earlier assets: not added up"
                               % (comp, h, seg["device"]))
                    dropped.add(h)
                total["_layouts"][h] = lay
            for k, v in u.items():
                if k in ("_versions", "_layouts"):
                    total[k].update(v) if k == "_versions" else None
                elif k == "_lux_w":
                    total[k] = v                              # the newest segment's
                elif k in total:
                    total[k] = total[k] + v
                else:
                    total[k] = v
        for h in dropped:
            total.pop(h, None)
        return total

    def newest_wall(self, device):
        return self.newest.get(device)

    def recent(self, comp, window_days):
        """Usage over the last window_days of the component's newest segment
        (None if its snapshots carry no wall time), and the window actually
        covered in days."""
        segs = self.segs.get(comp)
        if not segs:
            return None, None
        seg = segs[-1]
        end_wall = self.newest_wall(seg["device"]) if seg["end"] is None else seg["end"]["wall"]
        if end_wall is None:
            return None, None
        since = end_wall - window_days * 86400
        u = self.segment_usage(seg, since_wall=since)
        # the counts are differences of snapshots: the window runs from the
        # newest snapshot at or before its start, which after a gap in the
        # snapshots is earlier than asked. The rate is the use over the span
        # the counts really cover (not over the days asked, which would
        # invent a rate up to span/asked times too high), and said.
        from_wall = u.pop("_from_wall", None)
        start_wall = max(min(since, from_wall) if from_wall is not None else since,
                         seg["start"]["wall"] or since)
        days = (end_wall - start_wall) / 86400.0
        asked = (end_wall - max(since, seg["start"]["wall"] or since)) / 86400.0
        if days > 0 and days > asked + 1.0:                  # more than a snapshot interval late
            note = ("%s: no snapshot of %s from %s until after %s (a gap in its history): the usage rate is "
                    "the average over the %.1f days the counts cover, not the last %g; if the part stood "
                    "still in the gap, its recent rate is up to %.1f times that"
                    % (comp, seg["device"], _day(start_wall), _day(since), days, asked, days / max(asked, 1e-9)))
            self.rate_notes.setdefault(comp, [])
            if note not in self.rate_notes[comp]:
                self.rate_notes[comp].append(note)
                self.uncertain.setdefault(comp, []).append(note)
        return (u, days) if days > 0 else (None, None)

    def history(self, comp):
        """Where the component has been: its segments and records."""
        out = []
        for s in self.segs.get(comp, []):
            out.append({"asset": s["device"], "slot": s["slot"], "installed": _when(s["start"]),
                        "removed": _when(s["end"]) if s["end"] else None,
                        "odometers_in": s["start"].get("odo") or None,
                        "odometers_out": (s["end"] or {}).get("odo") or None})
        return out

    # -- operator records --------------------------------------------------------

    def add_record(self, comp, kind, at_s=None, mode=None, mechanism=None, cause=None, detection=None,
                   note=None, source="operator"):
        """One ISO 14224-style record; LedgerError (nothing written) for an
        unknown part, an unknown kind or a code outside the tables."""
        if comp not in self.segs:
            raise LedgerError("event: no component %s in the ledger (no install event names it)" % comp)
        if kind not in KINDS:
            raise LedgerError("event: kind %r is not one of %s" % (kind, ", ".join(KINDS)))
        for name, code in (("mode", mode), ("mechanism", mechanism), ("cause", cause), ("detection", detection)):
            if code is not None and code not in CODES[name]:
                raise LedgerError("event: %s %r is not an ISO 14224 %s code (one of %s)"
                                  % (name, code, name, " ".join(CODES[name])))
        if kind == "failure" and mode is None:
            raise LedgerError("event: a failure needs its --mode (ISO 14224 failure mode, e.g. BRD, VIB, OHE)")
        at_s = int(at_s if at_s is not None else time.time())
        with self.b.transaction(write=True):
            n = self.b.execute(
                "INSERT INTO component_records VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (comp, at_s, kind, mode, mechanism, cause, detection, note, source)).rowcount
        if n != 1:
            raise LedgerError("event: %s already has a %s record at %d; nothing added" % (comp, kind, at_s))
        self.records.setdefault(comp, []).append({"component": comp, "at_s": at_s, "kind": kind, "mode": mode,
                                                  "mechanism": mechanism, "cause": cause,
                                                  "detection": detection, "note": note, "source": source})

    def open_failure(self, comp):
        """The newest failure not followed by a repair, or None."""
        last = None
        for r in self.records.get(comp, []):
            if r["kind"] == "failure":
                last = r
            elif r["kind"] == "repair":
                last = None
        return last

    def store_decision(self, subject, digest, decision, health, cards, trace):
        """Keep a decision with its trace once per (subject, inputs digest)."""
        with self.b.transaction(write=True):
            self.b.execute("INSERT INTO life_decisions VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                           (subject, digest, time.time(), decision, health, json.dumps(cards),
                            json.dumps(trace, sort_keys=True)))

    def decisions(self, subject):
        return [dict(zip(("subject", "digest", "at_s", "decision", "health", "cards", "trace"), r)) for r in
                self.b.execute("SELECT subject, digest, at_s, decision, health, cards, trace FROM life_decisions "
                               "WHERE subject = ? ORDER BY at_s", (subject,))]


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _grid(lists):
    """A series' rows as one (n, bins) float array when every row is a list
    of finite numbers of one length (the usual case), else None."""
    if not lists or not all(type(x) is list for x in lists):
        return None
    try:
        g = np.asarray(lists, dtype=float)
    except (ValueError, TypeError):
        return None
    return g if g.ndim == 2 and g.shape[1] and np.all(np.isfinite(g)) else None


def _row(c):
    """One row's counts as a float array, or None if it is not a list of numbers."""
    if not isinstance(c, list) or not c or not all(_num(v) for v in c):
        return None
    return np.asarray(c, float)


def _parse(text):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def _day(wall):
    return time.strftime("%Y-%m-%d", time.gmtime(wall))


def _when(end):
    if end is None:
        return None
    w = end.get("wall")
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(w)) if w else "time unknown"
    return "%s (epoch %s seq %s)" % (t, end["pos"][0], end["pos"][1])
