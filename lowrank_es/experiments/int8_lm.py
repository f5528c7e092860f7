"""Experiment ``int8_lm`` (notebook 04): an int8 minGRU language model pre-trained by integer
EGGROLL with an integer fitness, against its float twin trained by float EGGROLL and by backprop,
on tiny-shakespeare characters, with the exact unigram and bigram baselines."""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from lowrank_es.experiments import Experiment, register
from lowrank_es.tasks import char_lm, ngram
from lowrank_es.tasks.text_data import load_corpus

Config = char_lm.LMConfig

# nano-egg's recipe (run.py, sweeps/wandb_sweep.yaml): rank 1, a perturbation of about 1 LSB
# (table std 8, shift 6: 64 / 64; nano-egg's std 16 with shift 8 is the same), its annealed vote
# threshold (alpha = 4 over the run: z from 0 to 1.86), 100 characters per member per generation
# from contiguous streams with the recurrent state carried, population 1,024 (its default). The
# float twin's sigma is the same 1/16 of its weights' standard deviation (1 / (16 sqrt(hidden))).
# The reference's width, 32, and its 2,000 generations are what four methods x 3 seeds fit in
# about 30 minutes on 2 idle cores (single-seed trials: width 16 ended at 3.61, 32 at 3.57).
SCALES = {
    "quick": Config(hidden=16, carry=True, segment=32, population=128, rank=1, sigma_shift=6, alpha=4.0,
                    sigma=0.016, generations=400, eval_every=50),
    "reference": Config(hidden=32, carry=True, segment=100, population=1024, rank=1, sigma_shift=6, alpha=4.0,
                        sigma=0.011, generations=2000, eval_every=250, eval_windows=64),
}
SEEDS = {"quick": 2, "reference": 3}
SAMPLE_LENGTH = 160
COLORS = {"int8_es": "C3", "int8_null": "0.5", "float_es": "C0", "backprop": "C2"}


def baselines() -> dict:
    """Exact n-gram bits/char of the validation split (counted on the training split)."""
    c = load_corpus("char")
    V = c.vocab.size
    return {"uniform": float(np.log2(V)), "unigram": ngram.unigram_bits(c.train, c.valid, V),
            "bigram": ngram.bigram_bits(c.train, c.valid, V),
            "bigram_kn": ngram.bigram_bits(c.train, c.valid, V, "kneser_ney"),
            # nano-egg's own bar: the bigram's conditional entropy fitted on the validation split itself
            "bigram_in_sample": ngram.bigram_entropy_in_sample(c.valid, V),
            "vocab": V, "train_chars": len(c.train), "valid_chars": len(c.valid)}


def _flat_int(tree) -> list[int]:
    return np.concatenate([np.asarray(x, np.int32).ravel() for x in jax.tree_util.tree_leaves(tree)]).tolist()


def train_method(cfg: Config, method: str, seeds: tuple[int, ...]) -> dict:
    """One method over ``seeds``: curves, wall time, seed 0's samples (int8: at 0, about 1/4 and the
    end of the run) and, for int8 EGGROLL, every parameter of seed 0 at the start and the end."""
    c = load_corpus("char")
    quarter = max(cfg.eval_every, round(cfg.generations / 4 / cfg.eval_every) * cfg.eval_every)  # an evaluation point
    marks = (0, quarter, cfg.generations) if method == "int8_es" else (cfg.generations,)
    integer = method in char_lm.INT8_METHODS
    h = char_lm.train(method, cfg, seeds, c.train, c.valid, c.vocab.size, checkpoint_at=marks)
    prompt = c.vocab.encode("\n")
    samples = {}
    for g in marks:
        p = char_lm.unstack(h["checkpoints"][g], 0)
        toks = char_lm.sample(p, jax.random.key(1), SAMPLE_LENGTH, prompt, integer=integer)
        samples[str(g)] = c.vocab.decode(toks)
    out = {"generations": h["generations"], "wall": h["wall"], "cpu": h["cpu"], "val_bpc": h["val_bpc"],
           "num_params": h["num_params"], "samples": samples,
           "load_avg": list(os.getloadavg())}  # 1, 5, 15 min at the end: > cpu_count means a shared machine
    if integer:
        out["moved_fraction"] = np.asarray(h["moved_fraction"]).round(6).tolist()
    if method == "int8_es":
        out["weights_init"] = _flat_int(char_lm.unstack(h["checkpoints"][0], 0))
        out["weights_final"] = _flat_int(char_lm.unstack(h["params"], 0))
    return out


