"""What a faithful restore needs to know about a NIC, read from `ip -j` and written back as
`ip -batch` lines.

Pure data and text: no commands run here, so recorded JSON exercises all of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from plugin import values as v

FOREVER = 4294967295
MAX_ALTNAMES = 64
# Address flags that change behaviour and that `ip addr add` accepts back.
_ADDR_FLAGS = ("nodad", "noprefixroute", "home", "optimistic", "mngtmpaddr")
# Routes the kernel (or router advertisements) re-create by themselves.
_SKIP_PROTOCOLS = ("kernel", "ra")
_SKIP_TYPES = ("local", "broadcast", "multicast", "anycast")


class Address(NamedTuple):
    """An address as the kernel reported it, with what `ip addr add` needs back."""

    family: str                 # "inet" | "inet6"
    local: str
    prefixlen: int
    peer: str = ""              # "peer" addresses: local is /32, the prefix is on the peer
    broadcast: str = ""
    label: str = ""
    flags: tuple[str, ...] = ()
    valid_lft: int = FOREVER
    preferred_lft: int = FOREVER

    @property
    def cidr(self) -> str:
        """The address as the pod's static IPAM (and CNI results) want it."""
        return f"{self.local}/{self.prefixlen}"

    def add_line(self, dev: str) -> str:
        words = ["address", "replace", self.cidr if not self.peer else self.local]
        if self.peer:
            words += ["peer", f"{self.peer}/{self.prefixlen}"]
        if self.broadcast:
            words += ["broadcast", self.broadcast]
        words += ["dev", dev]
        if self.label and self.label != dev and self.label.startswith(dev):
            words += ["label", self.label]
        if self.valid_lft != FOREVER:
            words += ["valid_lft", str(self.valid_lft), "preferred_lft", str(self.preferred_lft)]
        words += list(self.flags)
        return " ".join(words)

    @classmethod
    def from_json(cls, a: object, where: str = "address") -> Address:
        """A recorded address, every field checked (see plugin/values.py)."""
        a = v.fields(a, where, _ADDRESS_FIELDS)
        family, version = v.family(a.get("family"), f"{where}.family")
        flags = v.array(a.get("flags", []), f"{where}.flags")
        return cls(family=family, local=v.ip(a.get("local"), f"{where}.local", version),
                   prefixlen=v.integer(a.get("prefixlen"), f"{where}.prefixlen", 0,
                                       32 if version == 4 else 128),
                   peer=v.ip(a.get("peer", ""), f"{where}.peer", version, empty=True),
                   broadcast=v.ip(a.get("broadcast", ""), f"{where}.broadcast", 4, empty=True),
                   label=v.label(a.get("label", ""), f"{where}.label"),
                   flags=tuple(v.choice(f, f"{where}.flags", _ADDR_FLAGS) for f in flags),
                   valid_lft=v.integer(a.get("valid_lft", FOREVER), f"{where}.valid_lft"),
                   preferred_lft=v.integer(a.get("preferred_lft", FOREVER),
                                           f"{where}.preferred_lft"))


_ADDRESS_FIELDS = frozenset(("family", "local", "prefixlen", "peer", "broadcast", "label",
                             "flags", "valid_lft", "preferred_lft"))


# iproute2's built-in names (no /etc/iproute2 needed): records written before routes were
# captured with `ip -N` carry these; anything else must already be a number.
TABLES = {"unspec": 0, "default": 253, "main": 254, "local": 255}
PROTOCOLS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8,
             "ra": 9, "mrt": 10, "zebra": 11, "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15,
             "dhcp": 16, "keepalived": 18, "babel": 42, "openr": 99, "bgp": 186, "isis": 187,
             "ospf": 188, "rip": 189, "eigrp": 192}
SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
ROUTE_TYPES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
               "unreachable", "prohibit", "throw", "nat")
