/*
 * Publishers and subscribers: creation on every data transport, matching within the
 * context, matched/unmatched events, publishing (copy and loan), delivery to callbacks or
 * the pull queue, de-duplication of samples that arrive twice, and statistics.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "error.h"

#define MC_LABEL_MAX           255
#define MC_DEDUP_WINDOW        64
#define MC_DEFAULT_QUEUE_DEPTH 64

/* One publisher a subscriber heard of: its last sequence numbers, for de-duplication, and
 * what came from it (mc_subscriber_sources). */
typedef struct dedup_entry {
    mc_endpoint_id publisher;
    uint64_t highest;
    uint64_t window; /* bit i set: highest - i was seen; 0: nothing received yet */
    uint64_t messages;
    uint64_t dropped[MC_DROP_REASONS];
} dedup_entry;

struct mc_msg {
    const void *data;
    size_t size;
    mc_endpoint_id publisher;
    uint64_t seq;
    int64_t send_time_ns;
    const char *transport; /* the plugin's name; points at transport_copy once queued */
    char transport_copy[MC_PLUGIN_NAME_MAX + 1];
    unsigned char payload[]; /* owned copy, for messages taken in pull mode */
};

struct mc_publisher {
    mc_endpoint ep;            /* first: an mc_endpoint* is an mc_publisher* */
    pthread_mutex_t send_lock; /* recursive: an event callback fired inside a send may publish */
    uint64_t seq;
    void *loan_buf;
    size_t loan_size;
    mc_binding *loan_binding; /* NULL: heap loan */
};

struct mc_subscriber {
    mc_endpoint ep;
    mc_msg_fn on_message;
    pthread_mutex_t callback_lock; /* recursive: one callback at a time, re-entry allowed */
    pthread_mutex_t state_lock;    /* dedup, queue, closing, message counters */
    pthread_cond_t queue_changed;
    bool closing;
    dedup_entry *dedup;
    size_t dedup_count;
    size_t dedup_capacity;
    mc_msg **queue;
    size_t queue_depth;
    size_t queue_head;
    size_t queue_count;
};

/* ---- callback guard: which endpoints this thread is inside a callback of ---------------- */

#define MC_CALLBACK_NESTING 16
static _Thread_local const mc_endpoint *callback_stack[MC_CALLBACK_NESTING];
static _Thread_local size_t callback_depth;

static void callback_enter(const mc_endpoint *ep)
{
    if (callback_depth < MC_CALLBACK_NESTING)
        callback_stack[callback_depth] = ep;
    callback_depth++;
}

/* Event callbacks run under the registry lock; a plugin's close may wait for one of its
 * threads that is itself waiting for that lock, so endpoints are not destroyed there. */
static _Thread_local size_t event_depth;

static int refuse_inside_event(const mc_endpoint *ep)
{
    if (event_depth == 0)
        return 0;
    return mc_error_set(MC_EBUSY,
                        "topic '%s': endpoints cannot be destroyed inside an event callback "
                        "(it runs under the registry lock); destroy it after the callback",
                        ep->topic);
}

static void callback_leave(void)
{
    callback_depth--;
}

bool mc_in_callback(void)
{
    return callback_depth > 0;
}

static bool in_callback_of(const mc_endpoint *ep)
{
    size_t depth = callback_depth < MC_CALLBACK_NESTING ? callback_depth : MC_CALLBACK_NESTING;
    for (size_t i = 0; i < depth; i++)
        if (callback_stack[i] == ep)
            return true;
    return false;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool id_equal(const mc_endpoint_id *a, const mc_endpoint_id *b)
{
    return a->context_hi == b->context_hi && a->context_lo == b->context_lo &&
           a->serial == b->serial;
}

MC_API char *mc_endpoint_id_format(const mc_endpoint_id *id, char *buf, size_t size)
{
    if (buf == NULL || size == 0)
        return buf;
    if (id == NULL) {
        snprintf(buf, size, "(null)");
        return buf;
    }
    snprintf(buf, size, "%016llx%016llx.%llu", (unsigned long long)id->context_hi,
             (unsigned long long)id->context_lo, (unsigned long long)id->serial);
    return buf;
}

static bool topic_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/';
}

static int topic_segment_check(const char *topic, const char *seg, size_t len)
{
    if (len == 0)
        return mc_error_set(MC_EINVAL,
                            "topic '%s': empty segment (a leading, trailing or "
                            "double '/')",
                            topic);
    if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
        return mc_error_set(MC_EINVAL, "topic '%s': '.' and '..' are not allowed as segments",
                            topic);
    return 0;
}

MC_API int mc_topic_validate(const char *topic)
{
    if (topic == NULL)
        return mc_error_set(MC_EINVAL, "topic is NULL");
    size_t len = strnlen(topic, MC_TOPIC_MAX + 1);
    if (len == 0)
        return mc_error_set(MC_EINVAL, "topic is empty");
    if (len > MC_TOPIC_MAX)
        return mc_error_set(MC_EINVAL, "topic '%.40s...' is longer than %d bytes", topic,
                            MC_TOPIC_MAX);
    for (size_t i = 0; i < len; i++)
        if (!topic_char_ok(topic[i]))
            return mc_error_set(MC_EINVAL,
                                "topic '%s': character 0x%02x at offset %zu is not allowed "
                                "(use A-Z a-z 0-9 _ . - /)",
                                topic, (unsigned char)topic[i], i);
    const char *seg = topic;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t seg_len = slash ? (size_t)(slash - seg) : strlen(seg);
        int rc = topic_segment_check(topic, seg, seg_len);
        if (rc != 0)
            return rc;
        if (slash == NULL)
            return 0;
        seg = slash + 1;
    }
}

static int label_copy(const char *what, const char *text, char **out)
{
    if (text == NULL)
        text = "";
    if (strnlen(text, MC_LABEL_MAX + 1) > MC_LABEL_MAX)
        return mc_error_set(MC_EINVAL, "%s '%.40s...' is longer than %d bytes", what, text,
                            MC_LABEL_MAX);
    *out = strdup(text);
    return *out ? 0 : mc_error_set(MC_ENOMEM, "out of memory copying the %s", what);
}

