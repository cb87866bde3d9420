"""Open the built book in headless Chromium and check what a reader would see.

For the index and every chapter page: each figure has a non-zero natural size (it decoded), the chapter's
"Open in Colab" badge points at that chapter's notebook in the repository named in ``_config.yml``, every
``{glue:text}`` role of the chapter's prose became a number on the page (none shown raw), no code line of a
chapter's cells runs past the page column (the reader would have to scroll to read it), every formula is typeset by
the book's own copy of MathJax with the network refused (the book reads offline), and no
internal link is broken (target file exists; a ``#fragment`` exists on the target page). Every other
built page gets the static link check too. Exits non-zero listing every problem found.

    python scripts/browser_check.py _book/_build/html [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Links(HTMLParser):
    """Collect hrefs/srcs and element ids of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("name") and tag == "a":
            self.ids.add(a["name"])
        if tag in ("a", "link") and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.links.append(a["src"])


def parse(page: Path) -> _Links:
    p = _Links()
    p.feed(page.read_text(encoding="utf-8", errors="replace"))
    return p


def broken_links(html_root: Path, page: Path) -> list[str]:
    """Internal links of ``page`` whose file or anchor does not exist."""
    problems = []
    for link in parse(page).links:
        url = urlparse(link)
        if url.scheme or link.startswith(("//", "mailto:", "javascript:", "data:")):
            continue
        target_part, fragment = urldefrag(link)
        target_path = urlparse(target_part).path  # drop ?v=... cache busters
        target = (page.parent / unquote(target_path)).resolve() if target_path else page
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"{page.relative_to(html_root)}: broken link {link!r} (no {target.name})")
        elif fragment and target.suffix == ".html" and fragment not in parse(target).ids:
            problems.append(f"{page.relative_to(html_root)}: broken anchor {link!r}")
    return problems


def expected_colab(notebook: str) -> str:
    """The Colab URL of a chapter, built from the one repository URL in _config.yml."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg["repository"]["url"].rstrip("/").removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repo}/blob/{cfg['repository']['branch']}/{notebook}"


def glue_roles(notebook: Path) -> int:
    """How many ``{glue:text}`` roles the notebook's prose holds: each must become a number on the page."""
    cells = json.loads(notebook.read_text())["cells"] if notebook.exists() else []
    return sum("".join(c["source"]).count("{glue:text}") for c in cells if c["cell_type"] == "markdown")


# the code cells a reader reads (inputs), each as its widest line, where the line runs past the page column
OVERFLOW_JS = ("els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText.split('\\n')"
               ".reduce((a, b) => a.length >= b.length ? a : b))")


def overflowing_code(page: object) -> list[str]:
    """The widest line of every input code cell on the open page that does not fit the page column."""
    return page.eval_on_selector_all("div.cell_input pre", OVERFLOW_JS)


def unrendered_math(page: object) -> list[str]:
    """The source of every formula on the open page that MathJax did not typeset (after waiting for it)."""
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : false")
    return page.eval_on_selector_all(
        "span.math, div.math", "els => els.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent)")


def offline(page: object) -> None:
    """Refuse every request that leaves this machine: the book must read without a network."""
    page.route("**/*", lambda route: route.abort() if route.request.url.startswith("http") else route.continue_())


def check_in_browser(html_root: Path, pages: list[Path], shots: Path | None) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        offline(page)
        for path in pages:
            rel = path.relative_to(html_root)
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_timeout(300)
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => ({src: e.getAttribute('src'), w: e.naturalWidth, "
                "h: e.naturalHeight, complete: e.complete, local: !/^https?:/.test(e.getAttribute('src') || '')}))")
            local = [im for im in images if im["local"]]
            for im in local:
                if not (im["complete"] and im["w"] > 0 and im["h"] > 0):
                    problems.append(f"{rel}: image {im['src']} did not render (natural size {im['w']}x{im['h']})")
            figures = page.eval_on_selector_all(".cell_output img", "els => els.length")
            print(f"{rel}: {len(local)} local images rendered ok, {figures} figure(s) in cell outputs")
            if rel.parts[0] == "chapters":
                notebook = str(rel.with_suffix(".ipynb"))
                want = expected_colab(notebook)
                hrefs = page.eval_on_selector_all("a[href*='colab.research.google.com']",
                                                  "els => els.map(e => e.href)")
                if want not in hrefs:
                    problems.append(f"{rel}: no Colab link to {want} (found {hrefs})")
                if figures == 0:
                    problems.append(f"{rel}: a chapter page with no figure in its outputs")
                pasted = page.eval_on_selector_all(".pasted-text", "els => els.length")
                roles = glue_roles(ROOT / notebook)
                if pasted == 0 or pasted < roles:
                    problems.append(f"{rel}: {pasted} glued numbers on the page, the prose cites {roles}")
                if "{glue:" in page.inner_text("body"):
                    problems.append(f"{rel}: a raw {{glue:...}} role is shown to the reader")
                for formula in unrendered_math(page):
                    problems.append(f"{rel}: a formula is not typeset (offline): {formula[:60]!r}")
                for line in overflowing_code(page):
                    problems.append(f"{rel}: a code line runs off the page column ({len(line)} columns): {line!r}")
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / (str(rel).replace("/", "_") + ".png")), full_page=True)
        browser.close()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html_root", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    html_root = args.html_root.resolve()
    if not (html_root / "index.html").exists():
        print(f"{html_root}/index.html not found: build the book first (python scripts/book.py build)")
        return 2
    index = html_root / "index.html"
    front = sorted((html_root / "book").glob("*.html"))
    chapters = sorted((html_root / "chapters").glob("*.html"))
    if not chapters:
        print("no chapter pages were built")
        return 1
    problems = check_in_browser(html_root, [index, *front, *chapters], args.screenshots)
    for page in sorted(html_root.rglob("*.html")):
        if "_static" not in page.parts:
            problems += broken_links(html_root, page)
    for p in problems:
        print("PROBLEM:", p)
    print(f"browser check: {len(front) + len(chapters) + 1} pages opened, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
