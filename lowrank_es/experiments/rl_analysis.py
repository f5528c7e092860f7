"""Scores, tables and figures of the ``rl`` experiment, read from its results record.

Final returns are normalised per environment to ``(R - random) / (best - random)``, with
``random`` the uniform random policy's return and ``best`` the higher of the two ES methods'
mean final returns (so the margin does not depend on which other baselines are shown).
Aggregates are interquartile means with stratified bootstrap intervals (Agarwal et al. 2021).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowrank_es import stats

PARITY_MARGIN = 0.10  # of the random-to-best return range
PARITY_ALPHA = 0.05
A, B = "EGGROLL r=1", "OpenES"


def arr(x: Any) -> np.ndarray:
    """A results-file list (``None`` for a blank) as a float array (NaN for a blank)."""
    return np.array(x, dtype=float)


def envs(record: dict) -> list[str]:
    return list(record["data"]["runs"])


def finals(record: dict) -> dict[str, dict[str, np.ndarray]]:
    """``{env: {method: (seeds,) final return}}`` of the ES runs."""
    return {env: {m: arr(run["final_return"]) for m, run in by.items()} for env, by in record["data"]["runs"].items()}


def best_return(record: dict, env: str) -> float:
    """The higher of the ES methods' mean final returns on ``env``."""
    return max(float(np.mean(v)) for v in finals(record)[env].values())


def normalise(record: dict, env: str, returns: Any) -> np.ndarray:
    return stats.normalise(arr(returns), record["data"]["random_return"][env], best_return(record, env))


def normalised_scores(record: dict) -> dict[str, np.ndarray]:
    """``{method: (seeds, envs)}`` normalised final returns (for IQM and profiles)."""
    fin = finals(record)
    return {m: np.column_stack([normalise(record, e, fin[e][m]) for e in fin]) for m in next(iter(fin.values()))}


def parity_table(record: dict, margin: float = PARITY_MARGIN, alpha: float = PARITY_ALPHA, a: str = A,
                 b: str = B) -> dict[str, dict[str, Any]]:
    """Per environment: the one-sided Welch non-inferiority test of ``a`` against ``b`` on
    normalised final returns (margin in normalised units), with both methods' means and IQMs."""
    out = {}
    for env, by in finals(record).items():
        if a not in by or b not in by:
            raise ValueError(f"runs of {env!r} must contain methods {a!r} and {b!r}, got {sorted(by)}")
        na, nb = normalise(record, env, by[a]), normalise(record, env, by[b])
        res = stats.non_inferiority(na, nb, margin, alpha)
        out[env] = {**res, "best": best_return(record, env), "random": float(record["data"]["random_return"][env]),
                    "mean_a": float(by[a].mean()), "mean_b": float(by[b].mean()),
                    "iqm_a": stats.iqm(by[a]), "iqm_b": stats.iqm(by[b]), "n_a": len(na), "n_b": len(nb)}
    return out


def power_table(record: dict, margin: float = PARITY_MARGIN, alpha: float = PARITY_ALPHA, power: float = 0.8,
                a: str = A, b: str = B) -> dict[str, dict[str, float]]:
    """Per environment, from the record's seed standard deviations of the normalised final
    returns: the power the per-environment non-inferiority test had with the seeds run when the
    true difference is 0, and the seeds per method that would give it ``power``."""
    out = {}
    for env, by in finals(record).items():
        na, nb = normalise(record, env, by[a]), normalise(record, env, by[b])
        sa, sb = float(na.std(ddof=1)), float(nb.std(ddof=1))
        n = min(na.size, nb.size)
        out[env] = {"sd_a": sa, "sd_b": sb, "seeds": n,
                    "power": stats.non_inferiority_power(sa, sb, n, margin, alpha),
                    "seeds_needed": stats.seeds_for_power(sa, sb, margin, alpha, power)}
    return out


#: PPO is drawn and quoted as a reference only where it learned: its final mean return at least
#: this fraction of the random-to-best (ES) range above the random policy.
PPO_LEARNED = 0.5


def ppo_learned(record: dict, env: str) -> bool:
    """Whether the record's PPO run on ``env`` reached :data:`PPO_LEARNED` of the random-to-best
    range (False: it is shown flagged, not as a reference)."""
    p = record["data"].get("ppo", {}).get(env)
    if p is None:
        return False
    return bool(normalise(record, env, [np.mean(arr(p["final_return"]))])[0] >= PPO_LEARNED)


