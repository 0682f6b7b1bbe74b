/*
 * inproc: delivers between endpoints of one context, inside one process.
 *
 * It is the smallest complete memcast transport and the one to copy when writing your
 * own (doc/plugin-guide.md walks through it). What it shows:
 *  - the one exported symbol and a descriptor the framework validates before anything runs;
 *  - a config schema, read back through the host's typed getters;
 *  - publishers that send to the subscribers the framework connected them with;
 *  - delivery on the transport's own thread, through host->deliver;
 *  - a bounded queue with an overflow policy, and losses reported with host->dropped;
 *  - zero-copy: loan() hands out the very buffer that is later delivered;
 *  - shutdown that joins the thread and frees everything.
 *
 * Design: one delivery thread per instance and one FIFO of deliveries (message, subscriber).
 * A message is allocated once and shared by reference between its deliveries. The queue is
 * bounded by a message count and a byte count; when full, `overflow = block` makes send()
 * wait for room (at most block_timeout) and `drop_oldest` discards the oldest message. A
 * callback that publishes runs on the delivery thread, so send() never blocks there (it
 * would wait for itself): it drops the oldest message instead and reports the loss. The
 * bound on blocking matters too: the framework serialises sends per publisher, so a
 * callback publishing on a publisher that another thread is blocked in would otherwise
 * wait for ever.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memcast/plugin.h>

enum overflow_policy { OVERFLOW_BLOCK = 0, OVERFLOW_DROP_OLDEST = 1 };

static const char *const overflow_names[] = {"block", "drop_oldest", NULL};

static const mc_config_key inproc_config[] = {
    {.name = "queue_depth",
     .type = MC_CFG_INT,
     .default_value = "1024",
     .doc = "messages queued for delivery before the overflow policy applies",
     .min = 1,
     .max = 1048576},
    {.name = "queue_bytes",
     .type = MC_CFG_SIZE,
     .default_value = "256M",
     .doc = "payload bytes queued for delivery before the overflow policy applies"},
    {.name = "overflow",
     .type = MC_CFG_ENUM,
     .default_value = "block",
     .doc = "when the queue is full: block (wait for room) or drop_oldest",
     .enum_values = overflow_names},
    {.name = "block_timeout",
     .type = MC_CFG_DURATION,
     .default_value = "1s",
     .doc = "longest a blocked publish waits for room before dropping the oldest message",
     .min = 0,
     .max = 3600000},
    {.name = "max_message_size",
     .type = MC_CFG_SIZE,
     .default_value = "64M",
     .doc = "largest message carried; a larger publish fails with MC_EMSGSIZE"},
    {.name = NULL},
};

/* A published message, shared by all its queued deliveries. */
typedef struct message {
    atomic_int refs;
    mc_sample sample; /* sample.data points at payload */
    size_t capacity;
    unsigned char payload[];
} message;

typedef struct inproc_sub {
    mc_plugin *plugin;
    void *cookie; /* the framework's handle for host->deliver */
    mc_endpoint_id id;
    unsigned in_flight; /* deliveries running now; guarded by plugin->lock */
    struct inproc_sub *next;
} inproc_sub;

typedef struct delivery {
    message *msg;
    inproc_sub *sub;
    struct delivery *next;
} delivery;

struct mc_plugin_pub {
    mc_plugin *plugin;
    void *cookie;
    inproc_sub **subs; /* connected subscribers; guarded by plugin->lock */
    size_t sub_count;
    size_t sub_capacity;
};

struct mc_plugin {
    const mc_host *host;
    int64_t queue_depth;
    uint64_t queue_bytes;
    int overflow;
    int64_t block_timeout_ms;
    uint64_t max_message_size;

    pthread_mutex_t lock;
    pthread_cond_t work; /* the queue has deliveries, or stop was asked */
    pthread_cond_t room; /* the queue shrank */
    pthread_cond_t idle; /* a delivery finished */
    delivery *head;
    delivery *tail;
    size_t queued_messages; /* messages with at least one queued delivery */
    uint64_t queued_bytes;
    inproc_sub *subs; /* every open subscriber, to resolve connect() by id */
    pthread_t thread;
    bool stopping;
};

/* ---- messages and the queue -------------------------------------------------------------- */

