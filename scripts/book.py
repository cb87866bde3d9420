"""Build the book, execute the chapters as tests, and check the result in a real browser.

The committed notebooks stay output-free: a reader's build executes them through Jupyter Book's cache, and the
test path runs them on a copy staged in ``_book/``.

    python scripts/book.py book      # the reader's book: `jupyter-book build .` at IMITLIB_SCALE (lab unless set),
                                     # with what each chapter loads or computes printed first -> _build/html
    python scripts/book.py test      # unit tests + every chapter executed by nbmake (IMITLIB_SCALE=ci unless set)
    python scripts/book.py build     # HTML from the executed copies in _book/ (no second execution), warnings = errors
    python scripts/book.py browser [HTML]  # headless Chromium (_book's build unless HTML): figures, glue, links
    python scripts/book.py parity    # chapter 1 built by Jupyter Book's execution == built from nbmake's outputs
    python scripts/book.py colab     # every chapter run the way Colab runs it (scripts/colab_check.py)
    python scripts/book.py strip     # remove outputs from chapters/*.ipynb (before committing)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "_book"  # not under _build/: nbmake skips any path containing "_build"
HTML = STAGE / "_build" / "html"
BOOK_SOURCES = ("_config.yml", "_toc.yml", "_static", "book", "chapters")
READER_HTML = ROOT / "_build" / "html"  # where `jupyter-book build .` writes the reader's book
PARITY = ROOT / "_parity"
PARITY_CHAPTER = "01_tabular_q_learning"


def stage() -> None:
    """Copy the book's sources to ``_book/`` so execution never writes into tracked notebooks."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    for name in BOOK_SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, STAGE / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        else:
            shutil.copy2(src, STAGE / name)


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def cmd_test(extra: list[str]) -> int:
    """Unit tests and notebook execution in one pytest run; 'no tests collected' counts as failure."""
    stage()
    env = {**os.environ, "IMITLIB_SCALE": os.environ.get("IMITLIB_SCALE", "ci")}
    print(f"IMITLIB_SCALE={env['IMITLIB_SCALE']}", flush=True)
    code = run([sys.executable, "-m", "pytest", "tests", str(STAGE / "chapters"), "--nbmake", "--overwrite",
                "--durations=8", *extra], env=env)  # the slowest tests and chapters: the CI budget at a glance
    if code == 5:
        print("pytest collected no tests: treating that as a failure", file=sys.stderr)
        return 1
    return code


def cmd_build() -> int:
    """Build HTML from the executed copies without executing anything again."""
    notebooks = sorted((STAGE / "chapters").glob("*.ipynb")) if STAGE.exists() else []
    unexecuted = [nb.name for nb in notebooks if not _has_outputs(nb)]
    if not notebooks or unexecuted:
        print(f"no executed notebooks in {STAGE} ({', '.join(unexecuted) or 'none staged'}): "
              "run `python scripts/book.py test` first", file=sys.stderr)
        return 2
    set_execution(STAGE / "_config.yml", "off")  # built from nbmake's outputs: never executed twice
    code = run([jupyter_book(), "build", str(STAGE), "-W", "-n", "--keep-going"])
    if code == 0:
        print(f"book built: {HTML / 'index.html'}")
    return code


def jupyter_book() -> str:
    """The jupyter-book installed beside this Python, else the one on PATH."""
    jb = Path(sys.executable).with_name("jupyter-book")
    return str(jb) if jb.exists() else "jupyter-book"


def set_execution(config: Path, mode: str) -> None:
    """Rewrite a staged ``_config.yml`` with ``execute_notebooks: mode``."""
    cfg = yaml.safe_load(config.read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = mode
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))


def cmd_book() -> int:
    """The reader's build: say what each chapter will load or compute, then `jupyter-book build .`, timed."""
    from imitlib import book
    from imitlib.scale import get_scale

    t0 = time.perf_counter()
    scale = get_scale()  # IMITLIB_SCALE, lab unless set
    print(f"building the book at IMITLIB_SCALE={scale.name}", flush=True)
    if scale.name == "ci":
        print("  ci: every chapter computes its tiny pipeline (a few minutes in all); nothing is loaded")
    plan = book.build_plan(scale)
    for chapter, lines in plan.items():
        print(f"  {chapter}")
        for line in lines:
            print(f"    {'!' if 'NOT STORED' in line else '-'} {line}")
    if any("NOT STORED" in line for lines in plan.values() for line in lines):
        print("  ! chapters marked ! compute during the build; their commands above run them in the background")
    forget_stale_cache(scale.name)
    env = {**os.environ, "IMITLIB_SCALE": scale.name}
    code = run([jupyter_book(), "build", str(ROOT), "-n", "--keep-going"], env=env)
    minutes = (time.perf_counter() - t0) / 60
    if code == 0:
        print(f"book built at {scale.name} scale in {minutes:.1f} min: {READER_HTML / 'index.html'}\n"
              f"read it: python -m http.server -d {READER_HTML.relative_to(ROOT)} 8000, "
              "then open http://localhost:8000")
    return code