def jobs(cfg: Config, seeds: tuple[int, ...]) -> dict:
    out = {"ngram": baselines}
    out.update({m: functools.partial(train_method, cfg, m, seeds) for m in cfg.methods})
    return out


def combine(cfg: Config, seeds: tuple[int, ...], parts: dict) -> dict:
    return {"ngram": parts["ngram"], "runs": {m: parts[m] for m in cfg.methods}}


# ---------------------------------------------------------------------------
# Reading a record
# ---------------------------------------------------------------------------


def final_bpc(record: dict, method: str) -> np.ndarray:
    """Final validation bits/char of every seed of ``method``. -> (S,)"""
    return np.asarray(record["data"]["runs"][method]["val_bpc"])[:, -1]


def summary_lines(record: dict) -> list[str]:
    """One line per method: final bits/char mean and per seed, and the training wall time."""
    cfg = record["config"]
    lines = []
    for m, run in record["data"]["runs"].items():
        f = final_bpc(record, m)
        lines.append(f"{char_lm.LABELS[m]:16s} final validation bits/char {f.mean():.3f} (seeds "
                     f"{', '.join(f'{x:.3f}' for x in f)}) after {cfg['generations']} steps")
    b = record["data"]["ngram"]
    lines.append(f"{'bigram (add-one)':16s} {b['bigram']:.3f} bits/char; unigram {b['unigram']:.3f}")
    return lines


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def plot_curves(axes, record: dict, zoom: bool = False) -> None:
    """Validation bits/char against generations (``axes[0]``) and training wall-clock
    (``axes[1]``, log scale): mean over seeds with the min-max band, and the n-gram lines.

    ``zoom``: the y-range covers every learning method after the first evaluation and the bigram
    (the untrained start, the same for all, and the shuffled-fitness null run off the top), and ``axes[0]`` marks the final gap
    of int8 EGGROLL to the bigram."""
    runs = record["data"]["runs"]
    methods = [m for m in COLORS if m in runs]
    for m in methods:
        run = runs[m]
        bpc = np.asarray(run["val_bpc"])
        mean, lo, hi = bpc.mean(0), bpc.min(0), bpc.max(0)
        # wall-clock on a log axis: drop the evaluation at t = 0 (the untrained model)
        for ax, x, sl in zip(axes, (run["generations"], run["wall"]), (slice(None), slice(1, None))):
            x = np.asarray(x)
            ax.plot(x[sl], mean[sl], "-o", ms=3, color=COLORS[m], label=f"{char_lm.LABELS[m]} ({len(bpc)} seeds)")
            ax.fill_between(x[sl], lo[sl], hi[sl], color=COLORS[m], alpha=0.2)
    b = record["data"]["ngram"]
    if zoom:  # the null control's runs climb away from the start: they leave the range at the top
        trained = [np.asarray(runs[m]["val_bpc"])[:, 1:] for m in methods if m != "int8_null"]
        low, high = min(min(t.min() for t in trained), b["bigram"]), max(max(t.max() for t in trained), b["bigram"])
        pad = 0.05 * (high - low)
        bottom, top = low - pad, high + pad
    else:
        bottom, top = None, min(7.0, max(np.max(runs[m]["val_bpc"]) for m in methods) + 0.1)
    for ax in axes:
        off = " (above the range)" if b["unigram"] > top else ""
        ax.axhline(b["unigram"], color="0.4", ls=":", label=f"unigram {b['unigram']:.3f}{off}")
        ax.axhline(b["bigram"], color="k", ls="--", label=f"bigram (add-one) {b['bigram']:.3f}")
        ax.set_ylim(bottom=bottom, top=top)
        ax.set_ylabel("validation bits / char")
    if zoom and "int8_es" in runs:
        run = runs["int8_es"]
        x, end = run["generations"][-1], float(np.asarray(run["val_bpc"])[:, -1].mean())
        axes[0].annotate("", xy=(x, b["bigram"]), xytext=(x, end),
                         arrowprops={"arrowstyle": "<->", "color": COLORS["int8_es"]})
        axes[0].annotate(f"int8 EGGROLL − bigram: {end - b['bigram']:+.3f} bits/char", (x, end), xytext=(0, 24),
                         textcoords="offset points", ha="right", va="bottom", fontsize=9, color=COLORS["int8_es"])
    axes[0].set_xlabel("generation (backprop: step)")
    axes[1].set_xlabel("training wall-clock, all seeds together (s)")
    axes[1].set_xscale("log")
    # zoomed, the step panel's upper right holds the gap's label: the legend goes to the wall-clock panel
    (axes[1] if zoom else axes[0]).legend(fontsize=8, loc="upper left" if zoom else "best")


