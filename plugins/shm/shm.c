/*
 * shm: publish/subscribe between processes of one host through POSIX shared memory.
 *
 * Each publisher owns one segment (a ring of N slots plus one spare per subscribing
 * context and one more, at least two, a header and a subscriber table), replaced by a new
 * generation when a message does not fit or more contexts subscribe. Each subscribing
 * instance owns one doorbell segment and one wait thread that reads every publisher it is
 * attached to. No lock is shared between processes: the ring is driven by
 * atomics and futexes, and every wait is bounded. doc/shm.md has the layout and protocol.
 *
 * This file: the descriptor, the [shm] configuration, the instance, and the doorbells of
 * remote subscribers that publishers ring.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm.h"

static const mc_config_key shm_config_schema[] = {
    {.name = "slots",
     .type = MC_CFG_INT,
     .default_value = "0",
     .doc = "messages a publisher keeps for its subscribers: a subscriber more than this many "
            "messages behind loses the oldest (counted as overrun); 0: by slot size, 64 while "
            "they take at most 1 MiB, fewer for larger slots, never fewer than 8",
     .min = 0,
     .max = 1024},
    {.name = "min_size",
     .type = MC_CFG_SIZE,
     .default_value = "4K",
     .doc = "payload bytes of each slot of a new publisher; a larger message makes the publisher "
            "move to a larger segment",
     .min = 64,
     .max = INT64_C(1) << 40},
    {.name = "reserve_percent",
     .type = MC_CFG_INT,
     .default_value = "50",
     .doc = "when a message does not fit, the new slots hold it plus this many percent",
     .min = 0,
     .max = 1000},
    {.name = "max_message_size",
     .type = MC_CFG_SIZE,
     .default_value = "256M",
     .doc = "largest message carried; a larger publish fails with MC_EMSGSIZE",
     .min = 1,
     .max = INT64_C(1) << 40},
    {.name = "mode",
     .type = MC_CFG_STRING,
     .default_value = "0600",
     .doc = "octal permissions of the segments (0600: this user only; 0660: also the group); "
            "must include 0600"},
    {.name = "ack_timeout",
     .type = MC_CFG_DURATION,
     .default_value = "0",
     .doc = "reliable mode when > 0: a publisher does not overwrite a message before every live "
            "subscriber read it, waiting at most this long for each slow one, which is then "
            "dropped from reliable delivery until it catches up",
     .min = 0,
     .max = 3600000},
    {.name = "pin_timeout",
     .type = MC_CFG_DURATION,
     .default_value = "1ms",
     .doc = "longest a publisher waits for a reader still inside the callback of a message it "
            "is about to reuse the slot of; after that the reader counts the message as overrun",
     .min = 0,
     .max = 1000},
    {.name = "max_subscribers",
     .type = MC_CFG_INT,
     .default_value = "64",
     .doc = "subscribers one publisher tracks (entries of its subscriber table); further ones "
            "are served best effort: not waited for in reliable mode",
     .min = 1,
     .max = MC_SHM_MAX_TABLE_ENTRIES},
    {.name = "spin_us",
     .type = MC_CFG_INT,
     .default_value = "0",
     .doc = "microseconds a subscriber's wait thread keeps looking for new messages before it "
            "sleeps: trades CPU for latency (a wake-up from sleep costs a few microseconds)",
     .min = 0,
     .max = 1000000},
    {.name = "look_us",
     .type = MC_CFG_INT,
     .default_value = "5",
     .doc = "microseconds a subscriber's wait thread that just delivered keeps looking before it "
            "sleeps, while that pays: after looks that found nothing it sleeps at once for the "
            "next 1, 2, 4 ... up to 64 sleeps (0: never; spin_us > 0 replaces it)",
     .min = 0,
     .max = 1000},
    {.name = "uncached_copy_min",
     .type = MC_CFG_SIZE,
     .default_value = "768K",
     .doc = "a published message of at least this many bytes is copied into shared memory with "
            "non-temporal stores, which go to memory without filling the publisher's cache: the "
            "subscribers, on other cores, read it from memory instead of from that cache (1 MiB: "
            "2.5 times faster on the development VM; below 768K it was slower); 0: never (an "
            "ordinary copy)",
     .min = 0,
     .max = INT64_C(1) << 40},
    {.name = "segment_wake",
     .type = MC_CFG_BOOL,
     .default_value = "true",
     .doc = "a subscriber's wait thread sleeps on a word in every publisher segment it reads "
            "as well as on its doorbell (futex_waitv, Linux 5.16), so that one wake-up call per "
            "message serves every subscriber process; false: on its doorbell alone, and "
            "publishers wake each subscriber process on its own"},
    {.name = "trusted_owners",
     .type = MC_CFG_STRING,
     .default_value = "",
     .doc = "users (names or uids, comma-separated; * for anyone) whose segments and doorbells "
            "this process opens besides its own user's; a file of anyone else is refused"},
    {.name = "reap",
     .type = MC_CFG_BOOL,
     .default_value = "true",
     .doc = "at start, remove the /dev/shm files of this transport whose owner process is dead "
            "(processes sharing /dev/shm must then share a PID namespace)"},
    {.name = NULL},
};

int mc_shm_fail(mc_plugin *p, int code, const char *fmt, ...)
{
    char detail[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    p->host->set_error(p->host->ctx, "%s", detail);
    return code;
}

/* ---- configuration ------------------------------------------------------------------------ */

