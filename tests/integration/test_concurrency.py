"""Many ADD/DEL at once lose nothing; a lock held too long is code 11, never a hang.
Real ip, host-device, namespaces."""

import fcntl
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.checks import ns, records, restored
from tests.support.simnode import SimNode

ROUNDS = int(os.environ.get("STRESS_ROUNDS", "20"))



@pytest.fixture
def big_node():
    n = SimNode()
    try:
        for i in range(1, 9):
            n.add_nic(i)
        yield n
    finally:
        n.close()


def test_eight_parallel_add_del_for_many_rounds_lose_nothing(big_node):
    node = big_node
    pods = [node.netns_path(node.add_pod()) for _ in range(4)]
    # two NICs per pod (net1, net2), as the seed's pod has
    jobs = [(nic, f"pod{i // 2}", pods[i // 2], f"net{i % 2 + 1}") for i, nic in enumerate(node.nics)]
    def run(command, rnd, job):
        nic, pod_id, pod, ifname = job
        return node.cni(command, node.conf(nic.pci), f"{pod_id}r{rnd}", pod, ifname)

    with ThreadPoolExecutor(8) as pool:
        for rnd in range(ROUNDS):
            adds = list(pool.map(functools.partial(run, "ADD", rnd), jobs))
            assert [c.rc for c in adds] == [0] * 8, [c.stdout for c in adds if c.rc]
            assert len(records(node)) == 8
            for (nic, _, pod, ifname) in jobs:
                assert node.addresses(ns(pod), ifname) == {nic.v4, nic.v6}
            dels = list(pool.map(functools.partial(run, "DEL", rnd), jobs))
            assert [c.rc for c in dels] == [0] * 8, [c.stdout for c in dels if c.rc]
            assert records(node) == []
            assert all(restored(node, nic) for nic in node.nics), f"round {rnd}"


def test_a_lock_held_too_long_gives_code_11_not_a_hang(node, pod):
    nic = node.nics[0]
    locks = os.path.join(node.state_dir, "locks")
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, f"{nic.pci}.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        started = time.monotonic()
        call = node.cni("ADD", node.conf(nic.pci, lockTimeoutSeconds=0.5), "c1", pod, "net1")
        assert time.monotonic() - started < 10
    assert call.rc != 0 and call.json["code"] == 11
    assert restored(node, nic) and records(node) == []
