/*
 * What this context sends, and when (doc/registration.md has the protocol):
 *  - reg_announce and reg_withdraw send an incremental ANNOUNCE or WITHDRAW at once, from
 *    the caller's thread, each with the next generation;
 *  - init sends a REQUEST so that every context already running announces everything now;
 *  - a REQUEST for us (or for everyone) is answered with a full ANNOUNCE, split over as
 *    many datagrams as it takes; requests closer together than a few ms share one answer;
 *  - a HEARTBEAT every `heartbeat` carries the generation and endpoint count, from which
 *    peers tell whether they missed something;
 *  - fini sends GOODBYE.
 * The receive thread reads datagrams, runs the timers (heartbeat, owed full announce,
 * expiry) and sleeps in poll() until the earliest of them: an idle context wakes only to
 * send its heartbeat.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "udp.h"

#define RECEIVE_BUFFER_SIZE 65536 /* larger than any UDP payload */

static int64_t ms_to_ns(int64_t ms)
{
    return ms * 1000000;
}

static mc_udp_wire_header header_of(const mc_plugin *p, uint8_t type)
{
    const mc_host *host = p->host;
    mc_udp_wire_header h = {.type = type,
                            .part_count = 1,
                            .pid = host->pid,
                            .context_hi = host->context_hi,
                            .context_lo = host->context_lo,
                            .domain = {.data = host->domain, .len = strlen(host->domain)}};
    memcpy(h.host_token, host->host_token, MC_HOST_TOKEN_SIZE);
    return h;
}

/* ---- sending (lock held where the name says so) ---------------------------------------- */

/* What a datagram may hold before its tag (socket.c appends the tag when auth is on). */
static size_t room_before_tag(const mc_plugin *p, size_t datagram_size)
{
    return datagram_size - mc_udp_auth_trailer(&p->auth);
}

static void note_send_locked(mc_plugin *p, int err)
{
    if (err == 0) {
        p->sent++;
        p->last_send_errno = 0;
        return;
    }
    p->send_failed++;
    if (err != p->last_send_errno)
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "port %lld: sending registration failed: %s (counted; peers catch up "
                     "at the next heartbeat)",
                     (long long)p->cfg.port, strerror(err));
    p->last_send_errno = err;
}

/* Sends the datagram in send_buf without blocking: callers may hold the registry lock. */
static void send_buffer_locked(mc_plugin *p, size_t size)
{
    note_send_locked(p, mc_udp_socket_send(p, p->send_buf, size, false));
}

static void send_control_locked(mc_plugin *p, uint8_t type, uint64_t target_hi, uint64_t target_lo)
{
    mc_udp_wire_header h = header_of(p, type);
    h.generation = p->generation;
    h.endpoint_count = (uint32_t)p->local.count;
    h.sequence = p->sequence++;
    h.target_hi = target_hi;
    h.target_lo = target_lo;
    mc_udp_wire_writer w;
    size_t room = room_before_tag(p, MC_UDP_WIRE_DATAGRAM_MAX);
    if (mc_udp_wire_begin(&w, p->send_buf, room, &h) == MC_UDP_WIRE_OK)
        send_buffer_locked(p, mc_udp_wire_end(&w));
}

/* An incremental ANNOUNCE or WITHDRAW of one endpoint; the generation moves on even if the
 * datagram is lost, so that peers notice the gap. */
static void send_change_locked(mc_plugin *p, uint8_t type, const mc_udp_wire_record *r)
{
    mc_udp_wire_header h = header_of(p, type);
    h.generation = ++p->generation;
    h.endpoint_count = (uint32_t)p->local.count;
    h.sequence = p->sequence++;
    mc_udp_wire_writer w;
    size_t room = room_before_tag(p, MC_UDP_WIRE_DATAGRAM_MAX);
    if (mc_udp_wire_begin(&w, p->send_buf, room, &h) == MC_UDP_WIRE_OK &&
        mc_udp_wire_add(&w, r) == MC_UDP_WIRE_OK)
        send_buffer_locked(p, mc_udp_wire_end(&w));
}

void mc_udp_send_request(mc_plugin *p, uint64_t target_hi, uint64_t target_lo)
{
    pthread_mutex_lock(&p->lock);
    send_control_locked(p, MC_UDP_MSG_REQUEST, target_hi, target_lo);
    p->requests_sent++;
    pthread_mutex_unlock(&p->lock);
}

