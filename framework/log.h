/* Logging: levels, origin prefix and the application's sink (mc_set_log_handler). */
#ifndef MEMCAST_FRAMEWORK_LOG_H
#define MEMCAST_FRAMEWORK_LOG_H

#include <stdarg.h>

#include <memcast/memcast.h>

/* Emits message at level when level <= threshold. origin is "memcast" or a plugin name.
 * errno is preserved. */
void mc_log_at(mc_log_level threshold, mc_log_level level, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void mc_vlog_at(mc_log_level threshold, mc_log_level level, const char *origin, const char *fmt,
                va_list ap) __attribute__((format(printf, 4, 0)));

/* Threshold for messages that belong to no context: MEMCAST_LOG_LEVEL, else warn. */
mc_log_level mc_log_default_threshold(void);

#endif
