/*
 * The publisher side: a segment per generation, the subscriber table, sends, loans,
 * growth and reliable mode.
 *
 * Generation 0 is the anchor: its name is the locator subscribers are given, and it stays
 * until the publisher closes, its newest_generation naming the one written now. A later
 * generation that was replaced stays in /dev/shm until every subscriber that may still
 * need to open it has moved past it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"
#include "shm.h"

typedef struct shm_gen {
    uint32_t number;
    char name[MC_SHM_NAME_MAX + 1];
    unsigned char *base;
    uint64_t size;
    int fd;
    mc_shm_writer w;
} shm_gen;

#define NO_ENTRY UINT32_MAX /* a subscriber beyond max_subscribers: served best effort */

/* A subscriber endpoint this publisher was connected with. */
typedef struct pub_peer {
    mc_endpoint_id id;
    shm_remote_bell *bell;
    uint32_t entry;
    uint32_t ticket;
    int32_t pid;
    uint64_t start_time;
} pub_peer;

struct mc_plugin_pub {
    mc_plugin *plugin;
    void *cookie;
    mc_endpoint_id id;
    char topic[MC_TOPIC_MAX + 1];
    char base_name[MC_SHM_NAME_MAX + 1];
    shm_gen *anchor;
    shm_gen *cur;
    uint32_t *superseded; /* generations >= 1 replaced but still linked */
    size_t superseded_count;
    size_t superseded_capacity;
    shm_gen *loan_gen; /* generation of the open loan, or NULL */
    uint32_t loan_slot;

    pthread_mutex_t lock; /* peers, the table, cur (for pub_connect) */
    pub_peer *peers;
    size_t peer_count;
    size_t peer_capacity;
    pub_peer *waiting; /* scratch copy of peers for a reliable wait */
    uint16_t next_ticket;
    bool pin_timeout_logged;
    _Atomic uint32_t contexts; /* distinct subscribing contexts (doorbells) among peers */
    uint64_t read_by_all;      /* reliable: every waited-for subscriber read the messages below */
    uint32_t read_by_all_version; /* the table_version read_by_all was seen with */
    mc_shm_look_policy spin;      /* whether a reliable wait looks before it sleeps */
};

/* ---- generations -------------------------------------------------------------------------- */

static void gen_free(shm_gen *g)
{
    if (g == NULL)
        return;
    mc_shm_writer_fini(&g->w);
    if (g->base != NULL)
        munmap(g->base, (size_t)g->size);
    if (g->fd >= 0)
        close(g->fd);
    free(g);
}

/* [shm] slots = 0: the ring has AUTO_RING_MAX positions while they take at most
 * AUTO_RING_BYTES, fewer for larger slots, never fewer than AUTO_RING_MIN. A longer ring
 * lets a reliable publisher write a ring's worth before it waits, so a subscriber that
 * was asleep or shares a core with others answers for many messages at once: 8 subscriber
 * processes of 4 KiB messages cost the publisher 1.6 times what one does with 64
 * positions, 3.5 times with 8. Large slots keep 8, as the memory is then the limit. */
#define AUTO_RING_BYTES (UINT64_C(1) << 20)
#define AUTO_RING_MIN   8u
#define AUTO_RING_MAX   64u

static uint32_t ring_positions(const mc_plugin *p, uint64_t capacity)
{
    if (p->cfg.slots > 0)
        return (uint32_t)p->cfg.slots;
    uint64_t fit = AUTO_RING_BYTES / (capacity > 0 ? capacity : 1);
    if (fit < AUTO_RING_MIN)
        return AUTO_RING_MIN;
    return fit > AUTO_RING_MAX ? AUTO_RING_MAX : (uint32_t)fit;
}

/* Spares for a generation written while `contexts` subscribing contexts are connected.
 * Each context may hold one slot inside a callback; with one spare more than that, a send
 * finds one no reader holds, and while a loan holds that one, a best-effort send takes the
 * slot of the message it pushes out (no reader holds it then: they all hold spares). So
 * a best-effort writer never reuses a slot under a reader. In reliable mode an ACTIVE
 * reader only holds slots still in the ring. Two at least: a send and a loan. */
static uint32_t spares_for(const mc_plugin *p, uint32_t contexts, uint32_t ring)
{
    uint32_t most = mc_shm_max_spares(ring);
    uint32_t wanted = contexts + 1 > MC_SHM_MIN_SPARES ? contexts + 1 : MC_SHM_MIN_SPARES;
    return wanted < most ? wanted : most;
}

