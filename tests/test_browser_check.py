"""The static half of the browser check (links and anchors) must catch what it claims to catch."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("browser_check", ROOT / "scripts" / "browser_check.py")
browser_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser_check)


def test_broken_links_and_anchors_are_reported(tmp_path):
    (tmp_path / "a.html").write_text(
        '<a href="b.html#there">ok</a><a href="b.html#nowhere">bad anchor</a><a href="missing.html">bad</a>'
        '<link href="style.css?v=1"><a href="https://example.org/x">external</a><a href="#top" id="top">self</a>'
    )
    (tmp_path / "b.html").write_text('<h1 id="there">B</h1>')
    (tmp_path / "style.css").write_text("")
    problems = browser_check.broken_links(tmp_path, tmp_path / "a.html")
    assert len(problems) == 2
    assert any("missing.html" in p for p in problems) and any("#nowhere" in p for p in problems)


def test_colab_url_comes_from_config():
    url = browser_check.expected_colab("chapters/01_tabular_q_learning.ipynb")
    assert url.startswith("https://colab.research.google.com/github/") and url.endswith(
        "/blob/main/chapters/01_tabular_q_learning.ipynb")


def test_a_code_line_that_runs_off_the_page_column_is_reported(tmp_path):
    """The overflow check on a page made to break it: one cell too wide for its column, one that fits."""
    import shutil

    import pytest

    if not Path(browser_check.CHROMIUM).exists():
        pytest.skip("no chromium here (CI installs it before the tests)")
    playwright = pytest.importorskip("playwright.sync_api")
    cell = '<div class="cell"><div class="cell_input"><div class="highlight"><pre>{}</pre></div></div></div>'
    page_html = ('<html><body><div style="width: 300px">' + cell.format("x = 1\n" + "y" * 120)
                 + cell.format("short = True") + "</div></body></html>")
    (tmp_path / "page.html").write_text(page_html)
    shutil.copy(ROOT / "_static" / "imitlib.css", tmp_path / "imitlib.css")
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_check.CHROMIUM, args=browser_check.LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((tmp_path / "page.html").as_uri())
        wide = browser_check.overflowing_code(page)
        browser.close()
    assert wide == ["y" * 120]


def test_a_formula_mathjax_did_not_typeset_is_reported_and_the_books_copy_typesets_offline(tmp_path):
    import shutil

    import pytest

    if not Path(browser_check.CHROMIUM).exists():
        pytest.skip("no chromium here (CI installs it before the tests)")
    playwright = pytest.importorskip("playwright.sync_api")
    formula = '<span class="math notranslate nohighlight">\\(x_q\\)</span>'
    (tmp_path / "cdn.html").write_text(f'<script src="https://cdn.example.org/tex-chtml.js"></script>{formula}')
    shutil.copytree(ROOT / "_static" / "mathjax", tmp_path / "mathjax")
    (tmp_path / "local.html").write_text(f'<script src="mathjax/tex-chtml.js"></script>{formula}')
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_check.CHROMIUM, args=browser_check.LAUNCH_ARGS)
        page = browser.new_page()
        browser_check.offline(page)
        found = {}
        for name in ("cdn", "local"):
            page.goto((tmp_path / f"{name}.html").as_uri(), wait_until="load")
            found[name] = browser_check.unrendered_math(page)
        browser.close()
    assert found == {"cdn": ["\\(x_q\\)"], "local": []}
