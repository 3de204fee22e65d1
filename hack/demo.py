#!/usr/bin/env python3
"""`make demo`: the seed's pod on a simulated node, invoked exactly as Multus would.

A node with two AMD "NICs" (veth stand-ins with IPv4+IPv6, a top-of-rack peer, a fake PCI
sysfs); a pod that lists the same NAD twice (amd.com/nic: 2) gets net1 and net2 with the NICs'
own addresses, pings the peer through each (IPv6 too, once, the moment ADD returns), shows
the pod's network-status annotation as Multus writes it (with the device-info the plugin
wrote), is deleted, and the node gets both NICs back.
On the way, what an admin would run on that node: `amd-host-device list` while the pod runs,
and `amd-host-device doctor` at the end (a simulated node may lack things a real one has, e.g.
a CNI config naming the plugin, so doctor may show a ✗; the demo does not depend on it).
"""

from __future__ import annotations

import json
import sys

from tests.support.multus import Attachment, MultusPod, network_status
from tests.support.simnode import SimNode, sh

NAD = {"name": "amd-host-device-nad", "cniVersion": "1.0.0", "type": "amd-host-device",
       "capabilities": {"deviceID": True, "CNIDeviceInfoFile": True}}


def device_info(path: str) -> dict[str, object] | None:
    """What Multus reads back after the plugin chain (nadutils.LoadDeviceInfoFromCNI)."""
    try:
        with open(path) as f:
            return json.load(f)  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


def show(title: str, ns: str, *names: str) -> None:
    print(f"\n--- {title}")
    for name in names:
        out = sh("ip", "-n", ns, "-br", "addr", "show", "dev", name, check=False)
        print("   ", (out.stdout or out.stderr).strip())


def admin(node: SimNode, *args: str) -> None:
    """Run the plugin by hand on the node, as an admin would, and show what it prints."""
    print(f"\n--- on the node: amd-host-device {' '.join(args)}")
    call = node.run(*args)
    for line in (call.stdout + call.stderr).rstrip("\n").splitlines():
        print("   ", line)
    if args[0] == "doctor":
        print(f"    (exit status {call.rc})")


def main() -> int:
    with SimNode() as node:
        node.write_policy()  # the admin's node policy: the defaults
        for i in (1, 2):
            node.add_nic(i)
        names = [n.name for n in node.nics]
        show("node before the pod (the NICs and their addresses)", node.node, *names)
        pod_ns = node.add_pod()
        pod = MultusPod(node, netns=node.netns_path(pod_ns), name="network-workload",
                        attachments=[Attachment(NAD), Attachment(NAD)],
                        allocated=[n.pci for n in node.nics], devinfo_root=node.devinfo_root)
        print("\n--- pod network-workload: k8s.v1.cni.cncf.io/networks: "
              "amd-host-device-nad, amd-host-device-nad; amd.com/nic: 2")
        results = pod.add()
        for ifname, result in results:
            print(f"    ADD {ifname}: {json.dumps(result)}")
        show("inside the pod", pod_ns, "net1", "net2")
        for nic, ifname in zip(node.nics, ("net1", "net2"), strict=True):
            for peer in (nic.peer_v4, nic.peer_v6):
                ok = node.ping(pod_ns, peer)
                print(f"    ping {peer} (top-of-rack) via {ifname}: {'ok' if ok else 'FAILED'}")
                if not ok:
                    return 1
        status = network_status([(p.attachment, p.ifname, result, device_info(p.device_info))
                                 for p, (_, result) in zip(pod.cache, results, strict=True)])
        print("\n--- the pod's k8s.v1.cni.cncf.io/network-status (Multus's entries for net1, "
              "net2)")
        for line in json.dumps(status, indent=2).splitlines():
            print("   ", line)
        if not all("device-info" in entry for entry in status):
            print("    no device-info in network-status")
            return 1
        show("node while the pod runs (NICs are gone)", node.node, *names)
        admin(node, "list")
        pod.delete()
        print("\n--- pod deleted (DEL net2, then net1)")
        show("node after the pod (NICs restored, UP, same addresses)", node.node, *names)
        for nic in node.nics:
            if node.addresses(node.node, nic.name) != {nic.v4, nic.v6}:
                print(f"    {nic.name} was not restored")
                return 1
        admin(node, "doctor")
        print("\ndemo ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
