# Everything a fresh Debian machine needs, as root: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# The newest lines' Airflow (and what a working install of it holds), from devtools/lines.py (the
# one table of tested lines; stdlib only).
AIRFLOW3 ?= $(shell $(PYTHON) -m devtools.lines requirements 3)
AIRFLOW2 ?= $(shell $(PYTHON) -m devtools.lines requirements af2)
VENV ?= .venv
VENV2 ?= .venv-af2
UV := $(VENV)/bin/uv
PYTEST_ARGS ?=

.PHONY: test demo lint typecheck unit system-deps venv venv2 lines bench clean services

# Debian's packages the tests run as the project's own processes, on free loopback ports:
# Prometheus and VictoriaMetrics (the backends), PostgreSQL and Redis (the Celery topology); Chromium
# and its driver for the UI tests. Installing a package must not start its services: a policy-rc.d forbids it for the
# install (one already in place is left as it is), and nothing running on the machine is stopped.
system-deps:
	@missing=; \
	command -v prometheus >/dev/null && command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v victoria-metrics >/dev/null && command -v vmctl >/dev/null || missing="$$missing victoria-metrics"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	[ -z "$$missing" ] || { \
	  echo "installing$$missing from Debian's packages (their services are not started)"; \
	  policy=/usr/sbin/policy-rc.d; own=; \
	  if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod 755 $$policy && own=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  rc=$$?; [ -z "$$own" ] || rm -f $$policy; exit $$rc; }

$(VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv
	$(UV) pip install -q -p $(VENV)/bin/python -e '.[test,kubernetes,browser]' $(AIRFLOW3)
	touch $@

$(VENV2)/.done: pyproject.toml $(VENV)/.done
	$(UV) venv -q --clear -p $(PYTHON) $(VENV2)
	$(UV) pip install -q -p $(VENV2)/bin/python -e '.[test,kubernetes,browser]' $(AIRFLOW2)
	touch $@

venv: $(VENV)/.done
venv2: $(VENV2)/.done

# The dated lines (devtools/lines.py): Airflow and a managed image's providers as PyPI had them on a
# date, then the provider and the test tools held to them; built side by side, from uv's cache.
lines: venv
	$(VENV)/bin/python -m devtools.lines build-dated

lint: venv
	$(VENV)/bin/ruff check finout_provider airflow_provider_finout dags devtools tests benchmarks
	$(VENV)/bin/ruff format --check finout_provider airflow_provider_finout dags devtools tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

# Every line of devtools/lines.py: the full suite on the newest Airflow 3, two lines at a time.
test: system-deps venv venv2 lines lint typecheck
	$(VENV)/bin/python -m devtools.lines test $(PYTEST_ARGS)

demo: system-deps venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/python -m devtools.demo

# Postgres and Redis for a CeleryExecutor Airflow of your own, on loopback; Ctrl-C stops them.
services: system-deps venv
	$(VENV)/bin/python -m devtools.services

bench: system-deps venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(VENV2) .venv-[0-9]* build *.egg-info .pytest_cache .mypy_cache .ruff_cache
