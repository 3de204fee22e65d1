"""Checks for values read back from disk (state records, AMD's legacy mappings) before any of
them can reach an `ip -batch` line.

A state file is re-validated on every read as if hostile: another tool, an older version, a
partial disk or an attacker may have written it. Each check returns the value in its
canonical form or raises `Corrupt` (a ValueError, so the store's "set aside" path takes it)
naming the field and the reason.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Set
from typing import Any

from plugin.cni import valid_ifname

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5,31}")  # Ethernet, and longer link layers
# An address label: the device name, ':' and a suffix (the kernel allows ':' there only).
_LABEL_EXTRA = ":"
U32_MAX = 4294967295
_NOT_IN_NAMES = "/:;\"'#\\"  # the kernel's, and what ip -batch parses (see valid_ifname)


class Corrupt(ValueError):
    """A value read back is not one the plugin could have written."""


def string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Corrupt(f"{what}: must be a string, not {type(value).__name__}")
    return value


def matching(value: object, what: str, pattern: re.Pattern[str], kind: str,
             empty: bool = True) -> str:
    """A string the pattern matches whole ("" too, when `empty`)."""
    text = string(value, what)
    if (text or not empty) and not pattern.fullmatch(text):
        raise Corrupt(f"{what}: {text[:40]!r} is not {kind}")
    return text


def ifname(value: object, what: str) -> str:
    name = string(value, what)
    if not valid_ifname(name):
        raise Corrupt(f"{what}: {name[:40]!r} is not an interface name")
    return name


ALTNAME_MAX = 127  # ALTIFNAMSIZ - 1


def valid_altname(name: str) -> bool:
    """An alternative interface name a batch line may carry: the interface-name rules, up to
    the kernel's 127 bytes."""
    return (0 < len(name.encode("utf-8", "surrogatepass")) <= ALTNAME_MAX
            and name not in (".", "..") and name.isprintable()
            and not any(c in _NOT_IN_NAMES or c.isspace() for c in name))


_IP_SPACE = " \t\n\v\f\r"   # what iproute2's check_altifname calls white space (C locale)


def argv_altname(name: str) -> bool:
    """An altname some ip command can name, as an argv word: iproute2 refuses ASCII white
    space and '/' in any altname argument, and the command shell's framing a newline or NUL.
    The kernel takes more through raw netlink; no ip command removes those."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return 0 < len(raw) <= ALTNAME_MAX and not any(c in _IP_SPACE or c in "/\0" for c in name)


def altname(value: object, what: str) -> str:
    name = string(value, what)
    if not valid_altname(name):
        raise Corrupt(f"{what}: {name[:40]!r} is not an alternative interface name")
    return name


def label(value: object, what: str) -> str:
    text = string(value, what)
    if text and not valid_ifname(text.replace(_LABEL_EXTRA, "_")):
        raise Corrupt(f"{what}: {text[:40]!r} is not an address label")
    return text


def ip(value: object, what: str, version: int = 0, empty: bool = False) -> str:
    """An IP address, canonical; `version` 4/6 pins the family; `empty` allows ""."""
    text = string(value, what)
    if not text and empty:
        return ""
    if "%" in text:  # ipaddress takes any text after '%' as an IPv6 scope ID
        raise Corrupt(f"{what}: {text[:60]!r} carries a scope ID")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise Corrupt(f"{what}: {text[:60]!r} is not an IP address") from None
    if version and addr.version != version:
        raise Corrupt(f"{what}: {text!r} is not an IPv{version} address")
    return str(addr)


def prefix(value: object, what: str, version: int) -> str:
    """A route destination: `default` or a network in canonical form."""
    text = string(value, what)
    if text == "default":
        return text
    if "%" in text:
        raise Corrupt(f"{what}: {text[:60]!r} carries a scope ID")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise Corrupt(f"{what}: {text[:60]!r} is not a network") from None
    if net.version != version:
        raise Corrupt(f"{what}: {text!r} is not an IPv{version} network")
    return text if "/" not in text else str(net)


def valid_mac(text: str) -> bool:
    return bool(_MAC.fullmatch(text.lower()))


def mac(value: object, what: str, empty: bool = False) -> str:
    text = string(value, what).lower()
    if not text and empty:
        return ""
    if not _MAC.fullmatch(text):
        raise Corrupt(f"{what}: {text[:40]!r} is not a MAC address")
    return text


def integer(value: object, what: str, low: int = 0, high: int = U32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit() and value.isascii():
            value = int(value)
        else:
            raise Corrupt(f"{what}: must be an integer, not {value!r:.40}")
    if not low <= value <= high:
        raise Corrupt(f"{what}: {value} is out of range [{low}, {high}]")
    return value


def number(value: object, what: str) -> float:
    """A timestamp: finite and not negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Corrupt(f"{what}: must be a number")
    if not 0 <= value < 1e12:
        raise Corrupt(f"{what}: {value!r} is out of range")
    return float(value)


def boolean(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise Corrupt(f"{what}: must be true or false")
    return value


def choice(value: object, what: str, allowed: Iterable[str]) -> str:
    text = string(value, what)
    allowed = tuple(allowed)
    if text not in allowed:
        raise Corrupt(f"{what}: {text[:40]!r} is not one of {', '.join(allowed)}")
    return text


def obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Corrupt(f"{what}: must be an object")
    return value


def fields(value: object, what: str, known: Set[str]) -> Mapping[str, Any]:
    """An object with no key outside `known`: a field we do not check is never carried."""
    found = obj(value, what)
    unknown = set(found) - known
    if unknown:
        raise Corrupt(f"{what}: unknown fields {sorted(unknown)}")
    return found


def family(value: object, what: str) -> tuple[str, int]:
    """"inet" or "inet6", and its IP version."""
    name = choice(value, what, ("inet", "inet6"))
    return name, 6 if name == "inet6" else 4


def array(value: object, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise Corrupt(f"{what}: must be a list")
    return list(value)


def number_or_name(value: object, what: str, names: Mapping[str, int], high: int) -> int:
    """A route table/protocol/scope: the number, or one of iproute2's built-in names (records
    written before numbers were captured)."""
    if isinstance(value, str) and value in names:
        return names[value]
    return integer(value, what, 0, high)
