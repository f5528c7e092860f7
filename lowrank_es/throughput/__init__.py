"""The throughput and memory benchmark library: EGGROLL's population forward against plain batched
inference and naive full-rank ES, measured side by side on one device.

    programs  the models and the compiled programs (contenders, profiling splits, analytic sizes)
    timing    compile, warm up, time in interleaved rounds; memory and device information
    sweep     one point, its profiles, the grid of a run (SweepConfig)
    summary   paired ratios, the claimed points and the one row look-up (claim_point)
    tables    text and Markdown views;  plots: figures;  report: benchmarks/RESULTS.md

The experiment ``throughput`` (lowrank_es.experiments.throughput) runs it at the scales quick,
reference and gpu; ``python -m benchmarks.throughput`` is its command line.
"""
