"""The NAD examples in hack/nads are valid Kubernetes objects and valid configs for us."""

import json
import pathlib

import pytest
import yaml

from plugin.config import parse_netconf

NADS = sorted((pathlib.Path(__file__).resolve().parents[2] / "hack" / "nads").glob("*.yaml"))


def test_every_variant_is_there():
    text = " ".join(p.read_text() for p in NADS)
    for needle in ('"routeDstPrefixLen"', '"routeDstPrefixLen6"', '"type": "sbr"',
                   '"type": "rdma"'):
        assert needle in text


@pytest.mark.parametrize("path", NADS, ids=lambda p: p.name)
def test_nad_is_valid(path):
    nad = yaml.safe_load(path.read_text())
    assert nad["kind"] == "NetworkAttachmentDefinition"
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == "amd.com/nic"
    config = json.loads(nad["spec"]["config"])
    assert config["name"] == nad["metadata"]["name"]
    plugins = config.get("plugins", [config])
    ours = [p for p in plugins if p["type"] == "amd-host-device"]
    assert len(ours) == 1 and plugins[0] is ours[0]
    conf = parse_netconf({**ours[0], "name": config["name"], "cniVersion": config["cniVersion"],
                          "deviceID": "0000:01:00.0"})
    assert conf.warnings == ()
    assert bool(conf.injections) == ("routeDstPrefixLen" in ours[0])
    # so that Multus passes the device-info file and network-status carries device-info
    assert ours[0]["capabilities"] == {"deviceID": True, "CNIDeviceInfoFile": True}
