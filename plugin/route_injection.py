"""Opt-in route injection, compatible with AMD's NADs (`nexthopNetAddrOffset`,
`routeDstPrefixLen`), and the same for IPv6 (`nexthopNetAddrOffset6`, `routeDstPrefixLen6`).

For each address of the family: dst = the address masked to the destination prefix (0 gives
the default route); gw = the subnet's network address + offset, except on a point-to-point
subnet (/31, /127) where it is the other end and the offset is ignored. Pure arithmetic: what
cannot be derived for one address is skipped with a reason, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from plugin.errors import INVALID_CONFIG, CniError
from plugin.snapshot import Address

KEYS = {4: ("nexthopNetAddrOffset", "routeDstPrefixLen"),
        6: ("nexthopNetAddrOffset6", "routeDstPrefixLen6")}
_BITS = {4: 32, 6: 128}


class Injection(NamedTuple):
    """One family's route injection as the NAD asks for it."""

    version: int        # 4 | 6
    offset: int
    dst_prefix: int


class InjectedRoute(NamedTuple):
    """A route for the pod's static IPAM."""

    dst: str
    gw: str


def _integer(key: str, value: object, high: int) -> int:
    """JSON numbers; integral floats count (AMD's Go plugin reads them as float64)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CniError(INVALID_CONFIG, f"invalid {key}={value!r}: must be an integer")
    if isinstance(value, float) and not value.is_integer():
        raise CniError(INVALID_CONFIG, f"invalid {key}={value!r}: must be an integer")
    number = int(value)
    if not 0 <= number <= high:
        raise CniError(INVALID_CONFIG, f"invalid {key}={value!r}: must be in 0..{high}")
    return number


def parse(conf: Mapping[str, Any]) -> tuple[tuple[Injection, ...], tuple[str, ...]]:
    """The injections the NAD asks for, and warnings (one key of a pair without the other)."""
    found: list[Injection] = []
    warnings: list[str] = []
    for version, (offset_key, prefix_key) in KEYS.items():
        bits = _BITS[version]
        has_offset, has_prefix = offset_key in conf, prefix_key in conf
        # Validate whatever is present, even alone: a typo'd value should be seen, not ignored.
        offset = _integer(offset_key, conf[offset_key], 2**bits - 1) if has_offset else None
        prefix = _integer(prefix_key, conf[prefix_key], bits) if has_prefix else None
        if offset is not None and prefix is not None:
            found.append(Injection(version, offset, prefix))
        elif has_offset or has_prefix:
            missing = prefix_key if has_offset else offset_key
            warnings.append(f"{offset_key if has_offset else prefix_key} is set without "
                            f"{missing}: no routes injected for IPv{version}")
    return tuple(found), tuple(warnings)


def derive(addresses: Iterable[Address], injections: Iterable[Injection]
           ) -> tuple[list[InjectedRoute], list[str]]:
    """Routes for the pod's static IPAM, and why any address was skipped."""
    import ipaddress

    routes: list[InjectedRoute] = []
    skipped: list[str] = []
    for inj in injections:
        family = "inet" if inj.version == 4 else "inet6"
        bits = _BITS[inj.version]
        for a in addresses:
            if a.family != family:
                continue
            iface = ipaddress.ip_interface(a.cidr)
            prefix = iface.network.prefixlen
            if inj.dst_prefix >= prefix:
                skipped.append(f"{a.cidr}: destination prefix /{inj.dst_prefix} must be shorter "
                               f"than the address's /{prefix}")
                continue
            if prefix == bits - 1:  # point-to-point pair: the other end
                gw = ipaddress.ip_address(a.peer) if a.peer else \
                    ipaddress.ip_address(int(iface.ip) ^ 1)
            else:
                if inj.offset >= 2 ** (bits - prefix):
                    skipped.append(f"{a.cidr}: offset {inj.offset} does not fit in the "
                                   f"/{prefix} host bits")
                    continue
                gw = iface.network.network_address + inj.offset
            if gw == iface.ip:
                skipped.append(f"{a.cidr}: the gateway would be the address itself")
                continue
            dst = ipaddress.ip_network(f"{iface.ip}/{inj.dst_prefix}", strict=False)
            routes.append(InjectedRoute(str(dst), str(gw)))
    return routes, skipped
