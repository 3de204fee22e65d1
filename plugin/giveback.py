"""Giving a NIC back to the node, wherever an attachment left it, with the configuration it had.

Used by DEL, by ADD's rollback and by the clean-up of stale records, so one path decides where
the NIC is: in the pod under any name, or already on the node (ADD crashed before the move, or
the pod's netns died and the kernel sent it home under its pod-side name). An interface is the
NIC only when plugin/identity.py proves it, never by its name, alias or MAC; and CNI_NETNS is
looked into only when it is the namespace ADD recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from plugin import backend, delegate, identity, log
from plugin import values as v
from plugin.cni import Env
from plugin.errors import NETWORK_COMMAND_FAILED, CniError
from plugin.snapshot import parse_channels, parse_offloads, rename_line, xdp_modes
from plugin.state import PHASE_MOVING, Record, netns_identity
from plugin.values import valid_ifname

RETURN_WAIT_SECONDS = 2.0


class Link(NamedTuple):
    """A link proven to be the NIC, in the pod or on the node."""

    name: str
    mac: str
    altnames: tuple[str, ...] = ()
    alias: str | None = None  # None: not known
    xdp: tuple[str, ...] = ()  # the XDP programs attached to it (snapshot.xdp_modes)


def _altnames(obj: Mapping[str, Any]) -> tuple[str, ...]:
    names = obj.get("altnames")
    return tuple(str(a) for a in names) if isinstance(names, list) else ()


def _as_link(obj: Mapping[str, Any]) -> Link:
    return Link(str(obj.get("ifname", "")), str(obj.get("address", "")).lower(),
                _altnames(obj), str(obj.get("ifalias", "")), xdp_modes(obj))


def nic_identity(record: Record) -> identity.NicIdentity:
    """The record's proof of identity; a PCI-selected NIC is at least its PCI address."""
    ident = record.identity
    if not ident.pci and record.pci_address:
        ident = ident._replace(pci=record.pci_address)
    return ident


def _perm_macs(node: backend.Node, ident: identity.NicIdentity, links: Sequence[Mapping[str, Any]],
               netns: str) -> dict[str, str]:
    """ethtool -P only where it can decide: the record has a permanent MAC and the link is
    hardware `ip` shows no PCI parent for."""
    if not ident.perm_mac:
        return {}
    return {str(x.get("ifname")): backend.ethtool_perm_mac(node, str(x.get("ifname")), netns)
            for x in links if identity.wants_perm_mac(x)}


# What DEL parses from the pod: one link's `ip -j -d` object (its altnames are capped by the
# kernel at 64 KiB, escaped at most 6x in JSON); a pod cannot make DEL parse its whole netns.
POD_READ_MAX_BYTES = 1 << 20


class PodLook(NamedTuple):
    """The NIC in the pod, proven (or None), and whether another pod link holds the NIC's
    node name (host-device would rename the NIC to it before the move)."""

    link: Mapping[str, Any] | None
    node_name_taken: bool


def _read_pod(node: backend.Node, netns: str, lines: list[str],
              link_only: bool = False) -> list[list[dict[str, Any]] | None]:
    try:
        return backend.ip_json_each(node, lines, netns=netns, details=True,
                                    max_bytes=POD_READ_MAX_BYTES, link_only=link_only)
    except backend.CommandFailed as e:
        # Not knowing is not "not there": fail, and let the runtime retry.
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot look into the pod's netns {netns}",
                       str(e)) from None