static int gen_create(mc_plugin_pub *pub, uint32_t number, uint64_t capacity, uint32_t spares,
                      uint64_t base_seq, shm_gen **out)
{
    mc_plugin *p = pub->plugin;
    mc_shm_geometry geo;
    uint32_t ring = ring_positions(p, capacity);
    if (spares > mc_shm_max_spares(ring))
        spares = mc_shm_max_spares(ring); /* larger slots, a shorter ring */
    if (mc_shm_geometry_compute(ring, spares, (uint32_t)p->cfg.max_subscribers, capacity, &geo) !=
        0)
        return mc_shm_fail(p, MC_EMSGSIZE, "topic '%s': slots of %" PRIu64 " bytes are too large",
                           pub->topic, capacity);
    shm_gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return MC_ENOMEM;
    g->fd = -1;
    g->number = number;
    if (mc_shm_segment_name(g->name, sizeof(g->name), pub->base_name, number) < 0) {
        free(g);
        return mc_shm_fail(p, MC_EINVAL, "topic '%s': segment name too long", pub->topic);
    }
    char err[600];
    void *map = NULL;
    int rc = mc_shm_segment_create(g->name, geo.size, geo.slots_offset, p->cfg.mode, &g->fd, &map,
                                   err, sizeof(err));
    if (rc != 0) {
        free(g);
        return mc_shm_fail(p, rc, "topic '%s': %s", pub->topic, err);
    }
    g->base = map;
    g->size = geo.size;
    mc_shm_identity id = {.publisher = pub->id,
                          .owner_pid = (int32_t)getpid(),
                          .owner_start_time = mc_shm_self_start_time(),
                          .generation = number,
                          .flags = p->cfg.ack_timeout_ms > 0 ? MC_SHM_FLAG_RELIABLE : 0,
                          .base_seq = base_seq};
    mc_shm_header_init(g->base, &geo, &id);
    if (mc_shm_writer_init(&g->w, g->base, &geo, g->fd, base_seq) != 0) {
        shm_unlink(g->name);
        gen_free(g);
        return MC_ENOMEM;
    }
    *out = g;
    return 0;
}

/* A generation that is no longer written: the anchor stays mapped (it is the locator),
 * one that still holds the open loan stays until the loan ends. */
static void gen_retire(mc_plugin_pub *pub, shm_gen *g)
{
    if (g == pub->cur || g == pub->anchor || g == pub->loan_gen)
        return;
    gen_free(g);
}

static int remember_superseded(mc_plugin_pub *pub, uint32_t number)
{
    if (pub->superseded_count == pub->superseded_capacity) {
        size_t capacity = pub->superseded_capacity ? pub->superseded_capacity * 2 : 4;
        uint32_t *grown = realloc(pub->superseded, capacity * sizeof(*grown));
        if (grown == NULL)
            return MC_ENOMEM;
        pub->superseded = grown;
        pub->superseded_capacity = capacity;
    }
    pub->superseded[pub->superseded_count++] = number;
    return 0;
}

static void unlink_generation(mc_plugin_pub *pub, uint32_t number)
{
    char name[MC_SHM_NAME_MAX + 1];
    if (mc_shm_segment_name(name, sizeof(name), pub->base_name, number) >= 0)
        shm_unlink(name);
}

/* Lowest generation a subscriber still reads (it may need every later one by name). */
static uint32_t lowest_generation_in_use_locked(mc_plugin_pub *pub)
{
    uint32_t lowest = pub->cur->number;
    mc_shm_writer *w = &pub->cur->w;
    for (size_t i = 0; i < pub->peer_count; i++) {
        if (pub->peers[i].entry == NO_ENTRY)
            continue;
        mc_shm_entry *e = mc_shm_entry_of(w->base, &w->geo, pub->peers[i].entry);
        if (atomic_load(&e->state) != MC_SHM_ENTRY_ACTIVE)
            continue;
        uint32_t gen = atomic_load_explicit(&e->gen, memory_order_relaxed);
        if (gen < lowest)
            lowest = gen;
    }
    return lowest;
}

static void unlink_unneeded_generations(mc_plugin_pub *pub)
{
    if (pub->superseded_count == 0)
        return;
    pthread_mutex_lock(&pub->lock);
    uint32_t lowest = lowest_generation_in_use_locked(pub);
    size_t kept = 0;
    for (size_t i = 0; i < pub->superseded_count; i++) {
        if (pub->superseded[i] <= lowest)
            unlink_generation(pub, pub->superseded[i]);
        else
            pub->superseded[kept++] = pub->superseded[i];
    }
    pub->superseded_count = kept;
    pthread_mutex_unlock(&pub->lock);
}

/* ---- the subscriber table ---------------------------------------------------------------- */

static void entry_copy(mc_shm_entry *to, mc_shm_entry *from)
{
    atomic_store_explicit(&to->ticket, atomic_load(&from->ticket), memory_order_relaxed);
    atomic_store_explicit(&to->pid, atomic_load(&from->pid), memory_order_relaxed);
    atomic_store_explicit(&to->gen, atomic_load(&from->gen), memory_order_relaxed);
    atomic_store_explicit(&to->start_time, atomic_load(&from->start_time), memory_order_relaxed);
    atomic_store_explicit(&to->sub_hi, atomic_load(&from->sub_hi), memory_order_relaxed);
    atomic_store_explicit(&to->sub_lo, atomic_load(&from->sub_lo), memory_order_relaxed);
    atomic_store_explicit(&to->sub_serial, atomic_load(&from->sub_serial), memory_order_relaxed);
    atomic_store(&to->cursor, atomic_load(&from->cursor));
    atomic_store_explicit(&to->state, atomic_load(&from->state), memory_order_release);
}

