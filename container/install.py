"""Install amd-host-device into the node's CNI bin dir (the image's entrypoint).

    <host-dir>/.amd-host-device-<version>-<digest>/   the bundle (versioned, hidden)
    <host-dir>/amd-host-device -> .amd-host-device-<version>-<digest>/bin/amd-host-device
    <host-dir>/host-device, static, sbr -> .amd-host-device-<...>/delegates/<name>
                                                       (only where the node has none)

Atomic at every step, so a kubelet exec in flight never sees a half-written or busy file: the
bundle is copied to a temp dir in the same directory, fsync'd, verified (it must answer
VERSION), renamed into place, and only then the symlink is switched with one rename; then the
entry is exec'd once more through that symlink, as the kubelet will (on failure the previous
link comes back). The entry is a static launcher that finds its bundle from /proc/self/exe
and brings its own loader and libc (see container/freeze.py), so any node dir works, spaces
and length included, and nothing is patched here. No temp name outlives a failure. The
previous version is kept (a plugin started just before the switch may still be loading from
it); older ones are removed. `host-device`, `static` and `sbr` are linked only where the
node has none (our links follow upgrades). A second run with the same bundle changes nothing
and says so. With --node-root, the install is then proven in the node's own root (chroot):
VERSION, `doctor --tools`, and each delegate we linked; a failure there fails the install.

Runs with the bundle's own interpreter (`python3 -IS`): the image needs nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import filecmp
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

NAME = "amd-host-device"
DELEGATES = ("host-device", "static", "sbr")
HERE = os.path.dirname(os.path.abspath(__file__))


class InstallError(Exception):
    pass


def log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())} "
                     f"amd-host-device-install {msg}\n")
    sys.stderr.flush()


_REASONS = {errno.EROFS: "is read-only", errno.ENOSPC: "has no space left",
            errno.EACCES: "is not writable", errno.EPERM: "is not writable",
            errno.ENOENT: "does not exist (is the host directory mounted?)"}


def _why(e: OSError, where: str) -> InstallError:
    if isinstance(e, shutil.Error):  # copytree gathers its errors into one, without errno
        text = str(e)
        for code, reason in _REASONS.items():
            if os.strerror(code) in text:
                return InstallError(f"{where} {reason}")
        return InstallError(f"{where}: copy failed: {text[:300]}")
    return InstallError(f"{where} {_REASONS.get(e.errno or 0, f'failed: {e.strerror}')}")


def read_manifest(bundle: str) -> dict[str, str]:
    try:
        with open(os.path.join(bundle, "MANIFEST")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        return {}


def fsync_tree(root: str) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp(host_dir: str, what: str) -> str:
    """An unpredictable temp name in host_dir: nothing planted there can be reused."""
    return os.path.join(host_dir, f".{what}.tmp-{secrets.token_hex(8)}")


def verify(entry: str) -> str:
    """Exec the entry itself (its first line, its sh lines, its python3): it must answer
    VERSION before, and after, anything points at it."""
    try:
        proc = subprocess.run([entry], input=b'{"cniVersion":"1.0.0"}',
                              env={"CNI_COMMAND": "VERSION",
                                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                              capture_output=True, timeout=30, check=False)
    except OSError as e:
        raise InstallError(f"{entry} cannot be executed: {e.strerror}") from None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        answer = {}
    if proc.returncode != 0 or "supportedVersions" not in answer:
        raise InstallError(f"{entry} does not answer VERSION: {proc.stdout[:200]!r} "
                           f"{proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout.decode().strip()


def switch_link(host_dir: str, target: str) -> None:
    link = os.path.join(host_dir, NAME)
    if os.path.isdir(link) and not os.path.islink(link):
        raise InstallError(f"{link} is a directory; not replacing it")
    tmp = _tmp(host_dir, f"{NAME}.link")
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _why(e, link) from None
    fsync_dir(host_dir)


def current_target(host_dir: str) -> str:
    try:
        return os.readlink(os.path.join(host_dir, NAME))
    except OSError:
        return ""


def bundle_dirname(bundle: str) -> str:
    """The bundle's (hidden, versioned) directory name in the CNI bin dir."""
    manifest = read_manifest(bundle)
    if not manifest.get("digest"):
        raise InstallError(f"{bundle} has no MANIFEST: not a frozen bundle")
    return f".{NAME}-{manifest['version']}-{manifest['digest'][:12]}"