def _pod_link(node: backend.Node, netns: str, record: Record) -> PodLook:
    """The NIC in the pod, read by the names it has there (CNI_IFNAME, or the node name
    host-device gives it before the move), else by its recorded ifindex: never the pod's
    whole link table, which a pod can make as large as it likes."""
    ident = nic_identity(record)
    # A record still "moving" has no pod-side peer yet; its pod has run no workload (ADD has
    # not returned), so the names host-device gives the NIC count with the peer's ifindex.
    fresh = record.phase == PHASE_MOVING and not ident.peer_pod
    names = tuple(dict.fromkeys((record.ifname, record.snapshot.name)))
    by_name = _read_pod(node, netns, [f"link show dev {n}" for n in names])
    # One link may answer to both names (the pod gave the NIC its node name as an altname).
    links = list({x.get("ifindex"): x for found in reversed(by_name)
                  for x in (found or ())}.values())
    if ident.ifindex and not any(x.get("ifindex") == ident.ifindex for x in links):
        # Renamed by the pod: `ip address show` resolves "if<N>" to ifindex N when no link
        # has that name (a link the pod named so is not the NIC: its index tells); `-0`: the
        # link alone, not the addresses the pod may pile on it. Its own process: in a batch
        # after another read, ip 6.1 prints [] for it.
        found = _read_pod(node, netns, [f"address show dev if{ident.ifindex}"], link_only=True)[0] or []
        links += [x for x in found if x.get("ifindex") == ident.ifindex]
    proven, why = identity.find(ident, links, identity.Frame.POD,
                                _perm_macs(node, ident, links, netns), names=names, fresh=fresh)
    for reason in why:
        log.warn(f"not the NIC of {record.attachment} in the pod: {reason}")
    taken = any(str(x.get("ifname", "")) == record.snapshot.name and
                (proven is None or x.get("ifindex") != proven.get("ifindex")) for x in links)
    return PodLook(proven, taken)


def _moves_as_is(record: Record, in_pod: Link, node_name_taken: bool,
                 node_has_name: bool) -> bool:
    """Pure: host-device can bring the NIC home as it is. It renames the NIC to its alias in
    the pod, then moves it with its altnames: that works when the NIC still has the name
    ADD gave it (host-device gets that name, never one the pod chose), the alias is still the
    node name host-device set at ADD, no other pod link holds that name, the NIC has no
    altnames, and the name is free on the node. Otherwise _prepare_move first."""
    return (in_pod.name == record.ifname and in_pod.alias == record.snapshot.name
            and not in_pod.altnames and not node_has_name and not node_name_taken)


def _node_link(node: backend.Node, record: Record) -> Link | None:
    """The NIC on the node, proven by identity (a Go-plugin mapping: by its name)."""
    ident = nic_identity(record)
    links = backend.ip_json(node, ["link show"], details=True)[0]
    found, why = identity.find(ident, links, identity.Frame.NODE, _perm_macs(node, ident, links, ""),
                               names=(record.snapshot.name, record.ifname),
                               legacy_name=record.snapshot.name if ident.legacy else "")
    for reason in why:
        log.warn(f"not the NIC of {record.attachment} on the node: {reason}")
    return _as_link(found) if found else None


def _wait_on_node(node: backend.Node, record: Record, seconds: float) -> Link | None:
    """Look for the NIC on the node; a physical NIC leaves a destroyed netns asynchronously,
    so `seconds` > 0 waits for it, bounded."""
    deadline = time.monotonic() + seconds
    while True:
        link = _node_link(node, record)
        if link or time.monotonic() >= deadline:
            return link
        time.sleep(0.1)


class Outcome(NamedTuple):
    """Whether the NIC was restored, whether its pod netns still exists, and why CNI_NETNS
    was not looked into (then a NIC not found is not an orphan: it may be safe in its pod)."""

    restored: bool
    pod_alive: bool
    refused: str = ""


class PodView(NamedTuple):
    """Where to look for the NIC in a pod: `path` ("" = on the node only), and why not."""

    path: str
    why: str = ""
    pod_gone: bool = False  # the attachment's own netns is gone: its NIC may be on its way home


