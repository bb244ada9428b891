"""The one way into chain runs: check a chain and its input against what the
deployment offers, then start, read, list, decide and cancel runs on Temporal.

The API, the CLI, the demo, the benchmarks and the tests all go through here,
so there is one validation path, one id-reuse policy and one reading of a
failed run's partial result.
"""
