# The benchmark harness's make targets, included by the Makefile.
.PHONY: bench bench-quick

bench:         ## the benchmark vs its peers (~20 min): .reports/bench/, docs/benchmarks.md
	./scripts/bench

bench-quick:   ## a short smoke run of every section (docs untouched)
	./scripts/bench --quick