/* Claims a free entry of the current generation for peer; the subscriber starts reading
 * where the writer is now, so nothing published from here on is missed. */
static int entry_claim_locked(mc_plugin_pub *pub, pub_peer *peer)
{
    mc_shm_writer *w = &pub->cur->w;
    for (uint32_t i = 0; i < w->geo.table_entries; i++) {
        mc_shm_entry *e = mc_shm_entry_of(w->base, &w->geo, i);
        if (atomic_load(&e->state) != MC_SHM_ENTRY_FREE)
            continue;
        uint32_t ticket = ++pub->next_ticket;
        atomic_store_explicit(&e->ticket, ticket, memory_order_relaxed);
        atomic_store_explicit(&e->pid, peer->pid, memory_order_relaxed);
        atomic_store_explicit(&e->gen, pub->cur->number, memory_order_relaxed);
        atomic_store_explicit(&e->start_time, peer->start_time, memory_order_relaxed);
        atomic_store_explicit(&e->sub_hi, peer->id.context_hi, memory_order_relaxed);
        atomic_store_explicit(&e->sub_lo, peer->id.context_lo, memory_order_relaxed);
        atomic_store_explicit(&e->sub_serial, peer->id.serial, memory_order_relaxed);
        atomic_store(&e->cursor, mc_shm_cursor_word(ticket, w->write_seq));
        atomic_store_explicit(&e->state, MC_SHM_ENTRY_ACTIVE, memory_order_release);
        atomic_fetch_add(&mc_shm_hdr(w->base)->table_version, 1);
        peer->entry = i;
        peer->ticket = ticket & 0xffffu;
        return 0;
    }
    return MC_ENOSPC;
}

/* The entry goes back to free with a new ticket, so a subscriber still holding the old one
 * can no longer move its cursor. */
static void entry_release_locked(mc_plugin_pub *pub, const pub_peer *peer)
{
    mc_shm_writer *w = &pub->cur->w;
    if (peer->entry == NO_ENTRY)
        return;
    mc_shm_entry *e = mc_shm_entry_of(w->base, &w->geo, peer->entry);
    if ((atomic_load(&e->ticket) & 0xffffu) != peer->ticket)
        return;
    uint32_t retired = (peer->ticket + 0x8000u) & 0xffffu;
    atomic_store(&e->ticket, retired);
    atomic_store(&e->cursor, mc_shm_cursor_word(retired, 0));
    atomic_store_explicit(&e->state, MC_SHM_ENTRY_FREE, memory_order_release);
    atomic_fetch_add(&mc_shm_hdr(w->base)->table_version, 1);
}

/* ---- open and close ----------------------------------------------------------------------- */

int mc_shm_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_pub **out)
{
    mc_plugin_pub *pub = calloc(1, sizeof(*pub));
    if (pub == NULL)
        return MC_ENOMEM;
    pub->plugin = p;
    pub->cookie = cookie;
    pub->id = info->id;
    snprintf(pub->topic, sizeof(pub->topic), "%s", info->topic);
    if (mc_shm_segment_base(pub->base_name, sizeof(pub->base_name), MC_LOCATOR_MAX, p->domain_hash,
                            info->topic, getpid(), mc_shm_self_start_time(),
                            (uint32_t)p->host->context_lo, info->id.serial) < 0) {
        free(pub);
        return mc_shm_fail(p, MC_EINVAL, "topic '%s': cannot build a segment name", info->topic);
    }
    pthread_mutex_init(&pub->lock, NULL);
    /* room for one subscribing context from the start: the usual case needs no growth (and
     * the first generation is no larger than with two spares) */
    int rc = gen_create(pub, 0, p->cfg.min_size,
                        spares_for(p, 1, ring_positions(p, p->cfg.min_size)), 0, &pub->anchor);
    if (rc != 0) {
        pthread_mutex_destroy(&pub->lock);
        free(pub);
        return rc;
    }
    pub->cur = pub->anchor;
    *out = pub;
    return 0;
}

static void ring_all_locked(mc_plugin_pub *pub, bool always)
{
    /* several subscribers of one instance share a bell: ring each bell once */
    for (size_t i = 0; i < pub->peer_count; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = pub->peers[j].bell == pub->peers[i].bell;
        if (!seen)
            mc_shm_bell_ring(pub->peers[i].bell->bell, always);
    }
}

