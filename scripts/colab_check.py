"""Run every chapter the way a Colab reader does, and fail if one does not run.

Colab gives a reader a Python with its own (CUDA) torch and a Jupyter kernel, nothing of ours. The reader opens a
chapter and runs it top to bottom; its first cell clones this repository and installs it. This script rebuilds
that situation as closely as one machine can:

1. a fresh virtual environment (Python 3.12, as Colab has, when this machine has it) holding only ``torch``
   and ``ipykernel`` 6, as Colab's -- nothing from ``requirements.txt``, so no myst-nb, no pytest, no Jupyter Book;
2. each chapter executed in that kernel by nbclient, with ``google.colab`` registered (so the install cell's
   guard is true, as in Colab) and the install cell's clone of GitHub replaced by a clone of the local
   checkout (its committed ``HEAD``) into a ``content/book`` folder standing in for ``/content/book``;
3. per chapter: passed or the error, and the wall time. Exit status 1 if any chapter failed.

    python scripts/colab_check.py                    # every chapter at IMITLIB_SCALE (ci unless set)
    python scripts/colab_check.py --scale lab 01 04  # two chapters at lab
    python scripts/colab_check.py --venv /tmp/v      # reuse a venv made by an earlier run (faster)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "_colab"
COLAB_CLONE = "/content/book"
FAKE_COLAB = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')  # as in Colab"


def find_python(version: str) -> str | None:
    """A working interpreter of ``version`` (pyenv installs included), or None."""
    candidates = [shutil.which(f"python{version}"), *sorted(glob.glob(
        os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))]
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "import venv"], capture_output=True).returncode == 0:
            return exe
    return None


def make_venv(python: str, venv: Path) -> Path:
    """A fresh venv with only torch and a kernel, as Colab's runtime has before our install cell runs."""
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    version = subprocess.run([str(py), "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # Python 3.11 here: the CPU build on this machine's disk; any other Python: PyPI's build, CUDA as in Colab
    torch = "torch==2.13.0"
    # Colab's kernel is ipykernel 6; 7.x also hangs executors now and then (vscode-jupyter#17410)
    kernel = "ipykernel<7"
    print(f"+ {venv}: pip install {torch} '{kernel}' ({'CPU build' if version == 'True' else 'PyPI build'})",
          flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", torch, kernel], check=True)
    return py


def kernelspec(py: Path, where: Path) -> str:
    """Register a kernel that runs in the venv's Python; return its name."""
    name = "colab-emulation"
    spec = where / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    os.environ["JUPYTER_PATH"] = str(where)
    return name


def colab_notebook(path: Path, source: Path, content: Path) -> nbformat.NotebookNode:
    """The chapter as Colab runs it, its install cell pointed at the local checkout instead of GitHub."""
    nb = nbformat.read(path, as_version=4)
    repo_url = yaml.safe_load((source / "_config.yml").read_text())["repository"]["url"]
    install = next(c for c in nb.cells if "colab-install" in c.metadata.get("tags", []))
    for old in (repo_url, COLAB_CLONE):
        if old not in install.source:
            raise SystemExit(f"{path.name}: the install cell no longer mentions {old}; update this script")
    install.source = install.source.replace(repo_url, f"file://{source}").replace(COLAB_CLONE, str(content / "book"))
    nb.cells.insert(0, nbformat.v4.new_code_cell(FAKE_COLAB))
    return nb


def run_chapter(nb: nbformat.NotebookNode, kernel: str, cwd: Path, timeout: int) -> tuple[bool, str, list[str]]:
    """Execute one chapter; return (passed, error, the install cell's printed lines)."""
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
        ok, error = True, ""
    except CellExecutionError as err:
        ok, error = False, re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()[-1]  # no colours
    install = next(c for c in nb.cells if "colab-install" in c.metadata.get("tags", []))
    said = [o.get("text", "") for o in install.get("outputs", []) if o.get("output_type") == "stream"]
    return ok, error, re.sub(r"\x1b\[[0-9;]*m", "", "".join(said)).strip().splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter number prefixes (default: all)")
    parser.add_argument("--python", default="3.12", help="Python version to emulate (default 3.12, as Colab)")
    parser.add_argument("--scale", default=os.environ.get("IMITLIB_SCALE", "ci"))
    parser.add_argument("--venv", type=Path, help="reuse this venv (made by an earlier run) instead of a fresh one")
    parser.add_argument("--source", type=Path, default=ROOT, help="the git checkout to clone (default: this one)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (slowest ci cell: ~1 min)")
    parser.add_argument("--save", type=Path, help="write the executed notebooks here (to read what a reader sees)")
    args = parser.parse_args()

    chapters = [p for p in sorted((args.source / "chapters").glob("*.ipynb"))
                if not args.chapters or any(p.name.startswith(c) for c in args.chapters)]
    if not chapters:
        parser.error(f"no chapter matches {args.chapters}")
    if args.venv:
        py = args.venv / "bin" / "python"
    else:
        python = find_python(args.python)
        if python is None:
            print(f"Python {args.python} not found: emulating with {sys.executable} instead", flush=True)
        py = make_venv(python or sys.executable, WORK / "venv")
    version = subprocess.run([str(py), "-c", "import sys, torch; print(sys.version.split()[0], torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    kernel = kernelspec(py, WORK / "jupyter")
    os.environ["IMITLIB_SCALE"] = args.scale
    os.environ.pop("IMITLIB_RESULTS", None)
    print(f"Colab emulation: Python {version.replace(' ', ', torch ')}; scale {args.scale}", flush=True)

    failed, t_all = [], time.perf_counter()
    for path in chapters:
        with tempfile.TemporaryDirectory(dir=WORK.as_posix() if WORK.exists() else None) as tmp:
            content = Path(tmp) / "content"  # a fresh /content per chapter: each Colab notebook has its own VM
            content.mkdir()
            t0 = time.perf_counter()
            nb = colab_notebook(path, args.source.resolve(), content)
            ok, error, said = run_chapter(nb, kernel, content, args.timeout)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.save / path.name)
        seconds = time.perf_counter() - t0
        print(f"{'passed' if ok else 'FAILED'}  {path.name}  {seconds:6.1f} s  install cell said: "
              f"{said[-1] if said else '(nothing)'}" + ("" if ok else f"\n        {error}"), flush=True)
        failed += [] if ok else [path.name]
    print(f"{len(chapters) - len(failed)}/{len(chapters)} chapters ran the Colab way in "
          f"{time.perf_counter() - t_all:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
