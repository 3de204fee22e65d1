"""plugin/imports.py: sh loads without what our calls never use, and still works."""

from __future__ import annotations

import subprocess
import sys

from tests.support.simnode import REPO

_PROBE = """
import sys
from plugin.imports import load_sh
sh = load_sh()
from plugin import backend
from plugin.node import Node
out = backend.run(Node(), ["echo", "ok"])
skipped = sorted(m for m in ("asyncio", "importlib.metadata", "inspect", "platform")
                 if m in sys.modules)
print(out.strip(), skipped)
import inspect, platform                       # a later import gets the real modules
print(inspect.isfunction(len) is False, platform.system())
"""


def test_sh_loads_without_asyncio_metadata_inspect_or_platform_and_runs_commands():
    p = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, text=True,
                       capture_output=True, env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"},
                       check=False)
    assert p.returncode == 0, p.stderr
    first, second = p.stdout.splitlines()
    assert first == "ok []"
    assert second == "True Linux"
