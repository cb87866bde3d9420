"""The book's structure: TOC <-> files, output-free notebooks, and Colab links that agree with _config.yml."""

import json
import re
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
    assert 'if "google.colab" in sys.modules:' in text
    assert f"git clone --depth 1 {REPO_URL} " in text, "install cell clones the repository from _config.yml"
    urls = set(re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text))
    assert urls == {REPO_URL}, f"install cell mentions {urls}, _config.yml says {REPO_URL}"
    pip_lines = [line for line in text.splitlines() if "pip install" in line]
    assert pip_lines and not any("torch" in line for line in pip_lines), "never reinstall Colab's torch"
    guarded = text.split('if "google.colab" in sys.modules:')[1]
    assert all(line.startswith("    ") for line in guarded.strip("\n").splitlines()), "everything is guarded"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebooks_glue_their_numbers_and_define_no_classes(path):
    md = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    used = set(re.findall(r"\{glue:text\}`([\w]+)", md))
    glued = set(re.findall(r'glue\(\s*f?"([\w{}]+)"', code))
    assert used, f"{path.name}: prose quotes no computed number"
    patterns = [re.compile("^" + re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(g)) + "$") for g in glued]
    missing = [u for u in used if not any(p.match(u) for p in patterns)]
    assert not missing, f"{path.name}: prose uses glue keys never glued: {missing}"
    malformed = re.findall(r"\{glue:text\}`(?![\w]+(?::[^`{}\n]+)?`)[^\n]{0,40}", md)
    assert not malformed, f"{path.name}: glue roles not closed as `key` or `key:format`: {malformed}"
    assert not re.search(r"^class ", code, re.M), "notebooks import imitlib; they define no classes"


def test_readme_has_the_commands():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("pip install -r requirements.txt", "python scripts/book.py test", "python scripts/book.py build"):
        assert cmd in readme, f"README lacks `{cmd}`"


def test_publishing_workflow_mirrors_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    wf = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    for step in ("pip install -r requirements.txt", "scripts/book.py build"):
        assert step in ci and step in wf, f"`{step}` must appear in both .ci/run and the workflow"
