"""Countdown verifier, splits, solvers, the transformer's cached and factored paths, the
reproducibility of the committed pre-trained checkpoint, the fine-tuning loops' token budget,
the intervals and the reasoning claims' judging."""

import dataclasses
import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lowrank_es import claims, stats
from lowrank_es.claims import reasoning as reasoning_claims
from lowrank_es.tasks import countdown_finetune as cf
from lowrank_es.tasks import countdown_lm as cl
from lowrank_es.tasks import countdown as rs
from lowrank_es.models import transformer as tf
from lowrank_es.es.eggroll import EGGROLL, materialise

# ---------------------------------------------------------------------------
# Verifier
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "numbers, target, answer, status, value",
    [
        ((4, 7, 2), 22, "(4+7)*2", "correct", 22),
        ((4, 7, 2), 22, "2*(7+4)", "correct", 22),
        ((8, 3, 1), 4, "8/(3-1)", "correct", 4),
        ((2, 4, 6), 3, "6/(4-2)", "correct", 3),
        ((3, 4, 6), 2, "6/(4-3)/3", "reused_number", 2),
        ((3, 5), 15, "3*5", "correct", 15),
        ((9, 9, 1), 81, "9*9", "correct", 81),  # a subset of the numbers is fine
        ((9, 9, 1), 80, "9*9-1", "correct", 80),  # 9 listed twice may be used twice
        ((4, 7, 2), 22, "4+7*2", "wrong_value", 18),  # precedence: 7*2 first
        ((4, 7, 2), 22, "4-7-2", "wrong_value", -5),  # left associative
        ((3, 4, 6), 2, "3/4", "wrong_value", Fraction(3, 4)),
        ((4, 7, 2), 16, "4*4", "reused_number", 16),
        ((9, 9, 1), 729, "9*9*9", "reused_number", 729),
        ((4, 7, 2), 5, "3+2", "unknown_number", 5),
        ((4, 7, 2), 47, "47", "unknown_number", 47),  # digits are not concatenated
        ((4, 7, 2), 2, "4/(2-2)", "div_by_zero", None),
        ((4, 7, 2), 0, "4/(7-7)", "div_by_zero", None),
        ((4, 7, 2), 22, "(4+7*2", "malformed", None),
        ((4, 7, 2), 22, "4+7)*2", "malformed", None),
        ((4, 7, 2), 22, "4++7", "malformed", None),
        ((4, 7, 2), 22, "-4+7", "malformed", None),
        ((4, 7, 2), 22, "", "malformed", None),
        ((4, 7, 2), 22, "()", "malformed", None),
        ((4, 7, 2), 22, "4 7", "malformed", None),
        ((4, 7, 2), 22, "04+7", "malformed", None),
        ((4, 7, 2), 22, "4,7", "malformed", None),
        ((4, 7, 2), 22, "__import__('os')", "malformed", None),
    ],
)
def test_verifier_hand_worked(numbers, target, answer, status, value):
    v = rs.verify_countdown(numbers, target, answer)
    assert v.status == status
    if value is not None:
        assert v.value == Fraction(value)


def test_reward_and_partial_credit():
    assert rs.countdown_reward((4, 7, 2), 22, "(4+7)*2") == 1.0
    assert rs.countdown_reward((4, 7, 2), 22, "4+7+2") == 0.0
    assert rs.countdown_reward((4, 7, 2), 22, "4+7+2", partial_credit=0.1) == 0.1
    assert rs.countdown_reward((4, 7, 2), 22, "4+4", partial_credit=0.1) == 0.0
    with pytest.raises(ValueError, match="partial_credit"):
        rs.countdown_reward((4, 7, 2), 22, "4", partial_credit=1.0)


