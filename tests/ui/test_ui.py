"""End-to-end tests of the web UI in real headless Chromium (selenium).

Each server is a real `ork serve` (target/debug/ork) on a free port over a
fresh SQLite file, with workflows/ applied. Screenshots go to
target/ui-screenshots/ and are checked for non-blank content.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
ORK = ROOT / "target" / "debug" / "ork"
SHOTS = ROOT / "target" / "ui-screenshots"

# A run that stays running until cancelled, and one of 10,000 instances.
SLOW = """
name: slow
description: One task that sleeps, to be cancelled
tasks:
  nap:
    command: sh
    args: [-c, 'echo napping; sleep 60']
"""
WIDE = """
name: wide
description: 10,000 instances in three layers
tasks:
  start: {executor: noop}
  fan: {executor: noop, depends_on: [start], task_count: 9998}
  end: {executor: noop, depends_on: [fan]}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, api_key=None):
        self.dir = Path(tempfile.mkdtemp(prefix="ork-ui-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.env = dict(os.environ, ORK_DATABASE_URL=f"sqlite:{self.dir}/ork.db",
                        ORK_LOG_DIR=str(self.dir / "logs"), ORK_STATE_DIR=str(self.dir / ".ork"),
                        RUST_LOG="warn")
        self.env.pop("DATABASE_URL", None)
        if api_key:
            self.env["ORK_API_KEY"] = api_key
        else:
            self.env.pop("ORK_API_KEY", None)
        (self.dir / "slow.yaml").write_text(SLOW)
        (self.dir / "wide.yaml").write_text(WIDE)
        for what in [ROOT / "workflows", ROOT / "workflows" / "my_etl" / "etl.yaml",
                     self.dir / "slow.yaml", self.dir / "wide.yaml"]:
            subprocess.run([str(ORK), "apply", str(what)], env=self.env, check=True,
                           stdout=subprocess.DEVNULL, cwd=self.dir)
        self.log = open(self.dir / "serve.log", "w")
        self.proc = subprocess.Popen([str(ORK), "serve", "--addr", f"127.0.0.1:{self.port}"],
                                     env=self.env, cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("ork serve did not come up: " + (self.dir / "serve.log").read_text())

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def trigger(self, workflow, params=None):
        return self.call("POST", "/trigger", {"workflow": workflow, "params": params or {}})["run_id"]

    def wait_run(self, run_id, statuses, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self.call("GET", f"/api/runs/{run_id}")["run"]
            if run["status"] in statuses:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} is still {run['status']}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keyed_server():
    s = Server(api_key="s3cret-ui-key")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="ork-ui-chromium-")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, timeout=20):
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[StaleElementReferenceException])


def settled(driver, timeout=60):
    """Waits until the run page has drawn the run's final state."""
    wait(driver, timeout).until(lambda d: d.find_element(By.ID, "main").get_attribute("data-live") == "done")


def css(driver, selector, timeout=20):
    return wait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, selector)))


def click(driver, selector):
    """Clicks what the selector finds, again if a live update redrew it."""
    def attempt(d):
        d.find_element(By.CSS_SELECTOR, selector).click()
        return True
    wait(driver).until(attempt)


def distinct_colours(png):
    img = Image.open(png).convert("RGB")
    img.thumbnail((400, 400))
    return len(img.getcolors(maxcolors=1 << 24) or [])


