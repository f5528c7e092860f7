"""The throughput library (lowrank_es.throughput) against independent references (no timing test).

Plain inference, the EGGROLL population forward and naive materialised ES must compute the same
outputs on the same noise: checked in float64 against per-member weights built in numpy from the
members' noise factors, for the MLP and the minGRU recurrent LM. The ratios, claims, tables and
the experiment's records are checked on synthetic rows with known answers and on a tiny run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es import experiments
from lowrank_es.es.eggroll import EGGROLL, Dense, LowRank
from lowrank_es.experiments import throughput as xp
from lowrank_es.models import mingru
from lowrank_es.paths import REPO_ROOT
from lowrank_es.throughput import programs as tp
from lowrank_es.throughput import report, summary, sweep, tables

TOL = dict(rtol=1e-11, atol=1e-11)


def _np_member_params(params, noise):
    """``W + scale * A @ B.T`` / ``p + scale * eps`` leaf by leaf, in numpy (independent of the layers)."""

    def one(p, n):
        p = np.asarray(p)
        if isinstance(n, LowRank):
            return p + float(n.scale) * np.asarray(n.A) @ np.asarray(n.B).T
        assert isinstance(n, Dense)
        return p + float(n.scale) * np.asarray(n.eps)

    return jax.tree_util.tree_map(one, params, noise, is_leaf=lambda x: isinstance(x, (LowRank, Dense)))


def _np_mlp(layers, x):
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer["W"]).T + np.asarray(layer["b"])
        if i < len(layers) - 1:
            x = np.tanh(x)
    return x


def _setup(model, hidden, population, tokens, rank, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = model.init(k1, hidden, jnp.float64)
    # Non-zero biases so the vector-leaf noise path is exercised too.
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(k3, p.shape, p.dtype) if p.ndim == 1 else p,
                                    params)
    inputs = model.inputs(k2, population, tokens, hidden, jnp.float64)
    es = EGGROLL(sigma=0.3, population=population, rank=rank)
    return params, inputs, es, es.init(jax.random.PRNGKey(seed + 7), params)


def _all_member_noise(es, state):
    """Every member's noise, from one jitted vmap (the reference then slices member i)."""
    stacked = jax.jit(jax.vmap(es.member_noise, (None, 0)))(state, jnp.arange(es.population))
    return [jax.tree_util.tree_map(lambda a: a[i], stacked) for i in range(es.population)]


@pytest.mark.parametrize("rank", [1, 3])
def test_mlp_contenders_match_numpy_reference(rank):
    with jax.enable_x64(True):
        model = tp.mlp_model(depth=2)
        params, x, es, state = _setup(model, hidden=6, population=6, tokens=3, rank=rank)
        inf = np.asarray(jax.jit(tp.inference_forward(model))(params, x))
        egg = np.asarray(jax.jit(tp.eggroll_forward(model, es))(state, x))
        nai = np.asarray(jax.jit(tp.naive_forward(model, es))(state, x))  # same low-rank noise, materialised
        assert inf.shape == egg.shape == nai.shape == (6, 3, 6)
        for i, noise in enumerate(_all_member_noise(es, state)):
            np.testing.assert_allclose(inf[i], _np_mlp(params, np.asarray(x[i])), **TOL)
            ref = _np_mlp(_np_member_params(params, noise), np.asarray(x[i]))
            np.testing.assert_allclose(egg[i], ref, **TOL)
            np.testing.assert_allclose(nai[i], ref, **TOL)
        # Members really are perturbed, and antithetic pairs differently.
        assert np.abs(egg - inf).max() > 1e-3
        assert np.abs(egg[0] - egg[1]).max() > 1e-3


def test_mlp_full_rank_naive_matches_numpy_reference():
    with jax.enable_x64(True):
        model = tp.mlp_model(depth=3)
        params, x, es, state = _setup(model, hidden=5, population=4, tokens=2, rank=None)
        nai = np.asarray(jax.jit(tp.naive_forward(model, es))(state, x))
        for i, noise in enumerate(_all_member_noise(es, state)):
            assert all(isinstance(n, Dense) for n in jax.tree_util.tree_leaves(noise, is_leaf=lambda n: isinstance(n, Dense)))
            ref = _np_mlp(_np_member_params(params, noise), np.asarray(x[i]))
            np.testing.assert_allclose(nai[i], ref, **TOL)


