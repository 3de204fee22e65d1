# First version: the plugin in a venv, installed by the init container into /opt/cni/bin.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugin ./plugin
RUN python3 -m venv /opt/amd-host-device && /opt/amd-host-device/bin/pip install --no-cache-dir .
ENTRYPOINT ["/opt/amd-host-device/bin/amd-host-device"]
