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
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imitlib.scale import Scale

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


def glue_all(numbers: dict[str, Any]) -> None:
    """Glue every value of a chapter's summary under its name (a summary function returns name -> value)."""
    for name, value in numbers.items():
        glue(name, value)


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


# --- What a chapter shows: tables and provenance, one way each ------------------------------------------------

def table(header: list[str], rows: list[list[Any]], formats: list[str] | None = None) -> Any:
    """A Markdown table for a cell's output; ``formats`` (one spec per column, "" for none) formats the cells."""
    from IPython.display import Markdown

    specs = formats or [""] * len(header)
    if len(specs) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError(f"table: {len(header)} columns in the header, rows of {sorted({len(r) for r in rows})}, "
                         f"{len(specs)} formats; give every row (and formats) one value per column")
    cells = [[_escape(format(v, f) if f else str(v)) for v, f in zip(row, specs, strict=True)] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return Markdown("\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]))


def provenance(*arts: Any) -> Any:
    """Where the numbers below come from, folded away: one collapsed dropdown for any number of artifacts."""
    from IPython.display import Markdown

    shown = [a for a in arts if a is not None]
    stale = any(getattr(a, "stale", False) for a in shown)
    title = f"Provenance of {len(shown)} result{'s' if len(shown) != 1 else ''}" + (" (stale: see inside)"
                                                                                     if stale else "")
    body = "\n\n".join(a.provenance_markdown() for a in shown)
    return Markdown(f"<details>\n<summary>{title}</summary>\n\n{body}\n\n</details>")


# --- What each chapter loads: the plan a book build prints, and what tests/test_results.py checks ---------------

LONG_SECONDS = 180.0  # computing longer than this inside a book build deserves a warning and a background command


@dataclass(frozen=True)
class StoredResult:
    """One stored artifact a chapter loads at ``lab``: how to load it and the command that computes it."""

    chapter: str  # notebook stem, e.g. "04_transformer_imitation"
    label: str
    load: Callable[[Scale], Any]
    command: str  # ``{scale}`` stands for the scale's name, ``{new_game}`` for chapter 7's unseen game there

    def command_at(self, scale: Scale) -> str:
        """The command with the scale (and, where it names one, the unseen game) filled in."""
        from imitlib.experiments.transfer import new_game

        return self.command.format(scale=scale.name, new_game=new_game(scale))


# chapter 6's results stored at lab so far; the rest join as each is computed (the book loads what is stored and
# says what is not)
CH6_STORED = (
    "whole histories, long rollouts",
    "histories cut to their first 10%",
    "histories cut to their first 25%",
    "histories cut to their first 50%",
    "moving goals, students trained on histories without moves",
    "moving goals, students trained on histories with 2 moves",
    "noise-distilled histories",
    "noise control, epsilon 0.5 throughout",
    "noise control, epsilon 1.0 throughout",
    "MinAtar Breakout, whole histories",
    "MinAtar Breakout, first 30% of training",
)

# chapter 7's results stored at lab so far (same rule)
CH7_STORED: tuple[str, ...] = ("DQN transplanted from Breakout", "frozen Breakout students on Space Invaders",
                               "leave one game out, as recorded", "leave one game out, relabelled",
                               "Dark Room with relabelled actions")


CHAPTERS_IN_ORDER = ("01_tabular_q_learning", "02_dqn_teacher", "03_recording_histories", "04_transformer_imitation",
                     "05_in_context_probes", "06_beyond_the_history", "07_new_game", "08_conclusions")

SCALING_LABEL = "MinAtar ED students, more expert episodes"  # Q1's data-scaling run (chapter 4)
# chapter 4's results not stored at lab yet (same rule as chapters 6 and 7): none since the data-scaling run landed
CH4_NOT_STORED: tuple[str, ...] = ()


def stored_results() -> list[StoredResult]:
    """Every stored artifact the chapters load at ``lab``: what tests/test_results.py checks."""
    listed = {CHAPTERS_IN_ORDER[5]: CH6_STORED, CHAPTERS_IN_ORDER[6]: CH7_STORED}
    return [r for r in every_result()
            if (r.label in listed[r.chapter] if r.chapter in listed else r.label not in CH4_NOT_STORED)]


def every_result() -> list[StoredResult]:
    """Every artifact a chapter loads at ``lab``, stored or not, built from the same configs the chapters use."""
    from imitlib import experiments as ex
    from imitlib.experiments import data_scaling, transfer

    ch = CHAPTERS_IN_ORDER
    cli = "python -m imitlib"
    out = [StoredResult(ch[0], "tabular Q-learning", lambda s: ex.tabular_artifact(ex.tabular_experiment(s), s),
                        f"{cli} tabular --scale {{scale}}"),
           StoredResult(ch[1], "DQN teachers", lambda s: ex.teacher_artifact(ex.teacher_experiment(s), s),
                        f"{cli} teacher --scale {{scale}}"),
           StoredResult(ch[1], "DQN teachers on Space Invaders", lambda s: ex.teacher_artifact(
               ex.teacher_experiment(s, transfer.new_game(s)), s),
               f"{cli} teacher --env {{new_game}} --scale {{scale}}")]
    for env in ("MinAtar/Breakout-v0", "MinAtar/SpaceInvaders-v0"):
        out.append(StoredResult(ch[2], f"{env} histories", lambda s, env=env: ex.minatar_histories_artifact(
            ex.teacher_experiment(s, env), s), f"{cli} record minatar --env {env} --scale {{scale}}"))
    for kind in ("ad", "ed"):
        out.append(StoredResult(ch[3], f"Dark Room {kind.upper()} students", lambda s, kind=kind:
                                ex.darkroom_students_artifact(ex.darkroom_students_config(s, kind), s),
                                f"{cli} student --kind {kind} --scale {{scale}}"))
    out.append(StoredResult(ch[3], "MinAtar ED students", lambda s: ex.game_students_artifact(
        ex.game_students_config(s), s), f"{cli} student --kind ed --data minatar --scale {{scale}}"))
    out.append(StoredResult(ch[3], SCALING_LABEL, lambda s: data_scaling.scaling_artifact(
        data_scaling.scaling_config(s), s), data_scaling.COMMAND))
    out.append(StoredResult(ch[4], "ICL regression", lambda s: ex.icl_regression_artifact(
        ex.icl_regression_config(s), s), f"{cli} incontext --part regression --scale {{scale}}"))
    main = {"AD": ("ad", 0), "ED": ("ed", 0), "ED + prompt": ("ed", 3), "AD + prompt": ("ad", 3)}
    for name, (kind, prompt) in main.items():
        out.append(StoredResult(ch[4], f"in-context {name}", lambda s, kind=kind, prompt=prompt: ex.in_context_artifact(
            ex.in_context_config(s, ex.darkroom_students_config(s, kind), prompt_episodes=prompt), s),
            f"{cli} incontext --part main --scale {{scale}}"))
    for name in ex.ABLATIONS:
        out.append(StoredResult(ch[4], f"ablation: {name}", lambda s, name=name: ex.in_context_artifact(
            ex.ablation_test(s, name), s), f'{cli} incontext --part ablations --ablation "{name}" --scale {{scale}}'))
    out.append(StoredResult(ch[4], "probes", lambda s: ex.probes_artifact(ex.ProbeTest(
        ex.darkroom_students_config(s, "ad"), windows=s.incontext.probe_windows), s),
        f"{cli} incontext --part probes --scale {{scale}}"))
    return out + chapter6_results(ch[5]) + chapter7_results(ch[6])


def chapter6_results(chapter: str) -> list[StoredResult]:
    """Every result chapter 6 loads, stored or not: long and truncated rollouts, moving goals, noise, the game."""
    from imitlib.experiments import beyond, game_beyond, moving, noise

    out = []
    for fraction in beyond.PARTS:
        label = "whole histories, long rollouts" if fraction == 1 else f"histories cut to their first {fraction:.0%}"
        out.append(StoredResult(chapter, label,
                                lambda s, f=fraction: beyond.beyond_artifact(beyond.beyond_config(s, f), s),
                                beyond.beyond_command(fraction)))
    for moves in moving.MOVING_SETS:
        out.append(StoredResult(chapter, f"moving goals, students trained on {moving.SET_LABELS[moves]}",
                                lambda s, m=moves: moving.moving_artifact(moving.moving_config(s, m), s),
                                moving.moving_command(moves)))
    for fixed in noise.NOISE_SETS:
        label = "noise-distilled histories" if fixed is None else f"noise control, epsilon {fixed} throughout"
        out.append(StoredResult(chapter, label, lambda s, e=fixed: noise.noise_artifact(noise.noise_config(s, e), s),
                                noise.noise_command(fixed)))
    for cut in game_beyond.GAME_SETS:
        label = "MinAtar Breakout, whole histories" if cut == 1 else f"MinAtar Breakout, first {cut:.0%} of training"
        out.append(StoredResult(chapter, label, lambda s, c=cut: game_beyond.game_beyond_artifact(
            game_beyond.game_beyond_config(s, c), s), game_beyond.game_beyond_command(cut)))
    return out


def chapter7_results(chapter: str) -> list[StoredResult]:
    """Every result chapter 7 loads, stored or not: the teacher transplanted, the frozen students, the rooms."""
    from imitlib.experiments import leave_one_out as loo
    from imitlib.experiments import new_game, relabelled_room, transplant

    out = [StoredResult(chapter, "DQN transplanted from Breakout", lambda s: transplant.transplant_artifact(
               transplant.transplant_config(s), s), transplant.COMMAND),
           StoredResult(chapter, "frozen Breakout students on Space Invaders", lambda s: new_game.frozen_artifact(
               new_game.frozen_config(s), s), new_game.COMMAND)]
    for r in loo.SETS:
        out.append(StoredResult(chapter, f"leave one game out, {'relabelled' if r else 'as recorded'}",
                                lambda s, r=r: loo.leave_one_out_artifact(loo.leave_one_out_config(s, r), s),
                                loo.command(r)))
    out.append(StoredResult(chapter, "Dark Room with relabelled actions", lambda s: relabelled_room.relabelled_artifact(
        relabelled_room.relabelled_config(s), s), relabelled_room.COMMAND))
    return out


def build_plan(scale: Scale) -> dict[str, list[str]]:
    """Per chapter, one line per stored result: loaded, loaded but stale, or computed (and for how long)."""
    from imitlib import artifacts

    plan: dict[str, list[str]] = {}
    for result in stored_results():
        lines = plan.setdefault(result.chapter, [])
        if scale.name == "ci":
            continue  # ci never loads: every chapter computes its tiny pipeline
        command = result.command_at(scale)
        with artifacts.dry_run() as seen:
            try:
                result.load(scale)
            except artifacts.NotStored:
                pass
        last = seen[-1] if seen else None
        if last is None or last.state == "missing":
            lines.append(f"{result.label}: NOT STORED at {scale.name}; the chapter computes it or says it is "
                         f"missing (may take hours on a CPU). Run it in the background instead: {command}")
        elif last.state == "stale":
            lines.append(f"{result.label}: loads a stored result made by older code (the page says so); "
                         f"recompute: IMITLIB_RECOMPUTE=1 {command}"
                         + (f" (~{last.seconds / 60:.0f} min)" if last.seconds else ""))
        else:
            lines.append(f"{result.label}: loads the stored result")
    return plan