def test_mingru_contenders_match_per_member_reference():
    with jax.enable_x64(True):
        model = tp.mingru_model(vocab_size=11, n_layers=1)
        params, tokens, es, state = _setup(model, hidden=6, population=4, tokens=5, rank=2)
        inf = np.asarray(jax.jit(tp.inference_forward(model))(params, tokens))
        egg = np.asarray(jax.jit(tp.eggroll_forward(model, es))(state, tokens))
        nai = np.asarray(jax.jit(tp.naive_forward(model, es))(state, tokens))
        assert egg.shape == (4, 5, 11)
        apply = jax.jit(mingru.apply)
        for i, noise in enumerate(_all_member_noise(es, state)):
            np.testing.assert_allclose(inf[i], apply(params, tokens[i]), **TOL)
            member = jax.tree_util.tree_map(jnp.asarray, _np_member_params(params, noise))
            ref = np.asarray(apply(member, tokens[i]))
            np.testing.assert_allclose(egg[i], ref, **TOL)
            np.testing.assert_allclose(nai[i], ref, **TOL)
        assert np.abs(egg - inf).max() > 1e-3


def test_generation_contenders_agree_on_same_noise():
    """One full generation through the factored layers and through materialised weights gives
    the same update; its mean fitness is the numpy reference's."""
    with jax.enable_x64(True):
        model = tp.mlp_model(depth=2)
        params, x, es, state = _setup(model, hidden=5, population=6, tokens=3, rank=2)
        new_e, met_e = jax.jit(tp.eggroll_generation(model, es))(state, x)
        new_n, met_n = jax.jit(tp.naive_generation(model, es))(state, x)
        for a, b, p in zip(jax.tree_util.tree_leaves(new_e.params), jax.tree_util.tree_leaves(new_n.params),
                           jax.tree_util.tree_leaves(params)):
            np.testing.assert_allclose(a, b, **TOL)
            assert np.abs(np.asarray(a) - np.asarray(p)).max() > 0  # the mean moved
        fit = [-np.mean(_np_mlp(_np_member_params(params, noise), np.asarray(x[i])) ** 2)
               for i, noise in enumerate(_all_member_noise(es, state))]
        np.testing.assert_allclose(met_e["fitness_mean"], np.mean(fit), **TOL)
        np.testing.assert_allclose(met_n["fitness_mean"], np.mean(fit), **TOL)


@pytest.mark.parametrize("rank", [1, 4, None])
def test_analytic_noise_floats_count_the_member_noise(rank):
    model = tp.mingru_model(vocab_size=9, n_layers=1)
    params = model.init(jax.random.PRNGKey(0), 8)
    es = EGGROLL(sigma=0.1, population=2, rank=rank)
    noise = es.member_noise(es.init(jax.random.PRNGKey(1), params), 0)
    counted = sum(a.size for n in jax.tree_util.tree_leaves(noise, is_leaf=lambda n: isinstance(n, (LowRank, Dense)))
                  for a in (n[:2] if isinstance(n, LowRank) else n[:1]))
    assert tp.noise_floats_per_member(params, rank) == counted
    # By hand: embed (9, 8), Wz, Wh (8, 8), head W (9, 8), four vectors of 8 and one of 9.
    vectors = 4 * 8 + 9
    expected = vectors + (rank * (17 + 16 + 16 + 17) if rank else 72 + 64 + 64 + 72)
    assert tp.noise_floats_per_member(params, rank) == expected



def _row(contender, rank, phase, times, hidden=4, population=2, tokens=1, params=10, cpu=None):
    row = {"model": "mlp", "hidden": hidden, "population": population, "tokens": tokens, "param_floats": params,
           "contender": contender, "rank": rank, "phase": phase, "status": "ok", "times_s": times,
           "median_s": float(np.median(times)), "member_tokens_per_s": population * tokens / float(np.median(times)),
           "load_average": [0.5, 0.5, 0.5]}
    return row if cpu is None else {**row, "cpu_times_s": cpu}