MAIN_TABLE = 254
PROTO_BOOT = 3
# Per-route metrics `ip route` takes back as plain integers.
ROUTE_METRICS = ("mtu", "advmss", "window", "hoplimit", "initcwnd", "initrwnd", "reordering",
                 "ssthresh", "cwnd", "rto_min", "quickack", "fastopen_no_cookie")
PREFS = ("low", "medium", "high")
_SKIP_PROTOCOL_NUMBERS = (PROTOCOLS["kernel"], PROTOCOLS["ra"])


class RouteEntry(NamedTuple):
    """A route through the NIC, in any table, as the kernel reported it. Table, protocol and
    scope are numbers: a name from /etc/iproute2 may not exist where the restore runs."""

    family: str
    dst: str
    gateway: str = ""           # may be IPv6 in an IPv4 route (RFC 5549, `via inet6`)
    table: int = MAIN_TABLE
    protocol: int = PROTO_BOOT
    scope: int = 0
    metric: int | None = None
    prefsrc: str = ""
    type: str = "unicast"
    onlink: bool = False
    mtu: int = 0
    pref: str = ""              # IPv6 router preference
    metrics: tuple[tuple[str, int], ...] = ()   # other than mtu

    @property
    def is_default(self) -> bool:
        return self.dst in ("default", "0.0.0.0/0", "::/0")

    @property
    def restorable(self) -> bool:
        return self.protocol not in _SKIP_PROTOCOL_NUMBERS and self.type not in _SKIP_TYPES

    def replace_line(self, dev: str) -> str:
        dst = self.dst
        if dst == "default":
            dst = "::/0" if self.family == "inet6" else "0.0.0.0/0"
        words = ["route", "replace"]
        if self.type != "unicast":
            words.append(self.type)
        words.append(dst)
        if self.gateway:
            gw_family = "inet6" if ":" in self.gateway else "inet"
            words += ["via", self.gateway] if gw_family == self.family else \
                ["via", gw_family, self.gateway]
        words += ["dev", dev, "table", str(self.table), "proto", str(self.protocol),
                  "scope", str(self.scope)]
        if self.metric is not None:
            words += ["metric", str(self.metric)]
        if self.prefsrc:
            words += ["src", self.prefsrc]
        if self.mtu:
            words += ["mtu", str(self.mtu)]
        for name, value in self.metrics:
            words += [name, str(value)]
        if self.pref:
            words += ["pref", self.pref]
        if self.onlink:
            words.append("onlink")
        return " ".join(words)

    @classmethod
    def from_json(cls, r: object, where: str = "route") -> RouteEntry:
        """A recorded route, every field checked (see plugin/values.py)."""
        r = v.fields(r, where, _ROUTE_FIELDS)
        family, version = v.family(r.get("family"), f"{where}.family")
        metric = r.get("metric")
        return cls(
            family=family, dst=v.prefix(r.get("dst"), f"{where}.dst", version),
            gateway=v.ip(r.get("gateway", ""), f"{where}.gateway", empty=True),
            table=v.number_or_name(r.get("table", MAIN_TABLE), f"{where}.table", TABLES,
                                   v.U32_MAX),
            protocol=_protocol(r.get("protocol", PROTO_BOOT), where),
            scope=v.number_or_name(r.get("scope", 0), f"{where}.scope", SCOPES, 255)
            if r.get("scope", "") != "" else 0,
            metric=None if metric is None else v.integer(metric, f"{where}.metric"),
            prefsrc=v.ip(r.get("prefsrc", ""), f"{where}.prefsrc", version, empty=True),
            type=v.choice(r.get("type", "unicast"), f"{where}.type", ROUTE_TYPES),
            onlink=v.boolean(r.get("onlink", False), f"{where}.onlink"),
            mtu=v.integer(r.get("mtu", 0), f"{where}.mtu", 0, 65536 * 16),
            pref=v.choice(r.get("pref", ""), f"{where}.pref", ("", *PREFS)),
            metrics=tuple((v.choice(m[0], f"{where}.metrics", ROUTE_METRICS),
                           v.integer(m[1], f"{where}.metrics.{m[0]}"))
                          for m in (_pair(x, f"{where}.metrics")
                                    for x in v.array(r.get("metrics", []),
                                                     f"{where}.metrics"))))


