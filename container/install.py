"""Install amd-host-device into the node's CNI bin dir (the image's entrypoint).

    <host-dir>/.amd-host-device-<version>-<digest>/   the bundle (versioned, hidden)
    <host-dir>/amd-host-device -> .amd-host-device-<version>-<digest>/bin/amd-host-device

Atomic at every step, so a kubelet exec in flight never sees a half-written or busy file: the
bundle is copied to a temp dir in the same directory, fsync'd, verified (it must answer
VERSION), renamed into place, and only then the symlink is switched with one rename. The
previous version is kept (a plugin started just before the switch may still be loading from
it); older ones are removed. `host-device`, `static` and `sbr` are installed only where the
node has none. A second run with the same bundle changes nothing and says so.

Runs with the bundle's own interpreter (`python3 -IS`): the image needs nothing else.
"""

from __future__ import annotations

import argparse
import errno
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time

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


def set_shebang(bundle: str, node_bundle: str) -> None:
    """The entry names its interpreter by absolute path: the path the *node* sees."""
    entry = os.path.join(bundle, "bin", NAME)
    with open(entry) as f:
        body = f.read().split("\n", 1)[1]
    with open(entry, "w") as f:
        f.write(f"#!{node_bundle}/bin/python3 -IS\n{body}")


def verify(bundle: str) -> str:
    """The new bundle must answer VERSION before anything points at it."""
    proc = subprocess.run([os.path.join(bundle, "bin", "python3"), "-IS",
                           os.path.join(bundle, "bin", NAME)], input=b'{"cniVersion":"1.0.0"}',
                          env={"CNI_COMMAND": "VERSION", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          capture_output=True, timeout=30, check=False)
    if proc.returncode != 0 or b"supportedVersions" not in proc.stdout:
        raise InstallError(f"the new bundle does not answer VERSION: {proc.stdout!r} "
                           f"{proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout.decode().strip()


def switch_link(host_dir: str, target: str) -> None:
    link = os.path.join(host_dir, NAME)
    tmp = os.path.join(host_dir, f".{NAME}.link-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(host_dir)


def current_target(host_dir: str) -> str:
    try:
        return os.readlink(os.path.join(host_dir, NAME))
    except OSError:
        return ""


def install_bundle(bundle: str, host_dir: str, node_dir: str) -> bool:
    manifest = read_manifest(bundle)
    if not manifest.get("digest"):
        raise InstallError(f"{bundle} has no MANIFEST: not a frozen bundle")
    dirname = f".{NAME}-{manifest['version']}-{manifest['digest'][:12]}"
    target = os.path.join(host_dir, dirname)
    entry = f"{dirname}/bin/{NAME}"
    previous = current_target(host_dir)
    if previous == entry and read_manifest(target) == manifest:
        log(f"{NAME} {manifest['version']} ({manifest['digest'][:12]}) already installed in "
            f"{host_dir}; nothing to do")
        return False
    if read_manifest(target) != manifest:
        tmp = os.path.join(host_dir, f"{dirname}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(bundle, tmp, symlinks=True)
            set_shebang(tmp, os.path.join(node_dir, dirname))
            fsync_tree(tmp)
            verify(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a half copy must not eat the node's disk
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
        fsync_dir(host_dir)
    verify(target)
    switch_link(host_dir, entry)
    log(f"installed {NAME} {manifest['version']} ({manifest['digest'][:12]}) in {host_dir}"
        + (f", replacing {previous}" if previous else ""))
    prune(host_dir, keep={dirname, previous.split("/", 1)[0]})
    return True


def prune(host_dir: str, keep: set[str]) -> None:
    for name in os.listdir(host_dir):
        if name.startswith(f".{NAME}-") and name not in keep:
            shutil.rmtree(os.path.join(host_dir, name), ignore_errors=True)
            log(f"removed old {name}")


def install_delegates(source: str, host_dir: str) -> int:
    installed = 0
    for name in DELEGATES:
        src = os.path.join(source, name)
        dst = os.path.join(host_dir, name)
        if not os.path.exists(src):
            log(f"image carries no {name}; skipping")
            continue
        if os.path.lexists(dst):
            same = os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False)
            log(f"{name} already installed" if same else f"node has its own {name}; leaving it")
            continue
        tmp = os.path.join(host_dir, f".{name}.tmp-{os.getpid()}")
        shutil.copy2(src, tmp)
        os.chmod(tmp, 0o755)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dst)
        fsync_dir(host_dir)
        log(f"installed {name} (the node had none)")
        installed += 1
    return installed


def check_dir(host_dir: str) -> None:
    if not os.path.isdir(host_dir):
        raise InstallError(f"{host_dir} does not exist (is the host directory mounted?)")
    probe = os.path.join(host_dir, f".{NAME}.probe-{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
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
                   help="the same dir as the node (kubelet) sees it")
    p.add_argument("--bundle", default=HERE, help="the frozen bundle to install")
    p.add_argument("--delegates", default=os.path.join(HERE, "delegates"))
    p.add_argument("--then-sleep", action="store_true",
                   help="stay running after installing (main-container mode)")
    args = p.parse_args(argv)
    try:
        check_dir(args.host_dir)
        changed = install_bundle(args.bundle, args.host_dir, args.node_dir)
        changed = install_delegates(args.delegates, args.host_dir) > 0 or changed
        if not changed:
            log("nothing changed")
    except InstallError as e:
        log(f"failed: {e}")
        return 1
    except OSError as e:
        log(f"failed: {_why(e, args.host_dir)}")
        return 1
    return sleep_forever() if args.then_sleep else 0


if __name__ == "__main__":
    sys.exit(main())
