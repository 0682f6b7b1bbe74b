/*
 * Reassembly of fragmented samples (the bounds and the accounting are described in
 * reassembly.h).
 */
#include <stdlib.h>
#include <string.h>

#include <memcast/plugin.h>

#include "reassembly.h"

struct mc_udp_rsm_entry {
    mc_endpoint_id publisher;
    uint64_t seq;
    mc_udp_data_header header; /* of the first fragment: the sample's facts */
    uint64_t fragments;
    uint64_t received;
    uint64_t *bitmap; /* one bit per fragment */
    uint8_t *buf;
    uint64_t cost; /* bytes counted in memory_used */
    int64_t first_ns;
    int64_t last_ns; /* when a fragment last arrived: the timeout runs from here */
};

/* Which sequences of a publisher were seen, so that a sample is counted once. */
struct mc_udp_rsm_publisher {
    mc_endpoint_id id;
    uint64_t highest;
    uint64_t window; /* bit k: highest - k was seen */
    int64_t last_ns;
};

static bool same_id(const mc_endpoint_id *a, const mc_endpoint_id *b)
{
    return a->context_hi == b->context_hi && a->context_lo == b->context_lo &&
           a->serial == b->serial;
}

int mc_udp_rsm_init(mc_udp_rsm *r, uint64_t memory_max, int64_t timeout_ns)
{
    memset(r, 0, sizeof(*r));
    r->memory_max = memory_max;
    r->timeout_ns = timeout_ns;
    r->entries = calloc(MC_UDP_RSM_ENTRIES, sizeof(*r->entries));
    r->publishers = calloc(MC_UDP_RSM_PUBLISHERS, sizeof(*r->publishers));
    if (r->entries == NULL || r->publishers == NULL) {
        mc_udp_rsm_free(r);
        return MC_ENOMEM;
    }
    return 0;
}

static void entry_release(mc_udp_rsm *r, size_t i)
{
    mc_udp_rsm_entry *e = &r->entries[i];
    free(e->buf);
    free(e->bitmap);
    r->memory_used -= e->cost;
    r->entries[i] = r->entries[--r->entry_count];
}

void mc_udp_rsm_free(mc_udp_rsm *r)
{
    while (r->entries != NULL && r->entry_count > 0)
        entry_release(r, r->entry_count - 1);
    free(r->entries);
    free(r->publishers);
    r->entries = NULL;
    r->publishers = NULL;
}

static void count_lost(mc_udp_rsm *r, uint64_t *reason, const mc_endpoint_id *publisher,
                       uint64_t count)
{
    r->stats.lost += count;
    *reason += count;
    if (r->on_lost != NULL)
        r->on_lost(r->lost_user, publisher, count);
}

/* ---- publishers' sequences ----------------------------------------------------------- */

static mc_udp_rsm_publisher *publisher_find(mc_udp_rsm *r, const mc_endpoint_id *id, int64_t now)
{
    for (size_t i = 0; i < r->publisher_count; i++)
        if (same_id(&r->publishers[i].id, id))
            return &r->publishers[i];
    size_t slot = r->publisher_count;
    if (slot == MC_UDP_RSM_PUBLISHERS) { /* forget the one silent the longest */
        slot = 0;
        for (size_t i = 1; i < r->publisher_count; i++)
            if (r->publishers[i].last_ns < r->publishers[slot].last_ns)
                slot = i;
    } else {
        r->publisher_count++;
    }
    r->publishers[slot] = (mc_udp_rsm_publisher){.id = *id, .last_ns = now};
    return &r->publishers[slot];
}

/* True when seq is new for this publisher (and records it); false for a sample already
 * seen, or one counted lost before its first fragment came. Gaps are counted here. */
static bool sequence_first_seen(mc_udp_rsm *r, mc_udp_rsm_publisher *p, uint64_t seq)
{
    if (p->highest == 0 || seq > p->highest) {
        uint64_t jump = p->highest == 0 ? 1 : seq - p->highest;
        if (p->highest != 0 && jump > 1 && jump <= MC_UDP_RSM_GAP_MAX)
            count_lost(r, &r->stats.gaps, &p->id, jump - 1);
        p->window = jump >= MC_UDP_RSM_WINDOW ? 1 : (p->window << jump) | 1;
        p->highest = seq;
        return true;
    }
    uint64_t age = p->highest - seq;
    if (age >= MC_UDP_RSM_WINDOW || (p->window & (1ull << age)))
        return false;
    /* Counted as a gap when a newer sample came first: it stays lost, so that it is not
     * counted both lost and delivered. */
    p->window |= 1ull << age;
    return false;
}

/* ---- samples in progress ------------------------------------------------------------ */

static mc_udp_rsm_entry *entry_find(mc_udp_rsm *r, const mc_udp_data_header *h)
{
    for (size_t i = 0; i < r->entry_count; i++)
        if (r->entries[i].seq == h->seq && same_id(&r->entries[i].publisher, &h->publisher))
            return &r->entries[i];
    return NULL;
}