def test_parser_agrees_with_brute_force_fraction_arithmetic():
    # Every left-to-right chain over 3 numbers, written by chain_expression, parses to chain_value.
    rng = np.random.default_rng(0)
    for _ in range(300):
        nums = tuple(int(x) for x in rng.integers(1, 20, 3))
        ops = [("+", "-", "*", "/")[i] for i in rng.integers(0, 4, 2)]
        text = rs.chain_expression(nums, ops)
        v = Fraction(nums[0])
        for op, n in zip(ops, nums[1:]):
            v = {"+": v + n, "-": v - n, "*": v * n, "/": v / n}[op]
        assert rs.parse_expression(text)[0] == v, text


def test_tokenizer_roundtrip_and_errors():
    s = "4,7,2=22:(4+7)*2"
    assert rs.decode(rs.encode(s)) == s
    assert rs.decode(rs.encode(s) + [rs.EOS] + rs.encode("99")) == s
    assert rs.decode([rs.PAD] + rs.encode("12")) == "12"
    with pytest.raises(ValueError, match="text"):
        rs.encode("a+b")
    with pytest.raises(ValueError, match="token ids"):
        rs.decode([rs.VOCAB_SIZE])


# ---------------------------------------------------------------------------
# Problems, splits, solvers
# ---------------------------------------------------------------------------


def test_splits_disjoint_deterministic_and_solvable():
    d = rs.Difficulty(3, 9)
    splits = {s: rs.make_problems(s, 150, seed=0, difficulty=d) for s in rs.SPLITS}
    prompts = {s: {p.prompt for p in ps} for s, ps in splits.items()}
    assert all(len(v) == 150 for v in prompts.values())  # distinct within a split
    assert not prompts["train"] & prompts["val"]
    assert not prompts["train"] & prompts["test"]
    assert not prompts["val"] & prompts["test"]
    # another seed draws other problems but never crosses splits
    other = {p.prompt for p in rs.make_problems("test", 150, seed=1, difficulty=d)}
    assert not other & (prompts["train"] | prompts["val"])
    assert rs.make_problems("val", 150, seed=0, difficulty=d) == splits["val"]
    for p in splits["test"][:50]:
        sol = rs.solve_countdown(p)
        assert sol is not None and rs.verify_countdown(p.numbers, p.target, sol).status == "correct"
        assert len(p.numbers) == 3 and all(1 <= n <= 9 for n in p.numbers) and p.target > 0
    with pytest.raises(ValueError, match="split"):
        rs.make_problems("dev", 3)
    with pytest.raises(ValueError, match="num_numbers"):
        rs.Difficulty(6, 9)


def test_lengths_fit_the_difficulty():
    for d in (rs.Difficulty(2, 9), rs.Difficulty(3, 9), rs.Difficulty(4, 12)):
        for p in rs.make_problems("train", 100, seed=3, difficulty=d):
            assert len(p.prompt) <= d.max_prompt_len
            ans = rs.chain_expression(p.numbers, ["-"] + ["*"] * (d.num_numbers - 2))
            assert len(ans) + 1 <= d.max_answer_len


def test_imperfect_solver_accuracy_matches_its_setting():
    probs = rs.make_problems("train", 400, seed=0)
    rng = np.random.default_rng(0)
    for p_correct in (0.0, 0.35, 1.0):
        ok = np.mean([rs.countdown_reward(p.numbers, p.target, rs.imperfect_countdown_solver(p, rng, p_correct))
                      for p in probs])
        # a corrupted operator is wrong unless another chain also hits the target (a few %)
        assert p_correct <= ok <= p_correct + 0.12, (p_correct, ok)
    assert ok == 1.0


def test_addition_task():
    probs = rs.make_addition_problems("test", 100, seed=0, digits=3)
    assert not {p.prompt for p in probs} & {p.prompt for p in rs.make_addition_problems("train", 100, digits=3)}
    rng = np.random.default_rng(0)
    assert all(rs.verify_addition(p, rs.imperfect_addition_solver(p, rng, 0.0)) for p in probs)
    assert rs.verify_addition(rs.AdditionProblem(58, 67), "125")
    assert not rs.verify_addition(rs.AdditionProblem(58, 67), "115")  # a dropped carry
    assert not rs.verify_addition(rs.AdditionProblem(58, 67), "0125")
    assert not rs.verify_addition(rs.AdditionProblem(58, 67), "1+124")
    assert rs.imperfect_addition_solver(rs.AdditionProblem(58, 67), rng, 1.0) == "15"
    with_carries = [p for p in probs if (p.a % 10) + (p.b % 10) >= 10]
    acc = np.mean([rs.verify_addition(p, rs.imperfect_addition_solver(p, rng, 1.0)) for p in with_carries])
    assert acc == 0.0


