"""Import `sh` without paying for what a synchronous CNI plugin never uses.

`import sh` costs ~80 ms, ~70 ms of it in asyncio (only for `_async=True` commands) and
importlib.metadata (only to read sh's own version string). Every pod start pays this once per
NIC, so while sh imports, both names are stand-ins; they are removed from sys.modules again
right after, so any later `import asyncio` gets the real module.
"""

from __future__ import annotations

import sys
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
    return {"asyncio": aio, "importlib.metadata": meta}


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
    try:
        import sh
    finally:
        for name in installed:
            del sys.modules[name]
        if "importlib.metadata" in installed and not had_meta_attr:
            del importlib.metadata
    return sh
