# amd-host-device — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
PLUGIN := $(VENV)/bin/amd-host-device
APT_PACKAGES := iproute2 ethtool containernetworking-plugins iputils-ping util-linux python3-venv \
                patchelf podman buildah runc containerd debootstrap gcc libc6-dev dash
PYTEST_ARGS ?=
# The release, from its one source of truth (plugin/__init__.py; pyproject reads it too).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' plugin/__init__.py)
IMAGE ?= localhost/amd-host-device:$(VERSION)
BASE_IMAGE ?= localhost/amd-host-device-base:bookworm
export CONTAINERS_CONF := $(CURDIR)/hack/containers.conf

PROBE_IMAGE ?= localhost/amd-host-device-probe:bookworm
SANDBOX_IMAGE ?= localhost/amd-host-device-pause:bookworm

.PHONY: setup apt venv test unit integration lint demo bench clean wheels bundle base-image \
        image test-image test-installed probe-image e2e e2e-podman e2e-kind version \
        test-empty-root test-nodes

setup: apt venv

# The release this tree builds (tests/unit/test_version.py holds everything else to it).
version:
	@echo $(VERSION)

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

$(VENV)/.installed: pyproject.toml plugin/__init__.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Unit tests need no privilege, and prove it: run as root (make test), they run as nobody,
# with no capabilities, HOME, TMPDIR and hypothesis's database in a throwaway dir and no
# cache or bytecode written into the tree.
UNPRIVILEGED := setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all
unit: setup
	@tmp=$$(mktemp -d /tmp/ahd-unit.XXXXXX) && drop= && \
	  if [ "$$(id -u)" = 0 ]; then chown nobody:nogroup $$tmp; drop="$(UNPRIVILEGED)"; fi; \
	  env HOME=$$tmp TMPDIR=$$tmp HYPOTHESIS_STORAGE_DIRECTORY=$$tmp/hypothesis \
	    PYTHONDONTWRITEBYTECODE=1 $$drop $(VENV)/bin/pytest -q -p no:cacheprovider \
	    tests/unit $(PYTEST_ARGS); rc=$$?; rm -rf $$tmp; exit $$rc

integration: setup
	$(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS)

# Every test: lint, unit, property, integration (root, namespaces, the real host-device),
# the image (build, install, upgrade), and the integration suite again against the binary
# the image installed.
test: setup lint unit
	$(VENV)/bin/pytest -q tests/property tests/security tests/integration $(PYTEST_ARGS)
	$(MAKE) test-nodes e2e test-image test-installed e2e-podman

# The bundle installed into an empty root (no libc, no /bin/sh, no ip) and run there: ADD,
# CHECK, DEL and doctor (tests/nodes). Seconds.
test-empty-root: bundle
	AHD_BUNDLE=$(CURDIR)/build/bundle AHD_NODE_ROOTS=empty $(VENV)/bin/pytest -q tests/nodes $(PYTEST_ARGS)

# The same in Debian 11 and 13 minbase roots as well (debootstrap'd once, then cached under
# /var/tmp/ahd-roots by hack/node-root.sh: the first run needs deb.debian.org).
test-nodes: bundle
	AHD_BUNDLE=$(CURDIR)/build/bundle AHD_NODE_ROOTS="empty bullseye trixie" \
	  $(VENV)/bin/pytest -q tests/nodes $(PYTEST_ARGS)

# Our wheel plus pinned sh, tenacity and prometheus_client: the image build installs these offline.
wheels: setup
	rm -rf build/wheels && mkdir -p build/wheels
	$(VPY) -m pip wheel -q --no-deps -w build/wheels .
	$(VPY) -m pip download -q --no-deps -d build/wheels \
	  "sh==$$($(VPY) -c 'import importlib.metadata as m; print(m.version("sh"))')" \
	  "tenacity==$$($(VPY) -c 'import importlib.metadata as m; print(m.version("tenacity"))')" \
	  "prometheus_client==$$($(VPY) -c 'import importlib.metadata as m; print(m.version("prometheus_client"))')"

