"""``benchmarks/RESULTS.md``, written from the results records (never edited by hand)."""

from __future__ import annotations

from typing import Any

from lowrank_es.throughput.summary import find
from lowrank_es.throughput.tables import claims_table, markdown_tables, profile_table

COMMAND = "python -m benchmarks.throughput reference"
GPU_COMMAND = """\
.venv/bin/pip install -U "jax[cuda12]"          # or jax[cuda13], matching the driver
python -m benchmarks.throughput gpu --note "one H200, jax X.Y, CUDA Z"   # writes figures/results/throughput__gpu.json"""

METHOD = """\
Contenders, on the same parameters and the same inputs (8 tokens per member):

* **inference**: plain batched inference of the mean (`noise=None`), one GEMM per layer over
  population × tokens rows;
* **EGGROLL r**: `EGGROLL.map_members` + `linear`: each antithetic pair's factors `A (m×r)`,
  `B (n×r)` are drawn once per generation by the package's default noise generator, shared by the
  pair's two members (opposite signs) and reused for their tokens, never materialised as `m×n`;
* **naive ES**: `materialise(params, noise)` with full-rank noise (`rank=None`, also drawn once
  per pair), i.e. one `W ± σE` per member, batch-multiplied.

Model `mlp`: two square `hidden × hidden` linear layers with tanh between
(`lowrank_es.models.mlp`); model `mingru`: the minGRU character LM (`lowrank_es.models.mingru`, 1
layer, vocabulary 256). Throughput is member-tokens/s = population × tokens / (median wall time of
one population forward). Compilation and one warm-up call are excluded, every call is blocked on,
and a program shorter than `min_round_s` is repeated inside a round. Inference and the EGGROLL
programs run in interleaved rounds, naive ES in rounds of its own afterwards, and in every round
each program first runs untimed for as long as its timed block: freeing naive ES's gigabytes of
weights slowed the next program for up to a second, and programs carry over caches and freed
buffers. Ratios are medians over rounds of paired time ratios, wall clock and (CPU only) process
CPU time (all threads: the work done, which other processes' load inflates less than wall time).
The claimed points are timed apart, inference and rank-1 EGGROLL only, for more rounds, and a claim
is judged on the lower end of the distribution-free 95% interval of the median over those rounds
(order statistics; with fewer than 6 rounds, on the slowest round), not on the median. Memory is
XLA's account of each compiled program (`compiled.memory_analysis()`: arguments + outputs +
temporaries); a program needing more than the budget is compiled but not run ("skipped")."""

NOISE = """\
EGGROLL's default noise generator (`EGGROLL(noise="auto")`, `lowrank_es/es/noise.py`) is a fixed
table of 2^16 Gaussian quantiles read in windows of 16 at hashed offsets with hashed signs: one
32-bit hash per 16 numbers instead of threefry2x32's ~25 integer operations per number and an
inverse erf. Its entries have mean 0, variance 1 and fourth moment 3 exactly and are
uncorrelated, so `E = A Bᵀ/√r` keeps the moments of the Gaussian construction
(`tests/test_noise.py`); `noise="prng"` is `jax.random.normal` from threefry2x32 keys (the streams
of runs made before the table). The profile compares them side by side, with the draws of the other
`jax.random` implementations, `rbg` and `unsafe_rbg`, timed alone: EGGROLL refuses those keys,
because under `jax.vmap` their draws come from one key of the batch (JAX's batching rule for
`rng_bit_generator`), so a member's noise would depend on how members are batched."""

#: What to bear in mind about results measured with older code, keyed by their code version.
CAVEATS = {
    "24caa7f": """\
**Read these CPU numbers with these caveats.** They were measured on 2026-11-26 on an otherwise idle
machine with the code of commit `24caa7f`: each antithetic pair drew its noise with `jax.random.normal`
from threefry2x32 keys (today's default generator is the table, which costs a fraction of threefry,
see the profile notes), every point was timed for 3 rounds, and the claimed points were not timed
apart: `vs_inference` therefore has 3 rounds, fewer than the 9 its claim needs, and
`vs_inference_512` (hidden 512 / population 1024) was not measured. `python -m benchmarks.throughput
reference` re-measures all of it with the current code (about 5 minutes on 2 idle cores).""",
    "b0bb14b": """\
**Read the GPU numbers with these caveats.** They were measured with the code of commit `b0bb14b`:
each member drew its own threefry noise (now a pair draws once, and the default generator is the
table), and all contenders were interleaved in the same rounds (now naive ES has rounds of its own
and every program settles first). XLA's Triton GEMM fusion aborted while compiling the mlp point
hidden 512 / population 1024 (`triton_tiling_propagation.cc`, jax 0.11.2), so the run used
`XLA_FLAGS=--xla_gpu_enable_triton_gemm=false`: every GEMM went to cuBLAS. Matrix products were
float32 at JAX's default precision (TF32 on the tensor cores), not the paper's int8 / bf16.

What the profile said then: at hidden 1024 / population 1024 inference took 0.125 ms, the EGGROLL
forward 0.261 ms, its noise alone 0.141 ms and the forward given its noise 0.210 ms. Both parts
mattered: threefry cost as much as the whole TF32 GEMM, and the factored term (re-reading the
activations for `x B_i`, writing and adding an `(N T) × m` perturbation) is memory-bound next to
a tensor-core GEMM. Rank 2 cost about twice rank 1 (likely: batched GEMMs with tiny inner
dimensions instead of fused reductions; not profiled). What would close the gap: the table
generator and pair-shared draws (both in the code now, not yet measured on a GPU), and a fused
low-rank epilogue (a Pallas / Triton kernel) with lower precision; none measured here.""",
}


