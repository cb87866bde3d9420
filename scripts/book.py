"""Execute the chapters once, build the book from those outputs, and check it in a real browser.

The committed notebooks stay output-free: everything runs on a copy staged in ``_book/``.

    python scripts/book.py test      # unit tests + every chapter executed by nbmake (IMITLIB_SCALE=ci unless set)
    python scripts/book.py build     # HTML from the executed copies, Sphinx warnings as errors
    python scripts/book.py browser   # headless Chromium: figures render, Colab badges, internal links
    python scripts/book.py strip     # remove outputs from chapters/*.ipynb (before committing)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / "_book"  # not under _build/: nbmake skips any path containing "_build"
HTML = STAGE / "_build" / "html"
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "chapters")


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
    jb = Path(sys.executable).with_name("jupyter-book")  # the one installed beside this Python
    code = run([str(jb) if jb.exists() else "jupyter-book", "build", str(STAGE), "-W", "-n", "--keep-going"])
    if code == 0:
        print(f"book built: {HTML / 'index.html'}")
    return code


def cmd_browser() -> int:
    return run([sys.executable, str(ROOT / "scripts" / "browser_check.py"), str(HTML)])


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
    parser.add_argument("command", choices=["test", "build", "browser", "strip", "stage"])
    args, extra = parser.parse_known_args()
    if args.command == "test":
        return cmd_test(extra)
    if extra:
        parser.error(f"unexpected arguments: {extra}")
    return {"build": cmd_build, "browser": cmd_browser, "strip": cmd_strip,
            "stage": lambda: (stage(), 0)[1]}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
