/*
 * Other contexts, as the receive thread knows them: for each, its endpoints and the
 * generation up to which we are in sync with it. This table belongs to the receive thread
 * alone, so it has no lock, and the host is told of changes (host->remote) while the
 * thread holds no plugin lock.
 *
 * Keeping in sync (doc/registration.md, "Protocol"):
 *  - an increment of generation synced+1 applies and advances synced;
 *  - an increment further ahead applies too (so a new endpoint is known at once), is
 *    remembered in `ahead`, and we ask the sender for its full list;
 *  - the records of a full list of generation g apply as they arrive, except where we
 *    hold newer news of an endpoint. Once every endpoint the list announces was seen (in
 *    any datagram of any answer of that generation: a lost part is made up by the next
 *    answer), what it did not list and did not change after g is removed, synced = g,
 *    and increments remembered in `ahead` move synced on when they are contiguous;
 *  - a withdraw applied ahead of sync leaves a dead entry, so that an older full list
 *    cannot bring the endpoint back; dead entries go once synced passes them;
 *  - a heartbeat whose generation or endpoint count differs from ours makes us ask.
 * Increments are idempotent, which is what makes applying them out of order safe.
 */
#include <stdlib.h>
#include <string.h>

#include "udp.h"

typedef struct remote_ep {
    uint64_t serial;
    uint32_t generation; /* when the sender last changed it */
    uint32_t mark;       /* the full list that last named it */
    bool alive;          /* false: withdrawn ahead of sync */
    uint32_t kind;
    uint64_t messages;
    uint64_t dropped;
    uint32_t source_count;
    mc_source_loss sources[MC_REG_SOURCES_MAX];
    const char *topic;
    const char *type;
    const char *encoding;
    uint32_t locator_count;
    mc_locator locators[]; /* then the three strings */
} remote_ep;

struct udp_peer {
    uint64_t hi;
    uint64_t lo;
    int32_t pid;
    uint8_t host_token[MC_HOST_TOKEN_SIZE];
    int64_t heard_ns;
    int64_t asked_ns;
    bool asked;

    bool synced;
    uint32_t synced_gen;
    uint32_t ahead[MC_UDP_AHEAD_MAX]; /* increments applied beyond synced_gen */
    size_t ahead_count;
    mc_udp_idmap endpoints; /* serial -> remote_ep */
    size_t alive_count;
    size_t dead_count;

    bool sequence_known;
    uint32_t last_sequence;
    uint64_t lost;

    /* the full list being collected: entries it named carry `mark` */
    bool collecting;
    uint32_t mark;
    uint32_t collect_gen;
    uint32_t collect_expected; /* endpoints the list announces */
    uint32_t collect_seen;     /* distinct endpoints of it seen so far */

    udp_peer *next;
};

static bool gen_after(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0; /* serial-number arithmetic: survives wrap-around */
}

static void over_limit(mc_plugin *p, const char *what)
{
    p->stats.over_limit++;
    if (!p->warned_limit)
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "%s: ignored (limits: %d contexts, %d endpoints per context; or out of "
                     "memory)",
                     what, MC_UDP_PEERS_MAX, MC_UDP_PEER_ENDPOINTS);
    p->warned_limit = true;
}

/* ---- endpoints ------------------------------------------------------------------------- */

static const char *copy_text(char **cursor, mc_udp_text t)
{
    char *s = *cursor;
    memcpy(s, t.data, t.len);
    s[t.len] = '\0';
    *cursor = s + t.len + 1;
    return s;
}

static remote_ep *ep_new(const mc_udp_wire_record *r, uint32_t generation, bool alive)
{
    size_t text = r->topic.len + r->type.len + r->encoding.len + 3;
    remote_ep *e = malloc(sizeof(*e) + r->locator_count * sizeof(mc_locator) + text);
    if (e == NULL)
        return NULL;
    *e = (remote_ep){.serial = r->serial,
                     .generation = generation,
                     .alive = alive,
                     .kind = r->kind,
                     .messages = r->messages,
                     .dropped = r->dropped,
                     .locator_count = r->locator_count,
                     .source_count = r->source_count};
    memcpy(e->sources, r->sources, r->source_count * sizeof(mc_source_loss));
    for (size_t i = 0; i < r->locator_count; i++) {
        mc_locator *l = &e->locators[i];
        memset(l, 0, sizeof(*l)); /* whole structs are compared with memcmp */
        memcpy(l->transport, r->locators[i].transport.data, r->locators[i].transport.len);
        l->size = (uint32_t)r->locators[i].size;
        memcpy(l->data, r->locators[i].data, r->locators[i].size);
    }
    char *cursor = (char *)&e->locators[r->locator_count];
    e->topic = copy_text(&cursor, r->topic);
    e->type = copy_text(&cursor, r->type);
    e->encoding = copy_text(&cursor, r->encoding);
    return e;
}

