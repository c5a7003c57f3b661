"""The explorer works in a real browser, offline: a throwaway book holding the executed explorer notebook (smoke
profile) is served from 127.0.0.1 and driven by headless chromium through playwright-core.

``tests/browser/slider_check.mjs`` opens the page with every request outside 127.0.0.1 aborted and recorded,
waits for the widget's image, presses ArrowRight on the ε slider, clicks the second image button and writes a
JSON report; this module makes the assertions. It needs Debian's ``chromium`` (installed here with apt-get if
missing) and ``playwright-core`` (``npm ci`` into ``tests/browser/node_modules``, kept as a cache); playwright
never downloads a browser. When neither can be installed (no network, no root) the test is skipped with the
reason. Screenshots go to the test's temporary folder and are copied to ``/tmp/explorer_{before,after}.png``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from robseg_lib.book.explorer import MAX_TILE
from tools import book_build

pytestmark = [pytest.mark.book, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOST = "127.0.0.1"
SCREENSHOT_COPIES = {"before": Path("/tmp/explorer_before.png"), "after": Path("/tmp/explorer_after.png")}
# jupyter-book 1.0.4 writes sphinx-thebe's one-line config script twice into every page; the second copy fails
# to redeclare a const. It comes from the book theme, not from the widgets, and loads nothing.
KNOWN_PAGE_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def _tail(result: subprocess.CompletedProcess[str], lines: int = 8) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def _ensure_chromium() -> str | None:
    """Install Debian's chromium if it is missing; the reason it cannot be, or None when it is there."""
    if CHROMIUM.is_file():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CHROMIUM} is missing and cannot be installed here (needs apt-get as root): apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command)}` timed out (no network?)"
        if result.returncode != 0:
            return f"`{' '.join(command)}` failed (no network?):\n{_tail(result)}"
    return None if CHROMIUM.is_file() else f"apt-get installed chromium but {CHROMIUM} does not exist"


def _ensure_playwright() -> str | None:
    """``npm ci`` playwright-core into tests/browser if the pinned version is not there yet."""
    pinned = json.loads((BROWSER_DIR / "package.json").read_text())["dependencies"]["playwright-core"]
    installed = BROWSER_DIR / "node_modules" / "playwright-core" / "package.json"
    if installed.is_file() and json.loads(installed.read_text())["version"] == pinned:
        return None
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        return "node and npm (Node.js >= 20) are needed to install playwright-core"
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    command = [npm, "ci", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(command, cwd=BROWSER_DIR, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        return "`npm ci` in tests/browser timed out (no network?)"
    if result.returncode != 0:
        return f"`npm ci` in tests/browser failed (no network?):\n{_tail(result)}"
    return None


@pytest.fixture(scope="module")
def browser_tools() -> None:
    for reason in (_ensure_chromium(), _ensure_playwright()):
        if reason is not None:
            pytest.skip(reason)


@pytest.fixture(scope="module")
def book_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A book of one intro page and the explorer notebook executed on smoke, built with the real _config.yml."""
    tmp = tmp_path_factory.mktemp("explorer_book")
    book = tmp / "book"
    book.mkdir()
    (book / "intro.md").write_text("# Explorer test book\n\nA throwaway book around the perturbation explorer.\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: _generated/explorer\n")
    book_build.fetch_widget_js(book / "_static")
    book_build.fetch_mathjax(book / "_offline")
    book_build.execute_notebooks("smoke", ["explorer"], book / "_generated", timeout=600)
    index = book_build.build_html(book, ROOT / "_config.yml", tmp / "out")
    return index.parent


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """No access log on stderr."""


@pytest.fixture(scope="module")
def server(book_html: Path) -> Iterator[str]:
    """Serve the built HTML on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    httpd = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL_HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob") or (parts.scheme in ("http", "https") and parts.hostname == LOCAL_HOST)


@pytest.mark.timeout(1500)
def test_explorer_slider_changes_the_image_offline(browser_tools: None, server: str, tmp_path: Path) -> None:
    out = tmp_path / "browser"
    command = ["node", str(BROWSER_DIR / "slider_check.mjs"), "--url", f"{server}/_generated/explorer.html"]
    command += ["--chromium", str(CHROMIUM), "--user-data-dir", str(tmp_path / "chromium-profile"), "--out", str(out)]
    result = subprocess.run(command, cwd=BROWSER_DIR, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"slider_check.mjs failed:\n{_tail(result, 30)}"
    report = json.loads((out / "report.json").read_text())
    for name, copy in SCREENSHOT_COPIES.items():
        if name in report["screenshots"]:
            shutil.copyfile(report["screenshots"][name], copy)
    assert report["error"] is None, report["error"]

    assert report["blocked"] == [], f"requests that would have left {LOCAL_HOST}: {report['blocked']}"
    assert [url for url in report["requests"] if not _is_local(url)] == []
    assert any("/_static/widgets/embed-amd.js" in url for url in report["requests"]), "local widget JS not loaded"
    assert report["failedRequests"] == []
    page_errors = [e for e in report["pageErrors"] if not any(known in e for known in KNOWN_PAGE_ERRORS)]
    assert page_errors == [], f"JavaScript errors on the page: {page_errors}"

    initial, moved = report["steps"]["initial"], report["steps"]["slider"]
    assert initial["srcs"] and all(initial["loaded"]), f"no widget image rendered: {initial}"
    assert all(width <= 4 * MAX_TILE + 12 for width, _ in initial["sizes"])
    assert initial["readout"] == "0/255" and any("ε = 0/255" in c for c in initial["captions"])
    assert moved["readout"] not in (None, initial["readout"]), f"ArrowRight did not move the slider: {moved}"
    assert any(f"ε = {moved['readout']}" in c for c in moved["captions"])
    assert len(moved["srcs"]) == len(initial["srcs"]) and all(moved["loaded"])
    assert set(moved["srcs"]).isdisjoint(initial["srcs"]), "the displayed images did not change with the slider"

    picked = report["steps"].get("picker")
    if picked is not None:  # more than one image: the picker switches images at the same radius
        assert picked["image_button"] == "image 2" and picked["readout"] == moved["readout"]
        assert set(picked["srcs"]).isdisjoint(moved["srcs"]) and all(picked["loaded"])
