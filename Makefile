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

# Tests start their own Mosquitto from broker_config/; they need the binary.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's mosquitto"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else \
	    echo "mosquitto is missing; install it with: sudo apt-get install mosquitto"; exit 1; \
	  fi; }

# Tests start their own VictoriaMetrics (the time-series store) on a free port; they need the binary.
victoria-metrics:
	@command -v victoria-metrics >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's victoria-metrics"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq victoria-metrics >/dev/null; \
	  else \
	    echo "victoria-metrics is missing; install it with: sudo apt-get install victoria-metrics"; exit 1; \
	  fi; }

# The backtest report's browser test opens the report in headless Chromium (driven by playwright).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing; install it with: sudo apt-get install chromium"; exit 1; \
	  fi; }

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
