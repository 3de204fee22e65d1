#!/usr/bin/env python3
"""Freeze the plugin into a self-contained, relocatable bundle that needs only glibc.

    <out>/bin/python3          the build machine's CPython, rpath -> <out>/lib
    <out>/bin/amd-host-device  entry: a sh/Python polyglot that finds its own python3
    <out>/lib/*.so*            every shared library it and its extension modules need
                               (except glibc's own, which every node has)
    <out>/lib/python3.X/       the standard library (precompiled), the plugin, sh, tenacity
    <out>/MANIFEST             version and a digest of the tree (the installer's idempotency)

Why not PyInstaller or Nuitka: measured on this machine (README, "Packaging"), a PyInstaller
onedir start costs ~56 ms for VERSION and Nuitka's standalone build takes minutes; this
bundle starts as fast as a bare `python3 -I -S` (~10 ms) because it *is* one: no bootloader,
no archive unpacking, no site. Nothing is unpacked at run time.

The entry names no absolute path, so it works wherever the node mounts the bundle (a path
with spaces, or longer than a shebang can carry, included): `/bin/sh` runs its first lines,
which exec the bundle's python3 from the entry's own directory (or, through the CNI bin dir's
symlink, from the bundle dir the installer wrote in, with `readlink -f` as the fallback);
Python reads those same lines as one string and runs the plugin.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig

GLIBC = re.compile(r"^(libc|libm|libpthread|libdl|librt|libutil|libresolv|libnsl|libcrypt|"
                   r"ld-linux[^.]*|linux-vdso)\.so")
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
               "distutils", "site-packages", "dist-packages", "__pycache__", "venv", "sqlite3",
               "dbm", "curses", "unittest", "config-3.11-x86_64-linux-gnu", "turtle.py",
               "pydoc.py", "doctest.py"}
# Extension modules the plugin never loads, and the libraries only they would drag in.
DYNLOAD_SKIP = ("_sqlite3", "_dbm", "_gdbm", "readline", "_curses", "_curses_panel", "_tkinter",
                "nis", "_ssl", "_hashlib", "_uuid", "_lzma", "_bz2", "_crypt", "spwd",
                "ossaudiodev", "xxlimited", "_xxtestfuzz", "_testcapi", "_testinternalcapi",
                "_testbuffer", "_testimportmultiple", "_testmultiphase", "_ctypes_test",
                "_test", "audioop", "_codecs_")
ENTRY = "from plugin.main import run\nrun()\n"
# Lines 2-7 run under /bin/sh; to Python they are one string expression. BUNDLE_DIR is the
# bundle's directory name beside the CNI bin dir's symlink (the installer fills it in).
STUB = r"""#!/bin/sh
"true" '''\'
case "$0" in */*) d=${0%/*} ;; *) d=. ;; esac
[ -x "$d/python3" ] || d="$d/BUNDLE_DIR/bin"
[ -x "$d/python3" ] || d=$(dirname "$(readlink -f "$0")")
exec "$d/python3" -IS "$d/amd-host-device" "$@"
'''
"""


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def needed_libs(path: str) -> dict[str, str]:
    """Non-glibc shared libraries (name -> resolved path) that `path` loads, transitively."""
    libs: dict[str, str] = {}
    for line in run("ldd", path).splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m and not GLIBC.match(m[1]) and os.path.exists(m[2]):
            libs[m[1]] = m[2]
    return libs


def copy_stdlib(src: str, dst: str) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in STDLIB_SKIP or n.endswith((".pyc", ".exe"))}
        if os.path.basename(directory) == "lib-dynload":
            skip |= {n for n in names if n.startswith(DYNLOAD_SKIP)}
        if os.path.realpath(directory) == os.path.realpath(src):
            skip |= {n for n in names if n.startswith("_sysconfigdata") and "debug" in n}
        return skip
    shutil.copytree(src, dst, ignore=ignore, symlinks=False)


def digest(root: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name == "MANIFEST" or "__pycache__" in path:
                continue
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def write_entry(out: str, bundle_dir: str = "BUNDLE_DIR") -> None:
    entry = os.path.join(out, "bin", "amd-host-device")
    with open(entry, "w") as f:
        f.write(STUB.replace("BUNDLE_DIR", bundle_dir) + ENTRY)
    os.chmod(entry, 0o755)


def release_matches(version: str, frozen: str) -> bool:
    """The version the image is tagged with is the tree's, or a local build of it (PEP 440
    `+local`: `0.2.0+upgrade`)."""
    return version == frozen or version.startswith(frozen + "+")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p.add_argument("--prefix", default="", help="ignored: the entry finds its own interpreter")
    p.add_argument("--version", default="")
    p.add_argument("--wheels", default="",
                   help="install from these wheels only (no index): the image build is offline")
    p.add_argument("--delegates", default="",
                   help="dir with host-device, static and sbr to ship for nodes that lack them")
    args = p.parse_args()
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    libdir = os.path.join(out, "lib")
    stdlib = os.path.join(libdir, pyver)
    os.makedirs(os.path.join(out, "bin"))
    os.makedirs(libdir)

    python = os.path.realpath(sys.executable)
    shutil.copy2(python, os.path.join(out, "bin", "python3"))
    copy_stdlib(sysconfig.get_paths()["stdlib"], stdlib)
    # Our code and its two dependencies, importable under -I -S (no site-packages).
    source = (["--no-index", "--find-links", args.wheels, "amd-host-device"] if args.wheels
              else [args.src])
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
                    "--disable-pip-version-check", "--target", stdlib, *source], check=True)
    for leftover in os.listdir(stdlib):
        if leftover.endswith(".dist-info") or leftover == "bin":
            shutil.rmtree(os.path.join(stdlib, leftover))

    libs: dict[str, str] = needed_libs(python)
    dynload = os.path.join(stdlib, "lib-dynload")
    extensions = [os.path.join(dynload, n) for n in os.listdir(dynload) if n.endswith(".so")]
    for ext in extensions:
        libs.update(needed_libs(ext))
    for name, path in libs.items():
        shutil.copy2(path, os.path.join(libdir, name))
        run("patchelf", "--set-rpath", "$ORIGIN", os.path.join(libdir, name))
    run("patchelf", "--set-rpath", "$ORIGIN/../lib", os.path.join(out, "bin", "python3"))
    for ext in extensions:
        run("patchelf", "--set-rpath", "$ORIGIN/../..", ext)

    shutil.copy2(os.path.join(args.src, "container", "install.py"), os.path.join(out, "install.py"))
    if args.delegates:
        os.makedirs(os.path.join(out, "delegates"))
        for name in ("host-device", "static", "sbr"):
            shutil.copy2(os.path.join(args.delegates, name), os.path.join(out, "delegates", name))
    compileall.compile_dir(stdlib, quiet=2, workers=0)
    write_entry(out)
    frozen = run(sys.executable, "-c", f"import sys; sys.path.insert(0, {stdlib!r}); "
                 "import plugin; print(plugin.__version__)").strip()
    version = args.version or frozen
    if not release_matches(version, frozen):
        sys.stderr.write(f"freeze: --version {version} is not the release the tree carries "
                         f"({frozen}, plugin/__init__.py); the tag, label and MANIFEST must "
                         "agree\n")
        return 1
    with open(os.path.join(out, "MANIFEST"), "w") as f:
        f.write(f"version={version}\ndigest={digest(out)}\n")
    print(f"froze amd-host-device {version} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
