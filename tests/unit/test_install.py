"""The installer (container/install.py) on a small bundle (the real launcher, this machine's
loader and python3, a script that answers VERSION): the entry runs from any node dir,
is verified by exec through the CNI bin dir's link, leaves no temp names on failure, and the
node policy is validated and written atomically."""

import json
import os
import pathlib
import shutil
import sys

import pytest

from container import freeze, install

ROOT = pathlib.Path(__file__).resolve().parents[2]

ANSWER = ("import json, os, sys\n"
          "print(json.dumps({'cniVersion': '1.0.0', 'supportedVersions': ['1.0.0', '1.1.0'],"
          " 'argv0': sys.argv[0], 'entry': os.environ.get('AMD_HOST_DEVICE_ENTRY')}))\n")


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    out = tmp_path_factory.mktemp("launcher") / "amd-host-device"
    freeze.build_launcher(str(ROOT), str(out))
    return out


@pytest.fixture
def bundle(tmp_path, launcher):
    b = tmp_path / "bundle"
    (b / "bin").mkdir(parents=True)
    (b / "lib").mkdir()
    os.symlink(os.path.realpath(sys.executable), b / "bin" / "python3")
    os.symlink(os.path.realpath(f"/lib64/{freeze.LOADER}"), b / "lib" / freeze.LOADER)
    (b / "lib" / "amd-host-device.py").write_text(ANSWER)
    shutil.copy(launcher, b / "bin" / "amd-host-device")
    (b / "MANIFEST").write_text("version=9.9.9\ndigest=0123456789abcdef\n")
    return b


def leftovers(d):
    return [n for n in os.listdir(d) if ".tmp" in n or ".link-" in n or ".probe" in n]


@pytest.mark.parametrize("dirname", ["opt cni bin", "x" * 200])
def test_any_node_dir_works_spaces_and_length_included(bundle, tmp_path, dirname):
    host = tmp_path / dirname
    host.mkdir()
    assert install.install_bundle(str(bundle), str(host)) is True
    link = host / "amd-host-device"
    answer = json.loads(install.verify(str(link)))
    assert answer["supportedVersions"][-1] == "1.1.0"
    assert answer["entry"] == str(link)   # the launcher names what was exec'd (noderoot's re-exec)
    assert leftovers(host) == []
    assert install.install_bundle(str(bundle), str(host)) is False  # idempotent


def test_a_directory_in_place_of_the_entry_is_refused_without_leftovers(bundle, tmp_path):
    host = tmp_path / "bin"
    (host / "amd-host-device").mkdir(parents=True)
    with pytest.raises(install.InstallError) as e:
        install.install_bundle(str(bundle), str(host))
    assert "is a directory" in str(e.value)
    assert leftovers(host) == []


def test_an_entry_that_cannot_start_is_never_linked(bundle, tmp_path):
    host = tmp_path / "bin"
    host.mkdir()
    (bundle / "bin" / "python3").unlink()  # the bundle's interpreter is missing
    os.symlink("/nonexistent/python3", bundle / "bin" / "python3")
    with pytest.raises(install.InstallError):
        install.install_bundle(str(bundle), str(host))
    assert os.listdir(host) == []


def test_policy_is_validated_and_written_atomically(tmp_path):
    src = tmp_path / "cm" / "amd-host-device.conf"
    src.parent.mkdir()
    src.write_text(json.dumps({"stateDir": "/var/lib/cni/amd-host-device",
                               "allowNonPciDevices": True}))
    dest = tmp_path / "net.d" / "amd-host-device.d"
    assert install.install_policy(str(src), str(dest)) is True
    assert json.loads((dest / "amd-host-device.conf").read_text())["allowNonPciDevices"] is True
    assert install.install_policy(str(src), str(dest)) is False
    src.write_text(json.dumps({"stateDir": "relative", "typo": 1}))
    with pytest.raises(install.InstallError) as e:
        install.install_policy(str(src), str(dest))
    assert "node policy" in str(e.value)
    assert json.loads((dest / "amd-host-device.conf").read_text())["allowNonPciDevices"] is True
    assert leftovers(dest) == []
    assert install.install_policy(str(tmp_path / "absent"), str(dest)) is False


@pytest.fixture
def with_delegates(bundle, launcher):
    (bundle / "delegates").mkdir()
    (bundle / "libexec").mkdir()
    for name in install.DELEGATES:
        shutil.copy(launcher, bundle / "delegates" / name)
        (bundle / "libexec" / name).write_bytes(b"\x7fELF the Go binary " + name.encode())
    return bundle


def test_delegates_are_links_to_the_bundles_launchers_where_the_node_has_none(with_delegates,
                                                                               tmp_path):
    host = tmp_path / "bin"
    host.mkdir()
    (host / "static").write_text("#!/bin/sh\necho node's own\n")
    assert install.install_delegates(str(with_delegates), ".amd-host-device-1-a", str(host)) == 2
    assert os.readlink(host / "host-device") == ".amd-host-device-1-a/delegates/host-device"
    assert os.readlink(host / "sbr") == ".amd-host-device-1-a/delegates/sbr"
    assert (host / "static").read_text() == "#!/bin/sh\necho node's own\n"
    assert install.ours_linked(str(host), ".amd-host-device-1-a") == ["host-device", "sbr"]
    # the next bundle: our links follow it, the node's own still untouched
    assert install.install_delegates(str(with_delegates), ".amd-host-device-2-b", str(host)) == 2
    assert os.readlink(host / "host-device") == ".amd-host-device-2-b/delegates/host-device"
    assert install.install_delegates(str(with_delegates), ".amd-host-device-2-b", str(host)) == 0
    assert leftovers(host) == []


def test_a_plain_copy_an_older_installer_left_becomes_a_link(with_delegates, tmp_path):
    host = tmp_path / "bin"
    host.mkdir()
    shutil.copy(with_delegates / "libexec" / "sbr", host / "sbr")
    install.install_delegates(str(with_delegates), ".amd-host-device-1-a", str(host))
    assert os.readlink(host / "sbr") == ".amd-host-device-1-a/delegates/sbr"
def test_without_a_configmap_a_node_without_policy_gets_the_defaults_and_a_node_file_stays(
        tmp_path):
    dest = tmp_path / "net.d" / "amd-host-device.d"
    assert install.install_policy("", str(dest)) is True
    assert json.loads((dest / "amd-host-device.conf").read_text()) == {}
    assert install.install_policy(str(tmp_path / "absent"), str(dest)) is False   # up to date
    (dest / "amd-host-device.conf").write_text('{"allowPortDevices": true}')    # the admin's own
    assert install.install_policy("", str(dest)) is False
    assert json.loads((dest / "amd-host-device.conf").read_text()) == {"allowPortDevices": True}
    assert leftovers(dest) == []


def test_a_policy_dir_that_cannot_be_written_does_not_fail_the_install_without_a_configmap(
        tmp_path):
    """Without a ConfigMap the `{}` is a marker, not the admin's setting: the install goes on
    (the plugin warns on every command); with one, the same failure fails the install."""
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert install.install_policy("", str(blocked / "amd-host-device.d")) is False
    src = tmp_path / "cm.conf"
    src.write_text("{}")
    with pytest.raises(install.InstallError):
        install.install_policy(str(src), str(blocked / "amd-host-device.d"))
