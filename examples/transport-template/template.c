/*
 * template: a small, complete memcast transport to copy when writing your own.
 *
 * It delivers between endpoints of one context (MC_SCOPE_PROCESS) on a worker thread of
 * its own, as include/memcast/plugin.h requires: send() copies the message into a bounded
 * queue and returns; the worker hands it to each subscriber through host->deliver. That
 * keeps the user's callbacks off the publisher's thread and out of its lock.
 *
 * What it promises, and how it keeps each promise (memcast-conformance checks them):
 *  - MC_CAP_ORDERED: one worker, one FIFO: a publisher's messages arrive in order.
 *  - MC_CAP_RELIABLE: a full queue makes send() wait for room (at most send_timeout) instead
 *    of dropping; if the room never comes, send() fails with MC_EAGAIN, so nothing that was
 *    accepted is ever lost. A callback that publishes runs on the worker itself, which must
 *    not wait for itself: there the queue may overshoot its bound.
 *  - MC_CAP_THREAD_SAFE: one mutex guards everything shared; it is never held while a
 *    user callback runs.
 *
 * To make it yours: rename "template" (descriptor name, file name mc_<name>, Makefile.am)
 * and replace the queue with your transport's way of moving bytes.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_condattr_setclock under -std=c11 */
#endif

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memcast/plugin.h>

static const mc_config_key template_config[] = {
    {.name = "max_message_size",
     .type = MC_CFG_SIZE,
     .default_value = "1M",
     .doc = "largest message carried; a larger publish fails with MC_EMSGSIZE",
     .min = 1,
     .max = INT64_C(1) << 30},
    {.name = "queue_depth",
     .type = MC_CFG_INT,
     .default_value = "256",
     .doc = "messages waiting for the worker before send() waits for room",
     .min = 1,
     .max = 65536},
    {.name = "send_timeout",
     .type = MC_CFG_DURATION,
     .default_value = "1s",
     .doc = "longest send() waits for room before failing with MC_EAGAIN",
     .min = 0,
     .max = 60000},
    {.name = NULL},
};

/* One published message on its way to the subscribers its publisher was connected to. */
typedef struct job {
    struct job *next;
    mc_sample sample; /* sample.data points at payload */
    size_t target_count;
    mc_endpoint_id *targets;
    unsigned char payload[];
} job;

struct mc_plugin_sub {
    mc_plugin *plugin;
    mc_endpoint_id id;
    void *cookie;       /* the framework's handle, for host->deliver */
    unsigned in_flight; /* deliver() calls running now */
    struct mc_plugin_sub *next;
};

struct mc_plugin_pub {
    mc_plugin *plugin;
    mc_endpoint_id *peers; /* the subscribers the framework connected */
    size_t count;
};

struct mc_plugin {
    const mc_host *host;
    uint64_t max_message_size;
    int64_t queue_depth;
    int64_t send_timeout_ms;

    pthread_mutex_t lock; /* guards everything below and every publisher's peers */
    pthread_cond_t work;  /* a job was queued, or stopping */
    pthread_cond_t room;  /* a job left the queue */
    pthread_cond_t idle;  /* a deliver() finished */
    job *head;
    job *tail;
    int64_t queued;
    struct mc_plugin_sub *subs;
    pthread_t worker;
    bool stopping;
};

/* ---- the worker ---------------------------------------------------------------------------- */

static struct mc_plugin_sub *find_sub_locked(mc_plugin *p, const mc_endpoint_id *id)
{
    struct mc_plugin_sub *sub = p->subs;
    while (sub != NULL && memcmp(&sub->id, id, sizeof(*id)) != 0)
        sub = sub->next;
    return sub;
}

/* Delivers to one subscriber if it is still open. The lock is not held across deliver():
 * the callback may create endpoints, which calls pub_connect, which takes it. */
static void deliver_to(mc_plugin *p, const mc_endpoint_id *id, const mc_sample *sample)
{
    pthread_mutex_lock(&p->lock);
    struct mc_plugin_sub *sub = find_sub_locked(p, id);
    if (sub != NULL)
        sub->in_flight++;
    pthread_mutex_unlock(&p->lock);
    if (sub == NULL)
        return; /* closed since the message was sent */
    p->host->deliver(p->host->ctx, sub->cookie, sample);
    pthread_mutex_lock(&p->lock);
    sub->in_flight--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
}