/* What the framework compares to decide whether a match must be redone. */
static bool ep_same(const remote_ep *a, const remote_ep *b)
{
    return a->kind == b->kind && strcmp(a->topic, b->topic) == 0 && strcmp(a->type, b->type) == 0 &&
           strcmp(a->encoding, b->encoding) == 0 && a->locator_count == b->locator_count &&
           memcmp(a->locators, b->locators, a->locator_count * sizeof(mc_locator)) == 0;
}

static bool counters_same(const remote_ep *a, const remote_ep *b)
{
    return a->messages == b->messages && a->dropped == b->dropped &&
           a->source_count == b->source_count &&
           memcmp(a->sources, b->sources, a->source_count * sizeof(mc_source_loss)) == 0;
}

static void report(mc_plugin *p, const udp_peer *peer, const remote_ep *e, bool alive)
{
    mc_registration reg = {
        .struct_size = sizeof(reg),
        .kind = e->kind,
        .id = {.context_hi = peer->hi, .context_lo = peer->lo, .serial = e->serial},
        .topic = e->topic,
        .type = e->type,
        .encoding = e->encoding,
        .pid = peer->pid,
        .locator_count = e->locator_count,
        .locators = e->locators,
        .messages = e->messages,
        .dropped = e->dropped,
        .source_count = e->source_count,
        .sources = e->sources,
    };
    memcpy(reg.host_token, peer->host_token, MC_HOST_TOKEN_SIZE);
    p->host->remote(p->host->ctx, &reg, alive);
}

static void count_entry(udp_peer *peer, const remote_ep *e, int delta)
{
    if (e->alive)
        peer->alive_count += (size_t)delta;
    else
        peer->dead_count += (size_t)delta;
}

/* Puts n in place of what the table holds for its serial, and tells the host what changed
 * for it: a new or changed endpoint, new counters, or a withdrawal. Takes n; false when
 * it could not be kept. */
static bool ep_store(mc_plugin *p, udp_peer *peer, remote_ep *n)
{
    remote_ep *old = mc_udp_idmap_get(&peer->endpoints, n->serial);
    if ((old == NULL && peer->endpoints.count >= MC_UDP_PEER_ENDPOINTS) ||
        !mc_udp_idmap_put(&peer->endpoints, n->serial, n)) {
        over_limit(p, "an endpoint of another context");
        free(n);
        return false;
    }
    if (old != NULL)
        count_entry(peer, old, -1);
    count_entry(peer, n, +1);
    bool was_alive = old != NULL && old->alive;
    if (n->alive && !(was_alive && ep_same(old, n) && counters_same(old, n)))
        report(p, peer, n, true);
    else if (!n->alive && was_alive)
        report(p, peer, old, false);
    free(old);
    return true;
}

static void ep_remove(mc_plugin *p, udp_peer *peer, remote_ep *e)
{
    mc_udp_idmap_remove(&peer->endpoints, e->serial);
    count_entry(peer, e, -1);
    if (e->alive)
        report(p, peer, e, false);
    free(e);
}

typedef bool (*ep_filter)(const remote_ep *e, uint32_t generation, uint32_t mark);

/* Removes every entry the filter selects. Collected first: removal reorders the table. */
static void ep_remove_where(mc_plugin *p, udp_peer *peer, ep_filter filter, uint32_t generation,
                            uint32_t mark)
{
    size_t count = 0;
    remote_ep **victims = malloc(peer->endpoints.count * sizeof(*victims) + 1);
    if (victims == NULL)
        return; /* the next heartbeat shows the difference and we ask again */
    for (size_t i = 0; i < peer->endpoints.capacity; i++) {
        remote_ep *e = peer->endpoints.slots[i].value;
        if (e != NULL && filter(e, generation, mark))
            victims[count++] = e;
    }
    for (size_t i = 0; i < count; i++)
        ep_remove(p, peer, victims[i]);
    free(victims);
}

