"""The dashboard in a real browser (Playwright driving Debian's Chromium) against a running
service with live twins, fed by the demo ward's gateway: the ward loads and updates live; a
patient view shows vitals and forecast bands; an alert is acknowledged and snoozed, and the
change persists; a what-if comparison runs and shows its ranking; a paused twin worker shows
"degraded" on the ward; the quality page shows the scorecard and the models' monitoring; a
nurse signs in and sees only her unit, and opens another unit's patient only by break-glass.
The service runs as served: sign-in, access rules and the audit trail on (the demo's users).
Screenshots of each page go to ``out/screenshots`` (the docs' copies come from there)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from vitaltwin.dashboard import DemoConfig, WardFeed, demo_accounts, install
from vitaltwin.governance import read_trail
from vitaltwin.service.access import open_security
from vitaltwin.service.alerts import AlertRule
from vitaltwin.service.app import create_app
from vitaltwin.service.bus import MemoryBus
from vitaltwin.store import DuckDBStore

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = Path("out/screenshots")
ALWAYS = AlertRule("test alert", "forecast:map_below_65_30min", on=-1.0, off=-2.0)
"""Fires on every patient's first forecast, so there is an alert to act on."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = DemoConfig(beds=4, speed=600, hours=3, seed=5)
"""Beds 1-2 in unit ICU-A, 3-4 in ICU-B; 3 h of course at 10 min per second (the twins settle
after 1 h), then real time."""
ACCOUNTS: dict[str, tuple[str, str]] = {}
"""The demo's users of this run: name -> (role, password)."""


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    security = open_security(tmp_path_factory.mktemp("security"))
    assert security.directory is not None
    ACCOUNTS.update(demo_accounts(security.directory, CONFIG))
    with DuckDBStore(tmp_path_factory.mktemp("ward") / "store") as store:
        app = install(create_app(store, MemoryBus(partitions=2), security=security,
                                 with_twins=True, shadow=False, rules=[ALWAYS],
                                 expected_beds=4))  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the service did not become ready")
        feed = WardFeed(url, CONFIG, api_key=ACCOUNTS["gateway"][1])
        feed.start_thread()
        try:
            yield url, app
        finally:
            feed.stop()
            server.should_exit = True
            thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def sign_in(pg: Any, url: str, user: str, then: str = "/ward") -> None:
    """Sign in on the sign-in page a page without a session is sent to."""
    pg.goto(f"{url}{then}")
    pg.wait_for_url("**/login?next=*")
    pg.fill("#username", user)
    pg.fill("#password", ACCOUNTS[user][1])
    pg.click("form.login button[type=submit]")
    pg.wait_for_url(f"**{then}")


@pytest.fixture
def page(browser: Any, ward: tuple[str, Any]) -> Iterator[Any]:
    """A browser tab signed in as the clinician (both units). Its content security policy is
    bypassed: Playwright's ``wait_for_function`` evaluates strings, which the service's policy
    forbids (the nurse's test keeps the policy and checks the pages break none of it)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(pg, ward[0], "clinician")
    yield pg
    context.close()
    assert errors == [], errors


def api(page: Any, url: str, path: str) -> Any:
    """GET a JSON API path with the page's session (its cookies)."""
    got = page.context.request.get(f"{url}{path}")
    assert got.ok, got.status
    return got.json()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_ward_loads_and_updates_live(ward: tuple[str, Any], page: Any) -> None:
    url, _ = ward
    page.goto(f"{url}/ward")
    page.wait_for_function("document.querySelectorAll('#beds tr.bed').length === 4",
                           timeout=60_000)  # fmt: skip
    first = page.get_attribute("#beds", "data-updated")
    page.wait_for_function(
        f"document.querySelector('#beds').dataset.updated !== {first!r}", timeout=10_000
    )
    # every bed shows its vitals with units in the header, and its twin
    assert "HR /min" in page.inner_text("#beds thead")
    some_risk = (
        "[...document.querySelectorAll('#beds td.risk')].some(td => /%/.test(td.textContent))"
    )
    page.wait_for_function(some_risk, timeout=120_000)
    shot(page, "ward")
    page.click("#beds tr.bed th a")  # a bed opens its patient
    page.wait_for_url("**/patients/*")


def test_a_patient_view_shows_vitals_and_bands(ward: tuple[str, Any], page: Any) -> None:
    url, _ = ward
    page.goto(f"{url}/patients/bed-01")
    page.wait_for_selector("#chart-HR canvas")
    page.wait_for_function("window.vitaltwin.series.HR && window.vitaltwin.series.HR.v.length > 5",
                           timeout=60_000)  # fmt: skip
    page.wait_for_function("document.querySelector('#forecast-note').textContent"
                           ".includes('Forecast from')", timeout=120_000)  # fmt: skip
    bands = page.evaluate("window.vitaltwin.charts.HR.data[2].filter(x => x !== null).length")
    assert bands > 0  # the 5 % band ahead of now
    page.wait_for_selector("#physiology table")
    shot(page, "patient")


