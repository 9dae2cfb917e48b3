"""`tally life` (life consumed, remaining life, health and the next-use
decision per asset and component, from the ledger and the life cards) and
`tally event add` (an ISO 14224-style failure, repair or inspection record
for a component) and `tally passport` (AAS or DPP JSON per asset or
component). They need the 'life' extra (numpy, reliability); passport also
'passport' (basyx-python-sdk)."""
import calendar
import json
import os
import sys
import time

from agent.cli.common import err


def _open(a, what):
    from agent.collector.store import Collector, is_postgres_url
    if not is_postgres_url(a.db) and not os.path.exists(a.db):
        return None, err("%s: no ledger at %s" % (what, a.db))
    return Collector(a.db, keys=lambda d: None), None


def _days(x):
    if x is None:
        return "?"
    if x == float("inf"):
        return "inf"
    return "%.0f" % x


def _num(x, fmt="%.3f"):
    return "?" if x is None else fmt % x


def _print(r, out):
    w = out.write
    for dev, a in r["assets"].items():
        w("asset %s: health %s; next use: %s\n" % (dev, a["health"], a["decision"]))
        for why in a["reasons"]:
            w("  health because %s\n" % why)
        w("  cards %s\n" % (", ".join(a["cards"]) or "none"))
        for t in a["trace"]:
            fired = {True: "fired", False: "no", None: "not known"}[t["fired"]]
            w("  %s %-14s %-9s %s\n" % (t["rule"], t["decision"].split(":")[0], fired, t["because"]))
    for cid, c in r["components"].items():
        life = c["life"]
        w("component %s (%s) in %s: health %s; D P50 %s P90 %s; remaining days P10/P50/P90 %s/%s/%s\n"
          % (cid, c["card"] or "no card", c["asset"] or "no asset", c["health"], _num(life.get("D_P50")),
             _num(life.get("D_P90")), _days(life.get("days_P10")), _days(life.get("days_P50")),
             _days(life.get("days_P90"))))
        if life.get("outcome_P10") is not None:
            si = life.get("outcome_si")
            w("  in %s%s: P10/P50/P90 %.0f/%.0f/%.0f at %.1f %s/day\n" % (
                life["outcome_unit"], " (%s)" % si if si else "", life["outcome_P10"], life["outcome_P50"],
                life["outcome_P90"], life["outcome_per_day"], si or life["outcome_unit"]))
        if life.get("calibrated"):
            w("  calibrated by the %s\n" % life["calibrated"])
        if life.get("rate_assumption"):
            w("  assuming %s\n" % life["rate_assumption"])
        for m in life.get("mechanisms", []):
            if "D_P50" not in m:
                continue
            w("  %s (%s): D %s/%s, equivalent age %.0f, remaining %.0f/%.0f/%.0f %s%s\n" % (
                m["name"], m["model"], _num(m["D_P50"]), _num(m["D_P90"]), m["age_P50"], m["rul_P10"],
                m["rul_P50"], m["rul_P90"], m["unit"], "; " + m["dominant"] if m.get("dominant") else ""))
        for why in c["reasons"]:
            w("  health because %s\n" % why)
        for u in life.get("uncertain", []):
            w("  UNCERTAIN: %s\n" % u)
        for s in c["history"]:
            w("  been in %s slot %s from %s to %s\n" % (s["asset"], s["slot"], s["installed"],
                                                       s["removed"] or "now"))
        for rec in c["records"]:
            w("  %s at %s: mode %s mechanism %s cause %s detection %s %s\n" % (
                rec["kind"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec["at_s"])), rec["mode"],
                rec["mechanism"], rec["cause"], rec["detection"], rec["note"] or ""))
    for typ, c in (r.get("fleet") or {}).items():
        fit = c["fit"]
        w("fleet %s: %d failed, %d running (left out %d); prior eta %.3f beta %.2f; fit %s; blend weight %.2f: "
          "eta %.3f beta %.2f, life x%.2f of the rating%s\n" % (
              c["card"], c["failures"], c["censored"], len(c["left_out"]), c["prior"]["eta"], c["prior"]["beta"],
              "eta %.3f beta %.2f" % (fit["eta"], fit["beta"]) if fit else "none", c["weight"],
              c["blend"]["eta"], c["blend"]["beta"], c["life_factor"], "; " + c["note"] if c.get("note") else ""))
    for p in r["problems"]:
        w("problem: %s\n" % p)


def run_life(a):
    from agent.collector.components import Ledger
    from agent.collector.life import cards as cardmod
    from agent.collector.life import rules
    try:
        cards = cardmod.load(a.cards)
        cfg = rules.load_config(a.config)
    except (cardmod.CardError, rules.ConfigError) as e:
        return err("life: %s" % e)
    col, rc = _open(a, "life")
    if col is None:
        return rc
    try:
        led = Ledger(col) if a.fleet else Ledger(col, asset=a.asset, component=a.component)
        if a.asset and a.asset not in led.assets():
            return err("life: no asset %s in the ledger (no part was ever installed in it)" % a.asset)
        if a.component and a.component not in led.components():
            return err("life: no component %s in the ledger" % a.component)
        if not led.components():
            print("tally: life: no components in the ledger yet (no install events in part_events)",
                  file=sys.stderr)
        if a.fleet:
            cfg["usage"]["calibrate"] = True
        r = rules.assess(led, cards, cfg, asset=a.asset, component=a.component, store=not a.no_store)
    finally:
        col.close()
    if a.json:
        # strict JSON: a figure that does not exist (no rate: infinite days) is null
        json.dump(rules.strict(r), sys.stdout, indent=2, sort_keys=True, default=str, allow_nan=False)
        sys.stdout.write("\n")
    else:
        _print(r, sys.stdout)
    return 0


