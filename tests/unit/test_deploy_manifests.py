"""The deployment manifests parse, carry what a cluster needs, and name the image the
Makefile builds."""

import json
import os
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "hack" / "deploy"


def docs(name):
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def makefile_image():
    from plugin import __version__

    make = (ROOT / "Makefile").read_text()
    image = re.search(r"^IMAGE \?= (\S+)", make, re.M)[1]
    return image.replace("$(VERSION)", __version__)


def test_daemonset():
    ds = next(d for d in docs("daemonset.yaml") if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"] == ds["spec"]["template"]["metadata"]["labels"]
    assert spec["hostNetwork"] is True and spec["tolerations"] and spec["nodeSelector"]
    init, = spec["initContainers"]
    main, = spec["containers"]
    for c in (init, main):
        assert c["image"] == makefile_image()
        assert c["resources"]["limits"] and c["resources"]["requests"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in c["securityContext"]
    # The installer proves the install in the node's own root: chroot, read-only.
    args = init["args"]
    assert args[args.index("--node-root") + 1] == "/host"
    assert init["securityContext"]["capabilities"]["add"] == ["SYS_CHROOT"]
    node_root = next(m for m in init["volumeMounts"] if m["mountPath"] == "/host")
    assert node_root["readOnly"] is True
    assert init["args"][:2] == ["--host-dir", "/host/opt/cni/bin"]
    assert main["command"][:2] == ["/opt/amd-host-device/bin/amd-host-device", "daemon"]
    assert "--reconcile-interval" in main["command"]
    assert main["securityContext"]["capabilities"]["add"][0] == "NET_ADMIN"
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert volumes["cni-bin"] == "/opt/cni/bin"
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert init_mounts["cni-bin"] == "/host/opt/cni/bin"
    # The daemon sees every host path where the node (and the runtime's env) names it.
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    for path in ("/var/lib/cni/amd-host-device", "/run/amd-host-device", "/opt/cni/bin",
                 "/etc/cni/net.d/amd-host-device.d", "/run/netns", "/var/run/netns"):
        assert volumes[mounts[path]["name"]] == path
    for path in ("/run/netns", "/var/run/netns"):
        assert mounts[path]["mountPropagation"] == "HostToContainer"


def test_daemonset_runs_the_thick_mode_daemon():
    from plugin import policy

    ds = next(d for d in docs("daemonset.yaml") if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    main, = spec["containers"]
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert main["readinessProbe"]["exec"]["command"][1:] == ["daemon", "--ping"]
    assert main["command"][:1] == main["readinessProbe"]["exec"]["command"][:1]
    assert os.path.dirname(policy.DEFAULT_SOCKET) in {m["mountPath"] for m in main["volumeMounts"]}
    devinfo = next(m for m in main["volumeMounts"] if m["name"] == "devinfo")
    assert devinfo["mountPath"] == "/run/k8s.cni.cncf.io/devinfo" and not devinfo.get("readOnly")
    volume = next(v for v in spec["volumes"] if v["name"] == "devinfo")
    assert volume["hostPath"]["path"] == devinfo["mountPath"]
    grace = float(main["command"][main["command"].index("--grace") + 1])
    assert grace < spec["terminationGracePeriodSeconds"]


def test_node_policy_comes_from_a_configmap_the_installer_writes_atomically():
    from plugin import policy

    all_docs = docs("daemonset.yaml")
    cm = next(d for d in all_docs if d["kind"] == "ConfigMap")
    ds = next(d for d in all_docs if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    conf = json.loads(cm["data"]["amd-host-device.conf"])
    parsed = policy.parse(conf, "configmap")  # the plugin's own rules accept it
    init, = spec["initContainers"]
    main, = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["policy"]["configMap"]["name"] == cm["metadata"]["name"]
    assert volumes["node-policy"]["hostPath"]["path"] == \
        os.path.dirname(policy.DEFAULT_PATH)
    args = init["args"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    source = args[args.index("--policy") + 1]
    assert os.path.dirname(source) == init_mounts["policy"]
    assert os.path.basename(source) in cm["data"]
    assert args[args.index("--policy-dir") + 1] == init_mounts["node-policy"]
    main_mounts = {m["name"]: m for m in main["volumeMounts"]}
    # reconcile reads the same policy where the plugin does, and no --state-dir overrides it
    assert main_mounts["node-policy"]["mountPath"] == os.path.dirname(policy.DEFAULT_PATH)
    assert main_mounts["node-policy"]["readOnly"] is True
    assert "--state-dir" not in main["command"]
    assert main_mounts["state"]["mountPath"] == parsed.state_dir


def test_nads_for_nic_and_vnic():
    for name, resource in (("nad-nic.yaml", "amd.com/nic"), ("nad-vnic.yaml", "amd.com/vnic")):
        nad, = docs(name)
        assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == resource
        config = json.loads(nad["spec"]["config"])
        assert config["type"] == "amd-host-device" and config["name"] == nad["metadata"]["name"]
        assert config["capabilities"] == {"deviceID": True, "CNIDeviceInfoFile": True}


def test_seed_pod_lists_the_same_nad_twice_and_asks_for_two_nics():
    pod, = docs("pod.yaml")
    nets = [n.strip() for n in pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            .split(",")]
    assert nets == ["amd-host-device-nad-nic"] * 2
    nad, = docs("nad-nic.yaml")
    assert nad["metadata"]["name"] == nets[0]
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"]["amd.com/nic"] == res["limits"]["amd.com/nic"] == 2


def test_sriov_device_plugin_selects_amd_nics():
    cm, = docs("sriov-device-plugin-config.yaml")
    resources = json.loads(cm["data"]["config.json"])["resourceList"]
    names = {f"{r['resourcePrefix']}/{r['resourceName']}" for r in resources}
    assert names == {"amd.com/nic", "amd.com/vnic"}
    for r in resources:
        assert r["selectors"]["vendors"] == ["1dd8"] and r["selectors"]["drivers"] == ["ionic"]