static bool is_settled_dead(const remote_ep *e, uint32_t synced_gen, uint32_t mark)
{
    (void)mark;
    return !e->alive && !gen_after(e->generation, synced_gen);
}

static bool is_unlisted(const remote_ep *e, uint32_t generation, uint32_t mark)
{
    return e->mark != mark && !gen_after(e->generation, generation);
}

/* ---- generations ------------------------------------------------------------------------- */

static void ahead_add(udp_peer *peer, uint32_t generation)
{
    for (size_t i = 0; i < peer->ahead_count; i++)
        if (peer->ahead[i] == generation)
            return;
    if (peer->ahead_count == MC_UDP_AHEAD_MAX)
        peer->ahead_count--; /* forget one: at worst we ask once more */
    peer->ahead[peer->ahead_count++] = generation;
}

/* Moves synced_gen over increments already applied, then drops what it passed. */
static void advance(mc_plugin *p, udp_peer *peer)
{
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < peer->ahead_count;) {
            if (peer->ahead[i] == peer->synced_gen + 1) {
                peer->synced_gen++;
                moved = true;
            }
            if (!gen_after(peer->ahead[i], peer->synced_gen))
                peer->ahead[i] = peer->ahead[--peer->ahead_count];
            else
                i++;
        }
    }
    if (peer->dead_count > 0)
        ep_remove_where(p, peer, is_settled_dead, peer->synced_gen, 0);
}

static void ask(mc_plugin *p, udp_peer *peer, int64_t now)
{
    if (peer->asked && now - peer->asked_ns < MC_UDP_REQUEST_RETRY_NS)
        return; /* an answer is probably on its way */
    peer->asked = true;
    peer->asked_ns = now;
    mc_udp_send_request(p, peer->hi, peer->lo);
}

/* ---- applying what arrived ----------------------------------------------------------------- */

static void apply_change(mc_plugin *p, udp_peer *peer, uint8_t type, const mc_udp_wire_record *r,
                         uint32_t generation, bool in_order)
{
    remote_ep *e = mc_udp_idmap_get(&peer->endpoints, r->serial);
    if (type == MC_UDP_MSG_WITHDRAW && in_order) {
        if (e != NULL)
            ep_remove(p, peer, e); /* nothing older can bring it back */
        return;
    }
    remote_ep *n = ep_new(r, generation, type == MC_UDP_MSG_ANNOUNCE);
    if (n == NULL) {
        over_limit(p, "an endpoint of another context");
        return;
    }
    n->mark = e != NULL ? e->mark : 0; /* still named by the list being collected */
    ep_store(p, peer, n);
}

/* An incremental ANNOUNCE or WITHDRAW (exactly one record, checked by the decoder). */
static void on_change(mc_plugin *p, udp_peer *peer, const mc_udp_wire_message *msg, int64_t now)
{
    uint32_t generation = msg->header.generation;
    if (peer->synced && !gen_after(generation, peer->synced_gen)) {
        p->stats.stale++;
        return;
    }
    bool in_order = peer->synced && generation == peer->synced_gen + 1;
    mc_udp_wire_cursor cursor;
    mc_udp_wire_record r;
    mc_udp_wire_cursor_init(&cursor, msg);
    if (!mc_udp_wire_cursor_next(&cursor, &r))
        return;
    remote_ep *e = mc_udp_idmap_get(&peer->endpoints, r.serial);
    if (e == NULL || !gen_after(e->generation, generation))
        apply_change(p, peer, msg->header.type, &r, generation, in_order);
    if (in_order) {
        peer->synced_gen = generation;
        advance(p, peer);
    } else {
        ahead_add(peer, generation);
        ask(p, peer, now);
    }
}

/* ---- full lists ----------------------------------------------------------------------- */

static void collect_start(udp_peer *peer, uint32_t generation, uint32_t expected)
{
    peer->collecting = true;
    peer->mark++; /* entries named by earlier lists no longer count */
    peer->collect_gen = generation;
    peer->collect_expected = expected;
    peer->collect_seen = 0;
}

/* Every endpoint of the list was seen: the list is the set at its generation. */
static void collect_complete(mc_plugin *p, udp_peer *peer)
{
    uint32_t generation = peer->collect_gen;
    ep_remove_where(p, peer, is_unlisted, generation, peer->mark);
    peer->collecting = false;
    peer->synced = true;
    peer->synced_gen = generation;
    advance(p, peer);
}

