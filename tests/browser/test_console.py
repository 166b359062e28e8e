"""The web console in a real browser (headless Chromium through Selenium 4), against the
sandbox: sign in with the admin token, make a membership write fail at the emulated partner so
a failing item appears (and "retry now" it), run a reconcile dry run and repair after the
confirmation, explain the user, look at the audit log, sign out. A screenshot of each page goes to
target/console-screenshots/. Run by .ci/run after the tests:

    python tests/browser/test_console.py [path/to/scim-bridge]

No JavaScript is involved: the console serves none (its CSP forbids scripts); the browser
shows that the forms, cookies, redirects and styles work as a person sees them.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ADMIN_TOKEN = "console-admin-token-" + os.urandom(12).hex()
SCIM_TOKEN = "console-scim-token-" + os.urandom(12).hex()
SHOTS = os.path.join("target", "console-screenshots")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            raw = res.read()
            return res.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_for(what, check, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


class Sandbox:
    def __init__(self, binary):
        self.port, self.emu_port = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="console-sandbox-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
        env.update(
            {
                "SCIM_BRIDGE_ADMIN__TOKEN": ADMIN_TOKEN,
                "SCIM_BRIDGE_SANDBOX_TOKEN": SCIM_TOKEN,
                # One attempt per call, no circuit, a failed item retried only in 10 minutes
                # (or by "retry now"), requests that do not wait long for the engine.
                "SCIM_BRIDGE_BRIDGE__PARTNER__MAX_ATTEMPTS": "1",
                "SCIM_BRIDGE_BRIDGE__PARTNER__CIRCUIT_FAILURE_THRESHOLD": "0",
                "SCIM_BRIDGE_BRIDGE__RETRY_BASE_MS": "600000",
                "SCIM_BRIDGE_BRIDGE__RETRY_MAX_MS": "600000",
                "SCIM_BRIDGE_BRIDGE__WAIT_DEADLINE_MS": "1000",
                "SCIM_BRIDGE_LOG__LEVEL": "warn",
            }
        )
        self.log = open(os.path.join(self.dir, "bridge.log"), "w")
        self.proc = subprocess.Popen(
            [
                binary, "serve", "--sandbox",
                "--listen", f"127.0.0.1:{self.port}",
                "--emulator-listen", f"127.0.0.1:{self.emu_port}",
                "--data-dir", self.dir,
            ],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.root = f"http://127.0.0.1:{self.port}"
        self.scim = self.root + "/scim/v2"
        self.emulator = f"http://127.0.0.1:{self.emu_port}/_emulator/sites/sandbox"
        wait_for("the sandbox", lambda: self._ready())

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("the sandbox exited; see " + self.log.name)
        try:
            return call("GET", self.root + "/readyz")[0] == 200
        except OSError:
            return False

    def faults(self, faults):
        status, body = call("PUT", self.emulator + "/faults", faults)
        assert status == 200, (status, body)

    def partner_groups(self, email):
        _, site = call("GET", self.emulator)
        for u in site.get("users", []):
            if u.get("email", "").lower() == email:
                return u.get("groups", [])
        return None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def shot(driver, name):
    path = os.path.join(SHOTS, name + ".png")
    # The whole page: as tall as its content.
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, max(1000, height + 100))
    driver.save_screenshot(path)
    print("screenshot", path)


def submit(driver, button_text):
    """Clicks the button and waits until the browser shows the page the form led to."""
    follow(driver, driver.find_element(By.XPATH, f"//button[contains(., '{button_text}')]"))


def follow(driver, element):
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(EC.staleness_of(old))


def test_console(binary):
    os.makedirs(SHOTS, exist_ok=True)
    sandbox = Sandbox(binary)
    driver = browser()
    try:
        # Signed out: every page leads to the sign-in form.
        driver.get(sandbox.root + "/console/failing")
        assert driver.current_url.endswith("/console/sign-in"), driver.current_url
        driver.find_element(By.NAME, "token").send_keys("not-the-admin-token-0123456789")
        submit(driver, "Sign in")
        assert "not an admin token" in driver.page_source
        shot(driver, "01-sign-in-refused")
        driver.find_element(By.NAME, "token").send_keys(ADMIN_TOKEN)
        submit(driver, "Sign in")
        assert driver.current_url.endswith("/console"), driver.current_url
        assert "Overview" in driver.title
        cookie = driver.get_cookie("scim_bridge_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        # The stylesheet applies (the CSP lets only the console's own CSS in).
        header = driver.find_element(By.TAG_NAME, "header")
        assert header.value_of_css_property("background-color") == "rgba(29, 36, 48, 1)"
        shot(driver, "02-overview-empty")

        # A user, then a partner fault on user updates: the membership write fails.
        status, user = call("POST", sandbox.scim + "/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
        }, SCIM_TOKEN)
        assert status == 201, (status, user)
        sandbox.faults({"script": [
            {"call": "update_user", "count": 1000, "action": {"status": {"status": 503}}}
        ]})
        status, group = call("POST", sandbox.scim + "/Groups", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Analysts",
            "members": [{"value": user["id"]}],
        }, SCIM_TOKEN)
        assert status in (201, 202, 503), (status, group)

        def failing_shown():
            driver.get(sandbox.root + "/console/failing")
            return "ada@example.com" in driver.page_source
        wait_for("the failing item", failing_shown)
        assert "503" in driver.page_source
        shot(driver, "03-failing")
        submit(driver, "Retry now")
        assert "1 item(s) made due now" in driver.page_source, driver.page_source
        shot(driver, "04-failing-retried")
        driver.get(sandbox.root + "/console")
        assert "attention" in driver.page_source
        assert driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.errors")
        shot(driver, "05-overview-failing")

        # Reconcile: the dry run shows the membership the partner lacks.
        follow(driver, driver.find_element(By.LINK_TEXT, "Reconcile"))
        submit(driver, "Run a dry run")
        assert "Memberships drifted" in driver.page_source, driver.page_source
        assert "ada@example.com" in driver.page_source and "Analysts" in driver.page_source
        shot(driver, "06-reconcile-dry-run")
        sandbox.faults({})
        submit(driver, "Repair this drift")
        assert "Yes, repair the drift" in driver.page_source
        shot(driver, "07-reconcile-confirm")
        submit(driver, "Yes, repair the drift")
        assert "Repair started" in driver.page_source
        shot(driver, "08-reconcile-applied")
        wait_for("the repair at the partner",
                 lambda: "Analysts" in (sandbox.partner_groups("ada@example.com") or []))
        driver.get(sandbox.root + "/console/failing")
        wait_for("the outbox to drain", failing_cleared(driver, sandbox))
        shot(driver, "09-failing-cleared")

        # Why Ada has access now: the user page (explain).
        driver.get(sandbox.root + "/console/user?tenant=sandbox&q=ada@example.com&live=true")
        assert user["id"] in driver.page_source and "Analysts" in driver.page_source
        # Read live after the repair: the site holds what it should.
        assert "none: the site is in line" in driver.page_source, driver.page_source
        shot(driver, "10-user")

        driver.get(sandbox.root + "/console/audit?resource=Site")
        assert "RECONCILE" in driver.page_source
        driver.get(sandbox.root + "/console/audit")
        assert "POST" in driver.page_source and "sandbox" in driver.page_source
        assert ADMIN_TOKEN not in driver.page_source and SCIM_TOKEN not in driver.page_source
        shot(driver, "11-audit")

        submit(driver, "Sign out")
        assert driver.current_url.endswith("/console/sign-in")
        driver.get(sandbox.root + "/console")
        assert driver.current_url.endswith("/console/sign-in")
    finally:
        driver.quit()
        sandbox.stop()


def failing_cleared(driver, sandbox):
    def check():
        driver.get(sandbox.root + "/console/failing")
        return "No outbox item is failing." in driver.page_source
    return check


if __name__ == "__main__":
    test_console(sys.argv[1] if len(sys.argv) > 1 else "target/debug/scim-bridge")
    print("browser test: the console works in Chromium")