def screenshot(element_or_driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    element_or_driver.save_screenshot(str(path)) if hasattr(element_or_driver, "save_screenshot") \
        else element_or_driver.screenshot(str(path))
    assert distinct_colours(path) > 20, f"{path} looks blank"
    return path


def test_trigger_from_the_form_goes_live_to_success(server, browser):
    browser.get(server.url + "/#/workflows")
    css(browser, "#workflows tr.wf")
    names = [r.get_attribute("data-name") for r in browser.find_elements(By.CSS_SELECTOR, "#workflows tr.wf")]
    assert {"etl", "etl-failing", "slow", "wide"} <= set(names)
    click(browser, "#workflows tr.wf[data-name=etl]")
    wait(browser).until(lambda d: d.current_url.endswith("#/workflows/etl"))
    css(browser, "#trigger-form")
    assert "transform" in css(browser, "#wf-source").text  # the YAML as applied
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dag .node")) == 5
    params = browser.find_element(By.ID, "trigger-params")
    params.clear()
    params.send_keys('{"day": "2026-12-01"}')
    browser.find_element(By.ID, "trigger-btn").click()
    wait(browser).until(lambda d: "#/runs/" in d.current_url)
    # A marker survives only if the page is never reloaded.
    browser.execute_script("window.__noReload = true")
    wait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#run-status").get_attribute("data-status") == "success")
    settled(browser)
    assert browser.execute_script("return window.__noReload") is True
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dag .node[data-status=success]")) == 5)
    nodes = {n.get_attribute("data-name"): n for n in browser.find_elements(By.CSS_SELECTOR, "#dag .node")}
    assert sorted(nodes) == ["extract", "load", "report", "transform", "validate"]
    assert nodes["transform"].get_attribute("data-count") == "4"  # one node for the fan-out
    assert "4 success" in nodes["transform"].text
    css(browser, "#gantt rect.attempt")
    screenshot(browser, "run.png")
    screenshot(browser.find_element(By.CSS_SELECTOR, "#dag"), "dag.png")
    screenshot(browser.find_element(By.CSS_SELECTOR, "#gantt"), "gantt.png")
    # The fan-out expands into its instances.
    nodes["transform"].click()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#instances tr.instance")) == 4)
    browser.find_elements(By.CSS_SELECTOR, "#instances tr.instance")[0].click()
    css(browser, "#attempts")
    assert "2026-12-01" in css(browser, "#task-input").text
    run_id = browser.current_url.split("#/runs/")[1].split("?")[0]

    browser.get(server.url + "/#/runs")
    css(browser, "#runs tr.run")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")
    assert rows[0].get_attribute("data-status") == "success"
    assert rows[0].get_attribute("data-id") == run_id
    assert "8/8" in rows[0].text
    # The cost stored when the run ended, formatted like the run page's.
    headers = [th.get_attribute("textContent") for th in browser.find_elements(By.CSS_SELECTOR, "#runs thead th")]
    assert headers[-1] == "Cost", headers
    shown = server.call("GET", f"/api/runs/{run_id}")
    assert shown["run"]["cost_usd"] == shown["cost"]["total_usd"] > 0
    assert row_cost(rows[0]) == f"${shown['run']['cost_usd']:.6f}"
    screenshot(browser, "runs.png")


def test_runs_filters(server, browser):
    server.wait_run(server.trigger("etl-failing"), {"failed"})
    browser.get(server.url + "/#/runs?workflow=etl-failing")
    css(browser, "#runs tr.run")
    assert all("etl-failing" in r.text for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr.run"))
    browser.get(server.url + "/#/runs?trigger=backfill")
    css(browser, "#runs tbody td.muted")


def test_a_failed_tasks_log(server, browser):
    run = server.trigger("etl-failing")
    server.wait_run(run, {"failed"})
    browser.get(server.url + f"/#/runs/{run}")
    settled(browser)
    node = css(browser, "#dag .node[data-name=load]")
    assert node.get_attribute("data-status") == "failed"
    assert css(browser, "#dag .node[data-name=report]").get_attribute("data-status") == "skipped"
    node.click()
    log = css(browser, "#log")
    assert "the warehouse refused the connection" in log.text
    attempts = browser.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
    assert len(attempts) == 2 and "retried" in attempts[0].text and "failed" in attempts[1].text
    screenshot(browser, "run-failed.png")
    retry = browser.find_element(By.ID, "retry-btn")
    assert retry.is_enabled() and retry.get_attribute("title")
    retry.click()
    # The run reopens (a run event says why) and load fails again.
    reopened = lambda _: any(
        e["status"] == "running" and "retry requested" in (e["detail"] or "")
        for e in server.call("GET", f"/api/runs/{run}/events")["events"]
    )
    wait(browser).until(reopened)
    server.wait_run(run, {"failed"})


def row_cost(row):
    return row.find_element(By.CSS_SELECTOR, "td.cost").text


def listed_cost(driver, server, run):
    """The Cost cell of `run` in the runs list."""
    driver.get(server.url + "/#/runs")
    return row_cost(css(driver, f"#runs tr.run[data-id='{run}']"))


def test_cancel_a_running_run(server, browser):
    run = server.trigger("slow")
    server.wait_run(run, {"running"})
    assert listed_cost(browser, server, run) == "—"  # known when the run ends
    browser.get(server.url + f"/#/runs/{run}")
    wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "#dag .node").get_attribute("data-status") == "running")
    click(browser, "#cancel-btn")
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "#run-status").get_attribute("data-status") == "cancelled")
    settled(browser)
    shown = server.call("GET", f"/api/runs/{run}")
    assert shown["run"]["status"] == "cancelled"
    assert listed_cost(browser, server, run) == f"${shown['run']['cost_usd']:.6f}"