void mc_shm_pub_close(mc_plugin_pub *pub)
{
    mc_plugin *p = pub->plugin;
    atomic_store(&mc_shm_hdr(pub->cur->base)->closed, 1);
    atomic_store(&mc_shm_hdr(pub->anchor->base)->closed, 1);
    pthread_mutex_lock(&pub->lock);
    ring_all_locked(pub, true);
    for (size_t i = 0; i < pub->peer_count; i++)
        mc_shm_remote_bell_release(p, pub->peers[i].bell);
    pthread_mutex_unlock(&pub->lock);
    for (size_t i = 0; i < pub->superseded_count; i++)
        unlink_generation(pub, pub->superseded[i]);
    shm_unlink(pub->anchor->name);
    if (pub->cur != pub->anchor)
        shm_unlink(pub->cur->name);
    if (pub->loan_gen != NULL && pub->loan_gen != pub->cur && pub->loan_gen != pub->anchor)
        gen_free(pub->loan_gen);
    if (pub->cur != pub->anchor)
        gen_free(pub->cur);
    gen_free(pub->anchor);
    pthread_mutex_destroy(&pub->lock);
    free(pub->superseded);
    free(pub->peers);
    free(pub->waiting);
    free(pub);
}

int mc_shm_pub_locator(mc_plugin_pub *pub, void *buf, size_t size)
{
    size_t len = strlen(pub->anchor->name);
    if (len > size)
        return MC_ENOSPC;
    memcpy(buf, pub->anchor->name, len);
    return (int)len;
}

/* ---- connections ---------------------------------------------------------------------------- */

/* The locator of a subscriber: its instance's doorbell name, not NUL-terminated. */
static int locator_name(mc_plugin *p, const mc_peer *peer, char *name, size_t size)
{
    if (peer->locator == NULL || peer->locator_size == 0 || peer->locator_size >= size)
        return mc_shm_fail(p, MC_EINVAL, "topic '%s': the subscriber gave no shm doorbell",
                           peer->topic);
    memcpy(name, peer->locator, peer->locator_size);
    name[peer->locator_size] = '\0';
    mc_shm_name_info info;
    if (strlen(name) != peer->locator_size || !mc_shm_name_parse(name, &info) || !info.is_bell ||
        name[0] != '/' || info.domain_hash != p->domain_hash)
        return mc_shm_fail(p, MC_EINVAL, "topic '%s': '%.100s' is not a doorbell of this domain",
                           peer->topic, name);
    return 0;
}

static int peers_reserve_locked(mc_plugin_pub *pub)
{
    if (pub->peer_count < pub->peer_capacity)
        return 0;
    size_t capacity = pub->peer_capacity ? pub->peer_capacity * 2 : 4;
    pub_peer *grown = realloc(pub->peers, capacity * sizeof(*grown));
    if (grown == NULL)
        return MC_ENOMEM;
    pub->peers = grown;
    pub_peer *scratch = realloc(pub->waiting, capacity * sizeof(*scratch));
    if (scratch == NULL)
        return MC_ENOMEM;
    pub->waiting = scratch;
    pub->peer_capacity = capacity;
    return 0;
}

static uint32_t count_contexts_locked(const mc_plugin_pub *pub)
{
    uint32_t count = 0;
    for (size_t i = 0; i < pub->peer_count; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = pub->peers[j].bell == pub->peers[i].bell;
        count += !seen;
    }
    return count;
}

static pub_peer *peer_find_locked(mc_plugin_pub *pub, const mc_endpoint_id *id)
{
    for (size_t i = 0; i < pub->peer_count; i++)
        if (memcmp(&pub->peers[i].id, id, sizeof(*id)) == 0)
            return &pub->peers[i];
    return NULL;
}

int mc_shm_pub_connect(mc_plugin_pub *pub, const mc_peer *sub)
{
    mc_plugin *p = pub->plugin;
    char name[MC_LOCATOR_MAX + 1];
    int rc = locator_name(p, sub, name, sizeof(name));
    if (rc != 0)
        return rc;
    pub_peer peer = {.id = sub->id, .pid = sub->pid};
    rc = mc_shm_remote_bell_acquire(p, name, sub->pid, &peer.bell);
    if (rc != 0)
        return rc;
    peer.start_time = peer.bell->bell->owner_start_time;
    bool untracked = false;
    pthread_mutex_lock(&pub->lock);
    if (peer_find_locked(pub, &sub->id) != NULL) {
        rc = MC_EEXIST;
    } else if ((rc = peers_reserve_locked(pub)) == 0) {
        untracked = entry_claim_locked(pub, &peer) != 0;
        if (untracked)
            peer.entry = NO_ENTRY;
        pub->peers[pub->peer_count++] = peer;
        atomic_store(&pub->contexts, count_contexts_locked(pub));
    }
    pthread_mutex_unlock(&pub->lock);
    if (untracked)
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "topic '%s': more than max_subscribers (%" PRId64 ") subscribers: the "
                     "subscriber in pid %d is served best effort (not waited for in reliable "
                     "mode; it may miss what is sent before it attaches)",
                     pub->topic, p->cfg.max_subscribers, (int)sub->pid);
    if (rc == 0)
        return 0;
    mc_shm_remote_bell_release(p, peer.bell);
    if (rc == MC_EEXIST)
        return 0; /* connected already: nothing changes */
    return mc_shm_fail(p, rc, "topic '%s': out of memory connecting a subscriber", pub->topic);
}

