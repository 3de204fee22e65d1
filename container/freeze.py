#!/usr/bin/env python3
"""Freeze the plugin into a relocatable bundle that needs nothing from the node but the kernel.

    <out>/bin/amd-host-device    the entry: a static launcher (container/launcher.c)
    <out>/bin/python3            the build's CPython
    <out>/lib/ld-linux-x86-64.so.2, libc.so.6, ...
                                 the build's own ELF loader, C library and every shared library
                                 that python3, its extension modules and the tools load
    <out>/lib/python3.X/         the standard library (precompiled), the plugin, sh, tenacity
    <out>/lib/amd-host-device.py the two lines the launcher has python3 run
    <out>/libexec/ip, ethtool, nsenter, sh (dash)
                                 the commands the plugin runs (plugin/tools.py), and the
                                 delegates host-device, static, sbr (Go, dynamically linked)
    <out>/delegates/<name>       a copy of the launcher per delegate: the installer links these
                                 into the CNI bin dir where the node has no delegate of its own
    <out>/MANIFEST               version and a digest of the tree (the installer's idempotency)

Everything dynamically linked runs through the bundle's loader, never the node's:
`<out>/lib/ld-linux-x86-64.so.2 --library-path <out>/lib [--argv0 NAME] BINARY ARGS`. The
launcher does that for the plugin and the delegates; plugin/tools.py does it for ip, ethtool,
nsenter and sh (and for the tool nsenter execs). So the node's glibc version does not matter
(Debian 11's 2.31, RHEL 8's 2.28, or none at all), nor its /bin/sh, iproute2 or ethtool: every
node parses the one `ip -j` this bundle was tested with. Nothing is patched at install time, and
no absolute path is written anywhere, so the bundle works wherever the node mounts it (a path
with spaces, or longer than a shebang can carry, included).

Why not PyInstaller or Nuitka: measured on this machine (README, "Packaging"), a PyInstaller
onedir start costs ~56 ms for VERSION and Nuitka's standalone build takes minutes; this
bundle starts as fast as a bare `python3 -I -S` (~10 ms) because it *is* one: a static
launcher's exec, then the loader, no bootloader, no archive unpacking, no site.
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

LOADER = "ld-linux-x86-64.so.2"
# glibc's own libraries: copied like any other, but never patched (the loader and libc must
# stay byte for byte what the build's Debian ships).
GLIBC = re.compile(r"^(libc|libm|libpthread|libdl|librt|libutil|libresolv|libnsl|libcrypt|"
                   r"ld-linux[^.]*)\.so")
# The commands the plugin runs (plugin/tools.py names them), from the build's Debian.
TOOLS = {"ip": "ip", "ethtool": "ethtool", "nsenter": "nsenter", "sh": "dash"}
DELEGATES = ("host-device", "static", "sbr")
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


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def needed_libs(path: str) -> dict[str, str]:
    """Every shared library (name -> resolved path) that `path` loads, transitively, glibc
    and its loader included: the node's are never used."""
    libs: dict[str, str] = {}
    for line in run("ldd", path).splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line) or re.match(r"\s*(/\S*/(ld-linux[^ ]*))", line)
        if not m:
            continue
        name, found = (m[1], m[2]) if "=>" in line else (m[2], m[1])
        if os.path.exists(found):
            libs[name] = os.path.realpath(found)
    return libs


def which(name: str) -> str:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        sys.exit(f"freeze: {name} is not installed on the build machine")
    return os.path.realpath(found)


def build_launcher(src: str, out: str) -> None:
    """The static entry (container/launcher.c): needs no libc, no /bin/sh on the node."""
    run("gcc", "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-s", "-o", out,
        os.path.join(src, "container", "launcher.c"))


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

    libexec = os.path.join(out, "libexec")
    os.makedirs(libexec)
    programs = [python]
    for name, debian_name in TOOLS.items():
        shutil.copy2(which(debian_name), os.path.join(libexec, name))
        programs.append(os.path.join(libexec, name))
    if args.delegates:
        os.makedirs(os.path.join(out, "delegates"))
        for name in DELEGATES:
            shutil.copy2(os.path.join(args.delegates, name), os.path.join(libexec, name))
            programs.append(os.path.join(libexec, name))

    dynload = os.path.join(stdlib, "lib-dynload")
    extensions = [os.path.join(dynload, n) for n in os.listdir(dynload) if n.endswith(".so")]
    libs: dict[str, str] = {}
    for program in (*programs, *extensions):
        libs.update(needed_libs(program))
    if LOADER not in libs:
        sys.exit(f"freeze: ldd named no {LOADER}: not an x86-64 glibc build machine?")
    for name, path in libs.items():
        shutil.copy2(path, os.path.join(libdir, name))
        if not GLIBC.match(name):
            run("patchelf", "--set-rpath", "$ORIGIN", os.path.join(libdir, name))
    os.chmod(os.path.join(libdir, LOADER), 0o755)
    run("patchelf", "--set-rpath", "$ORIGIN/../lib", os.path.join(out, "bin", "python3"))
    for ext in extensions:
        run("patchelf", "--set-rpath", "$ORIGIN/../..", ext)

    shutil.copy2(os.path.join(args.src, "container", "install.py"), os.path.join(out, "install.py"))
    compileall.compile_dir(stdlib, quiet=2, workers=0)
    build_launcher(args.src, os.path.join(out, "bin", "amd-host-device"))
    for name in DELEGATES if args.delegates else ():
        shutil.copy2(os.path.join(out, "bin", "amd-host-device"),
                     os.path.join(out, "delegates", name))
    with open(os.path.join(libdir, "amd-host-device.py"), "w") as f:
        f.write(ENTRY)
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
