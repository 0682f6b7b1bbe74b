/* Error codes, their names and the thread-local detail behind mc_last_error(). */
#include <stdio.h>

#include "error.h"

#include <memcast/memcast.h>

static _Thread_local char last_error[1024];

int mc_error_vset(int err, const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    return err;
}

int mc_error_set(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc_error_vset(err, fmt, ap);
    va_end(ap);
    return err;
}

void mc_error_clear(void)
{
    last_error[0] = '\0';
}

MC_API const char *mc_last_error(void)
{
    return last_error;
}

MC_API const char *mc_strerror(int err)
{
    switch (err) {
    case MC_OK:
        return "success";
    case MC_EINVAL:
        return "invalid argument";
    case MC_ENOMEM:
        return "out of memory";
    case MC_ENOSYS:
        return "not implemented";
    case MC_ENOTSUP:
        return "not supported by the transport";
    case MC_EAGAIN:
        return "try again";
    case MC_ETIMEDOUT:
        return "timed out";
    case MC_EMSGSIZE:
        return "message too large";
    case MC_ENOENT:
        return "not found";
    case MC_EEXIST:
        return "already exists";
    case MC_EBUSY:
        return "busy";
    case MC_ECLOSED:
        return "closed";
    case MC_ENOSPC:
        return "no space left";
    case MC_EABI:
        return "plugin ABI mismatch";
    case MC_ECONFIG:
        return "invalid configuration";
    case MC_EPLUGIN:
        return "plugin failed to load";
    case MC_ETRANSPORT:
        return "transport failure";
    case MC_EINTERNAL:
        return "internal error";
    default:
        return "unknown error";
    }
}

MC_API const char *mc_version(void)
{
    return MC_VERSION_STRING;
}
