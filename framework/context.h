/*
 * Framework internals shared by context.c (context, transports, host services, matching)
 * and endpoint.c (publishers, subscribers, delivery). Not installed.
 */
#ifndef MEMCAST_FRAMEWORK_CONTEXT_H
#define MEMCAST_FRAMEWORK_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <memcast/plugin.h>

#include "config.h"
#include "loader.h"

#define MC_MAX_TRANSPORTS  MC_STATS_TRANSPORTS
#define MC_MAX_SEARCH_DIRS 32

/* A loaded and initialised plugin instance. Its mc_host_ctx is the transport itself. */
typedef struct mc_transport {
    mc_context *ctx;
    mc_loaded_plugin loaded;
    const mc_plugin_descriptor *desc;
    const mc_plugin_ops *ops;
    mc_plugin *instance;
    mc_plugin_limits limits;
    mc_config_section *section;
    mc_config_key *schema_copy; /* the plugin's schema re-laid at our stride, when it differs */
    mc_host host;
} mc_transport;

/* An endpoint's presence on one transport. Its address is the cookie the plugin gets. */
typedef struct mc_binding {
    struct mc_endpoint *endpoint;
    mc_transport *transport;
    void *handle; /* mc_plugin_pub or mc_plugin_sub */
    atomic_size_t connected;
    atomic_uint_least64_t messages;
    atomic_uint_least64_t bytes;
    atomic_uint_least64_t dropped;
} mc_binding;

/* An endpoint of another context, as registration reported it. */
typedef struct mc_remote {
    mc_endpoint_id id;
    mc_endpoint_kind kind;
    char topic[MC_TOPIC_MAX + 1];
    char *type;
    char *encoding;
    uint8_t host_token[MC_HOST_TOKEN_SIZE];
    int32_t pid;
    uint32_t locator_count;
    mc_locator locators[MC_LOCATORS_MAX];
    uint64_t messages;
    uint64_t dropped;
    uint32_t source_count; /* a subscriber's publishers with the most losses */
    mc_source_loss sources[MC_REG_SOURCES_MAX];
    int64_t seen_ns; /* CLOCK_MONOTONIC of the last report */
    const struct mc_transport *reported_by;
    struct mc_remote *next;
} mc_remote;

/* One matched peer of an endpoint: local when it lives in this context, else remote. */
typedef struct mc_match {
    mc_endpoint_id peer;
    struct mc_endpoint *local;
    mc_remote *remote;
    mc_transport *transport;
} mc_match;

typedef struct mc_endpoint {
    mc_context *ctx;
    bool is_publisher;
    mc_endpoint_id id;
    char topic[MC_TOPIC_MAX + 1];
    char *type;
    char *encoding;
    mc_event_fn on_event;
    void *user;
    mc_binding bindings[MC_MAX_TRANSPORTS];
    size_t binding_count;
    mc_match *matches; /* guarded by ctx->lock */
    size_t match_count;
    size_t match_capacity;
    atomic_uint_least64_t messages;
    atomic_uint_least64_t bytes;
    atomic_uint_least64_t dropped[MC_DROP_REASONS];
    struct mc_endpoint *next; /* in ctx->endpoints */
} mc_endpoint;

struct mc_context {
    mc_config *config;
    mc_config_section *framework;
    mc_log_level log_level;
    const char *domain;
    uint64_t id_hi;
    uint64_t id_lo;
    pthread_mutex_t lock; /* recursive: endpoints, matches; events fire under it */
    pthread_cond_t matched_changed;
    mc_transport *transports[MC_MAX_TRANSPORTS];
    size_t transport_count;
    mc_endpoint *endpoints;
    mc_remote *remotes;
    uint64_t next_serial;
    uint8_t host_token[MC_HOST_TOKEN_SIZE];
};

