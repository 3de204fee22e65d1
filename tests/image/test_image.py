"""The image, run as the DaemonSet's init container would: against a temporary host dir.

Needs podman (with hack/containers.conf) and the image built by `make image`."""

import json
import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

from plugin import __version__
from tests.support.simnode import SimNode

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", f"localhost/amd-host-device:{__version__}")
BASE = os.environ.get("BASE_IMAGE", "localhost/amd-host-device-base:bookworm")
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "hack" / "containers.conf"))


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          timeout=600)


def install(host, image=IMAGE, mount_opts="", *extra):
    return podman("run", "--rm", "--network", "none", "-v", f"{host}:/host/opt/cni/bin{mount_opts}",
                  image, "--host-dir", "/host/opt/cni/bin", "--node-dir", str(host), *extra,
                  check=False)


@pytest.fixture
def host(tmp_path):
    d = tmp_path / "opt-cni-bin"
    d.mkdir()
    return d


def version_of(binary):
    p = subprocess.run([str(binary)], input=b'{"cniVersion":"1.1.0"}', capture_output=True,
                       env={"CNI_COMMAND": "VERSION", "PATH": "/usr/sbin:/usr/bin"}, check=False)
    return json.loads(p.stdout)


def test_labels_and_tag_match_the_project():
    """The label and the bundle's MANIFEST name the release the tree carries (the tag does
    too when it is the Makefile's: `make image IMAGE=...:wt23` picks its own)."""
    labels = json.loads(podman("image", "inspect", IMAGE).stdout)[0]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"]
    # The image is the bundle alone (no cat): its own python3, through its own loader.
    b = "/opt/amd-host-device"
    manifest = podman("run", "--rm", "--network", "none", "--entrypoint",
                      f"{b}/lib/ld-linux-x86-64.so.2", IMAGE, "--library-path", f"{b}/lib",
                      f"{b}/bin/python3", "-IS", "-c",
                      f"print(open('{b}/MANIFEST').read(), end='')").stdout
    assert f"version={__version__}\n" in manifest
    tag = IMAGE.rsplit(":", 1)[1]
    assert tag == __version__ or not tag[:1].isdigit()


def test_init_container_installs_the_plugin_and_missing_delegates(host):
    out = install(host)
    assert out.returncode == 0, out.stderr
    link = host / "amd-host-device"
    assert link.is_symlink() and os.readlink(link).startswith(".amd-host-device-")
    assert version_of(link)["supportedVersions"][-1] == "1.1.0"
    for d in ("host-device", "static", "sbr"):
        assert os.access(host / d, os.X_OK)
    assert "installed amd-host-device" in out.stderr
    assert not [n for n in os.listdir(host) if ".tmp" in n or ".probe" in n or ".link-" in n]


@pytest.mark.parametrize("name", ["opt cni bin", "d" * 180])
def test_any_node_dir_works_and_no_temp_name_is_left(tmp_path, name):
    """The entry names no node path: a dir with a space, or longer than a shebang carries,
    works when exec'd where the node sees it (issue 10, row 7)."""
    host = tmp_path / name
    host.mkdir()
    out = install(host)
    assert out.returncode == 0, out.stderr
    assert version_of(host / "amd-host-device")["supportedVersions"]
    assert not [n for n in os.listdir(host) if ".tmp" in n or ".link" in n]


def test_a_directory_in_place_of_the_entry_fails_without_leftovers(host):
    (host / "amd-host-device").mkdir()
    out = install(host)
    assert out.returncode != 0 and "is a directory" in out.stderr
    assert not [n for n in os.listdir(host) if ".tmp" in n or ".link" in n]


def test_node_policy_from_a_configmap_is_written(host, tmp_path):
    cm = tmp_path / "cm"
    cm.mkdir()
    (cm / "amd-host-device.conf").write_text('{"allowNonPciDevices": true}')
    netd = tmp_path / "net.d"
    netd.mkdir()
    out = podman("run", "--rm", "--network", "none", "-v", f"{host}:/host/opt/cni/bin",
                 "-v", f"{cm}:/etc/amd-host-device/policy:ro", "-v", f"{netd}:/host/etc/cni/net.d",
                 IMAGE, "--host-dir", "/host/opt/cni/bin", "--policy",
                 "/etc/amd-host-device/policy/amd-host-device.conf", check=False)
    assert out.returncode == 0, out.stderr
    policy = netd / "amd-host-device.d" / "amd-host-device.conf"
    assert json.loads(policy.read_text()) == {"allowNonPciDevices": True}


