"""Life figures for prices, reserves and statements (CIRCULAR.md §5
"economics", §7): the damage each part of an asset took over a window of
days, its damage so far, and projections to a day, from the component
ledger (agent/collector/components.py) and the life cards, through their
public functions only (Ledger.segs/segment_usage/usage/installed,
cards.load/for_component/ref, rul.evaluate, rules.load_config/assess).

A window is cut out of each installation segment of a part in the asset:
the segment's own ends where they fall inside the window, else the
asset's newest record before the window's edge (its position picks the
stress snapshot at or before it, its odometers give run time and starts
where no load histogram does). Damage is linear (Miner), so the windows of
one part add up to its whole history and a part moved from asset A to B
books each asset the damage it took there. D P50 and P90 are the
quantiles over the card's parameter uncertainty (rul.evaluate, fixed seed:
the same history and card give the same figures).

CPython only (numpy through rul)."""
import calendar
import datetime
import json

import numpy as np

from agent.collector.components import Ledger
from agent.collector.life import cards as cardmod
from agent.collector.life import rul, rules


class Context:
    """One read of the component ledger and the cards, shared by every
    asset and window of a price, a bill run or a statement."""

    def __init__(self, col, cards_dir=None, config=None, day_totals=None):
        """day_totals: device -> its Collector.ledger() day totals, or None
        to have the collector walk its records (a statement that has walked
        them for its bills passes them, so the rule table's usage rate does
        not walk them again)."""
        self.col = col
        self.ledger = Ledger(_Days(col, day_totals) if day_totals else col)
        self.cards = cardmod.load(cards_dir)
        self.cfg = rules.load_config(config)
        self._pos = {}
        self._win = {}
        self._dev = None
        self._total = {}
        self._assess = {}

    def card(self, comp):
        return cardmod.for_component(self.cards, comp, self.ledger.part_numbers.get(comp))

    def _evaluate(self, card, usage):
        u = self.cfg["usage"]
        return rul.evaluate(card, usage, None, samples=u["samples"], seed=u["seed"])

    def pos_at(self, device, t):
        """The device's newest record that starts before wall time t, as a
        segment end {device, pos, wall, odo}, or None."""
        k = (device, t)
        if k not in self._pos:
            row = self.col._b.execute(
                "SELECT epoch, seq, schema_id, vals, wall_s FROM records WHERE device_id=? AND wall_s < ? "
                "ORDER BY wall_s DESC, seq DESC LIMIT 1", (device, t)).fetchone()
            if row is None:
                self._pos[k] = None
            else:
                metrics = self.col.schema(device, row[2]) or []
                try:
                    vals = json.loads(row[3])
                except ValueError:
                    vals = []
                odo = {m[0]: v for m, v in zip(metrics, vals) if m[3] == "odometer"}
                self._pos[k] = {"device": device, "pos": (row[0], row[1]), "wall": t, "odo": odo,
                                "record_wall": row[4]}
        return self._pos[k]

    def newest_day(self, device):
        """The UTC day of the device's newest record, or None."""
        p = self.pos_at(device, 1 << 62)
        if p is None or p["record_wall"] is None:
            return None
        return datetime.datetime.fromtimestamp(int(p["record_wall"]), datetime.timezone.utc).date().isoformat()

    def segments_in(self, asset, lo_s, hi_s):
        """{component: [segment clipped to wall times lo_s..hi_s]} of the
        parts that were in the asset in the window."""
        out = {}
        for comp, seg in self._by_device().get(asset, ()):
            s0 = seg["start"].get("wall")
            e0 = seg["end"].get("wall") if seg["end"] else None
            if (s0 is not None and s0 >= hi_s) or (seg["end"] and e0 is not None and e0 <= lo_s):
                continue
            start = seg["start"]
            if s0 is None or s0 < lo_s:
                start = self.pos_at(asset, lo_s) or seg["start"]
            if seg["end"] and (e0 is None or e0 <= hi_s):
                end = seg["end"]
            else:
                end = self.pos_at(asset, hi_s)
                if end is None:
                    continue
            if end["pos"] < start["pos"]:
                continue
            out.setdefault(comp, []).append(dict(seg, start=start, end=end))
        return out

    def window_damage(self, asset, lo_s, hi_s):
        """Per part of the asset in wall times lo_s..hi_s: {component, card
        (type@version or None), cost (card part + labour or None), D_P50,
        D_P90 (None where no figure can be made), uncertain: [...]}."""
        self.prefetch([(asset, lo_s, hi_s)])
        return self._win[(asset, lo_s, hi_s)]

    def prefetch(self, windows):
        """Evaluate the windows (asset, lo_s, hi_s) of many assets at once:
        the segment usages of one card and one shape go through
        rul.evaluate_many together (the same draws as rul.evaluate, so the
        same figures, in one matrix product instead of one call per part)."""
        jobs, new = [], []
        for asset, lo_s, hi_s in windows:
            key = (asset, lo_s, hi_s)
            if key in self._win:
                continue
            rows = []
            for comp, segs in sorted(self.segments_in(asset, lo_s, hi_s).items()):
                card = self.card(comp)
                row = {"component": comp, "card": cardmod.ref(card) if card else None,
                       "type": card["type"] if card else None, "cost": card_cost(card),
                       "core": bool(card and card["core"]), "D_P50": None, "D_P90": None, "uncertain": []}
                rows.append(row)
                if card is None:
                    row["uncertain"].append("no life card rates %s" % comp)
                    continue
                for seg in segs:
                    jobs.append((row, card, self.ledger.segment_usage(seg), self._whole(comp, asset, seg)))
            self._win[key] = rows
            new.append(rows)
        for (row, card, _, whole), fig in zip(jobs, self._batch([(c, u) for _, c, u, _ in jobs])):
            row["uncertain"] += [x for x in fig["uncertain"] if x not in row["uncertain"]]
            if fig["D_P50"] is not None:
                row["D_P50"] = (row["D_P50"] or 0.0) + fig["D_P50"]
                row["D_P90"] = (row["D_P90"] or 0.0) + fig["D_P90"]
            if whole and row["component"] not in self._total:
                # the window held the part's whole life: its total is this figure (the same usage)
                self._total[row["component"]] = {"card": cardmod.ref(card), "D_P50": fig["D_P50"],
                                                  "D_P90": fig["D_P90"]}
        for rows in new:
            for row in rows:
                row["uncertain"] += [x for x in self.ledger.uncertain.get(row["component"], [])
                                     if x not in row["uncertain"]]

    def _whole(self, comp, asset, clipped):
        """Whether a clipped segment is the part's whole life: its only
        segment, from its install to its removal or, still in, to the asset's
        newest record (what Ledger.usage reads)."""
        segs = self.ledger.segs.get(comp, [])
        if len(segs) != 1 or clipped["start"] is not segs[0]["start"]:
            return False
        if segs[0]["end"] is not None:
            return clipped["end"] is segs[0]["end"]
        newest = self.pos_at(asset, 1 << 62)
        return newest is not None and clipped["end"]["pos"] == newest["pos"]

    def _batch(self, items):
        """[(card, usage)] -> [{D_P50, D_P90, uncertain}] in order; usages
        of one card and the same histograms, layouts and counters are
        evaluated together."""
        out = [None] * len(items)
        groups = {}
        for i, (card, u) in enumerate(items):
            groups.setdefault((cardmod.ref(card), _shape(u)), []).append(i)
        us = self.cfg["usage"]
        for idx in groups.values():
            card = items[idx[0]][0]
            first = self._evaluate(card, items[idx[0]][1])       # its uncertain lines hold for the whole group
            out[idx[0]] = {"D_P50": first.get("D_P50"), "D_P90": first.get("D_P90"), "uncertain": first["uncertain"]}
            rest = idx[1:]
            if not rest:
                continue
            if first.get("D_P50") is None:
                for i in rest:
                    out[i] = dict(out[idx[0]])
                continue
            u0 = items[idx[0]][1]
            many = {"_versions": u0["_versions"], "_layouts": u0["_layouts"]}
            for k in u0:
                if not k.startswith("_"):
                    many[k] = np.stack([np.asarray(items[i][1][k], float) for i in rest])
            r = rul.evaluate_many(card, many, many, window_days=1.0, samples=us["samples"], seed=us["seed"])
            for j, i in enumerate(rest):
                out[i] = {"D_P50": float(r["D_P50"][j]), "D_P90": float(r["D_P90"][j]),
                          "uncertain": first["uncertain"]}
        return out

    def total(self, comp):
        """The part's damage since new over all its segments in any asset:
        {card, D_P50, D_P90} (None figures where none can be made)."""
        self.prefetch_totals([comp])
        return self._total[comp]

    def prefetch_totals(self, comps):
        """total() of many parts, evaluated together (see prefetch)."""
        jobs = []
        for comp in dict.fromkeys(comps):
            if comp in self._total:
                continue
            card = self.card(comp)
            self._total[comp] = {"card": cardmod.ref(card) if card else None, "D_P50": None, "D_P90": None}
            if card is not None:
                jobs.append((comp, card, self.ledger.usage(comp)))
        for (comp, _, _), fig in zip(jobs, self._batch([(c, u) for _, c, u in jobs])):
            self._total[comp].update(D_P50=fig["D_P50"], D_P90=fig["D_P90"])

    def _by_device(self):
        """{device: [(component, segment)]}, built once (the ledger's own
        per-asset questions scan every segment)."""
        if self._dev is None:
            self._dev = {}
            for comp, segs in self.ledger.segs.items():
                for seg in segs:
                    self._dev.setdefault(seg["device"], []).append((comp, seg))
        return self._dev

    def installed(self, asset):
        """{component: slot} of the parts in the asset now (Ledger.installed)."""
        return {c: seg["slot"] for c, seg in self._by_device().get(asset, ()) if seg["end"] is None}

    def next_use(self, asset, days_left=None, store=False):
        """rules.assess for one asset (its decision and trace), with the
        contract's days left as the term R1 checks; None when no part was
        ever installed in it."""
        if asset not in self._assess:
            if asset not in self.ledger.assets():
                self._assess[asset] = None
            else:
                cfg = json.loads(json.dumps(self.cfg))
                if days_left is not None:
                    cfg["asset"].setdefault(asset, {}).setdefault("contract_days_left", days_left)
                self._assess[asset] = rules.assess(self.ledger, self.cards, cfg, asset=asset, store=store)
        return self._assess[asset]


