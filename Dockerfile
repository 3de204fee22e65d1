# amd-host-device: a frozen bundle that needs nothing from the node but the kernel (it carries
# its own ELF loader, glibc, python3, ip, ethtool, nsenter and sh, all from this Debian release;
# see container/freeze.py), its installer, and Debian's host-device/static/sbr for nodes that
# lack them (run through the bundle's loader too). The image itself is only the bundle.
#   buildah bud --isolation chroot --build-arg BASE_IMAGE=... -t amd-host-device:TAG .
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# The release (plugin/__init__.py's __version__; `make image` passes it): freeze.py refuses a
# VERSION the tree does not carry, so the tag, the label and the MANIFEST always agree.
ARG VERSION
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv patchelf containernetworking-plugins ca-certificates \
      iproute2 ethtool util-linux dash gcc libc6-dev \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugin ./plugin
COPY container ./container
COPY build/wheels ./wheels
RUN python3 -m venv /venv \
 && /venv/bin/python container/freeze.py --out /opt/amd-host-device \
      --delegates /usr/lib/cni --wheels wheels \
      --version "${VERSION:?pass --build-arg VERSION, as make image does}" \
 && /opt/amd-host-device/bin/amd-host-device --version

# Nothing but the bundle: the installer, the daemon and reconcile all run from it.
FROM scratch
ARG VERSION
ARG SOURCE=https://github.com/amd-host-device/amd-host-device
LABEL org.opencontainers.image.title="amd-host-device" \
      org.opencontainers.image.description="CNI plugin: an AMD NIC into the pod with its node IP configuration, and back" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/amd-host-device /opt/amd-host-device
ENTRYPOINT ["/opt/amd-host-device/lib/ld-linux-x86-64.so.2", "--library-path", "/opt/amd-host-device/lib", "/opt/amd-host-device/bin/python3", "-IS", "/opt/amd-host-device/install.py"]
CMD ["--host-dir", "/host/opt/cni/bin", "--node-dir", "/opt/cni/bin"]