static size_t oldest_entry(const mc_udp_rsm *r)
{
    size_t oldest = 0;
    for (size_t i = 1; i < r->entry_count; i++)
        if (r->entries[i].first_ns < r->entries[oldest].first_ns)
            oldest = i;
    return oldest;
}

/* Makes room for cost bytes and one more entry by giving up the oldest samples. */
static bool make_room(mc_udp_rsm *r, uint64_t cost)
{
    if (cost > r->memory_max)
        return false;
    while (r->entry_count > 0 &&
           (r->entry_count == MC_UDP_RSM_ENTRIES || r->memory_used + cost > r->memory_max)) {
        size_t oldest = oldest_entry(r);
        count_lost(r, &r->stats.evicted, &r->entries[oldest].publisher, 1);
        entry_release(r, oldest);
    }
    return true;
}

static mc_udp_rsm_entry *entry_start(mc_udp_rsm *r, const mc_udp_data_header *h, int64_t now)
{
    uint64_t fragments = mc_udp_data_fragments(h->total_size, h->fragment_size);
    size_t bitmap_bytes = (size_t)((fragments + 63) / 64) * sizeof(uint64_t);
    uint64_t cost = h->total_size + bitmap_bytes;
    if (!make_room(r, cost)) {
        count_lost(r, &r->stats.refused, &h->publisher, 1);
        return NULL;
    }
    mc_udp_rsm_entry e = {.publisher = h->publisher,
                          .seq = h->seq,
                          .header = *h,
                          .fragments = fragments,
                          .cost = cost,
                          .first_ns = now,
                          .last_ns = now};
    e.buf = malloc((size_t)h->total_size);
    e.bitmap = calloc(1, bitmap_bytes);
    if (e.buf == NULL || e.bitmap == NULL) {
        free(e.buf);
        free(e.bitmap);
        count_lost(r, &r->stats.refused, &h->publisher, 1);
        return NULL;
    }
    r->memory_used += cost;
    r->entries[r->entry_count] = e;
    return &r->entries[r->entry_count++];
}

/* A fragment that disagrees with the first one about the sample is not used. */
static bool same_sample(const mc_udp_rsm_entry *e, const mc_udp_data_header *h)
{
    return e->header.total_size == h->total_size && e->header.fragment_size == h->fragment_size;
}

static void entry_fill(mc_udp_rsm *r, mc_udp_rsm_entry *e, const mc_udp_data_header *h,
                       const uint8_t *payload, size_t payload_len)
{
    uint64_t index = h->offset / h->fragment_size;
    uint64_t bit = 1ull << (index % 64);
    if (!same_sample(e, h) || (e->bitmap[index / 64] & bit)) {
        r->stats.duplicates++;
        return;
    }
    e->bitmap[index / 64] |= bit;
    memcpy(e->buf + h->offset, payload, payload_len);
    e->received++;
}

/* Samples are delivered in their publisher's order: when seq completes, its publisher's
 * older samples still in progress can no longer be delivered in order, and a path that
 * keeps order (one socket pair; loopback, a LAN) has lost a fragment of each. They are
 * given up now, counted lost before seq is delivered, not at their timeout. */
static void give_up_older(mc_udp_rsm *r, const mc_endpoint_id *publisher, uint64_t seq)
{
    for (size_t i = 0; i < r->entry_count;) {
        mc_udp_rsm_entry *e = &r->entries[i];
        if (e->seq < seq && same_id(&e->publisher, publisher)) {
            count_lost(r, &r->stats.overtaken, publisher, 1);
            entry_release(r, i);
            continue;
        }
        i++;
    }
}

void mc_udp_rsm_add(mc_udp_rsm *r, const mc_udp_data_header *h, const uint8_t *payload,
                    size_t payload_len, int64_t now, mc_udp_rsm_complete_fn complete, void *user)
{
    mc_udp_rsm_entry *e = entry_find(r, h);
    if (e == NULL) {
        mc_udp_rsm_publisher *p = publisher_find(r, &h->publisher, now);
        p->last_ns = now;
        if (!sequence_first_seen(r, p, h->seq)) {
            r->stats.stale++;
            return;
        }
        if (payload_len == h->total_size) { /* one fragment: no copy, no buffer */
            give_up_older(r, &h->publisher, h->seq);
            r->stats.delivered++;
            complete(user, h, payload);
            return;
        }
        if ((e = entry_start(r, h, now)) == NULL)
            return;
    }
    e->last_ns = now;
    entry_fill(r, e, h, payload, payload_len);
    if (e->received < e->fragments)
        return;
    give_up_older(r, &h->publisher, h->seq);
    e = entry_find(r, h); /* releasing others may have moved it */
    r->stats.delivered++;
    complete(user, &e->header, e->buf);
    entry_release(r, (size_t)(e - r->entries));
}

int64_t mc_udp_rsm_expire(mc_udp_rsm *r, int64_t now)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < r->entry_count;) {
        int64_t due = r->entries[i].last_ns + r->timeout_ns;
        if (due <= now) {
            count_lost(r, &r->stats.timed_out, &r->entries[i].publisher, 1);
            entry_release(r, i);
            continue;
        }
        if (due < next)
            next = due;
        i++;
    }
    return next;
}
