/*
 * Registration on the framework's side: local endpoints are announced through every
 * plugin with the registration role; endpoints of other contexts reported back by those
 * plugins are validated, kept, and matched with local endpoints over the first data
 * transport (in configured order) that can reach them and that both sides have.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "error.h"

/* ---- identity: which endpoints can share memory --------------------------------------- */

static void fnv1a(uint64_t *h, const void *data, size_t size)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < size; i++) {
        *h ^= p[i];
        *h *= 0x100000001b3ull;
    }
}

static void hash_file(uint64_t h[2], const char *path)
{
    char buf[128] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n > 0) {
            fnv1a(&h[0], buf, (size_t)n);
            fnv1a(&h[1], buf, (size_t)n);
        }
    }
}

static void hash_inode(uint64_t h[2], const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        uint64_t ids[2] = {(uint64_t)st.st_dev, (uint64_t)st.st_ino};
        fnv1a(&h[0], ids, sizeof(ids));
        fnv1a(&h[1], ids, sizeof(ids));
    }
}

/* Two contexts can use shared memory when they run on the same boot of the same machine,
 * in the same IPC namespace, see the same /dev/shm, and (a deliberate choice) share a
 * network namespace: processes in different network namespaces are treated as different
 * hosts, which is what containers usually are and what the multi-host tests rely on. */
void mc_host_token_compute(uint8_t token[MC_HOST_TOKEN_SIZE])
{
    uint64_t h[2] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    hash_file(h, "/proc/sys/kernel/random/boot_id");
    hash_inode(h, "/proc/self/ns/ipc");
    hash_inode(h, "/proc/self/ns/net");
    hash_inode(h, "/dev/shm");
    memcpy(token, h, MC_HOST_TOKEN_SIZE);
}

/* ---- describing local endpoints -------------------------------------------------------- */

typedef struct registration_buf {
    mc_registration reg;
    mc_locator locators[MC_LOCATORS_MAX];
    mc_source_loss sources[MC_REG_SOURCES_MAX];
} registration_buf;

static void locator_fill(mc_locator *loc, const mc_binding *b, bool is_publisher)
{
    const mc_transport *tp = b->transport;
    memset(loc, 0, sizeof(*loc));
    snprintf(loc->transport, sizeof(loc->transport), "%s", tp->desc->name);
    int n = 0;
    if (is_publisher && MC_HAS(tp->ops, mc_plugin_ops, pub_locator))
        n = tp->ops->pub_locator(b->handle, loc->data, sizeof(loc->data));
    else if (!is_publisher && MC_HAS(tp->ops, mc_plugin_ops, sub_locator))
        n = tp->ops->sub_locator(b->handle, loc->data, sizeof(loc->data));
    loc->size = (n > 0 && (size_t)n <= sizeof(loc->data)) ? (uint32_t)n : 0;
}

/* Only transports that reach beyond this context are worth telling others about. */
static bool binding_reaches_out(const mc_binding *b)
{
    return (b->transport->desc->scopes & (MC_SCOPE_HOST | MC_SCOPE_NETWORK)) != 0;
}

static void registration_build(const mc_context *ctx, mc_endpoint *ep, registration_buf *out)
{
    mc_registration *r = &out->reg;
    memset(out, 0, sizeof(*out));
    r->struct_size = sizeof(*r);
    r->kind = ep->is_publisher ? MC_KIND_PUBLISHER : MC_KIND_SUBSCRIBER;
    r->id = ep->id;
    r->topic = ep->topic;
    r->type = ep->type;
    r->encoding = ep->encoding;
    memcpy(r->host_token, ctx->host_token, sizeof(r->host_token));
    r->pid = (int32_t)getpid();
    for (size_t i = 0; i < ep->binding_count && r->locator_count < MC_LOCATORS_MAX; i++)
        if (binding_reaches_out(&ep->bindings[i]))
            locator_fill(&out->locators[r->locator_count++], &ep->bindings[i], ep->is_publisher);
    r->locators = out->locators;
    r->messages = atomic_load(&ep->messages);
    for (int d = 0; d < MC_DROP_REASONS; d++)
        r->dropped += atomic_load(&ep->dropped[d]);
    if (!ep->is_publisher)
        r->source_count = (uint32_t)mc_subscriber_worst_sources((mc_subscriber *)ep, out->sources,
                                                                MC_REG_SOURCES_MAX);
    r->sources = out->sources;
}

static bool is_registrar(const mc_transport *tp)
{
    return (tp->desc->roles & MC_ROLE_REGISTRATION) != 0;
}