def _synthetic():
    small = dict(hidden=4, population=2)
    big = dict(hidden=8, population=2, params=40)
    rows = [
        _row("inference", None, "forward", [1.0, 2.0, 4.0], **small),
        _row("eggroll", 1, "forward", [2.0, 2.0, 2.0], **small),
        _row("naive", None, "forward", [10.0, 10.0, 10.0], **small),
        _row("inference", None, "forward", [1.0, 1.0, 1.0], **big),
        _row("eggroll", 1, "forward", [1.0, 2.0, 3.0], **big),
        _row("naive", None, "forward", [30.0, 10.0, 90.0], **big),
        {**_row("naive", None, "forward", [1.0], hidden=16, population=2, params=160), "status": "skipped"},
    ]
    # the claimed point, timed apart for 9 rounds: inference 1, EGGROLL 1 / 0.96
    claim = dict(hidden=1024, population=1024, tokens=8)
    claim_rows = [_row("inference", None, "forward", [1.0] * 9, cpu=[2.0] * 9, **claim),
                  _row("eggroll", 1, "forward", [1 / 0.96] * 8 + [1 / 0.9], cpu=[2.0 / 0.97] * 9, **claim)]
    data = {"environment": {"device": "cpu:test", "cpu_count": 2, "xla_flags": None, "noise": "table", "max_bytes": 2**30},
            "rows": rows, "claim_rows": claim_rows, "profile": []}
    data["summary"] = summary.summarise(data)
    return data


def test_summary_pairs_rounds_and_picks_the_largest_naive_size():
    s = _synthetic()["summary"]
    by = {(q["hidden"], q["rank"]): q for q in s["ratios"]}
    # Paired per round: median(t_inf / t_egg) = median(0.5, 1, 2) = 1 at hidden 4.
    assert by[(4, 1)]["vs_inference"] == pytest.approx(1.0)
    # median(30/1, 10/2, 90/3) = 30 at hidden 8 (the largest size naive ran; the skipped one is ignored).
    assert s["vs_naive"]["hidden"] == 8 and s["vs_naive"]["ratio"] == pytest.approx(30.0)
    assert s["vs_naive"]["spread"] == pytest.approx((30.0 - 5.0) / 2) and s["vs_naive"]["rounds"] == 3
    vi = s["vs_inference"]
    assert vi["ratio"] == pytest.approx(0.96) and vi["rounds"] == 9 and vi["ratio_cpu"] == pytest.approx(0.97)
    assert vi["spread"] == pytest.approx((0.96 - 0.9) / 2)
    assert s["vs_inference_512"] is None  # hidden 512 / population 1024 is not in these rows


def test_claims_read_the_results_record():
    from lowrank_es import claims

    res = {"experiment": "throughput", "scale": "reference", "device": "cpu:test", "date": "2000-01-01",
           "code_version": "abc1234", "data": _synthetic()}
    rec = claims.evaluate("eggroll.throughput.vs_naive", results=res, record=False)
    # 3 rounds (30, 5, 30): too few for an interval of the median, so judged on the slowest round
    assert rec["measured"] == pytest.approx(5.0) and not rec["holds"] and rec["seeds"] == 3
    assert rec["details"]["median"] == pytest.approx(30.0) and "smallest" in rec["details"]["judged_on"]
    assert rec["uncertainty"] is None and rec["scale"] == "reference" and rec["device"] == "cpu:test"
    rec = claims.evaluate("eggroll.throughput.vs_inference", results=res, record=False)
    # 9 rounds, eight at 0.96 and one at 0.9: the median's 95% interval is [x_(2), x_(8)] = [0.96, 0.96]
    assert rec["measured"] == pytest.approx(0.96) and rec["holds"] and rec["seeds"] == 9
    slow = json.loads(json.dumps(res))
    egg = [r for r in slow["data"]["claim_rows"] if r["contender"] == "eggroll"][0]
    egg["times_s"] = [1 / 0.96] * 5 + [1 / 0.9] * 4  # median 0.96, but 4 of 9 rounds at 0.9
    slow["data"]["summary"] = summary.summarise(slow["data"])
    rec = claims.evaluate("eggroll.throughput.vs_inference", results=slow, record=False)
    assert rec["details"]["median"] == pytest.approx(0.96) and rec["measured"] == pytest.approx(0.9) and not rec["holds"]
    assert rec["details"]["rounds"] == 9 and rec["details"]["code_version"] == "abc1234"
    rec = claims.evaluate("eggroll.throughput.vs_inference_512", results=res, record=False)
    assert rec["measured"] is None and not rec["holds"]  # the point is missing: reported, not held
    # fewer rounds than the claim asks for: not held, with the reason
    few = json.loads(json.dumps(res))
    for r in few["data"]["claim_rows"]:
        r["times_s"] = r["times_s"][:5]
    rec = claims.evaluate("eggroll.throughput.vs_inference", results=few, record=False)
    assert rec["measured"] is None and "9" in rec["details"]["reason"]
    with pytest.raises(ValueError, match="measured on a GPU"):
        claims.evaluate("eggroll.throughput.vs_naive_gpu", results=res, record=False)