_ROUTE_FIELDS = frozenset(("family", "dst", "gateway", "table", "protocol", "scope", "metric",
                           "prefsrc", "type", "onlink", "mtu", "pref", "metrics"))


def _protocol(value: object, where: str) -> int:
    if value == "":
        return PROTO_BOOT  # older records: ip prints no protocol for boot routes
    return v.number_or_name(value, f"{where}.protocol", PROTOCOLS, 255)


def _pair(x: object, what: str) -> tuple[object, object]:
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        raise v.Corrupt(f"{what}: must be [name, value] pairs")
    return x[0], x[1]


# `ethtool -k` lines: "name: on|off", maybe " [fixed]" or " [requested on|off]"; children
# of an aggregate (tx-checksumming, ...) are indented with a tab.
_OFFLOAD_LINE = re.compile(r"(\t?)([a-z0-9][a-z0-9_-]{0,63}): (on|off)"
                           r"(?: \[(fixed|requested (on|off))\])?")
_FEATURE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_OFFLOADS = 256
GROUP_MAX = 2**31 - 1  # ip prints a group as a signed number
# Flags a pod can set that the NIC keeps: (ip link set keyword, `ip -j` flag, meaning of "on")
_FLAGS = (("arp", "NOARP", False), ("multicast", "MULTICAST", True),
          ("allmulticast", "ALLMULTI", True), ("promisc", "PROMISC", True))
_SETTINGS_FIELDS = frozenset(("arp", "multicast", "allmulticast", "promisc", "txqueuelen",
                              "group", "gso_max_size", "gso_max_segs", "gro_max_size",
                              "offloads", "broadcast", "linkmode", "channels"))
# IFLA_LINKMODE as `ip -j` prints it, and the word `ip link set mode` takes back (iproute2
# 6.1 sets no other mode: a link in another one is not recorded).
LINKMODES = {"DEFAULT": "default", "DORMANT": "dormant"}
# `ethtool -l` rows and the `ethtool -L` words that set them.
CHANNELS = {"RX": "rx", "TX": "tx", "Other": "other", "Combined": "combined"}
_CHANNEL_LINE = re.compile(r"(RX|TX|Other|Combined):\s+([0-9]{1,10}|n/a)")
# IFLA_XDP_ATTACHED modes (`ip -d -j` "xdp" "mode") and the `ip link set` word that detaches
# each; 4 is XDP_ATTACHED_MULTI, whose modes are listed under "attached".
XDP_MODES = {1: "xdpdrv", 2: "xdpgeneric", 3: "xdpoffload"}
_XDP_MULTI = 4


def _on(value: bool) -> str:
    return "on" if value else "off"


