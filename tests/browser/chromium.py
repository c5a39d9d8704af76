"""Open a local HTML file in headless Chromium through Playwright, collecting what a person would see and any errors.

Playwright drives the system's Chromium (`executable_path`), so no browser is ever downloaded. Every
request the page makes is recorded and only `file:` and `data:` URLs are allowed: a report that
reaches the network fails the tests. When Chromium or Playwright is missing the tests skip locally
and fail under CI (CI=true), whose .ci/run installs Chromium.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """The system Chromium, or a skip (locally) / failure (under CI) saying how to install it."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed: pip install -e '.[dev]'")
    if not found:
        _missing("chromium is not installed: apt-get update && apt-get install -y chromium")
    return found


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Visit:
    """What one page load produced."""

    page: object  # playwright.sync_api.Page, open while the `visit` context lasts
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def visit(path: Path, width: int = 1280, height: int = 900, init_script: str | None = None) -> Iterator[Visit]:
    """Load `path` and wait until the page's script has run; console errors, page errors and non-local requests are kept.
    `init_script` runs in the page before any of its own script (to hook what injected code would call)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            seen = Visit(page)
            page.on("console", lambda m: m.type in ("error", "warning") and seen.errors.append(f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda e: seen.errors.append(f"pageerror: {e}"))

            def route(r):
                seen.requests.append(r.request.url)
                if r.request.url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    r.abort()

            page.route("**/*", route)
            if init_script:
                page.add_init_script(init_script)
            page.goto(path.resolve().as_uri(), wait_until="load")
            yield seen
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """A full-page PNG in tests/artifacts/ (ignored by git); the path is printed for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    page.screenshot(path=str(out), full_page=True)
    print(f"screenshot: {out}")
    return out