def test_ten_thousand_instances_load_within_two_seconds(server, browser):
    run = server.trigger("wide")
    server.wait_run(run, {"success"}, timeout=120)
    browser.get("about:blank")
    start = time.time()  # a full page load: the document, its script, the API calls
    browser.get(server.url + f"/#/runs/{run}")
    css(browser, "#gantt")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dag .node[data-status=success]")) == 3)
    settled(browser)
    elapsed = time.time() - start
    print(f"\n10,000-instance run page loaded in {elapsed:.2f}s")
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "timing.txt").write_text(f"{elapsed:.3f}\n")
    assert elapsed <= 2.0, f"the page took {elapsed:.2f}s"
    fan = browser.find_element(By.CSS_SELECTOR, "#dag .node[data-name=fan]")
    assert fan.get_attribute("data-count") == "9998"
    fan.click()
    wait(browser).until(lambda d: "of 9998" in d.find_element(By.ID, "panel").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#instances tr.instance")) == 50
    screenshot(browser, "run-wide.png")
    # Every kind of run by now: the list as the README shows it.
    browser.get(server.url + "/#/runs")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tr.run")) >= 5)
    screenshot(browser, "runs-all.png")


def test_runs_status_filter_and_pages(server, browser):
    """The status filter through its select, and pages of 25 (after the
    screenshot of every kind of run, which these runs would crowd out)."""
    for _ in range(26):
        server.trigger("simple")
    browser.get(server.url + "/#/runs")
    css(browser, "#runs tr.run")
    Select(browser.find_element(By.ID, "f-status")).select_by_visible_text("failed")
    wait(browser).until(lambda d: "status=failed" in d.current_url)
    wait(browser).until(lambda d: {r.get_attribute("data-status") for r in d.find_elements(By.CSS_SELECTOR, "#runs tr.run")} == {"failed"})
    browser.get(server.url + "/#/runs?workflow=simple")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tr.run")) == 25)
    first = {r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "#runs tr.run")}
    assert browser.find_element(By.ID, "prev").get_attribute("disabled")
    wait(browser).until(lambda d: d.find_element(By.ID, "next").is_enabled())
    click(browser, "#next")
    wait(browser).until(lambda d: d.find_element(By.ID, "page-no").text == "page 2")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tr.run")) == 1)
    last = browser.find_element(By.CSS_SELECTOR, "#runs tr.run").get_attribute("data-id")
    assert last not in first and browser.find_element(By.ID, "next").get_attribute("disabled")
    for run in first | {last}:
        server.wait_run(run, {"success"})


