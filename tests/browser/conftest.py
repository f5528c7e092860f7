"""Browser fixtures: one JupyterLab server and one headless Chromium per test session.

Without Chromium (or Playwright) every browser test is skipped, with one line saying how to
enable them."""

from __future__ import annotations

from pathlib import Path

import pytest

from labdriver import ENABLE_HINT, CHROMIUM_ARGS, LabServer, chromium_path

ROOT = Path(__file__).resolve().parents[2]


def _available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return chromium_path() is not None


def pytest_collection_modifyitems(config, items):
    if _available():
        return
    skip = pytest.mark.skip(reason=ENABLE_HINT)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if not _available():
        terminalreporter.write_line(ENABLE_HINT)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium")


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, recorded_jobs):
    from lowrank_es.experiments import RECORD_JOBS

    # the kernels record the experiment jobs they finish, for nbval to replay (see conftest.py)
    server = LabServer(ROOT, tmp_path_factory.mktemp("lab") / "jupyter.log",
                       env={RECORD_JOBS: str(recorded_jobs)})
    yield server
    server.close()


@pytest.fixture()
def page(chromium, lab):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()
    lab.shutdown_kernels()