static message *message_new(size_t size)
{
    message *m = malloc(sizeof(*m) + (size ? size : 1));
    if (m == NULL)
        return NULL;
    atomic_init(&m->refs, 0);
    m->capacity = size;
    return m;
}

/* Called with the lock held when a delivery leaves the queue or finishes. The message's
 * bytes count against the queue until its last delivery is done. */
static void message_unref_locked(mc_plugin *p, message *m)
{
    if (atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    p->queued_messages--;
    p->queued_bytes -= m->sample.size;
    pthread_cond_broadcast(&p->room);
    free(m);
}

static bool queue_full(const mc_plugin *p, uint64_t incoming)
{
    if (p->head == NULL)
        return false; /* an empty queue takes any single message */
    return p->queued_messages >= (size_t)p->queue_depth ||
           p->queued_bytes + incoming > p->queue_bytes;
}

/* Drops every queued delivery of the oldest message, reporting each as an overrun. */
static void drop_oldest_locked(mc_plugin *p)
{
    message *oldest = p->head->msg;
    while (p->head != NULL && p->head->msg == oldest) {
        delivery *d = p->head;
        p->head = d->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->host->dropped(p->host->ctx, d->sub->cookie, MC_DROP_OVERRUN, 1);
        message_unref_locked(p, d->msg);
        free(d);
    }
}

static bool on_delivery_thread(const mc_plugin *p)
{
    return pthread_equal(pthread_self(), p->thread);
}

static struct timespec deadline_after_ms(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

/* Makes room for a message of size bytes according to the overflow policy. */
static int wait_for_room_locked(mc_plugin *p, uint64_t size)
{
    struct timespec deadline = deadline_after_ms(p->block_timeout_ms);
    bool may_block = p->overflow == OVERFLOW_BLOCK && !on_delivery_thread(p);
    while (queue_full(p, size)) {
        if (p->stopping)
            return MC_ECLOSED;
        if (!may_block || pthread_cond_timedwait(&p->room, &p->lock, &deadline) == ETIMEDOUT) {
            drop_oldest_locked(p);
            may_block = false;
        }
    }
    return 0;
}

/* Queues msg for every subscriber pub is connected to. Takes ownership of msg. */
static int enqueue(mc_plugin_pub *pub, message *msg)
{
    mc_plugin *p = pub->plugin;
    pthread_mutex_lock(&p->lock);
    int rc = pub->sub_count == 0 ? 0 : wait_for_room_locked(p, msg->sample.size);
    size_t queued = 0;
    for (size_t i = 0; rc == 0 && i < pub->sub_count; i++) {
        delivery *d = malloc(sizeof(*d));
        if (d == NULL) {
            p->host->dropped(p->host->ctx, pub->sub_count > i ? pub->subs[i]->cookie : NULL,
                             MC_DROP_OVERRUN, 1);
            continue;
        }
        *d = (delivery){.msg = msg, .sub = pub->subs[i]};
        if (p->tail)
            p->tail->next = d;
        else
            p->head = d;
        p->tail = d;
        queued++;
    }
    if (queued > 0) {
        atomic_store(&msg->refs, (int)queued);
        p->queued_messages++;
        p->queued_bytes += msg->sample.size;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    if (queued == 0)
        free(msg);
    return rc;
}

/* ---- the delivery thread ------------------------------------------------------------------ */

static delivery *next_delivery_locked(mc_plugin *p)
{
    while (p->head == NULL && !p->stopping)
        pthread_cond_wait(&p->work, &p->lock);
    delivery *d = p->head;
    if (d != NULL) {
        p->head = d->next;
        if (p->head == NULL)
            p->tail = NULL;
        d->sub->in_flight++;
    }
    return d;
}

static void *delivery_thread(void *arg)
{
    mc_plugin *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        delivery *d = next_delivery_locked(p);
        if (d == NULL)
            break; /* stopping and drained */
        /* The lock is not held while the user's callback runs: it may publish. */
        pthread_mutex_unlock(&p->lock);
        p->host->deliver(p->host->ctx, d->sub->cookie, &d->msg->sample);
        pthread_mutex_lock(&p->lock);
        d->sub->in_flight--;
        pthread_cond_broadcast(&p->idle);
        message_unref_locked(p, d->msg);
        free(d);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- instance ------------------------------------------------------------------------------ */

static int read_config(mc_plugin *p)
{
    const mc_host *h = p->host;
    int rc = h->config_int(h->ctx, "queue_depth", &p->queue_depth);
    if (rc == 0)
        rc = h->config_size(h->ctx, "queue_bytes", &p->queue_bytes);
    if (rc == 0)
        rc = h->config_enum(h->ctx, "overflow", &p->overflow);
    if (rc == 0)
        rc = h->config_duration_ms(h->ctx, "block_timeout", &p->block_timeout_ms);
    if (rc == 0)
        rc = h->config_size(h->ctx, "max_message_size", &p->max_message_size);
    if (rc != 0)
        h->set_error(h->ctx, "reading the [inproc] section failed");
    return rc;
}

static int inproc_init(const mc_host *host, mc_plugin **out)
{
    mc_plugin *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return MC_ENOMEM;
    p->host = host;
    int rc = read_config(p);
    if (rc != 0) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&p->room, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&p->idle, NULL);
    rc = pthread_create(&p->thread, NULL, delivery_thread, p);
    if (rc != 0) {
        host->set_error(host->ctx, "cannot start the delivery thread: %s", strerror(rc));
        pthread_cond_destroy(&p->idle);
        pthread_cond_destroy(&p->room);
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return MC_ETRANSPORT;
    }
    *out = p;
    return 0;
}

static void inproc_fini(mc_plugin *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->room);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int inproc_limits(mc_plugin *p, mc_plugin_limits *out)
{
    out->max_message_size = p->max_message_size;
    return 0;
}

/* ---- publishers ------------------------------------------------------------------------- */

static int inproc_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                           mc_plugin_pub **out)
{
    mc_plugin_pub *pub = calloc(1, sizeof(*pub));
    if (pub == NULL)
        return MC_ENOMEM;
    pub->plugin = p;
    pub->cookie = cookie;
    *out = pub;
    return 0;
}

static void inproc_pub_close(mc_plugin_pub *pub)
{
    free(pub->subs);
    free(pub);
}

static inproc_sub *find_sub_locked(mc_plugin *p, const mc_endpoint_id *id)
{
    for (inproc_sub *s = p->subs; s != NULL; s = s->next)
        if (memcmp(&s->id, id, sizeof(*id)) == 0)
            return s;
    return NULL;
}

static int add_sub_locked(mc_plugin_pub *pub, inproc_sub *sub)
{
    if (pub->sub_count == pub->sub_capacity) {
        size_t capacity = pub->sub_capacity ? pub->sub_capacity * 2 : 4;
        inproc_sub **grown = realloc(pub->subs, capacity * sizeof(*grown));
        if (grown == NULL)
            return MC_ENOMEM;
        pub->subs = grown;
        pub->sub_capacity = capacity;
    }
    pub->subs[pub->sub_count++] = sub;
    return 0;
}

static int inproc_pub_connect(mc_plugin_pub *pub, const mc_peer *peer)
{
    mc_plugin *p = pub->plugin;
    pthread_mutex_lock(&p->lock);
    inproc_sub *sub = find_sub_locked(p, &peer->id);
    int rc = sub ? add_sub_locked(pub, sub) : MC_ENOENT;
    pthread_mutex_unlock(&p->lock);
    if (sub == NULL)
        p->host->set_error(p->host->ctx,
                           "topic '%s': subscriber %llu is not open in this "
                           "context (inproc connects only endpoints of one "
                           "context)",
                           peer->topic, (unsigned long long)peer->id.serial);
    return rc;
}

static void remove_sub_locked(mc_plugin_pub *pub, const mc_endpoint_id *id)
{
    for (size_t i = 0; i < pub->sub_count; i++) {
        if (memcmp(&pub->subs[i]->id, id, sizeof(*id)) == 0) {
            pub->subs[i] = pub->subs[--pub->sub_count];
            return;
        }
    }
}

static void inproc_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
    pthread_mutex_lock(&pub->plugin->lock);
    remove_sub_locked(pub, sub);
    pthread_mutex_unlock(&pub->plugin->lock);
}

static int size_ok(mc_plugin_pub *pub, uint64_t size)
{
    mc_plugin *p = pub->plugin;
    if (size <= p->max_message_size)
        return 0;
    p->host->set_error(p->host->ctx, "message of %llu bytes exceeds max_message_size %llu",
                       (unsigned long long)size, (unsigned long long)p->max_message_size);
    return MC_EMSGSIZE;
}

static int inproc_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    int rc = size_ok(pub, sample->size);
    if (rc != 0)
        return rc;
    message *msg = message_new(sample->size);
    if (msg == NULL)
        return MC_ENOMEM;
    if (sample->size > 0)
        memcpy(msg->payload, sample->data, sample->size);
    msg->sample = *sample;
    msg->sample.data = msg->payload;
    return enqueue(pub, msg);
}