/* ---- the ops --------------------------------------------------------------------------- */

static int record_of(mc_plugin *p, const mc_registration *reg, const char *what,
                     mc_udp_wire_record *r)
{
    mc_udp_wire_record_from(reg, r);
    mc_udp_wire_status st = mc_udp_wire_record_check(r);
    if (st == MC_UDP_WIRE_OK)
        return 0;
    p->host->set_error(p->host->ctx, "topic '%.200s': cannot %s the endpoint: %s",
                       reg->topic != NULL ? reg->topic : "(null)", what,
                       mc_udp_wire_status_name(st));
    return MC_EINVAL;
}

int mc_udp_announce(mc_plugin *p, const mc_registration *reg)
{
    mc_udp_wire_record r;
    int rc = record_of(p, reg, "announce", &r);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&p->lock);
    bool known = mc_udp_idmap_get(&p->local, r.serial) != NULL;
    if (!known && !mc_udp_idmap_put(&p->local, r.serial, &p->local))
        rc = MC_ENOMEM;
    else
        send_change_locked(p, MC_UDP_MSG_ANNOUNCE, &r);
    pthread_mutex_unlock(&p->lock);
    if (rc != 0)
        p->host->set_error(p->host->ctx, "topic '%.200s': out of memory announcing it",
                           r.topic.data);
    return rc;
}

void mc_udp_withdraw(mc_plugin *p, const mc_registration *reg)
{
    mc_udp_wire_record r;
    mc_udp_wire_record_from(reg, &r);
    pthread_mutex_lock(&p->lock);
    if (mc_udp_idmap_remove(&p->local, r.serial) != NULL)
        send_change_locked(p, MC_UDP_MSG_WITHDRAW, &r);
    pthread_mutex_unlock(&p->lock);
}

/* ---- the full announce ------------------------------------------------------------------ */

typedef struct full_list {
    mc_plugin *p;
    mc_udp_wire_batch batch;
    bool started;
    bool failed;
    size_t skipped;
} full_list;

/* endpoint_count is filled in by the batch: the records the list really holds. */
static void full_start(full_list *f, uint32_t generation)
{
    mc_udp_wire_header h = header_of(f->p, MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    h.generation = generation;
    mc_udp_wire_batch_init(&f->batch, &h, room_before_tag(f->p, (size_t)f->p->cfg.max_datagram));
    f->started = true;
}

/* Called by host->local_endpoints with the registry lock held: no announce can run until
 * the list is complete, so the generation read at the first endpoint is exactly the one
 * the list describes. */
static void full_collect(void *user, const mc_registration *reg)
{
    full_list *f = user;
    if (!f->started) {
        pthread_mutex_lock(&f->p->lock);
        uint32_t generation = f->p->generation;
        pthread_mutex_unlock(&f->p->lock);
        full_start(f, generation);
    }
    if (f->failed)
        return;
    mc_udp_wire_record r;
    mc_udp_wire_record_from(reg, &r);
    mc_udp_wire_status st = mc_udp_wire_batch_add(&f->batch, &r);
    if (st == MC_UDP_WIRE_NO_MEMORY || st == MC_UDP_WIRE_TOO_MANY_PARTS)
        f->failed = true;
    else if (st != MC_UDP_WIRE_OK)
        f->skipped++;
}

static void full_send(mc_plugin *p, const mc_udp_wire_batch *b)
{
    pthread_mutex_lock(&p->lock);
    uint32_t first = p->sequence; /* the parts carry consecutive sequence numbers */
    p->sequence += (uint32_t)b->count;
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < b->count; i++) {
        mc_udp_wire_set_sequence(b->items[i].data, first + (uint32_t)i);
        /* This thread may wait for buffer space; the registry lock is not held here. */
        int err = mc_udp_socket_send(p, b->items[i].data, b->items[i].size, true);
        pthread_mutex_lock(&p->lock);
        note_send_locked(p, err);
        pthread_mutex_unlock(&p->lock);
    }
}

