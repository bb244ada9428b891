# Chorus: two commands to try it, one to test it.
#   make demo   set up .venv and run the flagship chain on the embedded stack
#   make test   lint and import contracts, then the whole test suite (real Temporal, real simulator)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint fmt bench histories clean

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,compare,local-embeddings]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/chorus demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadscope --durations=15

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python bench/overhead.py --steps 20 --repeat 5

# Retrieval quality (hit@1, hit@3, MRR, "nothing relevant") on the in-sample and
# held-out questions, per backend and ranking mode: make bench-retrieval-eval
.PHONY: bench-retrieval-eval
bench-retrieval-eval: venv
	$(BIN)/python bench/retrieval_eval.py

# 1,000 runs parked on an approval, Chorus beside a raw signal workflow: make bench-waiting RUNS=1000
.PHONY: bench-waiting
bench-waiting: venv
	$(BIN)/python bench/waiting.py --runs $(or $(RUNS),1000)

# K chains of S model steps at once, Chorus beside raw Temporal (activities/s), one or two
# worker processes per side: make bench-throughput WORKERS=2
.PHONY: bench-throughput
bench-throughput: venv
	$(BIN)/python bench/throughput.py --workers $(or $(WORKERS),1)

# The API under concurrent load, on SQLite and PostgreSQL (127.0.0.1:5432/test, or
# CHORUS_BENCH_POSTGRES_URL): make bench-load BACKENDS=sqlite ROUNDS=3
.PHONY: bench-load
BACKENDS ?= sqlite,postgresql
ROUNDS ?= 1
bench-load: venv
	$(BIN)/python bench/load.py --backends $(BACKENDS) --rounds $(ROUNDS)

# chorus compare, offline: one strong model, the routed flagship and a cascade on the shipped
# eval set, on a dev stack of its own (its own ports and state directory, so a running
# `chorus dev` and its plain simulator are never reused) whose simulator has the quality
# profiles; the HTML report and the plot go to reports/compare: make compare CONCURRENCY=8
# (`exec`: make passes a SIGTERM to its child, which must be chorus, not a shell that dies
# and leaves it running; chorus compare then stops the stack it started)
COMPARE_VARIANTS ?= support_single_strong,support_triage,support_cascade
COMPARE_ENV = CHORUS_STATE_DIR=.state/compare CHORUS_TEMPORAL_ADDRESS=127.0.0.1:7243 \
	CHORUS_TEMPORAL_UI_PORT=8243 CHORUS_SIMULATOR_PORT=8410 CHORUS_CODEC_SERVER_PORT=8091 \
	CHORUS_API_PORT=8010 CHORUS_SIMULATOR_CONFIG=simulator/quality_models.yaml \
	CHORUS_MODELS_FILE=chains/models.yaml CHORUS_CHAINS_DIR=chains CHORUS_DATABASE_URL=
.PHONY: compare
compare: venv
	$(COMPARE_ENV) exec $(BIN)/chorus compare evals/support_tickets.yaml \
		--variants $(COMPARE_VARIANTS) --concurrency $(or $(CONCURRENCY),6) --out reports/compare

# SIGKILL a worker the instant a provider's reply is sent, KILLS times across the
# flagship's model steps: calls made twice and calls missing from the runs' cost
.PHONY: bench-kill
bench-kill: venv
	$(BIN)/python bench/kill_window.py --kills $(or $(KILLS),24)

# Record replay histories of the shipped chains: make histories TAG=my_patch_id
histories: venv
	@test -n "$(TAG)" || (echo "usage: make histories TAG=<workflow version or patch id>"; exit 2)
	$(BIN)/python -m tests.histories.record --tag $(TAG)

clean:
	rm -rf .state .ruff_cache .pytest_cache

# Knowledge search at 40,000 chunks on SQLite and PostgreSQL (127.0.0.1:5432/test, or
# CHORUS_BENCH_POSTGRES_URL): ingest time, p50/p99 of short, long and common-words queries:
# make bench-retrieval CHUNKS=40000 BACKENDS=sqlite,postgresql
.PHONY: bench-retrieval
bench-retrieval: venv
	$(BIN)/python bench/retrieval_scale.py --backends $(BACKENDS) --chunks $(or $(CHUNKS),40000)
