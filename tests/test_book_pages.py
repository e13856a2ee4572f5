"""The built book, as a reader's browser shows it (headless Chromium).

For the start page and every chapter of ``_build/html`` (``make book`` builds it; run on its own,
the test asks make for it; ``make test`` installs Chromium): the page has its chapter's title, every figure image loads, no cell
output shows a traceback or an error output, the Colab button opens a notebook that exists in the
repository, and no line of code or text output is cut off at the right edge (``book/_static/loco.css``
wraps them). A screenshot of each page's top is saved under ``_build/screenshots/``.

The checks run in the page itself: a copy of the page with a small script, loaded by Chromium with
``--dump-dom``, writes what it measured into the DOM, which the test reads back.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))

PROBE = """<script>
window.addEventListener("load", function () {
  var r = {};
  var h1 = document.querySelector("article h1, main h1, h1");
  r.title = h1 ? h1.textContent.replace(/[#\\u00b6]/g, "").trim() : "";
  var imgs = Array.prototype.slice.call(document.querySelectorAll("article img, main img"));
  r.images = imgs.length;
  r.broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                 .map(function (i) { return i.getAttribute("src"); });
  var pres = Array.prototype.slice.call(document.querySelectorAll("div.cell_input pre, div.cell_output pre"));
  r.code_blocks = pres.length;
  r.cut = pres.filter(function (p) { return p.scrollWidth > p.clientWidth + 1; })
              .map(function (p) { return p.textContent.slice(0, 100); });
  r.errors = Array.prototype.slice.call(document.querySelectorAll("div.cell_output")).filter(function (o) {
    return /Traceback \\(most recent call last\\)/.test(o.textContent) || o.querySelector(".traceback, .output.error, .stderr");
  }).map(function (o) { return o.textContent.slice(0, 200); });
  r.colab = Array.prototype.slice.call(document.querySelectorAll("a")).map(function (a) { return a.href; })
                 .filter(function (h) { return h.indexOf("colab.research.google.com") >= 0; });
  var out = document.createElement("pre");
  out.id = "loco-probe";
  out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed for the book's browser check: `make chromium` installs Debian's package"
    return exe


def _run(args, timeout=120):
    import tempfile

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    with tempfile.TemporaryDirectory() as profile:  # one profile per call: parallel test workers do not collide
        return subprocess.run([chromium(), *flags, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def book():
    if not (HTML / "index.html").exists():
        run = subprocess.run(["make", "-s", "book"], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 0, f"make book failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    return HTML


def probe(page: Path) -> dict:
    """Load ``page`` in Chromium with the probe script and return what it measured."""
    html = page.read_text()
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(html.replace("</body>", PROBE + "</body>", 1))
    try:
        run = _run(["--window-size=1280,2400", "--virtual-time-budget=15000", "--dump-dom", copy.as_uri()])
    finally:
        copy.unlink()
    m = re.search(r'<pre id="loco-probe"[^>]*>(.*?)</pre>', run.stdout, re.S)
    assert m, f"the probe did not run on {page.name}: {run.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def chapter_title(name: str) -> str:
    for line in (ROOT / "notebooks" / f"{name}.py").read_text().splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    raise AssertionError(f"notebooks/{name}.py has no '# # Title' line")


def screenshot(page: Path, name: str) -> Path:
    out = SHOTS / f"{name}.png"
    run = _run(["--window-size=1280,2400", f"--screenshot={out}", page.as_uri()])
    assert out.exists() and out.stat().st_size > 10_000, f"no screenshot of {page.name}: {run.stderr[-1000:]}"
    return out


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_reads_as_it_should(book, name):
    page = book / "notebooks" / f"{name}.html"
    assert page.exists(), f"{page} was not built"
    r = probe(page)
    assert r["title"] == chapter_title(name)
    assert r["images"] > 0, "a chapter page without a single figure"
    assert not r["broken"], f"figures that do not load: {r['broken']}"
    assert not r["errors"], f"outputs showing an error or a traceback: {r['errors']}"
    assert r["code_blocks"] > 0
    assert not r["cut"], f"lines cut off at the right edge: {r['cut']}"
    assert r["colab"], "no Colab launch link"
    for url in r["colab"]:
        m = re.search(r"/blob/[^/]+/(.+\.ipynb)$", url)
        assert m, f"the Colab link {url} does not open a notebook"
        assert (ROOT / m.group(1)).exists(), f"the Colab link opens {m.group(1)}, which is not in the repository"
    screenshot(page, name)


@pytest.mark.parametrize("name,title", [("intro", "loco"), ("api", "API reference"), ("bibliography", "Bibliography")])
def test_book_page(book, name, title):
    page = book / "book" / f"{name}.html"
    r = probe(page)
    assert r["title"] == title
    assert not r["broken"] and not r["cut"] and not r["errors"]
    screenshot(page, name)


def test_the_probe_sees_what_it_should(tmp_path):
    """The probe is not vacuous: on a page with a broken image, a traceback and an unwrapped long
    line it reports all three."""
    page = tmp_path / "bad.html"
    long = "x = " + "1 + " * 200
    page.write_text(f"""<html><body><article><h1>Bad page</h1><img src="missing.png">
<div class="cell_input"><pre style="white-space: pre; overflow-x: auto; width: 300px">{long}</pre></div>
<div class="cell_output"><pre>Traceback (most recent call last):
  File "x", line 1</pre></div></article></body></html>""")
    r = probe(page)
    assert r["title"] == "Bad page" and r["broken"] == ["missing.png"]
    assert len(r["errors"]) == 1 and len(r["cut"]) == 1