def plot_weights(ax, record: dict) -> None:
    """Histogram of seed 0's int8 parameters before and after integer EGGROLL (log counts)."""
    run = record["data"]["runs"]["int8_es"]
    bins = np.arange(-128, 129, 4)
    w = np.asarray(run["weights_final"])
    ax.hist(run["weights_init"], bins=bins, alpha=0.5, color="0.5", label="initial")
    ax.hist(w, bins=bins, alpha=0.7, color="C3", label="after integer EGGROLL")
    ax.set_xlabel("int8 parameter value")
    ax.set_ylabel("count")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"{record['scale']} run: {np.mean(np.abs(w) == 127):.2%} of the int8 parameters saturated at ±127")


def moved_curves(record: dict, window: int = 25) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per integer method: generations and the fraction of weights that moved, averaged over seeds
    and over ``window`` generations (a running mean). -> {method: (x, y)}"""
    out = {}
    for m in char_lm.INT8_METHODS:
        run = record["data"]["runs"].get(m)
        if run is None or "moved_fraction" not in run:
            continue
        f = np.asarray(run["moved_fraction"]).mean(0)
        w = max(1, min(window, len(f)))
        y = np.convolve(f, np.ones(w) / w, mode="valid")
        out[m] = (np.arange(len(y)) + w, y)
    return out


def plot_moved(ax, record: dict) -> None:
    """Fraction of the int8 weights that move per generation: int8 EGGROLL against its
    shuffled-fitness null, with the threshold's tail mass (the fraction expected to move under
    random votes) where a schedule was used."""
    curves = moved_curves(record)
    for m, (x, y) in curves.items():
        ax.plot(x, y, color=COLORS[m], label=char_lm.LABELS[m])
    cfg = record["config"]
    if cfg.get("alpha"):
        from lowrank_es.es.integer import ThresholdSchedule

        g = np.arange(cfg["generations"] + 1)
        ax.plot(g, ThresholdSchedule(cfg["alpha"], cfg["generations"], cfg["generations"]).tail_mass(g), "k:",
                lw=1, label="tail mass of the threshold (random votes, Gaussian limit)")
    ax.set_yscale("log")
    ax.set_xlabel("generation")
    ax.set_ylabel("fraction of weights moved")
    ax.legend(fontsize=8)
    if {"int8_es", "int8_null"} <= set(curves):
        a, b = curves["int8_es"][1], curves["int8_null"][1]
        n = max(1, len(a) // 4)
        ratio = a[-n:].mean() / b[-n:].mean()
        ax.set_title(f"{record['scale']}, last quarter of the run: {a[-n:].mean():.2%} of weights move per generation,\n"
                     f"{ratio:.2f}x the shuffled-fitness null's {b[-n:].mean():.2%}", fontsize=9)


def plots(record: dict) -> dict:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    plot_curves(axes, record)
    gap = final_bpc(record, "int8_es").mean() - record["data"]["ngram"]["bigram"]
    fig.suptitle(f"{record['scale']} scale: int8 EGGROLL ends {abs(gap):.2f} bits/char "
                 f"{'below' if gap < 0 else 'above'} the bigram")
    fig.tight_layout()
    fig2, ax = plt.subplots(figsize=(7, 3.5))
    plot_weights(ax, record)
    fig2.tight_layout()
    out = {"curves": fig, "weights": fig2}
    if moved_curves(record):
        fig3, ax = plt.subplots(figsize=(7, 3.5))
        plot_moved(ax, record)
        fig3.tight_layout()
        out["moved"] = fig3
    return out


EXPERIMENT = register(Experiment(
    name="int8_lm", notebook="04_int8_language_model",
    summary="Can integer EGGROLL, fitness included, pre-train an int8 recurrent LM below the bigram baseline?",
    scales=SCALES, seeds=SEEDS, jobs=jobs, combine=combine, plots=plots,
))
