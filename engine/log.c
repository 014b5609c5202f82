/* log.c: the engine's stderr logger. A timestamp and a level tag per line; the level is a
 * process-wide setting written once before workers start (the only global, and read-only
 * while the engine runs). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int min_level = RP_LOG_INFO;

void rp_log_set_level(int level)
{
    min_level = level;
}

int rp_log_enabled(int level)
{
    return level >= min_level;
}

void rp_log(int level, const char *fmt, ...)
{
    static const char *const tags[] = {"debug", "info", "warn", "error"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ringproxy[%s] ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, tags[level & 3]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