def test_workflow_page_shows_the_typed_schemas(server, browser):
    browser.get(server.url + "/#/workflows/my_etl")
    css(browser, "#schemas .schema")
    tasks = [e.get_attribute("data-task") for e in browser.find_elements(By.CSS_SELECTOR, "#schemas .schema")]
    assert tasks == ["extract", "load", "score", "transform"]
    transform = browser.find_element(By.CSS_SELECTOR, '#schemas .schema[data-task="transform"]')
    # Input: the upstream task's model and a param with a default; output: its model's fields.
    assert "extract Extracted" in transform.text and "min_spend optional number" in transform.text
    assert "countries list[CountrySummary]" in transform.text
    score = browser.find_element(By.CSS_SELECTOR, '#schemas .schema[data-task="score"]')
    assert "countries list[CountrySummary]" in score.text  # the Rust task's, from --ork-schema
    screenshot(browser.find_element(By.ID, "schemas"), "schemas.png")


def test_workflow_page_shows_the_schedule_and_whether_it_is_paused(server, browser):
    shown = server.call("GET", "/api/workflows/nightly")
    assert shown["schedule"]["cron"] == "0 6 * * *" and len(shown["schedule"]["next"]) >= 3
    browser.get(server.url + "/#/workflows/nightly")
    fires = wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#next-fires li"))
    assert len(fires) == len(shown["schedule"]["next"])
    assert "0 6 * * *" in browser.find_element(By.ID, "main").text
    assert not browser.find_elements(By.ID, "wf-paused")
    server.call("POST", "/api/workflows/nightly/pause", {})
    try:
        browser.get(server.url + "/#/workflows")
        css(browser, "#workflows tr.wf[data-name=nightly] .badge.paused")
        click(browser, "#workflows tr.wf[data-name=nightly]")
        assert "does not fire" in css(browser, "#wf-paused").find_element(By.XPATH, "//p[contains(., 'Paused')]").text
    finally:
        server.call("POST", "/api/workflows/nightly/unpause", {})


def test_a_large_output_downloads_from_the_task_panel(server, browser):
    run = server.trigger("big-output")
    server.wait_run(run, {"success"})
    browser.get(server.url + f"/#/runs/{run}")
    settled(browser)
    click(browser, "#dag .node[data-name=produce]")
    note = css(browser, "#output-ref")
    assert "A large output, kept by reference: 9.8 MiB" in note.text
    link = css(browser, "#output-download").get_attribute("href")
    assert link.startswith(server.url + f"/api/runs/{run}/tasks/") and link.endswith("/output")
    with urllib.request.urlopen(link, timeout=30) as r:
        assert r.headers["Content-Disposition"] == 'attachment; filename="produce.0.output.json"'
        body = json.load(r)
    assert len(body["rows"]) == 10240 and body["rows"][0] == "x" * 1000


def test_log_in_when_a_key_is_set(keyed_server, browser):
    browser.delete_all_cookies()
    browser.get(keyed_server.url + "/#/runs")
    css(browser, "#login-form")
    key = browser.find_element(By.ID, "login-key")
    key.send_keys("wrong")
    browser.find_element(By.ID, "login-btn").click()
    wait(browser).until(lambda d: "wrong API key" in d.find_element(By.ID, "login-error").text)
    key.clear()
    key.send_keys(keyed_server.api_key)
    browser.find_element(By.ID, "login-btn").click()
    css(browser, "#runs")
    cookie = browser.get_cookie("ork_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert keyed_server.api_key not in cookie["value"]
    # An action with the cookie: trigger from the form.
    browser.get(keyed_server.url + "/#/workflows/etl")
    css(browser, "#trigger-btn").click()
    wait(browser).until(lambda d: "#/runs/" in d.current_url)
    css(browser, "#run-status")
    # Its workers report before the server stops.
    keyed_server.wait_run(browser.current_url.rsplit("/", 1)[1], {"success"})
    css(browser, "#logout-btn").click()
    css(browser, "#login-form")
    assert browser.get_cookie("ork_session") is None
