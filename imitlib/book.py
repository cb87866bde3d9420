"""Glue computed numbers into the book's prose: in the built book, under nbmake, and in a live notebook.

The chapters' prose cites numbers with myst-nb roles, ``{glue:text}`name:format```. myst-nb is a book-building
tool, not a runtime dependency, and Colab does not ship it, so the chapters glue through :func:`glue`:

- it always stores the value in :data:`GLUED` and never fails;
- when myst-nb is installed it also hands the value to ``myst_nb.glue``, so the built book resolves every role;
- in a *live* notebook, where a person reads the raw roles, it shows what each cell glued as a small table,
  formatted with the format spec the prose uses for that name (read from the chapters shipped beside this
  package), so the numbers the next paragraph cites are on the screen.

"Live" means a frontend a person types into. Executors (nbmake, the book build, papermill) all run cells
through nbclient, which refuses kernel input requests (``allow_stdin=False``); Jupyter, JupyterLab, VS Code and
Colab allow them. So a cell runs live when it runs in Colab or when its kernel may ask for input.
``IMITLIB_GLUE_TABLE=1`` or ``=0`` overrides the detection.
"""

from __future__ import annotations

import json
import os
import re
import sys
from ast import literal_eval
from functools import cache
from pathlib import Path
from typing import Any

TABLE_ENV = "IMITLIB_GLUE_TABLE"
CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"  # present in a clone, Colab's included
_ROLE = re.compile(r"\{glue:text\}`(\w+)(?::([^`{}\n]*))?`")

GLUED: dict[str, Any] = {}  # every value glued in this process, by name
_pending: list[str] = []  # names glued by the running cell, shown when it finishes (live only)
_hooked: set[int] = set()  # shells whose post_run_cell hook is registered


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the prose; the built book, nbmake and a live notebook all see it."""
    GLUED[name] = value
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab, or a runtime-only install: the value is stored, the book is not being built
        myst_glue = None
    if myst_glue is not None:
        myst_glue(name, value, display=display)
    shell = _shell()
    if shell is not None and is_live(shell):
        _pending.append(name)
        if id(shell) not in _hooked:
            shell.events.register("post_run_cell", _show_pending)
            _hooked.add(id(shell))


def _shell() -> Any:
    """The running IPython shell, or None outside IPython."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def is_live(shell: Any) -> bool:
    """Whether a person reads this notebook as it runs (see the module docstring for how that is told)."""
    forced = os.environ.get(TABLE_ENV, "")
    if forced in ("0", "1"):
        return forced == "1"
    if "google.colab" in sys.modules:
        return True
    kernel = getattr(shell, "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


@cache
def prose_formats(chapters: Path = CHAPTERS) -> dict[str, tuple[str, ...]]:
    """Every format spec the chapters' prose uses for each glue name (in order of first use)."""
    formats: dict[str, tuple[str, ...]] = {}
    for path in sorted(chapters.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] != "markdown":
                continue
            for name, spec in _ROLE.findall("".join(cell["source"])):
                if spec not in formats.get(name, ()):
                    formats[name] = (*formats.get(name, ()), spec)
    return formats


def as_prose(value: Any, spec: str = "") -> str:
    """``value`` as the book's ``{glue:text}`` role prints it with format ``spec`` (myst-nb's rules)."""
    text = _plain_text(value)
    try:  # myst-nb reads the stored text/plain back as a Python literal, dropping a string's quotes
        parsed = literal_eval(text)
    except (SyntaxError, ValueError):
        parsed = text
    if not spec:
        return str(parsed)
    kind = spec[-1]
    if kind == "s":
        parsed = str(parsed)
    elif kind in "bcdoxX":
        parsed = int(parsed)
    elif kind in "eEfFgGn%":
        parsed = float(parsed)
    return format(parsed, spec)


def _plain_text(value: Any) -> str:
    """The text/plain form a notebook stores for ``value`` (IPython's, when IPython is there)."""
    if "IPython" in sys.modules:
        from IPython.core.formatters import format_display_data

        return format_display_data(value)[0].get("text/plain", repr(value))
    return repr(value)


def glue_table(names: list[str], formats: dict[str, tuple[str, ...]] | None = None) -> str:
    """A Markdown table: each glued name and its value as the prose shows it."""
    formats = prose_formats() if formats is None else formats
    rows = ["| glued name | as the text shows it |", "| --- | --- |"]
    for name in dict.fromkeys(names):  # each name once, in the order glued
        shown = " · ".join(as_prose(GLUED[name], spec) for spec in formats.get(name, ("",)))
        rows.append(f"| `{name}` | {_escape(shown)} |")
    return "\n".join(rows)


def _escape(text: str) -> str:
    """Keep a value's own ``|`` from splitting a Markdown table cell."""
    return text.replace("|", "\\|")


def _show_pending(*_: Any) -> None:
    """After a live cell: show the values it glued, then forget them."""
    if not _pending:
        return
    from IPython.display import Markdown, display

    names = list(_pending)
    _pending.clear()
    display(Markdown(glue_table(names)))