def test_an_alert_is_acknowledged_and_snoozed_and_it_persists(
    ward: tuple[str, Any], page: Any
) -> None:
    url, _ = ward
    page.goto(f"{url}/patients/bed-02")
    page.wait_for_selector("#alerts .alert button[data-act=acknowledge]", timeout=120_000)
    page.click("#alerts .alert button[data-act=acknowledge]")
    page.wait_for_selector("#alerts .alert .badge.acknowledged")
    page.fill("#alerts .alert input[name=reason]", "fluids already running")
    page.select_option("#alerts .alert select[name=hours]", "2")
    page.click("#alerts .alert form button[type=submit]")
    page.wait_for_selector("#alerts .alert .badge.snoozed")
    page.reload()
    page.wait_for_selector("#alerts .alert .badge.snoozed")
    assert "fluids already running" in page.inner_text("#alerts")
    got = api(page, url, "/v1/alerts?patient=bed-02")["alerts"][0]
    assert got["state"] == "snoozed" and got["acknowledged_by"] and got["snoozed_until"]
    # the timeline records who did what and when
    page.wait_for_function("document.querySelector('#timeline').textContent"
                           ".includes('snoozed by clinician')")  # fmt: skip
    assert "acknowledged by clinician" in page.inner_text("#timeline")
    shot(page, "alert")


def test_a_whatif_comparison_shows_its_ranking(ward: tuple[str, Any], page: Any) -> None:
    url, _ = ward
    page.goto(f"{url}/patients/bed-03")
    page.wait_for_function("document.querySelector('#forecast-note').textContent"
                           ".includes('Forecast from')", timeout=120_000)  # fmt: skip
    page.click("#compare")
    page.wait_for_selector("#whatif-table tbody tr", timeout=120_000)
    rows = page.locator("#whatif-table tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).locator("td").first.inner_text() == "1"
    assert "Decision support only" in page.inner_text("#whatif-result")
    shot(page, "whatif")


def test_a_paused_worker_shows_degraded_on_the_ward(ward: tuple[str, Any], page: Any) -> None:
    url, app = ward
    app.state.twins.paused.set()
    try:
        page.goto(f"{url}/ward")
        page.wait_for_function("[...document.querySelectorAll('#beds td.twin')]"
                               ".every(td => td.textContent.includes('degraded'))",
                               timeout=30_000)  # fmt: skip
        shot(page, "ward-degraded")
    finally:
        app.state.twins.paused.clear()
    page.wait_for_function("[...document.querySelectorAll('#beds td.twin')]"
                           ".every(td => td.textContent.includes('tracking'))",
                           timeout=30_000)  # fmt: skip


def test_the_quality_page_shows_the_scorecard(ward: tuple[str, Any], page: Any) -> None:
    url, _ = ward
    api(page, url, "/v1/alerts")  # the alerts exist by now (earlier tests waited for them)
    page.goto(f"{url}/quality")
    text = page.inner_text("#scorecard")
    assert "Alerts per patient-hour" in text and "Patient-hours tracked" in text
    # the models' monitoring: the twins' forecasts wait for their six hours of outcome
    summary = page.inner_text("#monitoring-summary")
    assert "6-h event forecasts" in summary and "forecasts wait for their outcome" in summary
    shot(page, "quality")


def test_a_nurse_sees_only_her_unit_and_breaks_the_glass_for_another(
    ward: tuple[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    url, app = ward
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # policy kept
    pg = context.new_page()
    violations: list[str] = []
    pg.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text
          else None)  # fmt: skip
    try:
        sign_in(pg, url, "nurse-icu-a")
        expect(pg.locator("#beds tr.bed")).to_have_count(2, timeout=60_000)
        beds = pg.locator("#beds tr.bed th a").all_inner_texts()
        assert sorted(b.strip() for b in beds) == ["bed-01", "bed-02"]  # ICU-A only
        assert "nurse-icu-a (nurse, ICU-A)" in pg.inner_text("#signed-in")
        shot(pg, "ward-nurse")
        # another unit's patient: refused, with the break-glass form
        pg.goto(f"{url}/patients/bed-03")
        assert "not assigned to nurse-icu-a" in pg.inner_text("#denied")
        pg.fill("#break-glass-reason", "covering ICU-B during a resuscitation")
        pg.click("form.login button[type=submit]")
        pg.wait_for_selector("#break-glass-note")
        pg.wait_for_selector("#chart-HR canvas", timeout=60_000)
        expect(pg.locator("#physiology table")).to_have_count(1, timeout=60_000)
        security = app.state.guard.security
        glass = [e for e in read_trail(security.audit.path)
                 if e.get("break_glass") == "covering ICU-B during a resuscitation"]  # fmt: skip
        assert {e["who"] for e in glass} == {"nurse-icu-a"}
        assert any(e["operation"].startswith("GET /v1/patients/{patient_id}/observations")
                   for e in glass)  # fmt: skip
        # signing out ends the session: the ward asks for sign-in again
        pg.goto(f"{url}/ward")
        pg.click("form.who button[type=submit]")
        pg.wait_for_url("**/login")
        pg.goto(f"{url}/ward")
        pg.wait_for_url("**/login?next=*")
        assert violations == [], violations  # the pages work under the service's policy
    finally:
        context.close()