/* One record of the list being collected. */
static void collect_record(mc_plugin *p, udp_peer *peer, const mc_udp_wire_record *r)
{
    uint32_t generation = peer->collect_gen;
    remote_ep *e = mc_udp_idmap_get(&peer->endpoints, r->serial);
    bool counted = e != NULL && e->mark == peer->mark; /* named by an earlier datagram */
    if (e != NULL && gen_after(e->generation, generation)) {
        e->mark = peer->mark; /* we already hold newer news of it */
    } else {
        remote_ep *n = ep_new(r, generation, true);
        if (n == NULL) {
            over_limit(p, "an endpoint of another context");
            return;
        }
        n->mark = peer->mark;
        if (!ep_store(p, peer, n))
            return;
    }
    if (!counted)
        peer->collect_seen++;
}

static void on_full_part(mc_plugin *p, udp_peer *peer, const mc_udp_wire_message *msg)
{
    const mc_udp_wire_header *h = &msg->header;
    if ((peer->synced && gen_after(peer->synced_gen, h->generation)) ||
        (peer->collecting && gen_after(peer->collect_gen, h->generation))) {
        p->stats.stale++;
        return;
    }
    /* Every answer of one generation lists the same endpoints, however it is split. */
    if (!peer->collecting || peer->collect_gen != h->generation ||
        peer->collect_expected != h->endpoint_count)
        collect_start(peer, h->generation, h->endpoint_count);
    mc_udp_wire_cursor cursor;
    mc_udp_wire_record r;
    mc_udp_wire_cursor_init(&cursor, msg);
    while (mc_udp_wire_cursor_next(&cursor, &r))
        collect_record(p, peer, &r);
    if (peer->collect_seen >= peer->collect_expected)
        collect_complete(p, peer);
}

/* A HEARTBEAT or REQUEST: both carry the sender's generation and endpoint count. */
static void observe(mc_plugin *p, udp_peer *peer, const mc_udp_wire_header *h, int64_t now)
{
    if ((peer->synced && gen_after(peer->synced_gen, h->generation)) ||
        (peer->collecting && gen_after(peer->collect_gen, h->generation)))
        return; /* older than what we hold: overtaken on the way */
    if (peer->synced && h->generation == peer->synced_gen && h->endpoint_count == peer->alive_count)
        return;
    if (h->endpoint_count == 0) {
        collect_start(peer, h->generation, 0); /* an empty list needs no fetching */
        collect_complete(p, peer);
        return;
    }
    ask(p, peer, now);
}

static void track_sequence(mc_plugin *p, udp_peer *peer, uint32_t sequence)
{
    if (!peer->sequence_known) {
        peer->sequence_known = true;
        peer->last_sequence = sequence;
        return;
    }
    int32_t step = (int32_t)(sequence - peer->last_sequence);
    if (step > MC_UDP_SEQUENCE_JUMP) {
        peer->last_sequence = sequence; /* not a loss that size: start counting afresh */
    } else if (step > 0) {
        peer->lost += (uint64_t)(step - 1);
        p->stats.lost += (uint64_t)(step - 1);
        peer->last_sequence = sequence;
    } else if (step < 0 && peer->lost > 0) {
        peer->lost--; /* late, not lost: a part of a full list overtaken by an increment */
        p->stats.lost--;
    }
}

/* ---- contexts ----------------------------------------------------------------------------- */

static udp_peer **peer_link(mc_plugin *p, uint64_t hi, uint64_t lo)
{
    udp_peer **link = &p->peers.list;
    while (*link != NULL && ((*link)->hi != hi || (*link)->lo != lo))
        link = &(*link)->next;
    return link;
}

static udp_peer *peer_add(mc_plugin *p, const mc_udp_wire_header *h, int64_t now)
{
    udp_peer *peer = p->peers.count < MC_UDP_PEERS_MAX ? calloc(1, sizeof(*peer)) : NULL;
    if (peer == NULL) {
        over_limit(p, "another context");
        return NULL;
    }
    peer->hi = h->context_hi;
    peer->lo = h->context_lo;
    peer->pid = h->pid;
    memcpy(peer->host_token, h->host_token, MC_HOST_TOKEN_SIZE);
    peer->heard_ns = now;
    peer->next = p->peers.list;
    p->peers.list = peer;
    p->peers.count++;
    p->host->log(p->host->ctx, MC_LOG_DEBUG, "context %016llx%016llx (pid %d) appeared",
                 (unsigned long long)peer->hi, (unsigned long long)peer->lo, (int)peer->pid);
    return peer;
}

