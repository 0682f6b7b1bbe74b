/*
 * The subscriber side: one doorbell and one wait thread per instance, reading every
 * publisher segment its subscribers are attached to.
 *
 * The wait thread sleeps on its doorbell (and, with futex_waitv, on the readers_bell of
 * every segment it reads) only after saying so (sleeping, readers_armed) and looking at
 * every publisher once more, so a commit is never slept through; publishers wake it only
 * when it sleeps. A wait timeout (1 s, only while attached to someone) is a safety net
 * that also lets it notice publishers that died.
 *
 * An attachment (one subscriber, one publisher) is read with no lock held: while the
 * thread has it (busy) nobody frees it; sub_disconnect and sub_close only mark it, and
 * sub_close waits for the batch in flight to end.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"

#define SAFETY_WAIT_NS    INT64_C(1000000000)
#define LIVENESS_EVERY_NS INT64_C(1000000000)
#define MAX_SEGMENT_SIZE  (UINT64_C(1) << 52)
#define FOLLOW_ATTEMPTS   64
#define DRAIN_NS          INT64_C(1000000000)
#define CLOCK_EVERY       16u

struct shm_sub {
    mc_plugin *plugin;
    void *cookie;
    mc_endpoint_id id;
    char topic[MC_TOPIC_MAX + 1];
    unsigned in_flight; /* batches being delivered; instance lock */
    atomic_bool closing;
    shm_sub *next;
};

/* One mapped generation of a publisher. */
typedef struct mapping {
    uint32_t gen;
    unsigned char *base;
    uint64_t size;
    mc_shm_geometry geo;
    mc_shm_expect expect;
} mapping;

struct shm_att {
    shm_sub *sub;
    mc_endpoint_id pub_id;
    int32_t pub_pid;
    uint64_t pub_start_time;
    char base_name[MC_SHM_NAME_MAX + 1]; /* the segment name before "-g<generation>" */
    mapping m;
    mc_shm_reader reader;
    int entry; /* our subscriber table entry in m, or -1 */
    uint32_t ticket;
    uint32_t table_version;
    bool table_searched;
    bool busy;          /* the wait thread reads it now; instance lock */
    atomic_bool detach; /* free it when the thread is done; set under the instance lock */
    atomic_bool owner_gone;
    /* Set by sub_disconnect: messages the publisher wrote before it left (a goodbye often
     * comes before the last messages are read) are still delivered, until caught up or
     * until this CLOCK_MONOTONIC time; then the thread frees it. 0: not draining. */
    _Atomic int64_t drain_deadline;
    bool finished; /* nothing more will come: closed, gone, or dropped as corrupt */
    shm_att *next;
};

static _Thread_local bool on_wait_thread;

bool mc_shm_on_wait_thread(void)
{
    return on_wait_thread;
}

static void log_at(mc_plugin *p, mc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void log_at(mc_plugin *p, mc_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    p->host->vlog(p->host->ctx, level, fmt, ap);
    va_end(ap);
}

/* ---- mappings ------------------------------------------------------------------------------ */

static void mapping_close(mapping *m)
{
    if (m->base != NULL)
        munmap(m->base, (size_t)m->size);
    m->base = NULL;
}

/* Readers cannot write payload: a callback that scribbles on a message faults instead of
 * corrupting what other subscribers read. */
static void protect_payload(mapping *m)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0 && m->geo.slots_offset % (uint64_t)page == 0)
        mprotect(m->base + m->geo.slots_offset, (size_t)(m->size - m->geo.slots_offset), PROT_READ);
}

static int mapping_open(const shm_att *att, uint32_t gen, mapping *m, char *err, size_t err_size)
{
    char name[MC_SHM_NAME_MAX + 1];
    memset(m, 0, sizeof(*m));
    if (mc_shm_segment_name(name, sizeof(name), att->base_name, gen) < 0) {
        snprintf(err, err_size, "generation %u: name too long", gen);
        return MC_EINVAL;
    }
    void *base = NULL;
    uint64_t size = 0;
    int rc = mc_shm_segment_open(name, &att->sub->plugin->cfg.owners, sizeof(mc_shm_header),
                                 MAX_SEGMENT_SIZE, &base, &size, err, err_size);
    if (rc != 0)
        return rc;
    m->gen = gen;
    m->base = base;
    m->size = size;
    m->expect = (mc_shm_expect){
        .generation = gen, .publisher = att->pub_id, .owner_pid = att->pub_pid, .file_size = size};
    const char *problem = mc_shm_header_check(m->base, &m->expect, &m->geo);
    if (problem != NULL) {
        snprintf(err, err_size, "segment %s: %s", name, problem);
        mapping_close(m);
        return MC_EINVAL;
    }
    protect_payload(m);
    return 0;
}