static void send_full(mc_plugin *p)
{
    full_list f = {.p = p};
    /* With no endpoint the list is empty; a generation read before listing is then safe
     * (peers re-apply later increments, which are idempotent). */
    pthread_mutex_lock(&p->lock);
    uint32_t generation = p->generation;
    pthread_mutex_unlock(&p->lock);
    p->host->local_endpoints(p->host->ctx, full_collect, &f);
    if (!f.started)
        full_start(&f, generation);
    if (f.failed || mc_udp_wire_batch_finish(&f.batch) != MC_UDP_WIRE_OK)
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "out of memory listing this context's endpoints; peers ask again "
                     "at the next heartbeat");
    else
        full_send(p, &f.batch);
    if (f.skipped > 0)
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "%zu endpoints left out of the announcement: not representable", f.skipped);
    mc_udp_wire_batch_free(&f.batch);
    p->stats.fulls_sent++;
}

static void schedule_full(mc_plugin *p, int64_t now)
{
    if (p->full_due_ns != 0)
        return; /* this request shares the answer already owed */
    int64_t earliest = p->last_full_ns + MC_UDP_FULL_COALESCE_NS;
    p->full_due_ns = now > earliest ? now : earliest;
}

/* ---- receiving ------------------------------------------------------------------------- */

static void log_rejected(mc_plugin *p, mc_udp_wire_status st, uint32_t source)
{
    mc_udp_wire_class cls = mc_udp_wire_status_class(st);
    mc_log_level first = cls == MC_UDP_CLASS_MALFORMED ? MC_LOG_WARN
                         : cls == MC_UDP_CLASS_FUTURE  ? MC_LOG_WARN
                                                       : MC_LOG_INFO;
    bool once = !p->warned[st];
    p->warned[st] = true;
    p->host->log(p->host->ctx, once ? first : MC_LOG_DEBUG,
                 "port %lld: ignored a datagram from %u.%u.%u.%u: %s%s", (long long)p->cfg.port,
                 source >> 24, (source >> 16) & 0xff, (source >> 8) & 0xff, source & 0xff,
                 mc_udp_wire_status_name(st),
                 once ? " (more are counted and logged at debug level)" : "");
}

static void count_rejected(mc_plugin *p, mc_udp_wire_status st, uint32_t source)
{
    switch (mc_udp_wire_status_class(st)) {
    case MC_UDP_CLASS_OTHER_DOMAIN:
        p->stats.other_domain++;
        break;
    case MC_UDP_CLASS_FUTURE:
        p->stats.future++;
        break;
    default:
        p->stats.malformed++;
        break;
    }
    log_rejected(p, st, source);
}

static bool from_loopback(uint32_t source)
{
    return (source >> 24) == 127;
}

static void log_source(char *text, size_t size, uint32_t source)
{
    snprintf(text, size, "%u.%u.%u.%u", source >> 24, (source >> 16) & 0xff, (source >> 8) & 0xff,
             source & 0xff);
}

/* Auth on: true when the datagram's tag verifies; then *size no longer counts the tag. */
static bool authentic(mc_plugin *p, size_t *size, uint32_t source)
{
    if (mc_udp_auth_verify(&p->auth, p->recv_buf, *size)) {
        *size -= MC_UDP_AUTH_TAG_SIZE;
        return true;
    }
    p->stats.unauthenticated++;
    char from[16];
    log_source(from, sizeof(from), source);
    p->host->log(p->host->ctx, p->warned_unauthenticated ? MC_LOG_DEBUG : MC_LOG_WARN,
                 "port %lld: dropped a datagram from %s without a valid tag of [udp] "
                 "auth_key_file '%s'%s",
                 (long long)p->cfg.port, from, p->cfg.auth_key_file,
                 p->warned_unauthenticated ? "" : " (more are counted and logged at debug level)");
    p->warned_unauthenticated = true;
    return false;
}

/* Auth off: a datagram rejected for its last bytes that parses without 16 of them most
 * likely comes from a context with auth_key_file set; say so once, it is still dropped. */