static job *next_job_locked(mc_plugin *p)
{
    while (p->head == NULL && !p->stopping)
        pthread_cond_wait(&p->work, &p->lock);
    job *j = p->head;
    if (j != NULL) {
        p->head = j->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->queued--;
        pthread_cond_broadcast(&p->room);
    }
    return j;
}

static void *worker_main(void *arg)
{
    mc_plugin *p = arg;
    pthread_mutex_lock(&p->lock);
    job *j;
    while ((j = next_job_locked(p)) != NULL) {
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < j->target_count; i++)
            deliver_to(p, &j->targets[i], &j->sample);
        free(j->targets);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- instance ------------------------------------------------------------------------------ */

static int read_config(mc_plugin *p)
{
    const mc_host *h = p->host;
    int rc = h->config_size(h->ctx, "max_message_size", &p->max_message_size);
    if (rc == 0)
        rc = h->config_int(h->ctx, "queue_depth", &p->queue_depth);
    if (rc == 0)
        rc = h->config_duration_ms(h->ctx, "send_timeout", &p->send_timeout_ms);
    if (rc != 0)
        h->set_error(h->ctx, "cannot read the configuration");
    return rc;
}

static void destroy_sync(mc_plugin *p)
{
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
}

static int template_init(const mc_host *host, mc_plugin **out)
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
    pthread_condattr_t monotonic; /* send_timeout must not jump with the wall clock */
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&p->room, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&p->idle, NULL);
    rc = pthread_create(&p->worker, NULL, worker_main, p);
    if (rc != 0) {
        host->set_error(host->ctx, "cannot start the worker thread: %s", strerror(rc));
        destroy_sync(p);
        free(p);
        return MC_ETRANSPORT;
    }
    host->log(host->ctx, MC_LOG_DEBUG, "ready: max_message_size %llu, queue_depth %lld",
              (unsigned long long)p->max_message_size, (long long)p->queue_depth);
    *out = p;
    return 0;
}

/* Every endpoint is closed when fini runs, so the jobs left have no one to go to. */
static void template_fini(mc_plugin *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->worker, NULL);
    destroy_sync(p);
    free(p);
}

static int template_limits(mc_plugin *p, mc_plugin_limits *out)
{
    out->max_message_size = p->max_message_size;
    return 0;
}

/* ---- endpoints ----------------------------------------------------------------------------- */

static int template_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                             mc_plugin_pub **out)
{
    (void)info;   /* the topic: a transport that names resources after it uses it */
    (void)cookie; /* a publisher's cookie is for host->dropped, which this never calls */
    mc_plugin_pub *pub = calloc(1, sizeof(*pub));
    if (pub == NULL)
        return MC_ENOMEM;
    pub->plugin = p;
    *out = pub;
    return 0;
}

static void template_pub_close(mc_plugin_pub *pub)
{
    free(pub->peers);
    free(pub);
}

static int template_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                             mc_plugin_sub **out)
{
    mc_plugin_sub *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return MC_ENOMEM;
    *sub = (mc_plugin_sub){.plugin = p, .id = info->id, .cookie = cookie};
    pthread_mutex_lock(&p->lock);
    sub->next = p->subs;
    p->subs = sub;
    pthread_mutex_unlock(&p->lock);
    *out = sub;
    return 0;
}

static bool on_worker(const mc_plugin *p)
{
    return pthread_equal(pthread_self(), p->worker);
}

/* After this returns deliver() never sees the subscriber's cookie again: queued jobs find
 * it gone, and deliveries running on the worker are waited for (unless this is the
 * worker, closing it from another subscriber's callback). */
static void template_sub_close(mc_plugin_sub *sub)
{
    mc_plugin *p = sub->plugin;
    pthread_mutex_lock(&p->lock);
    for (mc_plugin_sub **link = &p->subs; *link != NULL; link = &(*link)->next) {
        if (*link == sub) {
            *link = sub->next;
            break;
        }
    }
    while (sub->in_flight > 0 && !on_worker(p))
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    free(sub);
}