/* "0600", "660": octal permission bits that keep read and write for the owner, who must
 * still be able to open what it created. */
static bool parse_mode(const char *text, unsigned *out)
{
    if (text == NULL || text[0] == '\0' || strlen(text) > 4)
        return false;
    unsigned value = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '7')
            return false;
        value = value * 8 + (unsigned)(*c - '0');
    }
    if (value > 0777 || (value & 0600) != 0600)
        return false;
    *out = value;
    return true;
}

static int read_config(mc_plugin *p)
{
    const mc_host *h = p->host;
    shm_config *c = &p->cfg;
    const char *mode = NULL, *owners = NULL;
    int rc = h->config_int(h->ctx, "slots", &c->slots);
    if (rc == 0)
        rc = h->config_size(h->ctx, "min_size", &c->min_size);
    if (rc == 0)
        rc = h->config_int(h->ctx, "reserve_percent", &c->reserve_percent);
    if (rc == 0)
        rc = h->config_size(h->ctx, "max_message_size", &c->max_message_size);
    if (rc == 0)
        rc = h->config_string(h->ctx, "mode", &mode);
    if (rc == 0)
        rc = h->config_duration_ms(h->ctx, "ack_timeout", &c->ack_timeout_ms);
    if (rc == 0)
        rc = h->config_duration_ms(h->ctx, "pin_timeout", &c->pin_timeout_ms);
    if (rc == 0)
        rc = h->config_int(h->ctx, "max_subscribers", &c->max_subscribers);
    if (rc == 0)
        rc = h->config_int(h->ctx, "spin_us", &c->spin_us);
    if (rc == 0)
        rc = h->config_int(h->ctx, "look_us", &c->look_us);
    if (rc == 0)
        rc = h->config_size(h->ctx, "uncached_copy_min", &c->uncached_copy_min);
    if (rc == 0)
        rc = h->config_bool(h->ctx, "segment_wake", &c->segment_wake);
    if (rc == 0)
        rc = h->config_bool(h->ctx, "reap", &c->reap);
    if (rc == 0)
        rc = h->config_string(h->ctx, "trusted_owners", &owners);
    if (rc != 0)
        return mc_shm_fail(p, rc, "reading the [shm] section failed");
    if (!parse_mode(mode, &c->mode))
        return mc_shm_fail(p, MC_ECONFIG,
                           "[shm] mode '%s' is not octal permissions that include 0600 (for "
                           "example 0600 or 0660)",
                           mode ? mode : "");
    if (c->slots == 1)
        return mc_shm_fail(p, MC_ECONFIG,
                           "[shm] slots = 1: a ring needs at least 2 positions (0 sizes it by "
                           "the slot size)");
    char why[300];
    if (!mc_shm_owners_parse(owners, &c->owners, why, sizeof(why)))
        return mc_shm_fail(p, MC_ECONFIG, "[shm] trusted_owners '%s': %s", owners, why);
    return 0;
}

/* ---- doorbells of remote subscribers -------------------------------------------------------- */

