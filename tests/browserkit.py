"""Debian's Chromium, headless, driven by Playwright, for the browser tests.

Never ``playwright install``: the browser is /usr/bin/chromium from the
set-up, launched with the flags that keep it off the network (DESIGN.md §9)
and a fresh temporary profile that Playwright removes on close.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Watched", "chromium_page", "screenshot"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@dataclass
class Watched:
    """A page and what it did besides: requests to other origins, console errors, HTTP statuses ≥ 400."""

    page: Any
    elsewhere: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)


@contextmanager
def chromium_page(base: str) -> Iterator[Watched]:
    """A tablet-sized page (1024×768, zh-CN, Asia/Shanghai, downloads on) watched against ``base``; closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 768}, accept_downloads=True,
                                          locale="zh-CN", timezone_id="Asia/Shanghai")
            page = context.new_page()
            # Only catches a hang: a busy CI machine can take seconds for one action (the case-file PDF alone).
            page.set_default_timeout(60_000)
            watched = Watched(page)
            page.on("request", lambda req: None if req.url.startswith(base) else watched.elsewhere.append(req.url))
            # Console errors other than HTTP statuses (those are in `refused`): a CSP
            # violation, for one, would mean a template wants something it may not have.
            page.on("console", lambda msg: watched.console_errors.append(msg.text)
                    if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
            page.on("response", lambda r: watched.refused.append((r.url[len(base):], r.status))
                    if r.status >= 400 else None)
            yield watched
        finally:
            browser.close()


SHOT_TRIES = 5


def screenshot(page: Any, path: Path, *, full_page: bool = False) -> None:
    """Save a screenshot once the page has painted a frame.

    Right after a navigation on a busy machine, Chromium's compositor may not
    have a frame yet and the protocol answers "Unable to capture screenshot";
    that one refusal is asked again a few times, anything else is raised.
    """
    from playwright.sync_api import Error

    page.wait_for_load_state("load")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    for attempt in range(SHOT_TRIES):
        try:
            page.screenshot(path=str(path), full_page=full_page)
            return
        except Error as exc:
            if "Unable to capture screenshot" not in str(exc) or attempt + 1 == SHOT_TRIES:
                raise
            time.sleep(0.2 * (attempt + 1))
