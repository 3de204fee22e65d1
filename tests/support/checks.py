"""Assertions on a simulated node shared by the integration suites."""

import os


def ok(call):
    assert call.rc == 0, f"rc={call.rc} stdout={call.stdout} stderr={call.stderr}"
    return call.json


def records(node):
    d = os.path.join(node.state_dir, "attachments")
    return sorted(n for n in os.listdir(d) if n.endswith(".json")) if os.path.isdir(d) else []


def restored(node, nic, up=True):
    link = node.link(node.node, nic.name)
    return (link is not None and ("UP" in link["flags"]) == up and link["mtu"] == nic.mtu
            and node.addresses(node.node, nic.name) == {nic.v4, nic.v6})


def ns(path):
    return path.rsplit("/", 1)[1]


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def gc_call(node, valid, key="cni.dev/valid-attachments"):
    conf = node.conf("", "1.1.0")
    conf[key] = valid
    return node.cni("GC", conf)