static void hint_tagged(mc_plugin *p, mc_udp_wire_status st, size_t size, uint32_t source)
{
    mc_udp_wire_message msg;
    if (p->warned_tagged || st != MC_UDP_WIRE_TRAILING_BYTES || size < MC_UDP_AUTH_TAG_SIZE ||
        mc_udp_wire_decode(p->recv_buf, size - MC_UDP_AUTH_TAG_SIZE, p->host->domain, &msg) !=
            MC_UDP_WIRE_OK)
        return;
    p->warned_tagged = true;
    char from[16];
    log_source(from, sizeof(from), source);
    p->host->log(p->host->ctx, MC_LOG_WARN,
                 "port %lld: datagrams from %s end in what looks like an authentication tag: "
                 "that process has [udp] auth_key_file set and this one does not; they are "
                 "dropped as malformed",
                 (long long)p->cfg.port, from);
}

static bool for_us(const mc_plugin *p, const mc_udp_wire_header *h)
{
    bool everyone = h->target_hi == 0 && h->target_lo == 0;
    return everyone || (h->target_hi == p->host->context_hi && h->target_lo == p->host->context_lo);
}

static void handle_datagram(mc_plugin *p, size_t size, uint32_t source, int64_t now)
{
    if (p->cfg.mode == MC_UDP_MODE_LOCAL && !from_loopback(source)) {
        p->stats.foreign_source++; /* cannot happen with the bind of socket.c; cheap to check */
        if (!p->warned_foreign)
            p->host->log(p->host->ctx, MC_LOG_WARN,
                         "port %lld: ignored a datagram from outside the loopback "
                         "network (local mode)",
                         (long long)p->cfg.port);
        p->warned_foreign = true;
        return;
    }
    /* Nothing of an unauthenticated datagram is parsed, not even its magic. */
    if (p->auth.on && !authentic(p, &size, source))
        return;
    mc_udp_wire_message msg;
    mc_udp_wire_status st = mc_udp_wire_decode(p->recv_buf, size, p->host->domain, &msg);
    if (st != MC_UDP_WIRE_OK) {
        count_rejected(p, st, source);
        if (!p->auth.on)
            hint_tagged(p, st, size, source);
        return;
    }
    const mc_udp_wire_header *h = &msg.header;
    if (h->context_hi == p->host->context_hi && h->context_lo == p->host->context_lo) {
        p->stats.own++;
        return;
    }
    p->stats.accepted++;
    mc_udp_peers_handle(p, &msg, now);
    if (h->type == MC_UDP_MSG_REQUEST && for_us(p, h))
        schedule_full(p, now);
}

static void note_kernel_drops(mc_plugin *p, uint32_t drops)
{
    if (drops <= p->stats.kernel_dropped)
        return;
    if (!p->warned_kernel_drops)
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "port %lld: the kernel dropped %u registration datagrams (receive "
                     "queue full); the protocol recovers them, but raise net.core.rmem_max if "
                     "this repeats",
                     (long long)p->cfg.port, drops);
    p->warned_kernel_drops = true;
    p->stats.kernel_dropped = drops;
}

static void read_burst(mc_plugin *p)
{
    int64_t now = p->host->now_ns();
    for (int i = 0; i < MC_UDP_RECV_BURST; i++) {
        size_t size = 0;
        uint32_t source = 0;
        uint32_t drops = (uint32_t)p->stats.kernel_dropped;
        int r = mc_udp_socket_recv(p, p->recv_buf, RECEIVE_BUFFER_SIZE, &size, &source, &drops);
        if (r == MC_UDP_RECV_NONE || r == MC_UDP_RECV_ERROR)
            return;
        p->stats.received++;
        note_kernel_drops(p, drops);
        if (r == MC_UDP_RECV_TRUNCATED)
            p->stats.malformed++;
        else
            handle_datagram(p, size, source, now);
    }
}

/* ---- the thread --------------------------------------------------------------------------- */

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Runs what is due and returns when something next will be. */
static int64_t run_timers(mc_plugin *p, int64_t now)
{
    if (now >= p->next_heartbeat_ns) {
        pthread_mutex_lock(&p->lock);
        send_control_locked(p, MC_UDP_MSG_HEARTBEAT, 0, 0);
        pthread_mutex_unlock(&p->lock);
        p->next_heartbeat_ns = now + ms_to_ns(p->cfg.heartbeat_ms);
        /* Our own heartbeat has looped back by now: read it here rather than be woken
         * for it, so that an idle context wakes once per heartbeat, not twice. */
        read_burst(p);
    }
    if (p->full_due_ns != 0 && now >= p->full_due_ns) {
        p->full_due_ns = 0;
        p->last_full_ns = now;
        send_full(p);
    }
    int64_t next = earliest(p->next_heartbeat_ns, mc_udp_peers_expire(p, now));
    return p->full_due_ns != 0 ? earliest(next, p->full_due_ns) : next;
}