/* ---- events ------------------------------------------------------------------------------ */

void mc_fire_event(mc_endpoint *ep, mc_event_kind kind, const mc_endpoint_id *peer,
                   const mc_transport *tp)
{
    if (ep->on_event == NULL)
        return;
    mc_event event = {.kind = kind,
                      .peer = *peer,
                      .transport = tp ? tp->desc->name : "",
                      .matched = ep->match_count};
    callback_enter(ep);
    event_depth++;
    ep->on_event(ep->user, &event);
    event_depth--;
    callback_leave();
}

/* ---- matching ---------------------------------------------------------------------------- */

mc_binding *mc_binding_for(mc_endpoint *ep, const mc_transport *tp)
{
    for (size_t i = 0; i < ep->binding_count; i++)
        if (ep->bindings[i].transport == tp)
            return &ep->bindings[i];
    return NULL;
}

/* Empty labels match anything; two set labels must be equal. */
bool mc_labels_compatible(const mc_context *ctx, const char *topic, const char *type_a,
                          const char *encoding_a, const char *type_b, const char *encoding_b)
{
    bool type_ok = !type_a[0] || !type_b[0] || strcmp(type_a, type_b) == 0;
    bool encoding_ok = !encoding_a[0] || !encoding_b[0] || strcmp(encoding_a, encoding_b) == 0;
    if (type_ok && encoding_ok)
        return true;
    mc_ctx_log(ctx, MC_LOG_WARN,
               "topic '%s': not matching type '%s'/encoding '%s' with type '%s'/encoding '%s'",
               topic, type_a, encoding_a, type_b, encoding_b);
    return false;
}

static bool labels_compatible(const mc_endpoint *a, const mc_endpoint *b)
{
    return mc_labels_compatible(a->ctx, a->topic, a->type, a->encoding, b->type, b->encoding);
}

/* The first transport, in configured order, that bridges endpoints of one context and on
 * which both are open. */
static mc_transport *pick_local_transport(mc_context *ctx, mc_endpoint *a, mc_endpoint *b)
{
    for (size_t i = 0; i < ctx->transport_count; i++) {
        mc_transport *tp = ctx->transports[i];
        if ((tp->desc->scopes & MC_SCOPE_PROCESS) && mc_binding_for(a, tp) && mc_binding_for(b, tp))
            return tp;
    }
    return NULL;
}

int mc_match_add(mc_endpoint *ep, const mc_match *match)
{
    if (ep->match_count == ep->match_capacity) {
        size_t capacity = ep->match_capacity ? ep->match_capacity * 2 : 4;
        mc_match *grown = realloc(ep->matches, capacity * sizeof(*grown));
        if (grown == NULL)
            return MC_ENOMEM;
        ep->matches = grown;
        ep->match_capacity = capacity;
    }
    ep->matches[ep->match_count++] = *match;
    return 0;
}

void mc_match_remove(mc_endpoint *ep, const mc_endpoint_id *peer)
{
    for (size_t i = 0; i < ep->match_count; i++) {
        if (id_equal(&ep->matches[i].peer, peer)) {
            ep->matches[i] = ep->matches[--ep->match_count];
            return;
        }
    }
}

static mc_peer peer_of(const mc_endpoint *ep)
{
    return (mc_peer){.struct_size = sizeof(mc_peer),
                     .scope = MC_SCOPE_PROCESS,
                     .id = ep->id,
                     .topic = ep->topic,
                     .pid = (int32_t)getpid()};
}

/* Tells the transport about a publisher/subscriber pair; both ends then count it. */
static int connect_pair(mc_transport *tp, mc_endpoint *pub, mc_endpoint *sub)
{
    mc_binding *pb = mc_binding_for(pub, tp);
    mc_binding *sb = mc_binding_for(sub, tp);
    mc_peer sub_peer = peer_of(sub);
    mc_peer pub_peer = peer_of(pub);
    int rc = tp->ops->pub_connect(pb->handle, &sub_peer);
    if (rc != 0)
        return rc;
    if (MC_HAS(tp->ops, mc_plugin_ops, sub_connect) &&
        (rc = tp->ops->sub_connect(sb->handle, &pub_peer)) != 0) {
        tp->ops->pub_disconnect(pb->handle, &sub->id);
        return rc;
    }
    atomic_fetch_add(&pb->connected, 1);
    atomic_fetch_add(&sb->connected, 1);
    return 0;
}

static void disconnect_pair(mc_transport *tp, mc_endpoint *pub, mc_endpoint *sub)
{
    mc_binding *pb = mc_binding_for(pub, tp);
    mc_binding *sb = mc_binding_for(sub, tp);
    if (MC_HAS(tp->ops, mc_plugin_ops, sub_disconnect))
        tp->ops->sub_disconnect(sb->handle, &pub->id);
    tp->ops->pub_disconnect(pb->handle, &sub->id);
    atomic_fetch_sub(&pb->connected, 1);
    atomic_fetch_sub(&sb->connected, 1);
}

static void match_pair(mc_context *ctx, mc_endpoint *pub, mc_endpoint *sub)
{
    mc_transport *tp = pick_local_transport(ctx, pub, sub);
    if (tp == NULL) {
        mc_ctx_log(ctx, MC_LOG_WARN,
                   "topic '%s': no loaded transport connects endpoints of "
                   "one process",
                   pub->topic);
        return;
    }
    if (connect_pair(tp, pub, sub) != 0) {
        mc_ctx_log(ctx, MC_LOG_ERROR, "topic '%s': transport '%s' failed to connect a pair: %s",
                   pub->topic, tp->desc->name, mc_last_error());
        return;
    }
    mc_match for_pub = {.peer = sub->id, .local = sub, .transport = tp};
    mc_match for_sub = {.peer = pub->id, .local = pub, .transport = tp};
    if (mc_match_add(pub, &for_pub) != 0 || mc_match_add(sub, &for_sub) != 0) {
        mc_match_remove(pub, &sub->id);
        disconnect_pair(tp, pub, sub);
        mc_ctx_log(ctx, MC_LOG_ERROR, "topic '%s': out of memory matching", pub->topic);
        return;
    }
    mc_fire_event(pub, MC_EVENT_MATCHED, &sub->id, tp);
    mc_fire_event(sub, MC_EVENT_MATCHED, &pub->id, tp);
    pthread_cond_broadcast(&ctx->matched_changed);
}

