"""What a pod cannot make the plugin spend: DEL reads the pod's NIC by name or index, never
the pod's whole link table, so a pod with hundreds of links carrying long altnames does not
grow DEL's memory. Real ip, the real host-device, veth NICs in namespaces
(tests/support/simnode.py). Peak RSS is the kernel's count for the plugin's process
(GNU time's %M); the measured numbers are in docs/performance.md.
"""

import pathlib

import pytest

from tests.support.checks import logging_ip, ns, ok, records, restored, script
from tests.support.simnode import sh

FAT_LINKS = 400
ALTNAMES_PER_LINK = 240   # of 120 bytes each: ~30 KB a link (the kernel caps ~64), ~12 MB of `ip -j`


def fatten(netns: str, links: int = FAT_LINKS) -> None:
    """`links` veth ends in the pod, each with ALTNAMES_PER_LINK long altnames."""
    lines = []
    for i in range(links // 2):
        lines.append(f"link add f{i}a type veth peer name f{i}b")
    for i in range(links // 2):
        for end in "ab":
            alts = [f"altname {end}{i:04d}{k:03d}{'x' * 112}" for k in range(ALTNAMES_PER_LINK)]
            # ip sends at most 7 such altnames a request (its 1 KiB buffer)
            lines += [f"link property add dev f{i}{end} {' '.join(alts[k:k + 7])}"
                      for k in range(0, len(alts), 7)]
    sh("ip", "-n", netns, "-batch", "-", stdin="\n".join(lines) + "\n")


def _timed(tmp_path: pathlib.Path, plugin: str) -> tuple[str, pathlib.Path]:
    """The plugin run under GNU time, its peak RSS (KiB) written to a file."""
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "maxrss"
    return script(tmp_path, "timed-plugin", f'exec /usr/bin/time -f %M -o {out} {plugin} "$@"\n'), out


def _del_peak_kib(node, pod, tmp_path, fat: bool, renamed: bool = False) -> int:
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    if fat:
        fatten(ns(pod))
    if renamed:
        sh("ip", "-n", ns(pod), "link", "set", "dev", "net1", "name", "hidden0")
    plugin, out = _timed(tmp_path, node.plugin)
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1", plugin=plugin))
    assert restored(node, nic) and records(node) == []
    return int(out.read_text().split()[-1])


@pytest.mark.parametrize("renamed", [False, True], ids=["as-added", "renamed-in-pod"])
def test_a_pod_with_hundreds_of_fat_links_does_not_grow_dels_memory(node, tmp_path, renamed):
    """Attack: the pod creates hundreds of links with long altnames. DEL read every link in
    the pod (`ip -j -d link show`, no size limit): a 26 MB dump made DEL peak at 124-153 MiB
    (15 MiB normally), so a big enough one OOM-kills the daemon on every DEL retry. Safe:
    DEL's peak RSS stays within 2x of a normal DEL's, renamed NIC or not."""
    normal = _del_peak_kib(node, node.netns_path(node.add_pod()), tmp_path / "n", fat=False)
    fat = _del_peak_kib(node, node.netns_path(node.add_pod()), tmp_path / "f", fat=True,
                        renamed=renamed)
    assert fat <= 2 * normal, f"DEL peaked at {fat} KiB with {FAT_LINKS} fat links, " \
                              f"{normal} KiB normally"


def test_del_never_reads_the_pods_whole_link_table(node, pod, tmp_path):
    """Every `ip` read in the pod names the link it wants (dev NAME, or dev if<index>)."""
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    sh("ip", "-n", ns(pod), "link", "set", "dev", "net1", "name", "hidden0")
    log = tmp_path / "ip.log"
    ok(node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1",
                extra_env=logging_ip(tmp_path / "bin", log)))
    assert restored(node, nic)
    p = ns(pod)
    lines = log.read_text().splitlines()
    assert any(line == "L link show dev net1" for line in lines), "DEL read nothing by name?"
    whole = [line for line in lines if line.strip() in (
        f"A ip -n {p} -j -d link show", f"A ip -n {p} -j link show", "L link show",
        "L address show")]
    assert whole == []
