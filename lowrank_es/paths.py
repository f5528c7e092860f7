"""Where the workbook writes its outputs."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def figures_dir() -> Path:
    """``figures/`` at the repository root (``LOWRANK_ES_FIGURES`` overrides it)."""
    path = Path(os.environ.get("LOWRANK_ES_FIGURES", REPO_ROOT / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path
