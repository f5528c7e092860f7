"""The population sharded across two processes (``jax.distributed`` on localhost, CPU) gives the
same EGGROLL update as one process.

The test starts this file twice as a worker: each process owns one CPU device of a two-device
mesh, evaluates its half of the population (checked: 8 of 16 fitness values are local), and the
gradient's sum over noise draws is all-reduced across the processes by XLA (gloo). Process 0
writes the updated parameters; the test compares them with a single-process ``es.step``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POPULATION = 16


def _problem():
    """The ES, its start state and the fitness, identical in every process."""
    import jax
    import jax.numpy as jnp
    import optax

    from lowrank_es.es.eggroll import EGGROLL
    from lowrank_es.models.mlp import mlp_apply, mlp_init

    es = EGGROLL(sigma=0.1, population=POPULATION, rank=2, optimizer=optax.sgd(0.5))
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
    y = jnp.sin(x[:, :2])
    state = es.init(jax.random.key(7), mlp_init(jax.random.PRNGKey(0), (4, 8, 2)))
    return es, state, lambda p, n, i: -jnp.mean((mlp_apply(p, x, n) - y) ** 2)


def _worker(process_id: int, port: int, out: str) -> None:
    import lowrank_es  # noqa: F401  (the portable XLA flags, before any backend starts)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                               initialization_timeout=60)
    from jax.experimental import multihost_utils

    es, state, fitness = _problem()
    mesh = jax.make_mesh((2,), ("pop",), axis_types=(jax.sharding.AxisType.Auto,))
    # the same start state in both processes, as arrays over the global mesh (replicated)
    state = jax.tree_util.tree_map(
        lambda a: a if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
        else multihost_utils.host_local_array_to_global_array(a, mesh, jax.sharding.PartitionSpec()), state)
    f = jax.jit(lambda s: es.evaluate(s, fitness, mesh=mesh))(state)
    local = sum(s.data.shape[0] for s in f.addressable_shards)
    new, _ = jax.jit(lambda s: es.step(s, fitness, mesh=mesh))(state)
    # collectives: every process calls them, process 0 writes
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(multihost_utils.process_allgather(new.params, tiled=True))]
    fit = np.asarray(multihost_utils.process_allgather(f, tiled=True))
    if process_id == 0:
        np.savez(out, local=local, fitness=fit, *leaves)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_single_process_update(tmp_path):
    import jax

    out = tmp_path / "sharded.npz"
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)  # both workers take the package's portable flags, like this process
    procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port), str(out)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:  # a worker left hanging (e.g. its peer died) must not outlive the test
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-3000:]

    es, state, fitness = _problem()
    new, _ = jax.jit(lambda s: es.step(s, fitness))(state)
    with np.load(out) as got:
        assert int(got["local"]) == POPULATION // 2  # each process evaluated half of the population
        np.testing.assert_allclose(got["fitness"], jax.jit(lambda s: es.evaluate(s, fitness))(state), rtol=1e-6)
        sharded = [got[f"arr_{i}"] for i in range(len(got.files) - 2)]
    ref = [np.asarray(x) for x in jax.tree_util.tree_leaves(new.params)]
    moved = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]
    assert len(sharded) == len(ref)
    for a, b, before in zip(sharded, ref, moved):
        # the cross-process all-reduce sums the draws in another order: float32 rounding only
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert np.abs(b - before).max() > 1e-3  # the update is not trivially zero


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
