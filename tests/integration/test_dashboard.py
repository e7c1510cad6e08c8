"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real worker on a real broker, with the built-in simulated control plane.

An operator opens the page, types the token once, and without ever reloading sees a
failing health signal become a PENDING_APPROVAL recommendation, approves it with another
mode and a comment and watches it run to SUCCEEDED, rejects another, and is told the API's
reason when an action is no longer allowed. A second test walks the instance timeline and
the cluster's safety page.

Skips, saying why, when Chromium (``make system-deps`` installs it as root) or the
``playwright`` package is missing; never downloads a browser. On failure the page is
saved as a screenshot in the test's tmp dir (the path is printed). With
``REMEDIATOR_SCREENSHOT=docs/dashboard.png`` the first test also saves the fleet view there.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import event_payload, run_payload
from tests.integration.conftest import (
    OPERATOR_TOKEN,
    OPERATOR_TOKENS,
    Broker,
    Kafka,
    Names,
    WorkerProcess,
    launch_worker,
    permissive_policy_text,
    unique_names,
)

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("REMEDIATOR_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get("REMEDIATOR_SCREENSHOT")
REBOOT = "REMEDIATION_MODE_REBOOT_VM"
EVICT = "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"
VIEWER_TOKEN = "viewer-t0ken"
# Appear, change and finish within this many milliseconds (REBOOT_VM takes 3 s simulated).
WAIT_MS = 20_000


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make install)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium (as root)"
    return None


if (_reason := _missing()) is not None:
    pytest.skip(_reason, allow_module_level=True)

from playwright.async_api import Page, async_playwright, expect  # noqa: E402

#: A change freeze on one cluster only, holding through the module (and long after).
FROZEN = "cl-frozen"
FROZEN_POLICY = f"""
[[freeze]]
name = "year-end"
clusters = ["{FROZEN}"]
start = 2026-01-01T00:00:00Z
end = 2100-01-01T00:00:00Z
reason = "year-end launch: hands off"
"""


@pytest.fixture(scope="module")
def dashboard_worker(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, Names]]:
    """One worker for the module: approvals required (the permissive policy), the built-in
    simulated control plane, fast polling of its steps."""
    names = unique_names()
    directory = tmp_path_factory.mktemp("dashboard")
    policy = directory / "policy.toml"
    policy.write_text(permissive_policy_text() + FROZEN_POLICY)
    worker = launch_worker(
        broker,
        names,
        directory,
        REMEDIATOR_POLICY_FILE=str(policy),
        REMEDIATOR_API_TOKENS=f"{OPERATOR_TOKENS},viv:viewer={VIEWER_TOKEN}",
        REMEDIATOR_MAX_RUNNING_PER_CLUSTER="2",
        REMEDIATOR_POLL_INTERVAL_SECONDS="0.2",
        REMEDIATOR_POLL_INTERVAL_MAX_SECONDS="0.5",
    )
    try:
        yield worker, names
    finally:
        worker.stop()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            opened = await context.new_page()
            errors: list[str] = []
            opened.on("pageerror", lambda exc: errors.append(str(exc)))
            yield opened
            assert not errors, f"errors in the page: {errors}"
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def screenshot_on_failure(page: Page, tmp_path: Path) -> AsyncIterator[None]:
    try:
        yield
    except BaseException:
        path = tmp_path / "dashboard-failure.png"
        with contextlib.suppress(Exception):
            await page.screenshot(path=str(path), full_page=True)
            print(f"\nscreenshot of the page at the failure: {path}")  # noqa: T201
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def fail(kafka: Kafka, names: Names, cluster: str, instance: str, **extra: Any) -> None:
    """A failing health signal: a critical alert firing (opens a HOST_AWARE recommendation)."""
    event = event_payload(
        cluster_id=cluster,
        instance_id=instance,
        instance_name=f"gpu-{instance}",
        observed_at=_now(),
        **extra,
    )
    await kafka.produce(names.passive, event, key=instance.encode())