# ---------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------

CFG = tf.Config(vocab=rs.VOCAB_SIZE, max_len=12, d_model=16, n_heads=2, n_layers=2, d_ff=24)
_forward = jax.jit(functools.partial(tf.forward, n_heads=CFG.n_heads))
_decode = jax.jit(functools.partial(tf.decode_step, n_heads=CFG.n_heads))


def test_kv_cache_decoding_equals_full_forward():
    with jax.enable_x64(True):
        params = tf.init(jax.random.key(0), CFG, dtype=jnp.float64)
        toks = jax.random.randint(jax.random.key(1), (CFG.max_len,), 2, rs.VOCAB_SIZE)
        full = _forward(params, toks)
        cache = jnp.zeros((CFG.n_layers, 2, CFG.max_len, CFG.d_model), jnp.float64)
        for t in range(CFG.max_len):
            logits, cache = _decode(params, cache, toks[t], jnp.asarray(t))
            np.testing.assert_allclose(np.asarray(logits), np.asarray(full[t]), rtol=1e-10, atol=1e-10)
        # greedy generation writes the argmax of the full forward at every generated position
        prompt = toks.at[4:].set(0)
        gen_fn = jax.jit(functools.partial(tf.generate, n_heads=CFG.n_heads, eos=rs.EOS, pad=rs.PAD, greedy=True))
        out, gen = gen_fn(params, prompt, jnp.asarray(4), jax.random.key(2))
        out, gen = np.asarray(out), np.asarray(gen)
        assert (out[:4] == np.asarray(toks[:4])).all() and not gen[:4].any() and gen[4]
        logits = np.asarray(_forward(params, jnp.asarray(out)))
        for t in np.flatnonzero(gen):
            assert out[t] == logits[t - 1].argmax()
        eos = np.flatnonzero(out[4:] == rs.EOS)
        if eos.size:  # after the end token: padding, not generated
            assert (out[4 + eos[0] + 1:] == rs.PAD).all() and not gen[4 + eos[0] + 1:].any()
        lp = jax.jit(functools.partial(tf.sequence_logprobs, n_heads=CFG.n_heads))(params, jnp.asarray(out))
        ref = jax.nn.log_softmax(jnp.asarray(logits), -1)
        np.testing.assert_allclose(np.asarray(lp[1:]), np.asarray(ref[np.arange(11), out[1:]]), rtol=1e-12)


def test_factored_population_forward_equals_materialised_weights():
    with jax.enable_x64(True):
        params = tf.init(jax.random.key(3), CFG, dtype=jnp.float64)
        es = EGGROLL(sigma=0.3, population=4, rank=2, clip_rank=True)
        state = es.init(jax.random.key(4), params)
        toks = jax.random.randint(jax.random.key(5), (CFG.max_len,), 2, rs.VOCAB_SIZE)
        base = _forward(params, toks)
        for i in range(es.population):
            noise = es.member_noise(state, jnp.asarray(i))
            fac = _forward(params, toks, noise)
            ref = _forward(materialise(params, noise), toks)
            np.testing.assert_allclose(np.asarray(fac), np.asarray(ref), rtol=1e-10, atol=1e-10)
            assert float(jnp.abs(fac - base).max()) > 1e-3  # the noise does reach the output
            cache = jnp.zeros((CFG.n_layers, 2, CFG.max_len, CFG.d_model), jnp.float64)
            cache_ref = cache
            for t in range(3):
                lf, cache = _decode(params, cache, toks[t], jnp.asarray(t), noise)
                lr, cache_ref = _decode(materialise(params, noise), cache_ref, toks[t], jnp.asarray(t))
                np.testing.assert_allclose(np.asarray(lf), np.asarray(lr), rtol=1e-10, atol=1e-10)


