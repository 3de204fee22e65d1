# amd-host-device — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
PLUGIN := $(VENV)/bin/amd-host-device
APT_PACKAGES := iproute2 ethtool containernetworking-plugins iputils-ping util-linux python3-venv
PYTEST_ARGS ?=

.PHONY: setup apt venv test unit integration lint demo bench clean

setup: apt venv

# Install only the Debian packages this machine lacks.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS)

# Every test: lint, unit, integration (root, namespaces, the real host-device).
test: setup lint
	$(VENV)/bin/pytest -q tests $(PYTEST_ARGS)

demo: setup
	$(VPY) hack/demo.py

bench: setup
	$(VPY) hack/bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench-results
