"""CNI results, read in any supported version and written in exactly the requested one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from plugin.cni import version_key
from plugin.errors import DECODE_FAILURE, CniError


class Interface(NamedTuple):
    """A result interface; mtu and pciID exist only in 1.1.0 results."""

    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    pci_id: str = ""


class IPConfig(NamedTuple):
    """A result address; its family decides the 0.3.x `version` field."""

    address: str
    gateway: str = ""
    interface: int | None = None

    @property
    def family(self) -> str:
        return "6" if ":" in self.address else "4"


class Route(NamedTuple):
    """A result route; the 1.1.0-only fields are dropped for older readers."""

    dst: str
    gw: str = ""
    # 1.1.0 only; dropped when writing older versions.
    mtu: int = 0
    table: int = 0
    scope: int | None = None


class DNS(NamedTuple):
    """Result DNS settings, passed through from the delegate."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


class Result(NamedTuple):
    """A CNI result, independent of the version it was read in or is written in."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()

    def with_interface(self, index: int, **changes: Any) -> Result:
        ifaces = list(self.interfaces)
        ifaces[index] = ifaces[index]._replace(**changes)
        return self._replace(interfaces=tuple(ifaces))

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        v = version_key(cni_version)
        out: dict[str, Any] = {"cniVersion": cni_version}
        if self.interfaces:
            out["interfaces"] = [_iface_dict(i, v) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_dict(ip, v) for ip in self.ips]
        if self.routes:
            out["routes"] = [_route_dict(r, v) for r in self.routes]
        out["dns"] = _dns_dict(self.dns)
        return out


def _iface_dict(i: Interface, v: tuple[int, int, int]) -> dict[str, Any]:
    d: dict[str, Any] = {"name": i.name}
    if i.mac:
        d["mac"] = i.mac
    if v >= (1, 1, 0) and i.mtu:
        d["mtu"] = i.mtu
    if i.sandbox:
        d["sandbox"] = i.sandbox
    if v >= (1, 1, 0) and i.pci_id:
        d["pciID"] = i.pci_id
    return d


def _ip_dict(ip: IPConfig, v: tuple[int, int, int]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if v < (1, 0, 0):
        d["version"] = ip.family
    if ip.interface is not None:
        d["interface"] = ip.interface
    d["address"] = ip.address
    if ip.gateway:
        d["gateway"] = ip.gateway
    return d


def _route_dict(r: Route, v: tuple[int, int, int]) -> dict[str, Any]:
    d: dict[str, Any] = {"dst": r.dst}
    if r.gw:
        d["gw"] = r.gw
    if v >= (1, 1, 0):
        if r.mtu:
            d["mtu"] = r.mtu
        if r.table:
            d["table"] = r.table
        if r.scope is not None:
            d["scope"] = r.scope
    return d


def _dns_dict(dns: DNS) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if dns.nameservers:
        d["nameservers"] = list(dns.nameservers)
    if dns.domain:
        d["domain"] = dns.domain
    if dns.search:
        d["search"] = list(dns.search)
    if dns.options:
        d["options"] = list(dns.options)
    return d


def _str(obj: Mapping[str, Any], key: str, where: str, required: bool = False) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise CniError(DECODE_FAILURE, f"{where}: {key!r} must be a non-empty string"
                       if required else f"{where}: {key!r} must be a string", repr(value)[:200])
    return value


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CniError(DECODE_FAILURE, f"{where}: {key!r} must be an integer", repr(value)[:200])
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(DECODE_FAILURE, f"{where}: {key!r} must be a list", repr(value)[:200])
    return value


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CniError(DECODE_FAILURE, f"{where} must be an object", repr(value)[:200])
    return value


def parse_result(raw: Any, where: str = "result") -> Result:
    """Read a result of any version 0.3.0-1.1.0 (a delegate's, or a prevResult)."""
    obj = _obj(raw, where)
    interfaces = []
    for n, item in enumerate(_list(obj, "interfaces", where)):
        w = f"{where}.interfaces[{n}]"
        i = _obj(item, w)
        interfaces.append(Interface(_str(i, "name", w, required=True), _str(i, "mac", w),
                                    _str(i, "sandbox", w), _int(i, "mtu", w),
                                    _str(i, "pciID", w)))
    ips = []
    for n, item in enumerate(_list(obj, "ips", where)):
        w = f"{where}.ips[{n}]"
        i = _obj(item, w)
        index = i.get("interface")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                                  or not 0 <= index < len(interfaces)):
            raise CniError(DECODE_FAILURE, f"{w}: 'interface' is not a valid index", repr(index))
        ips.append(IPConfig(_str(i, "address", w, required=True), _str(i, "gateway", w), index))
    routes = []
    for n, item in enumerate(_list(obj, "routes", where)):
        w = f"{where}.routes[{n}]"
        r = _obj(item, w)
        scope = r.get("scope")
        routes.append(Route(_str(r, "dst", w, required=True), _str(r, "gw", w), _int(r, "mtu", w),
                            _int(r, "table", w), scope if isinstance(scope, int) else None))
    w = f"{where}.dns"
    d = _obj({} if obj.get("dns") is None else obj["dns"], w)
    dns = DNS(nameservers=tuple(str(x) for x in _list(d, "nameservers", w)),
              domain=_str(d, "domain", w),
              search=tuple(str(x) for x in _list(d, "search", w)),
              options=tuple(str(x) for x in _list(d, "options", w)))
    return Result(tuple(interfaces), tuple(ips), tuple(routes), dns)