/* Zero-copy: the loaned buffer is the payload of the message that will be delivered. */
static int inproc_loan(mc_plugin_pub *pub, size_t size, void **buf)
{
    int rc = size_ok(pub, size);
    if (rc != 0)
        return rc;
    message *msg = message_new(size);
    if (msg == NULL)
        return MC_ENOMEM;
    *buf = msg->payload;
    return 0;
}

static message *message_of(void *payload)
{
    return (message *)((unsigned char *)payload - offsetof(message, payload));
}

static int inproc_commit(mc_plugin_pub *pub, void *buf, const mc_sample *sample)
{
    message *msg = message_of(buf);
    msg->sample = *sample;
    msg->sample.data = msg->payload;
    return enqueue(pub, msg);
}

static void inproc_loan_discard(mc_plugin_pub *pub, void *buf)
{
    free(message_of(buf));
}

/* ---- subscribers -------------------------------------------------------------------------- */

static int inproc_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                           mc_plugin_sub **out)
{
    inproc_sub *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return MC_ENOMEM;
    *sub = (inproc_sub){.plugin = p, .cookie = cookie, .id = info->id};
    pthread_mutex_lock(&p->lock);
    sub->next = p->subs;
    p->subs = sub;
    pthread_mutex_unlock(&p->lock);
    *out = (mc_plugin_sub *)sub;
    return 0;
}

