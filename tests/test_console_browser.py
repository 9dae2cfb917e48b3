"""The console in a real browser: headless Chromium (Debian's chromium and
chromium-driver, installed by `make test`) through selenium, against the
real server (uvicorn) on loopback and a simulated ledger. Skipped, with the
reason, where Chromium or its driver is missing."""
import os
import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("selenium")
pytest.importorskip("uvicorn")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver; "
                "make test installs them)", allow_module_level=True)

import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from agent.collector import billing  # noqa: E402
from agent.collector.store import Collector  # noqa: E402
from agent.collector.console import auth  # noqa: E402
from agent.collector.console.app import MAX_POINTS, make_app  # noqa: E402
from conftest import ROOT  # noqa: E402

RATES = os.path.join(ROOT, "docs", "rates.example.toml")
PW = {"alice": "alice-operator-1", "bob": "bob-viewer-22"}


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """The console's app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app):
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the console did not start"
            time.sleep(0.05)
        self.url = "http://127.0.0.1:%d" % self.port

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from hil.harness.sim import simulate
    d = tmp_path_factory.mktemp("console_browser")
    db = str(d / "ledger.sqlite")
    assert simulate(devices=3, days=2.0, interval_s=900, sample_s=60, db=db, seed=9)["reconciled"]
    users = str(d / "users.sqlite")
    u = auth.Users(users)
    u.add("alice", "operator", PW["alice"])
    u.add("bob", "viewer", PW["bob"])
    u.close()
    srv = Server(make_app(db, users, rates=RATES))
    downloads = d / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield {"db": db, "url": srv.url, "drv": drv, "downloads": downloads}
    finally:
        drv.quit()
        srv.close()


def _login(s, user):
    drv = s["drv"]
    drv.delete_all_cookies()
    drv.get(s["url"] + "/fleet")
    assert "/login" in drv.current_url                   # refused without a login
    drv.find_element(By.ID, "user").send_keys(user)
    drv.find_element(By.ID, "password").send_keys(PW[user])
    drv.find_element(By.ID, "login").click()
    WebDriverWait(drv, 15).until(EC.presence_of_element_located((By.ID, "fleet")))


def test_operator_journey(site):
    drv = site["drv"]
    col = Collector(site["db"], keys=lambda d: None)
    try:
        devices = col.devices()
        days = col.ledger("sim-002")["sim-002"]
        records = col.db.execute("SELECT COUNT(*) FROM records WHERE device_id='sim-002'").fetchone()[0]
    finally:
        col.close()
    _login(site, "alice")
    shown = [a.text for a in drv.find_elements(By.CSS_SELECTOR, "#fleet tbody td:first-child a")]
    assert shown == devices
    drv.find_element(By.LINK_TEXT, "sim-002").click()
    WebDriverWait(drv, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-charts"))
    got = drv.execute_script(
        "var d = document.getElementById('daily').data, i = document.getElementById('intervals').data;"
        "return [d.length, d[0].x.length, d[0].y.reduce(function (a, b) { return a + b; }, 0),"
        " i[0].x.length, document.querySelectorAll('#daily svg .point').length];")
    assert got[0] == 1
    assert got[1] == len(days)                                   # one bar per UTC day of the ledger
    assert got[2] == pytest.approx(sum(v.get("air", 0) for v in days.values()) / 1000)  # m3 from litres
    assert got[3] == min(records, MAX_POINTS)                   # one point per record
    assert got[4] == len(days)                                   # and the bars are drawn
    # the bill, downloaded as CSV through the page's link
    drv.get(site["url"] + "/bill/sim-002?period=2026-01")
    total = drv.find_element(By.ID, "total").text
    drv.find_element(By.ID, "bill-csv").click()
    path = site["downloads"] / "bill-sim-002-2026-01.csv"
    deadline = time.time() + 20
    while not path.exists() and time.time() < deadline:
        time.sleep(0.1)
    want = billing.run(site["db"], RATES, period="2026-01", devices=["sim-002"], fmt="csv")
    assert path.read_text() == want
    assert sum(float(x.split(",")[8]) for x in want.splitlines()[1:]) == pytest.approx(float(total))


def test_refused_without_login_and_with_the_wrong_role(site):
    drv = site["drv"]
    drv.delete_all_cookies()
    drv.get(site["url"] + "/bills")
    assert "/login" in drv.current_url
    _login(site, "bob")
    drv.get(site["url"] + "/bills")
    assert drv.find_element(By.ID, "code").text == "403"
    assert "operator" in drv.find_element(By.ID, "message").text
    assert not drv.find_elements(By.LINK_TEXT, "Customers and bills")
    drv.find_element(By.ID, "logout").click()
    WebDriverWait(drv, 10).until(lambda d: "/login" in d.current_url)
    drv.get(site["url"] + "/fleet")
    assert "/login" in drv.current_url