/* Sequentially consistent: the thread's last look before sleeping must see a growth
 * whose ring found it not yet asleep (see grow in publisher.c). */
static uint32_t next_generation_of(const mapping *m)
{
    return atomic_load(&mc_shm_hdr(m->base)->next_generation);
}

/* The newest generation: the anchor (generation 0) names it; if it was replaced since,
 * its next_generation leads on. A generation may vanish between reading its number and
 * opening it (the publisher grew again and removed it): then ask the anchor again. */
static int mapping_open_newest(const shm_att *att, mapping *out, char *err, size_t err_size)
{
    mapping cur;
    int rc = mapping_open(att, 0, &cur, err, err_size);
    uint32_t next = rc == 0 ? atomic_load_explicit(&mc_shm_hdr(cur.base)->newest_generation,
                                                   memory_order_acquire)
                            : 0;
    for (int step = 0; rc == 0 && step < FOLLOW_ATTEMPTS; step++) {
        if (next == 0) {
            *out = cur;
            return 0;
        }
        mapping m;
        rc = next > cur.gen ? mapping_open(att, next, &m, err, err_size) : MC_EINVAL;
        if (rc == MC_EINVAL && next <= cur.gen)
            snprintf(err, err_size, "generation %u does not follow %u", next, cur.gen);
        mapping_close(&cur);
        if (rc == 0) {
            cur = m;
            next = next_generation_of(&cur);
        } else if (rc == MC_ENOENT && (rc = mapping_open(att, 0, &cur, err, err_size)) == 0) {
            next = atomic_load_explicit(&mc_shm_hdr(cur.base)->newest_generation,
                                        memory_order_acquire);
        }
    }
    if (rc != 0)
        return rc;
    mapping_close(&cur);
    snprintf(err, err_size,
             "the publisher replaced its segment more than %d times while we opened it",
             FOLLOW_ATTEMPTS);
    return MC_EAGAIN;
}

static void att_free(shm_att *att)
{
    mapping_close(&att->m);
    free(att);
}

/* ---- the subscriber table ------------------------------------------------------------------ */

static mc_shm_entry *att_entry(shm_att *att)
{
    return mc_shm_entry_of(att->m.base, &att->m.geo, (uint32_t)att->entry);
}

/* The 48-bit cursor of an entry as a full message number near written. */
static uint64_t cursor_near(uint64_t word, uint64_t written)
{
    uint64_t value = (written & ~MC_SHM_CURSOR_MASK) | (word & MC_SHM_CURSOR_MASK);
    return value > written && value >= MC_SHM_CURSOR_MASK + 1 ? value - (MC_SHM_CURSOR_MASK + 1)
                                                              : value;
}

static void att_report_cursor(shm_att *att)
{
    if (att->entry >= 0 && !mc_shm_entry_advance(att->m.base, &att->m.geo, (uint32_t)att->entry,
                                                 att->ticket, att->reader.cursor))
        att->entry = -1; /* the publisher took the entry back */
}

/* Looks for the entry the publisher made for us, when the table changed since we last
 * looked. Returns its cursor (where the publisher matched us) or UINT64_MAX. The caller
 * then reports its own cursor (which only ever raises the entry's). */
static uint64_t att_adopt_entry(shm_att *att)
{
    mc_shm_header *h = mc_shm_hdr(att->m.base);
    uint32_t version = atomic_load(&h->table_version);
    if (att->entry >= 0 || (att->table_searched && version == att->table_version))
        return UINT64_MAX;
    att->table_version = version;
    att->table_searched = true;
    int index = mc_shm_table_find(att->m.base, &att->m.geo, &att->sub->id, &att->ticket);
    if (index < 0)
        return UINT64_MAX;
    att->entry = index;
    mc_shm_entry *e = att_entry(att);
    atomic_store_explicit(&e->gen, att->m.gen, memory_order_relaxed);
    return cursor_near(atomic_load(&e->cursor), atomic_load(&h->write_seq));
}

/* After the publisher gave up waiting for us (ack_timeout), we hold it back again once we
 * have caught up. */
