# Engram: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TS_CLIENT := clients/typescript
TS_STAMP := $(TS_CLIENT)/node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit fuzz soak bench-search bench-spaces bench-ingest bench-encoders bench-fairness bench-stall bench-scaleout bench-quality console-screenshots lint typecheck docs-settings clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# torch is installed first and pinned: the CPU build lies on this machine's disk, and an
# unpinned resolver would pull a CUDA build of several GB through sentence-transformers.
# The client (clients/python) is its own distribution; the server's CLI and tests use it.
# langchain-engram (integrations/langchain) depends on that client, installed just before it;
# so does langgraph-engram (integrations/langgraph).
$(STAMP): pyproject.toml clients/python/pyproject.toml integrations/langchain/pyproject.toml \
		integrations/langgraph/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e clients/python
	$(BIN)/python -m pip install --quiet -e integrations/langchain
	$(BIN)/python -m pip install --quiet -e integrations/langgraph
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# the console's browser tests drive Debian's Chromium (Playwright cannot fetch browsers)
	test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@test -x /usr/bin/chromium || echo "no /usr/bin/chromium: install the chromium package" \
		"(as root: apt-get install chromium chromium-driver) or the console's browser tests skip"
	@# tests/integration/test_pgbouncer.py runs the API and worker through Debian's PgBouncer
	test -x /usr/sbin/pgbouncer || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq pgbouncer >/dev/null; }
	@test -x /usr/sbin/pgbouncer || echo "no /usr/sbin/pgbouncer: install the pgbouncer package" \
		"(as root: apt-get install pgbouncer) or the PgBouncer tests skip"
	touch $(STAMP)

# The TypeScript client (clients/typescript) is an npm package; make test runs its tests.
$(TS_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build
	touch $(TS_STAMP)

install: $(STAMP) $(TS_STAMP) ## create the virtualenv and install Engram with its dev tools

run: $(STAMP) ## start API + worker (embedded Postgres and Redis unless URLs are set)
	exec $(BIN)/engram run

test: $(STAMP) $(TS_STAMP) ## run the whole test suite against real servers
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## the tests that need no server or model, in seconds (tests/unit, the client's)
	$(BIN)/python -m pytest tests/unit clients/python/tests

fuzz: $(STAMP) ## longer property runs: every operation, bodies, query parameters, import lines (FUZZ_EXAMPLES=500)
	ENGRAM_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),500) $(BIN)/python -m pytest \
		tests/integration/test_fuzz.py tests/integration/test_hostile_input.py

soak: $(STAMP) ## bounded mixed ingest+search load with 2 workers (SOAK_SECONDS=120)
	$(BIN)/python bench/soak.py --seconds $(or $(SOAK_SECONDS),120)

bench-search: $(STAMP) ## search recall and latency at 1M vectors (ROWS=100000 to run smaller)
	$(BIN)/python bench/search.py --rows $(or $(ROWS),1000000)

bench-spaces: $(STAMP) ## vector(1536) vs halfvec(1536) at 100k vectors (ROWS=20000 to run smaller)
	$(BIN)/python bench/spaces.py --rows $(or $(ROWS),100000)

bench-ingest: $(STAMP) ## documents through the API vs raw encode() (DOCS=200 to run smaller)
	$(BIN)/python bench/ingest.py --docs $(or $(DOCS),2000)

bench-encoders: $(STAMP) ## torch vs ONNX Runtime fp32/int8: speed, top-10 agreement (TEXTS=500 smaller)
	$(BIN)/python bench/encoders.py --texts $(or $(TEXTS),2000)

bench-fairness: $(STAMP) ## a chat memory with wait during another user's bulk load of about 10,000 chunks, against idle; the load against alone (DOCS=200 smaller)
	$(BIN)/python bench/fairness.py --docs $(or $(DOCS),2000)

bench-stall: $(STAMP) ## /healthz while the worst request of each class runs, against /healthz alone
	$(BIN)/python bench/stall.py

bench-scaleout: $(STAMP) ## throughput as API and worker processes (and a replica) are added (ROUNDS=1, QUERIES=vector)
	$(BIN)/python bench/scaleout.py --rounds $(or $(ROUNDS),3) --seconds $(or $(SCALE_SECONDS),20) \
		--queries $(or $(QUERIES),text)

bench-quality: $(STAMP) ## LoCoMo questions: Engram's search and context beside MiniLM and BM25 (FILE=, CONVERSATIONS=n, SWEEP=1)
	@test -n "$(FILE)" || { echo "make bench-quality FILE=path/to/locomo10.json [CONVERSATIONS=n]:" \
		"LoCoMo's data/locomo10.json, from the snap-research/LoCoMo repository on GitHub" >&2; exit 2; }
	$(BIN)/python bench/quality.py '$(FILE)' $(if $(CONVERSATIONS),--conversations $(CONVERSATIONS)) \
		$(if $(SWEEP),--sweep)

console-screenshots: $(STAMP) ## photograph the console's main pages into docs/console/ (Chromium)
	ENGRAM_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/python -m pytest \
		tests/integration/test_console.py

lint: $(STAMP) ## ruff
	$(BIN)/ruff check service worker models migrations tests bench clients integrations

docs-settings: $(STAMP) ## render the README's configuration tables from models/settings.py
	$(BIN)/python -c "import re, pathlib; from models.settings import settings_table; \
	readme = pathlib.Path('README.md'); text = readme.read_text(); \
	start, end = '<!-- settings: rendered by \`make docs-settings\` from models/settings.py -->\n', '<!-- /settings -->'; \
	head, rest = text.split(start); readme.write_text(head + start + settings_table() + end + rest.split(end, 1)[1])"

typecheck: $(STAMP) ## mypy (strict) on our packages
	$(BIN)/mypy

clean: ## remove the virtualenv and caches (not ENGRAM_HOME)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
	rm -rf $(TS_CLIENT)/node_modules $(TS_CLIENT)/dist $(TS_CLIENT)/build
