"""How fast low-rank ES approaches full-rank (Gaussian) ES: exact expectations and float64
Monte Carlo (see ``theory/low_rank_convergence.md`` for the derivation). No plotting here:
the figures are drawn by :mod:`lowrank_es.experiments.theory`.

For a matrix ``W`` (shape ``(m, n)``) and an objective ``f``, the expected ES gradient with
perturbation ``E`` is ``g(W) = E[f(W + sigma E) E] / sigma``. Low-rank ES uses
``E = A B^T / sqrt(r)`` (``A: (m, r)``, ``B: (n, r)`` standard normal); full-rank ES uses a
standard normal ``Z``. Both have identity covariance, so ``g_r - g_inf`` starts at the fourth
cumulant of ``E``, which is ``O(1/r)``.

Modules: ``problems`` (the objectives), ``moments`` (of one entry of ``E``), ``exact`` (closed
forms and quadrature), ``noise`` (the optimiser's own perturbations), ``montecarlo`` (float64
estimators), ``slopes`` (error against rank, log-log fits), ``updates`` (rank of the averaged
update), ``population`` (rank bias against population noise). Everything public is
re-exported here: ``from lowrank_es import theory; theory.make_problem(...)``.
"""

from __future__ import annotations

from lowrank_es.theory.exact import (
    bump_smoothed_derivative,
    expected_gradient,
    relative_error,
    separable_expected_gradient,
)
from lowrank_es.theory.moments import characteristic_function, entry_moments, fourth_moment
from lowrank_es.theory.montecarlo import MCEstimate, mc_gap, mc_gradient, noise_ratio
from lowrank_es.theory.noise import GAUSSIAN, gaussian_draws, lowrank_draws, lowrank_row_covariances
from lowrank_es.theory.population import population_mse, population_split
from lowrank_es.theory.problems import (
    CLOSED_FORM,
    NON_QUADRATIC,
    OBJECTIVES,
    Problem,
    make_problem,
    objective,
    true_gradient,
)
from lowrank_es.theory.slopes import SlopeFit, error_curve, fit_curve, fit_loglog_slope, slope_study, sqrt_rate_line
from lowrank_es.theory.updates import expected_update_rank, update_rank, update_ranks, update_singular_values

__all__ = [
    "CLOSED_FORM", "GAUSSIAN", "NON_QUADRATIC", "OBJECTIVES", "MCEstimate", "Problem", "SlopeFit",
    "bump_smoothed_derivative", "characteristic_function", "entry_moments", "error_curve",
    "expected_gradient", "expected_update_rank", "fit_curve", "fit_loglog_slope", "fourth_moment",
    "gaussian_draws", "lowrank_draws", "lowrank_row_covariances", "make_problem", "mc_gap", "mc_gradient",
    "noise_ratio", "objective", "population_mse", "population_split", "relative_error", "separable_expected_gradient",
    "slope_study", "sqrt_rate_line", "true_gradient", "update_rank", "update_ranks", "update_singular_values",
]
