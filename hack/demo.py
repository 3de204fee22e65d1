#!/usr/bin/env python3
"""`make demo`: the seed's pod on a simulated node, invoked exactly as Multus would.

A node with two AMD "NICs" (veth stand-ins with IPv4+IPv6, a top-of-rack peer, a fake PCI
sysfs); a pod that lists the same NAD twice (amd.com/nic: 2) gets net1 and net2 with the NICs'
own addresses, pings the peer through each, is deleted, and the node gets both NICs back.
On the way, what an admin would run on that node: `amd-host-device list` while the pod runs,
and `amd-host-device doctor` at the end (a simulated node may lack things a real one has, e.g.
a CNI config naming the plugin, so doctor may show a ✗; the demo does not depend on it).
"""

from __future__ import annotations

import json
import sys

from tests.support.multus import Attachment, MultusPod
from tests.support.simnode import SimNode, sh

NAD = {"name": "amd-host-device-nad", "cniVersion": "0.3.1", "type": "amd-host-device"}


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
                        allocated=[n.pci for n in node.nics])
        print("\n--- pod network-workload: k8s.v1.cni.cncf.io/networks: "
              "amd-host-device-nad, amd-host-device-nad; amd.com/nic: 2")
        results = pod.add()
        for ifname, result in results:
            print(f"    ADD {ifname}: {json.dumps(result)}")
        show("inside the pod", pod_ns, "net1", "net2")
        for nic, ifname in zip(node.nics, ("net1", "net2"), strict=True):
            ok = node.ping(pod_ns, nic.peer_v4)
            print(f"    ping {nic.peer_v4} (top-of-rack) via {ifname}: {'ok' if ok else 'FAILED'}")
            if not ok:
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
