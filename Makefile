# citysense — the two commands a fresh machine needs: `make demo` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-dev
ARGS    ?=

.PHONY: demo test lint bench services mosquitto postgres victoria-metrics chromium asyncapi openapi clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/citysense demo $(ARGS)

test: $(STAMP) services
	$(VENV)/bin/pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP) mosquitto victoria-metrics
	$(PY) -m bench $(ARGS)

asyncapi: $(STAMP)
	$(PY) -m protocol.asyncapi > docs/asyncapi.yaml

openapi: $(STAMP)
	$(PY) -m center.openapi > docs/openapi.json

services: mosquitto postgres victoria-metrics chromium

# A Debian package whose command is missing: installed when run as root, else how to install it.
define debian_package
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's $(1)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	  else \
	    echo "$(1) is missing; install it with: sudo apt-get install $(1)"; exit 1; \
	  fi; }
endef

# Tests start their own Mosquitto from broker_config/; they need the binary.
mosquitto:
	$(call debian_package,mosquitto)

# Tests start their own VictoriaMetrics (the time-series store) on a free port; they need the binary.
victoria-metrics:
	$(call debian_package,victoria-metrics)

# The browser tests (backtest report, dashboard) drive headless Chromium through playwright.
chromium:
	$(call debian_package,chromium)

# The PostgreSQL half of the case-store tests needs a server on 127.0.0.1:5432
# (user postgres, trust auth); start the machine's cluster if it is installed but down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
	  if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start; \
	  fi; \
	  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
	    echo "PostgreSQL is not reachable on 127.0.0.1:5432 (user postgres, trust auth)"; exit 1; }; }

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
