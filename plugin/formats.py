"""Which formats of the state store this release reads and writes, and what it does with others.

Two version numbers (docs/design.md, *Record formats*):
- a record's `formatVersion`: the shape of one attachment file. Every 0.1.0 build wrote
  `"format": 1` and nothing else; from 0.2.0 a record carries both (0.1.0 reads only `format`
  and sets aside any other value, so the two stay equal) and `writtenBy`, the release.
- the store's, in `<stateDir>/format.json`: the layout (attachments/, the devices/ index of
  symlinks, locks/, file naming). No file is format 1, the layout every 0.1.0 build made.

Older shapes of a version this release knows are upgraded in memory (`upgrade`); a newer
version is never read, changed, or set aside: `Newer` (code 11) stops whatever would act on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugin import __version__
from plugin.errors import TRY_AGAIN_LATER, CniError

RECORD_VERSION = 1  # what this release writes, and the newest it reads
STORE_VERSION = 1
STORE_FILE = "format.json"
_WRITER_MAX = 64
_FIRST_RELEASE = "0.1.0"  # every build before 0.2.0 called itself this and wrote no writtenBy


class Newer(CniError):
    """Written by a newer release than this one: left exactly as it is (a rollback of the
    DaemonSet must never destroy what the newer release recorded), and code 11 for whatever
    would act on it."""

    def __init__(self, what: str, version: int, written_by: str, known: int) -> None:
        super().__init__(TRY_AGAIN_LATER,
                         f"{what} was written by a newer release ({written_by or 'unknown'}, "
                         f"formatVersion {version}); amd-host-device {__version__} reads up to "
                         f"{known} and leaves it untouched",
                         "roll the DaemonSet forward to that release (or later), then retry")
        self.what = what
        self.version = version
        self.written_by = written_by
        self.known = known

    @property
    def short(self) -> str:
        """The reason in a few words (a `list` cell)."""
        return f"{__version__} reads formatVersion <= {self.known}: left untouched"


def written_by(obj: Mapping[str, Any]) -> str:
    """The release that wrote a file, for display: printable, bounded; "" if unknown."""
    value = obj.get("writtenBy", "")
    return value if isinstance(value, str) and len(value) <= _WRITER_MAX \
        and value.isprintable() else ""


def version_of(obj: Mapping[str, Any], what: str) -> int:
    """`formatVersion`, else 0.1.0's `format`, else 1 (the first builds' records wrote
    `format` too); ValueError when it is no positive integer."""
    value = obj.get("formatVersion", obj.get("format", 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: formatVersion {str(value)[:20]!r} is not a positive integer")
    return value


def check_record(obj: Mapping[str, Any], what: str) -> None:
    """Newer if a newer release wrote this record; ValueError if its version makes no sense
    (`format` and `formatVersion` disagreeing included)."""
    version = version_of(obj, what)
    if version > RECORD_VERSION:
        raise Newer(what, version, written_by(obj), RECORD_VERSION)
    if "formatVersion" in obj and "format" in obj and obj["format"] != version:
        raise ValueError(f"{what}: format {str(obj['format'])[:20]!r} is not its "
                         f"formatVersion {version}")


def upgrade(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A record of a version this release knows, as today's reader takes it (pure).

    formatVersion 1 grew optional fields while every build called itself 0.1.0; most read
    back with their defaults. One does not: records from before 0.1.0 recorded a NIC's
    identity (no `identity`) name their NIC by its PCI address and name only. The upgrade
    gives them the rule AMD's Go plugin's mappings have: the PCI parent proves the NIC
    anywhere; on the node, sysfs listing the recorded name under that PCI function does.
    Nothing proves a NIC without a PCI parent in a pod (plugin/identity.py)."""
    out = dict(obj)
    if "identity" not in out:
        pci = out.get("pciAddress", "")
        out["identity"] = {"pci": pci if isinstance(pci, str) else "", "legacy": True}
    if "writtenBy" not in out:
        out["writtenBy"] = _FIRST_RELEASE
    return out


def record_header() -> dict[str, Any]:
    """What every record this release writes starts with."""
    return {"formatVersion": RECORD_VERSION, "format": RECORD_VERSION, "writtenBy": __version__}


def store_file() -> bytes:
    return (f'{{"formatVersion": {STORE_VERSION}, "writtenBy": "{__version__}"}}\n').encode()


def check_store(data: bytes | None) -> int:
    """The store format `format.json` names (1 without one); Newer past STORE_VERSION;
    ValueError when the file is not one we could have written."""
    if data is None:
        return 1
    import json

    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    version = version_of({"formatVersion": obj.get("formatVersion")}, STORE_FILE)
    if version > STORE_VERSION:
        raise Newer("the state dir", version, written_by(obj), STORE_VERSION)
    return version