/* Called with the context lock held: quick, and no waiting for the worker. */
static int template_pub_connect(mc_plugin_pub *pub, const mc_peer *sub)
{
    mc_plugin *p = pub->plugin;
    pthread_mutex_lock(&p->lock);
    mc_endpoint_id *grown = realloc(pub->peers, (pub->count + 1) * sizeof(*grown));
    if (grown != NULL) {
        pub->peers = grown;
        pub->peers[pub->count++] = sub->id;
    }
    pthread_mutex_unlock(&p->lock);
    if (grown == NULL) {
        p->host->set_error(p->host->ctx, "topic '%s': out of memory connecting", sub->topic);
        return MC_ENOMEM;
    }
    return 0;
}

static void template_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
    pthread_mutex_lock(&pub->plugin->lock);
    for (size_t i = 0; i < pub->count; i++) {
        if (memcmp(&pub->peers[i], sub, sizeof(*sub)) == 0) {
            pub->peers[i] = pub->peers[--pub->count];
            break;
        }
    }
    pthread_mutex_unlock(&pub->plugin->lock);
}

/* ---- sending ------------------------------------------------------------------------------- */

/* The message and its receivers as they are now (sample->data is only borrowed). */
static job *job_new_locked(const mc_plugin_pub *pub, const mc_sample *sample)
{
    job *j = malloc(sizeof(*j) + (sample->size ? sample->size : 1));
    mc_endpoint_id *targets = malloc(pub->count * sizeof(*targets));
    if (j == NULL || targets == NULL) {
        free(j);
        free(targets);
        return NULL;
    }
    if (sample->size > 0)
        memcpy(j->payload, sample->data, sample->size);
    memcpy(targets, pub->peers, pub->count * sizeof(*targets));
    j->next = NULL;
    j->sample = *sample;
    j->sample.data = j->payload;
    j->targets = targets;
    j->target_count = pub->count;
    return j;
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

/* Waits for the queue to have room. The worker never waits: it would wait for itself. */
static int wait_for_room_locked(mc_plugin *p)
{
    struct timespec deadline = deadline_after_ms(p->send_timeout_ms);
    while (p->queued >= p->queue_depth && !on_worker(p)) {
        if (p->stopping)
            return MC_ECLOSED;
        if (pthread_cond_timedwait(&p->room, &p->lock, &deadline) == ETIMEDOUT &&
            p->queued >= p->queue_depth)
            return MC_EAGAIN;
    }
    return 0;
}

static int template_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    mc_plugin *p = pub->plugin;
    if (sample->size > p->max_message_size) {
        p->host->set_error(p->host->ctx, "message of %llu bytes exceeds max_message_size %llu",
                           (unsigned long long)sample->size,
                           (unsigned long long)p->max_message_size);
        return MC_EMSGSIZE;
    }
    pthread_mutex_lock(&p->lock);
    int rc = pub->count == 0 ? 0 : wait_for_room_locked(p);
    job *j = rc == 0 && pub->count > 0 ? job_new_locked(pub, sample) : NULL;
    if (rc == 0 && pub->count > 0 && j == NULL)
        rc = MC_ENOMEM;
    if (j != NULL) {
        if (p->tail != NULL)
            p->tail->next = j;
        else
            p->head = j;
        p->tail = j;
        p->queued++;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc == MC_EAGAIN)
        p->host->set_error(p->host->ctx,
                           "queue full (%lld messages) for %lld ms: the "
                           "subscribers do not keep up",
                           (long long)p->queue_depth, (long long)p->send_timeout_ms);
    else if (rc != 0)
        p->host->set_error(p->host->ctx, "cannot queue a message of %llu bytes",
                           (unsigned long long)sample->size);
    return rc;
}

/* ---- descriptor ------------------------------------------------------------------------------ */

static const mc_plugin_ops template_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = template_init,
    .fini = template_fini,
    .limits = template_limits,
    .pub_open = template_pub_open,
    .pub_close = template_pub_close,
    .sub_open = template_sub_open,
    .sub_close = template_sub_close,
    .pub_connect = template_pub_connect,
    .pub_disconnect = template_pub_disconnect,
    .send = template_send,
};

static const mc_plugin_descriptor template_descriptor = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "template",
    .version = "0.1.0",
    .description = "delivers between endpoints of one context, on a worker thread",
    .roles = MC_ROLE_DATA,
    .scopes = MC_SCOPE_PROCESS,
    .caps = MC_CAP_ORDERED | MC_CAP_RELIABLE | MC_CAP_THREAD_SAFE,
    .config = template_config,
    .ops = &template_ops,
};

MC_PLUGIN_DEFINE(template_descriptor)
