"""`tally contract load|list`, `tally price`, `tally statement`, `tally verify`:
customers and contracts in the ledger, the price a contract implies, and
the signed monthly statement (docs/contracts.md, docs/statement.md)."""
import sys

from agent.cli.common import err


def _open(db):
    from agent.collector import billing
    return billing.open_ledger(db)


def _write(text, out, what, binary=False):
    from agent.collector import billing
    if not out:
        sys.stdout.write(text)
        return 0
    with open(out, "wb" if binary else "w") as f:
        f.write(text)
    print("tally: %s written to %s" % (what, billing.clean(out)), file=sys.stderr)
    return 0


def run_contract(a):
    from agent.collector import billing, contracts
    try:
        col = _open(a.db)
        try:
            if a.action == "load":
                if not a.file:
                    return err("contract load: give the contract file: tally contract load FILE --db LEDGER")
                n = contracts.load(col, a.file)
                print("tally: contract file %s loaded: %s" % (billing.clean(a.file), ", ".join(
                    "%d new %s" % (v, k) for k, v in n.items())), file=sys.stderr)
                return 0
            sys.stdout.write(contracts.listing(col))
            return 0
        finally:
            col.close()
    except billing.BillingError as e:
        return err("contract: %s" % billing.clean(str(e)))


def run_price(a):
    from agent.collector import billing, pricing
    try:
        per = billing.parse_period(a.period) if a.period else None
        col = _open(a.db)
        try:
            ctx = pricing.life_context(col, a.cards, a.life_config)
            text = pricing.render(pricing.propose(col, a.contract, per, ctx), a.format)
        finally:
            col.close()
    except billing.BillingError as e:
        return err("price: %s" % billing.clean(str(e)))
    return _write(text, a.out, "price proposal")


def run_statement(a):
    from agent.collector import billing, statement
    if a.keygen:
        statement.keygen(a.keygen)
        print("tally: wrote %s.key (private, keep it) and %s.pub" % (a.keygen, a.keygen), file=sys.stderr)
        return 0
    if not (a.customer and a.period and a.key and a.out and a.db):
        return err("statement: give --db, --customer, --period YYYY-MM, --key PROVIDER.key and --out PREFIX")
    try:
        per = billing.parse_period(a.period)
        col = _open(a.db)
        try:
            st = statement.build(col, a.customer, per, a.cards, a.life_config)
        finally:
            col.close()
        files = statement.write(st, a.key, a.out, pdf=not a.no_pdf)
    except (billing.BillingError, statement.StatementError) as e:
        return err("statement: %s" % billing.clean(str(e)))
    for f in files:
        print("tally: wrote %s" % billing.clean(f), file=sys.stderr)
    return 0


def run_verify(a):
    from agent.collector import billing, statement
    try:
        col = _open(a.db) if a.db else None
        try:
            msg = statement.verify_file(a.statement, a.pubkey, col)
        finally:
            if col:
                col.close()
    except (billing.BillingError, statement.StatementError) as e:
        return err("verify: %s" % billing.clean(str(e)))
    print(msg)
    return 0


def _life_args(p):
    p.add_argument("--cards", metavar="DIR", help="life cards that add to or replace the shipped ones (tally life)")
    p.add_argument("--life-config", metavar="LIFE.toml", help="the life config: thresholds (pm_warning, core_max, "
                   "harvest_max), usage samples and seed (tally life --config)")


def add(sub):
    c = sub.add_parser("contract", help="customers, sites, contracts and asset assignments in the ledger",
                       description="load: check a contract file (docs/contracts.md) against itself and the "
                       "ledger, then store it in one transaction (nothing changes on an error). list: what "
                       "the ledger holds.")
    c.add_argument("action", choices=("load", "list"))
    c.add_argument("file", nargs="?", help="load: the contract TOML file")
    c.add_argument("--db", required=True, help="the collector's ledger")
    c.set_defaults(func=run_contract)

    p = sub.add_parser("price", help="a proposed price per outcome unit for a contract, every term shown",
                       description="energy x tariff, maintenance reserve from the life used per unit (the "
                       "life models of each part, else the contract's rated life), capital less the residual value "
                       "at the end of the term over lifetime units, service cost, P90-P50 risk and margin, and the "
                       "stored reserve accounts (docs/contracts.md).")
    p.add_argument("--db", required=True)
    p.add_argument("--contract", required=True)
    p.add_argument("--period", metavar="YYYY-MM", help="the window to measure (default: the contract's term)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("-o", "--out", metavar="FILE")
    _life_args(p)
    p.set_defaults(func=run_price)

    s = sub.add_parser("statement", help="the signed monthly outcome statement of a customer (JSON, HTML, PDF)",
                       description="Writes PREFIX.json (signed with the provider's Ed25519 key), PREFIX.html "
                       "and PREFIX.pdf (docs/statement.md). --keygen PREFIX makes a key pair.")
    s.add_argument("--db")
    s.add_argument("--customer")
    s.add_argument("--period", metavar="YYYY-MM")
    s.add_argument("--key", help="the provider's Ed25519 private key (PEM)")
    s.add_argument("--out", metavar="PREFIX", help="write PREFIX.json, PREFIX.html, PREFIX.pdf")
    s.add_argument("--no-pdf", action="store_true", help="JSON and HTML only")
    s.add_argument("--keygen", metavar="PREFIX", help="write a new key pair PREFIX.key and PREFIX.pub, and stop")
    _life_args(s)
    s.set_defaults(func=run_statement)

    v = sub.add_parser("verify", help="check a signed statement with the provider's public key",
                       description="Checks the Ed25519 signature over the statement's canonical bytes; with "
                       "--db also recomputes the hash of the ledger records it rests on.")
    v.add_argument("statement", help="the statement's JSON file")
    v.add_argument("--pubkey", required=True, help="the provider's public key (PEM)")
    v.add_argument("--db", help="also check the records hash against this ledger")
    v.set_defaults(func=run_verify)