/* Called with ctx->lock held, after ep joined ctx->endpoints. */
static void match_new_endpoint(mc_context *ctx, mc_endpoint *ep)
{
    for (mc_endpoint *other = ctx->endpoints; other != NULL; other = other->next) {
        if (other == ep || other->is_publisher == ep->is_publisher ||
            strcmp(other->topic, ep->topic) != 0 || !labels_compatible(ep, other))
            continue;
        if (ep->is_publisher)
            match_pair(ctx, ep, other);
        else
            match_pair(ctx, other, ep);
    }
}

/* Called with ctx->lock held, before ep leaves: its peers are told and get events. */
static void unmatch_endpoint(mc_context *ctx, mc_endpoint *ep)
{
    while (ep->match_count > 0) {
        mc_match m = ep->matches[--ep->match_count];
        if (m.remote != NULL) {
            mc_registry_unmatch_remote(ctx, ep, &m);
            continue;
        }
        if (ep->is_publisher)
            disconnect_pair(m.transport, ep, m.local);
        else
            disconnect_pair(m.transport, m.local, ep);
        mc_match_remove(m.local, &ep->id);
        mc_fire_event(m.local, MC_EVENT_UNMATCHED, &ep->id, m.transport);
    }
    pthread_cond_broadcast(&ctx->matched_changed);
}

/* ---- endpoint life cycle ------------------------------------------------------------------ */

static void endpoint_close_bindings(mc_endpoint *ep)
{
    for (size_t i = ep->binding_count; i > 0; i--) {
        mc_binding *b = &ep->bindings[i - 1];
        if (ep->is_publisher)
            b->transport->ops->pub_close(b->handle);
        else
            b->transport->ops->sub_close(b->handle);
    }
    ep->binding_count = 0;
}

static int endpoint_open_bindings(mc_endpoint *ep)
{
    mc_context *ctx = ep->ctx;
    mc_endpoint_info info = {.struct_size = sizeof(info),
                             .id = ep->id,
                             .topic = ep->topic,
                             .type = ep->type,
                             .encoding = ep->encoding,
                             .domain = ctx->domain};
    for (size_t i = 0; i < ctx->transport_count; i++) {
        mc_transport *tp = ctx->transports[i];
        if (!(tp->desc->roles & MC_ROLE_DATA))
            continue;
        mc_binding *b = &ep->bindings[ep->binding_count];
        memset(b, 0, sizeof(*b));
        b->endpoint = ep;
        b->transport = tp;
        mc_error_clear();
        int rc = ep->is_publisher
                     ? tp->ops->pub_open(tp->instance, &info, b, (mc_plugin_pub **)&b->handle)
                     : tp->ops->sub_open(tp->instance, &info, b, (mc_plugin_sub **)&b->handle);
        if (rc != 0) {
            char why[800];
            snprintf(why, sizeof(why), "%s", mc_last_error());
            endpoint_close_bindings(ep);
            return mc_error_set(rc, "topic '%s': transport '%s' cannot open the %s: %s%s%s",
                                ep->topic, tp->desc->name,
                                ep->is_publisher ? "publisher" : "subscriber", mc_strerror(rc),
                                why[0] ? ": " : "", why);
        }
        ep->binding_count++;
    }
    return 0;
}

static int endpoint_init(mc_endpoint *ep, mc_context *ctx, bool is_publisher, const char *topic,
                         const char *type, const char *encoding)
{
    ep->ctx = ctx;
    ep->is_publisher = is_publisher;
    snprintf(ep->topic, sizeof(ep->topic), "%s", topic);
    ep->id.context_hi = ctx->id_hi;
    ep->id.context_lo = ctx->id_lo;
    int rc = label_copy("type", type, &ep->type);
    if (rc == 0)
        rc = label_copy("encoding", encoding, &ep->encoding);
    return rc;
}

static void endpoint_free_labels(mc_endpoint *ep)
{
    free(ep->type);
    free(ep->encoding);
    free(ep->matches);
}

/* Joins the registry, opens the transports and matches. */
static int endpoint_register(mc_endpoint *ep)
{
    mc_context *ctx = ep->ctx;
    pthread_mutex_lock(&ctx->lock);
    ep->id.serial = ++ctx->next_serial;
    pthread_mutex_unlock(&ctx->lock);
    int rc = endpoint_open_bindings(ep);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&ctx->lock);
    ep->next = ctx->endpoints;
    ctx->endpoints = ep;
    match_new_endpoint(ctx, ep);
    mc_registry_endpoint_added(ctx, ep);
    pthread_mutex_unlock(&ctx->lock);
    return 0;
}

