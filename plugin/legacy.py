"""Records left by AMD's Go amd-host-device on nodes upgraded in place.

It kept one file, `<stateDir>/ip-interface-mappings.json`:
    {"<deviceID>": {"hostInterfaceName": "ens1f0", "hostInterfaceIPs": ["10.0.0.2/24"],
                    "state": "UP"}}
Pods created before the upgrade are deleted by us, so DEL and GC honour these entries and drop
each one once its NIC is restored. The file is rewritten atomically under its own lock.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from plugin import log
from plugin import values as v
from plugin.device import normalize_pci
from plugin.errors import CniError
from plugin.files import NotRegular
from plugin.identity import NicIdentity
from plugin.snapshot import Address, LinkSnapshot
from plugin.state import (
    LEGACY_FILE_NAME,
    PHASE_ATTACHED,
    Record,
    StateStore,
    read_regular,
    set_aside,
)

if TYPE_CHECKING:
    from plugin.node import Node

# A record read from a mapping says so in `written_by` (identity.legacy alone does not: a 0.1.0
# record from before identities is upgraded with it too, plugin/formats.py).
WRITTEN_BY = "AMD's Go plugin"
LOCK_KEY = "legacy-ip-interface-mappings"


class LegacyEntry(NamedTuple):
    """One attachment recorded by AMD's Go plugin."""

    device_id: str
    host_ifname: str
    addresses: tuple[str, ...]
    up: bool

    def as_record(self, container_id: str, ifname: str, netns: str) -> Record:
        """What we would have recorded: no MAC, no MTU, no routes (the Go plugin kept none)."""
        addrs = []
        for cidr in self.addresses:
            try:
                iface = ipaddress.ip_interface(cidr)
            except ValueError:
                log.warn(f"legacy mapping {self.device_id}: skipping bad address {cidr!r}")
                continue
            family = "inet6" if iface.version == 6 else "inet"
            addrs.append(Address(family, str(iface.ip), iface.network.prefixlen))
        snapshot = LinkSnapshot(self.host_ifname, "", 0, self.up, tuple(addrs), ())
        key = _key(self.device_id)
        # It recorded no identity: its PCI address proves the NIC in a pod; on the node its
        # name is the old rule (plugin/identity.py).
        return Record(container_id, ifname, key, key, netns, PHASE_ATTACHED, snapshot,
                      identity=NicIdentity(legacy=True), written_by=WRITTEN_BY)


def _path(state_dir: str) -> str:
    return os.path.join(state_dir, LEGACY_FILE_NAME)


def _parse(state_dir: str) -> dict[str, object]:
    """The file's mappings; {} when there is none; NotRegular when it is not a regular file;
    OSError/ValueError when it is unreadable. Changes nothing (`list` reads through it)."""
    data = read_regular(_path(state_dir))
    if data is None:
        return {}
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _read(state_dir: str) -> dict[str, object]:
    path = _path(state_dir)
    try:
        return _parse(state_dir)
    except NotRegular as e:
        set_aside(path, str(e))
        return {}
    except (OSError, ValueError, RecursionError) as e:
        log.error(f"legacy mappings {path} unreadable ({e}); ignoring it")
        return {}


def _entry(device_id: str, raw: object) -> LegacyEntry | None:
    """One mapping, checked as if hostile: an entry that fails is logged and ignored, and its
    NIC is never touched on the strength of it."""
    try:
        return _checked(device_id, raw)
    except ValueError as e:  # values.Corrupt
        log.error(f"legacy mapping {device_id[:64]!r} in {LEGACY_FILE_NAME} ignored: {e}")
        return None


