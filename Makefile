# Two commands set up and use a fresh machine: `make diagnose` and `make test`.
# Both create .venv with `python3 -m venv` and install threadprobe into it first.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
OUT      ?= reports
BASELINE ?=
ARGS     ?=

.PHONY: diagnose quick test bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(STAMP)

diagnose: $(STAMP)
	$(BIN)/threadprobe diagnose --out $(OUT) $(if $(BASELINE),--baseline $(BASELINE)) $(ARGS)

quick: $(STAMP)
	$(BIN)/threadprobe diagnose --quick --out $(OUT) $(ARGS)

# Two phases: everything in parallel (pytest-xdist), then the timing-sensitive tests alone,
# because a second worker on 2 cores would take the core their threads need.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not bench and not alone" $(ARGS)
	$(BIN)/python -m pytest -p no:xdist -m "alone" $(ARGS)

# Benchmarks: harness overhead, plugin overhead, recommend's answer time, then the runner's
# workloads under every scheduler (makes ~2 GiB of data in reports/bench-data on first use).
bench: $(STAMP)
	$(BIN)/python -m pytest -m bench -p no:xdist -s $(ARGS)
	$(BIN)/threadprobe bench wind
	$(BIN)/threadprobe bench load

# Issue 6's figure: REPS repetitions of two baseline-gated diagnoses in a row (~2.5 min each),
# then the gate replayed over the chain and the scaling noise (exit 1 below 9 clean of 10).
REPS ?= 10
soak: $(STAMP)
	REPS=$(REPS) tests/soak/baseline_chain.sh
	$(BIN)/python tests/soak/noise.py

clean:
	rm -rf $(VENV) build *.egg-info .hypothesis
