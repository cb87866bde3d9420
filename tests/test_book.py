"""The book's structure: TOC <-> files, output-free notebooks, and Colab links that agree with _config.yml."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]

CELL_LINES = 15  # a code cell a reader takes in at a glance
PAGE_COLUMNS = 88  # wider lines overflow the rendered page


def test_there_are_chapters_and_the_toc_lists_exactly_them():
    assert CHAPTERS, "no chapters found"
    listed = toc_files()
    for f in listed:
        assert any((ROOT / (f + ext)).exists() for ext in (".md", ".ipynb")), f"_toc.yml lists missing {f}"
    chapters_in_toc = {f for f in listed if f.startswith("chapters/")}
    assert chapters_in_toc == {f"chapters/{p.stem}" for p in CHAPTERS}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path):
    code = [(i, c) for i, c in enumerate(cells(path)) if c["cell_type"] == "code"]
    dirty = [i for i, c in code if c["outputs"] or c["execution_count"]]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run `python scripts/book.py strip`"
    assert "widgets" not in json.loads(path.read_text()).get("metadata", {}), f"{path.name}: widget state saved"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_colab_badge_points_at_this_notebook_in_the_configured_repository(path):
    first = source(cells(path)[0])
    repo = REPO_URL.removeprefix("https://github.com/")
    want = f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/chapters/{path.name}"
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", first)
    assert links == [want], f"{path.name}: badge links {links}, expected [{want}]"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_install_cell_runs_only_in_colab_and_keeps_colab_torch(path):
    code_cells = [c for c in cells(path) if c["cell_type"] == "code"]
    install = code_cells[0]
    text = source(install)
    assert "colab-install" in install.get("metadata", {}).get("tags", []), "first code cell is the install cell"
    assert f'REPO = "{REPO_URL}"' in text, "install cell clones the repository named in _config.yml"
    assert "git clone --quiet --depth 1 {REPO} /content/book" in text
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text))
    assert urls == {REPO_URL}, f"install cell mentions {urls}, _config.yml says {REPO_URL}"
    pip_lines = [line for line in text.splitlines() if "pip install" in line]
    assert pip_lines and not any("torch" in line for line in pip_lines), "never reinstall Colab's torch"
    assert not any("%pip" in line for line in pip_lines), "%pip asks for a kernel restart that is not needed"
    guarded = text.split('if "google.colab" in sys.modules:')[1]
    assert all(line.startswith("    ") for line in guarded.strip("\n").splitlines()), "everything is guarded"
    assert sum("print(" in line for line in guarded.splitlines()) == 1, "says what it did in one line"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_glue_through_imitlib_not_myst_nb(path):
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    assert "myst_nb" not in code, f"{path.name}: myst_nb is a book-building tool Colab lacks; use imitlib.book.glue"
    assert re.search(r"from imitlib\.book import glue|from imitlib import .*\bbook\b", code), "glue via imitlib.book"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebooks_glue_their_numbers_and_define_no_classes(path):
    md = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    used = set(re.findall(r"\{glue:text\}`([\w]+)", md))
    glued = set(re.findall(r'glue\(\s*f?"([\w{}]+)"', code))
    chapter = path.name[:2].lstrip("0")  # names a chapter's summary functions in imitlib return, e.g. "ch1_reach_{key}"
    for module in (ROOT / "imitlib" / "experiments").glob("*.py"):
        glued |= set(re.findall(rf'f?"(ch{chapter}_[\w{{}}]+)"', module.read_text()))
    assert used, f"{path.name}: prose quotes no computed number"
    patterns = [re.compile("^" + re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(g)) + "$") for g in glued]
    missing = [u for u in used if not any(p.match(u) for p in patterns)]
    assert not missing, f"{path.name}: prose uses glue keys never glued: {missing}"
    malformed = re.findall(r"\{glue:text\}`(?![\w]+(?::[^`{}\n]+)?`)[^\n]{0,40}", md)
    assert not malformed, f"{path.name}: glue roles not closed as `key` or `key:format`: {malformed}"
    assert not re.search(r"^class ", code, re.M), "notebooks import imitlib; they define no classes"


def test_readme_starts_with_the_two_commands_and_the_makefile_runs_them():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "book"], ["make", "test"]]
    make = (ROOT / "Makefile").read_text()
    for step in ("-m venv", "pip install --quiet $(TORCH)", "pip install --quiet -r requirements.txt",
                 "scripts/book.py book", "scripts/book.py test"):
        assert step in make, f"Makefile lacks `{step}`"
    for cmd in ("python scripts/book.py build", "python scripts/book.py colab", "python -m http.server -d _build/html"):
        assert cmd in readme, f"README lacks `{cmd}`"


def test_the_reader_build_executes_and_the_test_build_does_not():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] == "cache" and execute["timeout"] >= 600
    book = (ROOT / "scripts" / "book.py").read_text()
    assert 'set_execution(STAGE / "_config.yml", "off")' in book


def test_publishing_workflow_mirrors_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    wf = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    for step in ("pip install -r requirements.txt", "scripts/book.py build"):
        assert step in ci and step in wf, f"`{step}` must appear in both .ci/run and the workflow"


# --- imitlib.book: glue that works with and without myst-nb, and the live table -------------------------------

def test_glue_without_myst_nb_stores_the_value_and_does_not_raise(monkeypatch):
    from imitlib import book

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as in Colab: importing it fails
    book.glue("test_no_myst", 0.125, display=False)
    assert book.GLUED["test_no_myst"] == 0.125


@pytest.mark.parametrize("value, spec", [(0.123456, ".2f"), (0.5, ".0%"), (-0.25, "+.2f"), (1234567.0, ",.0f"),
                                         ("4 of 5", ""), (12, ""), (2.5, ""), ("x", "s"), (7.0, ".1f")])
def test_live_values_are_formatted_exactly_as_the_book_formats_them(value, spec):
    from IPython.core.formatters import format_display_data
    from myst_nb.core.variables import format_plain_text

    from imitlib.book import as_prose

    assert as_prose(value, spec) == format_plain_text(format_display_data(value)[0]["text/plain"], spec)


def test_prose_formats_come_from_the_chapters():
    from imitlib.book import prose_formats

    formats = prose_formats()
    md = "\n".join(source(c) for p in CHAPTERS for c in cells(p) if c["cell_type"] == "markdown")
    used = set(re.findall(r"\{glue:text\}`(\w+)", md))
    assert used and set(formats) == used
    assert all(f"{{glue:text}}`{name}:{spec}`" in md for name, specs in formats.items() for spec in specs if spec)


def test_live_detection(monkeypatch):
    from imitlib import book

    class Kernel:
        _allow_stdin = False

    class Shell:
        kernel = Kernel()

    monkeypatch.delenv(book.TABLE_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not book.is_live(Shell())  # nbclient (nbmake, the book build) forbids input: not live
    Kernel._allow_stdin = True
    assert book.is_live(Shell())  # Jupyter, VS Code: a person can answer input()
    assert not book.is_live(object())  # plain IPython without a kernel
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert book.is_live(object())
    monkeypatch.setenv(book.TABLE_ENV, "0")
    assert not book.is_live(Shell())


def _run_cells(sources: list[str], env: dict[str, str]) -> list[dict]:
    """Execute cells in a real kernel, as nbmake and the book build do; return the last cell's outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        client.execute()
    return nb.cells[-1].outputs


