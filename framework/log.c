/* Logging with levels and an application sink; the default sink writes to stderr. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static mc_log_fn sink_fn;
static void *sink_user;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

MC_API void mc_set_log_handler(mc_log_fn fn, void *user)
{
    pthread_mutex_lock(&sink_lock);
    sink_fn = fn;
    sink_user = user;
    pthread_mutex_unlock(&sink_lock);
}

mc_log_level mc_log_default_threshold(void)
{
    const char *env = getenv("MEMCAST_LOG_LEVEL");
    if (env != NULL) {
        for (int i = MC_LOG_ERROR; i <= MC_LOG_DEBUG; i++)
            if (strcmp(env, level_names[i]) == 0)
                return (mc_log_level)i;
    }
    return MC_LOG_WARN;
}

void mc_vlog_at(mc_log_level threshold, mc_log_level level, const char *origin, const char *fmt,
                va_list ap)
{
    if (level > threshold)
        return;
    int saved_errno = errno;
    char message[1024];
    vsnprintf(message, sizeof(message), fmt, ap);

    /* The sink is read under the lock so that a handler being replaced is never called
     * after mc_set_log_handler returned. */
    pthread_mutex_lock(&sink_lock);
    if (sink_fn != NULL)
        sink_fn(sink_user, level, origin, message);
    else
        fprintf(stderr, "memcast %s [%s] %s\n", level_names[level], origin, message);
    pthread_mutex_unlock(&sink_lock);
    errno = saved_errno;
}

void mc_log_at(mc_log_level threshold, mc_log_level level, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc_vlog_at(threshold, level, origin, fmt, ap);
    va_end(ap);
}
