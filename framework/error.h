/* Thread-local error detail behind mc_last_error(). */
#ifndef MEMCAST_FRAMEWORK_ERROR_H
#define MEMCAST_FRAMEWORK_ERROR_H

#include <stdarg.h>

/* Records the detail sentence for this thread and returns err, so that callers can write
 * `return mc_error_set(MC_EINVAL, "topic '%s': ...", topic);`. */
int mc_error_set(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mc_error_vset(int err, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void mc_error_clear(void);

#endif