def install_with_netd(host, netd):
    return podman("run", "--rm", "--network", "none", "-v", f"{host}:/host/opt/cni/bin",
                  "-v", f"{netd}:/host/etc/cni/net.d", IMAGE, "--host-dir", "/host/opt/cni/bin",
                  check=False)


def test_without_a_configmap_a_node_without_policy_gets_the_defaults_file(host, tmp_path):
    """The plugin warns on every command that runs without a policy file: the installer
    always leaves one, `{}` when no ConfigMap is given, and never replaces the node's own."""
    netd = tmp_path / "net.d"
    netd.mkdir()
    out = install_with_netd(host, netd)
    assert out.returncode == 0, out.stderr
    policy = netd / "amd-host-device.d" / "amd-host-device.conf"
    assert json.loads(policy.read_text()) == {}
    policy.write_text('{"allowNonPciDevices": true}')
    again = install_with_netd(host, netd)
    assert again.returncode == 0 and "leaving the node's as it is" in again.stderr
    assert json.loads(policy.read_text()) == {"allowNonPciDevices": True}


def test_a_second_run_changes_nothing_and_says_so(host, tmp_path):
    netd = tmp_path / "net.d"      # the node's policy dir persists between runs, as on a node
    netd.mkdir()
    assert install_with_netd(host, netd).returncode == 0
    before = {p: p.lstat().st_mtime_ns for p in [*host.rglob("*"), *netd.rglob("*")]}
    again = install_with_netd(host, netd)
    assert again.returncode == 0 and "nothing changed" in again.stderr
    assert {p: p.lstat().st_mtime_ns for p in [*host.rglob("*"), *netd.rglob("*")]} == before


def test_the_nodes_own_delegates_are_never_overwritten(host):
    mine = host / "host-device"
    mine.write_text("#!/bin/sh\necho node's own\n")
    mine.chmod(0o755)
    out = install(host)
    assert out.returncode == 0 and "node has its own host-device" in out.stderr
    assert mine.read_text() == "#!/bin/sh\necho node's own\n"


