"""lowrank-es: low-rank evolution strategies (EGGROLL) and opponent shaping, in JAX.

Importing the package selects *portable* CPU numerics for XLA unless ``XLA_FLAGS`` is already
set: no CPU-specific fast math, code generated for at most AVX2, and no XNNPACK / YNNPACK
kernels (which pick instructions at run time). XLA reads the flags when JAX first uses a
device, so this holds as long as the package is imported before the first computation. Two
x86-64 machines with different vector units (AVX2, AVX-512) then compute the same bits, and
the outputs saved in the notebooks compare equal wherever the tests run. Set ``XLA_FLAGS``
yourself (even to an empty string) to use the native, faster kernels instead.
"""

import os

__version__ = "0.1.0"

PORTABLE_XLA_FLAGS = " ".join([
    "--xla_cpu_enable_platform_dependent_math=false",
    "--xla_cpu_max_isa=AVX2",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_experimental_ynn_fusion_type=",
])

if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = PORTABLE_XLA_FLAGS