static int poll_timeout_ms(int64_t deadline, int64_t now)
{
    if (deadline <= now)
        return 0;
    int64_t wait = deadline - now;
    if (wait >= (int64_t)INT_MAX * 1000000)
        return INT_MAX;
    return (int)((wait + 999999) / 1000000); /* round up: waking early would spin */
}

static void *receive_thread(void *arg)
{
    mc_plugin *p = arg;
    while (!atomic_load(&p->stopping)) {
        int64_t now = p->host->now_ns();
        int64_t next = run_timers(p, now);
        struct pollfd fds[2] = {{.fd = p->fd, .events = POLLIN},
                                {.fd = p->wake_fd, .events = POLLIN}};
        if (poll(fds, 2, poll_timeout_ms(next, p->host->now_ns())) > 0 && (fds[0].revents & POLLIN))
            read_burst(p);
    }
    return NULL;
}

int mc_udp_registration_start(mc_plugin *p)
{
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->recv_buf = malloc(RECEIVE_BUFFER_SIZE);
    if (p->wake_fd < 0 || p->recv_buf == NULL) {
        p->host->set_error(p->host->ctx, "cannot create the receive thread's %s: %s",
                           p->wake_fd < 0 ? "eventfd" : "buffer", strerror(errno));
        return p->wake_fd < 0 ? MC_ETRANSPORT : MC_ENOMEM;
    }
    int64_t now = p->host->now_ns();
    p->next_heartbeat_ns = now + ms_to_ns(p->cfg.heartbeat_ms);
    p->last_full_ns = now - MC_UDP_FULL_COALESCE_NS;
    /* Sent before the thread runs: the answers wait in the socket's queue. */
    mc_udp_send_request(p, 0, 0);
    int rc = pthread_create(&p->thread, NULL, receive_thread, p);
    if (rc != 0) {
        p->host->set_error(p->host->ctx, "cannot start the receive thread: %s", strerror(rc));
        return MC_ETRANSPORT;
    }
    p->thread_started = true;
    return 0;
}

void mc_udp_registration_stop(mc_plugin *p)
{
    if (p->thread_started) {
        atomic_store(&p->stopping, true);
        uint64_t one = 1;
        ssize_t n = write(p->wake_fd, &one, sizeof(one));
        (void)n; /* an eventfd write fails only when the counter is full: already woken */
        pthread_join(p->thread, NULL);
        p->thread_started = false;
        pthread_mutex_lock(&p->lock);
        send_control_locked(p, MC_UDP_MSG_GOODBYE, 0, 0);
        pthread_mutex_unlock(&p->lock);
    }
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    p->wake_fd = -1;
    free(p->recv_buf);
    p->recv_buf = NULL;
}

void mc_udp_log_stats(mc_plugin *p)
{
    const udp_recv_stats *s = &p->stats;
    p->host->log(p->host->ctx, MC_LOG_DEBUG,
                 "datagrams: sent %llu (failed %llu, requests %llu, full announces %llu); "
                 "received %llu, accepted %llu, own %llu, other domain %llu, newer version "
                 "%llu, malformed %llu, unauthenticated %llu, not loopback %llu, after goodbye "
                 "%llu, kernel drops %llu, lost %llu, stale %llu; contexts expired %llu, said "
                 "goodbye %llu; over limits %llu",
                 (unsigned long long)p->sent, (unsigned long long)p->send_failed,
                 (unsigned long long)p->requests_sent, (unsigned long long)s->fulls_sent,
                 (unsigned long long)s->received, (unsigned long long)s->accepted,
                 (unsigned long long)s->own, (unsigned long long)s->other_domain,
                 (unsigned long long)s->future, (unsigned long long)s->malformed,
                 (unsigned long long)s->unauthenticated, (unsigned long long)s->foreign_source,
                 (unsigned long long)s->departed, (unsigned long long)s->kernel_dropped,
                 (unsigned long long)s->lost, (unsigned long long)s->stale,
                 (unsigned long long)s->expired, (unsigned long long)s->goodbyes,
                 (unsigned long long)s->over_limit);
}
