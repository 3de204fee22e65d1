"""IPv6 usable when ADD returns: no second duplicate address detection for what DAD proved.

An address that passed DAD on the node (or was `nodad` there) is the same address on the same
link in the pod: DAD has proven it unique there, and the node no longer holds it. Debian's
static IPAM adds it with DAD on, so the pod could not use it for ~1.5 s. The netdev takes the
pod netns' `default` IPv6 settings when it registers there, so while host-device moves it the
pod's `default.accept_dad` is 0; right after, the pod's default, and the NIC's own setting, are
put back: the pod's other interfaces never see a change, and what the workload adds later to
the NIC gets DAD as the pod says. Addresses the node had not proven (tentative, or failed) get
DAD in the pod, and ADD waits for them like the reference bridge plugin (10 s at most).

Everything runs through plugin/backend.py: fixed `sh` scripts in the pod's netns read and
write /proc/sys (a netns' sysctls are the ones its processes see); the bundle's own `sh`
where there is one, so a node without coreutils is served too.
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


# Fixed one-line scripts for the pod's `sh` (the bundled one where there is a bundle: no
# coreutils needed); paths and the value are arguments, never shell code. _OFF reads the pod's
# default and all accept_dad, prints them, and turns the default off only when that skips DAD
# (all is not on, and the default is on: a digit 1-9), printing "off" once it has. `read`'s
# status is not looked at: a sysctl file read a byte at a time ends without a newline.
_OFF = ('IFS= read -r d < "$1"; IFS= read -r a < "$2"; printf "%s %s\\n" "$d" "$a"; '
        'case "$a" in 0|-[0-9]) ;; *) exit 0 ;; esac; '
        'case "$d" in [1-9]) ;; *) exit 0 ;; esac; '
        'echo 0 > "$1" || exit 3; echo off')
_PUT = 'v=$1; shift; for f; do echo "$v" > "$f" || exit 1; done'


def _turn_off(node: backend.Node, netns: str) -> str | None:
    """Turn the pod's default.accept_dad off for the NIC's arrival, in one process: the value
    to put back, or None when nothing was changed (it cannot be read; the pod's all.accept_dad
    is on, so the kernel runs DAD anyway; or the default skips DAD already): then the caller
    settles."""
    try:
        out = backend.run(node, ["sh", "-c", _OFF, "sh", _accept_dad("default"), _accept_dad("all")],
                          netns=netns).split()
    except backend.CommandFailed as e:
        log.event(f"cannot turn the pod's IPv6 accept_dad off ({e}); its addresses get DAD")
        return None
    if out[2:] != ["off"]:
        if len(out) == 2 and out[1].isdigit() and int(out[1]) > 0:
            log.event("the pod's IPv6 all.accept_dad is on: its addresses get DAD")
        return None
    return out[0]


def _put_back(node: backend.Node, netns: str, names: Iterable[str], value: str) -> bool:
    try:
        backend.run(node, ["sh", "-c", _PUT, "sh", value, *(_accept_dad(n) for n in names)],
                    netns=netns)
        return True
    except backend.CommandFailed as e:
        log.warn(f"cannot set IPv6 accept_dad={value} in the pod: {e}")
        return False


@contextlib.contextmanager
def skipping(node: backend.Node, netns: str, ifname: str, wanted: bool) -> Iterator[bool]:
    """Around host-device's ADD: yields whether the NIC surely arrives with DAD off (we turned
    it off). On a normal exit the NIC's own accept_dad is set to the pod's default too; the
    default is put back whatever happens. A pod whose default skips DAD already (or another ADD
    into this pod has it off just now: then it puts it back, maybe before our NIC arrives) is
    left alone, and the caller settles, which costs one read when nothing is tentative."""
    saved = _turn_off(node, netns) if wanted else None
    if saved is None:
        yield False
        return
    ok = False
    try:
        yield True
        ok = True
    finally:
        names = ["default"] + ([ifname] if ok and ifname not in _NOT_A_LINK else [])
        if not _put_back(node, netns, names, saved) and ok:
            raise CniError(NETWORK_COMMAND_FAILED, "cannot put back the pod's IPv6 "
                           f"accept_dad={saved}")


def _states(node: backend.Node, netns: str, ifname: str) -> dict[str, Mapping[str, Any]]:
    try:
        shown = backend.ip_json(node, [f"address show dev {ifname}"], netns=netns)[0]
    except backend.CommandFailed as e:
        raise CniError(NETWORK_COMMAND_FAILED, f"cannot read {ifname}'s addresses in the pod",
                       str(e)) from None
    return {f"{a.get('local')}/{a.get('prefixlen')}": a for link in shown
            for a in link.get("addr_info", []) if a.get("family") == "inet6"}


def settle(node: backend.Node, netns: str, ifname: str, cidrs: Sequence[str],
           timeout: float = SETTLE_SECONDS) -> None:
    """Wait until none of `cidrs` is tentative on the NIC in the pod; one that failed DAD, or
    is still tentative after `timeout`, is an error naming it (the caller rolls back)."""
    if not cidrs:
        return
    deadline = time.monotonic() + timeout
    while True:
        states = _states(node, netns, ifname)
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
