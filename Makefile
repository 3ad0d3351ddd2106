# The two commands: `make run` (a dev node serving JSON-RPC on 127.0.0.1:9944) and `make test`.
PY := .venv/bin/python
# Compiled modules are cached in __pycache__ even where the environment asks Python not to write
# them: every node process, client command and test worker would otherwise compile the project
# (and pytest rewrite every test module) again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run test check bench clean

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/statemesh node --dev

# Tests run in four processes side by side (a file's tests stay together, in one process), then
# those that measure block intervals under load, or read the host rules another engine starting
# would rewrite, run in two: one file each, and only one of them (the sandbox's) starts an engine.
test: setup
	$(PY) -m pytest -q -n 4 --dist loadfile -m "not serial" --durations=25
	$(PY) -m pytest -q -n 2 --dist loadfile -m serial --durations=10

check: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

# Benchmarks run as modules from the repository root; each also takes --smoke (tiny sizes),
# which the tests run for every one of them.
bench: setup
	$(PY) -m bench.block_import
	$(PY) -m bench.rpc_header
	$(PY) -m bench.end_to_end

clean:
	rm -rf .venv build *.egg-info