class _Days:
    """The collector as the component ledger sees it, with the day totals
    of devices already walked answered from them (Collector.ledger's shape:
    {device: {day: {odometer: total}}})."""

    def __init__(self, col, day_totals):
        self._col = col
        self._days = day_totals

    def __getattr__(self, name):
        return getattr(self._col, name)

    def ledger(self, device=None):
        got = self._days(device) if device is not None else None
        return {device: got} if got is not None else self._col.ledger(device)


def card_cost(card):
    """A card's replacement cost (cost.part + cost.labour) and currency, or None."""
    if not card:
        return None
    c = card.get("cost") or {}
    if "part" not in c and "labour" not in c:
        return None
    return {"amount": repr(float(c.get("part", 0)) + float(c.get("labour", 0))), "currency": c.get("currency"),
            "new_asset": c.get("new_asset")}


def day_s(day, end=False):
    """Wall seconds at the start of a UTC day (its end with end=True)."""
    t = calendar.timegm(datetime.date.fromisoformat(day).timetuple())
    return t + 86400 if end else t


def _shape(u):
    """What must be the same for usages to be evaluated together: their
    histograms (name, bins), layouts and versions, and which counters."""
    out = []
    for k in sorted(u):
        if k in ("_versions", "_layouts"):
            out.append((k, json.dumps(u[k], sort_keys=True, default=str)))
        elif not k.startswith("_"):
            out.append((k, np.shape(u[k])))
    return tuple(out)
