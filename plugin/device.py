"""Device resolution: from the PCI address the device plugin allocated (or a netdev name) to
the netdev on the node.

The address is validated before it touches a path, so `../` and friends never reach sysfs.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from plugin import backend, log, settings
from plugin.errors import INVALID_CONFIG, CniError, NotOnNode
from plugin.values import Invalid, is_pci, normal_pci, valid_ifname

SYSFS_ENV = settings.SYSFS_ENV
# Drivers that take the function away from the kernel's network stack (DPDK, VMs).
_USERSPACE_DRIVERS = ("vfio-pci", "igb_uio", "uio_pci_generic")
APPEAR_SECONDS = 2.0


class Device(NamedTuple):
    """The NIC an attachment asks for, as found on the node."""

    key: str        # what state is indexed by: the PCI address, or "name:<netdev>"
    netdev: str     # its name on the node now
    pci_address: str
    driver: str


def normalize_pci(address: str) -> str:
    """Canonical lower-case domain:bus:dev.fn; raises code 7 for anything else."""
    try:
        return normal_pci(address)
    except Invalid:
        raise CniError(INVALID_CONFIG, f"invalid deviceID={address[:64]!r}: not a PCI address",
                       "expected dddd:bb:dd.f, e.g. 0000:01:00.0") from None


def sysfs_root() -> str:
    return settings.current().sysfs


def pci_dir(address: str) -> str:
    return os.path.join(sysfs_root(), "bus", "pci", "devices", address)


def _netdevs(address: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(pci_dir(address), "net")))
    except FileNotFoundError:
        return []


def netdev_listed(address: str) -> bool:
    """Whether sysfs lists a netdev under the PCI function right now (no waiting)."""
    return bool(_netdevs(address))


def _driver(address: str) -> str:
    link = os.path.join(pci_dir(address), "driver")
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return ""


def netdev_for_pci(address: str) -> str:
    """The netdev behind a PCI function; waits briefly while one is still appearing
    (a driver rebind or VF creation just happened)."""
    if not os.path.isdir(pci_dir(address)):
        raise CniError(INVALID_CONFIG, f"invalid deviceID={address!r}: no such PCI device",
                       f"{pci_dir(address)} does not exist")
    driver = _driver(address)
    if driver in _USERSPACE_DRIVERS:
        raise CniError(INVALID_CONFIG, f"invalid deviceID={address!r}: bound to {driver}",
                       "a userspace (DPDK/VFIO) driver has no netdev to move")
    deadline = time.monotonic() + APPEAR_SECONDS
    raw = _netdevs(address)
    while not raw and time.monotonic() < deadline:
        time.sleep(0.05)
        raw = _netdevs(address)
    names = [n for n in raw if valid_ifname(n)]
    if not names and raw:
        raise CniError(INVALID_CONFIG, f"invalid deviceID={address!r}: its netdev name "
                       f"{raw[0]!r} cannot be handled safely",
                       "names with whitespace, '/', ':', ';', quotes, '#' or backslashes "
                       "are refused")
    if not names:
        raise NotOnNode(INVALID_CONFIG, f"invalid deviceID={address!r}: no network interface",
                        f"{pci_dir(address)}/net is empty or missing: the NIC is not on the "
                        "node (already in a pod?) or its driver is not loaded")
    if len(names) > 1:
        log.event(f"PCI function {address} has several netdevs {names}; using {names[0]}")
    return names[0]


def pci_parent(name: str) -> str:
    """The PCI function whose net/ dir lists this netdev, or "" (a veth, bridge, bond...).
    sysfs is trusted; the netdev's own name is not proof of anything beyond that."""
    devices = os.path.join(sysfs_root(), "bus", "pci", "devices")
    try:
        functions = sorted(os.listdir(devices))
    except OSError:
        return ""
    for function in functions:
        if is_pci(function.lower()) and os.path.isdir(
                os.path.join(devices, function, "net", name)):
            return function.lower()
    return ""


def belongs_to(name: str, address: str) -> bool:
    """Whether sysfs says netdev `name` is PCI function `address`'s: it is listed under
    bus/pci/devices/<address>/net/, or class/net/<name>/device is that function. What proves
    a legacy mapping's NIC on the node, where its name alone proves nothing (lo, a bridge)."""
    if not is_pci(address.lower()) or not valid_ifname(name) or name in (".", ".."):
        return False
    address = address.lower()
    if os.path.isdir(os.path.join(pci_dir(address), "net", name)):
        return True
    try:
        parent = os.readlink(os.path.join(sysfs_root(), "class", "net", name, "device"))
    except OSError:
        return False
    return os.path.basename(parent).lower() == address


def resolve(node: backend.Node, device_id: str, device_name: str, allow_non_pci: bool = False) -> Device:
    """PCI address first (what the device plugin allocated), else a netdev name, which must be
    a PCI NIC's unless node policy allows others (a pod's veth must never be taken)."""
    if device_id:
        # sysfs already says both driver and bus here: the netdev was found under the PCI
        # function's own directory. ethtool would only repeat it (at a process per ADD).
        address = normalize_pci(device_id)
        return Device(address, netdev_for_pci(address), address, _driver(address))
    if device_name:
        if not valid_ifname(device_name):
            raise CniError(INVALID_CONFIG, f"invalid device={device_name[:64]!r}: not an "
                           "interface name")
        address = pci_parent(device_name)
        if address:
            return Device(address, device_name, address, _driver(address))
        if not allow_non_pci:
            raise CniError(INVALID_CONFIG, f"invalid device={device_name!r}: not a PCI NIC",
                           f"no {sysfs_root()}/bus/pci/devices/*/net/{device_name} (no such "
                           "NIC on the node, or it is in a pod already); a veth, bridge, bond "
                           "or other virtual device needs allowNonPciDevices in the node "
                           "policy")
        # Node policy allows it: a name says nothing about the hardware; ethtool may still
        # tell a PCI function, so the NIC is locked and indexed by it like any other.
        info = backend.ethtool_driver(node, device_name)
        bus = info.bus_info.lower() if info and is_pci(info.bus_info.lower()) else ""
        return Device(bus or f"name:{device_name}", device_name, bus, info.driver if info else "")
    raise CniError(INVALID_CONFIG, "no device to attach: deviceID, pciBusID, "
                   "runtimeConfig.deviceID and device are all missing",
                   "Multus injects deviceID/pciBusID when the NAD has "
                   "k8s.v1.cni.cncf.io/resourceName")
