"""The console's web application (Starlette; served by uvicorn, see
agent/cli/console.py and docs/console.md).

Every page and data URL needs a session: a page without one redirects to
/login, a data URL (CSV, JSON, the chart library) answers 401; a page the
user's role may not see answers 403. The bills and their CSVs are for the
operator role; a viewer sees the fleet, the assets, the alarms and the
glossary. Every form carries the session's CSRF token and a POST without
it (or with another) is refused with 403. Any error is a short page with a
status code, never a traceback; the ledger is opened read-only per request
(ledger.Reader), so nothing here can change it.
"""
import csv
import datetime
import hmac
import io
import os
import secrets
import sqlite3
import time
from fractions import Fraction

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from agent.collector import labels
from agent.collector import billing
from agent.collector.console import auth
from agent.collector.console.ledger import MAX_INTERVALS as MAX_POINTS
from agent.collector.console.ledger import ONLINE_S, LedgerError, Reader

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = 50                # devices per fleet page
SESSION_S = 8 * 3600
# the device's own communication and bus counters: health, not usage (not charted)
QUIET = {"err_nack", "err_crc", "err_timeout", "err_range", "sync_ok", "sync_tries", "fail_conn", "fail_pub",
         "republished", "bad_acks", "bad_configs", "bytes_sent", "overruns", "log_errors", "coalesced",
         "dropped", "backoffs"}


def plotly_js():
    """plotly.min.js as shipped inside the plotly wheel (no CDN)."""
    import plotly
    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