def install_bundle(bundle: str, host_dir: str) -> bool:
    """The bundle into host_dir, and the entry's link switched to it (the previous bundle is
    kept: prune() removes older ones once nothing links to them)."""
    dirname = bundle_dirname(bundle)
    manifest = read_manifest(bundle)
    target = os.path.join(host_dir, dirname)
    entry = f"{dirname}/bin/{NAME}"
    previous = current_target(host_dir)
    if previous == entry and read_manifest(target) == manifest:
        log(f"{NAME} {manifest['version']} ({manifest['digest'][:12]}) already installed in "
            f"{host_dir}; nothing to do")
        return False
    if read_manifest(target) != manifest:
        tmp = _tmp(host_dir, dirname)
        try:
            shutil.copytree(bundle, tmp, symlinks=True)
            fsync_tree(tmp)
            verify(os.path.join(tmp, "bin", NAME))
            shutil.rmtree(target, ignore_errors=True)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a half copy must not eat the node's disk
            raise
        fsync_dir(host_dir)
    verify(os.path.join(target, "bin", NAME))
    switch_link(host_dir, entry)
    try:
        verify(os.path.join(host_dir, NAME))  # the path the kubelet will exec
    except InstallError:
        if previous:
            switch_link(host_dir, previous)
        else:
            os.unlink(os.path.join(host_dir, NAME))
        raise
    log(f"installed {NAME} {manifest['version']} ({manifest['digest'][:12]}) in {host_dir}"
        + (f", replacing {previous}" if previous else ""))
    return True


POLICY_FILE = "amd-host-device.conf"
DEFAULT_POLICY = b"{}\n"


def install_policy(source: str, policy_dir: str) -> bool:
    """The node policy from the DaemonSet's ConfigMap (plugin/policy.py): validated, then
    written atomically beside the CNI configs. No ConfigMap: see default_policy."""
    if not source or not os.path.exists(source):
        return default_policy(policy_dir)
    from plugin import policy  # the bundle's own copy: the same rules the plugin applies
    from plugin.errors import CniError

    with open(source, "rb") as f:
        data = f.read(1 << 16)
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        policy.parse(obj, source)
    except (ValueError, RecursionError) as e:
        raise InstallError(f"node policy {source}: not valid JSON ({str(e)[:100]})") from None
    except CniError as e:
        raise InstallError(e.msg) from None
    return _write_policy(data, policy_dir)


def default_policy(policy_dir: str) -> bool:
    """No ConfigMap: the node's own file is left alone, and a node without one gets `{}` (the
    defaults), so that the plugin's warning about a missing file (on every command) means
    something is wrong: not the node's root, or a node set up by hand. Best effort: a policy
    dir this container cannot write is said, not fatal (the plugin runs on the defaults)."""
    if os.path.lexists(os.path.join(policy_dir, POLICY_FILE)):
        log("no node policy given; leaving the node's as it is")
        return False
    log("no node policy given, and the node has none: writing {} (the defaults)")
    try:
        return _write_policy(DEFAULT_POLICY, policy_dir)
    except InstallError as e:
        log(f"cannot write the default node policy: {e}; the plugin will warn on every command")
        return False


