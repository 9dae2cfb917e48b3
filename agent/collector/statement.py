"""`tally statement` and `tally verify`: the customer's monthly outcome
statement, signed, as JSON, HTML and PDF (CPython, collector;
docs/statement.md, CIRCULAR.md §7).

The statement is one JSON object (build()): the month's bills per contract
(agent/collector/contracts.py), units, availability and gaps per day and per
asset, energy and CO2e per unit against the contract's baseline, life used
(the life models of agent/collector/life where a card rates a part, else
the contract's rated life) and the maintenance reserve, posted to the
ledger for the month and read back with its entries (pricing.post_bills),
maintenance done (the reserve's draws) and planned (parts whose D_P90
reaches the warning value before the end of the term, with the day),
residual value (pricing.residual_value) and next use (the rule table's
decision and trace) at the end of the term, the MCI
utility factor X = (L/L_av)(U/U_av), and the evidence: a SHA-256 over the
canonical ledger records it rests on (the seq ranges of its bills).

write() signs the canonical bytes of that object (json sort_keys, compact,
ASCII) with the provider's Ed25519 key and writes PREFIX.json (statement +
signature), PREFIX.html (Jinja2, matplotlib SVG plots) and PREFIX.pdf
(fpdf2, matplotlib PNG plots); both show the records hash and the key's
fingerprint. verify_file() needs only the public key (and, optionally, the
ledger, to recompute the records hash).
"""
import base64
import datetime
import gc
import hashlib
import io
import json
from fractions import Fraction

from agent.collector import billing, contracts, pricing
from agent.collector.billing import BillingError

STATEMENT_VERSION = "tally.statement.v1"
PLAN_AT = Fraction(8, 10)          # plan a replacement when life used reaches this (WarningValue 0.8)


class StatementError(ValueError):
    """A statement that cannot be made, read or verified: one line."""


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _q(x, places=6):
    return billing.quantity(Fraction(round(x * 10 ** places), 10 ** places))


# -- evidence: the records a statement rests on ------------------------------------------

_REC_SQL = ("SELECT device_id, epoch, seq, from_seq, flags, schema_id, boot, uptime_ms, wall_s, wall_q, ival_ms, "
            "vals FROM records WHERE device_id=? AND epoch=? AND seq>=? AND seq<=? ORDER BY seq")


def records_hash(col, ranges):
    """SHA-256 over the records of the ranges, in their order: one line per
    record, the JSON array of its stored columns [device_id, epoch, seq,
    from_seq, flags, schema_id, boot, uptime_ms, wall_s, wall_q, ival_ms,
    vals] with vals spliced in as the ledger stores it (compact JSON text),
    then a newline. Returns (hex digest, number of records)."""
    h = hashlib.sha256()
    n = 0
    for r in ranges:
        dev = json.dumps(r["asset"], ensure_ascii=True)
        for row in col._b.execute(_REC_SQL, (r["asset"], r["epoch"], r["from_seq"], r["to_seq"])):
            h.update(("[%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s]\n" % ((dev,) + tuple(row[1:11]) + (row[11],))).encode())
            n += 1
    return h.hexdigest(), n


# -- the statement --------------------------------------------------------------------------

def build(col, customer, period, cards_dir=None, config=None):
    """The statement of a customer for a period (a dict; write() renders
    it). The garbage collector is paused while it is built: the record
    walk's per-asset lists hold hundreds of thousands of tuples with dicts,
    which every full collection would walk again (about a fifth of the
    build's CPU), and nothing built here leaves cycles to collect."""
    was = gc.isenabled()
    gc.disable()
    try:
        return _build(col, customer, period, cards_dir, config)
    finally:
        if was:
            gc.enable()


