"""The page in a real browser: Debian's Chromium driven by Playwright (no browser is
downloaded: `make setup` installs the system's). A failed test leaves a screenshot in
test-results/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from images import photo_variants, write_folder
from imgrec.lab.harness import ServiceProcess
from servers import _missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
RESULTS = Path(__file__).parents[2] / "test-results"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# Module scope, not session: while sync_playwright() is open its event loop runs in
# this thread, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        _missing("chromium", "is not installed (make setup installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        RESULTS.mkdir(exist_ok=True)
        page.screenshot(path=str(RESULTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_dir):
    svc = ServiceProcess(tmp_path_factory.mktemp("page"), model_dir, "--max-workers", "2", "--scale-in-delay", "30")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, classifier):
    """150 distinct photographs on disk, and the label the model gives each."""
    variants = photo_variants(150)
    folder = write_folder(tmp_path_factory.mktemp("photos"), variants)
    labels = {n: r.label for n, r in zip(variants, classifier.classify(list(variants.values())), strict=True)}
    return [folder / n for n in variants], labels


def labelled(page, count: int, timeout: float = 120_000) -> None:
    """Wait for `count` files with their answers (a result or a reason)."""
    page.wait_for_function("n => window.imgrec && window.imgrec.done() >= n", arg=count, timeout=timeout)


def cards(page) -> list[tuple[str, str]]:
    """Every file's (name, label) as the grid orders them; the grid itself holds only the
    cards on screen (see `drawn`)."""
    return page.evaluate("window.imgrec.rows()")


def drawn(page) -> list[tuple[str, str]]:
    """The cards in the page now: (name, label)."""
    return page.eval_on_selector_all(
        "#grid .card", "els => els.map(e => [e.querySelector('.name').textContent, e.querySelector('.label').textContent])"
    )