# The frozen bundle, built on this machine (what the image ships, for benchmarks).
bundle: wheels
	$(VPY) container/freeze.py --out build/bundle --delegates /usr/lib/cni --wheels build/wheels

base-image: setup
	BASE_IMAGE=$(BASE_IMAGE) hack/make-base-image.sh

# Rebuilding leaves the previous image untagged: remove it (ours) so rebuilds do not pile up.
image: base-image wheels
	$(VENV)/bin/hadolint Dockerfile
	@old=$$(podman image inspect --format '{{.Id}}' $(IMAGE) 2>/dev/null); \
	buildah bud --quiet --isolation chroot --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg VERSION=$(VERSION) -t $(IMAGE) -f Dockerfile . || exit 1; \
	new=$$(podman image inspect --format '{{.Id}}' $(IMAGE)); \
	if [ -n "$$old" ] && [ "$$old" != "$$new" ]; then podman rmi "$$old" >/dev/null 2>&1 || true; fi

test-image: image
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) $(VENV)/bin/pytest -q tests/image $(PYTEST_ARGS)

# The integration suite once more, against the plugin as the image installs it on a node.
test-installed: image
	@host=$$(mktemp -d /var/tmp/ahd-installed.XXXXXX); \
	podman run --rm --network none -v $$host:/host/opt/cni/bin $(IMAGE) \
	  --host-dir /host/opt/cni/bin --node-dir $$host \
	&& AMD_HOST_DEVICE_PLUGIN=$$host/amd-host-device $(VENV)/bin/pytest -q tests/integration $(PYTEST_ARGS); \
	rc=$$?; rm -rf $$host; exit $$rc

demo: setup
	$(VPY) -m hack.demo

bench: bundle base-image
	$(VPY) -m hack.bench --plugin build/bundle/bin/amd-host-device

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench-results

# The node-targeted testinfra suite against a simulated node on this machine, and real
# runtimes driving our plugin through libcni: podman's CNI backend, and containerd's CRI as the
# kubelet drives it (its own containerd in the node's netns; sandbox image $(SANDBOX_IMAGE),
# built from the base image).
e2e: setup probe-image
	$(VENV)/bin/pytest -q tests/e2e --hosts=local:// $(PYTEST_ARGS)
	PROBE_IMAGE=$(PROBE_IMAGE) BASE_IMAGE=$(BASE_IMAGE) SANDBOX_IMAGE=$(SANDBOX_IMAGE) \
	  $(VENV)/bin/pytest -q tests/runtime $(PYTEST_ARGS)

probe-image: base-image
	@podman image exists $(PROBE_IMAGE) || buildah bud --quiet --isolation chroot \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(PROBE_IMAGE) -f hack/probe.Containerfile hack

# The same suite, unchanged, against a node container: the image installs the plugin into a
# host dir, which the node container mounts where the node would have it. Twice: in process,
# then with `amd-host-device daemon` running on the node (thick mode).
e2e-podman: image probe-image
	@host=$$(mktemp -d /var/tmp/ahd-e2e.XXXXXX); name=ahd-node-$$$$; \
	podman run --rm --network none -v $$host:/host/opt/cni/bin $(IMAGE) \
	  --host-dir /host/opt/cni/bin --node-dir $$host \
	&& podman run -d --name $$name --privileged --network none -v $$host:$$host $(PROBE_IMAGE) \
	  sleep infinity >/dev/null \
	&& $(VENV)/bin/pytest -q tests/e2e --hosts=podman://$$name \
	  --plugin=$$host/amd-host-device --cni-path=$$host $(PYTEST_ARGS) \
	&& $(VENV)/bin/pytest -q tests/e2e --hosts=podman://$$name \
	  --plugin=$$host/amd-host-device --cni-path=$$host --daemon $(PYTEST_ARGS); \
	rc=$$?; podman rm -f -t 0 $$name >/dev/null 2>&1; rm -rf $$host; exit $$rc

# kind (needs Docker and kind; cannot run on the development machine): see hack/kind-e2e.sh.
e2e-kind: image
	IMAGE=$(IMAGE) hack/kind-e2e.sh
