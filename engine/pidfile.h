/* pidfile.h: the daemon's pid file (pid_file = "..."): written atomically once the daemon
 * serves, removed at exit only while it still names this process, read by `ringproxy -s` to
 * signal the daemon and by a start that must not run a second one. Daemon only
 * (engine/main.c); every function may be called from any thread, none keeps state.
 */
#ifndef RP_PIDFILE_H
#define RP_PIDFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Reads the pid in `path` (decimal, an optional newline). Returns 0 and *pid; -errno when the
 * file cannot be read; -EBADMSG when it holds anything else. */
int pidfile_read(const char *path, pid_t *pid);

/* Whether pid is a running ringproxy: it exists (kill(pid, 0) succeeds or says EPERM) and,
 * where /proc can tell, its command name begins with "ringproxy", so a pid the system has
 * since given to another program does not count. */
bool pidfile_is_ringproxy(pid_t pid);

/* Writes getpid() to `path`: into PATH.PID.tmp (mode 0644), renamed over path, so a reader
 * sees the old content or the new, never a part. Returns 0 or -errno (nothing is left
 * behind). */
int pidfile_write(const char *path);

/* Removes `path` if it holds getpid() (a newer process may own it by now). */
void pidfile_remove(const char *path);

/* For `ringproxy -s`: sends sig to the ringproxy named by `path`. Returns 0, or -errno with
 * a message for the operator in err[0..errlen) (no pid file, a stale one, kill failed). */
int pidfile_signal(const char *path, int sig, char *err, size_t errlen);

#endif /* RP_PIDFILE_H */