static void att_maybe_rejoin(mc_plugin *p, shm_att *att)
{
    if (att->entry < 0 || !(__atomic_load_n(&mc_shm_hdr(att->m.base)->flags, __ATOMIC_RELAXED) &
                            MC_SHM_FLAG_RELIABLE))
        return;
    mc_shm_entry *e = att_entry(att);
    uint32_t dropped = MC_SHM_ENTRY_DROPPED;
    if ((atomic_load(&e->ticket) & 0xffffu) != att->ticket ||
        !atomic_compare_exchange_strong(&e->state, &dropped, MC_SHM_ENTRY_ACTIVE))
        return;
    atomic_fetch_add(&mc_shm_hdr(att->m.base)->table_version, 1);
    log_at(p, MC_LOG_INFO, "topic '%s': caught up with the publisher in pid %d: reliable again",
           att->sub->topic, (int)att->pub_pid);
}

/* ---- reading one attachment ---------------------------------------------------------------- */

static void att_finish(shm_att *att)
{
    att->finished = true;
    mapping_close(&att->m);
}

static void att_drop(mc_plugin *p, shm_att *att, const char *problem)
{
    log_at(p, MC_LOG_ERROR,
           "topic '%s': the segment of the publisher in pid %d (%s-g%u) is corrupt: %s; "
           "no longer reading it",
           att->sub->topic, (int)att->pub_pid, att->base_name, att->m.gen, problem);
    att_finish(att);
}

/* Messages from cursor up to seq, both read from shared memory: a distance no ring's
 * cursors could have (half the 48-bit space or more) is a corrupt header, not a count. */
static uint64_t plausible_gap(uint64_t cursor, uint64_t seq)
{
    uint64_t gap = (seq - cursor) & MC_SHM_CURSOR_MASK;
    return gap < (UINT64_C(1) << (MC_SHM_CURSOR_BITS - 1)) ? gap : 0;
}

/* Counted for the subscriber and, where the framework can (ABI 1.1), for its publisher. */
static void report_lost(mc_plugin *p, shm_att *att, uint64_t lost)
{
    if (lost == 0)
        return;
    if (MC_HAS(p->host, mc_host, dropped_from))
        p->host->dropped_from(p->host->ctx, att->sub->cookie, &att->pub_id, MC_DROP_OVERRUN, lost);
    else
        p->host->dropped(p->host->ctx, att->sub->cookie, MC_DROP_OVERRUN, lost);
}

/* A publisher killed after it grew, whose files a new context reaped before we followed:
 * nothing is corrupt, but what it wrote in the newer generations cannot be read, nor
 * counted (their write sequence went with them). Said, so that the loss is not silent. */
static void att_gone_unread(mc_plugin *p, shm_att *att, uint32_t next)
{
    log_at(p, MC_LOG_WARN,
           "topic '%s': the publisher in pid %d is gone and its segment was removed before we "
           "read generation %u: what it wrote there is lost, and how much is unknown",
           att->sub->topic, (int)att->pub_pid, next);
    att_finish(att);
}

/* Moves to the generation that replaced the one read to its end. */
static void att_follow(mc_plugin *p, shm_att *att, uint32_t next)
{
    char err[600];
    mapping m;
    int rc = next > att->m.gen ? mapping_open(att, next, &m, err, sizeof(err)) : MC_EINVAL;
    if (rc == MC_ENOENT) /* replaced again and removed: go to the newest */
        rc = mapping_open_newest(att, &m, err, sizeof(err));
    else if (rc == MC_EINVAL && next <= att->m.gen)
        snprintf(err, sizeof(err), "next generation %u does not follow %u", next, att->m.gen);
    if (rc == MC_ENOENT && !mc_shm_owner_alive(att->pub_pid, att->pub_start_time)) {
        att_gone_unread(p, att, next);
        return;
    }
    if (rc != 0) {
        att_drop(p, att, err);
        return;
    }
    uint64_t base_seq = __atomic_load_n(&mc_shm_hdr(m.base)->base_seq, __ATOMIC_RELAXED);
    if (base_seq < att->reader.cursor) {
        mapping_close(&m);
        att_drop(p, att, "a new generation starts before the end of the previous one");
        return;
    }
    report_lost(p, att, plausible_gap(att->reader.cursor, base_seq));
    mapping_close(&att->m);
    att->m = m;
    att->reader.base = m.base;
    att->reader.geo = m.geo;
    att->reader.cursor = base_seq;
    att->reader.known_written = 0;
    att->entry = -1;
    att->table_searched = false;
    att_adopt_entry(att);
    att_report_cursor(att);
}