def _build(col, customer, period, cards_dir=None, config=None):
    data = contracts.stored(col)
    if customer not in data["customers"]:
        raise BillingError("no customer %s in the ledger (it has %s)" % (customer, ", ".join(sorted(data["customers"]))
                                                                         or "none"))
    first, last, label = period
    lo, hi = first.isoformat(), last.isoformat()
    ids = sorted(c for c, v in data["contracts"].items() if v["customer"] == customer)
    if not ids:
        raise BillingError("customer %s has no contract" % customer)
    if all(hi < data["contracts"][c]["start"] for c in ids):
        c = min(ids, key=lambda c: data["contracts"][c]["start"])
        raise BillingError("period %s is before contract %s starts (%s)" % (label, c, data["contracts"][c]["start"]))
    live = [c for c in ids if data["contracts"][c]["start"] <= hi and data["contracts"][c]["end"] >= lo]
    if not live:
        raise BillingError("no contract of customer %s runs in period %s" % (customer, label))
    kinds = sorted({(data["contracts"][c]["metric"], data["contracts"][c]["unit"]) for c in live})
    if len(kinds) > 1:
        raise BillingError("customer %s has contracts for different outcomes in %s (%s): a statement adds up one "
                           "outcome, so bill them with tally report --by contract" % (
                               customer, label, ", ".join("%s in %s" % k for k in kinds)))
    cache = {}
    bills = [contracts.bill(col, data, c, period, cache) for c in live]
    days = contracts._days(lo, hi)
    daily = {d: {"units": Fraction(0), "kwh": Fraction(0), "covered_ms": 0, "assets": 0} for d in days}
    assets, ranges = [], []
    usage = pricing.Usage(col)
    totals = {}
    wanted = []

    def day_totals(device):
        """Collector.ledger(device)[device] from the walk the bills already
        made, for the odometers the life rules read of it (the outcome and
        the error counters: rules.device_usage, the ledger's derived failures)."""
        if device not in cache:
            return None
        if not wanted:
            from agent.collector.life import rules
            u = ctx.cfg
            wanted.extend(set(rules.ERRORS) | {u["usage"]["outcome"]} |
                          {t["outcome"] for t in u["asset"].values() if "outcome" in t})
        if device not in totals:
            t = totals[device] = {}
            have = [k for k in wanted if k in cache[device][1]]       # the asset's odometers among them
            for day, _e, _s, _f, _fl, deltas, _v, _i in cache[device][0]:
                acc = t.get(day)
                if acc is None:
                    acc = t[day] = {}
                for k in have:
                    d = deltas.get(k)
                    if d:
                        acc[k] = acc.get(k, 0) + d
        return totals[device]
    ctx = pricing.life_context(col, cards_dir, config, day_totals)
    accounts = pricing.post_bills(col, data, bills, period, ctx, usage)
    ctx.prefetch_totals([comp for a in accounts for comp in sorted(ctx.installed(a))])
    fleet = {"units": Fraction(0), "kwh": Fraction(0)}
    done, planned, mci = [], [], []
    for b in bills:
        c = data["contracts"][b["contract"]]
        p, bl = c["pricing"], c["baseline"]
        first_line = b["lines"][0]["sources"] if b["lines"] and isinstance(b["lines"][0]["sources"], list) else []
        ranges += first_line
        for s in contracts.segments(data, b["contract"], lo, hi):
            a = s["asset"]
            recs, units = cache[a]
            fac = Fraction(0)
            if c["metric"] in units and units[c["metric"]] and units[c["metric"]][1] is not None:
                mu, sc = units[c["metric"]]
                fac = Fraction(10) ** sc * contracts.factor(c["unit"], mu, "unit", c["metric"], "", a)
            efac = Fraction(0)
            if c["energy"] in units and units[c["energy"]] and units[c["energy"]][1] is not None:
                eu, esc = units[c["energy"]]
                efac = Fraction(10) ** esc * contracts.factor("kWh", eu, "energy", c["energy"], "", a)
            seg_days = contracts._days(s["from_"], s["to_"])
            cov = 0
            raw = {}                       # day -> [raw units, raw energy, covered ms]: ints, scaled once
            f_, t_, mk, ek = s["from_"], s["to_"], c["metric"], c["energy"]
            for day, epoch, seq, frm, flags, deltas, vals, ival in recs:
                if f_ <= day <= t_:
                    acc = raw.get(day)
                    if acc is None:
                        acc = raw[day] = [0, 0, 0]
                    acc[0] += deltas.get(mk, 0)
                    acc[1] += deltas.get(ek, 0)
                    acc[2] += (seq - frm + 1) * (ival or 60000)
            au = ak = Fraction(0)
            for day, (ru, re_, ms) in raw.items():
                u, k = ru * fac, re_ * efac
                dd = daily[day]
                dd["units"] += u
                dd["kwh"] += k
                dd["covered_ms"] += ms
                cov += ms
                au += u
                ak += k
            for d in seg_days:
                daily[d]["assets"] += 1
            fleet["units"] += au
            fleet["kwh"] += ak
            res = accounts[a]
            month = [m for m in res["months"] if m["month"] == label[:7]]
            minor = billing._MINOR_EXCEPT.get(c["currency"], 2)
            ents = month[0]["entries"] if month else []
            basis = None
            for e in ents:                      # the newest version of this contract's accrual has the full basis
                if e["kind"].startswith("accrual") and e["ref"] == c["id"]:
                    basis = e["basis"]
            comps_now = basis["components"] if basis else []
            seg_ents = [e for e in ents if e["kind"].startswith("draw") and s["from_"] <= e["day"] <= s["to_"]]
            for e in seg_ents:
                recs = e["basis"]["records"]
                code = "; ".join(sorted({("%s %s" % (r.get("mode") or "", r.get("mechanism") or "")).strip()
                                         if r["table"] == "component_records" else r.get("code", "")
                                         for r in recs if r["table"] in ("component_records", "repairs")} - {""}))
                notes = "; ".join(r.get("note") or "" for r in recs if r.get("note"))
                done.append({"day": e["day"], "asset": a, "component": e["basis"]["component"], "code": code,
                             "note": notes or ("part swapped" if any(r["table"] == "part_events" for r in recs)
                                               else ""),
                             "cost": billing.money(-e["amount"], minor), "currency": c["currency"], "ref": e["ref"],
                             "contract": c["id"], "records": recs})
            # life used so far: the life model's D (all the part's segments) for the parts in it now,
            # usage since its first assignment / the contract's rated life for the components no card rates
            life_total, life_src = {}, {}
            for comp in sorted(ctx.installed(a)):
                tot = ctx.total(comp)
                if tot["D_P50"] is not None:
                    life_total[comp] = pricing._fx(tot["D_P50"])
                    life_src[comp] = "life model %s (P50, all its segments)" % tot["card"]
            first = data_first(data, a)
            fb = [x["name"] for x in comps_now if x["source"].startswith("rated life")]
            if fb:
                so_far, un = usage.window(a, first, hi)
                for x in pricing.life_used(c, a, so_far, un, first, hi):
                    if x["name"] in fb:
                        life_total[x["name"]] = x["used"]
                        life_src[x["name"]] = "rated life (contract): usage since %s" % first
            asof = min(s["to_"], ctx.newest_day(a) or s["to_"])
            days_left = max((datetime.date.fromisoformat(c["end"]) - datetime.date.fromisoformat(asof)).days, 0)
            rates = pricing.rates_of(comps_now, s["from_"], s["to_"], asof)
            due = pricing.planned_maintenance(ctx, c, a, asof, rates)
            dec = None
            if due:                       # the rule table's decision and trace, whose R1 line plans the maintenance
                dec = ctx.next_use(a, days_left)
                dec = dec["assets"].get(a) if dec else None
                due = pricing.planned_maintenance(ctx, c, a, asof, rates, dec)
            planned += due
            for name in fb:
                used = life_total.get(name, 0)
                if used >= PLAN_AT:
                    planned.append({"asset": a, "component": name, "life_used": _q(used), "due": asof,
                                    "action": "replace at the next visit (life used >= %s)" % _q(PLAN_AT),
                                    "why": life_src[name], "rule": None})
            span_days = len(seg_days)
            per_year = au * 365 / span_days if span_days else Fraction(0)
            x = None
            if all(k in p for k in ("lifetime_years", "lifetime_years_av", "units_per_year_av")):
                x = (Fraction(p["lifetime_years"]) / Fraction(p["lifetime_years_av"])) * (
                    per_year / Fraction(p["units_per_year_av"]))
                mci.append(x)
            rv, rv_in, plan = None, None, None
            life_rv = pricing.residual_value(ctx, c, a, asof, rates)
            if life_rv is not None:
                rv = life_rv["value"]
                rv_in = dict(life_rv, value=billing.quantity(Fraction(round(rv * 100), 100)))
                plan = life_rv["option"]
            elif all(k in p for k in ("capital", "lifetime_units")):
                K, RV, N = Fraction(p["capital"]), Fraction(p.get("residual", "0")), Fraction(p["lifetime_units"])
                so_far, _ = usage.window(a, first, hi)
                done_units = so_far.get(c["metric"], 0) * contracts.factor(c["unit"], units[c["metric"]][0], "unit",
                                                                          c["metric"], "", a) \
                    if c["metric"] in units else Fraction(0)
                rest = (datetime.date.fromisoformat(c["end"]) - datetime.date.fromisoformat(hi)).days
                at_end = done_units + (au / span_days * rest if span_days else 0)
                used_frac = min(at_end / N, Fraction(1))
                rv = max(RV, K - (K - RV) * used_frac)
                rv_in = {"source": "contract (no card rates a core part of this machine): capital less (capital - "
                                   "residual) x the share of lifetime units delivered by the end of the term",
                         "K": p["capital"], "residual": p.get("residual", "0"), "lifetime_units": p["lifetime_units"],
                         "units_at_end": _q(at_end), "term_end": c["end"]}
                plan = ("redeploy to another site (R4): under half its life used" if used_frac < Fraction(1, 2)
                        else "refurbish or remanufacture (R5)" if used_frac < Fraction(9, 10)
                        else "harvest parts and recycle (R6/R7)")
            assets.append({
                "asset": a, "contract": c["id"], "site": s["site"], "from": s["from_"], "to": s["to_"],
                "units": _q(au), "unit": c["unit"], "energy_kwh": _q(ak),
                "kwh_per_unit": _q(ak / au) if au else None,
                "availability": _q(Fraction(min(cov, span_days * 86400000), span_days * 86400000)) if span_days else "0",
                "life_used_this_month": [{"component": x["name"], "life_used": x["life_used"],
                                          "life_used_p90": x["life_used_p90"], "source": x["source"],
                                          "parts": x["parts"]} for x in comps_now],
                "life_used_total": {k: _q(v) for k, v in sorted(life_total.items())},
                "life_used_total_source": life_src,
                "reserve_accrued": billing.money(month[0]["accrued"], minor) if month else billing.money(0, minor),
                "reserve_drawn": billing.money(month[0]["drawn"], minor) if month else billing.money(0, minor),
                "reserve_balance": billing.money(res["balance"], minor), "currency": c["currency"],
                "residual_value_end_of_term": billing.quantity(Fraction(round(rv * 100), 100)) if rv is not None else None,
                "residual_value_inputs": rv_in,
                "next_use_at_end_of_term": plan,
                "next_use_now": {"decision": dec["decision"], "health": dec["health"], "cards": dec["cards"],
                                 "trace": dec["trace"]} if dec else None,
                "utility_factor_x": _q(x, 3) if x is not None else None})
    c0 = data["contracts"][bills[0]["contract"]]
    bl = c0["baseline"]
    kpu = fleet["kwh"] / fleet["units"] if fleet["units"] else None
    grid = Fraction(bl["grid_kg_per_kwh"]) if "grid_kg_per_kwh" in bl else None
    energy = {"units": _q(fleet["units"]), "unit": c0["unit"], "energy_kwh": _q(fleet["kwh"]),
              "kwh_per_unit": _q(kpu) if kpu is not None else None,
              "baseline_kwh_per_unit": bl.get("kwh_per_unit"), "best_kwh_per_unit": bl.get("best_kwh_per_unit"),
              "grid_kg_co2e_per_kwh": bl.get("grid_kg_per_kwh"),
              "co2e_kg_per_unit": _q(kpu * grid) if kpu is not None and grid is not None else None,
              "baseline_co2e_kg_per_unit": _q(Fraction(bl["kwh_per_unit"]) * grid)
              if grid is not None and "kwh_per_unit" in bl else None}
    if kpu is not None and "kwh_per_unit" in bl and grid is not None:
        saved = (Fraction(bl["kwh_per_unit"]) - kpu) * fleet["units"]
        energy["energy_saved_kwh"] = _q(saved)
        energy["co2e_saved_kg"] = _q(saved * grid)
    if kpu and "best_kwh_per_unit" in bl:
        energy["technology_gap"] = _q((kpu - Fraction(bl["best_kwh_per_unit"])) / kpu, 3)
    digest, n = records_hash(col, ranges)
    return {"statement": STATEMENT_VERSION, "customer": customer, "customer_name": data["customers"][customer],
            "period": {"from": lo, "to": hi, "label": label},
            "bills": [contracts.bill_json(b) for b in bills],
            "totals": _totals(bills),
            "daily": [{"day": d, "units": _q(v["units"]), "energy_kwh": _q(v["kwh"]),
                       "availability": _q(Fraction(min(v["covered_ms"], v["assets"] * 86400000),
                                                   v["assets"] * 86400000)) if v["assets"] else None}
                      for d, v in sorted(daily.items())],
            "energy": energy, "assets": assets,
            "maintenance": {"done": done, "planned": planned},
            "utility_factor": {"x_mean": _q(sum(mci) / len(mci), 3) if mci else None,
                               "formula": "X = (L/L_av)(U/U_av): contract lifetime over the industry average, "
                                          "units per year measured this month over the industry average"},
            "evidence": {"records": n, "records_sha256": digest, "ranges": ranges,
                         "hash": "sha256 over one line per record: [device_id, epoch, seq, from_seq, flags, "
                                 "schema_id, boot, uptime_ms, wall_s, wall_q, ival_ms, vals] with vals as stored, "
                                 "ranges in the order listed"}}


