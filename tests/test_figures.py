"""figures/ holds only what the code writes: every figure is saved by its notebook or by its
experiment's plots, every results and claim record belongs to a registered experiment or claim,
and every screenshot was taken of the notebook as it is now (the browser tests retake them)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
TOP_LEVEL = {"claims", "results", "ui", "claims.json", "claims.md", "claims.png"}


def _code(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _writers() -> dict[str, tuple[str, list[str]]]:
    """notebook stem -> (its code, [(scale, experiment module source)] of its experiments)."""
    from lowrank_es import experiments

    out = {p.stem: (_code(p), []) for p in (ROOT / "notebooks").glob("*.ipynb")}
    for exp in experiments.available().values():
        if exp.notebook in out and exp.plots is not None:
            source = Path(__import__(exp.plots.__module__, fromlist=["_"]).__file__).read_text()
            out[exp.notebook][1].extend((scale, source) for scale in exp.scales)
    return out


def _literal(word: str, source: str) -> bool:
    """Whether ``source`` has ``word`` as a string literal, or saves a figure under an f-string
    name that can format to it."""
    if re.search(rf"[\"']{re.escape(word)}[\"']", source):
        return True
    for q in "\"'":
        templates = re.findall(rf"save_figure\([^(),]*,[^(),]*,\s*f{q}([^{q}]*){q}", source)
        if any(_formats_to(t, word) for t in templates):
            return True
    return False


def _formats_to(template: str, word: str) -> bool:
    parts = re.split(r"(\{[^}]*\})", template)
    return re.fullmatch("".join(".+" if x.startswith("{") else re.escape(x) for x in parts), word) is not None


def orphans() -> list[str]:
    """Files under figures/ that no notebook, experiment or registry writes."""
    from lowrank_es import experiments
    from lowrank_es.claims.registry import all_claims

    writers, bad = _writers(), []
    for path in sorted(FIGURES.iterdir()):
        if path.name in TOP_LEVEL:
            continue
        stem, sep, what = path.stem.partition("__")
        if path.suffix != ".png" or not sep or stem not in writers:
            bad.append(path.name)
            continue
        code, experiment_sources = writers[stem]
        by_experiment = any(what.startswith(f"{scale}_") and _literal(what[len(scale) + 1:], src)
                            for scale, src in experiment_sources)
        if not (_literal(what, code) or by_experiment):
            bad.append(path.name)
    names = experiments.available()
    for path in sorted((FIGURES / "results").iterdir()):
        exp, sep, scale = path.stem.partition("__")
        if path.name == "timings.json":
            continue
        if path.suffix != ".json" or not sep or exp not in names or scale not in names[exp].scales:
            bad.append(f"results/{path.name}")
    claims = all_claims()
    bad += [f"claims/{p.name}" for p in sorted((FIGURES / "claims").iterdir()) if p.stem not in claims]
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    bad += [f"ui/{p.name}" for p in sorted((FIGURES / "ui").iterdir())
            if p.stem not in notebooks or p.suffix not in (".png", ".json")]
    return bad


def stale_screenshots() -> list[str]:
    """Screenshots taken of another version of their notebook (or missing their record)."""
    from lowrank_es.notebook import source_digest

    out = []
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shot, record = FIGURES / "ui" / f"{nb_path.stem}.png", FIGURES / "ui" / f"{nb_path.stem}.json"
        if not shot.exists() or not record.exists():
            out.append(f"{nb_path.stem}: no screenshot and record")
        elif json.loads(record.read_text()).get("notebook_sha256") != source_digest(nb_path):
            out.append(f"{nb_path.stem}: the screenshot shows an older version of the notebook")
    return out


def test_every_file_under_figures_is_written_by_the_code():
    assert orphans() == [], "files under figures/ that nothing writes (delete them or the code that stopped writing them)"


def test_the_orphan_check_catches_a_stray_figure(tmp_path, monkeypatch):
    import shutil

    fake = tmp_path / "figures"
    shutil.copytree(FIGURES, fake, ignore=shutil.ignore_patterns("*.png"))
    for name in ("01_eggroll_mechanics__regression.png", "01_eggroll_mechanics__no_such_plot.png",
                 "02_theory_convergence__reference_error_vs_rank.png", "04_int8_language_model__full_run.json"):
        (fake / name).write_bytes(b"")
    monkeypatch.setattr(sys.modules[__name__], "FIGURES", fake)
    assert orphans() == ["01_eggroll_mechanics__no_such_plot.png", "04_int8_language_model__full_run.json"]


def test_screenshots_show_the_notebooks_as_they_are():
    stale = stale_screenshots()
    assert stale == [], ("run the browser tests (make test) and commit figures/ui/: " + "; ".join(stale))