/* Logging on behalf of the framework within a context. */
void mc_ctx_log(const mc_context *ctx, mc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The directories searched for plugin name, in order: the plugin section's `path`,
 * MEMCAST_PLUGIN_PATH entries, [framework] plugin_path entries, the installed directory.
 * Fills dirs[] with pointers into storage; returns how many. name may be NULL: then only
 * the directories shared by every plugin are returned. */
size_t mc_plugin_search_dirs(const mc_config *cfg, const mc_config_section *framework,
                             const char *name, char storage[][4096], const char *dirs[],
                             size_t max);

/* Does for one plugin file what mc_context_open does: load, validate, bind its config
 * section (from cfg, may be NULL) and init, then tears it down. 0, or the first failure's
 * code with mc_last_error() saying why. On success or after a successful load, *info
 * holds the descriptor facts (name, path; desc is NOT valid after return, copy what you
 * need through the out-params). */
typedef struct mc_plugin_report {
    char name[MC_PLUGIN_NAME_MAX + 1];
    char path[4096];
    char version[64];
    char description[160];
    unsigned abi_major;
    unsigned abi_minor;
    uint32_t roles;
    uint32_t scopes;
    uint32_t caps;
    uint64_t max_message_size;
    bool loaded; /* loaded and validated */
    bool initialised;
} mc_plugin_report;
int mc_plugin_check_path(const mc_config *cfg, const char *path, mc_plugin_report *report);

/* Endpoint internals (endpoint.c). */
void mc_endpoint_free_all(mc_context *ctx);
void mc_deliver(mc_host_ctx *hctx, void *sub_cookie, const mc_sample *sample);
void mc_dropped(mc_host_ctx *hctx, void *cookie, mc_drop_reason reason, uint64_t count);
/* Fills out with up to max of sub's publishers with the most losses (lost and overrun),
 * most first; returns how many. */
size_t mc_subscriber_worst_sources(mc_subscriber *sub, mc_source_loss *out, size_t max);
void mc_dropped_from(mc_host_ctx *hctx, void *sub_cookie, const mc_endpoint_id *publisher,
                     mc_drop_reason reason, uint64_t count);

/* True while this thread runs a memcast callback (message or event). */
bool mc_in_callback(void);

/* Shared by endpoint.c and registry.c; all but the first need ctx->lock. */
mc_binding *mc_binding_for(mc_endpoint *ep, const mc_transport *tp);
bool mc_labels_compatible(const mc_context *ctx, const char *topic, const char *type_a,
                          const char *encoding_a, const char *type_b, const char *encoding_b);
int mc_match_add(mc_endpoint *ep, const mc_match *match);
void mc_match_remove(mc_endpoint *ep, const mc_endpoint_id *peer);
void mc_fire_event(mc_endpoint *ep, mc_event_kind kind, const mc_endpoint_id *peer,
                   const mc_transport *tp);

/* Registration (registry.c). Called with ctx->lock held. */
void mc_registry_endpoint_added(mc_context *ctx, mc_endpoint *ep);   /* match remotes, announce */
void mc_registry_endpoint_removed(mc_context *ctx, mc_endpoint *ep); /* withdraw, unmatch */
void mc_registry_unmatch_remote(mc_context *ctx, mc_endpoint *ep, const mc_match *m);
void mc_registry_free(mc_context *ctx);
/* Host services for registration plugins. */
void mc_host_remote(mc_host_ctx *hctx, const mc_registration *reg, bool alive);
void mc_host_local_endpoints(mc_host_ctx *hctx, void (*fn)(void *user, const mc_registration *reg),
                             void *user);
/* Computes the token that says "same host and IPC namespace" (see registry.c). */
void mc_host_token_compute(uint8_t token[MC_HOST_TOKEN_SIZE]);

/* For `memcast ls`: calls fn for every remote endpoint known, under the registry lock. */
void mc_registry_visit(mc_context *ctx, void (*fn)(void *user, const mc_remote *remote),
                       void *user);

#endif
