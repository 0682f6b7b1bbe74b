/*
 * memcast transport plugin ABI.
 *
 * This is the only header a transport author needs (doc/plugin-guide.md walks through
 * it). A plugin is a shared object named mc_<name>.so that exports exactly one symbol,
 * memcast_plugin_entry, and never links against libmemcast: everything it needs from the
 * framework arrives in the mc_host table passed to init().
 *
 * Compatibility rules:
 *  - MC_PLUGIN_ABI_MAJOR must match exactly; the minor may differ either way.
 *  - Every table starts with its size. Members are only ever appended; an op added after
 *    1.0 is used only when the table is long enough to hold it (MC_HAS), so an older
 *    plugin keeps loading in a newer framework, and the other way round.
 *  - The framework validates everything in the descriptor at run time and reports what
 *    is wrong; a plugin that fails to load or init is skipped, the others keep working.
 *
 * Threading contract for plugins:
 *  - init/fini and endpoint open/close are called with no framework lock held, never
 *    concurrently for the same plugin instance.
 *  - pub_connect/pub_disconnect/sub_connect/sub_disconnect are called with the context's
 *    registry lock held: do not wait there for your own delivery threads.
 *  - send/loan/commit may be called concurrently for different publishers; the framework
 *    serialises them per publisher and holds that publisher's lock while they run.
 *  - host->deliver must be called from the plugin's own threads, never from inside send()
 *    or commit(): the user's callback may create endpoints (taking the registry lock)
 *    while an event callback holding that lock publishes, and delivering under the
 *    publisher's lock would deadlock the two. deliver returns when the user's callback has.
 */
#ifndef MEMCAST_PLUGIN_H
#define MEMCAST_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memcast/memcast.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MC_PLUGIN_MAGIC       0x4c50434du /* "MCPL" in memory on little-endian hosts */
#define MC_PLUGIN_ENTRY       memcast_plugin_entry
#define MC_PLUGIN_ENTRY_NAME  "memcast_plugin_entry"
#define MC_PLUGIN_FILE_PREFIX "mc_"
#define MC_PLUGIN_NAME_MAX    31

#if defined(__GNUC__)
#define MC_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define MC_PLUGIN_EXPORT
#endif

/* True when table (whose first member is uint32_t struct_size) is long enough to hold
 * member and that member is set. Use it for anything added after ABI 1.0. */
#define MC_HAS(table, type, member)                                                                \
    ((table) != NULL &&                                                                            \
     (table)->struct_size >= offsetof(type, member) + sizeof(((type *)0)->member) &&               \
     (table)->member != NULL)

/* ---- configuration schema --------------------------------------------------------------- */

typedef enum mc_config_type {
    MC_CFG_BOOL = 1,     /* true/false, yes/no, on/off, 1/0 */
    MC_CFG_INT = 2,      /* decimal integer, within [min, max] */
    MC_CFG_SIZE = 3,     /* bytes with optional K, M, G suffix (powers of 1024) */
    MC_CFG_DURATION = 4, /* ms or s suffix ("250ms", "2s"); bare numbers are ms */
    MC_CFG_ENUM = 5,     /* one of enum_values */
    MC_CFG_STRING = 6,   /* any text */
} mc_config_type;

/* One key of a plugin's section. The schema is an array ended by an entry whose name is
 * NULL. Defaults are text, parsed by the same parser as the file, so a bad default is
 * caught when the plugin loads. min/max bound INT, SIZE (bytes) and DURATION (ms); both
 * 0 means unbounded. */
typedef struct mc_config_key {
    const char *name;
    mc_config_type type;
    const char *default_value;
    const char *doc;
    int64_t min;
    int64_t max;
    const char *const *enum_values; /* NULL-terminated; ENUM only */
} mc_config_key;

/* Keys the framework reserves in every plugin section (not part of a plugin's schema):
 *   path     directory to look for this plugin in first
 *   enabled  false skips the plugin without error                                       */

/* ---- what flows through a transport ------------------------------------------------------ */

/* Where an endpoint lives relative to another, and which of those a transport can bridge. */
#define MC_SCOPE_PROCESS (1u << 0) /* endpoints of the same context */
#define MC_SCOPE_HOST    (1u << 1) /* other processes on the same host and IPC namespace */
#define MC_SCOPE_NETWORK (1u << 2) /* other hosts */

/* Plugin roles. */
#define MC_ROLE_DATA         (1u << 0) /* carries samples */
#define MC_ROLE_REGISTRATION (1u << 1) /* carries who publishes/subscribes what */