def data_first(data, asset):
    return min(a["from"] for a in data["assignments"] if a["asset"] == asset)


def _totals(bills):
    t = {}
    for b in bills:
        t[b["currency"]] = t.get(b["currency"], 0) + b["total"]
    return {cur: billing.money(v, billing._MINOR_EXCEPT.get(cur, 2)) for cur, v in sorted(t.items())}


# -- keys and signatures -------------------------------------------------------------------

def keygen(prefix):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    k = Ed25519PrivateKey.generate()
    with open(prefix + ".key", "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    with open(prefix + ".pub", "wb") as f:
        f.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo))


def _raw_pub(pub):
    from cryptography.hazmat.primitives import serialization
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _load(path, private):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 16)
        k = (serialization.load_pem_private_key(raw, None) if private else serialization.load_pem_public_key(raw))
    except FileNotFoundError:
        raise StatementError("%s: no such key file" % path)
    except (ValueError, TypeError) as e:
        raise StatementError("%s is not a PEM %s key: %s" % (path, "private" if private else "public", e))
    if not isinstance(k, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise StatementError("%s is not an Ed25519 key" % path)
    return k


def sign(body, key_path):
    k = _load(key_path, True)
    msg = canonical(body)
    return {"statement": body, "signature": {
        "alg": "Ed25519", "over": "the canonical bytes of 'statement': JSON, keys sorted, no spaces, ASCII",
        "statement_sha256": hashlib.sha256(msg).hexdigest(),
        "key_sha256": hashlib.sha256(_raw_pub(k.public_key())).hexdigest(),
        "value": base64.b64encode(k.sign(msg)).decode()}}


def verify(doc, pub_path, col=None):
    """Check a signed statement; returns a one-line account or raises
    StatementError naming what is wrong."""
    from cryptography.exceptions import InvalidSignature
    pub = _load(pub_path, False)
    if not isinstance(doc, dict) or not isinstance(doc.get("statement"), dict) or \
            not isinstance(doc.get("signature"), dict):
        raise StatementError("not a signed Tally statement (no 'statement' and 'signature')")
    sig = doc["signature"]
    if sig.get("alg") != "Ed25519":
        raise StatementError("signature algorithm %s is not Ed25519" % billing._show(sig.get("alg")))
    fp = hashlib.sha256(_raw_pub(pub)).hexdigest()
    if sig.get("key_sha256") != fp:
        raise StatementError("signed with another key (key %s, this public key is %s)"
                             % (str(sig.get("key_sha256"))[:16], fp[:16]))
    msg = canonical(doc["statement"])
    try:
        pub.verify(base64.b64decode(str(sig.get("value", "")), validate=True), msg)
    except (InvalidSignature, ValueError):
        raise StatementError("the signature does not match: the statement was changed after it was signed")
    body = doc["statement"]
    out = "statement of %s for %s: signature good (Ed25519, key %s); rests on %s records, sha256 %s" % (
        body.get("customer"), body.get("period", {}).get("label"), fp[:16], body["evidence"]["records"],
        body["evidence"]["records_sha256"])
    if col is not None:
        digest, n = records_hash(col, body["evidence"]["ranges"])
        if (digest, n) != (body["evidence"]["records_sha256"], body["evidence"]["records"]):
            raise StatementError("the ledger's records differ from those the statement rests on: %d records, "
                                 "sha256 %s in the ledger; %d, %s in the statement"
                                 % (n, digest[:16], body["evidence"]["records"],
                                    body["evidence"]["records_sha256"][:16]))
        out += "; the ledger's records match"
    return out


def verify_file(path, pub_path, col=None):
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(64 << 20))
    except FileNotFoundError:
        raise StatementError("%s: no such file" % path)
    except (ValueError, UnicodeDecodeError) as e:
        raise StatementError("%s is not JSON: %s" % (path, e))
    return verify(doc, pub_path, col)


