"""Side-by-side speed and memory: npembed vs Keras (fit, jit_compile) vs PyTorch eager.

    python -m benchmarks            # the full run: epochs, inference, sweeps, floor -> results + charts
    python -m benchmarks --quick    # a smoke run (CI): a few hundred steps, npembed and Keras only

Every framework runs in its own process on the same prebuilt batches (benchmarks/workload.py),
so that imports, threads and memory of one never touch another's numbers.
"""