@pytest.mark.parametrize("live", [False, True], ids=["executor", "live"])
def test_a_glue_cell_shows_its_table_only_when_live(live):
    from imitlib.book import as_prose, prose_formats

    name, specs = next((n, s) for n, s in prose_formats().items() if any(s))
    cell = f"from imitlib.book import glue\nglue({name!r}, 0.987654)\nglue('test_plain', 'three of five')"
    outputs = _run_cells([cell], {"IMITLIB_GLUE_TABLE": "1" if live else ""})
    tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    glued = [k for o in outputs for k in o.get("data", {}) if k.startswith("application/papermill.record/")]
    assert sorted(glued) == sorted(f"application/papermill.record/{k}" for k in ("text/plain",) * 2)
    if not live:
        assert not tables, "under nbclient the output stays as myst-nb makes it"
        return
    assert len(tables) == 1
    for spec in specs:
        assert as_prose(0.987654, spec) in tables[0]
    assert f"`{name}`" in tables[0] and "three of five" in tables[0] and "'three" not in tables[0]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_code_cells_are_short_narrow_and_define_nothing(path):
    """What the reader sees: cells of at most 15 lines and 88 columns (the page's width), no functions."""
    for c in cells(path):
        if c["cell_type"] != "code":
            continue
        lines = source(c).splitlines()
        assert len(lines) <= CELL_LINES, f"{path.name}: a {len(lines)}-line cell: {lines[0]!r}"
        wide = [line for line in lines if len(line) > PAGE_COLUMNS]
        assert not wide, f"{path.name}: {len(wide)} line(s) wider than {PAGE_COLUMNS} columns: {wide[0]!r}"
        assert not any(line.lstrip().startswith("def ") for line in lines), f"{path.name}: defines a function"


def test_every_stored_chapter_6_and_7_label_names_one_of_their_results():
    from imitlib import book

    labels = {r.label for r in book.chapter6_results("06_beyond_the_history")}
    assert set(book.CH6_STORED) <= labels, f"not a chapter 6 result: {set(book.CH6_STORED) - labels}"
    labels = {r.label for r in book.chapter7_results("07_new_game")}
    assert set(book.CH7_STORED) <= labels, f"not a chapter 7 result: {set(book.CH7_STORED) - labels}"
