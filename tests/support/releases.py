"""Earlier releases of the plugin, built from this repository's git history.

A release is found by its version line, not a tag (a clone may have none): `__version__` in
plugin/__init__.py (where the release is named since 0.2.0; every earlier build also had it
there, and in pyproject.toml). The last commit of a release is the parent of the commit that
moved the version on. `build(commit, dest)` extracts that commit's plugin with `git archive`
and writes an executable runner: this venv's interpreter in isolated mode (`-I -S`: no
PYTHONPATH, no .pth files, so the editable install of the current tree is never imported),
with the extracted tree first on sys.path and this venv's site-packages (sh, tenacity,
prometheus_client) after it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from typing import NamedTuple

from tests.support.simnode import REPO

_VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.M)
_ENTRY = re.compile(r'^amd-host-device = "([\w.]+):(\w+)"$', re.M)


class Release(NamedTuple):
    version: str
    commit: str   # the last commit that carried it


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                          check=True).stdout


def version_at(commit: str) -> str:
    """The version a commit's tree calls itself ("" if it names none)."""
    try:
        m = _VERSION.search(git("show", f"{commit}:plugin/__init__.py"))
    except subprocess.CalledProcessError:
        return ""
    return m[1] if m else ""


def key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3])


def releases() -> dict[str, Release]:
    """Every earlier version the history reached HEAD through, with its last commit."""
    found: dict[str, Release] = {}
    for commit in git("log", "--format=%H", "-G", "^__version__ = ", "--",
                      "plugin/__init__.py").split():
        before = version_at(f"{commit}^") if git("rev-list", "--parents", "-n", "1",
                                                 commit).split()[1:] else ""
        if before and before != version_at(commit) and before not in found:
            found[before] = Release(before, git("rev-parse", f"{commit}^").strip())
    return found


def previous(current: str, floor: str = "0.2.0") -> Release | None:
    """The newest release before `current`, from `floor` on (the first release whose version
    means something: every earlier build called itself 0.1.0); None until one exists."""
    older = [r for r in releases().values() if key(floor) <= key(r.version) < key(current)]
    return max(older, key=lambda r: key(r.version), default=None)


def build(commit: str, dest: str) -> str:
    """Extract `commit`'s plugin into dest and return the path of a runner for it."""
    tree = os.path.join(dest, "tree")
    os.makedirs(tree, exist_ok=True)
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", commit, "plugin",
                              "pyproject.toml"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    with open(os.path.join(tree, "pyproject.toml")) as f:
        module, func = _ENTRY.search(f.read()).groups()  # type: ignore[union-attr]
    site = sysconfig.get_paths()["purelib"]
    runner = os.path.join(dest, "amd-host-device")
    code = (f"import sys; sys.path[:0] = [{tree!r}, {site!r}]; sys.argv[0] = 'amd-host-device'; "
            f"from {module} import {func}; sys.exit({func}())")
    with open(runner, "w") as f:
        f.write(f"#!/bin/sh\nexec {sys.executable} -I -S -c \"{code}\" \"$@\"\n")
    os.chmod(runner, 0o755)
    return runner