class LinkSettings(NamedTuple):
    """Link settings that stay with the NIC across namespaces, so a pod with NET_ADMIN can
    change them for the node: flags, queue length, group, GSO/GRO limits, offloads (what
    `ethtool -K` may change). None / (): not recorded (older records): left as they come."""

    arp: bool | None = None
    multicast: bool | None = None
    allmulticast: bool | None = None
    promisc: bool | None = None
    txqueuelen: int | None = None
    group: int | None = None
    gso_max_size: int | None = None
    gso_max_segs: int | None = None
    gro_max_size: int | None = None
    offloads: tuple[tuple[str, bool], ...] = ()  # (feature, wanted) of the changeable ones
    broadcast: str = ""          # the link-layer broadcast address; "": not recorded
    linkmode: str | None = None  # "default" | "dormant"
    channels: tuple[tuple[str, int], ...] = ()  # (`ethtool -L` word, count) the NIC supports

    def early_lines(self, dev: str) -> list[str]:
        """Before addresses and `up`: a NOARP link makes NOARP neighbours, a unicast
        broadcast address sends every ARP request to one host."""
        flags = [f"{word} {_on(value)}" for word, value in
                 (("arp", self.arp), ("multicast", self.multicast),
                  ("allmulticast", self.allmulticast), ("promisc", self.promisc))
                 if value is not None]
        lines = [f"link set dev {dev} {' '.join(flags)}"] if flags else []
        lines += [f"link set dev {dev} {word} {value}" for word, value in
                  (("txqueuelen", self.txqueuelen), ("group", self.group),
                   ("broadcast", self.broadcast or None), ("mode", self.linkmode))
                  if value is not None]
        return lines

    def late_lines(self, dev: str) -> list[str]:
        """Keywords newer iproute2 knows (an older one stops parsing there): last."""
        return [f"link set dev {dev} {word} {value}" for word, value in
                (("gso_max_size", self.gso_max_size), ("gso_max_segs", self.gso_max_segs),
                 ("gro_max_size", self.gro_max_size)) if value is not None]

    def ethtool_words(self, now: Sequence[tuple[str, bool]] | None = None) -> list[str]:
        """`ethtool -K DEV` arguments that put the recorded offloads back: those that differ
        from `now` (parse_offloads of the NIC as it is), every one when now is None."""
        current = dict(now or ())
        return [w for name, wanted in self.offloads
                if now is None or current.get(name) != wanted for w in (name, _on(wanted))]

    def channel_words(self, now: Sequence[tuple[str, int]] | None = None) -> list[str]:
        """`ethtool -L DEV` arguments that put the recorded channel counts back: those that
        differ from `now` (parse_channels of the NIC as it is), every one when now is None."""
        current = dict(now or ())
        return [w for name, count in self.channels
                if now is None or current.get(name) != count for w in (name, str(count))]

    @classmethod
    def from_json(cls, obj: object, where: str = "settings") -> LinkSettings:
        """Recorded settings, every field checked; missing (older records) is None."""
        if obj is None:
            return cls()
        obj = v.fields(obj, where, _SETTINGS_FIELDS)

        def flag(key: str) -> bool | None:
            value = obj.get(key)
            return None if value is None else v.boolean(value, f"{where}.{key}")

        def number(key: str, high: int = v.U32_MAX) -> int | None:
            value = obj.get(key)
            return None if value is None else v.integer(value, f"{where}.{key}", 0, high)

        offloads = v.array(obj.get("offloads", []), f"{where}.offloads")
        if len(offloads) > MAX_OFFLOADS:
            raise v.Corrupt(f"{where}.offloads: more than {MAX_OFFLOADS}")
        linkmode = obj.get("linkmode")
        return cls(arp=flag("arp"), multicast=flag("multicast"),
                   allmulticast=flag("allmulticast"), promisc=flag("promisc"),
                   txqueuelen=number("txqueuelen"), group=number("group", GROUP_MAX),
                   gso_max_size=number("gso_max_size"),
                   gso_max_segs=number("gso_max_segs", 65535),
                   gro_max_size=number("gro_max_size"),
                   offloads=tuple(_offload(x, f"{where}.offloads") for x in offloads),
                   broadcast=v.mac(obj.get("broadcast", ""), f"{where}.broadcast",
                                   empty=True),
                   linkmode=None if linkmode is None else
                   v.choice(linkmode, f"{where}.linkmode", LINKMODES.values()),
                   channels=_channels(obj.get("channels", []), f"{where}.channels"))


def _offload(x: object, what: str) -> tuple[str, bool]:
    name, wanted = _pair(x, what)
    name = v.string(name, what)
    if not _FEATURE_NAME.fullmatch(name):
        raise v.Corrupt(f"{what}: {name[:40]!r} is not an offload feature name")
    return name, v.boolean(wanted, f"{what}.{name}")