/* ---- remote endpoints ----------------------------------------------------------------- */

static bool text_ok(const char *text, size_t max)
{
    if (text == NULL)
        return false;
    size_t len = strnlen(text, max + 1);
    if (len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e)
            return false;
    return true;
}

/* A registration plugin is code we loaded, but what it reports came off the network:
 * every field is checked before it is used. */
static const char *registration_problem(const mc_registration *reg)
{
    if (reg == NULL || reg->struct_size < MC_REGISTRATION_SIZE_1_0)
        return "registration struct too small";
    if (reg->struct_size >= sizeof(mc_registration) &&
        (reg->source_count > MC_REG_SOURCES_MAX || (reg->source_count > 0 && !reg->sources)))
        return "too many sources";
    if (reg->kind != MC_KIND_PUBLISHER && reg->kind != MC_KIND_SUBSCRIBER)
        return "unknown endpoint kind";
    if (mc_topic_validate(reg->topic) != 0)
        return "invalid topic";
    if (!text_ok(reg->type, 255) || !text_ok(reg->encoding, 255))
        return "invalid type or encoding";
    if (reg->locator_count > MC_LOCATORS_MAX || (reg->locator_count > 0 && !reg->locators))
        return "too many locators";
    for (uint32_t i = 0; i < reg->locator_count; i++) {
        const mc_locator *loc = &reg->locators[i];
        if (loc->size > MC_LOCATOR_MAX ||
            strnlen(loc->transport, sizeof(loc->transport)) == sizeof(loc->transport))
            return "malformed locator";
    }
    return NULL;
}

static mc_remote *remote_find(mc_context *ctx, const mc_endpoint_id *id)
{
    for (mc_remote *r = ctx->remotes; r != NULL; r = r->next)
        if (memcmp(&r->id, id, sizeof(*id)) == 0)
            return r;
    return NULL;
}

