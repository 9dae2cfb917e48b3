"""The web console over HTTP (Starlette's test client, the real app on a real
SQLite ledger made by the simulator): every page needs a login, roles,
CSRF, a tampered cookie, unknown devices and periods, the lockout after
five wrong passwords, paging, and that the ledger is never written."""
import hashlib
import os
import re
import sqlite3
import threading

import pytest

pytest.importorskip("starlette")
pytest.importorskip("argon2")
from starlette.testclient import TestClient  # noqa: E402

from agent.collector import billing  # noqa: E402
from agent.collector.store import Collector  # noqa: E402
from agent.collector.console import auth  # noqa: E402
from agent.collector.console.app import PAGE, make_app  # noqa: E402
from agent.collector.console.ledger import Reader  # noqa: E402
from conftest import ROOT  # noqa: E402

RATES = os.path.join(ROOT, "docs", "rates.example.toml")
PW = {"alice": "alice-operator-1", "bob": "bob-viewer-22"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from hil.harness.sim import simulate
    d = tmp_path_factory.mktemp("console")
    db = str(d / "ledger.sqlite")
    assert simulate(devices=2, days=1.0, interval_s=900, sample_s=60, db=db, seed=5)["reconciled"]
    users = str(d / "users.sqlite")
    u = auth.Users(users)
    u.add("alice", "operator", PW["alice"])
    u.add("bob", "viewer", PW["bob"])
    u.close()
    return {"db": db, "users": users}


def _digest(db):
    with open(db, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def client(site, **kw):
    return TestClient(make_app(site["db"], site["users"], rates=RATES, **kw), follow_redirects=False)


def csrf(c, path="/login"):
    return re.search(r'name="csrf" value="([^"]+)"', c.get(path).text).group(1)


def login(c, user):
    r = c.post("/login", data={"csrf": csrf(c), "user": user, "password": PW[user]})
    assert r.status_code == 303, r.text
    return c


def test_everything_needs_a_login(site):
    c = client(site)
    for page in ("/", "/fleet", "/asset/sim-001", "/bills", "/alarms", "/glossary"):
        r = c.get(page)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), page
    for data in ("/fleet.csv", "/asset/sim-001/usage.csv", "/bill/sim-001.csv", "/alarms.csv",
                 "/static/plotly.min.js", "/static/console.js"):
        assert c.get(data).status_code == 401, data


def test_login_shows_the_fleet_and_cookie_flags(site):
    c = client(site)
    r = c.post("/login", data={"csrf": csrf(c), "user": "alice", "password": PW["alice"]})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    page = c.get("/fleet").text
    with _Open(site["db"]) as col:
        devices = col.devices()
    assert devices == ["sim-001", "sim-002"]
    for dev in devices:
        assert 'href="/asset/%s"' % dev in page
    assert "2 devices" in page
    csv = c.get("/fleet.csv").text.splitlines()
    assert [x.split(",")[0] for x in csv[1:]] == devices


class _Open:
    def __init__(self, db):
        self.col = Collector(db, keys=lambda d: None)

    def __enter__(self):
        return self.col

    def __exit__(self, *a):
        self.col.close()


def test_secure_cookie_under_tls(site):
    c = TestClient(make_app(site["db"], site["users"], https=True), base_url="https://testserver",
                   follow_redirects=False)
    r = c.post("/login", data={"csrf": csrf(c), "user": "bob", "password": PW["bob"]})
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()


def test_viewer_is_refused_the_bills(site):
    c = login(client(site), "bob")
    assert c.get("/fleet").status_code == 200
    r = c.get("/bills")
    assert r.status_code == 403 and "operator" in r.text and "Traceback" not in r.text
    assert c.get("/bill/sim-001.csv?period=2026-01").status_code == 403
    assert c.get("/bills.csv?period=2026-01").status_code == 403


def test_bill_csv_is_the_report(site):
    c = login(client(site), "alice")
    r = c.get("/bill/sim-001.csv?period=2026-01")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text == billing.run(site["db"], RATES, period="2026-01", devices=["sim-001"], fmt="csv")
    page = c.get("/bill/sim-001?period=2026-01").text
    assert "Compressed air delivered" in page and "Running time" in page
    assert re.search(r"<code>air</code> odometer gained \d+ &times; 10\^-3 m3", page)


def test_csrf_refused(site):
    c = client(site)
    c.get("/login")
    for data in ({"user": "alice", "password": PW["alice"]},
                 {"csrf": "forged", "user": "alice", "password": PW["alice"]}):
        r = c.post("/login", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert c.get("/fleet").status_code == 303          # still not logged in
    login(c, "alice")
    assert c.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert c.get("/fleet").status_code == 200          # still logged in
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/fleet").text).group(1)
    assert c.post("/logout", data={"csrf": tok}).status_code == 303
    assert c.get("/fleet").status_code == 303


def test_login_goes_back_only_to_this_console(site):
    for nxt, want in (("/asset/sim-001", "/asset/sim-001"), ("//evil.example/", "/fleet"),
                      ("/\\evil.example/", "/fleet"), ("https://evil.example/", "/fleet")):
        c = client(site)
        tok = csrf(c)
        r = c.post("/login", params={"next": nxt}, data={"csrf": tok, "user": "bob", "password": PW["bob"]})
        assert r.status_code == 303 and r.headers["location"] == want, nxt


def test_tampered_cookie_is_no_session(site):
    c = login(client(site), "alice")
    good = c.cookies.get("tally_console")
    bad = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    c.cookies.clear()
    c.cookies.set("tally_console", bad)
    r = c.get("/fleet")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert c.get("/fleet.csv").status_code == 401


def test_unknown_device_and_period(site):
    c = login(client(site), "alice")
    for url, code in (("/asset/nope", 404), ("/asset/sim-001%00x", 404), ("/asset/nope/usage.csv", 404),
                      ("/bill/nope?period=2026-01", 404), ("/bill/sim-001?period=2026-13", 400),
                      ("/bill/sim-001.csv?period=junk", 400), ("/fleet?page=x", 400), ("/fleet?page=99", 404),
                      ("/fleet?status=bogus", 400), ("/static/../app.py", 404)):
        r = c.get(url)
        assert r.status_code == code, url
        assert "Traceback" not in r.text


def test_five_wrong_passwords_lock_the_user(site, tmp_path):
    users = str(tmp_path / "u.sqlite")
    u = auth.Users(users)
    u.add("carol", "viewer", "carol-password")
    u.close()
    before = _digest(site["db"])
    c = TestClient(make_app(site["db"], users), follow_redirects=False)
    codes = [c.post("/login", data={"csrf": csrf(c), "user": "carol", "password": "wrong%d" % i}).status_code
             for i in range(auth.MAX_FAILS)]
    assert codes == [401] * (auth.MAX_FAILS - 1) + [429]
    r = c.post("/login", data={"csrf": csrf(c), "user": "carol", "password": "carol-password"})
    assert r.status_code == 429 and "locked" in r.text
    assert c.get("/fleet").status_code == 303
    assert _digest(site["db"]) == before


def test_pages_and_no_data_yet(site):
    c = login(client(site), "alice")
    before = _digest(site["db"])
    a = c.get("/asset/sim-001").text
    # the collector makes the stress and part_events tables (issue 15); life is not run here
    assert "Stress histograms" in a and 'id="stress-nodata"' not in a and 'id="life-nodata"' in a
    assert "Compressed air delivered" in a
    assert "<script src=\"/static/plotly.min.js\">" in a and "cdn" not in a.lower()
    assert c.get("/static/plotly.min.js").content.startswith(b"/**")
    assert "Compressed air delivered" in c.get("/glossary").text
    assert c.get("/alarms").status_code == 200
    assert c.get("/bills?period=2026-01").status_code == 200
    assert _digest(site["db"]) == before


def test_reader_cannot_write(site):
    r = Reader(site["db"])
    try:
        with pytest.raises(sqlite3.OperationalError):
            r.q("DELETE FROM records")
        assert r.has("records") and r.has("stress") and not r.has("life_decisions")
    finally:
        r.close()


def test_read_while_the_collector_writes(site):
    """A writer holding the ledger's write lock does not stop a page."""
    w = sqlite3.connect(site["db"], isolation_level=None)
    w.execute("BEGIN IMMEDIATE")
    w.execute("INSERT INTO counters VALUES ('sim-001', 'console-test', 1)")
    try:
        c = login(client(site), "alice")
        assert c.get("/fleet").status_code == 200
        assert c.get("/asset/sim-001").status_code == 200
    finally:
        w.execute("ROLLBACK")
        w.close()


def test_fleet_is_paged(tmp_path):
    db = str(tmp_path / "big.sqlite")
    Collector(db, keys=lambda d: None).close()
    con = sqlite3.connect(db)
    n = 2 * PAGE + 7
    con.executemany("INSERT INTO schemas VALUES (?, 1, '[]')", [("dev-%05d" % i,) for i in range(n)])
    con.commit()
    con.close()
    users = str(tmp_path / "u.sqlite")
    u = auth.Users(users)
    u.add("alice", "operator", PW["alice"])
    u.close()
    c = login(TestClient(make_app(db, users), follow_redirects=False), "alice")
    rows = [len(re.findall(r'href="/asset/dev-', c.get("/fleet?page=%d" % p).text)) for p in (1, 2, 3)]
    assert rows == [PAGE, PAGE, 7]
    assert c.get("/fleet?page=4").status_code == 404
    found = c.get("/fleet?q=dev-0010").text
    assert len(re.findall(r'href="/asset/dev-', found)) == 7       # dev-00100 .. dev-00106
    assert "never seen" in found


def test_kept_history_is_the_collectors_and_follows_new_records(site, tmp_path):
    """The console keeps each device's walked history; it must equal what
    the collector's own ledger()/summary() say, before and after a record
    arrives (a copy of the ledger, so the shared one is unchanged)."""
    import shutil
    db = str(tmp_path / "copy.sqlite")
    shutil.copy(site["db"], db)
    for _ in range(2):
        col = Collector(db, keys=lambda d: None)
        want_l, want_s = col.ledger("sim-001"), col.summary("sim-001")
        col.close()
        r = Reader(db)
        try:
            assert r.ledger("sim-001") == want_l
            assert r.summary("sim-001") == want_s
            assert r.ledger("sim-001") == want_l          # from what was kept
        finally:
            r.close()
        con = sqlite3.connect(db)
        con.execute("INSERT INTO records SELECT device_id, epoch, seq + 1, seq + 1, flags, schema_id, boot, "
                    "uptime_ms + ival_ms, wall_s + ival_ms / 1000, wall_q, ival_ms, vals, received_s "
                    "FROM records WHERE device_id='sim-001' ORDER BY epoch DESC, seq DESC LIMIT 1")
        con.commit()
        con.close()


def test_customers_shown_when_the_contract_tables_exist(site, tmp_path):
    import shutil
    c = login(client(site), "alice")
    assert 'id="customers-nodata"' in c.get("/bills?period=2026-01").text
    db = str(tmp_path / "copy.sqlite")
    shutil.copy(site["db"], db)
    con = sqlite3.connect(db)
    # the shapes of agent/collector/contracts.py (issue 17), as it writes them
    con.executescript("""
        CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE contracts (id TEXT PRIMARY KEY, customer TEXT NOT NULL, start_day TEXT NOT NULL,
                                end_day TEXT NOT NULL, terms TEXT NOT NULL);
        CREATE TABLE assignments (asset TEXT NOT NULL, contract TEXT NOT NULL, site TEXT NOT NULL,
                                  from_day TEXT NOT NULL, to_day TEXT NOT NULL,
                                  PRIMARY KEY (asset, contract, from_day));
        INSERT INTO customers VALUES ('acme', 'Acme Bakery <Ltd>');
        INSERT INTO contracts VALUES ('k-1', 'acme', '2026-01-01', '2026-12-31', '{}');
        INSERT INTO assignments VALUES ('sim-002', 'k-1', 'oven-hall', '2026-01-01', '2026-12-31');
    """)
    con.commit()
    con.close()
    c = login(TestClient(make_app(db, site["users"], rates=RATES), follow_redirects=False), "alice")
    page = c.get("/bills?period=2026-01").text
    assert "Acme Bakery &lt;Ltd&gt; (acme)" in page and 'href="/asset/sim-002"' in page
    assert "customers-nodata" not in page


def test_postgres_ledger_read_only(postgres, tmp_path):
    from agent.collector.store import PostgresError
    col = Collector(postgres, keys=lambda d: None)
    col.db.execute("INSERT INTO schemas VALUES ('pg-1', 1, '[]')")
    col.close()
    r = Reader(postgres)
    try:
        assert r.device_ids() == ["pg-1"] and r.has("records") and not r.has("life_decisions")
        with pytest.raises(PostgresError, match="read-only"):
            r.q("DELETE FROM schemas")
    finally:
        r.close()
    users = str(tmp_path / "u.sqlite")
    u = auth.Users(users)
    u.add("alice", "operator", PW["alice"])
    u.close()
    c = login(TestClient(make_app(postgres, users), follow_redirects=False), "alice")
    assert 'href="/asset/pg-1"' in c.get("/fleet").text
    assert c.get("/asset/pg-1").status_code == 200


def test_cli_user_add_and_serve_tls(site, tmp_path, pki):
    import socket
    import ssl
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from conftest import tally, until
    users = str(tmp_path / "cli-users.sqlite")
    r = tally("console", "user", "add", "dora", "--role", "viewer", "--users", users, input="dora-password\n")
    assert r.returncode == 0 and "dora (viewer)" in r.stderr
    r = tally("console", "user", "add", "eve", "--role", "viewer", "--users", users, input="short\n")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "at least 8" in r.stderr
    r = tally("console", "--db", str(tmp_path / "none.sqlite"), "--users", users)
    assert r.returncode == 2 and r.stderr == "tally: console: no ledger at %s\n" % (tmp_path / "none.sqlite")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    tls = pki.broker_tls
    p = subprocess.Popen([sys.executable, "-m", "agent.cli", "console", "--db", site["db"], "--users", users,
                          "--port", str(port), "--cert", tls["cert"], "--key", tls["key"]],
                         cwd=ROOT, stderr=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=tls["ca"])
    base = "https://localhost:%d" % port
    try:
        got = {}

        def up():
            try:
                got["r"] = urllib.request.urlopen(base + "/login", timeout=2, context=ctx)
                return True
            except (urllib.error.URLError, ConnectionError):
                return False
        until(up, timeout=30)
        cookie = got["r"].headers["set-cookie"].lower()
        got["r"].read()
        got["r"].close()
        assert "secure" in cookie and "httponly" in cookie       # HTTPS: the cookie is Secure
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/fleet.csv", timeout=5, context=ctx)
        assert e.value.code == 401
        e.value.close()
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise


def test_fleet_filter(site):
    c = login(client(site), "alice")
    assert c.get("/fleet?status=online").text.count('href="/asset/sim-') == 2     # just simulated
    page = c.get("/fleet?status=offline").text
    assert 'href="/asset/sim-' not in page and "0 devices match" in page


def test_wear_parts_and_life_shown_when_their_tables_exist(site, tmp_path):
    import shutil
    db = str(tmp_path / "copy.sqlite")
    shutil.copy(site["db"], db)
    con = sqlite3.connect(db)
    # the shared contract's stress and part_events, and agent/collector/components.py's life_decisions
    con.executescript("""
        CREATE TABLE IF NOT EXISTS stress (device TEXT, epoch INT, seq INT, hist TEXT, edges_version INT, counts TEXT,
                             PRIMARY KEY (device, epoch, seq, hist));
        CREATE TABLE IF NOT EXISTS part_events (device TEXT, epoch INT, seq INT, idx INT, kind TEXT, slot TEXT, component TEXT,
                                  wall_s INT, odometers TEXT, detail TEXT, PRIMARY KEY (device, epoch, seq, idx));
        CREATE TABLE IF NOT EXISTS life_decisions (subject TEXT NOT NULL, digest TEXT NOT NULL, at_s REAL NOT NULL,
                                     decision TEXT NOT NULL, health TEXT NOT NULL, cards TEXT NOT NULL,
                                     trace TEXT NOT NULL, PRIMARY KEY (subject, digest));
        DELETE FROM stress WHERE device = 'sim-001';
        DELETE FROM part_events WHERE device = 'sim-001';
        INSERT INTO stress VALUES ('sim-001', 1, 10, 'temp_head', 1, '[5,7,2]');
        INSERT INTO part_events VALUES ('sim-001', 1, 3, 0, 'installed', 'head', 'sht3x-1a2b3c4d', 1767225600,
                                        '{}', 'boot');
        INSERT INTO part_events VALUES ('sim-001', 1, 9, 0, 'removed', 'head', 'sht3x-1a2b3c4d', 1767312000,
                                        '{}', 'swap');
        INSERT INTO life_decisions VALUES ('sim-001', 'd1', 1767312000, 'reuse', 'green', '[]', '{}');
    """)
    con.commit()
    con.close()
    c = login(TestClient(make_app(db, site["users"], rates=RATES), follow_redirects=False), "alice")
    page = c.get("/asset/sim-001").text
    assert "nodata" not in page.replace('class="nodata"', "")     # no "no data yet" paragraph id
    assert "temp_head" in page and "[5,7,2]" in page
    assert page.count("sht3x-1a2b3c4d") == 2 and "reuse" in page and "green" in page
    alarms = c.get("/alarms").text
    assert "part removed" in alarms and "sht3x-1a2b3c4d in slot head" in alarms
    assert "part_events table" not in alarms
