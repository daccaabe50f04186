"""A gate answered the way an approver answers it: in the Prefect UI, in a real (headless) Chromium.

`promo server start` serves the UI; `promo promote-test` waits at its gate in its own process, as it does on a
laptop; the browser opens the run's page, presses Resume, fills the form and submits. Chromium is Debian's
(`make setup` installs it); Playwright only drives it, so `playwright install` (a download) is never needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from promo.release.gates import WaitingGate, waiting_gates
from promo.local.processes import free_port
from promo.local.sandbox import Sandbox
from promo.local.home import HOME_ENV
from promo.local.prefect_server import start_server
from tests.integration.conftest import BIN, PROJECT, tail, wait_until

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = PROJECT / "docs" / "ui-approval.png"
UPDATE_SCREENSHOT = "PROMO_UPDATE_SCREENSHOT"  # =1: the test also writes the form's screenshot to docs/
UI_SECONDS = 60  # a deadline, not a cost: the UI answers in a second or two on an idle machine
RUN_SECONDS = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: install Debian's chromium (`make setup` does, as root)"
    ),
]


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Prefect server with its UI, started as `promo server start` starts it (under a throwaway promo home)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOME_ENV, str(tmp_path_factory.mktemp("promo-home")))
        server = start_server(port=free_port()).process
    try:
        yield server.url
    finally:
        server.stop()


LAPTOP = {"width": 1366, "height": 768}  # the most common laptop screen: the UI leaves ~120 px for the gate's page
TALL = {"width": 1280, "height": 1200}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    # Tall enough for the form and the top of the page above it: the UI gives the page what the form leaves.
    opened = browser.new_page(viewport=TALL)
    opened.set_default_timeout(UI_SECONDS * 1000)
    expect.set_options(timeout=UI_SECONDS * 1000)
    try:
        yield opened
    finally:
        opened.close()


class Promotion:
    """`promo promote-test` in its own process, against the UI's server, waiting at its gate."""

    def __init__(self, ui_url: str, sandbox: Sandbox, workdir: Path) -> None:
        self.api_url = f"{ui_url}/api"
        self.sandbox = sandbox
        self.log = workdir / "promote-test.log"
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        self.env = env | {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(workdir / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            HOME_ENV: str(workdir / "promo-home"),
        }
        published = self.promo("publish-dev")
        assert published.returncode == 0, published.stdout + published.stderr
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(BIN / "promo"), "promote-test", "--config", str(sandbox.config_path)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
            )  # fmt: skip

    def promo(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / "promo"), *args, "--config", str(self.sandbox.config_path)]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=RUN_SECONDS)

    def gate(self) -> WaitingGate:
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            gates = wait_until(
                lambda: waiting_gates(app=self.sandbox.app, env="test"), RUN_SECONDS, "the gate into test",
                alive=self.process, log=self.log,
            )  # fmt: skip
        assert len(gates) == 1, gates
        return gates[0]

    def finish(self) -> tuple[int, str]:
        try:
            self.process.wait(RUN_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"promote-test did not finish within {RUN_SECONDS} s after the decision\n{tail(self.log)}")
        return self.process.returncode, self.log.read_text(errors="replace")

    def run_page_markdown(self, gate: WaitingGate) -> str:
        """The artifacts on the run's page, as the UI lists them under Artifacts."""
        run_filter = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[gate.flow_run_id]))
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            return "\n".join(str(artifact.data) for artifact in client.read_artifacts(artifact_filter=run_filter))

    def final_state_message(self, gate: WaitingGate) -> str:
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            state = client.read_flow_run(gate.flow_run_id).state
        assert state is not None and state.is_failed(), state
        return state.message or ""


@pytest.fixture()
def promotion(ui_url: str, sandbox: Sandbox, tmp_path: Path) -> Iterator[Promotion]:
    started = Promotion(ui_url, sandbox, tmp_path)
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(10)


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(remote), *args], check=True, capture_output=True, text=True).stdout


def field(form: Locator, label: str) -> Locator:
    """One field of the form (each is a labelled ``.p-label``; the form as a whole is a property too)."""
    label_text = form.page.locator(".schema-form-property__label").get_by_text(label, exact=True)
    return form.locator(".p-label.schema-form-property").filter(has=label_text)


