"""`tally bench console`: server time per console page (median) on a
generated ledger, and a screen capture (PNG, headless Chromium) of each page.

The ledger is written straight into a SQLite file in the collector's own
tables (created by Collector), in the shape the collector writes: per
device a schema (the compressor's odometers and the agent's gauges), one
birth, one epoch, and one 15-minute record per interval with wall time, so
that 1,000 devices x 1 year (35 million records) can be made at all; the
console reads it exactly as it reads a collector's. Server time is the time
the app takes to answer (Starlette's test client, in this process: no
network, no browser), the median of `repeat` requests per page, and the
first of them (the asset page walks a device's whole history once; the
console keeps it until the device's record count changes, and the bill of
the same device reuses it).
"""
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time

GOAL_MS = 300
T0 = 1767225600                 # 2026-01-01T00:00Z
IVAL_S = 900
METRICS = [["run_time", "s", 0, "odometer"], ["cycles", "count", 0, "odometer"],
           ["energy", "Wh", -3, "odometer"], ["air", "m3", -3, "odometer"],
           ["temp_mean", "Cel", -2, "gauge:mean"], ["depth", "count", 0, "gauge:last"],
           ["unacked_s", "s", 0, "gauge:max"], ["err_nack", "count", 0, "odometer"]]
SID = 0x5EED0001


