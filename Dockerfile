# amd-host-device: a frozen, self-contained plugin bundle (needs only glibc on the node), its
# installer, and Debian's host-device/static/sbr for nodes that lack them.
#   buildah bud --isolation chroot --build-arg BASE_IMAGE=... -t amd-host-device:TAG .
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# The release (plugin/__init__.py's __version__; `make image` passes it): freeze.py refuses a
# VERSION the tree does not carry, so the tag, the label and the MANIFEST always agree.
ARG VERSION
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv patchelf containernetworking-plugins ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugin ./plugin
COPY container ./container
COPY build/wheels ./wheels
RUN python3 -m venv /venv \
 && /venv/bin/python container/freeze.py --out /opt/amd-host-device \
      --prefix /opt/amd-host-device --delegates /usr/lib/cni --wheels wheels \
      --version "${VERSION:?pass --build-arg VERSION, as make image does}"

FROM ${BASE_IMAGE}
ARG VERSION
ARG SOURCE=https://github.com/amd-host-device/amd-host-device
LABEL org.opencontainers.image.title="amd-host-device" \
      org.opencontainers.image.description="CNI plugin: an AMD NIC into the pod with its node IP configuration, and back" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# iproute2/ethtool serve the `reconcile` main container (hostNetwork); the plugin itself uses
# the node's own ip, ethtool and nsenter.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 ethtool \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/amd-host-device /opt/amd-host-device
ENTRYPOINT ["/opt/amd-host-device/bin/python3", "-IS", "/opt/amd-host-device/install.py"]
CMD ["--host-dir", "/host/opt/cni/bin", "--node-dir", "/opt/cni/bin"]