async def sign_in(
    page: Page,
    worker: WorkerProcess,
    path: str = "/",
    token: str = OPERATOR_TOKEN,
    who: str = "operator (unrestricted)",
) -> None:
    await page.goto(worker.base_url + path)  # "/" redirects to /dashboard/
    await page.fill("#token", token)
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#who")).to_have_text(f"signed in as {who}")
    await expect(page.locator("#live")).to_have_text("● live", timeout=WAIT_MS)


def row(page: Page, instance: str) -> Any:
    return page.locator(f'#listing tr.rem[data-instance="{instance}"]')


# Every state a row showed, in order, per instance: renders replace the table, so the
# observer sees each state the operator could have seen.
RECORD_STATES = """() => {
  window.seenStates = {};
  new MutationObserver(() => {
    for (const tr of document.querySelectorAll("#listing tr.rem")) {
      const seq = (window.seenStates[tr.dataset.instance] ||= []);
      const state = tr.querySelector(".badge").dataset.state;
      if (seq[seq.length - 1] !== state) seq.push(state);
    }
  }).observe(document.getElementById("main"), { childList: true, subtree: true });
}"""


async def test_approve_watch_it_run_reject_and_a_refusal_without_reloading(
    dashboard_worker: tuple[WorkerProcess, Names], kafka: Kafka, page: Page, tmp_path: Path
) -> None:
    worker, names = dashboard_worker
    cluster = f"cl-{uuid.uuid4().hex[:6]}"
    async with screenshot_on_failure(page, tmp_path):
        await sign_in(page, worker)
        assert page.url.endswith("/dashboard/")
        await page.evaluate("() => { window.samePage = true; }")
        await page.evaluate(RECORD_STATES)

        # Failing signals arrive while the page is open: the recommendations appear.
        for instance in ("i-approve", "i-reject", "i-refused"):
            await fail(kafka, names, cluster, instance)
        for instance in ("i-approve", "i-reject", "i-refused"):
            await expect(row(page, instance).locator(".badge")).to_have_text(
                "PENDING_APPROVAL", timeout=WAIT_MS
            )
        approve_row = row(page, "i-approve")
        await expect(approve_row.locator(".evidence")).to_contain_text("DmesgGpuFallenOffBus")
        await expect(approve_row.locator(".requested")).to_contain_text("system:remediator")

        # Approve with a lighter mode and a comment; watch it run.
        await approve_row.locator("button[data-action=approve]").click()
        await page.select_option("#act-mode", REBOOT)
        await page.fill("#act-comment", "try a reboot first")
        await page.click("#act-submit")
        # REBOOT_VM takes 3 s on the simulated control plane: RUNNING is there to be seen.
        await expect(approve_row.locator(".badge")).to_have_text("RUNNING", timeout=WAIT_MS)
        await expect(approve_row.locator(".badge")).to_have_text("SUCCEEDED", timeout=WAIT_MS)
        await expect(approve_row.locator(".trail")).to_have_text(
            "PENDING_APPROVAL → PENDING → RUNNING → SUCCEEDED"
        )
        await expect(approve_row.locator(".mode")).to_have_text("REBOOT_VM")
        await expect(approve_row.locator(".reviewed")).to_contain_text("operator")
        await expect(approve_row.locator(".reviewed")).to_contain_text("try a reboot first")
        seen = (await page.evaluate("() => window.seenStates"))["i-approve"]
        lifecycle = ["PENDING_APPROVAL", "PENDING", "RUNNING", "SUCCEEDED"]
        assert _in_order(seen, ["PENDING_APPROVAL", "RUNNING", "SUCCEEDED"]), seen
        assert seen == sorted(seen, key=lifecycle.index), seen  # never back to an older one

        # Reject another, with a comment.
        reject_row = row(page, "i-reject")
        await reject_row.locator("button[data-action=reject]").click()
        await page.fill("#act-comment", "known flaky bus, tracked in OPS-1")
        await page.click("#act-submit")
        await expect(reject_row.locator(".badge")).to_have_text("CANCELLED", timeout=WAIT_MS)
        await expect(reject_row.locator(".reviewed")).to_contain_text("OPS-1")

        # An approval the state no longer allows: someone else cancelled it meanwhile.
        refused_row = row(page, "i-refused")
        await refused_row.locator("button[data-action=approve]").click()
        refused_id = await refused_row.get_attribute("data-id")
        async with _client(worker) as client:
            base = f"/v1/compute/clusters/{cluster}/instances/i-refused/remediations/{refused_id}"
            assert (await client.post(f"{base}/cancel")).status_code == 200
            await expect(refused_row.locator(".badge")).to_have_text("CANCELLED", timeout=WAIT_MS)
            await page.click("#act-submit")
            answer = await client.post(f"{base}/approve", json={})
        assert answer.status_code == 409, answer.text
        message = answer.json()["error"]["message"]
        await expect(page.locator("#act-error")).to_have_text(f"FAILED_PRECONDITION: {message}")
        await expect(page.locator("#act")).to_be_visible()
        await page.click("#act-close")

        # What the page showed is what the API says.
        async with _client(worker) as client:
            listed = await client.get(
                f"/v1/compute/clusters/{cluster}/instances/i-approve/remediations"
            )
        (approved,) = listed.json()["remediations"]
        assert (approved["state"], approved["mode"]) == ("SUCCEEDED", REBOOT)
        assert (approved["reviewed_by"], approved["review_comment"]) == (
            "operator",
            "try a reboot first",
        )
        assert await page.evaluate("() => window.samePage") is True  # never reloaded
        if SCREENSHOT:
            await _screenshot_fleet(page, kafka, names, cluster)