/* Frees a context already unlinked, first reporting its endpoints gone when asked to. */
static void peer_release(mc_plugin *p, udp_peer *peer, bool tell_host)
{
    for (size_t i = 0; i < peer->endpoints.capacity; i++) {
        remote_ep *e = peer->endpoints.slots[i].value;
        if (e != NULL && e->alive && tell_host)
            report(p, peer, e, false);
    }
    for (size_t i = 0; i < peer->endpoints.capacity; i++)
        free(peer->endpoints.slots[i].value);
    mc_udp_idmap_free(&peer->endpoints);
    free(peer);
}

static bool departed(const mc_plugin *p, const mc_udp_wire_header *h)
{
    for (size_t i = 0; i < MC_UDP_DEPARTED_MAX; i++)
        if (p->peers.departed[i][0] == h->context_hi && p->peers.departed[i][1] == h->context_lo)
            return true;
    return false;
}

static void on_goodbye(mc_plugin *p, udp_peer **link, const mc_udp_wire_header *h)
{
    udp_peer *peer = *link;
    if (peer != NULL) {
        *link = peer->next;
        p->peers.count--;
        p->host->log(p->host->ctx, MC_LOG_DEBUG, "context %016llx%016llx (pid %d) said goodbye",
                     (unsigned long long)peer->hi, (unsigned long long)peer->lo, (int)peer->pid);
        peer_release(p, peer, true);
    }
    /* Datagrams overtaken by the goodbye must not bring the context back. */
    size_t slot = p->peers.departed_next++ % MC_UDP_DEPARTED_MAX;
    p->peers.departed[slot][0] = h->context_hi;
    p->peers.departed[slot][1] = h->context_lo;
    p->stats.goodbyes++;
}

void mc_udp_peers_handle(mc_plugin *p, const mc_udp_wire_message *msg, int64_t now)
{
    const mc_udp_wire_header *h = &msg->header;
    udp_peer **link = peer_link(p, h->context_hi, h->context_lo);
    udp_peer *peer = *link;
    if (peer == NULL && departed(p, h)) {
        p->stats.departed++;
        return;
    }
    if (h->type == MC_UDP_MSG_GOODBYE) {
        on_goodbye(p, link, h);
        return;
    }
    if (peer == NULL && (peer = peer_add(p, h, now)) == NULL)
        return;
    peer->heard_ns = now;
    track_sequence(p, peer, h->sequence);
    if (h->type == MC_UDP_MSG_ANNOUNCE && (h->flags & MC_UDP_FLAG_FULL))
        on_full_part(p, peer, msg);
    else if (h->type == MC_UDP_MSG_ANNOUNCE || h->type == MC_UDP_MSG_WITHDRAW)
        on_change(p, peer, msg, now);
    else
        observe(p, peer, h, now);
}

int64_t mc_udp_peers_expire(mc_plugin *p, int64_t now)
{
    int64_t expiry = p->cfg.expiry_ms * 1000000;
    int64_t next = INT64_MAX;
    udp_peer **link = &p->peers.list;
    while (*link != NULL) {
        udp_peer *peer = *link;
        int64_t deadline = peer->heard_ns + expiry;
        if (now < deadline) {
            next = deadline < next ? deadline : next;
            link = &peer->next;
            continue;
        }
        *link = peer->next;
        p->peers.count--;
        p->stats.expired++;
        p->host->log(p->host->ctx, MC_LOG_INFO,
                     "context %016llx%016llx (pid %d) expired: not heard from for %lld ms",
                     (unsigned long long)peer->hi, (unsigned long long)peer->lo, (int)peer->pid,
                     (long long)p->cfg.expiry_ms);
        peer_release(p, peer, true);
    }
    return next;
}

void mc_udp_peers_free(mc_plugin *p)
{
    while (p->peers.list != NULL) {
        udp_peer *peer = p->peers.list;
        p->peers.list = peer->next;
        peer_release(p, peer, false);
    }
    p->peers.count = 0;
}
