"""The MLflow UI of `make demo`'s deployment in a real browser: Debian's Chromium driven by Playwright.

No browser is downloaded (`playwright install` is never run): the `playwright` package drives /usr/bin/chromium,
which `make setup` installs from Debian. The browser logs in with the credentials `make demo` prints (MLflow 3.17.2's
basic-auth answers 401 with a Basic challenge; the context's http_credentials answer it), opens the experiment list,
the experiment, the run, and sees its metric and param, then the Artifacts tab and the artifact's text. Without
credentials it gets nothing. Screenshots of the run page and the artifact view go to .cache/screenshots/ (README's
pictures are copies of them). Every request to a host that is not this machine is aborted, so nothing waits on the
closed network.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import pytest

from harness.ansible import ROOT

pytestmark = pytest.mark.integration
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / ".cache" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
# As root, without a sandbox; without the background-networking flags Chromium keeps trying Google's hosts.
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-gpu", "--disable-quic", "--disable-sync"]  # fmt: skip
TIMEOUT_MS = 30_000
NOTES = "UI check notes: carbon254.mlflow browser test artifact.\n"
# MLflow 3.17.2's UI keeps its layout in localStorage: "Model training" mode (the experiment opens on its runs, not on
# the GenAI overview with an onboarding popover) and the assistant panel closed (it opens itself and takes 320 px).
LOCAL_STORAGE = {"mlflow.workflowType_v1": json.dumps("machine_learning"), "mlflow.assistant.panelOpen_v1": "false",
                 "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}  # fmt: skip


def local(url: str) -> bool:
    return (urllib.parse.urlsplit(url).hostname or "").startswith(("127.", "localhost"))


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: make setup installs Debian's chromium")
    playwright_api.expect.set_options(timeout=TIMEOUT_MS)
    with playwright_api.sync_playwright() as playwright:
        yield playwright


@contextlib.contextmanager
def context(browser, credentials: dict | None):
    """A fresh Chromium profile; requests are recorded, and aborted when they leave this machine."""
    with tempfile.TemporaryDirectory(prefix="ui-") as profile:
        ctx = browser.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=ARGS, viewport=VIEWPORT,
            http_credentials=credentials, timeout=60_000)  # fmt: skip
        ctx.set_default_timeout(TIMEOUT_MS)
        seen: dict[str, list] = {"requests": [], "errors": [], "statuses": [], "blocked": []}
        ctx.on("request", lambda request: seen["requests"].append(request.url))
        ctx.on("response", lambda response: seen["statuses"].append((response.status, response.url)))
        ctx.on("weberror", lambda error: seen["errors"].append(str(error.error)[:300]))

        def abort(route) -> None:
            seen["blocked"].append(route.request.url)
            route.abort()

        ctx.route(lambda url: not local(url), abort)
        ctx.add_init_script(
            # try: the script also runs in frames (about:blank) whose localStorage is off limits.
            f"(() => {{ try {{ const s = {json.dumps(LOCAL_STORAGE)}; for (const k in s) localStorage.setItem(k, s[k]); }}"
            " catch (e) {} })();"
        )
        try:
            yield ctx, seen
        finally:
            ctx.close()


@pytest.fixture(scope="module")
def ui_run(client) -> dict:
    name = f"ui-check-{uuid.uuid4().hex[:8]}"
    run = client.step("ui-run", name, name + "-run", NOTES, deadline=180)
    return {**run, "experiment_name": name, "run_name": name + "-run"}


def test_without_credentials_the_ui_is_refused(browser, client):
    uri = client.settings["MLFLOW_TRACKING_URI"]
    with context(browser, None) as (ctx, _):
        page = ctx.new_page()
        with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(uri + "/#/experiments")
        answer = ctx.request.get(uri + "/ajax-api/2.0/mlflow/experiments/search?max_results=1")
        assert answer.status == 401 and answer.headers["www-authenticate"].startswith("Basic")


def test_the_demo_credentials_open_the_run_its_metric_and_its_artifact(browser, client, ui_run):
    expect = playwright_api.expect
    uri = client.settings["MLFLOW_TRACKING_URI"]
    credentials = {"username": client.settings["MLFLOW_TRACKING_USERNAME"],
                   "password": client.settings["MLFLOW_TRACKING_PASSWORD"]}  # fmt: skip
    SHOTS.mkdir(parents=True, exist_ok=True)
    with context(browser, credentials) as (ctx, seen):
        page = ctx.new_page()
        assert page.goto(uri + "/#/experiments").status == 200
        expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
        toggle = page.get_by_role("button", name="Model training", exact=True)
        if toggle.count():
            toggle.click()
        # The list shows 25 experiments a page, by last change: find ours by name.
        search = page.get_by_placeholder("Search experiments")
        search.fill(ui_run["experiment_name"])
        search.press("Enter")
        page.get_by_role("link", name=ui_run["experiment_name"], exact=True).click()
        page.wait_for_url(re.compile(rf"#/experiments/{ui_run['experiment_id']}/runs"))
        page.get_by_role("link", name=ui_run["run_name"], exact=True).click()
        run_url = f"{uri}/#/experiments/{ui_run['experiment_id']}/runs/{ui_run['run_id']}"
        page.wait_for_url(run_url)
        expect(page.get_by_role("heading", name=ui_run["run_name"], exact=True)).to_be_visible()
        metric = page.get_by_role("row").filter(has=page.get_by_role("cell", name="accuracy", exact=True))
        expect(metric.get_by_role("cell").nth(1)).to_have_text("0.93")
        param = page.get_by_role("row").filter(has=page.get_by_role("cell", name="learning_rate", exact=True))
        expect(param.get_by_role("cell").nth(1)).to_contain_text("0.01")
        metric.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mlflow-ui-run.png"), full_page=True)

        page.get_by_role("tab", name="Artifacts", exact=True).click()
        page.wait_for_url(run_url + "/artifacts")
        tree = page.get_by_test_id("artifact-tree-node")
        tree.get_by_text("model", exact=True).click()
        with page.expect_response(lambda response: "/get-artifact" in response.url) as shown:
            tree.get_by_text("notes.txt", exact=True).click()
        assert shown.value.status == 200
        expect(page.get_by_text(NOTES.strip())).to_be_visible()
        page.screenshot(path=str(SHOTS / "mlflow-ui-artifact.png"), full_page=True)

    # Through the tracking server only: no presigned S3 URL, no host but this one, no refused request, no page error.
    artifact_requests = [url for url in seen["requests"] if "artifact" in url]
    assert any("/get-artifact?" in url for url in artifact_requests), artifact_requests
    assert not [url for url in artifact_requests if "X-Amz-" in url]
    refused = [(code, url) for code, url in seen["statuses"] if local(url) and (code in (401, 403) or code >= 500)]
    assert refused == []
    assert seen["errors"] == []