def test_runs_on_a_node_without_python(host):
    assert install(host).returncode == 0
    assert podman("run", "--rm", "--network", "none", BASE, "sh", "-c", "command -v python3",
                  check=False).returncode != 0
    out = podman("run", "--rm", "--network", "none", "-v", f"{host}:{host}",
                 "-e", "CNI_COMMAND=VERSION", "--entrypoint", str(host / "amd-host-device"), BASE,
                 check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["supportedVersions"]


@pytest.mark.parametrize("case", ["missing", "read-only"])
def test_failures_exit_non_zero_with_a_reason(host, case):
    if case == "missing":
        out = podman("run", "--rm", "--network", "none", IMAGE, "--host-dir", "/host/opt/cni/bin",
                     check=False)
        word = "does not exist"
    else:
        out = install(host, IMAGE, ":ro")
        word = "read-only"
    assert out.returncode != 0 and word in out.stderr, out.stderr
    assert os.listdir(host) == []


@pytest.fixture(scope="module")
def second_image():
    """A second build (another version) to upgrade to."""
    tag = IMAGE.rsplit(":", 1)[0] + ":upgrade-test"
    subprocess.run(["buildah", "bud", "--quiet", "--isolation", "chroot", "--build-arg",
                    f"BASE_IMAGE={BASE}", "--build-arg", f"VERSION={__version__}+upgrade", "-t", tag,
                    "-f", str(ROOT / "Dockerfile"), str(ROOT)], check=True, capture_output=True,
                   timeout=900)
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_upgrade_while_the_old_binary_is_executing(host, tmp_path, second_image):
    assert install(host).returncode == 0
    old = os.readlink(host / "amd-host-device")
    stale = host / ".amd-host-device-0.0.1-000000000000"
    stale.mkdir()
    # a delegate that takes its time, so the old plugin is mid-ADD during the upgrade
    cni = tmp_path / "slow-cni"
    cni.mkdir()
    (cni / "host-device").write_text("#!/bin/sh\nsleep 2\nexec /usr/lib/cni/host-device\n")
    (cni / "host-device").chmod(0o755)
    shutil.copy("/usr/lib/cni/static", cni / "static")
    with SimNode() as node:
        nic = node.add_nic(1)
        pod = node.netns_path(node.add_pod())
        node.plugin = str(host / "amd-host-device")
        result = {}
        t = threading.Thread(target=lambda: result.update(call=node.cni(
            "ADD", node.conf(nic.pci), "c1", pod, "net1", cni_path=str(cni),
            extra_env={"AMD_HOST_DEVICE_FALLBACK_DIRS": ""})))
        t.start()
        time.sleep(0.7)
        up = install(host, second_image)
        t.join()
        assert up.returncode == 0 and "replacing" in up.stderr, up.stderr
        assert result["call"].rc == 0, result["call"].stdout + result["call"].stderr
        new = os.readlink(host / "amd-host-device")
        assert new != old and f"{__version__}+upgrade" in new
        assert (host / old.split("/")[0]).is_dir()  # the previous version is kept
        assert not stale.exists()                    # older ones are pruned
        delete = node.cni("DEL", node.conf(nic.pci), "c1", pod, "net1")
        assert delete.rc == 0, delete.stdout
        assert node.addresses(node.node, nic.name) == {nic.v4, nic.v6}


def test_a_full_disk_fails_with_a_reason(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        out = install(small)
        assert out.returncode != 0 and "no space left" in out.stderr, out.stderr
        assert os.listdir(small) == []  # no half copy left behind
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_then_sleep_installs_and_stays_until_stopped(host):
    name = f"ahd-sleep-{os.getpid()}"
    run = podman("run", "-d", "--name", name, "--network", "none", "-v",
                 f"{host}:/host/opt/cni/bin", IMAGE, "--host-dir", "/host/opt/cni/bin",
                 "--node-dir", str(host), "--then-sleep", check=False)
    try:
        assert run.returncode == 0, run.stderr
        deadline = time.monotonic() + 30
        while "sleeping" not in podman("logs", name).stderr and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "sleeping" in podman("logs", name).stderr
        assert (host / "amd-host-device").is_symlink()
        assert json.loads(podman("inspect", name).stdout)[0]["State"]["Running"]
        podman("stop", "-t", "10", name)
        assert json.loads(podman("inspect", name).stdout)[0]["State"]["ExitCode"] == 0
    finally:
        podman("rm", "-f", name, check=False)


def _install_on_node(root):
    """The init container as the DaemonSet runs it: the node's / at /host (read-only), its CNI
    bin dir at /host/opt/cni/bin, and --node-root /host."""
    host = root / "opt" / "cni" / "bin"
    host.mkdir(parents=True, exist_ok=True)
    return podman("run", "--rm", "--network", "none", "-v", f"{root}:/host:ro",
                  "-v", f"{host}:/host/opt/cni/bin", IMAGE, "--host-dir", "/host/opt/cni/bin",
                  "--node-dir", "/opt/cni/bin", "--node-root", "/host", check=False)


def test_the_install_is_proven_in_the_nodes_own_root(tmp_path):
    """A node root with nothing but the kernel's /proc and /dev (no libc, no /bin/sh, no ip):
    the installer runs the installed plugin's VERSION and `doctor --tools`, and each delegate
    it linked, chrooted there, not in the image's userland."""
    root = tmp_path / "node"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    subprocess.run(["mount", "--rbind", "/dev", str(root / "dev")], check=True)
    try:
        out = _install_on_node(root)
    finally:
        subprocess.run(["umount", "-R", str(root / "dev")], check=False)
        subprocess.run(["umount", str(root / "proc")], check=False)
    assert out.returncode == 0, out.stderr
    assert "verified on the node (chroot /host)" in out.stderr
    assert "host-device, static, sbr answer VERSION" in out.stderr


def test_a_node_root_where_the_plugin_cannot_run_fails_the_install_with_the_cause(tmp_path):
    """No /proc in the node's root: the launcher cannot find its bundle there. The image's
    own userland would have said all is well; the node's says why not."""
    out = _install_on_node(tmp_path / "node")
    assert out.returncode != 0
    assert "on the node (chroot /host)" in out.stderr and "does not answer VERSION" in out.stderr
    assert "/proc/self/exe" in out.stderr, out.stderr
