"""What a person sees, in Debian's headless Chromium: a smoke study's page in `spectune dashboard`
with the figures `spectune report` published into it, and the report's own files, offline."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from spectune.storage.testing import FAST_OPTIONS, Process, Spectune, poll_until

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# The flags every run gets; each call adds what it needs (profile, output, window, time).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
)


# --- the rendered DOM, as Chromium's --dump-dom prints it -----------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # text directly inside, in order

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Element]:
        """This element and every element inside it."""
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str) -> list[Element]:
        return [element for element in self.iter() if element.tag == tag]

    def by_id(self, element_id: str) -> Element | None:
        return next((e for e in self.iter() if e.attrs.get("id") == element_id), None)

    def text(self) -> str:
        return " ".join(" ".join(e.texts) for e in self.iter())


class _DomBuilder(HTMLParser):
    # Elements without an end tag (--dump-dom writes every other one, SVG too, with its own).
    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].texts.append(data)


def parse_dom(html: str) -> Element:
    builder = _DomBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# --- Chromium --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Browser:
    """Debian's Chromium, one headless run per call, each in a fresh profile folder."""

    path: Path
    profiles: Path

    def run(self, url: str, *flags: str, timeout: float = 60) -> str:
        """Chromium's stdout for ``url``; its whole process group is killed on a timeout."""
        profile = self.profiles / f"profile-{time.monotonic_ns()}"
        command = [str(self.path), *FLAGS, f"--user-data-dir={profile}", *flags, url]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its renderer and helpers share the group killed below
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"chromium still running after {timeout} s: {url}") from None
        assert process.returncode == 0, f"chromium failed on {url}: {stderr[-3000:]}"
        return stdout

    def dom(self, url: str, *flags: str, budget_ms: int = 5000) -> Element:
        """The DOM after the page's scripts ran for ``budget_ms`` of virtual time."""
        html = self.run(url, "--dump-dom", f"--virtual-time-budget={budget_ms}", *flags)
        return parse_dom(html)

    def screenshot(self, url: str, out: Path, width: int, height: int) -> Image.Image:
        self.run(url, f"--screenshot={out}", f"--window-size={width},{height}")
        assert out.exists(), f"chromium wrote no screenshot of {url}"
        return Image.open(out).convert("RGB")


def require_chromium() -> None:
    if not CHROMIUM.exists():  # CI installs it: a missing browser is a failure, never a skip
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the browser tests and PNG export need it; "
            "run `apt-get install chromium`",
            pytrace=False,
        )


def test_chromium_is_installed() -> None:
    require_chromium()  # one plain FAILED line when it is missing (the tests below error)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    require_chromium()
    return Browser(CHROMIUM, tmp_path_factory.mktemp("chromium"))


# --- one reported smoke study for the module ------------------------------------------------


@dataclass(frozen=True)
class Reported:
    spectune: Spectune
    journal: str
    name: str
    out: Path  # the report folder
    published: list[str]  # graph ids `spectune report` stored in the study


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Reported:
    """A smoke study of 12 finished trials in a journal, reported with PNGs and published."""
    folder = tmp_path_factory.mktemp("reported")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPECTUNE_")}
    env.update(
        SPECTUNE_GPU_COUNT="0",
        SPECTUNE_GPU_SLOT_DIR=str(folder / "gpu-slots"),
        SPECTUNE_HEARTBEAT_INTERVAL=str(FAST_OPTIONS.heartbeat_interval),
        SPECTUNE_HEARTBEAT_GRACE=str(FAST_OPTIONS.heartbeat_grace),
    )
    spectune = Spectune(folder, env)
    journal = str(folder / "runs" / "browser.journal")
    name = f"browser-{uuid.uuid4().hex[:10]}"
    spectune.create_smoke_study(journal, name, "--n-trials", "12", "--epochs", "4")
    worker = spectune.run("worker", "--study-name", name, "--storage", journal, "--no-progress")
    assert worker.popen.returncode == 0, worker.output
    assert "done (budget)" in worker.output, worker.output

    out = folder / "report"
    report = spectune.run(
        "report", "--study-name", name, "--storage", journal, "--out", str(out),
        "--min-trials", "5", timeout=240,
    )  # fmt: skip
    assert report.popen.returncode == 0, report.output
    match = re.search(r"published \d+ figures \(([^)]*)\)", report.output)
    assert match, report.output
    published = match.group(1).split(", ")
    assert "spectune-importance" in published, published
    return Reported(spectune, journal, name, out, published)