def run_event(a):
    from agent.collector.components import Ledger, LedgerError
    at = None
    if a.at:
        try:
            at = calendar.timegm(time.strptime(a.at, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return err("event: --at %s is not YYYY-MM-DDTHH:MM:SSZ" % a.at)
    col, rc = _open(a, "event")
    if col is None:
        return rc
    try:
        led = Ledger(col, component=a.component)
        led.add_record(a.component, a.kind, at_s=at, mode=a.mode, mechanism=a.mechanism, cause=a.cause,
                       detection=a.detection, note=a.note)
    except LedgerError as e:
        return err(str(e))
    finally:
        col.close()
    print("tally: %s record added for %s" % (a.kind, a.component), file=sys.stderr)
    return 0


def run_passport(a):
    from agent.collector.components import Ledger
    from agent.collector.store import display_name
    from agent.collector.life import cards as cardmod
    from agent.collector.life import rules
    try:
        cards = cardmod.load(a.cards)
        cfg = rules.load_config(a.config)
    except (cardmod.CardError, rules.ConfigError) as e:
        return err("passport: %s" % e)
    from agent.collector.life import passport
    col, rc = _open(a, "passport")
    if col is None:
        return rc
    try:
        led = Ledger(col, asset=a.asset, component=a.component)
        if a.asset and a.asset not in led.assets():
            return err("passport: no asset %s in the ledger (no part was ever installed in it)" % a.asset)
        if a.component and a.component not in led.components():
            return err("passport: no component %s in the ledger" % a.component)
        r = rules.assess(led, cards, cfg, asset=a.asset, component=a.component, store=False)
        if a.format == "dpp":
            text = passport.dumps(passport.dpp(r, asset=a.asset, component=a.component))
        else:
            url = "tally:ledger:%s" % display_name(a.db)
            text = passport.to_json(passport.build(r, cards, url, asset=a.asset, component=a.component))
    except passport.PassportError as e:
        return err(str(e))
    finally:
        col.close()
    if not a.out:
        sys.stdout.write(text + "\n")
        return 0
    with open(a.out, "w") as f:
        f.write(text + "\n")
    print("tally: %s passport written to %s" % (a.format, a.out), file=sys.stderr)
    return 0


def add(sub):
    p = sub.add_parser("life", help="life consumed, remaining life, health and next use per asset and component",
                       description="From the ledger's stress histograms and swap events and the life cards: "
                       "per component and failure mechanism the damage D (P50/P90), equivalent age, remaining "
                       "life P10/P50/P90 in rated units, calendar days and outcome units (the usage-rate "
                       "assumption stated), health with its reasons and where the part has been; per asset the "
                       "worst part's health and the next-use decision with the trace of every rule. Each "
                       "decision is stored with its trace (see docs/life.md).")
    p.add_argument("--db", required=True, help="the collector's ledger: a SQLite file or a PostgreSQL URL")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--asset", help="only this asset (device id)")
    g.add_argument("--component", help="only this component id")
    p.add_argument("--cards", metavar="DIR", help="a folder of life cards that add to or replace the shipped ones")
    p.add_argument("--config", metavar="LIFE.toml", help="thresholds, usage window and per-asset inputs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-store", action="store_true", help="do not store the decisions")
    p.add_argument("--fleet", action="store_true", help="calibrate each component type from the fleet's failures "
                   "(censored Weibull, blended with the rating) and use it in the figures ([usage] calibrate)")
    p.set_defaults(func=run_life)

    e = sub.add_parser("event", help="add a failure, repair or inspection record for a component (tally event add)",
                       description="ISO 14224-style records: failure mode (e.g. BRD, OHE, VIB), mechanism "
                       "(Table B.2, e.g. 2.4 wear), cause (e.g. 3.4 expected wear and tear), detection "
                       "(e.g. 5 continuous condition monitoring). An unknown part or code is refused; nothing "
                       "is written then.")
    e.add_argument("action", choices=("add",))
    e.add_argument("--db", required=True, help="the collector's ledger")
    e.add_argument("--component", required=True, help="the component id")
    e.add_argument("--kind", required=True, choices=("failure", "repair", "inspection"))
    e.add_argument("--mode", help="ISO 14224 failure mode code")
    e.add_argument("--mechanism", help="ISO 14224 failure mechanism code")
    e.add_argument("--cause", help="ISO 14224 failure cause code")
    e.add_argument("--detection", help="ISO 14224 detection method code")
    e.add_argument("--at", help="when, YYYY-MM-DDTHH:MM:SSZ (default now)")
    e.add_argument("--note", help="free text")
    e.set_defaults(func=run_event)

    pp = sub.add_parser("passport", help="an asset's or a component's passport: AAS JSON (BaSyx) or DPP-ready JSON",
                        description="One Asset Administration Shell per asset and per component (Nameplate, "
                        "HierarchicalStructures with the install history, TimeSeries linked to the ledger, "
                        "Reliability from the card, LifeConsumed as lifetime variables), written and read back "
                        "with the Eclipse BaSyx Python SDK; or --format dpp, a JSON for a Digital Product "
                        "Passport. Needs the 'passport' extra (docs/life.md).")
    pp.add_argument("--db", required=True, help="the collector's ledger")
    g = pp.add_mutually_exclusive_group(required=True)
    g.add_argument("--asset", help="the asset (device id): its shell and one per installed component")
    g.add_argument("--component", help="one component id")
    pp.add_argument("--format", choices=("aas", "dpp"), default="aas")
    pp.add_argument("--cards", metavar="DIR", help="extra life cards")
    pp.add_argument("--config", metavar="LIFE.toml", help="the life config")
    pp.add_argument("--out", help="write to this file instead of standard output")
    pp.set_defaults(func=run_passport)