def _channels(value: object, what: str) -> tuple[tuple[str, int], ...]:
    """Recorded channel counts: each known word at most once."""
    out: list[tuple[str, int]] = []
    for x in v.array(value, what):
        name, count = _pair(x, what)
        name = v.choice(name, what, CHANNELS.values())
        if any(name == seen for seen, _ in out):
            raise v.Corrupt(f"{what}: {name} twice")
        out.append((name, v.integer(count, f"{what}.{name}")))
    return tuple(out)


def _plain(value: Any) -> Any:
    """A value with every NamedTuple in it as a dict (what a record stores)."""
    if hasattr(value, "_asdict"):
        return {k: _plain(x) for k, x in value._asdict().items()}
    if isinstance(value, tuple):
        return tuple(_plain(x) for x in value)
    return value


def parse_channels(text: str) -> tuple[tuple[str, int], ...]:
    """From `ethtool -l DEV`: the current count of each channel kind the NIC supports (a
    pre-set maximum, and a current value, that are numbers; "n/a" is not supported)."""
    maximums: dict[str, int] = {}
    current: dict[str, int] = {}
    table: dict[str, int] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Pre-set maximums"):
            table = maximums
        elif line.startswith("Current hardware settings"):
            table = current
        elif table is not None and (m := _CHANNEL_LINE.fullmatch(line)) and m[2] != "n/a":
            table.setdefault(CHANNELS[m[1]], int(m[2]))
    return tuple((name, current[name]) for name in CHANNELS.values()
                 if maximums.get(name) and name in current and current[name] <= v.U32_MAX)


def xdp_modes(link: Mapping[str, Any]) -> tuple[str, ...]:
    """The `ip link set` words that detach the XDP programs `ip -d -j link show` reports on
    the link (a pod may attach one: it stays with the netdev across namespaces)."""
    xdp = link.get("xdp")
    if not isinstance(xdp, Mapping):
        return ()
    modes = [xdp.get("mode")]
    if modes[0] == _XDP_MULTI:
        attached = xdp.get("attached")
        modes = [a.get("mode") for a in attached if isinstance(a, Mapping)] \
            if isinstance(attached, list) else []
    return tuple(XDP_MODES[m] for m in XDP_MODES if m in modes)


def parse_offloads(text: str) -> tuple[tuple[str, bool], ...]:
    """From `ethtool -k DEV`: the features that can change (not `[fixed]`) and their wanted
    state; an aggregate line is left out, its children say it all."""
    rows = [m for m in (_OFFLOAD_LINE.fullmatch(line.rstrip()) for line in text.splitlines())
            if m]
    out = []
    for i, m in enumerate(rows):
        aggregate = not m[1] and i + 1 < len(rows) and bool(rows[i + 1][1])
        if aggregate or m[4] == "fixed":
            continue
        out.append((m[2], (m[5] or m[3]) == "on"))
    return tuple(out[:MAX_OFFLOADS])


def _group(value: object) -> int | None:
    """`ip` prints the group by name when it has one: only the built-in name is known."""
    if value == "default":
        return 0
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value) if int(value) <= GROUP_MAX else None
    return None