static void unlink_publisher_files(const shm_att *att)
{
    char name[MC_SHM_NAME_MAX + 1];
    if (mc_shm_segment_name(name, sizeof(name), att->base_name, att->m.gen) >= 0)
        shm_unlink(name);
    if (mc_shm_segment_name(name, sizeof(name), att->base_name, 0) >= 0)
        shm_unlink(name);
}

/* Everything written was read: follow a new generation, or finish when the publisher
 * closed or died. True when something changed. */
static bool att_at_end(mc_plugin *p, shm_att *att)
{
    mc_shm_header *h = mc_shm_hdr(att->m.base);
    uint32_t next = next_generation_of(&att->m);
    bool closed = atomic_load_explicit(&h->closed, memory_order_acquire) != 0;
    bool gone = atomic_load(&att->owner_gone);
    /* the flags were read first: a message committed before them is visible now */
    if (atomic_load_explicit(&h->write_seq, memory_order_acquire) != att->reader.cursor)
        return true;
    if (next != 0) {
        att_follow(p, att, next);
        return true;
    }
    if (closed || gone || atomic_load(&att->drain_deadline) != 0) {
        if (gone) {
            unlink_publisher_files(att);
            log_at(p, MC_LOG_INFO,
                   "topic '%s': the publisher in pid %d is gone; removed its segment",
                   att->sub->topic, (int)att->pub_pid);
        }
        att_finish(att);
        return true;
    }
    att_maybe_rejoin(p, att);
    return false;
}

static bool att_stopping(shm_att *att)
{
    return atomic_load(&att->sub->closing) || atomic_load(&att->detach);
}

/* A disconnected publisher that is still writing: after the drain time, what is left
 * unread is counted as lost (never lost silently) and the attachment finishes. One that
 * closed writes no more, so the rest is read however long it takes. */
static bool att_drain_expired(mc_plugin *p, shm_att *att)
{
    int64_t deadline = atomic_load(&att->drain_deadline);
    mc_shm_header *h = mc_shm_hdr(att->m.base);
    if (deadline == 0 || mc_shm_monotonic_ns() <= deadline ||
        atomic_load_explicit(&h->closed, memory_order_acquire) != 0)
        return false;
    uint64_t written = atomic_load_explicit(&h->write_seq, memory_order_acquire);
    report_lost(p, att, plausible_gap(att->reader.cursor, written));
    att_finish(att);
    return true;
}

/* Delivers what the publisher wrote, at most one ring's worth so that other publishers
 * get their turn. True when anything happened. */
static bool att_process(mc_plugin *p, shm_att *att)
{
    if (att_drain_expired(p, att))
        return true;
    const char *problem = mc_shm_header_recheck(att->m.base, &att->m.geo, &att->m.expect);
    if (problem != NULL) {
        att_drop(p, att, problem);
        return true;
    }
    if (att_adopt_entry(att) != UINT64_MAX)
        att_report_cursor(att);
    for (uint32_t budget = att->m.geo.ring_slots; budget > 0 && !att_stopping(att); budget--) {
        mc_sample sample;
        uint64_t lost = 0;
        switch (mc_shm_reader_begin(&att->reader, &sample, &lost, &problem)) {
        case MC_SHM_READ_NONE:
            return att_at_end(p, att) || budget < att->m.geo.ring_slots;
        case MC_SHM_READ_LOST:
            report_lost(p, att, lost);
            break;
        case MC_SHM_READ_CORRUPT:
            att_drop(p, att, problem);
            return true;
        case MC_SHM_READ_MESSAGE:
            p->host->deliver(p->host->ctx, att->sub->cookie, &sample);
            report_lost(p, att, mc_shm_reader_end(&att->reader) ? 1 : 0);
            att_report_cursor(att);
            break;
        }
    }
    return true;
}

/* ---- the wait thread ------------------------------------------------------------------------ */

static void att_unlink_locked(mc_plugin *p, shm_att *att)
{
    for (shm_att **link = &p->atts; *link != NULL; link = &(*link)->next) {
        if (*link == att) {
            *link = att->next;
            return;
        }
    }
}

/* Nothing more to do with it: a disconnected attachment that read all it will read, or
 * one sub_close released during a look (its subscriber may be freed already, so this is
 * decided before anything reads att->sub). */
static bool att_done_locked(const shm_att *att)
{
    if (att->busy)
        return false;
    return atomic_load(&att->detach) || (atomic_load(&att->drain_deadline) != 0 && att->finished);
}