int mc_shm_remote_bell_acquire(mc_plugin *p, const char *name, int32_t pid, shm_remote_bell **out)
{
    pthread_mutex_lock(&p->lock);
    shm_remote_bell *rb = p->remote_bells;
    while (rb != NULL && strcmp(rb->name, name) != 0)
        rb = rb->next;
    int rc = 0;
    char err[512] = "";
    if (rb == NULL) {
        rb = calloc(1, sizeof(*rb));
        if (rb == NULL) {
            rc = MC_ENOMEM;
            snprintf(err, sizeof(err), "out of memory");
        } else if ((rc = mc_shm_bell_open(name, pid, &p->cfg.owners, &rb->bell, err,
                                          sizeof(err))) != 0) {
            free(rb);
            rb = NULL;
        } else {
            snprintf(rb->name, sizeof(rb->name), "%s", name);
            rb->next = p->remote_bells;
            p->remote_bells = rb;
        }
    }
    if (rb != NULL)
        rb->refs++;
    pthread_mutex_unlock(&p->lock);
    if (rc != 0)
        return mc_shm_fail(p, rc, "subscriber doorbell: %s", err);
    *out = rb;
    return 0;
}

void mc_shm_remote_bell_release(mc_plugin *p, shm_remote_bell *rb)
{
    pthread_mutex_lock(&p->lock);
    if (--rb->refs == 0) {
        for (shm_remote_bell **link = &p->remote_bells; *link != NULL; link = &(*link)->next) {
            if (*link == rb) {
                *link = rb->next;
                break;
            }
        }
        mc_shm_bell_unmap(rb->bell);
        free(rb);
    }
    pthread_mutex_unlock(&p->lock);
}

/* ---- instance ----------------------------------------------------------------------------- */

static atomic_uint instance_counter;

static void report_reaped(const char *name, void *user)
{
    const mc_host *h = user;
    h->log(h->ctx, MC_LOG_INFO, "removed /dev/shm/%s: its owner process is gone", name);
}

static int shm_init(const mc_host *host, mc_plugin **out)
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
    p->domain_hash = mc_shm_domain_hash(host->domain);
    p->instance = atomic_fetch_add(&instance_counter, 1);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->idle, NULL);
    atomic_init(&p->stopping, false);
    if (p->cfg.reap && mc_shm_reap(false, report_reaped, (void *)host) < 0)
        host->log(host->ctx, MC_LOG_WARN, "cannot scan %s for stale segments: %s", MC_SHM_DIR,
                  strerror(errno));
    *out = p;
    return 0;
}

static void shm_fini(mc_plugin *p)
{
    mc_shm_subscriber_side_stop(p);
    while (p->remote_bells != NULL) {
        /* every publisher was closed first, so this is only ever a leak guard */
        shm_remote_bell *rb = p->remote_bells;
        p->remote_bells = rb->next;
        mc_shm_bell_unmap(rb->bell);
        free(rb);
    }
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int shm_limits(mc_plugin *p, mc_plugin_limits *out)
{
    out->max_message_size = p->cfg.max_message_size;
    return 0;
}

/* ---- descriptor ---------------------------------------------------------------------------- */

static const mc_plugin_ops shm_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = shm_init,
    .fini = shm_fini,
    .limits = shm_limits,
    .pub_open = mc_shm_pub_open,
    .pub_close = mc_shm_pub_close,
    .sub_open = mc_shm_sub_open,
    .sub_close = mc_shm_sub_close,
    .pub_connect = mc_shm_pub_connect,
    .pub_disconnect = mc_shm_pub_disconnect,
    .send = mc_shm_send,
    .sub_connect = mc_shm_sub_connect,
    .sub_disconnect = mc_shm_sub_disconnect,
    .loan = mc_shm_loan,
    .commit = mc_shm_commit,
    .loan_discard = mc_shm_loan_discard,
    .pub_locator = mc_shm_pub_locator,
    .sub_locator = mc_shm_sub_locator,
};

static const mc_plugin_descriptor shm_descriptor = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "shm",
    .version = "0.1.0",
    .description = "processes of one host, through POSIX shared memory, zero-copy",
    .roles = MC_ROLE_DATA,
    .scopes = MC_SCOPE_HOST,
    .caps = MC_CAP_ORDERED | MC_CAP_ZERO_COPY | MC_CAP_MULTI_PROCESS | MC_CAP_THREAD_SAFE |
            MC_CAP_RELIABLE,
    .config = shm_config_schema,
    .ops = &shm_ops,
};

MC_PLUGIN_DEFINE(shm_descriptor)