def _checked(device_id: str, raw: object) -> LegacyEntry:
    try:
        normalize_pci(device_id)
    except CniError:
        v.ifname(device_id, "device ID (not a PCI address nor an interface name)")
    obj = v.obj(raw, "mapping")
    name = v.ifname(obj.get("hostInterfaceName"), "hostInterfaceName")
    ips = v.array(obj.get("hostInterfaceIPs") or [], "hostInterfaceIPs")
    addresses = []
    for cidr in ips:
        try:
            text = v.string(cidr, "hostInterfaceIPs")
            if "%" in text:  # ipaddress would take anything after it as a scope ID
                raise ValueError(text)
            addresses.append(str(ipaddress.ip_interface(text)))
        except ValueError:
            raise v.Corrupt(f"hostInterfaceIPs: {str(cidr)[:60]!r} is not an address/prefix") \
                from None
    state = obj.get("state", "")
    return LegacyEntry(device_id, name, tuple(addresses), state == "UP")


# -- read as records: the core sees ordinary records (identity.legacy says where they came from)

def is_mapping(record: Record) -> bool:
    """Read from the Go plugin's file (it is its own record: nothing of ours to reload or
    rewrite; dropped from that file once its NIC is home)."""
    return record.written_by == WRITTEN_BY


def attachment(state_dir: str, device_id: str, container_id: str, ifname: str,
               netns: str) -> Record | None:
    """The mapping for `device_id` (the NAD's deviceID), as this attachment's record."""
    entry = find(state_dir, device_id)
    return None if entry is None else entry.as_record(container_id, ifname, netns)


def home_records(node: Node, state_dir: str) -> list[Record]:
    """For GC and reconcile: mappings name no pod, so only a NIC already home is known to be
    released, and only sysfs proves that the link of its name is the NIC (never `lo`, a
    bridge...). An entry keyed by a name, not a PCI address, has nothing that proves it:
    never swept. Attachment "legacy/<its node name>", no netns."""
    from plugin import backend, device

    found = []
    for entry in entries(state_dir):
        try:
            address = normalize_pci(entry.device_id)
        except CniError:
            log.event(f"legacy mapping {entry.device_id!r} names no PCI address: left alone")
            continue
        if device.belongs_to(entry.host_ifname, address) and \
                backend.link_exists(node, entry.host_ifname):
            found.append(entry.as_record("legacy", entry.host_ifname, ""))
    return found


def drop(store: StateStore, record: Record, lock_timeout: float) -> None:
    """The record's NIC is home: drop the mapping it was read from (under the mappings'
    lock); the file goes when it is empty."""
    with locked(store, lock_timeout):
        for device_id in [k for k in _read(store.root) if _key(k) == record.device_key]:
            forget(store, device_id)


def _key(device_id: str) -> str:
    """The device key of a mapping's deviceID: its PCI address, or a name (checked as an
    interface name in _checked)."""
    try:
        return normalize_pci(device_id)
    except CniError:
        return f"name:{device_id}"


def present(state_dir: str) -> bool:
    return os.path.lexists(_path(state_dir))


def entries(state_dir: str) -> list[LegacyEntry]:
    return [e for k, v in _read(state_dir).items() if (e := _entry(k, v))]


def entries_checked(state_dir: str) -> tuple[list[LegacyEntry], list[str]]:
    """For operators (`list`): the entries, and the keys of entries that are not valid; raises
    NotRegular/OSError/ValueError when the file itself is unreadable (rather than logging it
    away or setting it aside)."""
    raw = _parse(state_dir)
    good = {k: e for k, v in raw.items() if (e := _entry(k, v))}
    return list(good.values()), [k for k in raw if k not in good]


def find(state_dir: str, device_id: str) -> LegacyEntry | None:
    if not device_id or not present(state_dir):
        return None
    raw = _read(state_dir)
    return _entry(device_id, raw[device_id]) if device_id in raw else None


@contextlib.contextmanager
def locked(store: StateStore, timeout: float) -> Iterator[None]:
    with store.lock(LOCK_KEY, timeout):
        yield


def forget(store: StateStore, device_id: str) -> None:
    """Drop one entry (caller holds the legacy lock); the file goes when it is empty."""
    data = _read(store.root)
    if device_id not in data:
        return
    del data[device_id]
    path = _path(store.root)
    if not data:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    store.write_file(path, json.dumps(data, indent=2).encode())
