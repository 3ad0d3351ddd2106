# The two commands: `make run` (a dev node serving JSON-RPC on 127.0.0.1:9944) and `make test`.
PY := .venv/bin/python

.PHONY: setup run test check bench clean

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/statemesh node --dev

test: setup
	$(PY) -m pytest -q

check: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: setup
	$(PY) bench/block_import.py
	$(PY) bench/rpc_header.py
	$(PY) bench/end_to_end.py

clean:
	rm -rf .venv build *.egg-info
