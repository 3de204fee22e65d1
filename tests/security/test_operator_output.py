"""What the plugin prints for a person (doctor, list, log lines, CNI error messages) carries
no terminal escape, control or bidi character a pod chose: all of it goes through
plugin/display.py. Real ip, veth NICs in namespaces (tests/support/simnode.py).
"""

import subprocess

import pytest

from plugin.display import safe
from plugin.errors import CniError
from tests.support.checks import lenient_ip_json, ns, ok

# 12 bytes: an OSC 52 clipboard write; and a bidi override. The kernel takes both as names.
OSC52 = b"\x1b]52;c;aGk=\x07"
BIDI = "a\u202eb".encode()


def _unsafe(text: str) -> list[str]:
    return sorted({c for c in text if not c.isprintable() and c != "\n"})


@pytest.mark.parametrize("name", [OSC52, BIDI], ids=["osc52", "bidi"])
def test_doctor_does_not_print_a_name_the_pod_chose_raw(node, pod, monkeypatch, name):
    """Attack: the pod renames its NIC to a terminal escape sequence; its netns dies and the
    kernel returns the NIC under that name (simulated by moving it). `doctor` printed the
    raw name to the admin's terminal (`list` already filtered it). Safe: nothing printed
    carries a character that is not printable."""
    monkeypatch.setattr(node, "ip_json", lenient_ip_json)
    nic = node.nics[0]
    ok(node.cni("ADD", node.conf(nic.pci), "c1", pod, "net1"))
    subprocess.run([b"ip", b"-n", ns(pod).encode(), b"link", b"set", b"dev", b"net1", b"name",
                    name], check=True, timeout=30)
    subprocess.run([b"ip", b"-n", ns(pod).encode(), b"link", b"set", b"dev", name, b"netns",
                    node.node.encode()], check=True, timeout=30)
    node.remove_pod(ns(pod))
    doctor = node.run("doctor")
    assert _unsafe(doctor.stdout) == [], doctor.stdout
    for command in ("list",):
        shown = node.run(command)
        assert _unsafe(shown.stdout) == [], shown.stdout
    deleted = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
    assert _unsafe(deleted.stderr) == [] and _unsafe(deleted.stdout) == []


def test_a_cni_error_message_is_safe_for_a_person():
    """The runtime shows msg and details in events and `kubectl describe`."""
    error = CniError(7, "refusing \x1b]52;c;aGk=\x07 and a\u202eb", "x\x9by").to_dict("1.0.0")
    assert error["msg"] == safe("refusing \x1b]52;c;aGk=\x07 and a\u202eb")
    assert _unsafe(str(error["msg"]) + str(error["details"])) == []


def test_display_safe_escapes_what_is_not_printable_and_keeps_the_rest():
    assert safe("ens1f0 10.0.0.1/24") == "ens1f0 10.0.0.1/24"
    assert safe("ünïcødé") == "ünïcødé"
    assert safe("\x1b[31m") == "\\x1b[31m"
    assert safe("a\u202eb\u2028") == "a\\u202eb\\u2028"
    assert safe("\udcff\udcfe") == "\\xff\\xfe"   # a name that is not UTF-8
