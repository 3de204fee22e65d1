"""One release, named once (plugin/__init__.py): the package metadata, `--version`, the
Makefile's image tag, the Dockerfile, the bundle's MANIFEST check, the manifests and the
changelog all say the same."""

import importlib.metadata
import pathlib
import re
import subprocess
import sys

import yaml

from container.freeze import release_matches
from plugin import __version__

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")


def test_the_version_is_semantic():
    assert SEMVER.fullmatch(__version__)


def test_pyproject_reads_it_from_the_package():
    text = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^version\s*=\s*\"", text, re.M)  # no second copy
    assert 'dynamic = ["version"]' in text
    assert 'version = {attr = "plugin.__version__"}' in text
    # What pip installed (make setup reinstalls when plugin/__init__.py changes).
    assert importlib.metadata.version("amd-host-device") == __version__


def test_version_flag_says_it():
    p = subprocess.run([sys.executable, "-c", "from plugin.main import run; run()", "--version"],
                       capture_output=True, text=True, cwd=ROOT, check=False)
    assert p.returncode == 0 and p.stdout.startswith(f"amd-host-device {__version__} (CNI ")


def test_makefile_tags_the_image_with_it():
    p = subprocess.run(["make", "-s", "--no-print-directory", "version"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    assert p.stdout.strip() == __version__
    assert re.search(r"^IMAGE \?= \S+:\$\(VERSION\)$", (ROOT / "Makefile").read_text(), re.M)


def test_dockerfile_takes_it_as_a_build_arg_and_has_no_default():
    text = (ROOT / "Dockerfile").read_text()
    args = re.findall(r"^ARG VERSION(.*)$", text, re.M)
    assert args == ["", ""]   # both stages; no default that could drift
    assert '--version "${VERSION:?' in text
    assert 'org.opencontainers.image.version="${VERSION}"' in text


def test_freeze_refuses_a_version_the_tree_does_not_carry():
    assert release_matches(__version__, __version__)
    assert release_matches(f"{__version__}+upgrade", __version__)
    assert not release_matches("0.1.0", "0.2.0")
    assert not release_matches("0.2.0.1", "0.2.0")


def test_manifests_name_the_image_of_this_release():
    images = []
    for path in sorted((ROOT / "hack" / "deploy").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
            images += [c["image"] for c in spec.get("initContainers", []) + spec.get("containers", [])
                       if "amd-host-device" in c["image"]]
    assert images and all(i.endswith(f"/amd-host-device:{__version__}") for i in images)
    kind = (ROOT / "hack" / "kind-e2e.sh").read_text()
    assert f"localhost/amd-host-device:{__version__}" in kind


def test_changelog_has_this_release_and_every_earlier_one_in_order():
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, re.M)
    assert versions[0] == __version__
    keys = [tuple(int(x) for x in v.split(".")) for v in versions]
    assert keys == sorted(keys, reverse=True) and "0.1.0" in versions
    assert "## [Unreleased]" in text
