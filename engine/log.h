/* log.h: leveled logging to stderr, one line per call (stdio locks each call, so lines from
 * different workers never interleave). Never log secrets: no header values, no bodies. */
#ifndef RP_LOG_H
#define RP_LOG_H

enum { RP_LOG_DEBUG = 0, RP_LOG_INFO = 1, RP_LOG_WARN = 2, RP_LOG_ERROR = 3 };

/* Lines below `level` are dropped. Set once at start-up, before workers run. */
void rp_log_set_level(int level);
int rp_log_enabled(int level);

void rp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (rp_log_enabled(RP_LOG_DEBUG))                                                          \
            rp_log(RP_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define log_info(...) rp_log(RP_LOG_INFO, __VA_ARGS__)
#define log_warn(...) rp_log(RP_LOG_WARN, __VA_ARGS__)
#define log_error(...) rp_log(RP_LOG_ERROR, __VA_ARGS__)

#endif /* RP_LOG_H */