void mc_shm_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
    pthread_mutex_lock(&pub->lock);
    pub_peer *peer = peer_find_locked(pub, sub);
    shm_remote_bell *bell = NULL;
    if (peer != NULL) {
        entry_release_locked(pub, peer);
        bell = peer->bell;
        *peer = pub->peers[--pub->peer_count];
        atomic_store(&pub->contexts, count_contexts_locked(pub));
    }
    pthread_mutex_unlock(&pub->lock);
    if (bell != NULL)
        mc_shm_remote_bell_release(pub->plugin, bell);
}

/* ---- reliable mode ------------------------------------------------------------------------ */

static bool entry_consumed(mc_shm_entry *e, const pub_peer *peer, uint64_t n)
{
    if (atomic_load(&e->state) != MC_SHM_ENTRY_ACTIVE)
        return true; /* dropped or released: not waited for */
    uint64_t word = atomic_load(&e->cursor);
    if ((word >> MC_SHM_CURSOR_BITS) != peer->ticket)
        return true;
    return mc_shm_cursor_passed(word, n);
}

static void entry_drop(mc_plugin_pub *pub, mc_shm_entry *e, const pub_peer *peer, bool dead)
{
    mc_plugin *p = pub->plugin;
    uint32_t active = MC_SHM_ENTRY_ACTIVE;
    if (!atomic_compare_exchange_strong(&e->state, &active, MC_SHM_ENTRY_DROPPED))
        return;
    atomic_fetch_add(&mc_shm_hdr(pub->cur->base)->table_version, 1);
    if (dead)
        p->host->log(p->host->ctx, MC_LOG_INFO,
                     "topic '%s': subscriber in pid %d is gone; no longer waiting for it",
                     pub->topic, (int)peer->pid);
    else
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "topic '%s': subscriber in pid %d did not read a message within "
                     "ack_timeout (%" PRId64 " ms); it no longer holds the publisher back (it "
                     "rejoins reliable delivery once it catches up)",
                     pub->topic, (int)peer->pid, p->cfg.ack_timeout_ms);
}

/* How long a reliable publisher looks at the readers' cursors before it sleeps. A reader
 * that holds the publisher back is usually reading on another core, a message or two
 * behind: a short look finds the slot free without a futex wait here and a futex wake (a
 * syscall per message) on the reader's side. When readers share a core and cannot answer
 * within the look, it is CPU spent for nothing: mc_shm_look_policy then makes the publisher
 * sleep at once, and look again only now and then. */
#define WRITER_SPIN_NS 20000

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static mc_shm_entry *peer_entry(mc_plugin_pub *pub, const pub_peer *peer)
{
    mc_shm_writer *w = &pub->cur->w;
    return mc_shm_entry_of(w->base, &w->geo, peer->entry);
}

/* Every subscriber in pub->waiting[0..count) that is still waited for has read n. */
static bool all_consumed(mc_plugin_pub *pub, size_t count, uint64_t n)
{
    for (size_t i = 0; i < count; i++) {
        const pub_peer *peer = &pub->waiting[i];
        if (peer->entry != NO_ENTRY && !entry_consumed(peer_entry(pub, peer), peer, n))
            return false;
    }
    return true;
}

/* After the readers freed the slot, the publisher keeps looking while they keep reading,
 * until they are half a ring further or the look's time is up: the sends that follow then
 * need no look at their cursors (read_by_all). Going on at once makes the next send wait
 * for the next message too, and every look takes the readers' cursor lines from their
 * core: reliable 64 B to one subscriber went from 2.3 to 3.2-3.5 M msg/s (same minutes;
 * 4 KiB and 1 MiB unchanged). Readers that pause (a large message each, a slow callback)
 * end it after BATCH_STALL_NS. */
#define BATCH_STALL_NS 2000

static void look_for_more(mc_plugin_pub *pub, size_t count, uint64_t n, int64_t until)
{
    uint64_t enough = n + pub->cur->w.geo.ring_slots / 2;
    int64_t give_up = until; /* nearer once the readers have not moved for 16 looks */
    for (unsigned idle = 0; n < enough;) {
        cpu_relax();
        if (all_consumed(pub, count, n + 1)) {
            n++;
            idle = 0;
            continue;
        }
        if (++idle % 16 != 0)
            continue;
        int64_t now = mc_shm_monotonic_ns();
        if (idle == 16 && now + BATCH_STALL_NS < give_up)
            give_up = now + BATCH_STALL_NS;
        if (now >= give_up)
            return;
    }
}