def test_config_validation():
    with pytest.raises(ValueError, match="d_model"):
        tf.Config(vocab=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_layers"):
        tf.Config(vocab=5, n_layers=0)


# ---------------------------------------------------------------------------
# The committed checkpoint
# ---------------------------------------------------------------------------


def test_pretraining_prefix_reproduces_checkpoint():
    stored, cfg = cl.load_pretrained(which="prefix")
    again, losses = cl.pretrain(cfg, steps=cfg.prefix_steps)
    assert len(losses) == cfg.prefix_steps and losses[-1] < losses[0]
    for a, b in zip(jax.tree_util.tree_leaves(stored), jax.tree_util.tree_leaves(again)):
        # same device kind: bitwise; allow float32 rounding differences across CPUs
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    final, _ = cl.load_pretrained()
    assert any(float(jnp.abs(a - b).max()) > 1e-2 for a, b in
               zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(stored)))


def test_finetune_loops_count_tokens_and_stay_in_budget():
    params, _ = cl.load_pretrained()
    # partial credit for well-formed wrong answers, so the few rewards of this tiny budget are not
    # all tied (tied fitness gives EGGROLL, by design, no update)
    fc = cf.FinetuneConfig(token_budget=300, eval_points=2, n_val=8, val_samples=1,
                           n_train_problems=50, partial_credit=0.5)
    p_e, log_e = cf.eggroll_finetune(params, 0, fc, cf.EggrollConfig(population=8, group=4, rank=1))
    p_g, log_g = cf.grpo_finetune(params, 0, fc, cf.GRPOConfig(group=4, sequences_per_step=8, inner_steps=1))
    for log, per_step in ((log_e, 8), (log_g, 8)):
        # every step samples per_step answers of at most max_answer_len tokens each
        assert 300 <= log["tokens"] < 300 + per_step * rs.Difficulty().max_answer_len
        assert log["sequences_per_step"] == per_step
        assert log["curve"][0][0] == 0 and log["curve"][-1][0] == log["tokens"]
    for new in (p_e, p_g):
        assert any(float(jnp.abs(a - b).max()) > 0 for a, b in
                   zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(params)))
    # the shuffled-fitness null control spends the same tokens (same sampling) but takes
    # another update: the permuted fitness no longer matches each member's noise
    p_n, log_n = cf.eggroll_finetune(params, 0, fc, cf.EggrollConfig(population=8, group=4, rank=1, null_control=True))
    assert log_n["steps"] >= 1 and 300 <= log_n["tokens"] < 300 + 8 * rs.Difficulty().max_answer_len
    assert any(float(jnp.abs(a - b).max()) > 0 for a, b in
               zip(jax.tree_util.tree_leaves(p_n), jax.tree_util.tree_leaves(p_e)))


def test_population_answers_equal_each_members_own_sampling():
    """The population sampler (noise drawn once per antithetic pair, all members batched) gives
    each member exactly the answer of sampling with that member's own noise."""
    params, _ = cl.load_pretrained()
    es = cf.make_es(cf.EggrollConfig(population=4, group=2, sigma=0.05))
    state = es.init(jax.random.key(0), params)
    probs = rs.make_problems("train", 4, seed=0)
    prompts, plens = cl.encode_prompts(probs, cl.seq_len())
    keys = jax.random.split(jax.random.key(1), 4)
    toks, gen = cf.population_answers(es, state, jnp.asarray(prompts), jnp.asarray(plens), keys)
    assert toks.shape == (4, cl.seq_len())
    one = jax.jit(lambda nz, p, l, k: cl.generate(params, p, l, k, nz))
    for m in range(4):
        t, g = one(es.member_noise(state, m), jnp.asarray(prompts[m]), jnp.asarray(plens[m]), keys[m])
        np.testing.assert_array_equal(toks[m], t)
        np.testing.assert_array_equal(gen[m], g)


