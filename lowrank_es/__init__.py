"""lowrank-es: low-rank evolution strategies (EGGROLL) and opponent shaping, in JAX.

Importing the package selects *portable* CPU numerics for XLA unless ``XLA_FLAGS`` is already
set: no CPU-specific fast math, code generated for at most AVX2, and no XNNPACK / YNNPACK
kernels (which pick instructions at run time); and LLVM's optimisation level 1 instead of XLA's
default: on a 2-core CPU compiling dominates the quick runs and the tests, and level 1 compiles
the large training programs 1.3-2.3 times faster (the Coin Game BRS update 122 s -> 52 s)
while the compiled code ran between 20% slower and 20% faster in side-by-side runs (quick runs
of ``rl``, ``int8_lm`` and ``advantage_alignment``). XLA reads the flags when JAX first uses a
device, so this holds as long as the package is imported before the first computation. This
removes the differences that come from the vector units (AVX2, AVX-512), not all of them: LLVM
still tunes the generated code to the host CPU's model, and a change of CPU model has changed
the last printed digits of the chaotic quick runs (the LOLA trajectories of notebook 10, say).
The outputs saved in the notebooks are those of the machine that last ran them (README, "What
the tests check"). Set ``XLA_FLAGS`` yourself (even to an empty string) to use the native,
faster kernels instead.
"""

import os

__version__ = "0.1.0"

PORTABLE_XLA_FLAGS = " ".join([
    "--xla_cpu_enable_platform_dependent_math=false",
    "--xla_cpu_max_isa=AVX2",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_experimental_ynn_fusion_type=",
    "--xla_backend_optimization_level=1",
])

if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = PORTABLE_XLA_FLAGS