static void endpoint_unregister(mc_endpoint *ep)
{
    mc_context *ctx = ep->ctx;
    pthread_mutex_lock(&ctx->lock);
    mc_registry_endpoint_removed(ctx, ep);
    unmatch_endpoint(ctx, ep);
    for (mc_endpoint **link = &ctx->endpoints; *link != NULL; link = &(*link)->next) {
        if (*link == ep) {
            *link = ep->next;
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

static int check_context(const mc_context *ctx, const char *topic, void *out)
{
    if (ctx == NULL || out == NULL)
        return mc_error_set(MC_EINVAL, "%s is NULL", ctx == NULL ? "context" : "out");
    return mc_topic_validate(topic);
}

static void recursive_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
}

/* ---- publishers --------------------------------------------------------------------------- */

MC_API void mc_pub_options_init(mc_pub_options *opts)
{
    if (opts == NULL)
        return;
    memset(opts, 0, sizeof(*opts));
    opts->struct_size = sizeof(*opts);
}

static int options_size_check(size_t given, size_t minimum, const char *what)
{
    if (given < minimum)
        return mc_error_set(MC_EINVAL, "%s: struct_size %zu is too small; call %s_init() first",
                            what, given, what);
    return 0;
}

MC_API int mc_publisher_create(mc_context *ctx, const char *topic, const mc_pub_options *opts,
                               mc_publisher **out)
{
    mc_error_clear();
    int rc = check_context(ctx, topic, out);
    if (rc != 0)
        return rc;
    *out = NULL;
    mc_pub_options defaults;
    mc_pub_options_init(&defaults);
    if (opts == NULL)
        opts = &defaults;
    if ((rc = options_size_check(opts->struct_size, sizeof(*opts), "mc_pub_options")) != 0)
        return rc;
    mc_publisher *pub = calloc(1, sizeof(*pub));
    if (pub == NULL)
        return mc_error_set(MC_ENOMEM, "topic '%s': out of memory", topic);
    recursive_mutex_init(&pub->send_lock);
    pub->ep.on_event = opts->on_event;
    pub->ep.user = opts->user;
    rc = endpoint_init(&pub->ep, ctx, true, topic, opts->type, opts->encoding);
    if (rc == 0)
        rc = endpoint_register(&pub->ep);
    if (rc != 0) {
        endpoint_free_labels(&pub->ep);
        pthread_mutex_destroy(&pub->send_lock);
        free(pub);
        return rc;
    }
    *out = pub;
    return 0;
}

static void publisher_free(mc_publisher *pub)
{
    endpoint_unregister(&pub->ep);
    pthread_mutex_lock(&pub->send_lock);
    if (pub->loan_buf != NULL) {
        if (pub->loan_binding != NULL)
            pub->loan_binding->transport->ops->loan_discard(pub->loan_binding->handle,
                                                            pub->loan_buf);
        else
            free(pub->loan_buf);
        pub->loan_buf = NULL;
    }
    pthread_mutex_unlock(&pub->send_lock);
    endpoint_close_bindings(&pub->ep);
    endpoint_free_labels(&pub->ep);
    pthread_mutex_destroy(&pub->send_lock);
    free(pub);
}

MC_API int mc_publisher_destroy(mc_publisher *pub)
{
    if (pub == NULL)
        return 0;
    if (refuse_inside_event(&pub->ep) != 0)
        return MC_EBUSY;
    if (in_callback_of(&pub->ep))
        return mc_error_set(MC_EBUSY,
                            "topic '%s': a publisher cannot be destroyed inside its "
                            "own event callback",
                            pub->ep.topic);
    publisher_free(pub);
    return 0;
}

static int size_check(mc_publisher *pub, size_t size)
{
    for (size_t i = 0; i < pub->ep.binding_count; i++) {
        mc_binding *b = &pub->ep.bindings[i];
        if (atomic_load(&b->connected) > 0 && size > b->transport->limits.max_message_size)
            return mc_error_set(MC_EMSGSIZE,
                                "topic '%s': message of %zu bytes exceeds transport '%s' limit "
                                "of %llu bytes (max_message_size in [%s])",
                                pub->ep.topic, size, b->transport->desc->name,
                                (unsigned long long)b->transport->limits.max_message_size,
                                b->transport->desc->name);
    }
    return 0;
}

static mc_sample sample_make(mc_publisher *pub, const void *data, size_t size)
{
    return (mc_sample){.struct_size = sizeof(mc_sample),
                       .data = data,
                       .size = size,
                       .publisher = pub->ep.id,
                       .seq = ++pub->seq,
                       .send_time_ns = realtime_ns()};
}

/* Message and byte counters have one writer at a time: a publisher's are written under
 * its send_lock, a subscriber's under its state_lock. A plain load and store then count
 * as well as a locked add, which costs each message several times over (eight per hop
 * of a ping-pong, against a one-way hop of under 0.25 us); stats readers load them. */
static void counter_add(atomic_uint_least64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void binding_count_sent(mc_binding *b, size_t size)
{
    counter_add(&b->messages, 1);
    counter_add(&b->bytes, size);
}

/* Sends on every transport that has a connected subscriber, except skip. Every transport
 * is tried; the first failure is returned. */
static int send_all(mc_publisher *pub, const mc_sample *sample, const mc_binding *skip)
{
    int first_rc = 0;
    char first_why[1024];
    first_why[0] = '\0'; /* not = "": that zeroes all of it on every publish */
    for (size_t i = 0; i < pub->ep.binding_count; i++) {
        mc_binding *b = &pub->ep.bindings[i];
        if (b == skip || atomic_load(&b->connected) == 0)
            continue;
        mc_error_clear();
        int rc = b->transport->ops->send(b->handle, sample);
        if (rc == 0) {
            binding_count_sent(b, sample->size);
        } else if (first_rc == 0) {
            first_rc = rc;
            snprintf(first_why, sizeof(first_why), "%s", mc_last_error());
        }
    }
    if (first_rc != 0)
        return mc_error_set(first_rc, "topic '%s': send failed: %s", pub->ep.topic, first_why);
    return 0;
}

static void publisher_count(mc_publisher *pub, size_t size)
{
    counter_add(&pub->ep.messages, 1);
    counter_add(&pub->ep.bytes, size);
}

MC_API int mc_publish(mc_publisher *pub, const void *data, size_t size)
{
    mc_error_clear();
    if (pub == NULL)
        return mc_error_set(MC_EINVAL, "mc_publish: publisher is NULL");
    if (data == NULL && size > 0)
        return mc_error_set(MC_EINVAL, "topic '%s': data is NULL for a %zu-byte message",
                            pub->ep.topic, size);
    pthread_mutex_lock(&pub->send_lock);
    int rc = size_check(pub, size);
    if (rc == 0) {
        mc_sample sample = sample_make(pub, data, size);
        rc = send_all(pub, &sample, NULL);
        publisher_count(pub, size);
    }
    pthread_mutex_unlock(&pub->send_lock);
    return rc;
}

/* The transport that lends memory: the first connected one that can. */
static mc_binding *loan_binding_pick(mc_publisher *pub)
{
    for (size_t i = 0; i < pub->ep.binding_count; i++) {
        mc_binding *b = &pub->ep.bindings[i];
        if (atomic_load(&b->connected) > 0 && MC_HAS(b->transport->ops, mc_plugin_ops, loan))
            return b;
    }
    return NULL;
}

MC_API int mc_loan(mc_publisher *pub, size_t size, void **buf)
{
    mc_error_clear();
    if (pub == NULL || buf == NULL)
        return mc_error_set(MC_EINVAL, "mc_loan: %s is NULL", pub ? "buf" : "publisher");
    pthread_mutex_lock(&pub->send_lock);
    int rc = pub->loan_buf
                 ? mc_error_set(MC_EBUSY, "topic '%s': a loan is already open", pub->ep.topic)
                 : size_check(pub, size);
    if (rc == 0) {
        mc_binding *b = loan_binding_pick(pub);
        void *mem = NULL;
        if (b != NULL)
            rc = b->transport->ops->loan(b->handle, size, &mem);
        else if ((mem = malloc(size ? size : 1)) == NULL)
            rc = mc_error_set(MC_ENOMEM, "topic '%s': cannot allocate a %zu-byte loan",
                              pub->ep.topic, size);
        if (rc == 0) {
            pub->loan_buf = mem;
            pub->loan_size = size;
            pub->loan_binding = b;
            *buf = mem;
        }
    }
    pthread_mutex_unlock(&pub->send_lock);
    return rc;
}

static int loan_check(mc_publisher *pub, void *buf, const char *fn)
{
    if (pub == NULL || buf == NULL)
        return mc_error_set(MC_EINVAL, "%s: %s is NULL", fn, pub ? "buf" : "publisher");
    if (pub->loan_buf != buf)
        return mc_error_set(MC_EINVAL,
                            "%s: topic '%s': buffer %p is not this publisher's open "
                            "loan",
                            fn, pub->ep.topic, buf);
    return 0;
}

static void loan_end(mc_publisher *pub)
{
    if (pub->loan_binding == NULL)
        free(pub->loan_buf);
    pub->loan_buf = NULL;
    pub->loan_binding = NULL;
}

MC_API int mc_commit(mc_publisher *pub, void *buf, size_t size)
{
    mc_error_clear();
    if (pub == NULL)
        return mc_error_set(MC_EINVAL, "mc_commit: publisher is NULL");
    pthread_mutex_lock(&pub->send_lock);
    int rc = loan_check(pub, buf, "mc_commit");
    if (rc == 0 && size > pub->loan_size) {
        rc = mc_error_set(MC_EMSGSIZE,
                          "topic '%s': commit of %zu bytes exceeds the %zu-byte "
                          "loan",
                          pub->ep.topic, size, pub->loan_size);
        if (pub->loan_binding)
            pub->loan_binding->transport->ops->loan_discard(pub->loan_binding->handle, buf);
        loan_end(pub);
    } else if (rc == 0) {
        mc_sample sample = sample_make(pub, buf, size);
        /* Copies to the other transports go first: after commit the slot is the reader's. */
        rc = send_all(pub, &sample, pub->loan_binding);
        mc_binding *lb = pub->loan_binding;
        if (lb != NULL) {
            int crc = lb->transport->ops->commit(lb->handle, buf, &sample);
            if (crc == 0)
                binding_count_sent(lb, size);
            else if (rc == 0)
                rc = mc_error_set(crc, "topic '%s': commit on transport '%s' failed", pub->ep.topic,
                                  lb->transport->desc->name);
        }
        publisher_count(pub, size);
        loan_end(pub);
    }
    pthread_mutex_unlock(&pub->send_lock);
    return rc;
}

MC_API int mc_loan_discard(mc_publisher *pub, void *buf)
{
    if (pub == NULL)
        return mc_error_set(MC_EINVAL, "mc_loan_discard: publisher is NULL");
    pthread_mutex_lock(&pub->send_lock);
    int rc = loan_check(pub, buf, "mc_loan_discard");
    if (rc == 0) {
        if (pub->loan_binding)
            pub->loan_binding->transport->ops->loan_discard(pub->loan_binding->handle, buf);
        loan_end(pub);
    }
    pthread_mutex_unlock(&pub->send_lock);
    return rc;
}

static size_t matched_count(mc_endpoint *ep)
{
    pthread_mutex_lock(&ep->ctx->lock);
    size_t n = ep->match_count;
    pthread_mutex_unlock(&ep->ctx->lock);
    return n;
}

static int wait_matched(mc_endpoint *ep, size_t count, int timeout_ms)
{
    if (mc_in_callback())
        return mc_error_set(MC_EBUSY,
                            "topic '%s': waiting for matches inside a callback would "
                            "deadlock",
                            ep->topic);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    mc_context *ctx = ep->ctx;
    int rc = 0;
    pthread_mutex_lock(&ctx->lock);
    while (ep->match_count < count && rc == 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&ctx->matched_changed, &ctx->lock);
        else if (pthread_cond_timedwait(&ctx->matched_changed, &ctx->lock, &deadline) == ETIMEDOUT)
            rc = ep->match_count >= count ? 0 : MC_ETIMEDOUT;
    }
    size_t have = ep->match_count;
    pthread_mutex_unlock(&ctx->lock);
    if (rc != 0)
        return mc_error_set(rc, "topic '%s': %zu of %zu peers matched after %d ms", ep->topic, have,
                            count, timeout_ms);
    return 0;
}

MC_API size_t mc_publisher_matched(mc_publisher *pub)
{
    return pub ? matched_count(&pub->ep) : 0;
}

MC_API int mc_publisher_wait_matched(mc_publisher *pub, size_t count, int timeout_ms)
{
    if (pub == NULL)
        return mc_error_set(MC_EINVAL, "mc_publisher_wait_matched: publisher is NULL");
    return wait_matched(&pub->ep, count, timeout_ms);
}

MC_API const mc_endpoint_id *mc_publisher_id(const mc_publisher *pub)
{
    return pub ? &pub->ep.id : NULL;
}

/* ---- statistics ------------------------------------------------------------------------- */

MC_API void mc_stats_init(mc_stats *stats)
{
    if (stats == NULL)
        return;
    memset(stats, 0, sizeof(*stats));
    stats->struct_size = sizeof(*stats);
}

MC_API const char *mc_drop_reason_name(mc_drop_reason reason)
{
    switch (reason) {
    case MC_DROP_OVERRUN:
        return "overrun";
    case MC_DROP_DUPLICATE:
        return "duplicate";
    case MC_DROP_LOST:
        return "lost";
    case MC_DROP_INVALID:
        return "invalid";
    default:
        return "unknown";
    }
}

static int endpoint_stats(mc_endpoint *ep, mc_stats *stats)
{
    if (ep == NULL || stats == NULL)
        return mc_error_set(MC_EINVAL, "stats: %s is NULL", ep ? "stats" : "endpoint");
    if (stats->struct_size < sizeof(*stats))
        return mc_error_set(MC_EINVAL,
                            "mc_stats: struct_size %zu is too small; call "
                            "mc_stats_init() first",
                            stats->struct_size);
    stats->messages = atomic_load(&ep->messages);
    stats->bytes = atomic_load(&ep->bytes);
    for (int r = 0; r < MC_DROP_REASONS; r++)
        stats->dropped[r] = atomic_load(&ep->dropped[r]);
    stats->matched = matched_count(ep);
    stats->transport_count = ep->binding_count;
    for (size_t i = 0; i < ep->binding_count; i++) {
        mc_binding *b = &ep->bindings[i];
        mc_transport_stats *t = &stats->transports[i];
        snprintf(t->name, sizeof(t->name), "%s", b->transport->desc->name);
        t->messages = atomic_load(&b->messages);
        t->bytes = atomic_load(&b->bytes);
        t->dropped = atomic_load(&b->dropped);
    }
    return 0;
}

MC_API int mc_publisher_stats(mc_publisher *pub, mc_stats *stats)
{
    return endpoint_stats(pub ? &pub->ep : NULL, stats);
}

/* ---- subscribers -------------------------------------------------------------------------- */

MC_API void mc_sub_options_init(mc_sub_options *opts)
{
    if (opts == NULL)
        return;
    memset(opts, 0, sizeof(*opts));
    opts->struct_size = sizeof(*opts);
}

static int subscriber_init_queue(mc_subscriber *sub, size_t depth)
{
    sub->queue_depth = depth ? depth : MC_DEFAULT_QUEUE_DEPTH;
    if (sub->on_message != NULL)
        return 0;
    sub->queue = calloc(sub->queue_depth, sizeof(*sub->queue));
    return sub->queue
               ? 0
               : mc_error_set(MC_ENOMEM, "out of memory for a %zu-message queue", sub->queue_depth);
}

static void subscriber_init_sync(mc_subscriber *sub)
{
    recursive_mutex_init(&sub->callback_lock);
    pthread_mutex_init(&sub->state_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sub->queue_changed, &attr);
    pthread_condattr_destroy(&attr);
}

static void subscriber_release(mc_subscriber *sub)
{
    for (size_t i = 0; i < sub->queue_count; i++)
        free(sub->queue[(sub->queue_head + i) % sub->queue_depth]);
    free(sub->queue);
    free(sub->dedup);
    endpoint_free_labels(&sub->ep);
    pthread_cond_destroy(&sub->queue_changed);
    pthread_mutex_destroy(&sub->state_lock);
    pthread_mutex_destroy(&sub->callback_lock);
    free(sub);
}

MC_API int mc_subscriber_create(mc_context *ctx, const char *topic, const mc_sub_options *opts,
                                mc_subscriber **out)
{
    mc_error_clear();
    int rc = check_context(ctx, topic, out);
    if (rc != 0)
        return rc;
    *out = NULL;
    mc_sub_options defaults;
    mc_sub_options_init(&defaults);
    if (opts == NULL)
        opts = &defaults;
    if ((rc = options_size_check(opts->struct_size, sizeof(*opts), "mc_sub_options")) != 0)
        return rc;
    if (opts->queue_depth > (1u << 24))
        return mc_error_set(MC_EINVAL, "topic '%s': queue_depth %zu is above the limit of %u",
                            topic, opts->queue_depth, 1u << 24);
    mc_subscriber *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return mc_error_set(MC_ENOMEM, "topic '%s': out of memory", topic);
    subscriber_init_sync(sub);
    sub->on_message = opts->on_message;
    sub->ep.on_event = opts->on_event;
    sub->ep.user = opts->user;
    rc = endpoint_init(&sub->ep, ctx, false, topic, opts->type, opts->encoding);
    if (rc == 0)
        rc = subscriber_init_queue(sub, opts->queue_depth);
    if (rc == 0)
        rc = endpoint_register(&sub->ep);
    if (rc != 0) {
        subscriber_release(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

static void subscriber_free(mc_subscriber *sub)
{
    endpoint_unregister(&sub->ep);
    pthread_mutex_lock(&sub->state_lock);
    sub->closing = true;
    pthread_cond_broadcast(&sub->queue_changed);
    pthread_mutex_unlock(&sub->state_lock);
    /* sub_close returns only when no delivery to this subscriber is in flight. */
    endpoint_close_bindings(&sub->ep);
    subscriber_release(sub);
}

MC_API int mc_subscriber_destroy(mc_subscriber *sub)
{
    if (sub == NULL)
        return 0;
    if (refuse_inside_event(&sub->ep) != 0)
        return MC_EBUSY;
    if (in_callback_of(&sub->ep))
        return mc_error_set(MC_EBUSY,
                            "topic '%s': a subscriber cannot be destroyed inside its "
                            "own callback",
                            sub->ep.topic);
    subscriber_free(sub);
    return 0;
}

MC_API size_t mc_subscriber_matched(mc_subscriber *sub)
{
    return sub ? matched_count(&sub->ep) : 0;
}

MC_API int mc_subscriber_wait_matched(mc_subscriber *sub, size_t count, int timeout_ms)
{
    if (sub == NULL)
        return mc_error_set(MC_EINVAL, "mc_subscriber_wait_matched: subscriber is NULL");
    return wait_matched(&sub->ep, count, timeout_ms);
}

MC_API int mc_subscriber_stats(mc_subscriber *sub, mc_stats *stats)
{
    return endpoint_stats(sub ? &sub->ep : NULL, stats);
}

MC_API int mc_subscriber_sources(mc_subscriber *sub, mc_source_stats *out, size_t max,
                                 size_t *count)
{
    mc_error_clear();
    if (sub == NULL || count == NULL || (out == NULL && max > 0))
        return mc_error_set(MC_EINVAL, "mc_subscriber_sources: %s is NULL",
                            sub == NULL     ? "subscriber"
                            : count == NULL ? "count"
                                            : "out");
    pthread_mutex_lock(&sub->state_lock);
    *count = sub->dedup_count;
    for (size_t i = 0; i < sub->dedup_count && i < max; i++) {
        const dedup_entry *e = &sub->dedup[i];
        out[i] = (mc_source_stats){.publisher = e->publisher, .messages = e->messages};
        memcpy(out[i].dropped, e->dropped, sizeof(out[i].dropped));
    }
    pthread_mutex_unlock(&sub->state_lock);
    return 0;
}

MC_API const mc_endpoint_id *mc_subscriber_id(const mc_subscriber *sub)
{
    return sub ? &sub->ep.id : NULL;
}

void mc_endpoint_free_all(mc_context *ctx)
{
    for (;;) {
        pthread_mutex_lock(&ctx->lock);
        mc_endpoint *ep = ctx->endpoints;
        pthread_mutex_unlock(&ctx->lock);
        if (ep == NULL)
            return;
        if (ep->is_publisher)
            publisher_free((mc_publisher *)ep);
        else
            subscriber_free((mc_subscriber *)ep);
    }
}

/* ---- delivery ----------------------------------------------------------------------------- */

static void count_drop(mc_endpoint *ep, mc_binding *b, mc_drop_reason reason, uint64_t count)
{
    atomic_fetch_add(&ep->dropped[reason], count);
    if (b != NULL)
        atomic_fetch_add(&b->dropped, count);
}

/* True when seq was seen already from e's publisher, or is too old to tell; records it. */
static bool dedup_record(dedup_entry *e, uint64_t seq)
{
    if (e->window == 0 || seq > e->highest) {
        uint64_t shift = e->window == 0 ? MC_DEDUP_WINDOW : seq - e->highest;
        e->window = shift >= MC_DEDUP_WINDOW ? 1 : (e->window << shift) | 1;
        e->highest = seq;
        return false;
    }
    uint64_t age = e->highest - seq;
    if (age >= MC_DEDUP_WINDOW || (e->window & (1ull << age)))
        return true;
    e->window |= 1ull << age;
    return false;
}

/* The entry of publisher, added when new; NULL only when memory ran out. Called with
 * state_lock held. */
static dedup_entry *source_of(mc_subscriber *sub, const mc_endpoint_id *publisher)
{
    for (size_t i = 0; i < sub->dedup_count; i++)
        if (id_equal(&sub->dedup[i].publisher, publisher))
            return &sub->dedup[i];
    if (sub->dedup_count == sub->dedup_capacity) {
        size_t capacity = sub->dedup_capacity ? sub->dedup_capacity * 2 : 4;
        dedup_entry *grown = realloc(sub->dedup, capacity * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        sub->dedup = grown;
        sub->dedup_capacity = capacity;
    }
    dedup_entry *e = &sub->dedup[sub->dedup_count++];
    *e = (dedup_entry){.publisher = *publisher};
    return e;
}

/* True when (publisher, seq) was seen already, or is too old to tell. Records it if not,
 * counting the message or the duplicate for its publisher. Called with state_lock held. */
static bool dedup_seen(mc_subscriber *sub, const mc_endpoint_id *publisher, uint64_t seq)
{
    dedup_entry *e = source_of(sub, publisher);
    if (e == NULL)
        return false; /* cannot tell: deliver rather than lose */
    bool seen = dedup_record(e, seq);
    if (seen)
        e->dropped[MC_DROP_DUPLICATE]++;
    else
        e->messages++;
    return seen;
}

static bool sample_valid(const mc_sample *s)
{
    return s != NULL && s->struct_size >= sizeof(mc_sample) && (s->data != NULL || s->size == 0);
}

static mc_msg msg_view(const mc_sample *s, const mc_transport *tp)
{
    mc_msg msg = {.data = s->data,
                  .size = (size_t)s->size,
                  .publisher = s->publisher,
                  .seq = s->seq,
                  .send_time_ns = s->send_time_ns};
    msg.transport = tp->desc->name; /* a callback's view: no copy on the delivery path */
    return msg;
}

static void run_callback(mc_subscriber *sub, const mc_msg *msg)
{
    pthread_mutex_lock(&sub->callback_lock);
    callback_enter(&sub->ep);
    sub->on_message(sub->ep.user, sub, msg);
    callback_leave();
    pthread_mutex_unlock(&sub->callback_lock);
}

/* Pull mode: a copy joins the queue; when it is full the oldest goes. */
static void enqueue_copy(mc_subscriber *sub, mc_binding *b, const mc_msg *view)
{
    mc_msg *copy = malloc(sizeof(*copy) + view->size);
    if (copy == NULL) {
        count_drop(&sub->ep, b, MC_DROP_OVERRUN, 1);
        return;
    }
    *copy = *view;
    if (view->size > 0)
        memcpy(copy->payload, view->data, view->size);
    copy->data = copy->payload;
    /* a queued message may outlive the plugin (taken after the context closed) */
    snprintf(copy->transport_copy, sizeof(copy->transport_copy), "%s", view->transport);
    copy->transport = copy->transport_copy;
    pthread_mutex_lock(&sub->state_lock);
    if (sub->queue_count == sub->queue_depth) {
        free(sub->queue[sub->queue_head]);
        sub->queue_head = (sub->queue_head + 1) % sub->queue_depth;
        sub->queue_count--;
        count_drop(&sub->ep, b, MC_DROP_OVERRUN, 1);
    }
    sub->queue[(sub->queue_head + sub->queue_count) % sub->queue_depth] = copy;
    sub->queue_count++;
    pthread_cond_signal(&sub->queue_changed);
    pthread_mutex_unlock(&sub->state_lock);
}

void mc_deliver(mc_host_ctx *hctx, void *sub_cookie, const mc_sample *sample)
{
    mc_binding *b = sub_cookie;
    if (b == NULL || b->endpoint == NULL || b->endpoint->is_publisher)
        return;
    mc_subscriber *sub = (mc_subscriber *)b->endpoint;
    if (!sample_valid(sample)) {
        count_drop(&sub->ep, b, MC_DROP_INVALID, 1);
        return;
    }
    pthread_mutex_lock(&sub->state_lock);
    bool closing = sub->closing;
    bool drop = closing || dedup_seen(sub, &sample->publisher, sample->seq);
    if (!drop) {
        counter_add(&sub->ep.messages, 1);
        counter_add(&sub->ep.bytes, sample->size);
        binding_count_sent(b, (size_t)sample->size);
    }
    pthread_mutex_unlock(&sub->state_lock);
    if (drop) {
        if (!closing)
            count_drop(&sub->ep, b, MC_DROP_DUPLICATE, 1);
        return;
    }
    mc_msg view = msg_view(sample, b->transport);
    if (sub->on_message != NULL)
        run_callback(sub, &view);
    else
        enqueue_copy(sub, b, &view);
}

void mc_dropped(mc_host_ctx *hctx, void *cookie, mc_drop_reason reason, uint64_t count)
{
    mc_binding *b = cookie;
    if (b == NULL || b->endpoint == NULL || (unsigned)reason >= MC_DROP_REASONS)
        return;
    count_drop(b->endpoint, b, reason, count);
}

static uint64_t losses(const dedup_entry *e)
{
    return e->dropped[MC_DROP_LOST] + e->dropped[MC_DROP_OVERRUN];
}

size_t mc_subscriber_worst_sources(mc_subscriber *sub, mc_source_loss *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&sub->state_lock);
    for (size_t i = 0; i < sub->dedup_count; i++) {
        uint64_t lost = losses(&sub->dedup[i]);
        size_t at = n;
        while (at > 0 && out[at - 1].lost < lost)
            at--;
        if (lost == 0 || at == max)
            continue;
        if (n < max)
            n++;
        memmove(&out[at + 1], &out[at], (n - 1 - at) * sizeof(*out));
        out[at] = (mc_source_loss){.publisher = sub->dedup[i].publisher, .lost = lost};
    }
    pthread_mutex_unlock(&sub->state_lock);
    return n;
}

void mc_dropped_from(mc_host_ctx *hctx, void *sub_cookie, const mc_endpoint_id *publisher,
                     mc_drop_reason reason, uint64_t count)
{
    mc_binding *b = sub_cookie;
    if (b == NULL || b->endpoint == NULL || b->endpoint->is_publisher || publisher == NULL ||
        (unsigned)reason >= MC_DROP_REASONS) {
        mc_dropped(hctx, sub_cookie, reason, count);
        return;
    }
    count_drop(b->endpoint, b, reason, count);
    mc_subscriber *sub = (mc_subscriber *)b->endpoint;
    pthread_mutex_lock(&sub->state_lock);
    dedup_entry *e = source_of(sub, publisher);
    if (e != NULL)
        e->dropped[reason] += count;
    pthread_mutex_unlock(&sub->state_lock);
}

/* ---- pull mode and messages --------------------------------------------------------------- */

static struct timespec deadline_after(int timeout_ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += timeout_ms / 1000;
    t.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

MC_API int mc_take(mc_subscriber *sub, int timeout_ms, mc_msg **out)
{
    mc_error_clear();
    if (sub == NULL || out == NULL)
        return mc_error_set(MC_EINVAL, "mc_take: %s is NULL", sub ? "out" : "subscriber");
    *out = NULL;
    if (sub->on_message != NULL)
        return mc_error_set(MC_EINVAL, "topic '%s': mc_take on a subscriber with a callback",
                            sub->ep.topic);
    struct timespec deadline = deadline_after(timeout_ms > 0 ? timeout_ms : 0);
    int rc = 0;
    pthread_mutex_lock(&sub->state_lock);
    while (sub->queue_count == 0 && rc == 0 && !sub->closing) {
        if (timeout_ms == 0)
            rc = MC_EAGAIN;
        else if (timeout_ms < 0)
            pthread_cond_wait(&sub->queue_changed, &sub->state_lock);
        else if (pthread_cond_timedwait(&sub->queue_changed, &sub->state_lock, &deadline) ==
                     ETIMEDOUT &&
                 sub->queue_count == 0)
            rc = MC_ETIMEDOUT;
    }
    if (sub->queue_count > 0) {
        *out = sub->queue[sub->queue_head];
        sub->queue_head = (sub->queue_head + 1) % sub->queue_depth;
        sub->queue_count--;
        rc = 0;
    } else if (rc == 0) {
        rc = MC_ECLOSED;
    }
    pthread_mutex_unlock(&sub->state_lock);
    if (rc == MC_ETIMEDOUT)
        mc_error_set(rc, "topic '%s': no message within %d ms", sub->ep.topic, timeout_ms);
    return rc;
}

MC_API void mc_msg_release(mc_msg *msg)
{
    free(msg);
}

MC_API const void *mc_msg_data(const mc_msg *msg)
{
    return msg ? msg->data : NULL;
}

MC_API size_t mc_msg_size(const mc_msg *msg)
{
    return msg ? msg->size : 0;
}

MC_API const mc_endpoint_id *mc_msg_publisher(const mc_msg *msg)
{
    return msg ? &msg->publisher : NULL;
}

MC_API uint64_t mc_msg_seq(const mc_msg *msg)
{
    return msg ? msg->seq : 0;
}

MC_API int64_t mc_msg_send_time_ns(const mc_msg *msg)
{
    return msg ? msg->send_time_ns : 0;
}

MC_API const char *mc_msg_transport(const mc_msg *msg)
{
    return msg ? msg->transport : "";
}