def test_committed_gpu_results_feed_the_gpu_claims_with_their_code_version():
    from lowrank_es import claims

    res = experiments.load("throughput", "gpu")
    assert res["device"].startswith("gpu:") and res["code_version"]  # labelled with the code it measured
    assert not any("cpu_times_s" in r for r in res["data"]["rows"])
    for cid, key in (("eggroll.throughput.vs_inference_gpu", "vs_inference"), ("eggroll.throughput.vs_naive_gpu", "vs_naive")):
        rec = claims.evaluate(cid, record=False)
        assert rec["device"] == res["device"] and rec["scale"] == "gpu" and rec["details"]["code_version"] == res["code_version"]
        assert rec["details"]["median"] == pytest.approx(res["data"]["summary"][key]["ratio"])
        assert rec["measured"] <= rec["details"]["median"]


def test_markdown_tables_show_every_point_and_skipped_contenders():
    data = _synthetic()
    fwd, gen = tables.markdown_tables({**data, "rows": data["rows"]}).split("\n\n")
    lines = fwd.splitlines()
    assert lines[0].startswith("| model | hidden | population | inference | EGGROLL r=1 | naive ES")
    assert len(lines) == 2 + 3  # one line per point (hidden 4, 8, 16)
    assert "| mlp | 8 | 2 | 2 | 1 | 0.0667 | 0.5 | 30 |" in lines  # median(1/1, 1/2, 1/3), median(30, 5, 30)
    assert "| mlp | 16 | 2 | — | — | skipped | — | — |" in lines
    assert len(gen.splitlines()) == 2 + 3
    claims_md = tables.claims_table(data)
    assert "| `eggroll.throughput.vs_inference` | mlp 1024 / 1024, r=1 | **0.96** | 0.97 | 9 | 0.03 |" in claims_md
    assert "| `eggroll.throughput.vs_inference_512` | not measured |" in claims_md
    p = {**data["summary"]["vs_inference"], "ratio": 0.92}  # between the GPU (0.9) and CPU (0.95) targets
    assert "target >= 0.95: NOT met" in tables.claim_line("vs_inference", p)
    assert "target >= 0.9: met" in tables.claim_line("vs_inference", p, "gpu")
    assert "| >= 0.9 | yes |" in tables.claims_table({"summary": {"vs_inference": p}}, ("vs_inference",), "_gpu", "gpu")