# -- rendering -------------------------------------------------------------------------------

def plots(st, fmt=("svg", "png")):
    """{format: {name: bytes}} of the statement's plots (matplotlib; each
    figure drawn once and saved in every format asked for)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fmts = (fmt,) if isinstance(fmt, str) else fmt
    matplotlib.rcParams["svg.fonttype"] = "none"          # text as text, not paths
    days = [int(d["day"][8:]) for d in st["daily"]]         # day of the month
    out = {f: {} for f in fmts}

    def fig(name, draw, title):
        f = Figure(figsize=(7, 2.4), dpi=80)
        ax = f.add_subplot()
        draw(ax)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        f.subplots_adjust(left=0.09, right=0.98, bottom=0.12, top=0.88)
        for ff in fmts:
            buf = io.BytesIO()
            f.savefig(buf, format=ff)
            out[ff][name] = buf.getvalue()

    unit = st["energy"]["unit"]
    fig("units", lambda ax: (ax.set_xlabel("day of the month", fontsize=7),
                             ax.bar(days, [float(d["units"]) for d in st["daily"]], color="#3b6ea5")),
        "%s delivered per day" % unit)

    def avail(ax):
        ax.plot(days, [float(d["availability"] or 0) * 100 for d in st["daily"]], marker=".", color="#2a8c4a")
        for b in st["bills"]:
            for lv in b["service_levels"]:
                if lv["name"] == "availability":
                    ax.axhline(float(lv["target"]) * 100, color="#c0392b", linestyle="--", linewidth=1)
        ax.set_ylim(0, 105)
        ax.set_ylabel("%", fontsize=7)
    fig("availability", avail, "availability per day (red: contract target; 0 = a day without data)")
    e = st["energy"]

    def energy(ax):
        ax.plot(days, [float(d["energy_kwh"]) / float(d["units"]) if float(d["units"]) else float("nan")
                       for d in st["daily"]], marker=".", label="measured")
        for key, lab, col in (("baseline_kwh_per_unit", "baseline", "#c0392b"),
                              ("best_kwh_per_unit", "best available", "#7f8c8d")):
            if e.get(key):
                ax.axhline(float(e[key]), linestyle="--", color=col, linewidth=1, label=lab)
        ax.legend(fontsize=7)
        ax.set_ylabel("kWh/%s" % unit, fontsize=7)
    fig("energy", energy, "energy per %s against the baseline" % unit)
    if e.get("grid_kg_co2e_per_kwh"):
        g = float(e["grid_kg_co2e_per_kwh"])

        def co2(ax):
            ax.plot(days, [g * float(d["energy_kwh"]) / float(d["units"]) if float(d["units"]) else float("nan")
                           for d in st["daily"]], marker=".", color="#8e44ad", label="measured")
            if e.get("baseline_co2e_kg_per_unit"):
                ax.axhline(float(e["baseline_co2e_kg_per_unit"]), linestyle="--", color="#c0392b", label="baseline")
            ax.legend(fontsize=7)
            ax.set_ylabel("kg CO2e/%s" % unit, fontsize=7)
        fig("co2e", co2, "CO2e per %s against the baseline" % unit)
    worst = {}                 # per component type (a part's card type, a contract component's name): the most worn
    for a in st["assets"]:
        src = a.get("life_used_total_source", {})
        for k, v in a["life_used_total"].items():
            g = src.get(k, "").split("life model ", 1)[1].split("@")[0] if src.get(k, "").startswith("life model ") \
                else k
            worst[g] = max(worst.get(g, 0.0), float(v))
    comps = sorted(worst)
    if comps:
        def life(ax):
            vals = [worst[k] * 100 for k in comps]
            ax.bar(range(len(comps)), vals, color="#d35400", tick_label=comps)
            ax.axhline(float(PLAN_AT) * 100, linestyle="--", color="#c0392b", linewidth=1)
            ax.set_ylabel("% of rated life", fontsize=7)
        fig("life", life, "life used so far, most worn part of each type (red: replacement planned)")
    if st["assets"]:
        cur = st["assets"][0]["currency"]
        mine = [a for a in st["assets"] if a["currency"] == cur]

        def reserve(ax):
            vals = [sum(float(a[k]) for a in mine) for k in ("reserve_accrued", "reserve_drawn", "reserve_balance")]
            ax.bar(range(3), vals, color=["#2a8c4a", "#c0392b", "#3b6ea5"],
                   tick_label=["accrued this month", "drawn by repairs", "balance"])
            ax.axhline(0, color="#333", linewidth=0.8)
            ax.set_ylabel(cur, fontsize=7)
        fig("reserve", reserve, "maintenance reserve, all machines (%s)" % cur)
    return out


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Outcome statement {{ s.customer_name }} {{ s.period.label }}</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}
td.n{text-align:right}.h{font-family:monospace;font-size:80%;word-break:break-all}.missed{color:#b00}</style></head>
<body>
<h1>Outcome statement: {{ s.customer_name }}</h1>
<p>Period {{ s.period.from }} to {{ s.period.to }}. Amounts due: {% for c, v in s.totals.items() %}<b>{{ v }} {{ c }}</b> {% endfor %}</p>
<h2>What you received</h2>
<p>{{ s.energy.units }} {{ s.energy.unit }} delivered by {{ s.assets|length }} machine(s), using {{ s.energy.energy_kwh }} kWh
({{ s.energy.kwh_per_unit }} kWh per {{ s.energy.unit }}{% if s.energy.baseline_kwh_per_unit %}; your baseline was {{ s.energy.baseline_kwh_per_unit }}{% endif %}).
{% if s.energy.co2e_saved_kg %}Against the baseline this saved {{ s.energy.energy_saved_kwh }} kWh and {{ s.energy.co2e_saved_kg }} kg CO&#8322;e.{% endif %}</p>
{% for n in ('units','availability','energy','co2e','life','reserve') %}{% if n in svg %}<figure>{{ svg[n] }}</figure>{% endif %}{% endfor %}
<h2>Bills</h2>
{% for b in s.bills %}<h3>Contract {{ b.contract }} ({{ b.period.billed_from }} to {{ b.period.billed_to }}, {{ b.currency }})</h3>
<table><tr><th>item</th><th>quantity</th><th>unit</th><th>unit price</th><th>amount</th></tr>
{% for x in b.lines %}<tr><td>{{ x.item }}</td><td class=n>{{ x.quantity }}</td><td>{{ x.unit }}</td><td class=n>{{ x.unit_price }}</td><td class=n>{{ x.amount }}</td></tr>{% endfor %}
<tr><th colspan=4>total</th><th class=n>{{ b.total }}</th></tr></table>
{% for lv in b.service_levels %}<p{% if not lv.met %} class=missed{% endif %}>Service level {{ lv.name }}: target {{ lv.target }}, measured {{ lv.measured }}: {{ 'met' if lv.met else 'missed; credit ' ~ lv.credit ~ ' of the bill' }}.</p>{% endfor %}
{% for q in b.data_quality %}{% if q.days_without_data or q.gaps %}<p>Data: {{ q.asset }} sent no data on {{ q.days_without_data|length }} day(s){% if q.gaps %}; {{ q.gaps|length }} gap(s) in its records{% endif %}.</p>{% endif %}{% endfor %}
{% endfor %}
<h2>Machines: life used, reserve, residual value</h2>
<table><tr><th>asset</th><th>site</th><th>days</th><th>{{ s.energy.unit }}</th><th>kWh/unit</th><th>availability</th><th>life used (total)</th><th>reserve this month</th><th>reserve balance</th><th>residual value at end of term</th><th>next use</th><th>X</th></tr>
{% for a in s.assets %}<tr><td>{{ a.asset }}</td><td>{{ a.site }}</td><td>{{ a.from }}..{{ a.to }}</td><td class=n>{{ a.units }}</td><td class=n>{{ a.kwh_per_unit }}</td><td class=n>{{ a.availability }}</td>
<td>{% for k, v in a.life_used_total.items() %}{{ k }} {{ v }} {% endfor %}</td><td class=n>{{ a.reserve_accrued }}</td><td class=n>{{ a.reserve_balance }}</td><td class=n>{{ a.residual_value_end_of_term }}</td><td>{{ a.next_use_at_end_of_term }}</td><td class=n>{{ a.utility_factor_x }}</td></tr>{% endfor %}</table>
<p>The maintenance reserve is what the wear of this month will cost to repair: for each part, its cost times the share of its life used this month (from the part's life model where one rates it, else from the rated life in the contract). Repairs are paid from it.</p>
<h3>Reserve account this month</h3>
<table><tr><th>asset</th><th>entry</th><th>amount</th><th>rests on</th></tr>
{% for b in s.bills %}{% for r in b.reserve %}{% for e in r.entries %}<tr><td>{{ r.asset }}</td><td>{{ e.kind }}{% if e.version > 1 %} v{{ e.version }}{% endif %}</td><td class=n>{{ e.amount }}</td>
<td>{% if e.kind.startswith('draw') %}{{ e.ref }} ({{ e.basis.cost_from }}){% else %}{% for c in e.basis.components %}{{ c.name }} {{ c.cost }} x {{ c.life_used }} ({{ c.source }}); {% endfor %}{% if e.basis.adjusts %} {{ e.basis.adjusts.why }}{% endif %}{% endif %}</td></tr>{% endfor %}{% endfor %}{% endfor %}</table>
<h3>Residual value at the end of the term</h3>
{% for a in s.assets %}{% if a.residual_value_inputs %}<p>{{ a.asset }}: {{ a.residual_value_end_of_term }} {{ a.currency }}. {% if a.residual_value_inputs.option %}{{ a.residual_value_inputs.option }}; new {{ a.residual_value_inputs.K }} ({{ a.residual_value_inputs.K_from }}), core damage at the end of the term {{ a.residual_value_inputs.D_core_P90_end }} (P90), restoring the wear parts {{ a.residual_value_inputs.restore_wear_parts }}, harvest and scrap {{ a.residual_value_inputs.harvest_value }} ({{ a.residual_value_inputs.source }}).{% else %}{{ a.residual_value_inputs.source }}.{% endif %}
{% if a.next_use_now %} Next use today by the rule table: {{ a.next_use_now.decision }} (health {{ a.next_use_now.health }}).{% endif %}</p>{% endif %}{% endfor %}
<h2>Maintenance</h2>
<p>Done: {% for r in s.maintenance.done %}{{ r.day }} {{ r.asset }} {{ r.component }} ({{ r.code }}) {{ r.note }}, {{ r.cost }} {{ r.currency }} from the reserve [{{ r.ref }}]; {% else %}none this month.{% endfor %}</p>
<p>Planned: {% for r in s.maintenance.planned %}{{ r.asset }} {{ r.component }}: {{ r.action }} ({{ r.why }}); {% else %}nothing due before the end of the term.{% endfor %}</p>
<h2>Circularity</h2><p>Utility factor X = (L/L<sub>av</sub>)(U/U<sub>av</sub>) = {{ s.utility_factor.x_mean }} (Ellen MacArthur Foundation MCI; above 1 means the machines serve longer or more intensely than the industry average).</p>
<h2>Proof</h2><p>This statement rests on {{ s.evidence.records }} ledger records, SHA-256 <span class=h>{{ s.evidence.records_sha256 }}</span>.
It is signed with the provider's Ed25519 key <span class=h>{{ sig.key_sha256 }}</span>; the signed statement's SHA-256 is <span class=h>{{ sig.statement_sha256 }}</span>.
Check it with <code>tally verify STATEMENT.json --pubkey PROVIDER.pub</code>.</p>
</body></html>
"""


