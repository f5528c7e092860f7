"""Experiment ``mechanics`` (notebook 01): rank-1 and rank-4 EGGROLL against full-rank OpenES
on teacher-student regression, same population, sigma, Adam schedule and seeds."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from lowrank_es.experiments import Experiment, register
from lowrank_es.tasks.regression import regression_task, train_regression


@dataclasses.dataclass(frozen=True)
class Config:
    """Task size, the methods (label, rank; ``None`` = OpenES) and the shared ES settings."""

    n_in: int = 16
    n_out: int = 8
    n_samples: int = 512
    methods: tuple[tuple[str, int | None], ...] = (("EGGROLL r=1", 1), ("EGGROLL r=4", 4), ("OpenES (full rank)", None))
    population: int = 64
    sigma: float = 0.05
    learning_rate: float = 0.05
    generations: int = 300


SCALES = {"quick": Config(), "reference": Config(generations=1000)}
SEEDS = {"quick": 3, "reference": 5}


def make_task(cfg: Config):
    """The experiment's teacher-student task (the same for every method and seed)."""
    return regression_task(jax.random.PRNGKey(0), n_in=cfg.n_in, n_out=cfg.n_out, n_samples=cfg.n_samples)


def train_method(cfg: Config, rank: int | None, seeds: tuple[int, ...]) -> dict:
    """MSE curves of one method over ``seeds``: ``{"losses": (seeds, generations + 1)}``."""
    task = make_task(cfg)
    losses = [train_regression(task, rank=rank, population=cfg.population, sigma=cfg.sigma,
                               learning_rate=cfg.learning_rate, generations=cfg.generations, seed=s) for s in seeds]
    return {"rank": rank, "losses": np.stack(losses)}


def _job_name(label: str) -> str:
    """``"OpenES (full rank)"`` -> ``"openes_full_rank"`` (job names become file names)."""
    return "_".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    return {_job_name(label): functools.partial(train_method, cfg, rank, seeds) for label, rank in cfg.methods}


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    """``{label: {"rank", "losses"}}`` in the config's method order."""
    return {label: parts[_job_name(label)] for label, _ in cfg.methods}


def curves(record: dict) -> dict[str, np.ndarray]:
    """``{label: (seeds, generations + 1) MSE}`` of a results record."""
    return {label: np.asarray(d["losses"]) for label, d in record["data"].items()}


def plot_curves(ax, record: dict) -> None:
    """Mean MSE per generation (log scale) with the min-max band over seeds."""
    for label, losses in curves(record).items():
        mean = losses.mean(0)
        ax.semilogy(mean, label=label)
        ax.fill_between(np.arange(len(mean)), losses.min(0), losses.max(0), alpha=0.2)
    ax.set_xlabel("generation")
    ax.set_ylabel("mean squared error (teacher units²)")
    ax.legend()


def summary_lines(record: dict) -> list[str]:
    """One line per method: final MSE mean ± s.e. over seeds, and the starting MSE."""
    lines = []
    for label, losses in curves(record).items():
        final = losses[:, -1]
        lines.append(f"{label:>20}: final MSE {final.mean():.2g} ± {final.std(ddof=1) / np.sqrt(len(final)):.1g} "
                     f"(start {losses[:, 0].mean():.3g}, {len(final)} seeds)")
    return lines


def orders_of_magnitude(record: dict) -> dict[str, float]:
    """``{label: mean over seeds of log10(start MSE / final MSE)}``."""
    return {label: float(np.log10(losses[:, 0] / losses[:, -1]).mean()) for label, losses in curves(record).items()}


def finding(record: dict) -> str:
    """What a run shows, computed from it (a figure title): the range of MSE reductions and how
    far rank 1 ends from full rank."""
    orders = orders_of_magnitude(record)
    finals = {label: float(np.exp(np.log(losses[:, -1]).mean())) for label, losses in curves(record).items()}
    labels = [label for label, _ in Config.methods]
    gap = np.log10(finals[labels[0]] / finals[labels[-1]]) if set(labels) <= set(finals) else float("nan")
    return (f"MSE cut by {min(orders.values()):.1f}-{max(orders.values()):.1f} orders of magnitude; "
            f"rank 1 ends {gap:+.1f} orders from full rank")


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plot_curves(ax, record)
    ax.set_title(f"Regression, {record['scale']} scale: {finding(record)}", fontsize=10)
    return {"regression": fig}


EXPERIMENT = register(Experiment(
    name="mechanics", notebook="01_eggroll_mechanics",
    summary="Does rank-1 EGGROLL fit a teacher-student regression as well as full-rank OpenES?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))
