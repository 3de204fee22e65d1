"""Property: whatever bytes a pod with NET_ADMIN gives its NIC as a name, altnames and an
alias (what the kernel accepts: `ip` for names and aliases, raw netlink for altnames), DEL
brings the NIC home restored, and a later ADD of it, in another pod, succeeds.

Real ip, the real host-device, veth NICs in namespaces (tests/support/simnode.py), one node
for the module; a few dozen examples (each is five plugin calls).
"""

import contextlib
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.checks import lenient_ip_json, ns, ok, records, restored
from tests.support.netlink import add_altname
from tests.support.simnode import node_with_nics

no_nul = st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b)
names = no_nul.filter(lambda b: len(b) <= 15) | st.sampled_from(
    [b"ens1f1", b"ens1f0", b"lo", b"a\xc2\x85b", b"\xe3\x80\x80", b"\x1b]52;c;aGk=\x07"])
altnames = st.binary(min_size=1, max_size=127).filter(lambda b: b"\0" not in b) | \
    st.sampled_from([b"ens1f1", b"ens1f0", b"tor1", b"x y", b"x\ny", b"x/y", b"\xff"])
aliases = st.binary(max_size=64).filter(lambda b: b"\0" not in b) | st.sampled_from(
    [b"ens1f1", b"lo", b"", b"ens1f0"])


@pytest.fixture(scope="module")
def node():
    with node_with_nics() as n:
        n.ip_json = lenient_ip_json   # the harness must read names ip prints raw
        yield n


def _ip(netns, *argv):
    """One change by the pod; the kernel (or ip) may refuse it: then it did not happen."""
    return subprocess.run([b"ip", b"-n", netns.encode(), *argv], capture_output=True,
                          timeout=30).returncode == 0


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(name=st.none() | names, alts=st.lists(altnames, max_size=4), alias=st.none() | aliases)
def test_whatever_the_pod_names_its_nic_del_brings_it_home_and_it_attaches_again(
        node, name, alts, alias):
    nic = node.nics[0]
    pod = node.netns_path(node.add_pod())
    p = ns(pod)
    try:
        ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
        current = b"net1"
        if name is not None and _ip(p, b"link", b"set", b"dev", b"net1", b"name", name):
            current = name
        for alt in alts:
            # The kernel may refuse it (a duplicate, a name in use): then it did not happen.
            with contextlib.suppress(subprocess.CalledProcessError):
                add_altname(p, current, alt)
        if alias is not None:
            _ip(p, b"link", b"set", b"dev", current, b"alias", alias)
        ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1"))
        assert restored(node, nic) and records(node) == []
    finally:
        node.remove_pod(p)
    again = node.netns_path(node.add_pod())
    try:
        ok(node.cni("ADD", node.conf(nic.pci), "c2", again, "net1"))
        ok(node.cni("DEL", node.conf(nic.pci), "c2", again, "net1"))
        assert restored(node, nic) and records(node) == []
    finally:
        node.remove_pod(ns(again))
