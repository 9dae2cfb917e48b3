"""`tally export` and `tally report`: what leaves the ledger (SenML or
CloudEvents JSON; a priced bill as text, CSV or JSON)."""
import os
import sys

from agent.cli.common import err


def run_export(a):
    from agent.collector.store import DB_ERRORS, Collector, is_postgres_url
    from agent.collector import billing, export
    if not is_postgres_url(a.db) and not os.path.exists(a.db):
        return err("export: no ledger at %s" % billing.clean(a.db))
    skipped = set()
    try:
        col = Collector(a.db, keys=lambda d: None)
        try:
            if a.format == "senml":
                items = export.senml(col, a.device, skipped)
            else:
                items = export.cloudevents(col, a.device, skipped)
        finally:
            col.close()
    except DB_ERRORS as e:
        return err("export: %s is not a Tally ledger (%s)" % (billing.clean(a.db), billing.clean(str(e))))
    for dev, name, unit in sorted(skipped):
        print("tally: export: %s %s left out: its unit %s or its scale cannot be exported"
              % (billing.clean(dev), billing.clean(name), billing.clean(unit)), file=sys.stderr)
    if a.out:
        try:
            with open(a.out, "w") as f:
                export.write(items, f)
        except OSError as e:
            return err("export: %s: %s" % (billing.clean(a.out), e.strerror or e))
        print("tally: %d %s items written to %s" % (len(items), a.format, billing.clean(a.out)), file=sys.stderr)
    else:
        export.write(items, sys.stdout)
    return 0


def run_report(a):
    from agent.collector import billing
    if a.by:
        return _report_by(a)
    if not a.rates:
        return err("report: give --rates RATES.toml, or --by customer|contract for the ledger's contracts")
    try:
        text = billing.run(a.db, a.rates, period=a.period, start=a.start, end=a.end,
                           devices=a.device, fmt=a.format)
    except billing.BillingError as e:
        return err("report: %s" % billing.clean(str(e)))
    if not a.out:
        sys.stdout.write(text)
        return 0
    try:
        with open(a.out, "w", newline="") as f:
            f.write(text)
    except OSError as e:
        return err("report: %s: %s" % (billing.clean(a.out), e.strerror or e))
    print("tally: %s report written to %s" % (a.format, billing.clean(a.out)), file=sys.stderr)
    return 0


def _report_by(a):
    """--by customer|contract: the bills of the contracts in the ledger
    (agent/collector/contracts.py, docs/contracts.md)."""
    from agent.collector import billing, contracts
    if a.rates or a.device:
        return err("report: --by prices with the ledger's contracts; --rates and --device do not apply")
    try:
        per = billing.parse_period(a.period, a.start, a.end)
        col = billing.open_ledger(a.db)
        try:
            text = contracts.render(contracts.bills(col, per, a.by, a.id), a.format)
        finally:
            col.close()
    except billing.BillingError as e:
        return err("report: %s" % billing.clean(str(e)))
    if not a.out:
        sys.stdout.write(text)
        return 0
    with open(a.out, "w", newline="") as f:
        f.write(text)
    print("tally: %s report written to %s" % (a.format, billing.clean(a.out)), file=sys.stderr)
    return 0


def add(sub):
    e = sub.add_parser("export", help="export the ledger as SenML JSON or CloudEvents JSON",
                       description="SenML JSON (RFC 8428; SenML primary units, odometers as readings) or CloudEvents JSON "
                       "(one event per record, id = device/epoch/seq) from a collector's ledger.")
    e.add_argument("--db", required=True, help="the collector's ledger: a SQLite file or a PostgreSQL URL")
    e.add_argument("--format", choices=("senml", "cloudevents"), default="cloudevents")
    e.add_argument("--device", help="only this device")
    e.add_argument("--out", help="write to this file instead of standard output")
    e.set_defaults(func=run_export)

    rp = sub.add_parser("report", help="billing report for a period from a rate card (text, CSV, JSON)",
                        description="Price the ledger's usage for a calendar month (--period) or an "
                        "inclusive range of UTC days (--from/--to) with a TOML rate card (see "
                        "docs/billing.md): per device each priced metric, run-hours, base fee and "
                        "subtotal, a fleet total, and data-quality lines. Amounts are exact decimals.")
    rp.add_argument("--db", required=True, help="the collector's SQLite ledger")
    rp.add_argument("--rates", metavar="RATES.toml", help="the rate card (the per-device case)")
    rp.add_argument("--by", choices=("customer", "contract"),
                    help="bills per customer or contract from the contracts in the ledger (docs/contracts.md)")
    rp.add_argument("--id", metavar="ID", help="with --by: only this customer or contract")
    rp.add_argument("--period", metavar="YYYY-MM", help="a calendar month, UTC")
    rp.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (with --to)")
    rp.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day, inclusive")
    rp.add_argument("--format", choices=("text", "csv", "json"), default="text")
    rp.add_argument("--device", nargs="+", action="extend", metavar="ID", help="only these devices")
    rp.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of standard output")
    rp.set_defaults(func=run_report)
