# The two commands: `make run` (a dev node serving JSON-RPC on 127.0.0.1:9944) and `make test`.
PY := .venv/bin/python

.PHONY: setup run test check bench clean

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/statemesh node --dev

# Tests run in four processes side by side (a file's tests stay together, in one process), then
# those that measure block intervals under load run alone.
test: setup
	$(PY) -m pytest -q -n 4 --dist loadfile -m "not serial"
	$(PY) -m pytest -q -m serial

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