def _write_policy(data: bytes, policy_dir: str) -> bool:
    try:
        os.makedirs(policy_dir, mode=0o755, exist_ok=True)
        dst = os.path.join(policy_dir, POLICY_FILE)
        if os.path.isfile(dst) and not os.path.islink(dst):
            with open(dst, "rb") as f:
                if f.read() == data:
                    log(f"node policy {dst} already up to date")
                    return False
        def write(tmp: str) -> None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

        _place(_tmp(policy_dir, POLICY_FILE), dst, write)
        fsync_dir(policy_dir)
    except OSError as e:
        raise _why(e, policy_dir) from None
    log(f"wrote node policy {dst}")
    return True


def _place(tmp: str, dst: str, fill: Callable[[str], None]) -> None:
    """fill(tmp), then one rename over dst: dst is old or new, never half; tmp never outlives
    a failure."""
    try:
        fill(tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prune(host_dir: str, keep: set[str]) -> None:
    for name in os.listdir(host_dir):
        if name.startswith(f".{NAME}-") and name not in keep:
            shutil.rmtree(os.path.join(host_dir, name), ignore_errors=True)
            log(f"removed old {name}")


def _ours(host_dir: str, name: str, bundle: str) -> bool:
    """A delegate this installer put there: a link into one of our bundles, or (installers
    before the bundle carried its own libc) a plain copy of the very binary we ship."""
    dst = os.path.join(host_dir, name)
    if os.path.islink(dst):
        return os.readlink(dst).startswith(f".{NAME}-")
    shipped = os.path.join(bundle, "libexec", name)
    return (os.path.isfile(dst) and os.path.isfile(shipped)
            and filecmp.cmp(shipped, dst, shallow=False))


def install_delegates(bundle: str, dirname: str, host_dir: str) -> int:
    """host-device, static and sbr where the node has none: each a link to the bundle's
    launcher for it (<dirname>/delegates/<name>), which runs the bundled Go binary through the
    bundle's loader, so it runs on a node without a libc too. Our links follow each upgrade;
    the node's own delegates are never touched (CNI_PATH order decides between them)."""
    installed = 0
    for name in DELEGATES:
        if not os.path.exists(os.path.join(bundle, "delegates", name)):
            log(f"image carries no {name}; skipping")
            continue
        dst = os.path.join(host_dir, name)
        target = f"{dirname}/delegates/{name}"
        if os.path.lexists(dst) and not _ours(host_dir, name, bundle):
            log(f"node has its own {name}; leaving it")
            continue
        if os.path.islink(dst) and os.readlink(dst) == target:
            log(f"{name} already installed")
            continue

        def link(tmp: str, target: str = target) -> None:
            os.symlink(target, tmp)

        try:
            _place(_tmp(host_dir, name), dst, link)
        except OSError as e:
            raise _why(e, dst) from None
        fsync_dir(host_dir)
        log(f"installed {name} (the node had none)")
        installed += 1
    return installed


def ours_linked(host_dir: str, dirname: str) -> list[str]:
    """The delegates that are links into this bundle (the ones we vouch for)."""
    found = []
    for name in DELEGATES:
        dst = os.path.join(host_dir, name)
        if os.path.islink(dst) and os.readlink(dst).startswith(f"{dirname}/"):
            found.append(name)
    return found


def _on_node(node_root: str, argv: list[str], env: dict[str, str],
             stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """argv run chrooted into the node's root, as the kubelet's runtime will run it there."""
    def enter() -> None:
        os.chroot(node_root)
        os.chdir("/")

    return subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60,
                          check=False, preexec_fn=enter)


def verify_on_node(node_root: str, node_dir: str, delegates: list[str]) -> None:
    """Prove the install where it will run: in the node's own root (its libc or none, its
    /bin/sh or none), never this image's userland. The entry must answer VERSION, `doctor
    --tools` must find every command the plugin runs, and each delegate we linked must answer
    VERSION. The first failure is the InstallError, with what the node said."""
    path = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    where = f"on the node (chroot {node_root})"
    for name in [NAME, *delegates]:
        entry = os.path.join(node_dir, name)
        try:
            proc = _on_node(node_root, [entry], {**path, "CNI_COMMAND": "VERSION"},
                            b'{"cniVersion":"1.0.0"}')
        except OSError as e:
            raise InstallError(f"{where}: {entry} cannot be executed: {e.strerror}") from None
        except subprocess.SubprocessError as e:
            raise InstallError(f"{where}: {entry}: {e}") from None
        if proc.returncode != 0 or b"supportedVersions" not in proc.stdout:
            raise InstallError(f"{where}: {entry} does not answer VERSION (exit "
                               f"{proc.returncode}): {proc.stdout[:200]!r} "
                               f"{proc.stderr.decode(errors='replace')[-300:]}")
    entry = os.path.join(node_dir, NAME)
    try:
        proc = _on_node(node_root, [entry, "doctor", "--tools"], path)
    except (OSError, subprocess.SubprocessError) as e:
        raise InstallError(f"{where}: {entry} doctor --tools: {e}") from None
    if proc.returncode != 0:
        said = proc.stdout.decode(errors="replace").strip().splitlines()
        failed = [line.strip() for line in said if line.startswith("✗")] or said[-3:]
        raise InstallError(f"{where}: `{NAME} doctor --tools` failed: {'; '.join(failed)[:400]}"
                           f" {proc.stderr.decode(errors='replace')[-200:]}".rstrip())
    log(f"verified {where}: {entry} answers VERSION and finds its tools"
        + (f"; {', '.join(delegates)} answer VERSION" if delegates else ""))


def check_dir(host_dir: str) -> None:
    if not os.path.isdir(host_dir):
        raise InstallError(f"{host_dir} does not exist (is the host directory mounted?)")
    probe = _tmp(host_dir, f"{NAME}.probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise _why(e, host_dir) from None


def sleep_forever() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log("installed; sleeping (--then-sleep)")
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="amd-host-device-install", description=__doc__.splitlines()[0])
    p.add_argument("--host-dir", default="/host/opt/cni/bin",
                   help="the node's CNI bin dir as mounted in this container")
    p.add_argument("--node-dir", default="/opt/cni/bin",
                   help="the same dir as the node (kubelet) sees it: where --node-root's "
                   "check runs the plugin (the entry itself names no node path)")
    p.add_argument("--policy", default="",
                   help="node policy JSON to install (the DaemonSet's ConfigMap)")
    p.add_argument("--policy-dir", default="/host/etc/cni/net.d/amd-host-device.d",
                   help="where the node's policy file goes, as mounted in this container")
    p.add_argument("--bundle", default=HERE, help="the frozen bundle to install")
    p.add_argument("--node-root", default="",
                   help="the node's / as mounted in this container (e.g. /host): the install "
                   "is then verified there, chrooted, as the node will run it")
    p.add_argument("--then-sleep", action="store_true",
                   help="stay running after installing (main-container mode)")
    args = p.parse_args(argv)
    try:
        check_dir(args.host_dir)
        # Policy first: the plugin never runs on this node under a policy it was not given.
        changed = install_policy(args.policy, args.policy_dir)
        dirname = bundle_dirname(args.bundle)
        previous = current_target(args.host_dir).split("/", 1)[0]
        replaced = install_bundle(args.bundle, args.host_dir)
        changed = install_delegates(args.bundle, dirname, args.host_dir) > 0 or replaced or changed
        if replaced:  # only now: nothing of ours links into an older bundle any more
            prune(args.host_dir, keep={dirname, previous})
        if not changed:
            log("nothing changed")
        if args.node_root:
            verify_on_node(args.node_root, args.node_dir, ours_linked(args.host_dir, dirname))
    except InstallError as e:
        log(f"failed: {e}")
        return 1
    except OSError as e:
        log(f"failed: {_why(e, args.host_dir)}")
        return 1
    return sleep_forever() if args.then_sleep else 0


if __name__ == "__main__":
    sys.exit(main())
