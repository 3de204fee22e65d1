"""What the runtime's environment sets for the whole request, read once at the entry.

The entry (plugin/request.py, for the in-process plugin and for the daemon's request child
alike) builds these from the request's environment; every module below asks `current()`
instead of reading os.environ, so the daemon serves a request without rewriting its own
environment. The variables are trusted (the runtime's CNI environment, set by root), never
NAD keys.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:   # (typing costs an import on the shim's path; see plugin/shim.py)
    from collections.abc import Mapping

SYSFS_ENV = "AMD_HOST_DEVICE_SYSFS"
DEVINFO_DIR_ENV = "AMD_HOST_DEVICE_DEVINFO_DIR"
TOOLS_ENV = "AMD_HOST_DEVICE_TOOLS"
FALLBACK_ENV = "AMD_HOST_DEVICE_FALLBACK_DIRS"
PROFILE_ENV = "AMD_HOST_DEVICE_PROFILE"


class Settings:
    """Immutable: `replace` makes a changed copy (tests, and nothing else, use it)."""

    __slots__ = ("devinfo_dir", "environ", "fallback_dirs", "profile", "sysfs", "tools")

    sysfs: str                     # where sysfs is ("/sys"; a fake tree in tests)
    devinfo_dir: str               # NPWG device-info root override, or ""
    tools: str                     # "node": run the node's ip/ethtool/nsenter even in a bundle
    fallback_dirs: str | None      # colon list replacing the usual plugin dirs, None: the usual
    profile: bool                  # AMD_HOST_DEVICE_PROFILE: plugin/profile.py is on
    environ: Mapping[str, str]     # the whole request environment (the delegate inherits it)

    def __init__(self, environ: Mapping[str, str]) -> None:
        for name, value in (("sysfs", environ.get(SYSFS_ENV) or "/sys"),
                            ("devinfo_dir", environ.get(DEVINFO_DIR_ENV, "")),
                            ("tools", environ.get(TOOLS_ENV, "")),
                            ("fallback_dirs", environ.get(FALLBACK_ENV)),
                            ("profile", bool(environ.get(PROFILE_ENV))),
                            ("environ", dict(environ))):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Settings.{name} is read-only")

    def replace(self, **changes: str | None) -> Settings:
        """A copy with some variables set (None: unset)."""
        environ = dict(self.environ)
        for name, value in changes.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        return Settings(environ)


_current = Settings({})


def current() -> Settings:
    return _current


def use(settings: Settings) -> None:
    """The entry's call, once per request (and once per process for the other entries)."""
    global _current
    _current = settings