def parse_settings(link: Mapping[str, Any] | None, offloads: str = "",
                   channels: str = "") -> LinkSettings:
    """From the NIC's `ip -d -j link show` object, `ethtool -k` and `ethtool -l` text; a
    value `ip` did not report, or out of range, is not recorded."""
    if link is None:
        return LinkSettings(offloads=parse_offloads(offloads),
                            channels=parse_channels(channels))
    raw: dict[str, Any] = {}
    flags = link.get("flags")
    if isinstance(flags, list):
        for word, flag, meaning in _FLAGS:
            raw[word] = (flag in flags) == meaning
    for key, field, high in (("txqlen", "txqueuelen", v.U32_MAX),
                             ("gso_max_size", "gso_max_size", v.U32_MAX),
                             ("gso_max_segs", "gso_max_segs", 65535),
                             ("gro_max_size", "gro_max_size", v.U32_MAX)):
        value = link.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high:
            raw[field] = value
    group = _group(link.get("group"))
    if group is not None:
        raw["group"] = group
    broadcast = link.get("broadcast")
    if isinstance(broadcast, str) and v.valid_mac(broadcast):
        raw["broadcast"] = broadcast
    linkmode = link.get("linkmode")
    if isinstance(linkmode, str) and linkmode in LINKMODES:
        raw["linkmode"] = LINKMODES[linkmode]
    raw["offloads"] = [list(x) for x in parse_offloads(offloads)]
    raw["channels"] = [list(x) for x in parse_channels(channels)]
    return LinkSettings.from_json(raw)


def rename_line(current: str, name: str) -> str:
    """The restore step that gives the NIC its node name back: the one step whose failure
    means the NIC is not home (giveback.restore looks for exactly this line)."""
    return f"link set dev {current} name {name}"