def environment_line(record: dict[str, Any]) -> str:
    """Device, cores, processor, jax, flags, generator, code version, date and wall time of a run."""
    env = record["data"].get("environment", {})
    flags, note = env.get("xla_flags"), record["data"].get("note", "").rstrip(".")
    return (f"Device **`{record['device']}`** ({record.get('cpu_count')} CPU cores, {env.get('processor')}, jax "
            f"{record.get('jax_version')}), measured {record.get('date')} with the code of `{record.get('code_version')}`"
            f" in {record['wall_s'] / 60:.1f} min; XLA_FLAGS `{flags}`; EGGROLL noise generator `{env.get('noise')}`. "
            f"{note[:1].upper() + note[1:]}.")


def noise_sentences(data: dict[str, Any]) -> str:
    """What the profile says about the noise, computed from it (one bullet per profiled point)."""
    out = []
    prof = data.get("profile") or []
    for h, n in sorted({(p["hidden"], p["population"]) for p in prof if p["rank"] == 1}, reverse=True):
        part = lambda name, **m: find(prof, status=None, part=name, rank=1, hidden=h, population=n, **m) or {}
        inf, arith = part("inference").get("median_s"), part("arithmetic").get("median_s")
        table, threefry = (part("noise", noise="table").get("median_s"),
                           part("noise", noise="prng", prng_impl="threefry2x32").get("median_s"))
        if not (inf and arith and table and threefry):
            continue
        out.append(f"* hidden {h} / population {n}: the forward given its noise costs {arith / inf:.3g}× inference "
                   f"(the limit the noise adds to); the population's noise alone costs {table / inf:.2%} of "
                   f"inference with the table and {threefry / inf:.2%} with threefry2x32 ({threefry / table:.3g}× the table).")
    return "\n".join(out)


def results_markdown(cpu: dict[str, Any] | None, gpu: dict[str, Any] | None,
                     native: dict[str, Any] | None = None) -> str:
    """The whole of benchmarks/RESULTS.md from the CPU reference, GPU and native-flags records."""
    out = ["# Throughput and memory: EGGROLL vs naive full-rank ES vs plain batched inference", "",
           f"Written by `{COMMAND}` from `figures/results/throughput__reference.json` (CPU) and "
           "`figures/results/throughput__gpu.json` (GPU); do not edit by hand. Plots and a live sweep: "
           "`notebooks/06_throughput.ipynb`.", "", METHOD, "", NOISE, ""]
    if cpu is not None:
        d = cpu["data"]
        out += ["## CPU", "", environment_line(cpu), "", CAVEATS.get(cpu.get("code_version"), ""), "",
                "```", COMMAND, "```", "",
                "### Claims", "", claims_table(d), ""]
        if native is not None:
            flags = cpu["data"]["environment"].get("xla_flags")
            out += [f"The claims are measured with the flags a user of the package gets (`lowrank_es` sets "
                    f"`XLA_FLAGS={flags}` unless XLA_FLAGS is set: portable numerics, no XNNPACK). The same "
                    "claimed points in a second process with `XLA_FLAGS=` (XLA's native CPU kernels), "
                    f"code `{native.get('code_version')}`, {native['data'].get('note', '')}:", "",
                    claims_table(native["data"], ("vs_inference", "vs_inference_512")), ""]
        out += ["### Forward pass (member-tokens/s) and one ES generation with memory", "", markdown_tables(d), "",
                "### Where the time goes", "", profile_table(d), "", noise_sentences(d), ""]
    if gpu is not None:
        d = gpu["data"]
        out += ["## GPU", "", environment_line(gpu), "", d.get("user_note", ""), "",
                CAVEATS.get(gpu.get("code_version"), ""), "", "### Claims", "",
                claims_table(d, ("vs_inference", "vs_naive"), "_gpu", "gpu"), "",
                "### Forward pass (member-tokens/s) and one ES generation with memory", "", markdown_tables(d), "",
                "### Where the time goes", "", profile_table(d), ""]
    out += ["## Re-measuring on a GPU", "", "On a machine with a GPU, from the repository root:", "", "```",
            GPU_COMMAND, "```", "",
            "It runs the `gpu` scale (hidden 256-4096 at population 1024, population 64-8192 at hidden 1024, minGRU,"
            " the claimed points for 15 rounds, profiles of every noise generator), records the code version, and"
            " rewrites this file. A job that crashes the process (an XLA abort) loses only that job: run the same"
            " command with `--resume` to keep the finished ones.", ""]
    text = "\n".join(line.rstrip() for line in out)
    while "\n\n\n" in text:  # an empty note leaves no gap
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"