def choose_netns(record: Record, env_netns: str, env_id: str, recorded_id: str,
                 node_id: str, env_present: bool = False) -> PodView:
    """Pure: which namespace is the attachment's pod. Identities are "dev:inode" of a verified
    network namespace, "" for a path that is none (plugin/netns.py).

    CNI_NETNS is looked into only when it is the namespace ADD recorded (a path reused by
    another pod is not this pod), and never when it is the node's own netns. env_present: the
    CNI_NETNS path exists (then an empty env_id means it is no network namespace: not the pod).
    A recorded path that is no network namespace is the pod's gone netns."""
    recorded_alive = bool(recorded_id) and (not record.netns_id or recorded_id == record.netns_id)
    gone = not recorded_alive
    if env_netns:
        if not env_id:
            return PodView("", f"CNI_NETNS {env_netns} is not a network namespace: not looking "
                           "into it" if env_present else "", gone)
        if env_id == node_id:
            return PodView("", f"CNI_NETNS {env_netns} is the node's own netns: nothing is "
                           "moved out of it", gone)
        if record.netns_id and env_id != record.netns_id:
            return PodView("", f"CNI_NETNS {env_netns} is another namespace ({env_id}) than "
                           f"the attachment's ({record.netns_id}): not looking into it", gone)
        return PodView(env_netns)
    if recorded_alive and recorded_id != node_id:
        return PodView(record.netns)
    return PodView("", "", gone)


def pod_view(record: Record, env_netns: str) -> PodView:
    """Paths are checked to be network namespaces before anything opens them: a FIFO or a
    mount namespace in a record (or in CNI_NETNS) is never entered."""
    env_id = netns_identity(env_netns) if env_netns else ""
    recorded_id = netns_identity(record.netns) if record.netns else ""
    if record.netns and not recorded_id and os.path.lexists(record.netns):
        log.warn(f"the recorded netns {record.netns} of {record.attachment} is not a network "
                 "namespace: looking for the NIC on the node only")
    return choose_netns(record, env_netns, env_id, recorded_id,
                        netns_identity("/proc/self/ns/net"),
                        env_present=bool(env_netns) and not env_id
                        and os.path.lexists(env_netns))


def give_back(node: backend.Node, record: Record, env: Env, state_dir: str, wait: float = RETURN_WAIT_SECONDS,
              look_in_pod: bool = True) -> Outcome:
    """Bring the NIC to the node and restore it. Not restored if no interface proves to be it
    (a veth destroyed with its netns, a NIC the kernel has not returned yet, or a pod that
    hides it): the caller keeps the record.

    look_in_pod=False when the caller already found the NIC on the node."""
    view = pod_view(record, env.netns) if look_in_pod else PodView("")
    if view.why:
        log.warn(view.why)
    if view.path:
        look = _pod_link(node, view.path, record)
        if look.link is not None:
            in_pod = _as_link(look.link)
            ifname = record.ifname   # host-device gets a name we chose, never the pod's
            if not _moves_as_is(record, in_pod, look.node_name_taken,
                                backend.link_exists(node, record.snapshot.name)):
                ifname = _prepare_move(node, view.path, look.link, record.ifname)
            hd = delegate.locate(node, env.path, state_dir)
            conf = {"cniVersion": hd.pick_version(delegate.BASELINE_VERSION), "name": "amd-host-device",
                    "type": "host-device", "device": record.snapshot.name}
            delegate.run(node, hd, "DEL", env, ifname, view.path, conf)
            log.event(f"host-device returned {in_pod.name!r} (as {ifname}) from {view.path}")
            # host-device finds the link by name: prove that what came home is the NIC
            # before giving it the node's configuration (the pod may have swapped names).
            home = _node_link(node, record)
            if home is None:
                raise CniError(NETWORK_COMMAND_FAILED, f"what host-device returned from the pod "
                               f"as {ifname} is not provably {record.snapshot.name}",
                               "record kept; see the log")
            # Its offloads and channels as they came home, so restore sets only what the pod
            # changed.
            restore(node, record, home, Ethtool(backend.ethtool_read(node, "-k", home.name, quiet=True),
                                          backend.ethtool_read(node, "-l", home.name, quiet=True)))
            return Outcome(True, True)
    # Only a NIC whose pod netns is gone may still be on its way home.
    link = _wait_on_node(node, record, wait if look_in_pod and view.pod_gone else 0)
    if link is None:
        return Outcome(False, not view.pod_gone, view.why)
    restore(node, record, link)
    return Outcome(True, not view.pod_gone)


TEMPORARY_PREFIX = "ahd"