class LinkSnapshot(NamedTuple):
    """The NIC as it was on the node before the pod took it."""
    name: str
    mac: str
    mtu: int
    up: bool
    addresses: tuple[Address, ...]
    routes: tuple[RouteEntry, ...]
    # Its alternative names on the node; None: not recorded (older records, AMD's mappings),
    # then the altnames it comes home with are left alone.
    altnames: tuple[str, ...] | None = None
    settings: LinkSettings = LinkSettings()
    # Altnames it had on the node that no batch line may carry (a leftover a pod added by raw
    # netlink that no command could remove): neither re-added nor deleted; optional (older
    # records have none), at most MAX_ALTNAMES kept.
    not_restorable: tuple[str, ...] = ()

    @property
    def carries_default_route(self) -> bool:
        return any(r.is_default and r.table == MAIN_TABLE and r.type == "unicast"
                   for r in self.routes)

    def stray_altnames(self, current: Sequence[str]) -> list[str]:
        """Altnames the NIC came home with that it did not have on the node."""
        if self.altnames is None:
            return []
        return [a for a in current if a not in self.altnames]

    def restore_lines(self, current_name: str, current_mac: str = "",
                      current_altnames: Sequence[str] = (),
                      current_xdp: Sequence[str] = ()) -> list[str]:
        """`ip -batch` lines that give the node back this NIC's configuration.

        Order matters: rename needs the link down, routes need the link up and its addresses.
        `current_name`, `current_mac`, `current_altnames` and `current_xdp` (xdp_modes) come
        from a netns the pod controls: checked here (an altname no batch line may carry
        raises: the caller drops those with argv words first). XDP the pod attached is
        detached first: a program in driver mode may limit the MTU."""
        v.ifname(current_name, "current interface name")
        try:
            current_mac = v.mac(current_mac, "current MAC", empty=True)
        except v.Corrupt:
            current_mac = "unknown"  # not one we could compare: set ours
        stray = [v.altname(a, "current altname") for a in self.stray_altnames(current_altnames)]
        lines = []
        dev = current_name
        if current_name != self.name:
            lines += [f"link set dev {current_name} down", rename_line(current_name, self.name)]
            dev = self.name
        lines += [f"link set dev {dev} {v.choice(mode, 'current XDP mode', XDP_MODES.values())}"
                  " off" for mode in current_xdp]
        if current_mac and self.mac and current_mac.lower() != self.mac.lower():
            lines.append(f"link set dev {dev} address {self.mac}")
        if self.mtu:  # 0: not known (records inherited from AMD's Go plugin)
            lines.append(f"link set dev {dev} mtu {self.mtu}")
        lines += self.settings.early_lines(dev)
        lines += [a.add_line(dev) for a in self.addresses]
        if self.up:
            lines.append(f"link set dev {dev} up")
        lines += [r.replace_line(dev) for r in self.routes if r.restorable]
        # `ip link property` (iproute2 >= 5.5) and GSO/GRO keywords last: an ip that cannot
        # parse a line stops there, and the rest are retried one process each.
        lines += [f"link property del dev {dev} altname {a}" for a in stray]
        lines += [f"link property add dev {dev} altname {a}" for a in self.altnames or ()
                  if a not in current_altnames]
        lines += self.settings.late_lines(dev)
        return lines

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(x) for k, x in self._asdict().items()}

    @classmethod
    def from_json(cls, obj: object, where: str = "snapshot") -> LinkSnapshot:
        """A recorded snapshot; raises values.Corrupt (a ValueError) naming the bad field."""
        obj = v.obj(obj, where)
        altnames = None if obj.get("altnames") is None else \
            v.array(obj.get("altnames"), f"{where}.altnames")
        if altnames is not None and len(altnames) > MAX_ALTNAMES:
            raise v.Corrupt(f"{where}.altnames: more than {MAX_ALTNAMES}")
        return cls(name=v.ifname(obj.get("name"), f"{where}.name"),
                   mac=v.mac(obj.get("mac", ""), f"{where}.mac", empty=True),
                   mtu=v.integer(obj.get("mtu"), f"{where}.mtu", 0, 65536 * 16),
                   up=v.boolean(obj.get("up"), f"{where}.up"),
                   addresses=tuple(Address.from_json(a, f"{where}.addresses[{i}]") for i, a in
                                   enumerate(v.array(obj.get("addresses"),
                                                     f"{where}.addresses"))),
                   routes=tuple(RouteEntry.from_json(r, f"{where}.routes[{i}]") for i, r in
                                enumerate(v.array(obj.get("routes"), f"{where}.routes"))),
                   altnames=None if altnames is None else tuple(
                       v.altname(a, f"{where}.altnames") for a in altnames),
                   settings=LinkSettings.from_json(obj.get("settings"), f"{where}.settings"),
                   not_restorable=_leftovers(obj.get("not_restorable", []),
                                             f"{where}.not_restorable"))

    def with_link(self, link: Mapping[str, Any] | None, offloads: str = "",
                  channels: str = "") -> LinkSnapshot:
        """The snapshot with what ADD's `ip -d -j link show` (and `ethtool -k`, `ethtool -l`)
        said of the NIC; checked by the rules a record read back is (raises
        values.Corrupt)."""
        altnames = [v.string(a, f"{self.name} altname")
                    for a in v.array(link.get("altnames", []) if link is not None else [],
                                     "altnames")]
        return self._replace(altnames=tuple(a for a in altnames if v.valid_altname(a)),
                             settings=parse_settings(link, offloads, channels),
                             not_restorable=_leftovers([a for a in altnames
                                                        if not v.valid_altname(a)][:MAX_ALTNAMES],
                                                       f"{self.name} altnames"))