def open_resume_form(page: Page, ui_url: str, gate: WaitingGate) -> Locator:
    page.goto(f"{ui_url}/runs/flow-run/{gate.flow_run_id}")
    page.get_by_role("button", name="Resume").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Resume Flow Run")).to_be_visible()
    settled(form)
    return form


def settled(element: Locator) -> None:
    """Wait until ``element`` stops moving: the dialog opens with an animation, and a box read during it is not
    where the element ends up."""
    deadline = time.monotonic() + UI_SECONDS
    before = element.bounding_box()
    while time.monotonic() < deadline:
        element.page.wait_for_timeout(100)  # one look per 100 ms, until two agree
        now = element.bounding_box()
        if now == before:
            return
        before = now
    raise AssertionError(f"the dialog kept moving for {UI_SECONDS} s")


def fill_and_submit(form: Locator, *, decision: str, approver: str, comment: str, screenshot: Path | None = None) -> None:
    choice = field(form, "Decision").locator(".p-select-button__control")
    choice.focus()
    choice.press("ArrowDown")  # opens the list; a headless click only focuses it
    form.page.get_by_role("option", name=decision, exact=True).click()
    field(form, "Approver").locator("textarea, input").first.fill(approver)
    field(form, "Comment (Optional)").locator("textarea, input").first.fill(comment)
    if screenshot is not None:
        form.page.screenshot(path=str(screenshot))
    form.get_by_role("button", name="Submit").click()
    expect(form).to_be_hidden()


def shown_without_scrolling(form: Locator, text: str) -> bool:
    """Whether ``text`` lies inside the visible box of the page above the form (its own scroll area), unscrolled."""
    page_box = form.locator(".p-modal__body > article.markdown-renderer").bounding_box()
    shown = form.get_by_text(text, exact=False).first.bounding_box()
    assert page_box is not None and shown is not None
    return page_box["y"] <= shown["y"] and shown["y"] + shown["height"] <= page_box["y"] + page_box["height"]


def test_approving_in_the_ui_commits_with_the_approver_and_comment(promotion, page, ui_url, sandbox, tmp_path):
    gate = promotion.gate()
    version = gate.version
    page.set_viewport_size(LAPTOP)  # the summary line and the change itself fit in what a laptop shows of the page
    form = open_resume_form(page, ui_url, gate)
    assert shown_without_scrolling(form, f"Promote hello {version} dev → test"), "the summary line is hidden"
    assert shown_without_scrolling(form, f'"" → "{version}"'), "the manifest change is hidden"
    page.set_viewport_size(TALL)
    settled(form)
    assert shown_without_scrolling(form, "chart digest"), "the chart digest is hidden"
    screenshot = tmp_path / "ui-approval.png"
    fill_and_submit(form, decision="approve", approver="carol", comment="smoke green in dev", screenshot=screenshot)
    if os.environ.get(UPDATE_SCREENSHOT) == "1":
        shutil.copyfile(screenshot, SCREENSHOT)

    returncode, output = promotion.finish()
    assert returncode == 0, output
    commit = git(sandbox.gitops_remote, "log", "-1", "--format=%s%n%(trailers:only,unfold)", "main")
    assert commit.splitlines()[0] == f"promote(hello): dev -> test {version}"
    assert "Approved-By: carol" in commit.splitlines()
    assert "Approval-Comment: smoke green in dev" in commit.splitlines()


def test_rejecting_in_the_ui_fails_the_run_with_the_reason_and_commits_nothing(promotion, page, ui_url, sandbox):
    before = git(sandbox.gitops_remote, "rev-parse", "main")
    gate = promotion.gate()
    on_run_page = promotion.run_page_markdown(gate)
    assert f'+    targetRevision: "{gate.version}"' in on_run_page, "the change is not on the run's page before Resume"

    form = open_resume_form(page, ui_url, gate)
    fill_and_submit(form, decision="reject", approver="dave", comment="wait for the schema migration")

    returncode, output = promotion.finish()
    reason = "rejected by dave: wait for the schema migration"
    assert returncode != 0 and reason in output, output
    assert reason in promotion.final_state_message(gate)
    assert git(sandbox.gitops_remote, "rev-parse", "main") == before
