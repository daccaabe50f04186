# promo: `make demo` runs the pipeline on a local sandbox; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_TOOLS := buildah docker-registry skopeo git postgresql chromium
DEMO_DIR ?= .promo-demo
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup system-tools venv demo test test-slow bench clean

setup: system-tools venv

# Debian package names equal the command names, except postgresql: Debian keeps its binaries off PATH, in
# /usr/lib/postgresql/<major>/bin (the integration tests start a throwaway cluster with that initdb).
# chromium is the browser tests/integration/test_ui_approval.py drives (Playwright's own download is not used).
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  case $$tool in \
	    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing $$tool";; \
	    *) command -v $$tool >/dev/null || missing="$$missing $$tool";; \
	  esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system tools:$$missing; install them (Debian: sudo apt-get install$$missing) and run make again" >&2; exit 1; \
	  fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The local Prefect server (UI at the URL it prints) and a worker stay up after the demo, which leaves one promotion
# waiting at its gate there; `make clean` stops them. Stage and prod go through pull requests on the sandbox's
# GitHub stand-in, each approved by alice's review (docs/github.md). The sandbox comes first, for its GitHub tokens:
# the worker gets demo's in its environment (never on a command line), so a promotion started from the Prefect UI
# opens its pull request and the watcher reads it as promo does on the command line.
demo: setup
	$(BIN)/promo sandbox $(DEMO_DIR) >/dev/null
	GITHUB_TOKEN="$$($(BIN)/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["demo"])' \
	  $(DEMO_DIR)/github-tokens.json)" $(BIN)/promo server start --with-worker
	$(BIN)/promo demo --dir $(DEMO_DIR)

# Two tiers, as Prefect's own suite: `make test` is the fast tier (unit and flow tests on one Prefect test server per
# pytest process, a small many-worker round), in TEST_PROCESSES processes because its tests mostly wait on servers
# and subprocesses; `make test-slow` is the tests marked `slow` (server restarts, stranded slots, their own
# PostgreSQL, the browser, the crash suites), one at a time. CI (.ci/run) runs both, fast first.
TEST_PROCESSES ?= 4
test: setup
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_PROCESSES) --dist loadfile

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# bench/README.md: the benchmarks against their floors, one table of medians (about 30-40 minutes on 2 cores).
# hyperfine times the shell floors; without it (and not root) the benches still run and time them in Python.
bench: setup
	@command -v hyperfine >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing: hyperfine"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; \
	  else \
	    echo "hyperfine not found (Debian: sudo apt-get install hyperfine); the shell floors are timed in Python only" >&2; \
	  fi; \
	}
	$(BIN)/python bench/run.py $(BENCH)

# Stops the local server, its worker and the demo's sandbox, and removes the sandbox; the server's database stays.
clean:
	-$(BIN)/promo server stop
	-$(BIN)/promo sandbox $(DEMO_DIR) --stop
	rm -rf $(DEMO_DIR) .pytest_cache
	@echo "left: the local Prefect server's database and logs in $${PROMO_HOME:-$$HOME/.promo}/server (remove that folder to start afresh)"
