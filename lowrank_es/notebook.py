"""Small helpers every notebook uses: the FULL switch, figure saving, plot style, widgets."""

from __future__ import annotations

import os
from pathlib import Path

from lowrank_es.paths import figures_dir

#: ``FULL=1`` in the environment selects the paper-scale run; the default is a small
#: run that finishes in about a minute on 2 CPU cores.
FULL: bool = os.environ.get("FULL", "0") not in ("", "0", "false", "False")


def setup_plots() -> None:
    """Seaborn's paper style, a fixed figure size and DPI so saved figures are stable."""
    import matplotlib

    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    matplotlib.rcParams.update({"figure.dpi": 90, "savefig.dpi": 110, "figure.figsize": (7.0, 4.0)})


def save_figure(fig, notebook: str, what: str) -> Path:
    """Save ``fig`` as ``figures/<notebook>__<what>.png`` and return the path.

    The file name is stable so the main command overwrites it on every run.
    """
    if not what.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"what must be alphanumeric with _ or -, got {what!r}")
    path = figures_dir() / f"{notebook}__{what}.png"
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
    return path


def progress(iterable, **kwargs):
    """tqdm progress bar, shown for FULL runs (or ``LOWRANK_ES_PROGRESS=1``) only, so the
    small default runs keep deterministic notebook outputs."""
    from tqdm.auto import tqdm

    show = FULL or os.environ.get("LOWRANK_ES_PROGRESS", "0") == "1"
    return tqdm(iterable, disable=not show, **kwargs)


#: The label of the full-rank entry of every rank control: full-rank Gaussian perturbations
#: (OpenES / naive ES), passed to the callback as ``rank=None``.
FULL_RANK = "full"


def rank_options(*ranks: int) -> list[tuple[str, int | None]]:
    """Options of a rank control (a ``Dropdown`` or ``SelectionSlider``): each rank, then
    ``"full"`` with the value ``None`` (full-rank noise), the one full-rank convention of the
    notebooks' widgets."""
    return [(str(r), r) for r in ranks] + [(FULL_RANK, None)]


def rank_label(rank: int | None) -> str:
    """How a callback names the rank it ran with: the number, or ``"full"`` for ``None``."""
    return FULL_RANK if rank is None else str(rank)


def controls(fn, *, button: str = "Run", **widgets_kwargs):
    """Widgets for ``fn``'s arguments with a *Run* button: the one widget convention of the
    notebooks (``ipywidgets.interactive`` in manual mode).

    Manual mode keeps the notebook's saved outputs deterministic: nothing runs when the
    widgets are first displayed, so nbval compares the preceding cell (which calls ``fn``
    at the default values) and the widget cell has no output of its own. Each change a user
    makes is applied when *Run* is pressed. A value ``fn`` rejects with ``ValueError`` (say a
    rank larger than the matrix) is shown as one line, ``error: ...``, not as a traceback.
    The panel's DOM node carries the CSS class ``lowrank-controls`` (the browser tests find
    panels by it); nothing is returned, so a cell ending in this call shows the panel once.
    """
    import functools

    import ipywidgets
    from IPython.display import display

    @functools.wraps(fn)
    def guarded(**kwargs):
        try:
            return fn(**kwargs)
        except ValueError as err:
            print(f"error: {err}")

    ui = ipywidgets.interactive(guarded, {"manual": True, "manual_name": button}, **widgets_kwargs)
    ui.add_class("lowrank-controls")
    display(ui)


def source_digest(notebook_path: str | Path) -> str:
    """sha256 of a notebook's cell sources, outputs excluded: names the version of a notebook
    that a screenshot (``figures/ui/``) was taken of."""
    import hashlib
    import json

    nb = json.loads(Path(notebook_path).read_text())
    return hashlib.sha256("\n".join("".join(c["source"]) for c in nb["cells"]).encode()).hexdigest()
