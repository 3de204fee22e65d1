"""Every value the plugin takes in or reads back, defined and checked once: interface names
and altnames, PCI addresses, link-layer addresses (MACs), container IDs and network names,
netns paths, IP addresses and prefixes, the numbers and shapes of a record; and the rule for
what may go into an `ip -batch` line.

The CNI environment, the network configuration, state records and AMD's legacy mappings all
call these, so a value one of them accepts is one the others accept too. A state file is
re-validated on every read as if hostile (another tool, an older version, a partial disk or
an attacker may have written it), and only values checked here reach an `ip -batch` line.

Each value has a predicate (`is_*`/`valid_*`, for filters) and a checked constructor that
returns it in canonical form or raises `Invalid` naming the field and the reason: the one
error for "not a valid value". It is a ValueError (so the store's "set aside" path takes it);
`Corrupt` is the same class, the name record readers raise it by.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Set
from typing import Any


class Invalid(ValueError):
    """A value that is not one of its type: bad input, or a record the plugin could not have
    written."""


Corrupt = Invalid  # a value read back that the plugin could not have written


def string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what}: must be a string, not {type(value).__name__}")
    return value


# -- ip -batch lines ----------------------------------------------------------------------
# Separators, and what ip -batch's tokenizer treats specially (quotes, comments, escapes): a
# line carrying one could carry a second command.
BATCH_UNSAFE = frozenset("\n\r;\0\"'\\#")


def batch_safe(text: str) -> bool:
    """Whether `text` (a line, or a word of one) can go into an `ip -batch` line as it is."""
    return bool(text) and text.isprintable() and not any(c in BATCH_UNSAFE for c in text)


# -- interface names and altnames ---------------------------------------------------------
IFNAME_MAX = 15     # IFNAMSIZ - 1
ALTNAME_MAX = 127   # ALTIFNAMSIZ - 1
_NOT_IN_NAMES = "/:"  # the kernel's dev_valid_name (with white space); the rest is batch_safe


def _name_ok(name: str, most: int) -> bool:
    return (0 < len(name.encode("utf-8", "surrogatepass")) <= most
            and name not in (".", "..") and batch_safe(name)
            and not any(c in _NOT_IN_NAMES or c.isspace() for c in name))


def valid_ifname(name: str) -> bool:
    """The kernel's dev_valid_name, as CNI's ValidateInterfaceName applies it, minus the
    characters `ip -batch` parses (quotes, '#', backslash, and ';' which no batch line of ours
    may carry): a name carrying one would make a batch line act on another link."""
    return _name_ok(name, IFNAME_MAX)


def valid_altname(name: str) -> bool:
    """An alternative interface name a batch line may carry: the interface-name rules, up to
    the kernel's 127 bytes."""
    return _name_ok(name, ALTNAME_MAX)


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


def ifname(value: object, what: str) -> str:
    name = string(value, what)
    if not valid_ifname(name):
        raise Invalid(f"{what}: {name[:40]!r} is not an interface name")
    return name


def altname(value: object, what: str) -> str:
    name = string(value, what)
    if not valid_altname(name):
        raise Invalid(f"{what}: {name[:40]!r} is not an alternative interface name")
    return name


# -- PCI addresses ------------------------------------------------------------------------
# domain:bus:device.function; the domain may be left out where a user writes one (deviceID).
_PCI = re.compile(r"(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])")


def is_pci(text: str) -> bool:
    """A PCI address in canonical form (lower case, with the domain): what sysfs, the kernel
    and our records carry."""
    m = _PCI.fullmatch(text)
    return m is not None and m[1] is not None


def normal_pci(text: str) -> str:
    """A PCI address as a user may write it (any case, domain optional), canonical; raises
    Invalid for anything else."""
    low = text.lower()
    m = _PCI.fullmatch(low)
    if m is None:
        raise Invalid(f"{text[:64]!r} is not a PCI address")
    return low if m[1] is not None else f"0000:{low}"


def pci_address(value: object, what: str, empty: bool = True) -> str:
    """A canonical PCI address ("" too, when `empty`)."""
    text = string(value, what)
    if (text or not empty) and not is_pci(text):
        raise Invalid(f"{what}: {text[:40]!r} is not a PCI address")
    return text


# -- link-layer addresses -----------------------------------------------------------------
# Ethernet's 6 octets, and the longer addresses of other link layers (InfiniBand's 20).
_LLADDR = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5,31}")
_ETHERNET_LEN = len("00:00:00:00:00:00")
NO_MAC = "00:00:00:00:00:00"


def valid_mac(text: str) -> bool:
    """A link-layer address of any length a link may have (6 to 32 octets), any case."""
    return bool(_LLADDR.fullmatch(text.lower()))


def mac(value: object, what: str, empty: bool = False) -> str:
    """A link-layer address, lower case ("" too, when `empty`)."""
    text = string(value, what).lower()
    if not text and empty:
        return ""
    if not _LLADDR.fullmatch(text):
        raise Invalid(f"{what}: {text[:40]!r} is not a MAC address")
    return text


def is_ethernet_mac(text: str) -> bool:
    """An Ethernet (6-octet) MAC in lower case: what `ethtool -P` reports for a permanent
    address; a NIC's proof of identity is never another length."""
    return len(text) == _ETHERNET_LEN and _LLADDR.fullmatch(text) is not None


def permanent_mac(text: str) -> str:
    """A permanent MAC as ethtool prints it, lower case; "" when there is none (all zeros,
    or not an Ethernet MAC)."""
    text = text.strip().lower()
    return text if is_ethernet_mac(text) and text != NO_MAC else ""