static void remote_free(mc_remote *r)
{
    free(r->type);
    free(r->encoding);
    free(r);
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The counters a registration reports, kept for `memcast ls`. */
static void remote_counters(mc_remote *r, const mc_registration *reg)
{
    r->seen_ns = monotonic_ns();
    r->messages = reg->messages;
    r->dropped = reg->dropped;
    r->source_count = reg->struct_size >= sizeof(mc_registration) ? reg->source_count : 0;
    if (r->source_count > 0)
        memcpy(r->sources, reg->sources, r->source_count * sizeof(mc_source_loss));
}

static mc_remote *remote_new(const mc_registration *reg, const mc_transport *reporter)
{
    mc_remote *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->type = strdup(reg->type);
    r->encoding = strdup(reg->encoding);
    if (r->type == NULL || r->encoding == NULL) {
        remote_free(r);
        return NULL;
    }
    r->id = reg->id;
    r->kind = (mc_endpoint_kind)reg->kind;
    snprintf(r->topic, sizeof(r->topic), "%s", reg->topic);
    memcpy(r->host_token, reg->host_token, sizeof(r->host_token));
    r->pid = reg->pid;
    r->locator_count = reg->locator_count;
    memcpy(r->locators, reg->locators, reg->locator_count * sizeof(mc_locator));
    r->reported_by = reporter;
    return r;
}

/* True when reg still describes r as matched: anything else means unmatch and rematch. */
static bool remote_same(const mc_remote *r, const mc_registration *reg)
{
    return r->kind == (mc_endpoint_kind)reg->kind && strcmp(r->topic, reg->topic) == 0 &&
           strcmp(r->type, reg->type) == 0 && strcmp(r->encoding, reg->encoding) == 0 &&
           r->locator_count == reg->locator_count &&
           memcmp(r->locators, reg->locators, reg->locator_count * sizeof(mc_locator)) == 0;
}

static const mc_locator *locator_for(const mc_remote *r, const mc_transport *tp)
{
    for (uint32_t i = 0; i < r->locator_count; i++)
        if (strcmp(r->locators[i].transport, tp->desc->name) == 0)
            return &r->locators[i];
    return NULL;
}

static uint32_t scope_of(const mc_context *ctx, const mc_remote *r)
{
    return memcmp(ctx->host_token, r->host_token, MC_HOST_TOKEN_SIZE) == 0 ? MC_SCOPE_HOST
                                                                           : MC_SCOPE_NETWORK;
}

/* The first transport, in configured order, that bridges the scope and that both ends
 * are on; the remote end says so by carrying a locator for it. */
static mc_transport *pick_remote_transport(mc_context *ctx, mc_endpoint *ep, const mc_remote *r)
{
    uint32_t scope = scope_of(ctx, r);
    for (size_t i = 0; i < ctx->transport_count; i++) {
        mc_transport *tp = ctx->transports[i];
        if ((tp->desc->roles & MC_ROLE_DATA) && (tp->desc->scopes & scope) &&
            mc_binding_for(ep, tp) && locator_for(r, tp))
            return tp;
    }
    return NULL;
}

static mc_peer peer_of_remote(const mc_context *ctx, const mc_remote *r, const mc_transport *tp)
{
    const mc_locator *loc = locator_for(r, tp);
    return (mc_peer){.struct_size = sizeof(mc_peer),
                     .scope = scope_of(ctx, r),
                     .id = r->id,
                     .topic = r->topic,
                     .locator = loc && loc->size ? loc->data : NULL,
                     .locator_size = loc ? loc->size : 0,
                     .pid = r->pid};
}

static int connect_remote(mc_context *ctx, mc_endpoint *ep, const mc_remote *r, mc_transport *tp)
{
    mc_binding *b = mc_binding_for(ep, tp);
    mc_peer peer = peer_of_remote(ctx, r, tp);
    int rc = 0;
    if (ep->is_publisher)
        rc = tp->ops->pub_connect(b->handle, &peer);
    else if (MC_HAS(tp->ops, mc_plugin_ops, sub_connect))
        rc = tp->ops->sub_connect(b->handle, &peer);
    if (rc == 0)
        atomic_fetch_add(&b->connected, 1);
    return rc;
}

static void disconnect_remote(mc_endpoint *ep, const mc_match *m)
{
    mc_transport *tp = m->transport;
    mc_binding *b = mc_binding_for(ep, tp);
    if (ep->is_publisher)
        tp->ops->pub_disconnect(b->handle, &m->peer);
    else if (MC_HAS(tp->ops, mc_plugin_ops, sub_disconnect))
        tp->ops->sub_disconnect(b->handle, &m->peer);
    atomic_fetch_sub(&b->connected, 1);
}

static bool meets(mc_context *ctx, const mc_endpoint *ep, const mc_remote *r)
{
    bool opposite = ep->is_publisher ? r->kind == MC_KIND_SUBSCRIBER : r->kind == MC_KIND_PUBLISHER;
    return opposite && strcmp(ep->topic, r->topic) == 0 &&
           mc_labels_compatible(ctx, ep->topic, ep->type, ep->encoding, r->type, r->encoding);
}

static void match_local_remote(mc_context *ctx, mc_endpoint *ep, mc_remote *r)
{
    if (!meets(ctx, ep, r))
        return;
    mc_transport *tp = pick_remote_transport(ctx, ep, r);
    if (tp == NULL) {
        mc_ctx_log(ctx, MC_LOG_INFO,
                   "topic '%s': no data transport reaches the %s in pid %d (%s scope)", ep->topic,
                   r->kind == MC_KIND_PUBLISHER ? "publisher" : "subscriber", (int)r->pid,
                   scope_of(ctx, r) == MC_SCOPE_HOST ? "host" : "network");
        return;
    }
    mc_error_clear();
    if (connect_remote(ctx, ep, r, tp) != 0) {
        mc_ctx_log(ctx, MC_LOG_ERROR, "topic '%s': transport '%s' cannot connect to pid %d: %s",
                   ep->topic, tp->desc->name, (int)r->pid, mc_last_error());
        return;
    }
    mc_match m = {.peer = r->id, .remote = r, .transport = tp};
    if (mc_match_add(ep, &m) != 0) {
        disconnect_remote(ep, &m);
        return;
    }
    mc_fire_event(ep, MC_EVENT_MATCHED, &r->id, tp);
    pthread_cond_broadcast(&ctx->matched_changed);
}

/* The remote went away: every local endpoint matched with it is told. */
static void unmatch_remote_everywhere(mc_context *ctx, mc_remote *r)
{
    for (mc_endpoint *ep = ctx->endpoints; ep != NULL; ep = ep->next) {
        for (size_t i = 0; i < ep->match_count; i++) {
            if (ep->matches[i].remote != r)
                continue;
            mc_match m = ep->matches[i];
            disconnect_remote(ep, &m);
            mc_match_remove(ep, &m.peer);
            mc_fire_event(ep, MC_EVENT_UNMATCHED, &m.peer, m.transport);
            break;
        }
    }
    pthread_cond_broadcast(&ctx->matched_changed);
}

static void remote_unlink(mc_context *ctx, mc_remote *r)
{
    for (mc_remote **link = &ctx->remotes; *link != NULL; link = &(*link)->next) {
        if (*link == r) {
            *link = r->next;
            return;
        }
    }
}

static void remote_drop(mc_context *ctx, mc_remote *r)
{
    unmatch_remote_everywhere(ctx, r);
    remote_unlink(ctx, r);
    remote_free(r);
}

static void remote_add(mc_context *ctx, const mc_registration *reg, const mc_transport *tp)
{
    mc_remote *r = remote_new(reg, tp);
    if (r == NULL) {
        mc_ctx_log(ctx, MC_LOG_ERROR, "topic '%s': out of memory recording a remote endpoint",
                   reg->topic);
        return;
    }
    remote_counters(r, reg);
    r->next = ctx->remotes;
    ctx->remotes = r;
    for (mc_endpoint *ep = ctx->endpoints; ep != NULL; ep = ep->next)
        match_local_remote(ctx, ep, r);
}

void mc_host_remote(mc_host_ctx *hctx, const mc_registration *reg, bool alive)
{
    mc_transport *tp = (mc_transport *)hctx;
    mc_context *ctx = tp->ctx;
    if (ctx == NULL)
        return; /* a plugin being checked, not serving a context */
    const char *problem = registration_problem(reg);
    if (problem != NULL) {
        mc_ctx_log(ctx, MC_LOG_DEBUG, "registration from '%s' ignored: %s", tp->desc->name,
                   problem);
        return;
    }
    if (reg->id.context_hi == ctx->id_hi && reg->id.context_lo == ctx->id_lo)
        return;
    pthread_mutex_lock(&ctx->lock);
    mc_remote *r = remote_find(ctx, &reg->id);
    if (r != NULL && (!alive || !remote_same(r, reg))) {
        remote_drop(ctx, r);
        r = NULL;
    }
    if (r != NULL) {
        remote_counters(r, reg);
    } else if (alive) {
        remote_add(ctx, reg, tp);
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* ---- local endpoints coming and going ------------------------------------------------- */

void mc_registry_endpoint_added(mc_context *ctx, mc_endpoint *ep)
{
    for (mc_remote *r = ctx->remotes; r != NULL; r = r->next)
        match_local_remote(ctx, ep, r);
    registration_buf buf;
    registration_build(ctx, ep, &buf);
    for (size_t i = 0; i < ctx->transport_count; i++) {
        mc_transport *tp = ctx->transports[i];
        if (is_registrar(tp) && tp->ops->reg_announce(tp->instance, &buf.reg) != 0)
            mc_ctx_log(ctx, MC_LOG_WARN, "topic '%s': '%s' could not announce the endpoint: %s",
                       ep->topic, tp->desc->name, mc_last_error());
    }
}

void mc_registry_endpoint_removed(mc_context *ctx, mc_endpoint *ep)
{
    registration_buf buf;
    registration_build(ctx, ep, &buf);
    for (size_t i = 0; i < ctx->transport_count; i++) {
        mc_transport *tp = ctx->transports[i];
        if (is_registrar(tp))
            tp->ops->reg_withdraw(tp->instance, &buf.reg);
    }
}

void mc_registry_unmatch_remote(mc_context *ctx, mc_endpoint *ep, const mc_match *m)
{
    disconnect_remote(ep, m);
}

void mc_host_local_endpoints(mc_host_ctx *hctx, void (*fn)(void *user, const mc_registration *reg),
                             void *user)
{
    mc_transport *tp = (mc_transport *)hctx;
    mc_context *ctx = tp->ctx;
    if (ctx == NULL || fn == NULL)
        return;
    pthread_mutex_lock(&ctx->lock);
    for (mc_endpoint *ep = ctx->endpoints; ep != NULL; ep = ep->next) {
        registration_buf buf;
        registration_build(ctx, ep, &buf);
        fn(user, &buf.reg);
    }
    pthread_mutex_unlock(&ctx->lock);
}

void mc_registry_visit(mc_context *ctx, void (*fn)(void *user, const mc_remote *remote), void *user)
{
    pthread_mutex_lock(&ctx->lock);
    for (mc_remote *r = ctx->remotes; r != NULL; r = r->next)
        fn(user, r);
    pthread_mutex_unlock(&ctx->lock);
}

void mc_registry_free(mc_context *ctx)
{
    while (ctx->remotes != NULL) {
        mc_remote *r = ctx->remotes;
        ctx->remotes = r->next;
        remote_free(r);
    }
}
