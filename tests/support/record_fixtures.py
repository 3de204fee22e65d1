"""Regenerate tests/data/records/: one record per shape a release ever wrote, written by that
release's own code on a simulated node.

    sudo .venv/bin/python -m tests.support.record_fixtures [COMMIT ...]

Each commit's plugin is extracted from git history (tests/support/releases.py) and runs ADD of
ens1f0 (PCI 0000:01:00.0 in the simulated sysfs) into a pod; its record is copied here as
`<version>-<short commit>.json`, then the attachment is DELeted with the same build and the
node torn down. Without arguments: the commits in SHAPES, and the current tree.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from tests.support import releases
from tests.support.simnode import DEFAULT_PLUGIN, REPO, SimNode

OUT = os.path.join(REPO, "tests", "data", "records")
# Builds whose records differ in shape (git log -p plugin/state.py plugin/snapshot.py):
SHAPES = {
    "4c5dc17": "first record: no netnsID, orphanedSince or identity; route names",
    "35ad0c0": "netnsID and orphanedSince; no identity, network, pod, master, uppers",
    "dca70b3": "the last 0.1.0 build: identity, network, pod, altnames, link settings",
}


def record_of(plugin: str, name: str) -> dict[str, object]:
    node = SimNode(plugin=plugin)
    try:
        nic = node.add_nic(1)
        pod = node.add_pod()
        # stateDir in the config too: the first builds took it from there, not from node policy
        conf = node.conf(nic.pci, stateDir=node.state_dir)
        call = node.cni("ADD", conf, "fixture0123456789", node.netns_path(pod), "net1")
        if call.rc != 0:
            raise RuntimeError(f"{name}: ADD failed: {call.stdout} {call.stderr[-1500:]}")
        attachments = os.path.join(node.state_dir, "attachments")
        found = [n for n in os.listdir(attachments) if n.endswith(".json")]
        with open(os.path.join(attachments, found[0])) as f:
            record: dict[str, object] = json.load(f)
        call = node.cni("DEL", conf, "fixture0123456789", node.netns_path(pod), "net1")
        if call.rc != 0:
            raise RuntimeError(f"{name}: DEL failed: {call.stdout} {call.stderr[-1500:]}")
        return record
    finally:
        node.close()


def write(name: str, record: dict[str, object]) -> None:
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote tests/data/records/{name}.json")


def main(argv: list[str]) -> int:
    from plugin import __version__

    commits = argv or list(SHAPES)
    for commit in commits:
        tmp = tempfile.mkdtemp(prefix="ahd-release-")
        try:
            runner = releases.build(commit, tmp)
            short = releases.git("rev-parse", "--short=7", commit).strip()
            name = f"{releases.version_at(commit)}-{short}"
            write(name, record_of(runner, name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not argv:
        write(__version__, record_of(DEFAULT_PLUGIN, __version__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