def forget_stale_cache(scale: str) -> None:
    """Jupyter Book's cache keys on code cells only: drop it when the scale, results/ or imitlib have changed."""
    h = hashlib.sha256(scale.encode())
    for path in sorted([*(ROOT / "results").rglob("provenance.json"), *(ROOT / "imitlib").rglob("*.py")]):
        h.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    stamp, cache = ROOT / "_build" / ".imitlib-stamp", ROOT / "_build" / ".jupyter_cache"
    if stamp.exists() and stamp.read_text() == h.hexdigest():
        return
    if cache.exists():
        print("  scale, stored results or imitlib changed since the last build: executing every chapter afresh")
        shutil.rmtree(cache)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(h.hexdigest())


def cmd_parity() -> int:
    """Chapter 1 built through Jupyter Book's own execution must match the page built from nbmake's outputs."""
    tested = STAGE / "chapters" / f"{PARITY_CHAPTER}.ipynb"
    if not (tested.exists() and _has_outputs(tested) and (HTML / "chapters" / f"{PARITY_CHAPTER}.html").exists()):
        print("run `python scripts/book.py test` and `python scripts/book.py build` first", file=sys.stderr)
        return 2
    if PARITY.exists():
        shutil.rmtree(PARITY)
    shutil.copytree(ROOT / "book", PARITY / "book")
    (PARITY / "chapters").mkdir()
    shutil.copy2(ROOT / "chapters" / f"{PARITY_CHAPTER}.ipynb", PARITY / "chapters")
    shutil.copy2(ROOT / "_config.yml", PARITY / "_config.yml")
    toc = {"format": "jb-book", "root": "book/intro", "chapters": [{"file": f"chapters/{PARITY_CHAPTER}"}]}
    (PARITY / "_toc.yml").write_text(yaml.safe_dump(toc))
    if run([jupyter_book(), "build", str(PARITY), "--keep-going"]) != 0:
        return 1
    cached = sorted((PARITY / "_build" / ".jupyter_cache" / "executed").glob("*/base.ipynb"))
    if len(cached) != 1:
        print(f"expected one executed notebook in Jupyter Book's cache, found {len(cached)}", file=sys.stderr)
        return 1
    pages = {"nbmake, then build": (tested, HTML), "jupyter-book executes": (cached[0], PARITY / "_build" / "html")}
    seen = {how: page_facts(nb, html / "chapters" / f"{PARITY_CHAPTER}.html") for how, (nb, html) in pages.items()}
    for how, facts in seen.items():
        print(f"{how:>22}: {len(facts['glue keys'])} glue keys, {facts['figures']} figures in the notebook; "
              f"{facts['images']} images and {len(facts['glued text'])} glued numbers on the page")
    same = len({json.dumps(f, sort_keys=True) for f in seen.values()}) == 1
    if not same:
        a, b = seen.values()
        for key in a:
            if a[key] != b[key]:
                print(f"  {key}: {a[key]} vs {b[key]}")
    print("the two paths give the same page" if same else "THE TWO PATHS DIFFER")
    return 0 if same else 1


def page_facts(notebook: Path, page: Path) -> dict:
    """What a page shows: its notebook's glue keys and figures, the page's images and glued text."""
    outputs = [o for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", [])]
    keys = sorted(o["metadata"]["scrapbook"]["name"] for o in outputs if "scrapbook" in o.get("metadata", {}))
    figures = sum(any(k.startswith("image/") for k in o.get("data", {})) for o in outputs)
    html = page.read_text()
    glued = re.findall(r'<span class="pasted-text">(.*?)</span>', html)
    return {"glue keys": keys, "figures": figures, "images": len(re.findall(r"<img ", html)), "glued text": glued}


def cmd_colab(extra: list[str]) -> int:
    return run([sys.executable, str(ROOT / "scripts" / "colab_check.py"), *extra])


def cmd_browser(extra: list[str]) -> int:
    """Check the test build (``_book/``), or the book at the path given (e.g. ``_build/html``, the reader's)."""
    return run([sys.executable, str(ROOT / "scripts" / "browser_check.py"), *(extra or [str(HTML)])])


def _has_outputs(path: Path) -> bool:
    nb = json.loads(path.read_text())
    return any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def cmd_strip() -> int:
    """Remove outputs and execution counts from the tracked notebooks."""
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        nb.get("metadata", {}).pop("widgets", None)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print("stripped", path.relative_to(ROOT))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["book", "test", "build", "browser", "parity", "colab", "strip", "stage"])
    args, extra = parser.parse_known_args()
    if args.command in ("test", "colab", "browser"):
        return {"test": cmd_test, "colab": cmd_colab, "browser": cmd_browser}[args.command](extra)
    if extra:
        parser.error(f"unexpected arguments: {extra}")
    return {"book": cmd_book, "build": cmd_build, "parity": cmd_parity, "strip": cmd_strip,
            "stage": lambda: (stage(), 0)[1]}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
