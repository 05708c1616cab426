"""Benchmark harness for gradtx: optimizer step time, compile time, memory and bandwidth against
Optax and torch.optim. Run ``python -m benchmarks`` from the repository root (``--help`` lists
the options); it writes a Markdown report (``BENCHMARKS.md`` by default)."""