static bool all_consumed_soon(mc_plugin_pub *pub, size_t count, uint64_t n)
{
    if (!mc_shm_look_now(&pub->spin))
        return false;
    int64_t until = mc_shm_monotonic_ns() + WRITER_SPIN_NS;
    for (unsigned i = 1;; i++) {
        cpu_relax();
        if (all_consumed(pub, count, n)) {
            mc_shm_look_paid(&pub->spin, true);
            look_for_more(pub, count, n, until);
            return true;
        }
        if ((i & 63) == 0 && mc_shm_monotonic_ns() >= until) {
            mc_shm_look_paid(&pub->spin, false);
            return false;
        }
    }
}

/* Subscribers that have not read n: dropped when their process is gone (check_alive), or
 * all of them once the deadline passed. */
static void drop_stalled(mc_plugin_pub *pub, size_t count, uint64_t n, bool check_alive,
                         bool past_deadline)
{
    for (size_t i = 0; i < count; i++) {
        const pub_peer *peer = &pub->waiting[i];
        if (peer->entry == NO_ENTRY || entry_consumed(peer_entry(pub, peer), peer, n))
            continue;
        if (check_alive && !mc_shm_owner_alive(peer->pid, peer->start_time))
            entry_drop(pub, peer_entry(pub, peer), peer, true);
        else if (past_deadline)
            entry_drop(pub, peer_entry(pub, peer), peer, false);
    }
}

/* Sleeps until every subscriber read n, the deadline passes, or the slow ones are gone.
 * Readers are asked (ack_wanted) to wake it only once all of them have read n, so one wake
 * serves however many subscribers there are, instead of a wake by each that then finds
 * the others behind. (Asking for more, the newest message or half a ring, saved nothing
 * measurable with 8 subscribers sharing a core, 10.4-13 against 10.8-11.6 us per 4 KiB
 * message, and would hold a publisher back longer than a slow reader needs.) Liveness
 * costs a kill() and a read of /proc per slow subscriber: checked 100 ms into the wait and
 * every 100 ms, so a crashed one is still noticed within 100 ms. */
static void sleep_until_read(mc_plugin_pub *pub, size_t count, uint64_t n, int64_t deadline)
{
    mc_shm_writer *w = &pub->cur->w;
    mc_shm_header *h = mc_shm_hdr(w->base);
    atomic_store(&h->ack_wanted, n & MC_SHM_CURSOR_MASK);
    int64_t next_liveness = mc_shm_monotonic_ns() + 100000000;
    while (!all_consumed(pub, count, n)) {
        int64_t now = mc_shm_monotonic_ns();
        bool check_alive = now >= next_liveness;
        if (check_alive || now >= deadline) {
            next_liveness = now + 100000000;
            drop_stalled(pub, count, n, check_alive, now >= deadline);
            continue;
        }
        atomic_store(&h->writer_waiting, 1);
        uint32_t seen = atomic_load(&h->ack_word);
        if (all_consumed(pub, count, n))
            break;
        int64_t slice = deadline - now < 100000000 ? deadline - now : 100000000;
        mc_shm_futex_wait(&h->ack_word, seen, slice);
    }
    atomic_store(&h->writer_waiting, 0);
}

/* The lowest cursor of the subscribers just waited for: every one of them has read the
 * messages below it. */
static uint64_t lowest_cursor(mc_plugin_pub *pub, size_t count)
{
    mc_shm_writer *w = &pub->cur->w;
    uint64_t lowest = w->write_seq;
    for (size_t i = 0; i < count; i++) {
        const pub_peer *peer = &pub->waiting[i];
        if (peer->entry == NO_ENTRY)
            continue;
        mc_shm_entry *e = mc_shm_entry_of(w->base, &w->geo, peer->entry);
        uint64_t word = atomic_load(&e->cursor);
        if (atomic_load(&e->state) != MC_SHM_ENTRY_ACTIVE ||
            (word >> MC_SHM_CURSOR_BITS) != peer->ticket)
            continue;
        uint64_t behind = (w->write_seq - word) & MC_SHM_CURSOR_MASK;
        if (behind >= (UINT64_C(1) << (MC_SHM_CURSOR_BITS - 1)))
            continue; /* ahead of the writer: mc_shm_cursor_passed counts it as read too */
        uint64_t at = behind > w->write_seq ? 0 : w->write_seq - behind;
        if (at < lowest)
            lowest = at;
    }
    return lowest;
}

/* Before message n leaves the ring, every subscriber still in reliable delivery must have
 * read it. One ack_timeout bounds the whole wait, however many subscribers are slow.
 * What they were seen to have read is remembered: a subscriber that connects later starts
 * at the newest message, so it never holds back an older one, and the next messages whose
 * slots are already known to be read go out without looking at any cursor (the cursors'
 * cache lines are written by the readers, and every look costs a transfer between cores). */