/* Capabilities: what the conformance suite holds a plugin to. */
#define MC_CAP_ORDERED       (1u << 0) /* samples of one publisher arrive in order */
#define MC_CAP_RELIABLE      (1u << 1) /* can deliver without loss when asked */
#define MC_CAP_ZERO_COPY     (1u << 2) /* loan/commit write straight into transport memory */
#define MC_CAP_MULTI_PROCESS (1u << 3)
#define MC_CAP_THREAD_SAFE   (1u << 4) /* send may run concurrently on different publishers */

/* A sample as the framework hands it to send(), and as a plugin hands it to deliver().
 * data is borrowed for the duration of the call. */
typedef struct mc_sample {
    uint32_t struct_size;
    uint32_t flags; /* reserved, 0 */
    const void *data;
    uint64_t size;
    mc_endpoint_id publisher;
    uint64_t seq;         /* 1, 2, ... per publisher; the same on every transport */
    int64_t send_time_ns; /* CLOCK_REALTIME at publish */
} mc_sample;

/* An endpoint as the framework describes it to a plugin when opening it. */
typedef struct mc_endpoint_info {
    uint32_t struct_size;
    uint32_t flags; /* reserved, 0 */
    mc_endpoint_id id;
    const char *topic;    /* validated by the framework: safe in file names */
    const char *type;     /* "" when not given */
    const char *encoding; /* "" when not given */
    const char *domain;   /* isolation name: scope every shared name by it */
} mc_endpoint_info;

/* The other side of a match, as given to connect(). */
typedef struct mc_peer {
    uint32_t struct_size;
    uint32_t scope; /* one MC_SCOPE_* bit: where the peer lives */
    mc_endpoint_id id;
    const char *topic;
    const void *locator; /* how to reach the peer on this transport, or NULL */
    size_t locator_size;
    int32_t pid;
} mc_peer;

/* ---- registration: who publishes and subscribes what, where ---------------------------- */

#define MC_LOCATOR_MAX     96 /* bytes of one transport's connection parameters */
#define MC_LOCATORS_MAX    8  /* transports one endpoint can be reached by */
#define MC_HOST_TOKEN_SIZE 16

/* How to reach an endpoint on one transport (for shm: the publisher's memfile). */
typedef struct mc_locator {
    char transport[MC_PLUGIN_NAME_MAX + 1];
    uint32_t size;
    uint8_t data[MC_LOCATOR_MAX];
} mc_locator;

typedef enum mc_endpoint_kind {
    MC_KIND_PUBLISHER = 1,
    MC_KIND_SUBSCRIBER = 2,
} mc_endpoint_kind;

#define MC_REG_SOURCES_MAX 4 /* publishers a subscriber's registration names losses of */

/* A subscriber's losses of one publisher's samples (lost and overrun), as registration
 * carries them. */
typedef struct mc_source_loss {
    mc_endpoint_id publisher;
    uint64_t lost;
} mc_source_loss;

/* One endpoint as registration carries it between processes. Strings are NUL-terminated
 * and borrowed for the duration of the call they are passed to. */
typedef struct mc_registration {
    uint32_t struct_size;
    uint32_t kind; /* mc_endpoint_kind */
    mc_endpoint_id id;
    const char *topic;
    const char *type;
    const char *encoding;
    uint8_t host_token[MC_HOST_TOKEN_SIZE]; /* equal tokens: same host and IPC namespace */
    int32_t pid;
    uint32_t locator_count;
    const mc_locator *locators;
    uint64_t messages; /* counters at the time of the announcement, for `memcast ls` */
    uint64_t dropped;
    /* ABI 1.1 (read only when struct_size reaches them): a subscriber's publishers with
     * the most losses, most first, at most MC_REG_SOURCES_MAX (`memcast ls`). */
    uint32_t source_count;
    const mc_source_loss *sources;
} mc_registration;

/* The size of an ABI 1.0 mc_registration: what every registration reaches. */
#define MC_REGISTRATION_SIZE_1_0 offsetof(mc_registration, source_count)

/* ---- host services (framework -> plugin) ----------------------------------------------- */

typedef struct mc_host_ctx mc_host_ctx; /* opaque: one per loaded plugin instance */

