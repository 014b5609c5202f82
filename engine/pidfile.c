/* pidfile.c: the daemon's pid file (pidfile.h). The file is replaced by a rename, never
 * rewritten in place, so a reader (ringproxy -s, a second start, an init system) never reads
 * half a pid; whoever wrote it last owns it, and only its owner removes it. */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pidfile_read(const char *path, pid_t *pid)
{
    char buf[32], *end;
    ssize_t n;
    long v;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    errno = 0;
    v = strtol(buf, &end, 10);
    if (end == buf || errno || v < 1 || v > 0x7fffffff || (*end && strcmp(end, "\n")))
        return -EBADMSG;
    *pid = (pid_t)v;
    return 0;
}

bool pidfile_is_ringproxy(pid_t pid)
{
    char path[64], comm[32] = "";
    FILE *f;

    if (pid <= 0 || (kill(pid, 0) && errno != EPERM))
        return false;
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return true; /* no /proc here: kill() is all there is to go by */
    if (!fgets(comm, sizeof(comm), f))
        comm[0] = 0;
    fclose(f);
    return !strncmp(comm, "ringproxy", 9);
}

int pidfile_write(const char *path)
{
    char tmp[4096], line[24];
    int fd, n, rc = 0;

    n = snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    errno = 0;
    if (fchmod(fd, 0644) || write(fd, line, (size_t)n) != n) /* 0644 whatever the umask */
        rc = errno ? -errno : -EIO;
    if (close(fd) && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

void pidfile_remove(const char *path)
{
    pid_t pid;

    if (!pidfile_read(path, &pid) && pid == getpid())
        unlink(path);
}

int pidfile_signal(const char *path, int sig, char *err, size_t errlen)
{
    pid_t pid;
    int rc = pidfile_read(path, &pid);

    if (rc == -EBADMSG) {
        snprintf(err, errlen, "%s holds no pid", path);
        return rc;
    }
    if (rc) {
        snprintf(err, errlen, "cannot read %s: %s (is ringproxy running?)", path, strerror(-rc));
        return rc;
    }
    if (!pidfile_is_ringproxy(pid)) {
        snprintf(err, errlen,
                 "%s names pid %d, which is not a running ringproxy (a stale pid file)", path,
                 (int)pid);
        return -ESRCH;
    }
    if (kill(pid, sig)) {
        rc = -errno;
        snprintf(err, errlen, "cannot signal pid %d: %s", (int)pid, strerror(errno));
        return rc;
    }
    return 0;
}