# -- container IDs, network and plugin names ----------------------------------------------
# libcni's rule for container IDs and network names (ValidateContainerID, ValidateNetworkName),
# which keeps them safe in file names too ('@' and '/' cannot occur: plugin/state.py).
_CNI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# libcni sets no length. ADD has always refused container IDs past 255 characters, so every
# record carries one of at most 255 (state.py hashes file names that would pass 255 bytes).
CONTAINER_ID_MAX = 255
# Bounded so a record carrying the name (GC's key) always reads back (plugin/state.py).
NETWORK_NAME_MAX = 4096
PLUGIN_NAME_MAX = 255   # a file name in CNI_PATH


def cni_name(text: str, most: int) -> bool:
    """libcni's name characters (a letter or digit, then also '_', '.', '-'), at most `most`."""
    return len(text) <= most and _CNI_NAME.fullmatch(text) is not None


def valid_container_id(text: str) -> bool:
    return cni_name(text, CONTAINER_ID_MAX)


def container_id(value: object, what: str) -> str:
    text = string(value, what)
    if not valid_container_id(text):
        raise Invalid(f"{what}: {text[:40]!r} is not a container ID")
    return text


def valid_network_name(name: str) -> bool:
    """libcni's network-name rule, at most NETWORK_NAME_MAX characters: what host-device
    accepts, and what a record reads back."""
    return cni_name(name, NETWORK_NAME_MAX)


# -- network namespace paths --------------------------------------------------------------
PATH_MAX = 4096


def netns_path(value: object, what: str) -> str:
    """A recorded netns path: absolute, printable, no '..' ("" when none was recorded)."""
    text = string(value, what)
    if text and (not os.path.isabs(text) or len(text) > PATH_MAX or not text.isprintable()
                 or ".." in text.split("/")):
        raise Invalid(f"{what}: {text[:60]!r} is not an absolute path")
    return text


# -- what records are made of --------------------------------------------------------------
# An address label: the device name, ':' and a suffix (the kernel allows ':' there only).
_LABEL_EXTRA = ":"
U32_MAX = 4294967295


def matching(value: object, what: str, pattern: re.Pattern[str], kind: str,
             empty: bool = True) -> str:
    """A string the pattern matches whole ("" too, when `empty`)."""
    text = string(value, what)
    if (text or not empty) and not pattern.fullmatch(text):
        raise Invalid(f"{what}: {text[:40]!r} is not {kind}")
    return text


def label(value: object, what: str) -> str:
    text = string(value, what)
    if text and not valid_ifname(text.replace(_LABEL_EXTRA, "_")):
        raise Invalid(f"{what}: {text[:40]!r} is not an address label")
    return text


def ip(value: object, what: str, version: int = 0, empty: bool = False) -> str:
    """An IP address, canonical; `version` 4/6 pins the family; `empty` allows ""."""
    text = string(value, what)
    if not text and empty:
        return ""
    if "%" in text:  # ipaddress takes any text after '%' as an IPv6 scope ID
        raise Invalid(f"{what}: {text[:60]!r} carries a scope ID")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(f"{what}: {text[:60]!r} is not an IP address") from None
    if version and addr.version != version:
        raise Invalid(f"{what}: {text!r} is not an IPv{version} address")
    return str(addr)


def prefix(value: object, what: str, version: int) -> str:
    """A route destination: `default` or a network in canonical form."""
    text = string(value, what)
    if text == "default":
        return text
    if "%" in text:
        raise Invalid(f"{what}: {text[:60]!r} carries a scope ID")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise Invalid(f"{what}: {text[:60]!r} is not a network") from None
    if net.version != version:
        raise Invalid(f"{what}: {text!r} is not an IPv{version} network")
    return text if "/" not in text else str(net)


def integer(value: object, what: str, low: int = 0, high: int = U32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit() and value.isascii():
            value = int(value)
        else:
            raise Invalid(f"{what}: must be an integer, not {value!r:.40}")
    if not low <= value <= high:
        raise Invalid(f"{what}: {value} is out of range [{low}, {high}]")
    return value


def number(value: object, what: str) -> float:
    """A timestamp: finite and not negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{what}: must be a number")
    if not 0 <= value < 1e12:
        raise Invalid(f"{what}: {value!r} is out of range")
    return float(value)


def boolean(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{what}: must be true or false")
    return value


def choice(value: object, what: str, allowed: Iterable[str]) -> str:
    text = string(value, what)
    allowed = tuple(allowed)
    if text not in allowed:
        raise Invalid(f"{what}: {text[:40]!r} is not one of {', '.join(allowed)}")
    return text


def obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(f"{what}: must be an object")
    return value


def fields(value: object, what: str, known: Set[str]) -> Mapping[str, Any]:
    """An object with no key outside `known`: a field we do not check is never carried."""
    found = obj(value, what)
    unknown = set(found) - known
    if unknown:
        raise Invalid(f"{what}: unknown fields {sorted(unknown)}")
    return found


def family(value: object, what: str) -> tuple[str, int]:
    """"inet" or "inet6", and its IP version."""
    name = choice(value, what, ("inet", "inet6"))
    return name, 6 if name == "inet6" else 4


def array(value: object, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise Invalid(f"{what}: must be a list")
    return list(value)


def number_or_name(value: object, what: str, names: Mapping[str, int], high: int) -> int:
    """A route table/protocol/scope: the number, or one of iproute2's built-in names (records
    written before numbers were captured)."""
    if isinstance(value, str) and value in names:
        return names[value]
    return integer(value, what, 0, high)
