"""The throughput benchmark's contenders against independent references (not a timing test).

Plain inference, the EGGROLL population forward and naive materialised ES must compute the same
outputs on the same noise: checked in float64 against per-member weights built in numpy from the
members' noise factors, for the MLP and the minGRU recurrent LM.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es.models import mingru
from lowrank_es.es.eggroll import EGGROLL, Dense, LowRank
from lowrank_es.paths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import throughput as tp  # noqa: E402

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


@pytest.mark.parametrize("rank", [1, 3])
def test_mlp_contenders_match_numpy_reference(rank):
    with jax.enable_x64(True):
        model = tp.mlp_model(depth=2)
        params, x, es, state = _setup(model, hidden=6, population=6, tokens=3, rank=rank)
        inf = np.asarray(jax.jit(tp.inference_forward(model))(params, x))
        egg = np.asarray(jax.jit(tp.eggroll_forward(model, es))(state, x))
        nai = np.asarray(jax.jit(tp.naive_forward(model, es))(state, x))  # same low-rank noise, materialised
        assert inf.shape == egg.shape == nai.shape == (6, 3, 6)
        for i in range(es.population):
            np.testing.assert_allclose(inf[i], _np_mlp(params, np.asarray(x[i])), **TOL)
            ref = _np_mlp(_np_member_params(params, es.member_noise(state, i)), np.asarray(x[i]))
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
        for i in range(es.population):
            noise = es.member_noise(state, i)
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
        for i in range(es.population):
            np.testing.assert_allclose(inf[i], mingru.apply(params, tokens[i]), **TOL)
            member = jax.tree_util.tree_map(jnp.asarray, _np_member_params(params, es.member_noise(state, i)))
            ref = np.asarray(mingru.apply(member, tokens[i]))
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
        fit = [-np.mean(_np_mlp(_np_member_params(params, es.member_noise(state, i)), np.asarray(x[i])) ** 2)
               for i in range(es.population)]
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


def _row(contender, rank, phase, times, hidden=4, population=2, tokens=1, params=10):
    return {"model": "mlp", "hidden": hidden, "population": population, "tokens": tokens, "param_floats": params,
            "contender": contender, "rank": rank, "phase": phase, "status": "ok", "times_s": times,
            "median_s": float(np.median(times)), "member_tokens_per_s": population * tokens / float(np.median(times))}


def _synthetic_rows():
    small = dict(hidden=4, population=2)
    big = dict(hidden=8, population=2, params=40)
    return [
        _row("inference", None, "forward", [1.0, 2.0, 4.0], **small),
        _row("eggroll", 1, "forward", [2.0, 2.0, 2.0], **small),
        _row("naive", None, "forward", [10.0, 10.0, 10.0], **small),
        _row("inference", None, "forward", [1.0, 1.0, 1.0], **big),
        _row("eggroll", 1, "forward", [1.0, 2.0, 3.0], **big),
        _row("naive", None, "forward", [30.0, 10.0, 90.0], **big),
        {**_row("naive", None, "forward", [1.0], hidden=16, population=2, params=160), "status": "skipped"},
    ]


def test_summary_pairs_rounds_and_picks_the_largest_naive_size():
    s = tp.summarise({"rows": _synthetic_rows()})
    by = {(q["hidden"], q["rank"]): q for q in s["ratios"]}
    # Paired per round: median(t_inf / t_egg) = median(0.5, 1, 2) = 1 at hidden 4.
    assert by[(4, 1)]["vs_inference"] == pytest.approx(1.0)
    # median(30/1, 10/2, 90/3) = 30 at hidden 8 (the largest size naive ran; the skipped one is ignored).
    assert s["vs_naive"]["hidden"] == 8
    assert s["vs_naive"]["ratio"] == pytest.approx(30.0)
    assert s["vs_naive"]["holds"]
    assert s["vs_inference"] is None  # hidden 1024 / population 1024 is not in these rows


def test_claims_read_the_results_json(tmp_path):
    from lowrank_es import claims

    res = {"rows": _synthetic_rows(), "device": "cpu:test", "date": "2000-01-01"}
    res["summary"] = tp.summarise(res)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    rec = claims.evaluate("eggroll.throughput.vs_naive", path=path, record=False)
    assert rec["measured"] == pytest.approx(30.0) and rec["holds"]
    assert rec["uncertainty"] == pytest.approx((30.0 - 5.0) / 2) and rec["seeds"] == 3  # half range over rounds
    assert rec["details"]["measured_on"] == "cpu:test" and rec["details"]["hidden"] == 8
    rec = claims.evaluate("eggroll.throughput.vs_inference", path=path, record=False)
    assert rec["measured"] is None and not rec["holds"]  # the target point is missing: reported, not held


def test_quick_cli_writes_valid_json(tmp_path):
    out = tmp_path / "quick.json"
    res = tp.main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["device"] == res["device"] and ":" in data["device"]
    assert {r["contender"] for r in data["rows"]} == {"inference", "eggroll", "naive"}
    assert {r["phase"] for r in data["rows"]} == {"forward", "generation"}
    for r in data["rows"]:
        assert r["status"] == "ok", r
        assert r["member_tokens_per_s"] > 0 and len(r["times_s"]) == data["config"]["repeats"]
        assert r["memory"]["total"] > 0
    # Naive ES stores more noise per member than rank-1 EGGROLL: m n vs r (m + n) per matrix.
    nf = {r["contender"]: r["noise_floats_per_member"] for r in data["rows"] if r["phase"] == "forward"}
    assert nf["naive"] > nf["eggroll"] > nf["inference"] == 0
    assert data["summary"]["vs_naive"]["ratio"] > 0
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(hidden=0), "hidden"), (dict(population=3), "population"), (dict(tokens=0), "tokens"),
     (dict(ranks=(9,)), "rank"), (dict(prng_impl="mt19937"), "prng_impl")],
)
def test_bad_input_raises_value_error(kwargs, name):
    args = dict(hidden=8, population=4, tokens=1, ranks=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        tp.run_point("mlp", args.pop("hidden"), args.pop("population"), **args)
    with pytest.raises(ValueError, match="model"):
        tp.get_model("transformer")


def _part(rows, device="gpu:test", **config):
    base = dict(models=["mlp"], hidden_sweep=[], hidden_sweep_population=256, population_sweep=[],
                population_sweep_hidden=1024, mingru_hidden_sweep=[256], mingru_population_sweep=[],
                ranks=[1], mingru_ranks=[1, 4, 16], profile=False)
    return {"device": device, "platform": device.split(":")[0], "jax_version": "0", "config": {**base, **config},
            "rows": rows, "profile": [], "wall_s": 1.0}


def test_merge_relabels_sweeps_keeps_first_run_and_drops_host_times():
    h = lambda hidden, pop, times: {**_row("inference", None, "forward", times, hidden=hidden, population=pop),
                                    "cpu_times_s": times}
    a = _part([h(4, 2, [1.0, 1.0, 1.0]), h(8, 2, [2.0, 2.0, 2.0])], hidden_sweep=[4, 8], hidden_sweep_population=2,
              population_sweep_hidden=8)
    b = _part([h(8, 4, [3.0, 3.0, 3.0])], population_sweep=[4], population_sweep_hidden=8)
    again = _part([h(8, 2, [9.0, 9.0, 9.0])], hidden_sweep=[8], hidden_sweep_population=2)
    m = tp.merge_results([a, b, again])
    sweeps = {(r["hidden"], r["population"]): r["sweeps"] for r in m["rows"]}
    # (8, 2) lies on a's hidden line (population 2) and on b's population line (hidden 8).
    assert sweeps == {(4, 2): ["hidden"], (8, 2): ["hidden", "population"], (8, 4): ["population"]}
    assert m["config"]["hidden_sweep"] == [4, 8] and m["config"]["population_sweep"] == [2, 4]
    # The repeated point is taken from the first run; the repeat is kept aside, not averaged in.
    assert [r["times_s"] for r in m["rows"] if (r["hidden"], r["population"]) == (8, 2)] == [[2.0, 2.0, 2.0]]
    assert [r["times_s"] for r in m["repeated_rows"]] == [[9.0, 9.0, 9.0]] and m["repeated_rows"][0]["run"] == 2
    # Host CPU time is not the work on an accelerator: dropped.
    assert all("cpu_times_s" not in r for r in m["rows"] + m["repeated_rows"])
    assert len(m["merged_from"]) == 3 and m["summary"]["vs_inference"] is None


def test_merge_refuses_runs_of_different_devices():
    with pytest.raises(ValueError, match="device"):
        tp.merge_results([_part([], device="gpu:a"), _part([], device="gpu:b")])
    with pytest.raises(ValueError, match="at least one"):
        tp.merge_results([])


def test_committed_gpu_results_are_a_gpu_sweep_and_feed_the_gpu_claims():
    from lowrank_es import claims

    res = tp.load_results(tp.figures_dir() / tp.GPU_RESULTS_NAME)
    assert res["platform"] == "gpu" and res["device"].startswith("gpu:")
    assert max(res["config"]["hidden_sweep"]) >= 4096 and max(res["config"]["population_sweep"]) >= 8192
    assert not any("cpu_times_s" in r for r in res["rows"])
    for cid, key in (("eggroll.throughput.vs_inference_gpu", "vs_inference"), ("eggroll.throughput.vs_naive_gpu", "vs_naive")):
        rec = claims.evaluate(cid, record=False)
        assert rec["device"] == res["device"] == rec["details"]["measured_on"]
        assert rec["measured"] == pytest.approx(res["summary"][key]["ratio"])
    with pytest.raises(ValueError, match="measured on a GPU"):
        claims.evaluate("eggroll.throughput.vs_naive_gpu", results=tp.load_results(), record=False)


def test_markdown_tables_show_every_point_and_skipped_contenders():
    rows = _synthetic_rows()
    res = {"rows": rows}
    res["summary"] = tp.summarise(res)
    md = tp.markdown_tables(res)
    fwd, gen = md.split("\n\n")
    lines = fwd.splitlines()
    assert lines[0].startswith("| model | hidden | population | inference | EGGROLL r=1 | naive ES")
    # one line per point (hidden 4, 8, 16), ratios from the paired rounds
    assert len(lines) == 2 + 3
    assert "| mlp | 8 | 2 | 2 | 1 | 0.0667 | 0.5 | 30 |" in lines  # median(1/1, 1/2, 1/3), median(30, 5, 30)
    assert "| mlp | 16 | 2 | — | — | skipped | — | — |" in lines
    assert len(gen.splitlines()) == 2 + 3
