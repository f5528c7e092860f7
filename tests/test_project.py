"""Project plumbing: pyproject.toml and environment.yml list the same packages; CI runs the
README's test command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_packages() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(meta["dependencies"]) + [s for extra in meta["optional-dependencies"].values() for s in extra]
    return {_name(s) for s in specs}


def _environment_packages() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:", 1)[1].splitlines():
        m = re.match(r"^\s+- ([A-Za-z0-9_.\-]+)", line)
        if m and not line.strip().startswith("- -e"):
            names.add(_name(m.group(1)))
    return names - {"python", "pip"}


def test_pyproject_and_environment_agree():
    py, env = _pyproject_packages(), _environment_packages()
    assert py == env, f"only in pyproject.toml: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)


def test_every_notebook_is_committed_with_outputs_and_no_errors():
    import json

    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        outputs = [o for c in code for o in c.get("outputs", [])]
        assert outputs, f"{nb_path.name} has no outputs"
        assert not [o for o in outputs if o.get("output_type") == "error"], f"{nb_path.name} has an error output"
        first = nb["cells"][0]
        assert first["cell_type"] == "markdown", f"{nb_path.name} must open with its question and claims"


def test_importing_the_package_selects_portable_cpu_numerics_unless_flags_are_set():
    import os
    import subprocess
    import sys

    code = "import os, lowrank_es; print(os.environ['XLA_FLAGS'])"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "--xla_cpu_max_isa=AVX2" in out and "--xla_cpu_enable_platform_dependent_math=false" in out
    assert "--xla_backend_optimization_level=1" in out
    env["XLA_FLAGS"] = "--xla_cpu_use_xnnpack=true"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "--xla_cpu_use_xnnpack=true"
