/*
 * Reassembly of fragmented samples for one udp subscriber (no sockets, no threads: the
 * subscriber's receive thread owns it, and the unit test drives it directly).
 *
 * Each sample in progress has one buffer of its final size; every fragment is copied
 * once, to its offset, and the buffer is what the subscriber is handed. What it may hold
 * is bounded: bytes of all buffers (memory_max), samples in progress (MC_UDP_RSM_ENTRIES)
 * and silence (timeout_ns without a new fragment: a large sample over a slow path may take
 * longer than that in all, as long as it keeps coming). Newer samples win: when memory is short
 * the oldest samples in progress are given up. A sample is counted lost once, whatever
 * happened to it (a fragment missing at its deadline, pushed out for memory, larger than
 * memory_max, overtaken by a newer sample of its publisher that completed first, or never
 * seen at all: a gap in its publisher's sequence). Each publisher's samples are delivered
 * in order.
 */
#ifndef MEMCAST_UDP_REASSEMBLY_H
#define MEMCAST_UDP_REASSEMBLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data_wire.h"

#define MC_UDP_RSM_ENTRIES    64    /* samples in progress at once */
#define MC_UDP_RSM_PUBLISHERS 1024  /* publishers whose sequence is followed */
#define MC_UDP_RSM_WINDOW     64    /* sequences remembered behind the newest */
#define MC_UDP_RSM_GAP_MAX    65536 /* a larger jump is a restart, not counted as loss */

/* A finished sample: data holds h->total_size bytes, valid during the call. */
typedef void (*mc_udp_rsm_complete_fn)(void *user, const mc_udp_data_header *h, const void *data);

typedef struct mc_udp_rsm_entry mc_udp_rsm_entry;
typedef struct mc_udp_rsm_publisher mc_udp_rsm_publisher;

typedef struct mc_udp_rsm_stats {
    uint64_t delivered;
    uint64_t lost;       /* samples: the caller reports the growth through host->dropped */
    uint64_t timed_out;  /* of lost: a fragment missing at the deadline */
    uint64_t evicted;    /* of lost: pushed out for a newer sample */
    uint64_t refused;    /* of lost: larger than memory_max, or no memory */
    uint64_t gaps;       /* of lost: no fragment ever arrived */
    uint64_t overtaken;  /* of lost: incomplete when a newer one of its publisher completed */
    uint64_t duplicates; /* fragments received twice */
    uint64_t stale;      /* fragments of samples already finished or given up */
} mc_udp_rsm_stats;

/* Told of every sample counted lost, with its publisher. */
typedef void (*mc_udp_rsm_lost_fn)(void *user, const mc_endpoint_id *publisher, uint64_t count);

typedef struct mc_udp_rsm {
    uint64_t memory_max;
    int64_t timeout_ns;
    uint64_t memory_used; /* buffers and bitmaps of samples in progress */
    mc_udp_rsm_entry *entries;
    size_t entry_count;
    mc_udp_rsm_publisher *publishers;
    size_t publisher_count;
    mc_udp_rsm_stats stats;
    mc_udp_rsm_lost_fn on_lost; /* optional: set after init */
    void *lost_user;
} mc_udp_rsm;

int mc_udp_rsm_init(mc_udp_rsm *r, uint64_t memory_max, int64_t timeout_ns);
void mc_udp_rsm_free(mc_udp_rsm *r);

/* Takes one parsed fragment received at now (monotonic ns). When it completes a sample,
 * complete() runs before this returns. */
void mc_udp_rsm_add(mc_udp_rsm *r, const mc_udp_data_header *h, const uint8_t *payload,
                    size_t payload_len, int64_t now, mc_udp_rsm_complete_fn complete, void *user);

/* Gives up samples that got no fragment for the timeout; returns when the next one would be due
 * (INT64_MAX when none is in progress). */
int64_t mc_udp_rsm_expire(mc_udp_rsm *r, int64_t now);

#endif /* MEMCAST_UDP_REASSEMBLY_H */
