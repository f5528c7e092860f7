"""Experiment ``theory`` (notebook 02): how far the expected low-rank ES gradient is from the
Gaussian one, against rank; closed forms checked by float64 Monte Carlo of the optimiser's own
perturbations, an MLP loss by Monte Carlo alone, the rank of the averaged update and the
finite-population split. The reference scale spends more draws and more ranks on the Monte Carlo.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from lowrank_es import theory
from lowrank_es.experiments import Experiment, register
from lowrank_es.experiments.machine import machine_load

Shape = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Config:
    """What each job computes; ``*_samples`` are Monte Carlo draws per point."""

    # Closed forms: every objective x sigma x shape over ``ranks``.
    objectives: tuple[str, ...] = ("quartic", "cosine", "bump")
    sigmas: tuple[float, ...] = (0.1, 0.3, 1.0)
    shapes: tuple[Shape, ...] = ((8, 8), (32, 16))
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    # The claim's setting (eggroll.theory.slope) and the Monte Carlo overlay on it.
    claim_sigma: float = 0.3
    claim_shape: Shape = (8, 8)
    mc_ranks: tuple[int, ...] = (2, 8, 32)
    mc_samples: int = 2**14
    # The optimiser's default noise generator (a hashed Gaussian table), checked against the
    # closed forms that are derived for Gaussian factors.
    check_generator: str = "auto"
    # Fourth-moment fingerprint of one entry.
    moment_ranks: tuple[int, ...] = (1, 2, 4, 8, 16)
    moment_draws: int = 40_000
    # The MLP loss (no closed form); the claim eggroll.theory.slope_mlp is at mlp_sigmas[0].
    mlp_sigmas: tuple[float, ...] = (0.1,)
    mlp_ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    mlp_samples: int = 2**14
    # eggroll.theory.quadratic_exact: a non-separable quadratic, quartic as positive control.
    quadratic_ranks: tuple[int, ...] = (1, 2, 4)
    quadratic_sigma: float = 0.5
    quadratic_samples: int = 2**14
    # eggroll.theory.update_rank: the claim's grid and the figure's.
    rank_shapes: tuple[Shape, ...] = ((16, 16), (32, 12))
    rank_ranks: tuple[int, ...] = (1, 4)
    rank_populations: tuple[int, ...] = (2, 3, 5, 8, 16, 32)
    figure_shape: Shape = (32, 24)
    figure_ranks: tuple[int, ...] = (1, 2, 4)
    figure_populations: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48)
    # Where O(1/r) stops being the whole story: the cosine at larger sigma.
    cosine_sigmas: tuple[float, ...] = (0.3, 1.0, 2.0, 3.0)
    # Finite populations: quartic, sigma 1, 8 x 8.
    split_sigma: float = 1.0
    split_ranks: tuple[int, ...] = (1, 2, 4, 8)
    split_populations: tuple[int, ...] = (8, 32, 128, 512, 2048, 8192, 32768, 131072)
    split_samples: int = 2**13
    mse_rank: int = 2
    mse_population: int = 64
    mse_repeats: int = 200


SCALES = {
    "quick": Config(),
    "reference": Config(mc_samples=2**17, moment_draws=200_000, mlp_sigmas=(0.1, 0.3),
                        mlp_ranks=(1, 2, 4, 8, 16, 32, 64), mlp_samples=2**18, quadratic_samples=2**16,
                        split_samples=2**15, mse_repeats=400),
}
SEEDS = {"quick": 1, "reference": 1}
#: Largest |Monte Carlo - closed form| / SE at which the optimiser's draws count as agreeing.
Z_AGREE = 4.0
#: Largest noise ratio ||MC - closed form||^2 / sum(SE^2) (about 1 under agreement, with
#: 64 entries about +-0.2) at which the default generator's gradient counts as agreeing.
RATIO_AGREE = 2.0


def fit_record(fit: theory.SlopeFit) -> dict[str, float]:
    return dataclasses.asdict(fit)


def as_fit(d: dict[str, float]) -> theory.SlopeFit:
    """A :class:`~lowrank_es.theory.SlopeFit` back from its results-file form."""
    return theory.SlopeFit(**{k: float(d[k]) for k in ("slope", "intercept", "low", "high", "se", "level")})


def moments_job(cfg: Config, seed: int) -> list[dict[str, float]]:
    return [{"rank": r, **theory.entry_moments(r, draws=cfg.moment_draws, seed=seed + r),
             "exact_m4": theory.fourth_moment(r)} for r in cfg.moment_ranks]


def exact_job(cfg: Config) -> list[dict[str, Any]]:
    """Closed-form error curves and their slope fits over every objective, sigma and shape."""
    out = []
    for name in cfg.objectives:
        for sigma in cfg.sigmas:
            for shape in cfg.shapes:
                curve = theory.error_curve(theory.make_problem(name, *shape, seed=0), sigma, cfg.ranks)
                out.append({"objective": name, "sigma": sigma, "shape": list(shape), "rank": curve["rank"],
                            "error": curve["error"], "fit": fit_record(theory.fit_curve(curve))})
    return out


def overlay_job(cfg: Config, seed: int) -> dict[str, dict[str, Any]]:
    """Monte Carlo (the optimiser's draws) against the closed form at the claim's setting: the
    coupled gap with Gaussian factors (``z`` of the relative error), and the gradient itself
    with the optimiser's default generator (noise ratio against the closed-form ``g_r``)."""
    out = {}
    for i, name in enumerate(cfg.objectives):
        problem = theory.make_problem(name, *cfg.claim_shape, seed=0)
        mc = theory.error_curve(problem, cfg.claim_sigma, cfg.mc_ranks, method="mc", samples=cfg.mc_samples,
                                seed=seed + 10 * i)
        exact = theory.error_curve(problem, cfg.claim_sigma, cfg.mc_ranks)["error"]
        ratios = [theory.noise_ratio(problem, cfg.claim_sigma, r, theory.expected_gradient(problem, cfg.claim_sigma, r),
                                     samples=cfg.mc_samples, seed=seed + 10 * i + 5, control_variate=True,
                                     generator=cfg.check_generator) for r in cfg.mc_ranks]
        out[name] = {"rank": mc["rank"], "error": mc["error"], "se": mc["se"], "exact": exact,
                     "z": (mc["error"] - exact) / mc["se"], "generator_ratio": ratios}
    return out


def mlp_job(cfg: Config, seed: int) -> dict[str, dict[str, Any]]:
    """Coupled Monte Carlo error curves of the MLP loss, one per sigma, with weighted slope fits."""
    problem = theory.make_problem("mlp", 8, 8, seed=0)
    out = {}
    for sigma in cfg.mlp_sigmas:
        curve = theory.error_curve(problem, sigma, cfg.mlp_ranks, method="mc", samples=cfg.mlp_samples, seed=seed + 2)
        out[f"{sigma:g}"] = {"sigma": sigma, **curve, "samples": cfg.mlp_samples,
                             "fit": fit_record(theory.fit_curve(curve))}
    return out


def quadratic_job(cfg: Config, seed: int) -> dict[str, Any]:
    """Noise ratios of the quadratic (no gap expected) and of the quartic at rank 1 (a gap)."""
    quad = theory.make_problem("quadratic", 8, 8, seed=seed)
    grad = theory.true_gradient(quad)
    ratios = {str(r): theory.noise_ratio(quad, cfg.quadratic_sigma, r, grad, samples=cfg.quadratic_samples,
                                         seed=seed + r) for r in cfg.quadratic_ranks}
    quartic = theory.make_problem("quartic", 8, 8, seed=seed)
    control = theory.noise_ratio(quartic, cfg.quadratic_sigma, 1, theory.true_gradient(quartic),
                                 samples=cfg.quadratic_samples, seed=seed + 99)
    return {"noise_ratio_by_rank": ratios, "quartic_rank1_noise_ratio": control, "entries": quad.W.size,
            "samples": cfg.quadratic_samples, "sigma": cfg.quadratic_sigma}


def update_rank_job(cfg: Config, seed: int) -> dict[str, Any]:
    """Measured ranks of one update against ``min(N r, m, n)``: the claim's grid and the figure's."""
    def grid(shapes, ranks, pops):
        return [{"m": m, "n": n, "rank": r, "population": list(pops),
                 "measured": theory.update_ranks(m, n, r, pops, seed=seed),
                 "expected": [theory.expected_update_rank(m, n, r, p) for p in pops]}
                for m, n in shapes for r in ranks]

    return {"claim": grid(cfg.rank_shapes, cfg.rank_ranks, cfg.rank_populations),
            "figure": grid([cfg.figure_shape], cfg.figure_ranks, cfg.figure_populations)}


def cosine_job(cfg: Config) -> list[dict[str, Any]]:
    problem = theory.make_problem("cosine", 8, 8, seed=0)
    out = []
    for sigma in cfg.cosine_sigmas:
        curve = theory.error_curve(problem, sigma, cfg.ranks)
        tail = curve["rank"] >= 16
        tail_curve = {k: v[tail] for k, v in curve.items()}
        out.append({"sigma": sigma, "rank": curve["rank"], "error": curve["error"],
                    "coefficient": sigma**2 - sigma**4 / 4, "fit": fit_record(theory.fit_curve(curve)),
                    "tail_fit": fit_record(theory.fit_curve(tail_curve))})
    return out


def population_job(cfg: Config, seed: int) -> dict[str, Any]:
    problem = theory.make_problem("quartic", 8, 8, seed=0)
    split = theory.population_split(problem, cfg.split_sigma, cfg.split_ranks, cfg.split_populations,
                                    samples=cfg.split_samples, seed=seed + 3)
    mse, se = theory.population_mse(problem, cfg.split_sigma, cfg.mse_rank, cfg.mse_population,
                                    repeats=cfg.mse_repeats, seed=seed + 4)
    i = list(cfg.split_ranks).index(cfg.mse_rank)
    predicted = split["bias2"][i] + split["pair_variance"][i] / (cfg.mse_population // 2)
    g_norm = float(np.linalg.norm(theory.expected_gradient(problem, cfg.split_sigma, None)))
    return {**split, "g_inf_norm": g_norm, "mse_check": {"rank": cfg.mse_rank, "population": cfg.mse_population,
                                                         "predicted": predicted, "measured": mse, "se": se}}


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    s = seeds[0]  # one Monte Carlo stream: every job offsets this base seed
    return {
        "moments": functools.partial(moments_job, cfg, s),
        "exact": functools.partial(exact_job, cfg),
        "overlay": functools.partial(overlay_job, cfg, s),
        "mlp": functools.partial(mlp_job, cfg, s),
        "quadratic": functools.partial(quadratic_job, cfg, s),
        "update_rank": functools.partial(update_rank_job, cfg, s),
        "cosine": functools.partial(cosine_job, cfg),
        "population": functools.partial(population_job, cfg, s),
    }


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    """The jobs' results, and how busy the machine was (:func:`~lowrank_es.experiments.machine.machine_load`)."""
    return {**parts, "machine": machine_load()}


# ---------------------------------------------------------------------------
# Reading a results record
# ---------------------------------------------------------------------------


def claim_study(record: dict) -> dict[str, dict[str, Any]]:
    """Per closed-form objective at the claim's sigma and shape: its slope fit, the largest
    |Monte Carlo - exact| / SE of the coupled gap (Gaussian factors) and the largest noise ratio
    of the default generator's gradient against the closed form (``eggroll.theory.slope``)."""
    cfg = record["config"]
    out = {}
    for row in record["data"]["exact"]:
        if row["sigma"] == cfg["claim_sigma"] and list(row["shape"]) == list(cfg["claim_shape"]):
            ov = record["data"]["overlay"][row["objective"]]
            out[row["objective"]] = {"fit": as_fit(row["fit"]), "ranks": row["rank"],
                                     "mc_ranks": ov["rank"], "mc_max_abs_z": float(np.max(np.abs(ov["z"]))),
                                     "generator_max_ratio": float(np.max(ov["generator_ratio"]))}
    return out


def mlp_result(record: dict, sigma: float | None = None) -> tuple[dict[str, Any], theory.SlopeFit]:
    """The MLP curve at ``sigma`` (default: the claim's, the first of the config) and its fit."""
    runs = record["data"]["mlp"]
    key = f"{record['config']['mlp_sigmas'][0] if sigma is None else sigma:g}"
    return runs[key], as_fit(runs[key]["fit"])


def slope_lines(record: dict) -> list[str]:
    """The slope table of every closed-form curve."""
    lines = [f"{'objective':<9} {'sigma':>5} {'shape':>6}  slope [95% interval]"]
    for row in record["data"]["exact"]:
        m, n = row["shape"]
        lines.append(f"{row['objective']:<9} {row['sigma']:>5g} {m:>3}x{n:<3} {as_fit(row['fit'])}")
    return lines


def mlp_lines(record: dict) -> list[str]:
    lines = []
    for run in record["data"]["mlp"].values():
        for r, e, s in zip(run["rank"], run["error"], run["se"]):
            lines.append(f"σ = {run['sigma']:g}, r = {r:>3}: relative error {e:.3g} ± {s:.2g}")
        lines.append(f"σ = {run['sigma']:g}: MLP slope {as_fit(run['fit'])} ({run['samples']} draws per rank)")
    return lines


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def plot_error_vs_rank(axes, record: dict) -> None:
    """One panel per closed-form objective: exact curves (every sigma, shape) with the Monte
    Carlo overlay at the claim's setting and the O(1/sqrt(r)) line."""
    cfg = record["config"]
    shapes = [list(s) for s in cfg["shapes"]]
    for ax, name in zip(axes, cfg["objectives"]):
        for row in record["data"]["exact"]:
            if row["objective"] != name:
                continue
            fit = as_fit(row["fit"])
            ax.plot(row["rank"], row["error"], "-" if list(row["shape"]) == shapes[0] else "--",
                    label=f"σ={row['sigma']:g}, {row['shape'][0]}x{row['shape'][1]}: {fit.slope:.3f}")
        ov = record["data"]["overlay"][name]
        ax.errorbar(ov["rank"], ov["error"], yerr=2 * np.asarray(ov["se"]), fmt="ko", ms=4,
                    label="Monte Carlo (±2 SE)")
        top = max(row["error"][0] for row in record["data"]["exact"] if row["objective"] == name)
        ax.plot(cfg["ranks"], theory.sqrt_rate_line(cfg["ranks"], top), "k:", label="O(1/√r)")
        ax.set(xscale="log", yscale="log", xlabel="rank r", title=f"{name}: error falls as 1/r")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("relative error ‖g_r − g_∞‖_F / ‖g_∞‖_F")


def plot_mlp(ax, record: dict, label: str = "") -> None:
    """Monte Carlo error of the MLP loss against rank, one colour per sigma, with the fitted lines."""
    for i, run in enumerate(record["data"]["mlp"].values()):
        r = np.asarray(run["rank"], float)
        fit = as_fit(run["fit"])
        ax.errorbar(r, run["error"], yerr=2 * np.asarray(run["se"]), fmt="o", color=f"C{i}",
                    label=f"{label}σ = {run['sigma']:g} (±2 SE)")
        ax.plot(r, np.exp(fit.intercept) * r**fit.slope, "-", color=f"C{i}", label=f"slope {fit}")
    first, _ = mlp_result(record)
    ax.plot(first["rank"], theory.sqrt_rate_line(first["rank"], first["error"][0]), "k:", label="O(1/√r)")
    ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel="relative error ‖g_r − g_∞‖_F / ‖g_∞‖_F")
    ax.legend(fontsize=7)


def plot_cosine(ax, record: dict) -> None:
    for row in record["data"]["cosine"]:
        ax.plot(row["rank"], row["error"], "o-", ms=3,
                label=f"σ = {row['sigma']:g}: tail slope {as_fit(row['tail_fit']).slope:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel="relative error (exact)",
           title="cosine: 1/r in general, 1/r² when ωσ = 2")
    ax.legend()


def plot_population(axes, record: dict) -> None:
    """Relative RMSE against population per rank (dotted: the rank bias), and the bias share."""
    import seaborn as sns

    d = record["data"]["population"]
    pops = d["population"]
    for i, r in enumerate(d["rank"]):
        axes[0].loglog(pops, d["rel_rmse"][i], "o-", label=f"r = {r}")
        axes[0].axhline(np.sqrt(d["bias2"][i]) / d["g_inf_norm"], color=f"C{i}", ls=":", lw=1)
    axes[0].set(xlabel="population N", ylabel="relative RMSE of the N-member estimate",
                title="noise falls as 1/√N until the rank bias (dotted) is reached")
    axes[0].legend()
    sns.heatmap(np.asarray(d["bias_share"]), ax=axes[1], vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f",
                xticklabels=pops, yticklabels=d["rank"], annot_kws={"fontsize": 7})
    axes[1].set(xlabel="population N", ylabel="rank r", title="share of squared error due to rank")


def population_lines(record: dict) -> list[str]:
    d = record["data"]["population"]
    c = d["mse_check"]
    lines = [f"r = {c['rank']}, N = {c['population']}: predicted MSE {c['predicted']:.4g}, "
             f"measured over repeated EGGROLL steps {c['measured']:.4g} ± {c['se']:.2g}"]
    share = np.asarray(d["bias_share"])
    col = list(d["population"]).index(128) if 128 in d["population"] else 0
    for i, r in enumerate(d["rank"]):
        cross = np.interp(0.5, share[i], d["population"]) if share[i, -1] > 0.5 else float("nan")
        lines.append(f"r = {r}: bias share at N = {d['population'][col]}: {share[i, col]:.3g}; "
                     f"rank dominates beyond N ≈ {cross:.3g}")
    return lines


def plot_update_rank(ax, record: dict) -> None:
    """Measured rank of the averaged update against the population (log axis, ticked at the
    populations measured) for each perturbation rank, with min(N r, m, n) as lines."""
    from matplotlib.ticker import NullFormatter

    rows = record["data"]["update_rank"]["figure"]
    for row in rows:
        ax.plot(row["population"], row["measured"], "o", label=f"r = {row['rank']} (measured)")
        ax.plot(row["population"], row["expected"], "-", color=ax.lines[-1].get_color(), alpha=0.5)
    m, n = record["config"]["figure_shape"]
    ax.set(xscale="log", xlabel="population N (no antithetic pairs)", ylabel="rank of the update",
           title=f"rank-r perturbations, full-rank update: min(N r, {m}, {n})")
    populations = sorted({p for row in rows for p in row["population"]})
    ax.set_xticks(populations, [str(p) for p in populations])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend()


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    figs = {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    plot_error_vs_rank(axes, record)
    fig.suptitle("Expected low-rank ES gradient vs Gaussian ES gradient: slope −1, not −1/2")
    fig.tight_layout()
    figs["error_vs_rank"] = fig
    fig, ax = plt.subplots()
    plot_mlp(ax, record)
    _, fit = mlp_result(record)
    ax.set_title(f"MLP loss ({record['scale']} scale): slope {fit.slope:.2f}, close to −1")
    figs["mlp_error_vs_rank"] = fig
    fig, ax = plt.subplots()
    plot_cosine(ax, record)
    figs["cosine_breakdown"] = fig
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    plot_population(axes, record)
    fig.tight_layout()
    figs["bias_variance"] = fig
    fig, ax = plt.subplots()
    plot_update_rank(ax, record)
    figs["update_rank"] = fig
    return figs


def explore(objective: str = "quartic", sigma: float = 0.3, m: int = 8, n: int = 8, r_min: int = 1,
            r_max: int = 256, population: int = 256, *, samples: int = 2**11, seed: int = 0):
    """Widget view: relative error of the expected low-rank gradient against rank (exact, or
    Monte Carlo for ``mlp``) with its fitted slope, and the finite-population relative RMSE
    split into bias and variance at ``population`` members (closed-form objectives).
    Returns the matplotlib figure and a short summary of the result (the fitted slope and the
    error at ``r_min``; for closed forms, which term dominates at ``r_min``)."""
    import matplotlib.pyplot as plt

    if not (isinstance(r_min, int) and isinstance(r_max, int) and 1 <= r_min < r_max):
        raise ValueError(f"rank range must satisfy 1 <= r_min < r_max, got [{r_min}, {r_max}]")
    problem = theory.make_problem(objective, m, n, seed=seed)
    ranks = np.unique(np.geomspace(r_min, r_max, 7).round().astype(int))
    summary = []
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
    ax = axes[0]
    if objective == "quadratic":
        ax.text(0.5, 0.5, "quadratic: g_r = g_inf exactly at every r", ha="center", transform=ax.transAxes)
        summary.append("g_r = g_inf at every rank")
    else:
        method = "exact" if objective in theory.CLOSED_FORM else "mc"
        curve = theory.error_curve(problem, sigma, ranks, method=method, samples=samples, seed=seed)
        ax.errorbar(curve["rank"], curve["error"], yerr=curve["se"], fmt="o-", label=method)
        summary.append(f"error {curve['error'][0]:.3g} at r = {ranks[0]}")
        if (curve["error"] > 0).sum() >= 3:
            fit = theory.fit_curve(curve)
            ax.set_title(f"{objective}, σ={sigma:g}, {m}x{n}: slope {fit}")
            summary.append(f"slope {fit.slope:.3f}")
        ax.plot(ranks, theory.sqrt_rate_line(ranks, curve["error"][0]), "k:", label="O(1/√r)")
        ax.set(xscale="log", yscale="log")
        ax.legend()
    ax.set(xlabel="rank r", ylabel="‖g_r − g_∞‖_F / ‖g_∞‖_F")
    ax = axes[1]
    if objective in theory.CLOSED_FORM and population >= 2 and population % 2 == 0:
        small = np.unique(np.concatenate([ranks[ranks <= min(m, n)], [min(m, n)]]))
        split = theory.population_split(problem, sigma, small, [population], samples=samples, seed=seed)
        norm = np.linalg.norm(theory.expected_gradient(problem, sigma, None))
        ax.loglog(small, np.sqrt(split["bias2"]) / norm + 1e-300, "o-", label="bias (rank)")
        ax.loglog(small, np.sqrt(split["variance"][:, 0]) / norm, "s-", label=f"noise (N={population})")
        ax.loglog(small, split["rel_rmse"][:, 0], "k--", label="total RMSE")
        summary.append(f"relative RMSE {split['rel_rmse'][0, 0]:.3g} at r = {small[0]} with N = {population}")
        ax.set_title("finite population: which term dominates")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "bias/variance split needs a closed-form objective\nand an even population",
                ha="center", transform=ax.transAxes)
    ax.set(xlabel="rank r", ylabel="relative error of the N-member estimate")
    fig.tight_layout()
    return fig, ", ".join(summary)


EXPERIMENT = register(Experiment(
    name="theory", notebook="02_theory_convergence",
    summary="How fast does the expected low-rank ES gradient approach the Gaussian one as the rank grows?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))