def _when(ts):
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _age(s):
    if s is None:
        return "-"
    s = int(s)
    if s < 120:
        return "%d s" % s
    if s < 7200:
        return "%d min" % (s // 60)
    if s < 172800:
        return "%.1f h" % (s / 3600)
    return "%.1f days" % (s / 86400)


def _csv(rows, head, name):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in rows:
        w.writerow([billing.csv_cell("" if c is None else str(c)) for c in r])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="%s"' % name})


def _page(request):
    """The ?page= number (1 and up); 400 for one that is not a whole number."""
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        raise HTTPException(400, "page must be a whole number")


class Console:
    def __init__(self, db, users, rates=None, https=False):
        self.db = db
        self.users = users
        self.rates = rates
        self.tpl = Jinja2Templates(directory=os.path.join(HERE, "templates"))
        self.tpl.env.globals.update(label=labels.label, describe=labels.describe, when=_when, age=_age)
        routes = [
            Route("/", self.home), Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/fleet", self.fleet), Route("/fleet.csv", self.fleet_csv),
            Route("/asset/{device:path}/usage.csv", self.usage_csv),
            Route("/asset/{device:path}", self.asset),
            Route("/bills", self.bills), Route("/bills.csv", self.bills_csv),
            Route("/bill/{device:path}.csv", self.bill_csv), Route("/bill/{device:path}", self.bill),
            Route("/alarms", self.alarms), Route("/alarms.csv", self.alarms_csv),
            Route("/glossary", self.glossary),
            Route("/static/plotly.min.js", self.static_plotly), Route("/static/{name}", self.static),
        ]
        mw = [Middleware(SessionMiddleware, secret_key=users.secret(), session_cookie="tally_console",
                         max_age=SESSION_S, same_site="strict", https_only=https)]
        self.app = Starlette(routes=routes, middleware=mw,
                             exception_handlers={HTTPException: self.http_error, Exception: self.crash})

    # -- plumbing ----------------------------------------------------------------

    def page(self, request, name, status=200, **kw):
        kw.update(request=request, user=request.session.get("user"), role=request.session.get("role"),
                  csrf=self.csrf(request))
        return self.tpl.TemplateResponse(request, name, kw, status_code=status,
                                         headers={"Cache-Control": "no-store",
                                                  "X-Content-Type-Options": "nosniff",
                                                  "X-Frame-Options": "DENY",
                                                  "Content-Security-Policy": "default-src 'self'; "
                                                  "style-src 'self' 'unsafe-inline'; img-src 'self' data:"})

    def csrf(self, request):
        tok = request.session.get("csrf")
        if not tok:
            tok = request.session["csrf"] = secrets.token_urlsafe(24)
        return tok

    def need(self, request, role=None, data=False):
        """The session's user, or raise: 401 for data, a redirect to /login
        for a page; 403 when the role is not enough."""
        user = request.session.get("user")
        if not user or request.session.get("exp", 0) < time.time() or self.users.role(user) is None:
            if data:
                raise HTTPException(401, "log in first")
            raise HTTPException(303, headers={"Location": "/login?next=" + request.url.path})
        if role and self.users.role(user) != role:
            raise HTTPException(403, "this page is for the %s role; you are logged in as a %s"
                                % (role, self.users.role(user)))
        return user

    async def check_csrf(self, request):
        form = await request.form()
        sent = form.get("csrf") or ""
        tok = request.session.get("csrf") or ""
        if not tok or not hmac.compare_digest(str(sent), tok):
            raise HTTPException(403, "the form is stale or did not come from this console (CSRF token); "
                                "reload the page and try again")
        return form

    def reader(self):
        try:
            return Reader(self.db)
        except LedgerError as e:
            raise HTTPException(503, str(e))

    async def http_error(self, request, exc):
        if exc.status_code in (301, 302, 303, 307):
            return RedirectResponse(exc.headers["Location"], status_code=303)
        if request.url.path.endswith((".csv", ".js")):
            return Response(exc.detail + "\n", status_code=exc.status_code, media_type="text/plain")
        return self.page(request, "error.html", status=exc.status_code, code=exc.status_code,
                         message=exc.detail)

    async def crash(self, request, exc):
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            code, msg = 503, "the ledger is busy being written; reload in a moment"
        elif isinstance(exc, (sqlite3.Error, LedgerError)) or type(exc).__module__.startswith("psycopg"):
            code, msg = 503, "the ledger could not be read: %s" % billing.clean(str(exc))[:200]
        else:
            code, msg = 500, "the console failed on this page (%s); the ledger is unchanged" % type(exc).__name__
        return Response("<!doctype html><title>Tally console: error</title><h1>%d</h1><p>%s</p>"
                        % (code, msg.replace("&", "&amp;").replace("<", "&lt;")),
                        status_code=code, media_type="text/html")

    # -- login -------------------------------------------------------------------

    async def home(self, request):
        self.need(request)
        return RedirectResponse("/fleet", status_code=303)

    async def login(self, request):
        nxt = request.query_params.get("next", "/fleet")
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt or any(ord(ch) < 32 for ch in nxt):
            nxt = "/fleet"
        if request.method == "GET":
            return self.page(request, "login.html", next=nxt, error=None)
        form = await self.check_csrf(request)
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        import anyio
        role, why = await anyio.to_thread.run_sync(self.users.check, name, password)
        if role is None:
            msg = ("too many wrong passwords: this user is locked for %d minutes" % (auth.LOCK_S // 60)
                   if why == "locked" else "wrong user name or password")
            return self.page(request, "login.html", status=401 if why == "wrong" else 429, next=nxt, error=msg)
        request.session.clear()
        request.session.update(user=name, role=role, exp=time.time() + SESSION_S,
                               csrf=secrets.token_urlsafe(24))
        return RedirectResponse(nxt, status_code=303)

    async def logout(self, request):
        await self.check_csrf(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- the fleet -----------------------------------------------------------------

    def _fleet(self, request, everything=False):
        q = request.query_params.get("q", "").strip()[:100]
        status = request.query_params.get("status", "")
        if status not in ("", "online", "offline", "flagged"):
            raise HTTPException(400, "status must be online, offline or flagged")
        page = _page(request)
        r = self.reader()
        try:
            ids = r.device_ids(q)
            now = time.time()
            if not status:
                total = len(ids)
                chosen = ids if everything else ids[(page - 1) * PAGE: page * PAGE]
                rows = r.fleet_rows(chosen, now)
            elif status in ("online", "offline"):
                # from when each was last heard of (no record values read); rows for the page only
                seen = r.last_seen(ids)
                want = status == "online"
                ids = [d for d in ids if (bool(seen[d]) and now - seen[d] < ONLINE_S) == want]
                total = len(ids)
                rows = r.fleet_rows(ids if everything else ids[(page - 1) * PAGE: page * PAGE], now)
            else:
                # flagged: every device's row, then the page of those with a flag
                flagged = [x for x in r.fleet_rows(ids, now, everyone=True) if x["flags"]]
                total = len(flagged)
                rows = flagged if everything else flagged[(page - 1) * PAGE: page * PAGE]
        finally:
            r.close()
        for x in rows:
            x["silent_s"] = None if x["online"] or not x["last_seen"] else now - x["last_seen"]
        return rows, total, page, q, status

    def fleet(self, request):
        self.need(request)
        rows, total, page, q, status = self._fleet(request)
        pages = max(1, (total + PAGE - 1) // PAGE)
        if page > pages:
            raise HTTPException(404, "there is no page %d (the fleet has %d pages)" % (page, pages))
        return self.page(request, "fleet.html", rows=rows, total=total, page=page, pages=pages, q=q,
                         only=status, per=PAGE)

    def fleet_csv(self, request):
        self.need(request, data=True)
        rows, _, _, _, _ = self._fleet(request, everything=True)
        return _csv([(x["device"], "online" if x["online"] else "offline", _when(x["last_seen"]), x["fw"],
                      x["reason"], x["backlog"], x["unacked_s"], "; ".join(x["flags"])) for x in rows],
                    ("device", "status", "last seen", "firmware", "boot reason", "records waiting",
                     "oldest unconfirmed (s)", "data quality"), "fleet.csv")

    # -- one asset -------------------------------------------------------------------

    def _device(self, request, r):
        dev = request.path_params["device"]
        if not r.known(dev):
            raise HTTPException(404, "no device %s in the ledger" % billing.clean(dev)[:80])
        return dev

    def asset(self, request):
        self.need(request)
        r = self.reader()
        try:
            dev = self._device(request, r)
            row = r.fleet_rows([dev])[0]
            row["seq_gaps"] = r.seq_gaps(dev)
            days, summ, ivals = r.asset_walk(dev, MAX_POINTS)
            b = r.births([dev]).get(dev)
            last = r.last_record(dev, b and b["epoch"])
            counters = r.counters_of(dev)
            alarms = r.alarms(dev, 50)
            quar = r.quarantine(dev, 50)
            reboots = r.reboots(dev, 20)
            extra = {t: r.table_rows(t, dev) for t in ("stress", "part_events")}
            decisions = None
            if r.has("life_decisions"):
                decisions = [dict(zip(("subject", "at_s", "decision", "health"), x)) for x in r.q(
                    "SELECT subject, at_s, decision, health FROM life_decisions WHERE subject=? OR subject LIKE ? "
                    "ORDER BY at_s DESC LIMIT 20", (dev, dev + "/%"))]
        finally:
            r.close()
        units, odo = {}, []
        for epoch, e in sorted(summ["epochs"].items()):
            units.update(e["units"])
            for k, tot in sorted(e["totals"].items()):
                dev_val = (last or {}).get("values", {}).get(k) if b and b["epoch"] == epoch else None
                odo.append({"epoch": "%08x" % epoch, "metric": k, "ledger": tot, "device": dev_val,
                            "unit": units[k][0], "scale": units[k][1]})
        names = [k for k in sorted(units) if k not in QUIET and any(d.get(k) for d in days.values())]
        daily = {"days": sorted(days), "series": {}}
        inter = {"t": [datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
                       for t, _ in ivals], "series": {}}
        for k in names:
            u, sc = units[k]
            f = labels.shown(10 ** sc, u)
            daily["series"][k] = {"label": labels.label(k), "unit": f[1],
                                  "y": [days[d].get(k, 0) * f[0] for d in daily["days"]]}
            inter["series"][k] = {"label": labels.label(k), "unit": f[1],
                                  "y": [dl.get(k, 0) * f[0] for _, dl in ivals]}
        placed = {}
        for e in summ["epochs"].values():
            for kind, n in e["placed"].items():
                placed[kind] = placed.get(kind, 0) + n
        health = {k: v for k, v in ((last or {}).get("values") or {}).items()
                  if k.startswith(("err_", "fail_", "bad_")) or k in ("log_errors", "overruns", "dropped",
                                                                     "coalesced", "republished", "mem_free")}
        return self.page(request, "asset.html", dev=dev, row=row, daily=daily, inter=inter,
                         default=("air" if "air" in names else (names[0] if names else None)), odo=odo,
                         placed=placed, tq=summ["time_quality"], counters=counters, health=health,
                         alarms=alarms, quar=quar, reboots=reboots, extra=extra, decisions=decisions,
                         max_points=MAX_POINTS, n_intervals=len(ivals))

    def usage_csv(self, request):
        self.need(request, data=True)
        r = self.reader()
        try:
            dev = self._device(request, r)
            days, summ, _ = r.asset_walk(dev, 1)
        finally:
            r.close()
        units = {}
        for e in summ["epochs"].values():
            units.update(e["units"])
        names = sorted(units)
        return _csv([[d] + [billing.quantity(Fraction(days[d].get(k, 0)) * Fraction(10) ** units[k][1])
                            for k in names] for d in sorted(days)],
                    ["day"] + ["%s [%s]" % (k, units[k][0]) for k in names], "%s-usage.csv" % dev)

    # -- bills -------------------------------------------------------------------------

    def _period(self, request):
        p = request.query_params.get("period") or time.strftime("%Y-%m", time.gmtime())
        try:
            return billing.parse_period(p, None, None), p
        except billing.BillingError as e:
            raise HTTPException(400, "period: %s" % e)

    def _rates(self):
        if not self.rates:
            return None
        try:
            return billing.load_rates(self.rates)
        except billing.BillingError as e:
            raise HTTPException(503, str(e))

    def _report(self, request, devices):
        per, label = self._period(request)
        rates = self._rates()
        if rates is None:
            return None, label
        r = self.reader()
        try:
            if devices:
                for d in devices:
                    if not r.known(d):
                        raise HTTPException(404, "no device %s in the ledger" % billing.clean(d)[:80])
            try:
                return billing.report(r, rates, per, devices), label
            except billing.BillingError as e:
                raise HTTPException(400, str(e))
        finally:
            r.close()

    def bills(self, request):
        self.need(request, role="operator")
        per, label = self._period(request)
        page = _page(request)
        r = self.reader()
        try:
            ids = r.device_ids(request.query_params.get("q", "").strip()[:100])
            customers = r.customers()
        finally:
            r.close()
        rates = self._rates()
        return self.page(request, "bills.html", period=label, ids=ids[(page - 1) * PAGE: page * PAGE],
                         page=page, pages=max(1, (len(ids) + PAGE - 1) // PAGE), rates=rates,
                         rates_path=self.rates, fleet=rates and rates["devices"], customers=customers)

    def bill(self, request):
        self.need(request, role="operator")
        dev = request.path_params["device"]
        rep, label = self._report(request, [dev])
        if rep is None:
            raise HTTPException(404, "no rate card: start the console with --rates RATES.toml to see bills")
        j = billing.to_json(rep)
        return self.page(request, "bill.html", dev=dev, period=label, rep=j,
                         d=(j["devices"] or [None])[0], text=billing.to_text(rep))

    def bill_csv(self, request):
        self.need(request, role="operator", data=True)
        rep, label = self._report(request, [request.path_params["device"]])
        if rep is None:
            raise HTTPException(404, "no rate card (start the console with --rates)")
        return Response(billing.to_csv(rep), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="bill-%s-%s.csv"'
                                 % (request.path_params["device"].replace('"', ""), label)})

    def bills_csv(self, request):
        self.need(request, role="operator", data=True)
        rep, label = self._report(request, None)
        if rep is None:
            raise HTTPException(404, "no rate card (start the console with --rates)")
        return Response(billing.to_csv(rep), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="bills-%s.csv"' % label})

    # -- alarms, glossary, static -----------------------------------------------------

    def _alarms(self):
        r = self.reader()
        try:
            rows = [dict(a, kind="clock jump" if (a["what"] or "").startswith("clock")
                         else "replay conflict" if (a["what"] or "").startswith("replay")
                         else "schema conflict" if (a["what"] or "").startswith("schema") else "alarm")
                    for a in r.alarms(None, 500)]
            rows += [dict(device=q["device"], kind="quarantined message", what=q["reason"], at_s=q["at_s"],
                          epoch=None, seq=None, last_seq=None) for q in r.quarantine(None, 500)]
            swaps = None
            if r.has("part_events"):
                swaps = [dict(device=x[0], kind="part %s" % x[1], what="%s in slot %s" % (x[3], x[2]),
                              at_s=x[4], epoch=None, seq=None, last_seq=None) for x in r.q(
                    "SELECT device, kind, slot, component, wall_s FROM part_events "
                    "ORDER BY wall_s DESC LIMIT 500")]
                rows += swaps
        finally:
            r.close()
        rows.sort(key=lambda a: -(a["at_s"] or 0))
        return rows, swaps

    def alarms(self, request):
        self.need(request)
        rows, swaps = self._alarms()
        return self.page(request, "alarms.html", rows=rows, swaps=swaps)

    def alarms_csv(self, request):
        self.need(request, data=True)
        rows, _ = self._alarms()
        return _csv([(a["device"], a["kind"], a["what"], a["epoch"], a["seq"], a["last_seq"], _when(a["at_s"]))
                     for a in rows], ("device", "kind", "what", "epoch", "seq", "last seq", "when"), "alarms.csv")

    def glossary(self, request):
        self.need(request)
        return self.page(request, "glossary.html", items=sorted(labels.LABELS.items()))

    def static_plotly(self, request):
        self.need(request, data=True)
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"Cache-Control": "private, max-age=86400"})

    def static(self, request):
        name = request.path_params["name"]
        if name != "console.css":            # the style sheet is shown on the login page too
            self.need(request, data=True)
        if name not in ("console.css", "console.js"):
            raise HTTPException(404, "no such file")
        return FileResponse(os.path.join(HERE, "static", name),
                            media_type="text/css" if name.endswith(".css") else "text/javascript")


def make_app(db, users_path, rates=None, https=False):
    return Console(db, auth.Users(users_path), rates=rates, https=https).app