def test_official_options_of_the_countdown_task():
    """sigma relative to width, only the blocks' matrices perturbed, greedy member answers, a
    steps budget, and curves with greedy and sampled accuracy."""
    ec = cf.EggrollConfig(population=8, group=4, sigma=0.04, sigma_relative=True, lr=0.5, optimizer="sgd",
                          estimator="hyperscale", frozen=cf.BLOCK_MATRICES_ONLY, greedy=True, steps=3)
    assert ec.noise_sigma == pytest.approx(0.04 / np.sqrt(cl.MODEL.d_model))
    es = cf.make_es(ec)
    assert es.sigma == ec.noise_sigma and es.estimator == "hyperscale"
    params, _ = cl.load_pretrained()
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    free = sorted(p for p in paths if not es.is_frozen(p))
    assert free == sorted(f"['blocks'][{i}]['{w}']" for i in range(cl.MODEL.n_layers)
                          for w in ("wq", "wk", "wv", "wo", "w1", "w2"))
    # greedy members: each member's answer is its own greedy decoding, whatever the sampling key
    state = es.init(jax.random.key(0), params)
    probs = rs.make_problems("train", 8, seed=0)
    prompts, plens = (jnp.asarray(x) for x in cl.encode_prompts(probs, cl.seq_len()))
    a = cf.population_answers(es, state, prompts, plens, jax.random.split(jax.random.key(1), 8), greedy=True)
    b = cf.population_answers(es, state, prompts, plens, jax.random.split(jax.random.key(2), 8), greedy=True)
    np.testing.assert_array_equal(a[0], b[0])
    t, _ = cl.generate(params, prompts[5], plens[5], jax.random.key(9), es.member_noise(state, 5), greedy=True)
    np.testing.assert_array_equal(a[0][5], t)
    # a steps budget: exactly 3 updates, curve rows (tokens, seconds, sampled, greedy, step), frozen leaves unmoved
    fc = cf.FinetuneConfig(token_budget=None, eval_points=2, n_val=8, val_samples=1, n_train_problems=50,
                           partial_credit=0.5)
    new, log = cf.eggroll_finetune(params, 0, fc, ec)
    assert log["steps"] == 3 and [row[4] for row in log["curve"]] == [0, 3]
    assert len(log["curve"][0]) == len(cf.CURVE_COLUMNS) and log["curve"][-1][0] == log["tokens"]
    for (p, x), y in zip(jax.tree_util.tree_flatten_with_path(new)[0], jax.tree_util.tree_leaves(params)):
        assert np.array_equal(x, y) == (jax.tree_util.keystr(p) not in free)
    with pytest.raises(ValueError, match="must set steps"):
        cf.eggroll_finetune(params, 0, fc, dataclasses.replace(ec, steps=None))
    with pytest.raises(ValueError, match="steps must be None"):
        cf.GRPOConfig(steps=0)
    with pytest.raises(ValueError, match="eval_split"):
        cf.FinetuneConfig(eval_split="train")


def test_group_fitness_hand_worked():
    f = cf.group_fitness(np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]), group=4)
    # group means 0.25 and 1; the population's std is sqrt(5/8 * 3/8)
    sd = np.sqrt(15 / 64 + 1e-5)
    np.testing.assert_allclose(f, np.array([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]) / sd)
    assert not cf.group_fitness(np.ones(8), group=4).any()
    with pytest.raises(ValueError, match="group"):
        cf.group_fitness(np.ones(6), group=4)
    with pytest.raises(ValueError, match="group"):
        cf.EggrollConfig(population=8, group=3)