def make_ledger(path, devices, days, progress=None):
    """A ledger of `devices` devices x `days` days of 15-minute records."""
    from agent.collector.store import Collector
    Collector(path, keys=lambda d: None).close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    n = int(days * 86400 // IVAL_S)
    rng = random.Random(1)
    now = time.time()
    con.execute("BEGIN")
    for i in range(devices):
        dev = "cmp-%05d" % i
        epoch = rng.getrandbits(31)
        con.execute("INSERT INTO schemas VALUES (?,?,?)", (dev, SID, json.dumps(METRICS)))
        con.execute("INSERT INTO epochs VALUES (?,?,1)", (dev, epoch))
        con.execute("INSERT INTO births VALUES (?,?,?,?,?,?,?)", (dev, 1, epoch, "poweron", "1.2.0", "emulated",
                                                                 now - n * IVAL_S))
        odo = [0, 0, 0, 0, 0]
        rows = []
        for s in range(1, n + 1):
            run = rng.randrange(0, IVAL_S + 1)
            odo[0] += run
            odo[1] += rng.randrange(0, 3)
            odo[2] += run * 5500 // 3600 * 1000 // 1000 * 1000     # about 5.5 kW while running, in mWh
            odo[3] += run * 900 // 60                              # 0.9 m3/min, in litres
            vals = [odo[0], odo[1], odo[2], odo[3], 2100 + rng.randrange(400), 0, 0, odo[4]]
            wall = T0 + (s - 1) * IVAL_S
            rows.append((dev, epoch, s, s, 0, SID, 1, (s - 1) * IVAL_S * 1000, wall, 2, IVAL_S * 1000,
                         json.dumps(vals, separators=(",", ":")), now - (n - s) * IVAL_S))
        con.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if progress and (i + 1) % max(1, devices // 10) == 0:
            progress("ledger: %d of %d devices" % (i + 1, devices))
    con.execute("COMMIT")
    con.close()


def _pages(devices):
    last = "cmp-%05d" % (devices - 1)
    month = time.strftime("%Y-%m", time.gmtime(T0))
    pages = [("fleet", "/fleet"), ("fleet-last-page", "/fleet?page=%d" % max(1, (devices + 49) // 50)),
             ("fleet-search", "/fleet?q=%s" % last[-3:]), ("fleet-offline", "/fleet?status=offline"), ("asset", "/asset/" + last),
             ("bills", "/bills?period=" + month), ("bill", "/bill/%s?period=%s" % (last, month)),
             ("bill-csv", "/bill/%s.csv?period=%s" % (last, month)), ("alarms", "/alarms"), ("glossary", "/glossary")]
    return pages


def bench_console(devices=200, days=60, repeat=5, shots=None, db=None, progress=None):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # starlette's note on httpx versions
        from starlette.testclient import TestClient
    from agent.collector.console import auth
    from agent.collector.console.app import make_app
    work = tempfile.mkdtemp(prefix="tally-console-bench-")
    try:
        path = db or os.path.join(work, "ledger.sqlite")
        t = time.perf_counter()
        if not db:
            make_ledger(path, devices, days, progress)
        made_s = time.perf_counter() - t
        records = sqlite3.connect(path).execute("SELECT COUNT(*) FROM records").fetchone()[0]
        users = os.path.join(work, "users.sqlite")
        u = auth.Users(users)
        u.add("bench", "operator", "bench-password")
        u.close()
        rates = os.path.join(work, "rates.toml")
        with open(rates, "w") as f:
            f.write('currency = "EUR"\nmonthly_fee = "25.00"\n[run_hours]\nmetric = "run_time"\nprice = "0.40"\n'
                    '[metrics.air]\nunit = "m3"\nprice = "0.018"\n')
        app = make_app(path, users, rates=rates)
        c = TestClient(app, follow_redirects=False)
        import re
        tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
        assert c.post("/login", data={"csrf": tok, "user": "bench", "password": "bench-password"}).status_code == 303
        out = {}
        for name, url in _pages(devices):
            times, code = [], None
            for _ in range(repeat):
                t = time.perf_counter()
                r = c.get(url)
                times.append((time.perf_counter() - t) * 1000)
                code = r.status_code
            out[name] = {"url": url, "status": code, "median_ms": round(statistics.median(times), 1),
                         "first_ms": round(times[0], 1), "bytes": len(r.content)}
            if progress:
                progress("%s: %.1f ms" % (name, out[name]["median_ms"]))
        # an asset's first view, walked afresh: `repeat` devices, the console's kept walks dropped each time
        from agent.collector.console import ledger
        firsts = []
        for i in range(min(repeat, devices)):
            ledger._CACHE.clear()
            t = time.perf_counter()
            assert c.get("/asset/cmp-%05d" % i).status_code == 200
            firsts.append(round((time.perf_counter() - t) * 1000, 1))
        res = {"devices": devices, "days": days, "records": records, "ledger_made_s": round(made_s, 1),
               "asset_first_ms": statistics.median(firsts), "asset_first_runs_ms": firsts,
               "repeat": repeat, "pages": out, "goal_ms": GOAL_MS,
               "goal_met": all(p["median_ms"] < GOAL_MS for p in out.values()), "shots": None}
        if shots:
            res["shots"] = _shots(app, devices, shots, progress)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _shots(app, devices, folder, progress):
    """A PNG of each page through headless Chromium, or why not."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        return {"skipped": "chromium and chromedriver are not installed"}
    import socket
    import threading
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    os.makedirs(folder, exist_ok=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    files = []
    try:
        base = "http://127.0.0.1:%d" % port
        drv.get(base + "/login")
        shot = os.path.join(folder, "login.png")
        drv.save_screenshot(shot)
        files.append(shot)
        drv.find_element(By.ID, "user").send_keys("bench")
        drv.find_element(By.ID, "password").send_keys("bench-password")
        drv.find_element(By.ID, "login").click()
        for name, url in _pages(devices):
            if url.endswith(".csv") or ".csv?" in url:
                continue
            drv.get(base + url)
            if name == "asset":
                deadline = time.time() + 30
                while not drv.find_element(By.TAG_NAME, "body").get_attribute("data-charts") and time.time() < deadline:
                    time.sleep(0.1)
            shot = os.path.join(folder, name + ".png")
            drv.save_screenshot(shot)
            files.append(shot)
            if progress:
                progress("screen capture %s" % shot)
    finally:
        drv.quit()
        server.should_exit = True
        th.join(10)
    return {"folder": folder, "files": files}


def report(r):
    print("Console: server time per page, median of %d, on a ledger of %d devices x %g days (%d records; "
          "made in %.1f s)" % (r["repeat"], r["devices"], r["days"], r["records"], r["ledger_made_s"]))
    print("%-16s %6s %10s %10s %10s  %s" % ("page", "status", "median ms", "first ms", "bytes", "url"))
    for name, p in r["pages"].items():
        print("%-16s %6d %10.1f %10.1f %10d  %s" % (name, p["status"], p["median_ms"], p["first_ms"], p["bytes"],
                                                  p["url"]))
    print("(first: the first request, before the console keeps the device's walked history; "
          "the asset page walks it, the bill then reuses it)")
    if "asset_first_ms" in r:
        print("an asset's first view (its history walked, nothing kept): median %.1f ms of %d devices"
              % (r["asset_first_ms"], len(r["asset_first_runs_ms"])))
    from hil.bench import print_goals
    print()
    print_goals("Goals", {"every page under %d ms (median)" % r["goal_ms"]: r["goal_met"]})
    if r["shots"]:
        if "skipped" in r["shots"]:
            print("screen captures: skipped (%s)" % r["shots"]["skipped"])
        else:
            print("screen captures: %d PNG files in %s" % (len(r["shots"]["files"]), r["shots"]["folder"]))
    return 0
