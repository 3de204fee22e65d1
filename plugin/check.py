"""CHECK: the interface from prevResult is in the pod, with its addresses and MAC."""

from __future__ import annotations

from plugin import backend
from plugin.cni import Env, version_key
from plugin.config import NetConf
from plugin.errors import CHECK_FAILED, INCOMPATIBLE_VERSION, INVALID_CONFIG, CniError
from plugin.result import parse_result
from plugin.state import PHASE_ATTACHED, StateStore

TYPE_CHECKING = False

def check(node: backend.Node, env: Env, conf: NetConf) -> None:
    if version_key(conf.cni_version) < (0, 4, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion >= 0.4.0, got "
                       f"{conf.cni_version}")
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    prev = parse_result(conf.prev_result, "prevResult")
    ours = [n for n, i in enumerate(prev.interfaces) if i.name == env.ifname
            and (not i.sandbox or i.sandbox == env.netns)]
    if not ours:
        raise CniError(CHECK_FAILED, f"prevResult has no interface {env.ifname!r} in the pod")
    store = StateStore(conf.state_dir)
    record = store.load(env.container_id, env.ifname)
    if record is None or record.phase != PHASE_ATTACHED:
        raise CniError(CHECK_FAILED, f"no completed attachment recorded for {env.attachment}")
    try:
        found = backend.ip_json(node, [f"address show dev {env.ifname}"], netns=env.netns)[0]
    except backend.CommandFailed as e:
        raise CniError(CHECK_FAILED, f"{env.ifname} is not in the pod", str(e)) from None
    have = {f"{a.get('local')}/{a.get('prefixlen')}" for a in found[0].get("addr_info", [])}
    missing = [ip.address for ip in prev.ips
               if (ip.interface is None or ip.interface in ours) and ip.address not in have]
    if missing:
        raise CniError(CHECK_FAILED, f"{env.ifname} lacks addresses {', '.join(missing)}")
    want_mac = prev.interfaces[ours[0]].mac
    if want_mac and str(found[0].get("address", "")).lower() != want_mac.lower():
        raise CniError(CHECK_FAILED, f"{env.ifname} has MAC {found[0].get('address')}, "
                       f"expected {want_mac}")
