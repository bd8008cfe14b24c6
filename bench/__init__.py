"""The benchmark harness: this stack and the servers users pick instead, on the same app, the same
CPU budget and the same machine, in one run. `python -m bench --help`; docs/benchmarks.md."""