typedef struct mc_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    mc_host_ctx *ctx; /* pass back to every call below */

    /* Logging: the framework prefixes the plugin's name and applies the level filter. */
    void (*log)(mc_host_ctx *ctx, mc_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    void (*vlog)(mc_host_ctx *ctx, mc_log_level level, const char *fmt, va_list ap);
    /* Sets the detail that mc_last_error() shows the application for a failing op. */
    void (*set_error)(mc_host_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

    /* Typed getters for the plugin's own section. A key the file does not set yields its
     * schema default. Return 0, or MC_ENOENT for a key not in the schema, MC_EINVAL for a
     * key of another type. Strings stay valid until fini. */
    int (*config_bool)(mc_host_ctx *ctx, const char *key, bool *out);
    int (*config_int)(mc_host_ctx *ctx, const char *key, int64_t *out);
    int (*config_size)(mc_host_ctx *ctx, const char *key, uint64_t *out);
    int (*config_duration_ms)(mc_host_ctx *ctx, const char *key, int64_t *out);
    int (*config_enum)(mc_host_ctx *ctx, const char *key, int *index);
    int (*config_string)(mc_host_ctx *ctx, const char *key, const char **out);

    /* Nanoseconds of CLOCK_MONOTONIC. */
    int64_t (*now_ns)(void);

    /* Hands a received sample to the subscriber whose framework cookie was given to
     * sub_open. The framework validates, de-duplicates and runs the user's callback before
     * returning; sample->data need only stay valid until then. */
    void (*deliver)(mc_host_ctx *ctx, void *sub_cookie, const mc_sample *sample);

    /* Reports samples lost for an endpoint (publisher or subscriber cookie). */
    void (*dropped)(mc_host_ctx *ctx, void *cookie, mc_drop_reason reason, uint64_t count);

    /* Context facts. */
    const char *domain;
    uint64_t context_hi;
    uint64_t context_lo;

    /* Registration role. remote() reports an endpoint of another context (alive = true when
     * it appears or changes, false when it is withdrawn, says goodbye or expires); the
     * framework validates it, matches it and connects data transports. local_endpoints()
     * calls fn for every endpoint of this context, with fresh counters, for periodic or
     * requested re-announcements. Neither may be called with a plugin lock held that
     * reg_announce or reg_withdraw also take: both take the context's registry lock. */
    void (*remote)(mc_host_ctx *ctx, const mc_registration *reg, bool alive);
    void (*local_endpoints)(mc_host_ctx *ctx, void (*fn)(void *user, const mc_registration *reg),
                            void *user);
    uint8_t host_token[MC_HOST_TOKEN_SIZE];
    int32_t pid;

    /* ABI 1.1 (use when MC_HAS(host, mc_host, dropped_from)): like dropped, for a
     * subscriber, naming the publisher whose samples were lost, so that they are counted
     * per publisher too (mc_subscriber_sources, `memcast ls`). Counted in the subscriber's
     * totals like dropped: report each loss through one of the two, not both. */
    void (*dropped_from)(mc_host_ctx *ctx, void *sub_cookie, const mc_endpoint_id *publisher,
                         mc_drop_reason reason, uint64_t count);
} mc_host;

/* ---- plugin operations (plugin -> framework) ------------------------------------------- */

typedef struct mc_plugin mc_plugin;         /* a plugin instance, defined by the plugin */
typedef struct mc_plugin_pub mc_plugin_pub; /* a publisher on that transport */
typedef struct mc_plugin_sub mc_plugin_sub; /* a subscriber on that transport */

/* Facts a plugin instance reports after init. */
typedef struct mc_plugin_limits {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t max_message_size; /* largest payload send() accepts */
} mc_plugin_limits;

typedef struct mc_plugin_ops {
    uint32_t struct_size;
    uint32_t reserved;

    /* Required. Create an instance; host stays valid until fini returns. */
    int (*init)(const mc_host *host, mc_plugin **out);
    /* Required. Join every thread, free every resource, remove every shared name. Called
     * only after every endpoint of the instance was closed. */
    void (*fini)(mc_plugin *plugin);
    /* Required. */
    int (*limits)(mc_plugin *plugin, mc_plugin_limits *out);

    /* Required for MC_ROLE_DATA. cookie identifies the endpoint in host callbacks. */
    int (*pub_open)(mc_plugin *plugin, const mc_endpoint_info *info, void *cookie,
                    mc_plugin_pub **out);
    void (*pub_close)(mc_plugin_pub *pub);
    int (*sub_open)(mc_plugin *plugin, const mc_endpoint_info *info, void *cookie,
                    mc_plugin_sub **out);
    /* After it returns, deliver() is never again called with this subscriber's cookie. */
    void (*sub_close)(mc_plugin_sub *sub);

    /* Required for MC_ROLE_DATA. The framework matched this publisher with a subscriber
     * that this transport is to carry samples to (and later unmatched it). */
    int (*pub_connect)(mc_plugin_pub *pub, const mc_peer *sub);
    void (*pub_disconnect)(mc_plugin_pub *pub, const mc_endpoint_id *sub);

    /* Required for MC_ROLE_DATA. Copies the sample to every connected subscriber. */
    int (*send)(mc_plugin_pub *pub, const mc_sample *sample);

    /* Optional (NULL): the subscriber side of a match, for transports that must attach to
     * a publisher's resources (shared memory). */
    int (*sub_connect)(mc_plugin_sub *sub, const mc_peer *pub);
    void (*sub_disconnect)(mc_plugin_sub *sub, const mc_endpoint_id *pub);

    /* Optional (NULL), for MC_CAP_ZERO_COPY: lend size bytes of transport memory, then
     * send what was written (sample->data is the loaned pointer) or give it back. */
    int (*loan)(mc_plugin_pub *pub, size_t size, void **buf);
    int (*commit)(mc_plugin_pub *pub, void *buf, const mc_sample *sample);
    void (*loan_discard)(mc_plugin_pub *pub, void *buf);

    /* Optional (NULL): the locator a remote peer passes to connect() to reach this
     * endpoint. Writes at most size (MC_LOCATOR_MAX) bytes; returns the length or a
     * negative mc_err. */
    int (*pub_locator)(mc_plugin_pub *pub, void *buf, size_t size);
    int (*sub_locator)(mc_plugin_sub *sub, void *buf, size_t size);

    /* Required for MC_ROLE_REGISTRATION, called under the registry lock: tell other
     * contexts at once that a local endpoint appeared or changed, or went away. */
    int (*reg_announce)(mc_plugin *plugin, const mc_registration *reg);
    void (*reg_withdraw)(mc_plugin *plugin, const mc_registration *reg);

    /* Optional (NULL), registration role: ask every other context to announce all its
     * endpoints again now, with fresh counters (used by `memcast ls` for rates). */
    void (*reg_refresh)(mc_plugin *plugin);
} mc_plugin_ops;

/* ---- the descriptor ------------------------------------------------------------------------ */

typedef struct mc_plugin_descriptor {
    uint32_t magic;     /* MC_PLUGIN_MAGIC */
    uint16_t abi_major; /* MC_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;
    uint32_t struct_size;     /* sizeof(mc_plugin_descriptor) */
    uint32_t config_key_size; /* sizeof(mc_config_key) */
    const char *name;         /* [a-z][a-z0-9_]*, at most 31; the file is mc_<name>.so */
    const char *version;      /* the plugin's own version */
    const char *description;  /* one line */
    uint32_t roles;           /* MC_ROLE_* */
    uint32_t scopes;          /* MC_SCOPE_* this transport can bridge */
    uint32_t caps;            /* MC_CAP_* */
    uint32_t reserved;
    const mc_config_key *config; /* the plugin's section schema; may be NULL */
    const mc_plugin_ops *ops;
} mc_plugin_descriptor;

/* The one exported symbol. It must be pure: no allocation, no threads, no I/O, no
 * environment reads; it may return NULL when host_abi_major is one it cannot serve. */
typedef const mc_plugin_descriptor *(*mc_plugin_entry_fn)(uint32_t host_abi_major,
                                                          uint32_t host_abi_minor);

#define MC_PLUGIN_DEFINE(descriptor)                                                               \
    MC_PLUGIN_EXPORT const mc_plugin_descriptor *MC_PLUGIN_ENTRY(uint32_t host_abi_major,          \
                                                                 uint32_t host_abi_minor);         \
    MC_PLUGIN_EXPORT const mc_plugin_descriptor *MC_PLUGIN_ENTRY(uint32_t host_abi_major,          \
                                                                 uint32_t host_abi_minor)          \
    {                                                                                              \
        (void)host_abi_major;                                                                      \
        (void)host_abi_minor;                                                                      \
        return &(descriptor);                                                                      \
    }

/* Fills the header of a descriptor. */
#define MC_PLUGIN_DESCRIPTOR_HEADER                                                                \
    .magic = MC_PLUGIN_MAGIC, .abi_major = MC_PLUGIN_ABI_MAJOR, .abi_minor = MC_PLUGIN_ABI_MINOR,  \
    .struct_size = sizeof(mc_plugin_descriptor), .config_key_size = sizeof(mc_config_key)

#ifdef __cplusplus
}
#endif

#endif /* MEMCAST_PLUGIN_H */
