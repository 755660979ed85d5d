# graphhook — `make demo`, `make test`, `make bench` work from a fresh clone with only Python 3.10+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-dev
SDK_STAMP = $(VENV)/.installed-sdk

.PHONY: demo test test-sdk bench soak lint clean install constraints

# Dependencies at the exact versions of constraints.txt (what the tests last passed with); `make constraints` refreshes it.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/graphhook demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --ignore=tests/sdk

# Microsoft's msgraph-sdk driving the emulator as an outside client (docs/emulator.md); its own extra, as it is big.
$(SDK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,sdk]'
	touch $(SDK_STAMP)

test-sdk: $(SDK_STAMP)
	$(BIN)/python -m pytest -q tests/sdk

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Proof under load and faults (README): 10,000 messages through crashes and faults, then 100,000 fuzzed requests.
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --messages 10000 --mailboxes 50
	GRAPHHOOK_FUZZ_REQUESTS=100000 $(BIN)/python -m pytest -q tests/test_fuzz_receiver.py

# Refresh the pins: the newest versions setup.cfg allows, in a scratch virtualenv; then `make test` reinstalls from
# them and runs the suite; commit constraints.txt only if it passes (deploy/README.md "Refreshing the pins").
CONSTRAINTS_VENV = .venv-constraints
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(CONSTRAINTS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '.[dev]'
	$(CONSTRAINTS_VENV)/bin/python deploy/constraints.py > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(CONSTRAINTS_VENV)

clean:
	rm -rf $(VENV) $(CONSTRAINTS_VENV) *.egg-info .pytest_cache .hypothesis