def _in_order(seen: list[str], expected: list[str]) -> bool:
    """``expected`` is a subsequence of ``seen``."""
    remaining = iter(seen)
    return all(state in remaining for state in expected)


@contextlib.asynccontextmanager
async def _client(worker: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=worker.base_url,
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        timeout=30,
    ) as client:
        yield client


async def _screenshot_fleet(page: Page, kafka: Kafka, names: Names, cluster: str) -> None:
    """The fleet view with a little of everything, for the README."""
    await fail(kafka, names, cluster, "i-7f3a", alert_name="DmesgXidError",
               annotations={"xid": "79", "gpu": "3"})  # fmt: skip
    run = run_payload(
        cluster_id="cl-us-east-1a",
        instance_id="i-0042",
        instance_name="gpu-i-0042",
        completed_at=_now(),
        message="diag level 3 failed on GPU 2",
    )
    await kafka.produce(names.active, run, key=b"i-0042")
    await fail(kafka, names, "cl-us-east-1a", "i-0c1d", alert_name="NpdReadonlyFilesystem")
    for instance in ("i-7f3a", "i-0042", "i-0c1d"):
        await expect(row(page, instance)).to_be_visible(timeout=WAIT_MS)
    await page.wait_for_timeout(2500)  # the cluster summaries refresh after a burst
    Path(SCREENSHOT or "").parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOT, full_page=True)


async def test_instance_timeline_and_cluster_safety(
    dashboard_worker: tuple[WorkerProcess, Names], kafka: Kafka, page: Page, tmp_path: Path
) -> None:
    worker, names = dashboard_worker
    cluster = f"cl-{uuid.uuid4().hex[:6]}"
    async with screenshot_on_failure(page, tmp_path):
        await sign_in(page, worker, f"/dashboard/#/instance/{cluster}/i-steps")
        await fail(kafka, names, cluster, "i-steps")
        timeline = page.locator("ol.timeline")
        await expect(timeline).to_contain_text("PENDING_APPROVAL (proposed)", timeout=WAIT_MS)
        await expect(timeline.locator("li[data-kind=decision]")).to_contain_text("opened")

        # Approved from the instance page (the open remediation's row): its steps show up.
        await page.locator("button[data-action=approve]").first.click()
        await page.select_option("#act-mode", REBOOT)
        await page.click("#act-submit")
        await expect(timeline).to_contain_text("REBOOT_VM DONE", timeout=WAIT_MS)
        await expect(timeline).to_contain_text("→ SUCCEEDED")
        kinds = await timeline.locator("li").evaluate_all("items => items.map(i => i.dataset.kind)")
        assert {"decision", "transition", "step"} <= set(kinds), kinds

        # The cluster's safety page: pause with a reason, resume; opt an instance out.
        await page.goto(f"{worker.base_url}/dashboard/#/cluster/{cluster}")
        await page.fill("#pause-reason", "rack 12 maintenance")
        await page.click("form:has(#pause-reason) button")
        await expect(page.locator("main")).to_contain_text("rack 12 maintenance")
        await page.click("text=Resume automated remediation")
        await expect(page.locator("main")).to_contain_text("Automation on")
        await page.fill("#optout-instance", "i-steps")
        await page.fill("#optout-reason", "customer debugging")
        await page.click("form:has(#optout-reason) button")
        optouts = page.locator("table.optouts")
        await expect(optouts).to_contain_text("customer debugging")
        await optouts.locator("button").click()
        await expect(page.locator("main")).to_contain_text("No instance is opted out.")