def temporary_name() -> str:
    """A name no link can hold in advance: 15 bytes, 48 random bits (os.urandom: `secrets`
    would cost every DEL its imports)."""
    return TEMPORARY_PREFIX + os.urandom(6).hex()


def _in_pod(node: backend.Node, netns: str, argv: list[str], what: str) -> None:
    try:
        backend.run(node, ["ip", *argv], netns=netns)
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot {what} in the pod before the move",
                       str(e)) from None


def _prepare_move(node: backend.Node, netns: str, link: Mapping[str, Any], ours: str) -> str:
    """host-device renames the NIC to its alias *inside the pod* before the move, and its
    altnames move with it: a pod link holding the node name, or an altname that is a node
    link's name, failed every DEL with EEXIST; and host-device refuses a CNI_IFNAME that Go
    calls white space (U+0085, U+2000...), which the kernel allows. So the alias becomes a
    name nobody can hold in advance, and a NIC that lost `ours` (CNI_IFNAME) is renamed to
    it too: host-device gets a name we chose. Its altnames go one by one (one that ip
    refuses must not keep the others); those no ip command can carry (ASCII white space,
    '/', newline: only raw netlink adds them) stay:
    they cannot clash with a node name, and ADD records them as not restorable. restore()
    names the NIC back on the node and gives it its node altnames again. Returns the name
    host-device gets."""
    name = str(link.get("ifname", ""))
    temporary = temporary_name()
    dev = name
    if name != ours:
        # The pod's name goes as argv words (ip never re-parses them): it may be any bytes
        # the kernel allows in a name.
        _in_pod(node, netns, ["link", "set", "dev", name, "down"], f"set {name!r} down")
        _in_pod(node, netns, ["link", "set", "dev", name, "name", temporary], f"rename {name!r}")
        dev = temporary
    altnames = _altnames(link)
    lines = [f"link set dev {dev} alias {temporary}"]
    lines += [f"link property del dev {dev} altname {a}" for a in altnames
              if v.valid_altname(a)]
    failures = backend.ip_batch(node, lines, netns=netns)
    for f in failures:
        log.warn(f"before the move, in the pod: {f.line!r}: {f.message}")
    if any(f.line == lines[0] for f in failures):
        # host-device would rename the NIC to an alias the pod chose.
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot set the alias of {dev} in the "
                       "pod before the move", "; ".join(f.message for f in failures))
    for a in altnames:
        if not v.valid_altname(a):
            _drop_altname(node, dev, a, netns)
    return dev


def _drop_altname(node: backend.Node, dev: str, altname: str, netns: str = "") -> None:
    """One altname no batch line may carry, as argv words; one no ip command can carry is
    left (logged): a pod's raw netlink put it there."""
    if not v.argv_altname(altname):
        log.warn(f"{dev} keeps the altname {altname!r}: no ip command can carry it")
        return
    try:
        backend.run(node, ["ip", "link", "property", "del", "dev", dev, "altname", altname],
                    netns=netns)
    except backend.CommandFailed as e:
        log.warn(f"cannot delete the altname {altname!r} of {dev}: {e}")


def _drop_unsafe_altnames(node: backend.Node, record: Record, link: Link) -> Link:
    """Altnames the NIC came home with that no batch line may carry (the pod chose them, or
    ADD recorded them as not restorable): deleted one by one with argv words where a command
    can carry them; the rest go in the restore batch."""
    unsafe = [a for a in link.altnames if not v.valid_altname(a)]
    for a in unsafe:
        # Older records did not record altnames: then those the NIC has are left alone.
        if record.snapshot.altnames is not None and a not in record.snapshot.not_restorable:
            _drop_altname(node, link.name, a)
    return link._replace(altnames=tuple(a for a in link.altnames if a not in unsafe))


