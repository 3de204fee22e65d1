/* The bundle's entry: a static executable, so it needs nothing from the node but the kernel
 * (no libc, no /bin/sh, no shebang path). It finds its bundle from /proc/self/exe (the CNI bin
 * dir's symlink resolved; any path works, spaces and length included) and execs the bundle's
 * own ELF loader on the real program, with the bundle's lib/ as the only library path:
 *
 *   <bundle>/bin/amd-host-device    -> ld.so --library-path <bundle>/lib
 *                                        <bundle>/bin/python3 -IS <bundle>/lib/amd-host-device.py ARGS
 *   <bundle>/delegates/<name>       -> ld.so --library-path <bundle>/lib --argv0 ARGV0
 *                                        <bundle>/libexec/<name> ARGS   (host-device, static, sbr)
 *
 * AMD_HOST_DEVICE_ENTRY is set to the path the caller exec'd (argv[0] when absolute, else the
 * bundle's own entry): what plugin/noderoot.py's entry_path() returns, for the re-exec in the
 * node's root (python3's argv[0] is the script, not this).
 * Built with `gcc -static -Os` by container/freeze.py. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const char *path)
{
    fprintf(stderr, "amd-host-device: %s %s: %s\n", what, path, strerror(errno));
    _exit(127);
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (!s)
        die("out of memory for", a);
    snprintf(s, n, "%s%s", a, b);
    return s;
}

int main(int argc, char **argv)
{
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        die("cannot read", "/proc/self/exe (is /proc mounted?)");
    exe[n] = '\0';
    char *name = strrchr(exe, '/');
    if (!name)
        die("unexpected path", exe);
    *name++ = '\0';                      /* exe: <bundle>/bin or <bundle>/delegates */
    char *up = strrchr(exe, '/');
    if (!up)
        die("unexpected path", exe);
    *up = '\0';                          /* exe: <bundle> */
    char *lib = join(exe, "/lib");
    char *loader = join(exe, "/lib/ld-linux-x86-64.so.2");
    char **args = calloc((size_t)argc + 8, sizeof *args);
    if (!args)
        die("out of memory for", exe);
    int i = 0;
    args[i++] = loader;
    args[i++] = "--library-path";
    args[i++] = lib;
    if (strcmp(name, "amd-host-device") == 0) {
        const char *called = argv[0] && argv[0][0] == '/' ? argv[0] : NULL;
        char *self = called ? NULL : join(exe, "/bin/amd-host-device");
        setenv("AMD_HOST_DEVICE_ENTRY", called ? called : self, 1);
        args[i++] = join(exe, "/bin/python3");
        args[i++] = "-IS";
        args[i++] = join(exe, "/lib/amd-host-device.py");
    } else {
        args[i++] = "--argv0";
        args[i++] = argv[0] ? argv[0] : name;
        args[i++] = join(join(exe, "/libexec/"), name);
    }
    for (int a = 1; a < argc; a++)
        args[i++] = argv[a];
    args[i] = NULL;
    execv(loader, args);
    die("cannot execute", loader);
    return 127;
}
