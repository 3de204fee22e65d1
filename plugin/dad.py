"""IPv6 usable when ADD returns: no second duplicate address detection for what DAD proved.

An address that passed DAD on the node (or was `nodad` there) is the same address on the same
link in the pod: DAD has proven it unique there, and the node no longer holds it. Debian's
static IPAM adds it with DAD on, so the pod could not use it for ~1.5 s. The netdev takes the
pod netns' `default` IPv6 settings when it registers there, so while host-device moves it the
pod's `default.accept_dad` is 0; right after, the pod's default, and the NIC's own setting, are
put back: the pod's other interfaces never see a change, and what the workload adds later to
the NIC gets DAD as the pod says. Addresses the node had not proven (tentative, or failed) get
DAD in the pod, and ADD waits for them like the reference bridge plugin (10 s at most).

Everything runs through plugin/backend.py (`cat`/`tee` of /proc/sys in the pod's netns: a
netns' sysctls are the ones its processes see).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from plugin import backend, log
from plugin.errors import NETWORK_COMMAND_FAILED, CniError

SETTLE_SECONDS = 10.0   # what the reference plugins allow (pkg/ip SettleAddresses)
SETTLE_INTERVAL = 0.05
_CONF = "/proc/sys/net/ipv6/conf"
# Names whose sysctl dir is not one interface's: never written as the NIC's.
_NOT_A_LINK = ("all", "default")
_LINK_SCOPES = ("link", "253", 253)  # link-local: made anew in the pod, never recorded


def _accept_dad(name: str) -> str:
    return f"{_CONF}/{name}/accept_dad"


def unproven(addr_show: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """From the node's `ip -j addr show dev X`: IPv6 addresses DAD has not proven there
    (tentative or failed, and not `nodad`), as address/prefix."""
    out = []
    for link in addr_show:
        for a in link.get("addr_info", []) if isinstance(link, Mapping) else []:
            if (isinstance(a, Mapping) and a.get("family") == "inet6" and not a.get("nodad")
                    and a.get("scope") not in _LINK_SCOPES
                    and (a.get("tentative") or a.get("dadfailed"))):
                out.append(f"{a.get('local')}/{a.get('prefixlen')}")
    return tuple(out)


def _read_default(netns: str) -> str | None:
    """The pod's default.accept_dad, when turning it off skips DAD: None when it cannot be
    read, or when the pod's all.accept_dad is on (the kernel runs DAD when `all` or the
    link's own setting is on: the NIC would get DAD, and the caller must settle)."""
    try:
        values = backend.run(["cat", _accept_dad("default"), _accept_dad("all")],
                             netns=netns).split()
    except backend.CommandFailed as e:
        log.event(f"cannot read the pod's IPv6 accept_dad ({e}); its addresses get DAD")
        return None
    if len(values) != 2 or not all(x.lstrip("-").isdigit() for x in values):
        return None
    if int(values[1]) > 0:
        log.event("the pod's IPv6 all.accept_dad is on: its addresses get DAD")
        return None
    return values[0]


def _write(netns: str, names: Iterable[str], value: str) -> bool:
    try:
        backend.run(["tee", *(_accept_dad(n) for n in names)], stdin=f"{value}\n", netns=netns)
        return True
    except backend.CommandFailed as e:
        log.warn(f"cannot set IPv6 accept_dad={value} in the pod: {e}")
        return False


@contextlib.contextmanager
def skipping(netns: str, ifname: str, wanted: bool) -> Iterator[bool]:
    """Around host-device's ADD: yields whether the NIC surely arrives with DAD off (we turned
    it off). On a normal exit the NIC's own accept_dad is set to the pod's default too; the
    default is put back whatever happens."""
    saved = _read_default(netns) if wanted else None
    if saved is None or saved == "0":
        # "0": the pod skips DAD already (or another ADD into this pod has it off just now:
        # then it puts it back, maybe before our NIC arrives): nothing to change or put back,
        # and the caller settles, which costs one read when nothing is tentative.
        yield False
        return
    if not _write(netns, ["default"], "0"):
        yield False
        return
    ok = False
    try:
        yield True
        ok = True
    finally:
        names = ["default"] + ([ifname] if ok and ifname not in _NOT_A_LINK else [])
        if not _write(netns, names, saved) and ok:
            raise CniError(NETWORK_COMMAND_FAILED, "cannot put back the pod's IPv6 "
                           f"accept_dad={saved}")


def _states(netns: str, ifname: str) -> dict[str, Mapping[str, Any]]:
    try:
        shown = backend.ip_json([f"address show dev {ifname}"], netns=netns)[0]
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot read {ifname}'s addresses in the pod",
                       str(e)) from None
    return {f"{a.get('local')}/{a.get('prefixlen')}": a for link in shown
            for a in link.get("addr_info", []) if a.get("family") == "inet6"}


def settle(netns: str, ifname: str, cidrs: Sequence[str],
           timeout: float = SETTLE_SECONDS) -> None:
    """Wait until none of `cidrs` is tentative on the NIC in the pod; one that failed DAD, or
    is still tentative after `timeout`, is an error naming it (the caller rolls back)."""
    if not cidrs:
        return
    deadline = time.monotonic() + timeout
    while True:
        states = _states(netns, ifname)
        failed = [c for c in cidrs if states.get(c, {}).get("dadfailed")]
        if failed:
            raise CniError(NETWORK_COMMAND_FAILED, f"IPv6 address {', '.join(failed)} failed "
                           f"duplicate address detection on {ifname} in the pod",
                           "another host on the link holds it")
        pending = [c for c in cidrs if states.get(c, {}).get("tentative")]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise CniError(NETWORK_COMMAND_FAILED, f"IPv6 address {', '.join(pending)} on "
                           f"{ifname} is still tentative after {timeout:g} s")
        time.sleep(SETTLE_INTERVAL)