async def test_a_viewer_sees_who_approved_and_is_offered_no_action(
    dashboard_worker: tuple[WorkerProcess, Names], kafka: Kafka, page: Page, tmp_path: Path
) -> None:
    """The role from whoami hides what it may not do; a first of two approvals shows who
    approved and that someone else must approve too."""
    worker, names = dashboard_worker
    cluster = f"cl-{uuid.uuid4().hex[:6]}"
    await fail(kafka, names, cluster, "i-two")
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    base = f"{worker.base_url}/v1/compute/clusters/{cluster}/instances/i-two/remediations"
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        for _ in range(150):
            if listed := (await http.get(base)).json()["remediations"]:
                break
            await asyncio.sleep(0.2)
        first = await http.post(f"{base}/{listed[0]['id']}/approve", json={"mode": EVICT})
        assert first.json()["state"] == "PENDING_APPROVAL", first.text
    async with screenshot_on_failure(page, tmp_path):
        path = f"/dashboard/#/instance/{cluster}/i-two"
        await sign_in(page, worker, path, token=VIEWER_TOKEN, who="viv (viewer)")
        card = page.locator("[data-card=approvals]")
        await expect(card).to_contain_text("Approved by operator", timeout=WAIT_MS)
        await expect(card).to_contain_text("1 more approval needed, from someone else")
        await expect(page.locator("li[data-kind=approval]")).to_contain_text("approval 1 of 2")
        api_calls = page.locator("li[data-kind=api]")
        await expect(api_calls).to_contain_text("remediation.approve")
        await expect(api_calls).to_contain_text("by operator (unrestricted)")
        await expect(page.locator("button[data-action]")).to_have_count(0)
        await expect(page.locator("#optout-reason")).to_have_count(0)
        await page.goto(f"{worker.base_url}/dashboard/#/cluster/{cluster}")
        await expect(page.locator("main")).to_contain_text("Automation on")
        await expect(page.locator("#pause-reason")).to_have_count(0)


async def test_a_frozen_cluster_shows_its_freeze_on_the_fleet_cluster_and_instance_pages(
    dashboard_worker: tuple[WorkerProcess, Names], kafka: Kafka, page: Page, tmp_path: Path
) -> None:
    worker, names = dashboard_worker
    async with screenshot_on_failure(page, tmp_path):
        await fail(kafka, names, FROZEN, "i-frozen")
        await sign_in(page, worker, f"/dashboard/#/instance/{FROZEN}/i-frozen")
        card = page.locator("[data-card=freeze]")
        await expect(card).to_contain_text("Change freeze year-end", timeout=WAIT_MS)
        await expect(page.locator("[data-card=queued]")).to_contain_text("change freeze")
        await page.goto(f"{worker.base_url}/dashboard/#/cluster/{FROZEN}")
        banner = page.locator("[data-card=freeze]")
        await expect(banner).to_contain_text("year-end launch: hands off", timeout=WAIT_MS)
        await expect(banner).to_contain_text("(whole cluster)")
        await page.goto(f"{worker.base_url}/dashboard/#/")
        row = page.locator(f"table.clusters tr[data-cluster={FROZEN}]")
        await expect(row).to_contain_text("frozen: year-end", timeout=WAIT_MS)
        # Cards that do not apply leave nothing behind (they once showed as "null").
        await page.goto(f"{worker.base_url}/dashboard/#/instance/{FROZEN}/i-frozen")
        await expect(page.locator("[data-card=freeze]")).to_be_visible(timeout=WAIT_MS)
        assert "null" not in await page.locator("main").inner_text()