def aggregate(record: dict, reps: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """IQM of the normalised final returns over all (seed, environment) with its 95% stratified
    bootstrap interval, per method, and for the difference ``A - B``."""
    norm = normalised_scores(record)
    out = {m: stats.stratified_bootstrap_ci(x, stats.iqm, reps=reps, seed=seed) for m, x in norm.items()}
    out[f"{A} - {B}"] = stats.stratified_bootstrap_difference_ci(norm[A], norm[B], stats.iqm, reps=reps, seed=seed)
    return out


def seed_curves(run: dict, grid: np.ndarray) -> np.ndarray:
    """Each seed's evaluation return interpolated onto an environment-step ``grid``, starting
    from its initial policy at 0 steps. -> (seeds, len(grid))"""
    steps, ret = arr(run["env_steps"]), arr(run["eval_return"])
    out = []
    for s in range(ret.shape[0]):
        ok = np.isfinite(ret[s])
        x = np.concatenate([[0.0], steps[s, ok]])
        y = np.concatenate([[arr(run["initial_return"])[s]], ret[s, ok]])
        out.append(np.interp(grid, x, y))
    return np.stack(out)


def still_moving(record: dict, fraction: float = 0.25) -> dict[str, dict[str, float]]:
    """Change of the seed-mean evaluation return over the last ``fraction`` of the steps the
    seeds used (their median: the budget, less part of a generation), in normalised units
    (e.g. 0.1 = still gaining a tenth of the random-to-best range)."""
    out = {}
    for env, by in record["data"]["runs"].items():
        out[env] = {}
        for m, run in by.items():
            used = float(np.median(run["final_steps"]))
            c = seed_curves(run, np.array([(1 - fraction) * used, used])).mean(0)
            out[env][m] = float(np.diff(normalise(record, env, c))[0])
    return out


def steps_used(record: dict) -> dict[str, dict[str, tuple[int, int]]]:
    """``{env: {method: (fewest, most)}}`` environment steps a seed trained on (budget: at most)."""
    return {env: {m: (int(np.min(run["final_steps"])), int(np.max(run["final_steps"]))) for m, run in by.items()}
            for env, by in record["data"]["runs"].items()}


def summary_lines(record: dict) -> list[str]:
    """One line per environment and method: final return (mean, IQM), steps used, generations."""
    lines = [f"{'environment':22s} {'method':12s} {'random':>8s} {'initial':>8s} {'final mean':>10s} {'IQM':>8s} "
             f"{'steps used / seed':>21s} {'generations':>11s}"]
    for env, by in record["data"]["runs"].items():
        for m, run in by.items():
            f, lo_hi = arr(run["final_return"]), steps_used(record)[env][m]
            gens = arr(run["generations_used"])
            lines.append(f"{env:22s} {m:12s} {record['data']['random_return'][env]:8.1f} "
                         f"{arr(run['initial_return']).mean():8.1f} {f.mean():10.1f} {stats.iqm(f):8.1f} "
                         f"{lo_hi[0]:>10.3g}-{lo_hi[1]:<10.3g} {gens.min():>5.0f}-{gens.max():<5.0f}")
        if env in record["data"].get("ppo", {}):
            p = record["data"]["ppo"][env]
            f = arr(p["final_return"])
            lines.append(f"{env:22s} {'PPO':12s} {'':8s} {'':8s} {f.mean():10.1f} {stats.iqm(f):8.1f} "
                         f"{p['env_steps'][-1]:>10.3g}{'':11s} {'':>11s}"
                         + ("" if ppo_learned(record, env) else
                            f"  did not learn (< {PPO_LEARNED:g} of the random-to-best range): not a reference"))
            if p["env_steps"][-1] > run["env_steps_budget"]:
                at = ppo_at(record, env, run["env_steps_budget"])
                lines.append(f"{'':22s} {'PPO at ES budget':16s} {'':4s} {'':8s} {at.mean():10.1f} {stats.iqm(at):8.1f}")
    return lines


def progress_statement(record: dict, env: str) -> str:
    """Each ES method's seed-mean return of the mean policy, initial -> final, on ``env`` (a
    figure title computed from the record, so it says what the run shows)."""
    runs = record["data"]["runs"][env]
    return ", ".join(f"{m} {arr(r['initial_return']).mean():.0f} -> {arr(r['final_return']).mean():.0f}"
                     for m, r in runs.items())


def ppo_at(record: dict, env: str, steps: float) -> np.ndarray:
    """PPO's per-seed return at the last logged update within ``steps`` environment steps."""
    p = record["data"]["ppo"][env]
    i = int(np.searchsorted(arr(p["env_steps"]), steps, side="right")) - 1
    return arr(p["mean_return"])[:, max(i, 0)]


def power_lines(record: dict, power: float = 0.8) -> list[str]:
    """:func:`power_table` as text."""
    lines = [f"{'environment':22s} {'sd ' + A:>15s} {'sd ' + B:>10s} {'seeds':>6s} {'power now':>9s} "
             f"{'seeds for ' + format(power, '.0%') + ' power':>22s}"]
    for env, r in power_table(record, power=power).items():
        lines.append(f"{env:22s} {r['sd_a']:15.3f} {r['sd_b']:10.3f} {r['seeds']:6d} {r['power']:9.2f} "
                     f"{r['seeds_needed']:22d}")
    return lines


def parity_lines(record: dict) -> list[str]:
    moving = still_moving(record)
    lines = [f"{'environment':22s} {'diff':>7s} {'lower 95%':>9s} {'p':>7s}  {'non-inferior':12s} "
             f"{'last-quarter gain: ' + A:>30s} {B:>8s}"]
    for env, r in parity_table(record).items():
        lines.append(f"{env:22s} {r['diff']:7.3f} {r['lower']:9.3f} {r['p_value']:7.3f}  {str(r['non_inferior']):12s} "
                     f"{moving[env][A]:30.3f} {moving[env][B]:8.3f}")
    return lines


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def plot_env_curves(ax, record: dict, env: str, x: str = "env_steps") -> None:
    """Seed-mean evaluation return (± 1 s.e. band) of each method on ``env`` against environment
    steps (``x="env_steps"``) or wall-clock seconds of the generations (``x="seconds"``)."""
    for m, run in record["data"]["runs"][env].items():
        budget = run["env_steps_budget"]
        if x == "env_steps":
            grid = np.linspace(0, budget, 101)
            ys = seed_curves(run, grid)
        else:
            steps = arr(run["env_steps"])
            grid = arr(run["seconds"])
            ys = seed_curves(run, steps.mean(0))
        mu, se = ys.mean(0), ys.std(0, ddof=1) / np.sqrt(len(ys))
        ax.plot(grid, mu, label=f"{m} ({len(ys)} seeds)")
        ax.fill_between(grid, mu - se, mu + se, alpha=0.2)
    p = record["data"].get("ppo", {}).get(env)
    if p is not None:
        # Up to the ES budget (PPO's CartPole run goes on to 500k steps for its own claim).
        keep = arr(p["env_steps"]) <= max(run["env_steps_budget"] for run in record["data"]["runs"][env].values())
        xs = (arr(p["env_steps"]) if x == "env_steps" else arr(p["seconds"]))[keep]
        ys = arr(p["mean_return"])[:, keep]
        with np.errstate(invalid="ignore"):
            mu, se = np.nanmean(ys, 0), np.nanstd(ys, 0) / np.sqrt(len(ys))
        learned = ppo_learned(record, env)
        ax.plot(xs, mu, color="0.4", ls="-" if learned else ":",
                label=f"PPO ({len(ys)} seeds)" + ("" if learned else ": did not learn, not a reference"))
        ax.fill_between(xs, mu - se, mu + se, color="0.4", alpha=0.15)
        if not learned:  # said on the panel itself: figures carry one legend, on their first panel
            ax.text(0.98, 0.03, "PPO (dotted): did not learn,\nnot a reference", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color="0.3")
    random = record["data"]["random_return"].get(env)
    if random is not None and np.isfinite(random):
        ax.axhline(random, color="k", ls=":", lw=1, label="random policy")
    ax.set_xlabel({"env_steps": "environment steps per seed", "seconds": "wall-clock of the generations (s)"}[x])
    if x == "env_steps":  # 50k, 1M: short tick labels, no offset text
        from matplotlib.ticker import EngFormatter, MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_ylabel("return of the mean policy")
    ax.set_title(env)


def learning_curves_figure(record: dict):
    import matplotlib.pyplot as plt

    names = envs(record)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.6, 3.4), squeeze=False)
    for ax, env in zip(axes[0], names):
        plot_env_curves(ax, record, env)
    axes[0, 0].legend(fontsize=7)
    table = parity_table(record)
    k = sum(r["non_inferior"] for r in table.values())
    fig.suptitle(f"{record['scale']} scale, equal environment steps: EGGROLL r=1 non-inferior to OpenES "
                 f"on {k} of {len(table)} environment(s)")
    fig.tight_layout()
    return fig


