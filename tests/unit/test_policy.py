"""Node policy: the admin's file, validated; env overrides; defaults are the narrow choice."""

import json

import pytest

from plugin import policy
from plugin.errors import CniError


def load(tmp_path, content=None, **env):
    path = tmp_path / "amd-host-device.conf"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return policy.load({policy.PATH_ENV: str(path), **env})


def test_missing_file_means_narrow_defaults(tmp_path):
    p = load(tmp_path)
    assert p == policy.NodePolicy()
    assert not (p.allow_default_route_device or p.allow_non_pci_devices or p.allow_port_devices)
    assert p.state_dir == policy.DEFAULT_STATE_DIR and p.metrics_port == 0 and p.log_file == ""
    assert p.allowed_ipam_types == ("static",)


def test_file_keys(tmp_path):
    p = load(tmp_path, {"stateDir": "/srv/ahd/", "allowDefaultRouteDevice": True,
                        "allowNonPciDevices": True, "metricsPort": 9109})
    assert (p.state_dir, p.allow_default_route_device, p.allow_non_pci_devices, p.metrics_port) \
        == ("/srv/ahd", True, True, 9109)
    assert p.source.endswith("amd-host-device.conf")


def test_allowed_ipam_types(tmp_path):
    p = load(tmp_path, {"allowedIpamTypes": ["static", "whereabouts", "host-local"]})
    assert p.allowed_ipam_types == ("static", "whereabouts", "host-local")
    assert load(tmp_path, {"allowedIpamTypes": []}).allowed_ipam_types == ()


def test_env_overrides_the_file(tmp_path):
    p = load(tmp_path, {"stateDir": "/srv/ahd"}, AMD_HOST_DEVICE_STATE_DIR="/tmp/x/state",
             AMD_HOST_DEVICE_SOCKET="/tmp/x/sock")
    assert (p.state_dir, p.socket) == ("/tmp/x/state", "/tmp/x/sock")


@pytest.mark.parametrize("content", [
    "{", "[]", {"stateDir": "relative"}, {"stateDir": "/a/../b"}, {"stateDir": 5},
    {"allowDefaultRouteDevice": "yes"}, {"metricsPort": True}, {"metricsPort": 70000},
    {"logFileMaxBytes": 10}, {"allowDefaultRoute": True}, {"stateDir": ""},
    {"allowedIpamTypes": "static"}, {"allowedIpamTypes": [5]}, {"allowedIpamTypes": ["../sh"]},
    {"allowedIpamTypes": ["/usr/bin/x"]}, {"allowedIpamTypes": [""]},
])
def test_bad_file_is_code_7_naming_the_file(tmp_path, content):
    with pytest.raises(CniError) as e:
        load(tmp_path, content)
    assert e.value.code == 7 and "amd-host-device.conf" in e.value.msg


@pytest.mark.parametrize("value", ["relative", "/a/../b"])
def test_bad_env_path_is_code_7(tmp_path, value):
    with pytest.raises(CniError) as e:
        load(tmp_path, AMD_HOST_DEVICE_STATE_DIR=value)
    assert e.value.code == 7 and "AMD_HOST_DEVICE_STATE_DIR" in e.value.msg


def test_a_configmap_style_symlink_to_a_regular_file_is_read(tmp_path):
    """A ConfigMap mount makes the path a symlink chain to a regular file: it is followed."""
    data = tmp_path / "..data"
    data.mkdir()
    (data / "real.conf").write_text(json.dumps({"metricsPort": 9109}))
    (tmp_path / "amd-host-device.conf").symlink_to(data / "real.conf")
    assert policy.load({policy.PATH_ENV: str(tmp_path / "amd-host-device.conf")}).metrics_port \
        == 9109


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink-to-fifo", "symlink-to-dev-zero",
                                  "too-big"])
def test_a_policy_path_that_is_not_a_regular_file_is_code_7_without_blocking(tmp_path, kind):
    """O_NONBLOCK + fstat: a FIFO never blocks load() (it runs on every CNI call)."""
    import os
    path = tmp_path / "amd-host-device.conf"
    fifo = tmp_path / "fifo"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "symlink-to-fifo":
        os.mkfifo(fifo)
        path.symlink_to(fifo)
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text(" " * (64 * 1024 + 1) + "{}")
    with pytest.raises(CniError) as e:
        policy.load({policy.PATH_ENV: str(path)})
    assert e.value.code == 7 and str(path) in e.value.msg
