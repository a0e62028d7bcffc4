/* LD_PRELOAD fault injector for the fault-injection runs (tests/faults/test_faults_eio.py).
 *
 * Wraps write, pwrite, pwrite64, fsync and fdatasync. While the file named by $MSB_FAULT_CONTROL
 * exists, each of its lines "<call> <path>" makes that call fail with EIO on every descriptor whose
 * path (readlink /proc/self/fd/N) contains <path>; a <path> ending in '$' must end the descriptor's
 * path instead (e.g. "fsync /spool$" hits the spool directory itself, not the files in it).
 * "<call>" is write (also pwrite/pwrite64), fsync (also fdatasync), or "*" for all of them.
 * Every injected failure is counted in $MSB_FAULT_CONTROL.hits (one byte appended per failure).
 * Without the control file every call goes straight through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static __thread int busy; /* our own file access must not be injected into */

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static void resolve(void) {
    if (!real_write) real_write = dlsym(RTLD_NEXT, "write");
    if (!real_pwrite) real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    if (!real_pwrite64) real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    if (!real_fsync) real_fsync = dlsym(RTLD_NEXT, "fsync");
    if (!real_fdatasync) real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
}

static int matches(const char *path, const char *want) {
    size_t n = strlen(want);
    if (n > 0 && want[n - 1] == '$') {
        size_t p = strlen(path);
        return p >= n - 1 && strncmp(path + p - (n - 1), want, n - 1) == 0;
    }
    return strstr(path, want) != NULL;
}

/* 1 when `call` on `fd` must fail now. */
static int inject(int fd, const char *call) {
    const char *control = getenv("MSB_FAULT_CONTROL");
    if (busy || control == NULL || access(control, F_OK) != 0) return 0;
    busy = 1;
    int hit = 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    FILE *f = len > 0 ? fopen(control, "r") : NULL;
    if (f != NULL) {
        path[len] = '\0';
        char line[4200], op[32], want[4096];
        while (!hit && fgets(line, sizeof line, f)) {
            if (sscanf(line, "%31s %4095s", op, want) == 2 && (strcmp(op, "*") == 0 || strcmp(op, call) == 0))
                hit = matches(path, want);
        }
        fclose(f);
    }
    if (hit) {
        char hits[4200];
        snprintf(hits, sizeof hits, "%s.hits", control);
        int h = open(hits, O_WRONLY | O_APPEND | O_CREAT, 0600);
        if (h >= 0) {
            real_write(h, call, 1);
            close(h);
        }
    }
    busy = 0;
    return hit;
}

ssize_t write(int fd, const void *buf, size_t n) {
    resolve();
    if (inject(fd, "write")) { errno = EIO; return -1; }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    resolve();
    if (inject(fd, "write")) { errno = EIO; return -1; }
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    resolve();
    if (inject(fd, "write")) { errno = EIO; return -1; }
    return real_pwrite64(fd, buf, n, off);
}

int fsync(int fd) {
    resolve();
    if (inject(fd, "fsync")) { errno = EIO; return -1; }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    resolve();
    if (inject(fd, "fsync")) { errno = EIO; return -1; }
    return real_fdatasync(fd);
}