# --- the dashboard ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(reported: Reported) -> Iterator[str]:
    """``spectune dashboard`` on the reported study's journal: its base URL; stopped after."""
    port = free_port()
    args = ("dashboard", "--storage", reported.journal, "--port", str(port))
    process = reported.spectune.start(*args)
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"dashboard ended ({process.popen.returncode}): {process.output}")
        try:
            return bool(get_json(f"{base}/api/studies")["study_summaries"])
        except (urllib.error.URLError, OSError):
            return False

    try:
        poll_until(serving, 60, f"the dashboard on port {port}")
        yield base
    finally:
        stop(process)


def stop(process: Process) -> None:
    if process.popen.poll() is None:
        process.popen.terminate()
        try:
            process.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.popen.kill()
    process.finish(timeout=10)


def plot_problems(page: Element, graph_ids: list[str]) -> list[str]:
    """Why the published figures are not (yet) drawn on ``page``: empty when they all are."""
    problems = []
    for graph_id in graph_ids:
        # optuna-dashboard draws each plotly_graph_object into div#user-defined-plot:<id>.
        holder = page.by_id(f"user-defined-plot:{graph_id}")
        if holder is None:
            problems.append(f"no element user-defined-plot:{graph_id}")
        elif "js-plotly-plot" not in holder.classes:
            problems.append(f"{graph_id} is not a plotly plot yet")
        elif not any("main-svg" in element.classes for element in holder.iter()):
            problems.append(f"{graph_id} has no main-svg")
    return problems


def test_the_study_page_shows_the_published_figures(
    browser: Browser, reported: Reported, dashboard: str
) -> None:
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    (study_id,) = [s["study_id"] for s in studies if s["study_name"] == reported.name]
    detail = get_json(f"{dashboard}/api/studies/{study_id}")
    assert [g["id"] for g in detail["plotly_graph_objects"]] == reported.published
    assert "Full report (HTML, PNG, CSV)" in detail["note"]["body"], detail["note"]

    # The page fetches the study over the API after load: retry until drawn, with a deadline.
    url = f"{dashboard}/dashboard/studies/{study_id}"
    deadline = time.monotonic() + 60
    while True:
        page = browser.dom(url, "--window-size=1400,1000")
        problems = plot_problems(page, reported.published)
        headers = " ".join(header.text() for header in page.find_all("header"))
        if f"{reported.name} (id={study_id})" not in headers:  # the app bar's breadcrumb
            problems.append(f"study {reported.name} not in the page header: {headers!r}")
        if not problems or time.monotonic() > deadline:
            break
    assert not problems, problems

    importance = page.by_id("user-defined-plot:spectune-importance")
    assert importance is not None
    titles = [" ".join(text.texts) for text in importance.find_all("text")]
    assert any(title.startswith("Parameter importance") for title in titles), titles


# --- the report folder, opened from disk -----------------------------------------------------


def test_the_report_index_links_every_figure_and_shows_the_pngs(
    browser: Browser, reported: Reported, tmp_path: Path
) -> None:
    figures = sorted(p.stem for p in reported.out.glob("*.html") if p.name != "index.html")
    assert "importance" in figures and "history" in figures, figures
    assert figures == sorted(p.stem for p in reported.out.glob("*.png")), figures

    index = (reported.out / "index.html").as_uri()
    page = browser.dom(index, budget_ms=1000)
    assert reported.name in page.text()
    assert reported.name in " ".join(h1.text() for h1 in page.find_all("h1"))
    links = {a.attrs.get("href") for a in page.find_all("a")}
    images = {img.attrs.get("src") for img in page.find_all("img")}
    for figure in figures:
        assert f"{figure}.html" in links, (figure, links)
        assert f"{figure}.png" in images, (figure, images)

    # The PNGs are really drawn: colour (plotly bars, lines) covers far more of the page than
    # the links alone. Broken images leave under 10,000 such pixels; drawn ones over 100,000.
    shot = browser.screenshot(index, tmp_path / "index.png", 1200, 4000)
    pixels = np.asarray(shot, dtype=np.int16)
    colourful = int((pixels.max(axis=2) - pixels.min(axis=2) > 60).sum())
    assert colourful > 50_000, f"{colourful} colourful pixels: are the PNGs shown?"


def test_a_standalone_figure_renders_offline(browser: Browser, reported: Reported) -> None:
    figure = reported.out / "importance.html"
    source = figure.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", source), "a script is loaded, not inlined"
    # No host name resolves: any fetch from the network fails, so plotly.js must be inlined.
    page = browser.dom(figure.as_uri(), "--host-resolver-rules=MAP * ~NOTFOUND", budget_ms=3000)
    plots = [e for e in page.iter() if "js-plotly-plot" in e.classes]
    assert len(plots) == 1, "no plotly plot in importance.html"
    assert any("main-svg" in e.classes for e in plots[0].iter())
    titles = [" ".join(text.texts) for text in plots[0].find_all("text")]
    assert any(title.startswith("Parameter importance") for title in titles), titles
