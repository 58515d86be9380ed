# Two commands set up and use a fresh machine: `make diagnose` and `make test`.
# Both create .venv with `python3 -m venv` and install threadprobe into it first.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
OUT      ?= reports
BASELINE ?=
ARGS     ?=

.PHONY: diagnose quick races races-ft test bench soak clean install docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'
	touch $@

install: $(STAMP)

# PYTHON_UNDER_TEST: diagnose another interpreter's libraries (a system Python, a conda env).
PYTHON_UNDER_TEST ?=
diagnose: $(STAMP)
	$(BIN)/threadprobe diagnose --out $(OUT) $(if $(BASELINE),--baseline $(BASELINE)) \
		$(if $(PYTHON_UNDER_TEST),--python $(PYTHON_UNDER_TEST)) $(ARGS)

quick: $(STAMP)
	$(BIN)/threadprobe diagnose --quick --out $(OUT) $(ARGS)

# The race pass alone on every built-in probe: each probe's concurrent work under valgrind's
# helgrind (RACES=drd for DRD), in two lanes that share two fork servers under the detector, each
# importing its libraries once: a light one, and a heavy one with Iris, whose import the
# Iris probes wait for. Each pass is time-boxed by its probe (--race-seconds S for all). Remedies
# are verified by stress trials, which this pass alone does not run (make diagnose does): none are
# searched here. About 4 minutes on 2 cores (241 and 250 s, 2026-12-07).
RACES ?= helgrind
races: $(STAMP)
	$(BIN)/threadprobe diagnose --races $(RACES) --no-stress --remedies none --out $(OUT)/races \
		$(if $(PYTHON_UNDER_TEST),--python $(PYTHON_UNDER_TEST)) $(ARGS)

# The same pass on the free-threaded build with the GIL forced off (FT_PYTHON, default .venv-ft from
# .ci/freethreaded-up): nothing but locks orders the calls there, so it sees races in code that
# relies on the GIL (cf-units' udunits2 parser), which the GIL build's pass cannot. Its libraries are
# that venv's own builds; the report's interpreter line says which build a verdict comes from.
FT_PYTHON ?= .venv-ft/bin/python
races-ft: $(STAMP)
	test -x $(FT_PYTHON) || { echo "$(FT_PYTHON) is missing: .ci/freethreaded-up builds it" >&2; exit 2; }
	$(BIN)/threadprobe diagnose --python $(FT_PYTHON) --gil off --races $(RACES) --no-stress --remedies none \
		--out $(OUT)/races-ft $(ARGS)

# The newest stack first (.ci/newest-up: a venv of the newest CPython here with the newest Iris,
# diagnosed through --python by tests/test_newest.py), then every test in parallel
# (pytest-xdist): the timing-sensitive ones bring their own busy neighbour, so a second worker
# beside them changes nothing they depend on.
test: $(STAMP)
	.ci/newest-up
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not bench and not soak" $(ARGS)

# Benchmarks, each writing reports/*.json: harness and plugin overhead, detection power, verdict
# reproducibility, contention beside a busy neighbour, race amplification, the plugin on Iris's
# own suites (on the free-threaded build too, beside pytest-run-parallel, when .venv-ft exists),
# the runner's workloads under every scheduler, each repetition from a fresh diagnosis (makes
# about 6 GiB of data in reports/bench-data on first use), and the race pass's figures
# (tests/bench/races.py: about 2 hours). About 6 hours.
bench: $(STAMP)
	$(BIN)/python -m pytest -m bench -p no:xdist -s --timeout=0 $(ARGS)
	$(BIN)/python tests/bench/amplify.py --rounds 100
	$(BIN)/python tests/bench/iris_suites.py
	$(BIN)/python tests/bench/plugin_freethreaded.py
	$(BIN)/python tests/bench/repro_rate.py reports/repro
	$(BIN)/threadprobe bench wind --fresh --repeats 10
	$(BIN)/threadprobe bench load
	$(BIN)/python tests/bench/pilot_batch.py
	$(BIN)/python tests/bench/load_thread.py
	MALLOC_ARENA_MAX=1 $(BIN)/python tests/bench/load_thread.py --out reports/bench-load-thread-arena1.json
	$(BIN)/python tests/bench/wind_probe_scale.py
	test ! -x .venv-ft/bin/python || $(BIN)/threadprobe bench load --python $(BIN)/python --python .venv-ft/bin/python --repeats 10
	test ! -x .venv-ft/bin/python || $(BIN)/threadprobe bench wind --python $(BIN)/python --python .venv-ft/bin/python --repeats 5
	$(BIN)/python tests/bench/races.py
	$(BIN)/python tests/bench/triage.py --busy
	test ! -x .venv-ft/bin/python || $(BIN)/python tests/bench/freethreaded.py

# Long verification: the diagnosis against independent stress scripts, then REPS repetitions of
# two baseline-gated diagnoses in a row (~3 min each) and the gate replayed over the chain.
REPS ?= 10
soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -p no:xdist --timeout=0 $(ARGS)
	REPS=$(REPS) tests/soak/baseline_chain.sh
	$(BIN)/python tests/soak/noise.py

# The documentation site (docs/, Sphinx), in docs/_build/html: warnings are errors, references
# are checked (nitpicky). The CLI reference, the API, the schema and the benchmark pages are made
# from the parser, the docstrings, the schema file and reports/bench*.json at every build.
# make test builds it too (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) .venv-newest build *.egg-info .hypothesis docs/_build docs/_generated