static void wait_for_readers(mc_plugin_pub *pub, uint64_t n)
{
    _Atomic uint32_t *table_version = &mc_shm_hdr(pub->cur->base)->table_version;
    uint32_t version = atomic_load(table_version); /* a rejoin changes it: look again */
    if (n < pub->read_by_all && version == pub->read_by_all_version)
        return;
    pthread_mutex_lock(&pub->lock);
    size_t count = pub->peer_count;
    if (count > 0)
        memcpy(pub->waiting, pub->peers, count * sizeof(*pub->waiting));
    pthread_mutex_unlock(&pub->lock);
    if (!all_consumed(pub, count, n) && !all_consumed_soon(pub, count, n)) {
        /* the look is at most 20 us of the ack_timeout: not worth a clock read per wait */
        int64_t deadline = mc_shm_monotonic_ns() + pub->plugin->cfg.ack_timeout_ms * 1000000;
        sleep_until_read(pub, count, n, deadline);
    }
    pub->read_by_all_version = version;
    pub->read_by_all = lowest_cursor(pub, count);
    if (pub->read_by_all <= n)
        pub->read_by_all = n + 1; /* dropped on the way, or gone: not waited for again */
}

/* ---- sending ------------------------------------------------------------------------------ */

static int size_allowed(mc_plugin_pub *pub, uint64_t size)
{
    mc_plugin *p = pub->plugin;
    if (size <= p->cfg.max_message_size)
        return 0;
    return mc_shm_fail(p, MC_EMSGSIZE,
                       "topic '%s': message of %" PRIu64 " bytes exceeds max_message_size %" PRIu64,
                       pub->topic, size, p->cfg.max_message_size);
}

static uint64_t grown_capacity(const shm_config *c, uint64_t size)
{
    uint64_t capacity = size + size / 100 * (uint64_t)c->reserve_percent +
                        size % 100 * (uint64_t)c->reserve_percent / 100;
    if (capacity > MC_SHM_MAX_CAPACITY)
        capacity = size;
    return capacity < c->min_size ? c->min_size : capacity;
}

static void copy_table_locked(mc_plugin_pub *pub, shm_gen *to)
{
    mc_shm_writer *from = &pub->cur->w;
    for (size_t i = 0; i < pub->peer_count; i++) {
        uint32_t index = pub->peers[i].entry;
        if (index == NO_ENTRY)
            continue;
        entry_copy(mc_shm_entry_of(to->base, &to->w.geo, index),
                   mc_shm_entry_of(from->base, &from->geo, index));
    }
}

/* A message larger than the slots, or more subscribing contexts than the spares serve:
 * the next generation takes over. Subscribers read the old one to its end, then follow
 * next_generation. */
static int grow(mc_plugin_pub *pub, uint64_t size, uint32_t spares)
{
    mc_plugin *p = pub->plugin;
    shm_gen *old = pub->cur;
    shm_gen *next = NULL;
    uint64_t capacity =
        size > old->w.geo.capacity ? grown_capacity(&p->cfg, size) : old->w.geo.capacity;
    if (spares < old->w.spares)
        spares = old->w.spares; /* never fewer: contexts may come back */
    int rc = gen_create(pub, old->number + 1, capacity, spares, old->w.write_seq, &next);
    if (rc != 0)
        return rc;
    if (old != pub->anchor && (rc = remember_superseded(pub, old->number)) != 0) {
        shm_unlink(next->name);
        gen_free(next);
        return mc_shm_fail(p, rc, "topic '%s': out of memory growing the segment", pub->topic);
    }
    pthread_mutex_lock(&pub->lock);
    copy_table_locked(pub, next);
    /* sequentially consistent, like write_seq: a thread asleep on the old segment's
     * readers_bell is woken by the ring below, which reads its bell after this store */
    atomic_store(&mc_shm_hdr(old->base)->next_generation, next->number);
    atomic_store_explicit(&mc_shm_hdr(pub->anchor->base)->newest_generation, next->number,
                          memory_order_release);
    pub->cur = next;
    ring_all_locked(pub, true);
    pthread_mutex_unlock(&pub->lock);
    char why[100];
    if (next->w.geo.capacity > old->w.geo.capacity)
        snprintf(why, sizeof(why), "a message of %" PRIu64 " bytes needs larger slots", size);
    else
        snprintf(why, sizeof(why), "%u subscribing contexts need more spare slots",
                 atomic_load(&pub->contexts));
    p->host->log(p->host->ctx, MC_LOG_INFO,
                 "topic '%s': %s: generation %u has %" PRIu64 "-byte slots and %u spares (%" PRIu64
                 " bytes in all)",
                 pub->topic, why, next->number, next->w.geo.capacity, next->w.spares, next->size);
    if (old == pub->anchor && old->fd >= 0) { /* mapped for ever, written no more */
        close(old->fd);
        old->fd = old->w.fd = -1;
    }
    gen_retire(pub, old);
    return 0;
}

