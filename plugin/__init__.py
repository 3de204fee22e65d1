"""amd-host-device: give a pod a node NIC with the IP configuration it had, and give it back."""

# The one place the release is named: pyproject.toml reads it (dynamic version), the Makefile
# tags the image with it, freeze.py writes it into the bundle's MANIFEST, and a unit test holds
# the manifests and the Dockerfile to it (tests/unit/test_version.py). Semantic versioning;
# CHANGELOG.md says what each release changed.
__version__ = "0.2.0"

# The CNI versions we speak. Here, not in plugin.cni, so VERSION can answer without importing
# anything else.
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
# What we answer in when the caller's version is unknown, and what records keep results in.
NEWEST_CNI_VERSION = CNI_VERSIONS[-1]