def test_intervals_hand_worked():
    m, h = stats.mean_ci([0.2, 0.3, 0.4])
    # sd 0.1, se 0.1 / sqrt(3), t(0.975, 2) = 4.3027
    assert m == pytest.approx(0.3) and h == pytest.approx(4.3027 * 0.1 / np.sqrt(3), rel=1e-4)
    m, h = stats.proportion_ci([1, 0, 1, 0])
    assert m == 0.5 and h == pytest.approx(1.95996 * np.sqrt(1 / 3) / 2, rel=1e-4)
    d, h = stats.welch_ci([0.5, 0.7], [0.1, 0.3])
    # both variances 0.02 / 2 = 0.01, se = sqrt(0.02), dof = 0.0004 / (0.0001 + 0.0001) = 2
    assert d == pytest.approx(0.4) and h == pytest.approx(4.3027 * np.sqrt(0.02), rel=1e-4)
    with pytest.raises(ValueError, match="values"):
        stats.mean_ci([0.3])


def _record(eggroll, grpo, start, seconds=(60.0, 60.0)):
    """A synthetic reasoning record: greedy finals as given (sampled finals 0.1 lower), each run's
    test curve from the start to its final accuracy, EGGROLL generating 4x GRPO's tokens."""
    def arm(final, tokens, secs):
        logs = [{"tokens": tokens, "steps": 3, "sequences_per_step": 8, "seconds": secs,
                 "curve": [[0, 0.0, 0.2, 0.5, 0], [tokens, secs, f - 0.1, f, 3]]} for f in final]
        return {"final": [f - 0.1 for f in final], "final_greedy": list(final), "logs": logs}

    return {"scale": "test", "device": "cpu:cpu", "config": {"finetune": {"eval_split": "test"}},
            "data": {"start": {"per_prompt": [0.2] * len(start), "greedy_per_prompt": start},
                     "memory": {"ratio_grpo_over_eggroll": 2.0},
                     "eggroll": arm(eggroll, 4000, seconds[0]), "grpo": arm(grpo, 1000, seconds[1])}}


def test_reasoning_claims_judge_non_inferiority_and_improvement():
    start = [0, 1] * 100  # 0.5 +- 0.07
    # EGGROLL 0.02 below GRPO with tight seeds: non-inferior at a 0.03 margin, and above the start
    rec = _record([0.60, 0.61, 0.60, 0.61, 0.60], [0.62, 0.63, 0.62, 0.63, 0.62], start)
    vs = claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", results=rec, record=False)
    assert vs["holds"] and vs["measured"] == pytest.approx(-0.02 - vs["details"]["ci_half"])
    assert vs["details"]["difference"] == pytest.approx(-0.02) and vs["scale"] == "test"
    assert vs["details"]["seconds_ratio"] == 1.0 and vs["details"]["eggroll_sampled"] == pytest.approx(0.504)
    assert claims.evaluate("eggroll.reasoning.improves", results=rec, record=False)["holds"]
    # 0.05 below: inferior; and a wide interval around 0 is not non-inferiority either
    assert not claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", record=False,
                               results=_record([0.57, 0.58, 0.57, 0.58, 0.57], [0.62, 0.63, 0.62, 0.63, 0.62], start))["holds"]
    assert not claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", record=False,
                               results=_record([0.4, 0.8, 0.5, 0.7, 0.6], [0.5, 0.7, 0.6, 0.6, 0.6], start))["holds"]
    # no better than the checkpoint: does not improve (greedy start 0.5)
    assert not claims.evaluate("eggroll.reasoning.improves", record=False,
                               results=_record([0.5, 0.52, 0.49, 0.5, 0.51], [0.6] * 5, start))["holds"]
    assert claims.evaluate("eggroll.reasoning.memory", results=rec, record=False)["measured"] == 2.0