def aggregate_figure(record: dict, taus: np.ndarray | None = None):
    """IQM of normalised final returns with 95% stratified bootstrap intervals, and the
    performance profiles (fraction of runs above each normalised score)."""
    import matplotlib.pyplot as plt

    taus = np.linspace(-0.2, 1.2, 71) if taus is None else taus
    agg = aggregate(record)
    norm = normalised_scores(record)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, m in enumerate(norm):
        p, lo, hi = agg[m]
        a1.errorbar([p], [k], xerr=[[p - lo], [hi - p]], fmt="o", capsize=4)
        prof, plo, phi = stats.performance_profile_ci(norm[m], taus, reps=500, seed=0)
        a2.plot(taus, prof, label=m)
        a2.fill_between(taus, plo, phi, alpha=0.2)
    a1.set_yticks(range(len(norm)), list(norm))
    a1.set_xlabel("IQM of normalised final return (95% CI)")
    a1.set_title("aggregate over environments")
    a2.set(xlabel="normalised score τ", ylabel="fraction of runs with score > τ", title="performance profiles")
    a2.legend(fontsize=8)
    d, lo, hi = agg[f"{A} - {B}"]
    fig.suptitle(f"{record['scale']} scale: IQM difference EGGROLL r=1 − OpenES = {d:.3f} [{lo:.3f}, {hi:.3f}]")
    fig.tight_layout()
    return fig
