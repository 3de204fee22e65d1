"""The runtime's environment: what is required per command, and what is rejected."""

import pytest

from plugin.cni import parse_cni_args, parse_env, require_supported
from plugin.errors import CniError

BASE = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/proc/self/ns/net",
        "CNI_IFNAME": "net1", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}


def test_parses_a_complete_add():
    env = parse_env({**BASE, "CNI_ARGS": "IgnoreUnknown=true;K8S_POD_NAME=p"})
    assert env.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert env.args == {"IgnoreUnknown": "true", "K8S_POD_NAME": "p"}


def test_cni_args_tolerates_duplicates_and_equals_in_values():
    args = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;X=a=b=c;;IgnoreUnknown=true")
    assert args == {"IgnoreUnknown": "true", "K8S_POD_NAMESPACE": "ns", "X": "a=b=c"}


@pytest.mark.parametrize("missing", ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"])
def test_missing_variables_are_named(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(CniError) as e:
        parse_env(env)
    assert e.value.code == 4 and missing in e.value.msg


@pytest.mark.parametrize("key,value", [
    ("CNI_CONTAINERID", "../etc"), ("CNI_CONTAINERID", "a b"), ("CNI_CONTAINERID", "a@b"),
    ("CNI_IFNAME", "a/b"), ("CNI_IFNAME", "x" * 16), ("CNI_IFNAME", ".."), ("CNI_IFNAME", "a:b"),
    ("CNI_IFNAME", "a\tb"), ("CNI_NETNS", "relative/path"), ("CNI_COMMAND", "FROB"),
    ("CNI_ARGS", "novalue"),
])
def test_bad_values_are_invalid_env(key, value):
    with pytest.raises(CniError) as e:
        parse_env({**BASE, key: value})
    assert e.value.code == 4 and key in e.value.msg


def test_missing_netns_path_is_unknown_container():
    with pytest.raises(CniError) as e:
        parse_env({**BASE, "CNI_NETNS": "/var/run/netns/does-not-exist-xyz"})
    assert e.value.code == 3


def test_del_needs_no_netns():
    env = parse_env({k: v for k, v in BASE.items() if k != "CNI_NETNS"} | {"CNI_COMMAND": "DEL"})
    assert env.netns == ""


@pytest.mark.parametrize("v", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_supported_versions(v):
    assert require_supported(v) == v


@pytest.mark.parametrize("v", ["0.2.0", "0.1.0", "1.2.0", "2.0.0", "1.0", "abc", ""])
def test_unsupported_versions(v):
    with pytest.raises(CniError) as e:
        require_supported(v)
    assert e.value.code == 1


@pytest.mark.parametrize("name", ['a#b', 'a"b', "a'b", "a\\b"])
def test_names_ip_batch_would_misparse_are_refused(name):
    with pytest.raises(CniError) as e:
        parse_env({**BASE, "CNI_IFNAME": name})
    assert e.value.code == 4
