"""`tally console`: the provider's web console on the ledger (docs/console.md),
and `tally console user add NAME --role R` to make its users."""
import argparse
import getpass
import os
import sys

from agent.cli.common import err


def _users_path(a):
    from agent.collector.console import auth
    return a.users or auth.default_path(a.db)


def run_serve(a):
    from agent.collector.store import is_postgres_url
    from agent.collector.console import auth
    if not a.db:
        return err("console: --db LEDGER is required")
    if not is_postgres_url(a.db) and not os.path.exists(a.db):
        return err("console: no ledger at %s" % a.db)
    if bool(a.cert) != bool(a.key):
        return err("console: --cert and --key go together")
    for p in (a.cert, a.key, a.rates):
        if p and not os.path.exists(p):
            return err("console: no such file %s" % p)
    users = auth.Users(_users_path(a))
    try:
        if not users.users():
            return err("console: no users yet; make one first: tally console user add NAME --role operator "
                       "--db %s" % a.db)
    finally:
        users.close()
    from agent.collector.console.ledger import LedgerError, Reader
    try:
        Reader(a.db).close()
    except LedgerError as e:
        return err("console: %s" % e)
    import uvicorn
    from agent.collector.console.app import make_app
    app = make_app(a.db, _users_path(a), rates=a.rates, https=bool(a.cert))
    scheme = "https" if a.cert else "http"
    print("tally: console on %s://%s:%d/ (Ctrl-C to stop)" % (scheme, a.host, a.port), file=sys.stderr,
          flush=True)
    uvicorn.run(app, host=a.host, port=a.port, ssl_certfile=a.cert, ssl_keyfile=a.key, log_level="warning",
                server_header=False, timeout_graceful_shutdown=5)
    return 0


def run_user_add(a):
    from agent.collector.console import auth
    if not a.db and not a.users:
        return err("console user add: say where the users are kept: --db LEDGER or --users FILE")
    if sys.stdin.isatty():
        pw = getpass.getpass("password for %s: " % a.name)
        if getpass.getpass("again: ") != pw:
            return err("console user add: the two passwords differ")
    else:
        pw = sys.stdin.readline().rstrip("\n")
    users = auth.Users(_users_path(a))
    try:
        users.add(a.name, a.role, pw)
    except auth.AuthError as e:
        return err("console user add: %s" % e)
    finally:
        users.close()
    print("tally: console user %s (%s) saved in %s" % (a.name, a.role, _users_path(a)), file=sys.stderr)
    return 0


def add(sub):
    c = sub.add_parser("console", help="the web console on the ledger: fleet, assets, bills, alarms",
                       description="Serve the provider's web console from a ledger, read-only "
                       "(docs/console.md). Users and their roles are kept in a separate file "
                       "(--users; default LEDGER.console.sqlite).")
    c.add_argument("--db", help="the collector's ledger: a SQLite file or a PostgreSQL URL")
    c.add_argument("--users", help="the console's users file (default: beside the ledger)")
    c.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    c.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    c.add_argument("--cert", help="TLS certificate (PEM): serve HTTPS")
    c.add_argument("--key", help="TLS private key (PEM), with --cert")
    c.add_argument("--rates", metavar="RATES.toml", help="rate card for the bills pages")
    c.set_defaults(func=run_serve)
    cs = c.add_subparsers(dest="what", metavar="user")
    u = cs.add_parser("user", help="manage console users")
    us = u.add_subparsers(dest="action", metavar="add", required=True)
    ua = us.add_parser("add", help="add a user or change its role and password (password from a prompt "
                       "or the first line of standard input)")
    ua.add_argument("name")
    ua.add_argument("--role", choices=("viewer", "operator"), required=True)
    ua.add_argument("--db", default=argparse.SUPPRESS, help="the ledger (the users file is kept beside it)")
    ua.add_argument("--users", default=argparse.SUPPRESS, help="the console's users file")
    ua.set_defaults(func=run_user_add)