def test_quick_experiment_runs_a_tiny_grid_and_writes_the_report(tmp_path):
    """The experiment end to end at toy sizes: grid, claimed point, profile of two generators,
    summary, the shared-machine note, and RESULTS.md from the record."""
    rec = experiments.run("throughput", "quick", hidden_sweep=(16,), hidden_sweep_population=8, population_sweep=(),
                          claim_points=((16, 8),), claim_repeats=2, profile_points=((16, 8),), naive_profile_point=(16, 8),
                          profile_noises=(("table", "threefry2x32"), ("prng", "threefry2x32"), ("prng", "rbg")),
                          ranks=(1,), repeats=2, min_round_s=0.0, tokens=2)
    data = rec["data"]
    assert {r["contender"] for r in data["rows"]} == {"inference", "eggroll", "naive"}
    assert {r["phase"] for r in data["rows"]} == {"forward", "generation"}
    for r in data["rows"] + data["claim_rows"]:
        assert r["status"] == "ok" and r["member_tokens_per_s"] > 0 and r["memory"]["total"] > 0
    assert all(len(r["times_s"]) == 2 for r in data["claim_rows"])
    nf = {r["contender"]: r["noise_floats_per_member"] for r in data["rows"] if r["phase"] == "forward"}
    assert nf["naive"] > nf["eggroll"] > nf["inference"] == 0  # m n vs r (m + n) per matrix
    parts = {(p["part"], p.get("noise"), p.get("prng_impl"), p["rank"]) for p in data["profile"]}
    assert {("noise", "table", "threefry2x32", 1), ("noise", "prng", "threefry2x32", 1), ("arithmetic", None, None, 1),
            ("noise", "table", "threefry2x32", None), ("noise", "prng", "rbg", 1)} <= parts
    assert ("total", "prng", "rbg", 1) not in parts  # EGGROLL refuses rbg keys: their draws are timed alone
    assert data["environment"]["noise"] == "table" and "load average" in data["note"]
    assert data["summary"]["vs_naive"]["ratio"] > 0
    md = report.results_markdown({**rec, "device": "cpu:cpu", "cpu_count": 2, "jax_version": "x", "date": "d",
                                  "code_version": "c"}, None)
    assert "## CPU" in md and "### Where the time goes" in md and "| EGGROLL r=1 | table | 16 / 8 |" in md


def test_report_command_regenerates_results_md(tmp_path):
    out = tmp_path / "RESULTS.md"
    subprocess.run([sys.executable, "-m", "benchmarks.throughput", "report", "--report", str(out)], cwd=REPO_ROOT,
                   check=True, capture_output=True)
    text = out.read_text()
    gpu = experiments.load("throughput", "gpu")
    assert "## GPU" in text and f"`{gpu['code_version']}`" in text and "do not edit by hand" in text
    assert text == (REPO_ROOT / "benchmarks" / "RESULTS.md").read_text()  # the committed file is up to date


def test_committed_cpu_reference_feeds_the_cpu_claims_with_its_code_version():
    from lowrank_es import claims

    res = experiments.load("throughput", "reference")
    assert res["device"].startswith("cpu") and res["scale"] == "reference"
    for key in ("vs_inference", "vs_inference_512", "vs_naive"):
        rec = claims.evaluate(f"eggroll.throughput.{key}", results=res, record=False)
        assert rec["scale"] == "reference" and rec["details"]["code_version"] == res["code_version"]
        p = res["data"]["summary"][key]
        if rec["measured"] is None:  # not measured, or over too few rounds: said, not held
            assert not rec["holds"] and rec["details"]["reason"]
        else:
            assert rec["details"]["median"] == pytest.approx(p["ratio"]) and rec["seeds"] == p["rounds"]
            assert rec["measured"] <= p["ratio"]  # judged on a lower end, never above the median


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(hidden=0), "hidden"), (dict(population=3), "population"), (dict(tokens=0), "tokens"),
     (dict(ranks=(9,)), "rank"), (dict(prng_impl="mt19937"), "prng_impl"), (dict(noise="x"), "noise")],
)
def test_bad_input_raises_value_error(kwargs, name):
    args = dict(hidden=8, population=4, tokens=1, ranks=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        sweep.run_point("mlp", args.pop("hidden"), args.pop("population"), **args)
    with pytest.raises(ValueError, match="model"):
        tp.get_model("transformer")


def test_experiment_jobs_are_named_identifiers_and_the_note_reads_the_load():
    names = list(xp.jobs(xp.REFERENCE, (0,)))
    assert names[:2] == ["claim_h1024_p1024", "claim_h512_p1024"] and all(n.isidentifier() for n in names)
    data = {"environment": {"cpu_count": 2}, "claim_rows": [{"load_average": [5.0, 4, 3]}], "rows": []}
    assert xp.shared_note(data).startswith("machine shared")
    data["claim_rows"][0]["load_average"] = [0.4, 0.4, 0.4]
    assert xp.shared_note(data).startswith("machine otherwise idle")