/* Forgets queued deliveries to sub, so none can run after it is closed. */
static void discard_deliveries_locked(mc_plugin *p, inproc_sub *sub)
{
    delivery **link = &p->head;
    p->tail = NULL;
    while (*link != NULL) {
        delivery *d = *link;
        if (d->sub == sub) {
            *link = d->next;
            message_unref_locked(p, d->msg);
            free(d);
        } else {
            p->tail = d;
            link = &d->next;
        }
    }
}

static void unlink_sub_locked(mc_plugin *p, inproc_sub *sub)
{
    for (inproc_sub **link = &p->subs; *link != NULL; link = &(*link)->next) {
        if (*link == sub) {
            *link = sub->next;
            return;
        }
    }
}

static void inproc_sub_close(mc_plugin_sub *handle)
{
    inproc_sub *sub = (inproc_sub *)handle;
    mc_plugin *p = sub->plugin;
    pthread_mutex_lock(&p->lock);
    unlink_sub_locked(p, sub);
    discard_deliveries_locked(p, sub);
    /* The contract: no deliver() for this subscriber may run after we return. The
     * delivery thread itself can only be here from another subscriber's callback. */
    while (sub->in_flight > 0 && !on_delivery_thread(p))
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    free(sub);
}

/* ---- descriptor ---------------------------------------------------------------------------- */

static const mc_plugin_ops inproc_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = inproc_init,
    .fini = inproc_fini,
    .limits = inproc_limits,
    .pub_open = inproc_pub_open,
    .pub_close = inproc_pub_close,
    .sub_open = inproc_sub_open,
    .sub_close = inproc_sub_close,
    .pub_connect = inproc_pub_connect,
    .pub_disconnect = inproc_pub_disconnect,
    .send = inproc_send,
    .loan = inproc_loan,
    .commit = inproc_commit,
    .loan_discard = inproc_loan_discard,
};

static const mc_plugin_descriptor inproc_descriptor = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "inproc",
    .version = "0.1.0",
    .description = "delivers between endpoints of one context, on its own thread",
    .roles = MC_ROLE_DATA,
    .scopes = MC_SCOPE_PROCESS,
    .caps = MC_CAP_ORDERED | MC_CAP_RELIABLE | MC_CAP_ZERO_COPY | MC_CAP_THREAD_SAFE,
    .config = inproc_config,
    .ops = &inproc_ops,
};

MC_PLUGIN_DEFINE(inproc_descriptor)