def _apply(node: backend.Node, record: Record, link: Link) -> list[backend.BatchFailure]:
    """The restore batch; a name or MAC that cannot go into a batch line (the pod may have
    chosen it) is refused, never sent. Every line after the rename names the NIC by its node
    name: if another link holds that name (a pod's veth host-device brought home in its place),
    nothing is run, or the node's configuration would go onto that link."""
    name = record.snapshot.name
    if link.name != name and name not in link.altnames and backend.link_exists(node, name):
        raise CniError(NETWORK_COMMAND_FAILED, f"{name} is taken on the node by a link that is "
                       f"not the NIC (which is home as {link.name!r}): nothing restored",
                       f"record {record.attachment} kept; rename or remove that link, then "
                       "DEL again")
    if not valid_ifname(link.name):
        # A name the pod chose that no batch line may carry (a NIC renamed in the pod and
        # sent home by the kernel): rename it with argv words, which ip never re-parses.
        log.warn(f"{link.name!r} cannot go into an ip -batch line; renaming it first")
        try:
            backend.run(node, ["ip", "link", "set", "dev", link.name, "down"])
            backend.run(node, ["ip", "link", "set", "dev", link.name, "name", record.snapshot.name])
        except backend.CommandFailed as e:
            raise CniError(NETWORK_COMMAND_FAILED, f"cannot rename {link.name!r} back to "
                           f"{record.snapshot.name}", str(e)) from None
        link = link._replace(name=record.snapshot.name)
    link = _drop_unsafe_altnames(node, record, link)
    try:
        lines = record.snapshot.restore_lines(link.name, link.mac, link.altnames, link.xdp)
        if link.alias is not None and link.alias != name:
            lines.append(f"link set dev {name} alias {name}")  # not the temporary one
        return backend.ip_batch(node, lines)
    except ValueError as e:  # validate.Corrupt, backend.UnsafeLine
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot restore {record.snapshot.name}: {e}",
                       f"record {record.attachment}") from None


def _home_by_name(node: backend.Node, record: Record) -> bool:
    """After a failed rename: is the NIC home under its name after all? An ip that stopped at
    a line it could not parse had renamed it already, and the retry of the lines after the
    last failure it reported ran the rename again (the only line that is not idempotent)."""
    home = _node_link(node, record)
    if home is None or home.name != record.snapshot.name:
        return False
    log.warn(f"{home.name} is home under its name: the failed rename was a retry")
    return True


class Ethtool(NamedTuple):
    """`ethtool -k` and `-l` text of the NIC as it came home ("" where ethtool can't tell)."""

    offloads: str
    channels: str


def restore(node: backend.Node, record: Record, link: Link, now: Ethtool | None = None) -> None:
    """One `ip -force -batch`: every step is tried; a failed rename is fatal, others logged.
    Then `ethtool -L` puts recorded channel counts back and `ethtool -K` recorded offloads:
    only what differs from `now`, each one only if anything does (None: all of them).
    A NIC that was a bridge/bond port becomes a port of the same master again."""
    snap = record.snapshot
    failures = _apply(node, record, link)
    for f in failures:
        log.error(f"restore step failed: {f.line!r}: {f.message}")
    rename = rename_line(link.name, snap.name)  # the one step whose failure loses the NIC
    if any(f.line == rename for f in failures) and not _home_by_name(node, record):
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot rename {link.name} back to {snap.name}",
                       "; ".join(f.message for f in failures))
    channels = offloads = None
    if now is not None:
        channels = parse_channels(now.channels) if now.channels else None
        offloads = parse_offloads(now.offloads) if now.offloads else None
    why = backend.ethtool_set(node, "-L", snap.name, snap.settings.channel_words(channels))
    if why:
        log.error(f"cannot restore the channels of {snap.name}: {why}")
    why = backend.ethtool_set(node, "-K", snap.name, snap.settings.ethtool_words(offloads))
    if why:
        log.error(f"cannot restore the offloads of {snap.name}: {why}")
    if record.master:
        for f in backend.ip_batch(node, [f"link set dev {snap.name} master {record.master}"]):
            log.error(f"cannot make {snap.name} a port of {record.master} again: {f.message}")
    log.event(f"restored {snap.name}: {len(snap.addresses)} addresses, mtu {snap.mtu or 'kept'}, "
              f"{'up' if snap.up else 'down'}" + (f", port of {record.master}" if record.master
                                                  else "")
              + (f", {len(failures)} steps failed" if failures else ""))