def html(signed, svg=None):
    import jinja2
    st = signed["statement"]
    svg = plots(st, "svg")["svg"] if svg is None else svg
    env = jinja2.Environment(autoescape=True)
    marks = {k: _markup(v) for k, v in svg.items()}
    return env.from_string(_HTML).render(s=st, sig=signed["signature"], svg=marks)


def _markup(v):
    from markupsafe import Markup
    t = v.decode()
    return Markup(t[t.find("<svg"):])


def _latin(t):
    return str(t).replace("\u2082", "2").encode("latin-1", "replace").decode("latin-1")


def pdf(signed, png=None):
    from fpdf import FPDF
    st, sig = signed["statement"], signed["signature"]
    png = plots(st, "png")["png"] if png is None else png
    d = FPDF()
    d.set_auto_page_break(True, 15)
    d.add_page()
    W = d.epw

    def para(text, size=9, style=""):
        d.set_font("helvetica", style, size)
        d.multi_cell(W, 4.5, _latin(text), new_x="LMARGIN", new_y="NEXT")
        d.ln(1)

    para("Outcome statement: %s" % st["customer_name"], 15, "B")
    para("Period %s to %s. Amounts due: %s" % (st["period"]["from"], st["period"]["to"],
                                               ", ".join("%s %s" % (v, c) for c, v in st["totals"].items())), 10)
    e = st["energy"]
    para("%s %s delivered by %d machine(s), using %s kWh (%s kWh per %s; baseline %s)." % (
        e["units"], e["unit"], len(st["assets"]), e["energy_kwh"], e["kwh_per_unit"], e["unit"],
        e.get("baseline_kwh_per_unit") or "not given"))
    if e.get("co2e_saved_kg"):
        para("Against the baseline this saved %s kWh and %s kg CO2e." % (e["energy_saved_kwh"], e["co2e_saved_kg"]))
    for n in ("units", "availability", "energy", "co2e", "life", "reserve"):
        if n in png:
            d.image(io.BytesIO(png[n]), w=W)
    for b in st["bills"]:
        para("Contract %s (%s to %s, %s)" % (b["contract"], b["period"]["billed_from"], b["period"]["billed_to"],
                                             b["currency"]), 11, "B")
        with d.table(col_widths=(50, 20, 12, 18, 20), text_align=("LEFT", "RIGHT", "LEFT", "RIGHT", "RIGHT"),
                     line_height=4.5) as t:
            d.set_font("helvetica", "", 8)
            t.row(("item", "quantity", "unit", "unit price", "amount"))
            for x in b["lines"]:
                t.row(tuple(_latin(v) for v in (x["item"], x["quantity"], x["unit"], x["unit_price"], x["amount"])))
            t.row(("total", "", "", "", b["total"]))
        for lv in b["service_levels"]:
            para("Service level %s: target %s, measured %s: %s." % (
                lv["name"], lv["target"], lv["measured"], "met" if lv["met"] else "missed; credit %s" % lv["credit"]))
    para("Machines: life used, reserve, residual value", 11, "B")
    with d.table(col_widths=(22, 20, 16, 16, 34, 16, 16, 20, 10), line_height=4) as t:
        d.set_font("helvetica", "", 7)
        t.row(("asset", "site", e["unit"], "availability", "life used (total)", "reserve month", "reserve balance",
               "residual end of term", "X"))
        for a in st["assets"]:
            t.row(tuple(_latin(v if v is not None else "") for v in (
                a["asset"], a["site"], a["units"], a["availability"],
                " ".join("%s %s" % kv for kv in a["life_used_total"].items()), a["reserve_accrued"],
                a["reserve_balance"], _rv_cell(a), a["utility_factor_x"])))
    m = st["maintenance"]
    draws = ["%s %s %s: %s" % (r["asset"], e["amount"].lstrip("-"), r["currency"], e["ref"])
             for b in st["bills"] for r in b.get("reserve", []) for e in r["entries"] if e["kind"].startswith("draw")]
    para("Reserve drawn this month: " + ("; ".join(draws) or "nothing") + ". Each accrual's basis (components, costs, "
         "life used and its source) and each draw's records are in the JSON and HTML.", 8)
    para("Maintenance done: " + ("; ".join("%s %s %s (%s) %s, %s %s from the reserve" % (
        r["day"], r["asset"], r["component"], r["code"], r["note"], r["cost"], r["currency"]) for r in m["done"])
        or "none"))
    para("Maintenance planned: " + ("; ".join("%s %s by %s" % (r["asset"], r["component"], r["due"])
                                              for r in m["planned"]) or "nothing due before the end of the term"))
    para("Utility factor X = (L/L_av)(U/U_av) = %s (above 1: longer or more intense use than the industry "
         "average)." % st["utility_factor"]["x_mean"])
    para("Proof: rests on %d ledger records, SHA-256 %s. Signed with Ed25519 key %s; signed statement SHA-256 %s. "
         "Check: tally verify STATEMENT.json --pubkey PROVIDER.pub" % (
             st["evidence"]["records"], st["evidence"]["records_sha256"], sig["key_sha256"],
             sig["statement_sha256"]), 7)
    return bytes(d.output())


def _rv_cell(a):
    """The residual value and the rule of its next-use option (R4..R7), for the PDF's machine table."""
    v = a["residual_value_end_of_term"]
    plan = a.get("next_use_at_end_of_term") or ""
    rule = plan[plan.find("(R"):plan.find(")", plan.find("(R")) + 1] if "(R" in plan else ""
    return ("%s %s" % (v, rule)).strip() if v is not None else ""


def write(st, key_path, prefix, pdf=True):
    signed = sign(st, key_path)
    files = [prefix + ".json", prefix + ".html"]
    with open(prefix + ".json", "w") as f:
        f.write(json.dumps(signed, indent=1, sort_keys=True, ensure_ascii=True) + "\n")
    figs = plots(signed["statement"], ("svg", "png") if pdf else ("svg",))
    with open(prefix + ".html", "w") as f:
        f.write(html(signed, figs["svg"]))
    if pdf:
        with open(prefix + ".pdf", "wb") as f:
            f.write(render_pdf(signed, figs["png"]))
        files.append(prefix + ".pdf")
    return files


render_pdf = pdf
