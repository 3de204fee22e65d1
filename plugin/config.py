"""The network configuration (NAD) on stdin, validated into one frozen value."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from plugin.cni import require_supported
from plugin.errors import DECODE_FAILURE, INVALID_CONFIG, UNSUPPORTED_FIELD, CniError
from plugin.policy import PATH_ENV, NodePolicy, clean_path
from plugin.values import NETWORK_NAME_MAX, valid_network_name

if TYPE_CHECKING:
    from plugin.route_injection import Injection

_ROUTE_KEY_PREFIXES = ("nexthopNetAddrOffset", "routeDstPrefixLen")  # see plugin/route_injection.py
DEFAULT_LOCK_TIMEOUT = 20.0
MAX_LOCK_TIMEOUT = 300.0
# host-device's other selectors: we select by PCI address or netdev name only, and a key we
# silently ignored could move a NIC the operator did not mean.
_UNSUPPORTED_SELECTORS = ("hwaddr", "kernelpath")


class NetConf(NamedTuple):
    """The NAD as we use it: every key validated, defaults filled in."""

    cni_version: str
    name: str
    device_id: str          # PCI address as given (deviceID > pciBusID > runtimeConfig.deviceID)
    device: str             # netdev name, for nodes without a device plugin
    ipam: Mapping[str, Any] | None
    state_dir: str
    allow_default_route: bool
    lock_timeout: float
    prev_result: Mapping[str, Any] | None
    injections: tuple[Injection, ...] = ()
    warnings: tuple[str, ...] = ()
    policy: NodePolicy = NodePolicy()
    # runtimeConfig.CNIDeviceInfoFile as given: ADD checks it (plugin/devinfo.py) before it
    # does anything; DEL, which must not fail on it, uses the path its record kept.
    device_info_file: Any = None


def decode(stdin: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(stdin)
    except (ValueError, RecursionError) as e:
        raise CniError(DECODE_FAILURE, "network configuration is not valid JSON",
                       str(e)[:200]) from None
    if not isinstance(obj, dict):
        raise CniError(DECODE_FAILURE, "network configuration must be a JSON object",
                       f"got {type(obj).__name__}")
    return obj


def _invalid(key: str, value: object, why: str) -> CniError:
    return CniError(INVALID_CONFIG, f"invalid {key}={_short(value)}: {why}")


def _short(value: object) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _opt_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(key, value, "must be a string")
    return value


def parse_netconf(obj: Mapping[str, Any], policy: NodePolicy | None = None,
                  new_work: bool = True) -> NetConf:
    """new_work=False (DEL, GC): the record is what the command acts on, so node-policy checks
    that gate new work (allowedIpamTypes, stateDir and allowDefaultRouteDevice agreeing with
    the policy) are not applied: a NAD that ADD would now refuse still releases its NICs. The
    state dir still comes from node policy, never the NAD."""
    if "cniVersion" not in obj:
        raise CniError(INVALID_CONFIG, "invalid network configuration: cniVersion is missing")
    version = obj["cniVersion"]
    if not isinstance(version, str):
        raise _invalid("cniVersion", version, "must be a string")
    require_supported(version)
    name = obj.get("name")
    if not isinstance(name, str) or not valid_network_name(name):
        raise _invalid("name", name, "must be a network name (libcni's rule: a letter or "
                       "digit, then letters, digits, '_', '.', '-'; at most "
                       f"{NETWORK_NAME_MAX} characters)")
    for key in _UNSUPPORTED_SELECTORS:
        if key in obj:
            raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key!r}",
                           "select the NIC with deviceID/pciBusID (PCI address) or device")
    runtime = obj.get("runtimeConfig") or {}
    if not isinstance(runtime, dict):
        raise _invalid("runtimeConfig", runtime, "must be an object")
    device_id = _device_id(obj, runtime)
    ipam = obj.get("ipam")
    if ipam is not None and (not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str)
                             or not ipam.get("type")):
        raise _invalid("ipam", ipam, "must be an object with a 'type'")
    policy = policy or NodePolicy()
    if new_work and ipam is not None and ipam["type"] not in policy.allowed_ipam_types:
        raise _policy_says("ipam.type", f"{_short(ipam['type'])} is not one of the node's "
                           f"allowedIpamTypes {list(policy.allowed_ipam_types)}",
                           "it names a CNI plugin the node runs as root")
    if new_work:
        _agrees_with_policy(obj, policy)
    allow = policy.allow_default_route_device and obj.get("allowDefaultRouteDevice") is not False
    timeout = obj.get("lockTimeoutSeconds", DEFAULT_LOCK_TIMEOUT)
    if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_LOCK_TIMEOUT):
        raise _invalid("lockTimeoutSeconds", timeout, f"must be a number in (0, {MAX_LOCK_TIMEOUT:g}]")
    prev = obj.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise _invalid("prevResult", prev, "must be an object")
    injections: tuple[Injection, ...] = ()
    warnings: tuple[str, ...] = ()
    if any(k.startswith(_ROUTE_KEY_PREFIXES) for k in obj):
        from plugin import route_injection

        injections, warnings = route_injection.parse(obj)
    return NetConf(version, name, device_id, _opt_str(obj, "device"), ipam, policy.state_dir,
                   allow, float(timeout), prev, injections, warnings, policy,
                   runtime.get("CNIDeviceInfoFile"))


def _device_id(obj: Mapping[str, Any], runtime: Mapping[str, Any]) -> str:
    """The PCI address. Multus injects the device plugin's allocation as top-level `deviceID`
    and `pciBusID`; a NAD's literal `runtimeConfig` reaches us untouched unless the NAD declares
    the capability, so `runtimeConfig.deviceID` is used only when neither top-level key is set,
    and any two of them that name different functions are code 7 (never a silent choice)."""
    given = [(key, _opt_str(src, field)) for key, src, field in (
        ("deviceID", obj, "deviceID"), ("pciBusID", obj, "pciBusID"),
        ("runtimeConfig.deviceID", runtime, "deviceID"))]
    given = [(key, value) for key, value in given if value]
    if not given:
        return ""
    first_key, first = given[0]
    for key, value in given[1:]:
        if _same_function(value) != _same_function(first):
            raise _invalid(key, value, f"names another device than {first_key}={first!r} "
                           "(top-level deviceID/pciBusID are what Multus allocated)")
    return first


def _same_function(address: str) -> str:
    """For comparison only: a PCI address in canonical form, anything else as given."""
    from plugin.device import normalize_pci

    try:
        return normalize_pci(address)
    except CniError:
        return address


def _policy_says(key: str, why: str, because: str = "") -> CniError:
    setting = "allowedIpamTypes" if key == "ipam.type" else key
    return CniError(INVALID_CONFIG, f"invalid {key} in the network configuration: {why}",
                    f"{setting} is node policy (${PATH_ENV} or the node's amd-host-device.conf)"
                    + (f"; {because}" if because else "; a NAD may only repeat it"))


def _agrees_with_policy(obj: Mapping[str, Any], policy: NodePolicy) -> None:
    """NAD keys that moved to node policy are accepted when they agree with it (old NADs keep
    working) or narrow it; never when they would widen it. Nothing is touched on disk here."""
    if "stateDir" in obj:
        state_dir = obj["stateDir"]
        cleaned = clean_path(state_dir) if isinstance(state_dir, str) else None
        if cleaned != policy.state_dir:
            raise _policy_says("stateDir", f"{_short(state_dir)} is not the node's state dir "
                               f"{policy.state_dir!r}")
    if "allowDefaultRouteDevice" in obj:
        allow = obj["allowDefaultRouteDevice"]
        if not isinstance(allow, bool):
            raise _invalid("allowDefaultRouteDevice", allow, "must be true or false")
        if allow and not policy.allow_default_route_device:
            raise _policy_says("allowDefaultRouteDevice", "the node's policy does not allow "
                               "moving a NIC that carries the default route")