/* One pass over every attachment. True when any made progress. */
static bool scan_all(mc_plugin *p)
{
    bool progress = false;
    size_t live = 0;
    pthread_mutex_lock(&p->lock);
    for (shm_att *att = p->atts; att != NULL;) {
        if (att_done_locked(att)) {
            shm_att *next = att->next;
            att_unlink_locked(p, att);
            att_free(att);
            att = next;
            continue;
        }
        if (att->finished || att->busy || att_stopping(att)) {
            att = att->next;
            continue;
        }
        live++;
        att->busy = true;
        att->sub->in_flight++;
        pthread_mutex_unlock(&p->lock);
        progress |= att_process(p, att);
        pthread_mutex_lock(&p->lock);
        att->busy = false;
        att->sub->in_flight--;
        pthread_cond_broadcast(&p->idle);
        shm_att *next = att->next;
        if (atomic_load(&att->detach)) {
            att_unlink_locked(p, att);
            att_free(att);
        }
        att = next;
    }
    p->live_atts = live;
    pthread_mutex_unlock(&p->lock);
    return progress;
}

/* Publishers that died without closing: read what they left, then let go. */
static void check_publishers(mc_plugin *p)
{
    pthread_mutex_lock(&p->lock);
    for (shm_att *att = p->atts; att != NULL; att = att->next)
        if (!att->finished && !mc_shm_owner_alive(att->pub_pid, att->pub_start_time))
            atomic_store(&att->owner_gone, true);
    pthread_mutex_unlock(&p->lock);
}

/* What a look polls without the lock: each attachment's write sequence and the cursor read
 * up to. Valid until the next scan_all (which may follow a generation or free an
 * attachment); other threads leave attachments to this one while p->looking is set. */
typedef struct poll_entry {
    const _Atomic uint64_t *write_seq;
    uint64_t cursor;
} poll_entry;

#define POLL_MAX        64
#define FULL_SCAN_EVERY 16

/* With p->lock held. SIZE_MAX when there are more attachments than POLL_MAX. */
static size_t poll_snapshot(mc_plugin *p, poll_entry *v)
{
    size_t n = 0;
    for (shm_att *att = p->atts; att != NULL; att = att->next) {
        if (att->finished || att->busy || att->m.base == NULL || atomic_load(&att->detach))
            continue;
        if (n == POLL_MAX)
            return SIZE_MAX;
        v[n++] = (poll_entry){&mc_shm_hdr(att->m.base)->write_seq, att->reader.cursor};
    }
    return n;
}

static bool any_news(const poll_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (atomic_load_explicit(v[i].write_seq, memory_order_relaxed) != v[i].cursor)
            return true;
    return false;
}

/* Keeps looking for up to us microseconds. Between full scans it only reads each
 * publisher's write sequence, without the lock or the clock: a commit is then noticed
 * within tens of nanoseconds rather than within a whole scan. What only a full scan sees
 * (a new generation, a publisher gone) waits at most FULL_SCAN_EVERY polls. */