def test_equal_token_claim_reads_each_run_at_the_fewest_tokens_any_run_generated():
    start = [0, 1] * 100
    # EGGROLL's curves run 0.5 -> f over 4,000 tokens, GRPO's 0.5 -> g over 1,000: at 1,000 tokens
    # EGGROLL is a quarter of the way, 0.5 + (f - 0.5) / 4
    rec = _record([0.70, 0.74, 0.70, 0.74], [0.55, 0.56, 0.55, 0.56], start)
    vs = claims.evaluate("eggroll.reasoning.vs_grpo", results=rec, record=False)
    assert vs["details"]["at_tokens"] == 1000
    assert vs["details"]["eggroll_per_seed"] == pytest.approx([0.55, 0.56, 0.55, 0.56])
    assert vs["details"]["grpo_per_seed"] == pytest.approx([0.55, 0.56, 0.55, 0.56])
    assert vs["details"]["difference"] == pytest.approx(0.0, abs=1e-12) and vs["holds"]
    # at equal wall-clock the same runs differ by 0.165
    assert claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", results=rec,
                           record=False)["details"]["difference"] == pytest.approx(0.165)
    with pytest.raises(ValueError, match="within the curve's range"):
        reasoning_claims.greedy_at_tokens(rec["data"]["grpo"]["logs"][0], 2000)
    # curves measured on the validation split cannot be read as test accuracy
    rec["config"]["finetune"]["eval_split"] = "val"
    with pytest.raises(ValueError, match="test split"):
        claims.evaluate("eggroll.reasoning.vs_grpo", results=rec, record=False)


def test_records_without_greedy_accuracy_are_refused_with_a_clear_error():
    rec = _record([0.6] * 3, [0.6] * 3, [0, 1] * 10)
    del rec["data"]["eggroll"]["final_greedy"]
    with pytest.raises(ValueError, match="final_greedy"):
        claims.evaluate("eggroll.reasoning.vs_grpo_wallclock", results=rec, record=False)


def test_signal_claim_compares_eggroll_with_its_shuffled_fitness_null():
    start = [0, 1] * 100
    rec = _record([0.60, 0.61, 0.60, 0.61, 0.60], [0.62] * 5, start)
    with pytest.raises(ValueError, match="eggroll_null"):
        claims.evaluate("eggroll.reasoning.signal", results=rec, record=False)
    logs = rec["data"]["eggroll"]["logs"]
    null = [0.50, 0.52, 0.51, 0.50, 0.52]
    rec["data"]["eggroll_null"] = {"final": [f - 0.1 for f in null], "final_greedy": null, "logs": logs}
    sig = claims.evaluate("eggroll.reasoning.signal", results=rec, record=False)
    assert sig["holds"] and sig["details"]["difference"] == pytest.approx(0.604 - 0.51)
    assert sig["measured"] == pytest.approx(sig["details"]["difference"] - sig["details"]["ci_half"])
    assert sig["details"]["null_gain"] == pytest.approx(0.01)
    # a null as good as the real run: no signal
    rec["data"]["eggroll_null"]["final_greedy"] = [0.61, 0.60, 0.61, 0.60, 0.61]
    assert not claims.evaluate("eggroll.reasoning.signal", results=rec, record=False)["holds"]
    # the record's readers show every arm it holds, and records without the null still read
    from lowrank_es.experiments import reasoning

    assert reasoning.arms(rec) == ("eggroll", "grpo", "eggroll_null")
    assert any("shuffled fitness" in line for line in reasoning.summary_lines(rec))
    del rec["data"]["eggroll_null"]
    assert reasoning.arms(rec) == ("eggroll", "grpo") and len(reasoning.summary_lines(rec)) == 3


def test_cached_problems_and_verdicts_are_fresh_and_equal():
    """Problem sets and verdicts are cached: a caller changing its list does not change the next
    caller's, and numpy-typed numbers get the same verdict as ints."""
    first = rs.make_problems("val", 20, seed=0)
    first.clear()
    assert len(rs.make_problems("val", 20, seed=0)) == 20
    assert isinstance(rs.make_addition_problems("val", 5), list)  # uncached: still the list it is annotated as
    assert rs.verify_countdown(np.array([4, 7, 2]), np.int64(22), "(4+7)*2") == rs.verify_countdown((4, 7, 2), 22, "(4+7)*2")