static int take_slot(mc_plugin_pub *pub, uint64_t size, uint32_t *slot)
{
    mc_plugin *p = pub->plugin;
    uint32_t spares = spares_for(p, atomic_load(&pub->contexts), pub->cur->w.geo.ring_slots);
    int rc = size > pub->cur->w.geo.capacity || spares > pub->cur->w.spares
                 ? grow(pub, size, spares)
                 : 0;
    if (rc != 0)
        return rc;
    bool waited_out = false;
    char err[300];
    rc = mc_shm_writer_take(&pub->cur->w, p->cfg.pin_timeout_ms * 1000000,
                            p->cfg.ack_timeout_ms == 0, slot, &waited_out, err, sizeof(err));
    if (rc != 0)
        return mc_shm_fail(p, rc, "topic '%s': %s", pub->topic, err);
    if (waited_out && !pub->pin_timeout_logged) {
        pub->pin_timeout_logged = true;
        p->host->log(p->host->ctx, MC_LOG_INFO,
                     "topic '%s': a reader kept a slot longer than pin_timeout (%" PRId64
                     " ms); the slot was reused and the reader counts an overrun (logged once)",
                     pub->topic, p->cfg.pin_timeout_ms);
    }
    return 0;
}

static void copy_payload(mc_plugin_pub *pub, uint32_t slot, const void *data, size_t size)
{
    unsigned char *dst = mc_shm_payload_of(pub->cur->base, &pub->cur->w.geo, slot);
    uint64_t uncached_min = pub->plugin->cfg.uncached_copy_min;
    if (uncached_min > 0 && size >= uncached_min)
        mc_shm_copy_uncached(dst, data, size);
    else
        memcpy(dst, data, size);
}

static void publish_slot(mc_plugin_pub *pub, uint32_t slot, const mc_sample *sample, uint64_t size)
{
    mc_shm_writer *w = &pub->cur->w;
    uint64_t evicted = mc_shm_writer_evicts(w);
    if (pub->plugin->cfg.ack_timeout_ms > 0 && evicted != UINT64_MAX && !mc_shm_on_wait_thread())
        wait_for_readers(pub, evicted);
    mc_shm_writer_commit(w, slot, sample, size);
    mc_shm_readers_wake(mc_shm_hdr(pub->cur->base));
    pthread_mutex_lock(&pub->lock);
    ring_all_locked(pub, false);
    pthread_mutex_unlock(&pub->lock);
    unlink_unneeded_generations(pub);
}

int mc_shm_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    int rc = size_allowed(pub, sample->size);
    uint32_t slot = 0;
    if (rc == 0)
        rc = take_slot(pub, sample->size, &slot);
    if (rc != 0)
        return rc;
    if (sample->size > 0)
        copy_payload(pub, slot, sample->data, (size_t)sample->size);
    publish_slot(pub, slot, sample, sample->size);
    return 0;
}

/* ---- zero-copy loans ------------------------------------------------------------------------ */

int mc_shm_loan(mc_plugin_pub *pub, size_t size, void **buf)
{
    if (pub->loan_gen != NULL)
        return mc_shm_fail(pub->plugin, MC_EBUSY, "topic '%s': a loan is already open", pub->topic);
    int rc = size_allowed(pub, size);
    uint32_t slot = 0;
    if (rc == 0)
        rc = take_slot(pub, size, &slot);
    if (rc != 0)
        return rc;
    pub->loan_gen = pub->cur;
    pub->loan_slot = slot;
    *buf = mc_shm_payload_of(pub->cur->base, &pub->cur->w.geo, slot);
    return 0;
}

static bool is_open_loan(mc_plugin_pub *pub, void *buf)
{
    return pub->loan_gen != NULL &&
           buf == mc_shm_payload_of(pub->loan_gen->base, &pub->loan_gen->w.geo, pub->loan_slot);
}

static void loan_end(mc_plugin_pub *pub)
{
    shm_gen *g = pub->loan_gen;
    pub->loan_gen = NULL;
    gen_retire(pub, g);
}

int mc_shm_commit(mc_plugin_pub *pub, void *buf, const mc_sample *sample)
{
    if (!is_open_loan(pub, buf))
        return mc_shm_fail(pub->plugin, MC_EINVAL, "topic '%s': %p is not the open loan",
                           pub->topic, buf);
    if (pub->loan_gen == pub->cur) {
        publish_slot(pub, pub->loan_slot, sample, sample->size);
        loan_end(pub);
        return 0;
    }
    /* A larger message grew the segment while the loan was open: one copy moves it. */
    mc_shm_writer_give_back(&pub->loan_gen->w, pub->loan_slot);
    uint32_t slot = 0;
    int rc = take_slot(pub, sample->size, &slot);
    if (rc == 0) {
        copy_payload(pub, slot, buf, (size_t)sample->size);
        publish_slot(pub, slot, sample, sample->size);
    }
    loan_end(pub);
    return rc;
}

void mc_shm_loan_discard(mc_plugin_pub *pub, void *buf)
{
    if (!is_open_loan(pub, buf))
        return;
    mc_shm_writer_give_back(&pub->loan_gen->w, pub->loan_slot);
    loan_end(pub);
}
