/*
 * The context: configuration, the transports it loaded, the host services handed to
 * each of them, and the registry of endpoints with their matches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "error.h"
#include "log.h"

/* ---- logging --------------------------------------------------------------------------- */

void mc_ctx_log(const mc_context *ctx, mc_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mc_vlog_at(ctx ? ctx->log_level : mc_log_default_threshold(), level, "memcast", fmt, ap);
    va_end(ap);
}

/* ---- host services --------------------------------------------------------------------- */

static mc_transport *transport_of(mc_host_ctx *hctx)
{
    return (mc_transport *)hctx;
}

static mc_log_level transport_log_threshold(const mc_transport *tp)
{
    return tp->ctx ? tp->ctx->log_level : mc_log_default_threshold();
}

static void host_vlog(mc_host_ctx *hctx, mc_log_level level, const char *fmt, va_list ap)
{
    mc_transport *tp = transport_of(hctx);
    if (level < MC_LOG_ERROR || level > MC_LOG_DEBUG)
        level = MC_LOG_ERROR;
    mc_vlog_at(transport_log_threshold(tp), level, tp->desc->name, fmt, ap);
}

static void host_log(mc_host_ctx *hctx, mc_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host_vlog(hctx, level, fmt, ap);
    va_end(ap);
}

static void host_set_error(mc_host_ctx *hctx, const char *fmt, ...)
{
    mc_transport *tp = transport_of(hctx);
    char detail[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    mc_error_set(0, "%s: %s", tp->desc->name, detail);
}

static int host_config_bool(mc_host_ctx *hctx, const char *key, bool *out)
{
    return mc_config_get_bool(transport_of(hctx)->section, key, out);
}

static int host_config_int(mc_host_ctx *hctx, const char *key, int64_t *out)
{
    return mc_config_get_int(transport_of(hctx)->section, key, out);
}

static int host_config_size(mc_host_ctx *hctx, const char *key, uint64_t *out)
{
    return mc_config_get_size(transport_of(hctx)->section, key, out);
}

static int host_config_duration_ms(mc_host_ctx *hctx, const char *key, int64_t *out)
{
    return mc_config_get_duration_ms(transport_of(hctx)->section, key, out);
}

static int host_config_enum(mc_host_ctx *hctx, const char *key, int *index)
{
    return mc_config_get_enum(transport_of(hctx)->section, key, index);
}

static int host_config_string(mc_host_ctx *hctx, const char *key, const char **out)
{
    return mc_config_get_string(transport_of(hctx)->section, key, out);
}

static int64_t host_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void host_table_fill(mc_transport *tp, const char *domain, uint64_t hi, uint64_t lo)
{
    mc_host *h = &tp->host;
    memset(h, 0, sizeof(*h));
    h->struct_size = sizeof(*h);
    h->abi_major = MC_PLUGIN_ABI_MAJOR;
    h->abi_minor = MC_PLUGIN_ABI_MINOR;
    h->ctx = (mc_host_ctx *)tp;
    h->log = host_log;
    h->vlog = host_vlog;
    h->set_error = host_set_error;
    h->config_bool = host_config_bool;
    h->config_int = host_config_int;
    h->config_size = host_config_size;
    h->config_duration_ms = host_config_duration_ms;
    h->config_enum = host_config_enum;
    h->config_string = host_config_string;
    h->now_ns = host_now_ns;
    h->deliver = mc_deliver;
    h->dropped = mc_dropped;
    h->dropped_from = mc_dropped_from;
    h->domain = domain;
    h->context_hi = hi;
    h->context_lo = lo;
    h->remote = mc_host_remote;
    h->local_endpoints = mc_host_local_endpoints;
    if (tp->ctx != NULL)
        memcpy(h->host_token, tp->ctx->host_token, sizeof(h->host_token));
    h->pid = (int32_t)getpid();
}

/* ---- plugin search path and instantiation ------------------------------------------------ */

static size_t add_dir(const char *dir, size_t len, char storage[][4096], const char *dirs[],
                      size_t count, size_t max)
{
    if (len == 0 || len >= 4096 || count >= max)
        return count;
    memcpy(storage[count], dir, len);
    storage[count][len] = '\0';
    for (size_t i = 0; i < count; i++)
        if (strcmp(dirs[i], storage[count]) == 0)
            return count;
    dirs[count] = storage[count];
    return count + 1;
}

static size_t add_dir_list(const char *list, char storage[][4096], const char *dirs[], size_t count,
                           size_t max)
{
    while (list != NULL && *list != '\0') {
        const char *end = strchr(list, ':');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        count = add_dir(list, len, storage, dirs, count, max);
        list = end ? end + 1 : NULL;
    }
    return count;
}

size_t mc_plugin_search_dirs(const mc_config *cfg, const mc_config_section *framework,
                             const char *name, char storage[][4096], const char *dirs[], size_t max)
{
    size_t count = 0;
    const char *own = (cfg && name) ? mc_config_raw(cfg, name, "path") : NULL;
    const char *framework_path = NULL;
    if (framework != NULL)
        mc_config_get_string(framework, "plugin_path", &framework_path);
    count = add_dir_list(own, storage, dirs, count, max);
    count = add_dir_list(getenv("MEMCAST_PLUGIN_PATH"), storage, dirs, count, max);
    count = add_dir_list(framework_path, storage, dirs, count, max);
    const char *installed = mc_loader_default_dir();
    return add_dir(installed, strlen(installed), storage, dirs, count, max);
}

/* The plugin's schema as an array of this build's mc_config_key: a plugin built against a
 * newer minor may use a longer entry, so entries are copied at its stride. */
static const mc_config_key *schema_of(mc_transport *tp)
{
    const mc_plugin_descriptor *d = tp->desc;
    if (d->config == NULL || d->config_key_size == sizeof(mc_config_key))
        return d->config;
    size_t count = 0;
    const char *base = (const char *)d->config;
    while (((const mc_config_key *)(base + count * d->config_key_size))->name != NULL)
        count++; /* terminated: mc_config_schema_check bounded it at load */
    tp->schema_copy = calloc(count + 1, sizeof(mc_config_key));
    if (tp->schema_copy == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++)
        memcpy(&tp->schema_copy[i], base + i * d->config_key_size, sizeof(mc_config_key));
    return tp->schema_copy;
}

/* Binds the plugin's section, fills the host table and runs init. On failure everything
 * this function acquired is released and the detail names the plugin. */
static int transport_start(mc_transport *tp, const mc_config *cfg, const char *domain, uint64_t hi,
                           uint64_t lo)
{
    const mc_config_key *schema = schema_of(tp);
    if (schema == NULL && tp->desc->config != NULL)
        return mc_error_set(MC_ENOMEM, "plugin '%s': out of memory copying its schema",
                            tp->desc->name);
    int rc = mc_config_section_bind(cfg, tp->desc->name, schema, &tp->section);
    if (rc != 0)
        return rc;
    host_table_fill(tp, domain, hi, lo);
    mc_error_clear();
    rc = tp->ops->init(&tp->host, &tp->instance);
    if (rc != 0 || tp->instance == NULL) {
        char why[700];
        snprintf(why, sizeof(why), "%s", mc_last_error());
        mc_config_section_free(tp->section);
        tp->section = NULL;
        /* A value the schema accepts but the plugin cannot use is a configuration error like
         * any other: fatal, not a plugin silently skipped. */
        if (rc == MC_ECONFIG)
            return mc_error_set(MC_ECONFIG, "%s: [%s] %s",
                                mc_config_file(cfg) ? mc_config_file(cfg) : "configuration",
                                tp->desc->name, why);
        return mc_error_set(MC_EPLUGIN, "plugin '%s' (%s): init failed: %s%s%s", tp->desc->name,
                            tp->loaded.path, mc_strerror(rc ? rc : MC_EINTERNAL),
                            why[0] ? ": " : "", why);
    }
    tp->limits.struct_size = sizeof(tp->limits);
    rc = tp->ops->limits(tp->instance, &tp->limits);
    if (rc != 0) {
        tp->ops->fini(tp->instance);
        tp->instance = NULL;
        mc_config_section_free(tp->section);
        tp->section = NULL;
        return mc_error_set(MC_EPLUGIN, "plugin '%s': limits() failed: %s", tp->desc->name,
                            mc_strerror(rc));
    }
    return 0;
}

static void transport_stop(mc_transport *tp)
{
    if (tp == NULL)
        return;
    if (tp->instance != NULL)
        tp->ops->fini(tp->instance);
    mc_config_section_free(tp->section);
    free(tp->schema_copy);
    mc_loader_close(&tp->loaded);
    free(tp);
}

static mc_transport *transport_new(mc_context *ctx)
{
    mc_transport *tp = calloc(1, sizeof(*tp));
    if (tp != NULL)
        tp->ctx = ctx;
    return tp;
}

static void transport_adopt_descriptor(mc_transport *tp)
{
    tp->desc = tp->loaded.desc;
    tp->ops = tp->desc->ops;
}

static void report_fill(mc_plugin_report *r, const mc_transport *tp)
{
    const mc_plugin_descriptor *d = tp->desc;
    snprintf(r->name, sizeof(r->name), "%s", d->name);
    snprintf(r->version, sizeof(r->version), "%s", d->version);
    snprintf(r->description, sizeof(r->description), "%s", d->description);
    r->abi_major = d->abi_major;
    r->abi_minor = d->abi_minor;
    r->roles = d->roles;
    r->scopes = d->scopes;
    r->caps = d->caps;
    r->loaded = true;
}

int mc_plugin_check_path(const mc_config *cfg, const char *path, mc_plugin_report *report)
{
    memset(report, 0, sizeof(*report));
    snprintf(report->path, sizeof(report->path), "%s", path);
    mc_transport *tp = transport_new(NULL);
    if (tp == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory checking plugin %s", path);
    int rc = mc_loader_open_path(path, NULL, &tp->loaded);
    if (rc != 0) {
        free(tp);
        return rc;
    }
    transport_adopt_descriptor(tp);
    report_fill(report, tp);
    mc_config *empty = NULL;
    if (cfg == NULL && (rc = mc_config_load(NULL, &empty)) != 0) {
        transport_stop(tp);
        return rc;
    }
    rc = transport_start(tp, cfg ? cfg : empty, "memcast-check", 0, 0);
    if (rc == 0) {
        report->initialised = true;
        report->max_message_size = tp->limits.max_message_size;
    }
    char why[1024];
    snprintf(why, sizeof(why), "%s", mc_last_error());
    transport_stop(tp);
    mc_config_free(empty);
    if (rc != 0)
        mc_error_set(rc, "%s", why);
    return rc;
}

/* ---- context ------------------------------------------------------------------------------ */

static int random_id(uint64_t *hi, uint64_t *lo)
{
    uint64_t words[2];
    size_t got = 0;
    while (got < sizeof(words)) {
        ssize_t n = getrandom((char *)words + got, sizeof(words) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return mc_error_set(MC_EINTERNAL, "getrandom failed: %s", strerror(errno));
        got += (size_t)n;
    }
    *hi = words[0];
    *lo = words[1];
    return 0;
}

/* Splits "a, b c" into names; returns how many were stored. */
static size_t split_plugin_list(const char *list, char names[][MC_PLUGIN_NAME_MAX + 1], size_t max)
{
    size_t count = 0;
    while (*list != '\0' && count < max) {
        list += strspn(list, ", \t");
        size_t len = strcspn(list, ", \t");
        if (len == 0)
            break;
        if (len <= MC_PLUGIN_NAME_MAX) {
            memcpy(names[count], list, len);
            names[count][len] = '\0';
            count++;
        }
        list += len;
    }
    return count;
}

static bool plugin_enabled(const mc_config *cfg, const char *name)
{
    const char *text = mc_config_raw(cfg, name, "enabled");
    bool enabled = true;
    if (text != NULL && mc_config_parse_bool(text, &enabled) != 0)
        return true; /* reported with file:line when the section is bound */
    return enabled;
}

/* Loads, validates and starts one plugin. Config errors are fatal (a typo must not
 * silently drop a transport); load and init failures are logged and skipped. */
static int context_add_plugin(mc_context *ctx, const char *name)
{
    char storage[MC_MAX_SEARCH_DIRS][4096];
    const char *dirs[MC_MAX_SEARCH_DIRS];
    size_t ndirs =
        mc_plugin_search_dirs(ctx->config, ctx->framework, name, storage, dirs, MC_MAX_SEARCH_DIRS);
    mc_transport *tp = transport_new(ctx);
    if (tp == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory loading plugin '%s'", name);
    int rc = mc_loader_open(name, dirs, ndirs, &tp->loaded);
    if (rc == 0) {
        transport_adopt_descriptor(tp);
        rc = transport_start(tp, ctx->config, ctx->domain, ctx->id_hi, ctx->id_lo);
    }
    if (rc == MC_ECONFIG) {
        transport_stop(tp);
        return rc;
    }
    if (rc != 0) {
        mc_ctx_log(ctx, MC_LOG_ERROR, "%s; skipping it, the other plugins keep working",
                   mc_last_error());
        transport_stop(tp);
        return 0;
    }
    if (ctx->transport_count == MC_MAX_TRANSPORTS) {
        mc_ctx_log(ctx, MC_LOG_ERROR, "plugin '%s' skipped: at most %d transports per context",
                   name, MC_MAX_TRANSPORTS);
        transport_stop(tp);
        return 0;
    }
    mc_ctx_log(ctx, MC_LOG_INFO, "plugin '%s' %s loaded from %s", name, tp->desc->version,
               tp->loaded.path);
    ctx->transports[ctx->transport_count++] = tp;
    return 0;
}

static bool listed(char names[][MC_PLUGIN_NAME_MAX + 1], size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static void warn_unused_sections(const mc_context *ctx, char names[][MC_PLUGIN_NAME_MAX + 1],
                                 size_t count)
{
    for (size_t i = 0; i < mc_config_section_count(ctx->config); i++) {
        const char *section = mc_config_section_name(ctx->config, i);
        if (strcmp(section, "framework") != 0 && !listed(names, count, section))
            mc_ctx_log(ctx, MC_LOG_WARN,
                       "%s: section [%s] configures no plugin in [framework] plugins; ignored",
                       mc_config_file(ctx->config), section);
    }
}

static int context_load_plugins(mc_context *ctx)
{
    const char *list = NULL;
    mc_config_get_string(ctx->framework, "plugins", &list);
    char names[MC_MAX_TRANSPORTS * 2][MC_PLUGIN_NAME_MAX + 1];
    size_t count = split_plugin_list(list ? list : "", names, MC_MAX_TRANSPORTS * 2);
    warn_unused_sections(ctx, names, count);
    for (size_t i = 0; i < count; i++) {
        if (!plugin_enabled(ctx->config, names[i]))
            continue;
        int rc = context_add_plugin(ctx, names[i]);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < ctx->transport_count; i++)
        if (ctx->transports[i]->desc->roles & MC_ROLE_DATA)
            return 0;
    return mc_error_set(MC_EPLUGIN,
                        "no data transport could be loaded from [framework] plugins = '%s' "
                        "(see the errors logged above; 'memcast plugins' lists what is found)",
                        list ? list : "");
}

static int context_read_framework(mc_context *ctx)
{
    int rc = mc_config_section_bind(ctx->config, "framework", mc_framework_schema, &ctx->framework);
    if (rc != 0)
        return rc;
    int level = MC_LOG_WARN;
    mc_config_get_enum(ctx->framework, "log_level", &level);
    ctx->log_level = (mc_log_level)level;
    mc_config_get_string(ctx->framework, "domain", &ctx->domain);
    return 0;
}

static void context_free(mc_context *ctx)
{
    for (size_t i = ctx->transport_count; i > 0; i--)
        transport_stop(ctx->transports[i - 1]);
    /* after the transports: until their threads are joined they may still report */
    mc_registry_free(ctx);
    mc_config_section_free(ctx->framework);
    mc_config_free(ctx->config);
    pthread_cond_destroy(&ctx->matched_changed);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

static int context_init_sync(mc_context *ctx)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&ctx->matched_changed, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return mc_error_set(MC_ENOMEM, "cannot create a condition variable");
    pthread_mutexattr_t mattr;
    pthread_mutexattr_init(&mattr);
    pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&ctx->lock, &mattr);
    pthread_mutexattr_destroy(&mattr);
    return 0;
}

MC_API int mc_context_open(const char *config_path, mc_context **out)
{
    mc_error_clear();
    if (out == NULL)
        return mc_error_set(MC_EINVAL, "mc_context_open: out is NULL");
    *out = NULL;
    mc_context *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory opening a context");
    ctx->log_level = mc_log_default_threshold();
    if (context_init_sync(ctx) != 0) {
        free(ctx);
        return MC_ENOMEM;
    }
    mc_host_token_compute(ctx->host_token);
    int rc = random_id(&ctx->id_hi, &ctx->id_lo);
    if (rc == 0)
        rc = mc_config_load(config_path, &ctx->config);
    if (rc == 0)
        rc = context_read_framework(ctx);
    if (rc == 0)
        rc = context_load_plugins(ctx);
    if (rc != 0) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", mc_last_error());
        context_free(ctx);
        return mc_error_set(rc, "%s", why);
    }
    *out = ctx;
    return 0;
}

MC_API int mc_context_close(mc_context *ctx)
{
    if (ctx == NULL)
        return 0;
    if (mc_in_callback())
        return mc_error_set(MC_EBUSY, "mc_context_close: not allowed inside a memcast callback");
    mc_endpoint_free_all(ctx);
    context_free(ctx);
    return 0;
}

MC_API void mc_context_id(const mc_context *ctx, uint64_t *hi, uint64_t *lo)
{
    if (ctx == NULL)
        return;
    if (hi != NULL)
        *hi = ctx->id_hi;
    if (lo != NULL)
        *lo = ctx->id_lo;
}
