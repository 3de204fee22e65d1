"""Keeping imports off the hot path: every pod start pays them once per NIC.

- `load_sh()`: `import sh` costs ~80 ms, ~70 ms of it in asyncio (only for `_async=True`
  commands) and importlib.metadata (only to read sh's own version string), and a few more in
  inspect (with ast, dis, tokenize: only for callbacks) and platform (one `system()` call).
  While sh imports, those names are stand-ins; they are removed from sys.modules right after,
  so any later `import asyncio` gets the real module, and the stand-ins sh keeps load the real
  one on first use.
- `load_dataclasses()`: dataclasses imports inspect (~7 ms) only to write a docstring for
  classes that have none (ours all have one). It gets an on-demand stand-in: the first
  attribute anyone reads from it imports the real inspect. (importlib's LazyLoader cannot do
  this on 3.11: every `import` statement reads `__spec__`, which loads the module.)
"""

from __future__ import annotations

import os
import sys
import time
import types
from typing import Any


class _NoAsync:
    def __init__(self, *_: object, **__: object) -> None:
        raise RuntimeError("amd-host-device loads sh without asyncio; _async commands are off")


def _stand_ins() -> dict[str, types.ModuleType]:
    aio = types.ModuleType("asyncio")
    aio.Queue = _NoAsync  # type: ignore[attr-defined]
    aio.Event = _NoAsync  # type: ignore[attr-defined]
    aio.get_running_loop = _NoAsync  # type: ignore[attr-defined]
    aio.create_task = _NoAsync  # type: ignore[attr-defined]
    meta = types.ModuleType("importlib.metadata")

    class PackageNotFoundError(Exception):
        pass

    def version(_name: str) -> str:
        raise PackageNotFoundError(_name)

    meta.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    meta.version = version  # type: ignore[attr-defined]
    # sh reads platform.system() once, at import; anything else of it loads the real one.
    plat = _on_demand("platform")
    plat.system = lambda: os.uname().sysname  # type: ignore[attr-defined]
    # inspect: sh uses it only to count a callback's arguments; our output sinks are objects
    # with write() (plugin/node.py), which it does not inspect.
    return {"asyncio": aio, "importlib.metadata": meta, "platform": plat,
            "inspect": _on_demand("inspect")}


def _on_demand(name: str) -> types.ModuleType:
    """A stand-in for module `name` that imports the real one when an attribute is read."""
    stand_in = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(name), attr)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    return stand_in


def load_dataclasses() -> None:
    if "dataclasses" in sys.modules or "inspect" in sys.modules:
        return
    sys.modules["inspect"] = _on_demand("inspect")
    try:
        import dataclasses  # noqa: F401
    finally:
        del sys.modules["inspect"]


def load_sh() -> Any:
    loaded = sys.modules.get("sh")
    if loaded is not None:
        return loaded
    import importlib

    installed = {name: mod for name, mod in _stand_ins().items() if name not in sys.modules}
    had_meta_attr = hasattr(importlib, "metadata")
    sys.modules.update(installed)
    if "importlib.metadata" in installed and not had_meta_attr:
        importlib.metadata = installed["importlib.metadata"]
    started = time.perf_counter()
    try:
        import sh
    finally:
        for name in installed:
            del sys.modules[name]
        if "importlib.metadata" in installed and not had_meta_attr:
            del importlib.metadata
    from plugin import profile

    profile.add("import sh", time.perf_counter() - started)
    return sh