static bool look_found_work(mc_plugin *p, int64_t us)
{
    poll_entry v[POLL_MAX];
    int64_t until = mc_shm_monotonic_ns() + us * 1000;
    bool found = false;
    pthread_mutex_lock(&p->lock);
    p->looking = true;
    size_t n = poll_snapshot(p, v);
    pthread_mutex_unlock(&p->lock);
    for (unsigned round = 1; !atomic_load(&p->stopping); round++) {
        if (n != SIZE_MAX && round % FULL_SCAN_EVERY != 0 && !any_news(v, n))
            continue;
        if ((found = scan_all(p)) || mc_shm_monotonic_ns() >= until)
            break;
        pthread_mutex_lock(&p->lock);
        n = poll_snapshot(p, v);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    p->looking = false;
    pthread_mutex_unlock(&p->lock);
    return found;
}

/* After a delivery, before the thread sleeps: spin_us looks that long every time; else a
 * look of look_us, while looking pays (mc_shm_look_policy). A publisher streaming faster
 * than a wake-up (several microseconds here) is then read without a sleep and a wake per
 * message on either side; a topic with gaps longer than the look soon stops paying for
 * it, and tries again every MC_SHM_LOOK_SKIP_MAX sleeps. */
static bool look_before_sleep(mc_plugin *p)
{
    if (p->live_atts == 0)
        return false;
    if (p->cfg.spin_us > 0)
        return look_found_work(p, p->cfg.spin_us);
    if (p->cfg.look_us <= 0 || !mc_shm_look_now(&p->look))
        return false;
    bool found = look_found_work(p, p->cfg.look_us);
    mc_shm_look_paid(&p->look, found);
    return found;
}

/* Sleeping on every segment's readers_bell lets a publisher wake all its subscriber
 * processes with one FUTEX_WAKE instead of one per process (a syscall costs about a
 * microsecond in a VM). It needs futex_waitv (Linux 5.16); without it, or with more
 * segments than one call can watch, the thread sleeps on its own doorbell as before. */
#define MAX_SEGMENT_WAITS (FUTEX_WAITV_MAX - 1)

static atomic_bool no_futex_waitv;

/* Arms the readers_bell of every segment the thread reads and lists them in v; 0 when
 * there are none or more than fit. */
static size_t arm_segments(mc_plugin *p, struct futex_waitv *v)
{
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (shm_att *att = p->atts; att != NULL; att = att->next) {
        if (att->finished || att->busy || att->m.base == NULL)
            continue;
        if (n == MAX_SEGMENT_WAITS) {
            n = 0;
            break;
        }
        mc_shm_header *h = mc_shm_hdr(att->m.base);
        atomic_store(&h->readers_armed, 1);
        v[n++] = (struct futex_waitv){.uaddr = (uint64_t)(uintptr_t)&h->readers_bell,
                                      .val = atomic_load(&h->readers_bell),
                                      .flags = FUTEX_32};
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* A segment unmapped meanwhile makes the call fail (EFAULT) or return early: the loop
 * looks again, so that costs one round. A kernel without the call (ENOSYS), a seccomp
 * filter that refuses it (EPERM, as some container runtimes do) or one that rejects the
 * arguments (EINVAL) would fail every time: the thread then never tries it again, rather
 * than spin on a call that returns at once. */
static void wait_any(mc_plugin *p, struct futex_waitv *v, size_t n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += SAFETY_WAIT_NS / 1000000000;
    if (syscall(SYS_futex_waitv, v, (unsigned)n, 0u, &deadline, CLOCK_MONOTONIC) == 0)
        return;
    int e = errno;
    if ((e == ENOSYS || e == EPERM || e == EINVAL) && !atomic_exchange(&no_futex_waitv, true))
        log_at(p, MC_LOG_INFO,
               "futex_waitv is not available (%s): wait threads sleep on their doorbells, and "
               "publishers wake each subscriber process on its own",
               strerror(e));
}

/* The handshake with publishers: say how we sleep and arm, look once more, sleep. Every
 * flag is written (sequentially consistent) before the last look, and a publisher reads
 * them after raising write_seq: either the look sees the message or the publisher sees
 * a flag that makes it wake us. */
static void sleep_until_rung(mc_plugin *p, mc_shm_bell *bell)
{
    struct futex_waitv v[FUTEX_WAITV_MAX];
    size_t n = 0;
    if (p->live_atts > 0 && p->cfg.segment_wake && !atomic_load(&no_futex_waitv)) {
        atomic_store(&bell->sleeping, MC_SHM_BELL_ON_SEGMENTS);
        n = arm_segments(p, v);
    }
    if (n == 0)
        atomic_store(&bell->sleeping, MC_SHM_BELL_SLEEPING);
    uint32_t seen = atomic_load(&bell->ring);
    if (!scan_all(p) && !atomic_load(&p->stopping)) {
        if (n > 0) {
            v[n] = (struct futex_waitv){
                .uaddr = (uint64_t)(uintptr_t)&bell->ring, .val = seen, .flags = FUTEX_32};
            wait_any(p, v, n + 1);
        } else {
            mc_shm_futex_wait(&bell->ring, seen, p->live_atts > 0 ? SAFETY_WAIT_NS : -1);
        }
    }
    atomic_store(&bell->sleeping, MC_SHM_BELL_AWAKE);
}

static void *wait_thread(void *arg)
{
    mc_plugin *p = arg;
    mc_shm_bell *bell = p->bell;
    on_wait_thread = true;
    p->last_liveness_ns = mc_shm_monotonic_ns();
    /* A busy thread reads the clock every CLOCK_EVERY rounds, not per round (a round often
     * delivers one message, and a clock read costs 30 ns in a VM); slow callbacks delay
     * the liveness check by at most CLOCK_EVERY of them. */
    unsigned rounds = 0;
    while (!atomic_load(&p->stopping)) {
        if (rounds++ % CLOCK_EVERY == 0) {
            int64_t now = mc_shm_monotonic_ns();
            if (now - p->last_liveness_ns >= LIVENESS_EVERY_NS) {
                p->last_liveness_ns = now;
                check_publishers(p);
            }
        }
        if (scan_all(p) || look_before_sleep(p))
            continue;
        sleep_until_rung(p, bell);
        rounds = 0;
    }
    return NULL;
}

static void wake_thread(mc_plugin *p)
{
    atomic_fetch_add(&p->bell->ring, 1);
    mc_shm_futex_wake(&p->bell->ring);
}

static int subscriber_side_start(mc_plugin *p)
{
    if (p->thread_running)
        return 0;
    const mc_host *h = p->host;
    if (mc_shm_bell_name(p->bell_name, sizeof(p->bell_name), p->domain_hash, getpid(),
                         mc_shm_self_start_time(), (uint32_t)h->context_lo, p->instance) < 0 ||
        strlen(p->bell_name) > MC_LOCATOR_MAX)
        return mc_shm_fail(p, MC_EINVAL, "cannot build a doorbell name");
    char err[600];
    int rc = mc_shm_bell_create(p->bell_name, p->cfg.mode, h->context_hi, h->context_lo, &p->bell,
                                err, sizeof(err));
    if (rc != 0)
        return mc_shm_fail(p, rc, "doorbell: %s", err);
    rc = pthread_create(&p->thread, NULL, wait_thread, p);
    if (rc != 0) {
        mc_shm_bell_unmap(p->bell);
        shm_unlink(p->bell_name);
        p->bell = NULL;
        return mc_shm_fail(p, MC_ETRANSPORT, "cannot start the wait thread: %s", strerror(rc));
    }
    p->thread_running = true;
    return 0;
}

void mc_shm_subscriber_side_stop(mc_plugin *p)
{
    if (!p->thread_running)
        return;
    atomic_store(&p->stopping, true);
    wake_thread(p);
    pthread_join(p->thread, NULL);
    p->thread_running = false;
    while (p->atts != NULL) { /* every subscriber was closed first: a leak guard */
        shm_att *att = p->atts;
        p->atts = att->next;
        att_free(att);
    }
    mc_shm_bell_unmap(p->bell);
    shm_unlink(p->bell_name);
    p->bell = NULL;
}

/* ---- subscriber ops ------------------------------------------------------------------------- */

int mc_shm_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_sub **out)
{
    int rc = subscriber_side_start(p);
    if (rc != 0)
        return rc;
    shm_sub *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return MC_ENOMEM;
    sub->plugin = p;
    sub->cookie = cookie;
    sub->id = info->id;
    snprintf(sub->topic, sizeof(sub->topic), "%s", info->topic);
    atomic_init(&sub->closing, false);
    pthread_mutex_lock(&p->lock);
    sub->next = p->subs;
    p->subs = sub;
    pthread_mutex_unlock(&p->lock);
    *out = (mc_plugin_sub *)sub;
    return 0;
}

/* Frees what the thread is not reading now; marks the rest for the thread to free. */
static void att_release_locked(mc_plugin *p, shm_att *att)
{
    atomic_store(&att->detach, true);
    if (!att->busy && !p->looking) {
        att_unlink_locked(p, att);
        att_free(att);
    }
}

static void sub_unlink_locked(mc_plugin *p, shm_sub *sub)
{
    for (shm_sub **link = &p->subs; *link != NULL; link = &(*link)->next) {
        if (*link == sub) {
            *link = sub->next;
            return;
        }
    }
}

void mc_shm_sub_close(mc_plugin_sub *handle)
{
    shm_sub *sub = (shm_sub *)handle;
    mc_plugin *p = sub->plugin;
    pthread_mutex_lock(&p->lock);
    atomic_store(&sub->closing, true);
    for (shm_att *att = p->atts, *next; att != NULL; att = next) {
        next = att->next;
        if (att->sub == sub)
            att_release_locked(p, att);
    }
    /* The contract: no deliver() for sub after we return. On the wait thread itself we
     * are inside another subscriber's callback, so sub has nothing in flight. */
    while (sub->in_flight > 0 && !pthread_equal(pthread_self(), p->thread))
        pthread_cond_wait(&p->idle, &p->lock);
    sub_unlink_locked(p, sub);
    pthread_mutex_unlock(&p->lock);
    free(sub);
}

int mc_shm_sub_locator(mc_plugin_sub *handle, void *buf, size_t size)
{
    shm_sub *sub = (shm_sub *)handle;
    size_t len = strlen(sub->plugin->bell_name);
    if (len > size)
        return MC_ENOSPC;
    memcpy(buf, sub->plugin->bell_name, len);
    return (int)len;
}

/* The publisher's locator: its generation-0 segment name, not NUL-terminated. */
static int publisher_name(mc_plugin *p, const mc_peer *peer, char *name, size_t size,
                          mc_shm_name_info *info)
{
    if (peer->locator == NULL || peer->locator_size == 0 || peer->locator_size >= size)
        return mc_shm_fail(p, MC_EINVAL, "topic '%s': the publisher gave no shm segment name",
                           peer->topic);
    memcpy(name, peer->locator, peer->locator_size);
    name[peer->locator_size] = '\0';
    if (strlen(name) != peer->locator_size || name[0] != '/' || !mc_shm_name_parse(name, info) ||
        info->is_bell || info->generation != 0 || info->domain_hash != p->domain_hash ||
        info->pid != peer->pid)
        return mc_shm_fail(p, MC_EINVAL,
                           "topic '%s': '%.100s' is not the segment of a publisher in pid %d of "
                           "this domain",
                           peer->topic, name, (int)peer->pid);
    return 0;
}

/* Where reading starts: where the publisher matched us, if it did already (nothing sent
 * since is missed), else at what it writes next. */
static void att_place_cursor(mc_plugin *p, shm_att *att)
{
    mc_shm_header *h = mc_shm_hdr(att->m.base);
    uint64_t written = atomic_load(&h->write_seq);
    uint64_t base_seq = __atomic_load_n(&h->base_seq, __ATOMIC_RELAXED);
    att->reader.cursor = written;
    uint64_t joined = att_adopt_entry(att);
    if (joined != UINT64_MAX && joined <= written) {
        if (joined < base_seq) { /* matched in a generation that is gone */
            report_lost(p, att, plausible_gap(joined, base_seq));
            joined = base_seq;
        }
        att->reader.cursor = joined;
    }
    att_report_cursor(att);
}

static int att_attach(mc_plugin *p, shm_att *att)
{
    char err[600];
    int rc = mapping_open_newest(att, &att->m, err, sizeof(err));
    if (rc != 0)
        return mc_shm_fail(p, rc, "topic '%s': %s", att->sub->topic, err);
    att->pub_start_time =
        __atomic_load_n(&mc_shm_hdr(att->m.base)->owner_start_time, __ATOMIC_RELAXED);
    if (!mc_shm_owner_alive(att->pub_pid, att->pub_start_time)) {
        mapping_close(&att->m);
        return mc_shm_fail(p, MC_ENOENT, "topic '%s': the publisher in pid %d is gone",
                           att->sub->topic, (int)att->pub_pid);
    }
    att->reader = (mc_shm_reader){.base = att->m.base, .geo = att->m.geo, .publisher = att->pub_id};
    att->entry = -1;
    att_place_cursor(p, att);
    return 0;
}

int mc_shm_sub_connect(mc_plugin_sub *handle, const mc_peer *peer)
{
    shm_sub *sub = (shm_sub *)handle;
    mc_plugin *p = sub->plugin;
    char name[MC_LOCATOR_MAX + 1];
    mc_shm_name_info info;
    int rc = publisher_name(p, peer, name, sizeof(name), &info);
    if (rc != 0)
        return rc;
    shm_att *att = calloc(1, sizeof(*att));
    if (att == NULL)
        return MC_ENOMEM;
    att->sub = sub;
    att->pub_id = peer->id;
    att->pub_pid = info.pid;
    snprintf(att->base_name, sizeof(att->base_name), "%.*s", (int)info.base_length, name);
    atomic_init(&att->detach, false);
    atomic_init(&att->drain_deadline, 0);
    atomic_init(&att->owner_gone, false);
    rc = att_attach(p, att);
    if (rc != 0) {
        free(att);
        return rc;
    }
    pthread_mutex_lock(&p->lock);
    att->next = p->atts;
    p->atts = att;
    pthread_mutex_unlock(&p->lock);
    wake_thread(p);
    return 0;
}

void mc_shm_sub_disconnect(mc_plugin_sub *handle, const mc_endpoint_id *pub)
{
    shm_sub *sub = (shm_sub *)handle;
    mc_plugin *p = sub->plugin;
    pthread_mutex_lock(&p->lock);
    for (shm_att *att = p->atts; att != NULL; att = att->next) {
        if (att->sub == sub && !atomic_load(&att->detach) &&
            atomic_load(&att->drain_deadline) == 0 &&
            memcmp(&att->pub_id, pub, sizeof(*pub)) == 0) {
            /* the thread frees it once finished (it may be reading it now) */
            atomic_store(&att->drain_deadline, mc_shm_monotonic_ns() + DRAIN_NS);
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    wake_thread(p);
}
