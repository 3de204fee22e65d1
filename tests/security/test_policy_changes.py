"""An admin narrowing node policy gates new work only: attachments made before the change are
still released by DEL and GC, which need only the record (plugin/config.py, new_work).
Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py).
"""

import pytest

from tests.support.checks import ok, records, restored


def _static(nic):
    return {"type": "static", "addresses": [{"address": nic.v4}]}


@pytest.mark.parametrize("command", ["DEL", "GC"])
@pytest.mark.parametrize("before, after, nad", [
    ({"allowedIpamTypes": ["static"]}, {"allowedIpamTypes": ["host-local"]}, "ipam"),
    ({"allowDefaultRouteDevice": True}, {}, {"allowDefaultRouteDevice": True}),
    ({}, {}, "stateDir"),
], ids=["allowedIpamTypes-narrowed", "allowDefaultRouteDevice-withdrawn", "stateDir-moved"])
def test_an_attachment_made_before_a_policy_change_is_still_released(node, pod, command,
                                                                      before, after, nad):
    """Attack (none: an admin's change): the NAD was fine for ADD; then the node policy is
    narrowed (or the NAD names a state dir the policy no longer has). DEL re-checked the
    whole NAD against today's policy and failed with code 7 every time: every pod attached
    before the change kept its NIC. Safe: DEL and GC release it from the record."""
    nic = node.nics[0]
    extra = {"ipam": _static(nic)} if nad == "ipam" else \
        {"stateDir": node.state_dir} if nad == "stateDir" else nad
    node.write_policy(**before)
    ok(node.cni("ADD", node.conf(nic.pci, **extra), "c1", pod, "net1"))
    node.write_policy(**after)
    if nad == "stateDir":   # the state dir still comes from node policy, never the NAD
        extra = {"stateDir": node.state_dir + "/elsewhere"}
    if command == "DEL":
        ok(node.cni("DEL", node.conf(nic.pci, **extra), "c1", pod, "net1"))
    else:
        conf = node.conf("", "1.1.0", **extra)
        conf["cni.dev/valid-attachments"] = []
        ok(node.cni("GC", conf))
    assert restored(node, nic) and records(node) == []
    # New work is still gated by today's policy.
    if nad != "stateDir":
        refused = node.cni("ADD", node.conf(nic.pci, **extra), "c2", pod, "net1")
        assert refused.rc != 0 and refused.json["code"] == 7, refused.stdout
