/*
 * A static probe put into test containers: it makes one system call and prints what the
 * kernel answered ("OK" or the errno name), so tests can see from inside a container
 * what its seccomp filter and capabilities allow. Busybox covers everything else.
 *
 * usage: probe keyctl | unshare-user | kexec-load | clone-newns | clone3 | getpid
 *        probe write-exe PATH   (open PATH for writing: CVE-2019-5736 check)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ETXTBSY: return "ETXTBSY";
    case ENOENT: return "ENOENT";
    default: return strerror(e);
    }
}

static int report(long ret) {
    if (ret < 0) {
        printf("%s\n", errname(errno));
        return 1;
    }
    printf("OK\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe SYSCALL\n");
        return 2;
    }
    const char *what = argv[1];
    if (!strcmp(what, "keyctl"))
        return report(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    if (!strcmp(what, "unshare-user"))
        return report(syscall(SYS_unshare, CLONE_NEWUSER));
    if (!strcmp(what, "kexec-load"))
        return report(syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(what, "clone-newns")) {
        long pid = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, 0);
        if (pid == 0)
            _exit(0);
        if (pid > 0)
            waitpid((pid_t)pid, NULL, 0);
        return report(pid);
    }
    if (!strcmp(what, "clone3"))
        return report(syscall(SYS_clone3, NULL, 0));
    if (!strcmp(what, "getpid"))
        return report(syscall(SYS_getpid));
    if (!strcmp(what, "write-exe") && argc > 2)
        return report(open(argv[2], O_WRONLY));
    fprintf(stderr, "probe: unknown check %s\n", what);
    return 2;
}