def _leftovers(value: object, what: str) -> tuple[str, ...]:
    """Altnames recorded as not restorable: only ever logged and compared, never put in a
    command; what the kernel allows (1..127 bytes, no NUL) and at most MAX_ALTNAMES."""
    out = []
    for a in v.array(value, what)[:MAX_ALTNAMES + 1]:
        name = v.string(a, what)
        try:
            size = len(name.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            raise v.Corrupt(f"{what}: {name[:40]!r} is not a name the kernel reported") from None
        if not 0 < size <= v.ALTNAME_MAX or "\0" in name:
            raise v.Corrupt(f"{what}: {name[:40]!r} is not an alternative interface name")
        out.append(name)
    if len(out) > MAX_ALTNAMES:
        raise v.Corrupt(f"{what}: more than {MAX_ALTNAMES}")
    return tuple(out)


def _family_of(route: Mapping[str, Any]) -> str:
    """`ip -j route show table all` mixes families and does not name them. The gateway does not
    decide: an IPv4 route may go via an IPv6 next hop (RFC 5549)."""
    for key in ("dst", "prefsrc"):
        value = route.get(key, "")
        if isinstance(value, str) and value and value != "default":
            return "inet6" if ":" in value else "inet"
    if "pref" in route:
        return "inet6"
    gateway = route.get("gateway", "")
    return "inet6" if isinstance(gateway, str) and ":" in gateway else "inet"


def parse_address(a: Mapping[str, Any]) -> Address | None:
    """One addr_info entry; None for what a restore must not carry (link-local, kernel-made)."""
    if a.get("family") not in ("inet", "inet6") or a.get("scope") in ("link", "253"):
        return None
    local = a.get("local", "")
    address = a.get("address", "")
    peer = address if address and address != local else ""
    raw = {"family": a["family"], "local": local, "prefixlen": a.get("prefixlen", 0),
           "peer": peer, "broadcast": a.get("broadcast", "") if a["family"] == "inet" else "",
           "label": a.get("label", ""), "flags": [f for f in _ADDR_FLAGS if a.get(f)],
           "valid_lft": a.get("valid_life_time", FOREVER),
           "preferred_lft": a.get("preferred_life_time", FOREVER)}
    return Address.from_json(raw, f"address {local}")


def _route_type(value: object) -> str:
    """`ip -N` prints route types as numbers too."""
    if isinstance(value, str) and value.isdigit() and int(value) < len(ROUTE_TYPES):
        return ROUTE_TYPES[int(value)]
    return str(value)


def parse_route(r: Mapping[str, Any]) -> RouteEntry | None:
    """One route of `ip -j -N route show` (numbers, not /etc/iproute2 names); checked by the
    same rules as a record read back, so nothing captured is something restore refuses."""
    if "nexthops" in r or "nhid" in r:
        return None  # multipath/nexthop objects: not tied to this NIC alone
    mtu = 0
    extra: list[list[Any]] = []
    metrics = r.get("metrics") or []
    for m in metrics if isinstance(metrics, list) else []:
        for name, value in (m.items() if isinstance(m, Mapping) else ()):
            if name == "mtu" and isinstance(value, int):
                mtu = value
            elif name in ROUTE_METRICS and isinstance(value, int):
                extra.append([name, value])
    gateway = r.get("gateway", "")
    if not gateway and isinstance(r.get("via"), Mapping):
        gateway = r["via"].get("host", "")
    family = _family_of(r)
    raw = {"family": family, "dst": r.get("dst", ""), "gateway": gateway,
           "table": r.get("table", MAIN_TABLE), "protocol": r.get("protocol", PROTO_BOOT),
           "scope": r.get("scope", 0), "prefsrc": r.get("prefsrc", ""),
           "type": _route_type(r.get("type", "unicast")),
           "onlink": "onlink" in (r.get("flags") or []), "mtu": mtu, "metrics": extra,
           "pref": r.get("pref", "") if family == "inet6" else ""}
    if r.get("metric") is not None:
        raw["metric"] = r["metric"]
    return RouteEntry.from_json(raw, f"route {r.get('dst', '')}")


def parse_snapshot(addr_show: Sequence[Mapping[str, Any]],
                   routes: Iterable[Mapping[str, Any]]) -> LinkSnapshot:
    """From `ip -j -N addr show dev X` and `ip -j -N route show table all dev X`."""
    link = addr_show[0]
    addresses = tuple(a for a in (parse_address(x) for x in link.get("addr_info", [])) if a)
    parsed = tuple(r for r in (parse_route(x) for x in routes) if r)
    return LinkSnapshot(name=v.ifname(link["ifname"], "ifname"),
                        mac=v.mac(link.get("address", ""), "address", empty=True),
                        mtu=int(link["mtu"]),
                        up="UP" in link.get("flags", []), addresses=addresses, routes=parsed)
