/*
 * Samples from publishers a udp subscriber does not know yet (no threads, no sockets: the
 * subscriber's receive thread owns it, and the unit test drives it directly).
 *
 * With multicast, a subscriber gets every sample sent to its topic's group, also those of
 * publishers it is not matched with: the framework may have matched them over shm, or not
 * at all (another data type). So it delivers only samples of publishers the framework
 * connected it to over udp. But the publisher may learn of the subscriber, and send,
 * before the subscriber has heard of the publisher: the first samples of a new publisher
 * would be lost. They are held here instead, bounded in samples, bytes and age, and
 * delivered in order when the publisher is connected; what ages out was not for this
 * subscriber and is counted, not reported as lost.
 */
#ifndef MEMCAST_UDP_HOLD_H
#define MEMCAST_UDP_HOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data_wire.h"

#define MC_UDP_HOLD_SAMPLES 64

typedef struct mc_udp_held {
    mc_udp_data_header h;
    uint8_t *data; /* h.total_size bytes (NULL when 0) */
    int64_t arrived_ns;
} mc_udp_held;

typedef struct mc_udp_hold {
    uint64_t bytes_max;
    int64_t age_max_ns;
    uint64_t bytes;
    mc_udp_held samples[MC_UDP_HOLD_SAMPLES]; /* a ring, oldest at first */
    size_t first;
    size_t count;
    uint64_t held;     /* samples taken in */
    uint64_t released; /* delivered after their publisher was connected */
    uint64_t expired;  /* aged out, pushed out or too large: never for this subscriber */
} mc_udp_hold;

typedef bool (*mc_udp_hold_known_fn)(void *user, const mc_endpoint_id *publisher);
typedef void (*mc_udp_hold_deliver_fn)(void *user, const mc_udp_data_header *h, const void *data);

void mc_udp_hold_init(mc_udp_hold *hold, uint64_t bytes_max, int64_t age_max_ns);
void mc_udp_hold_free(mc_udp_hold *hold);

/* Keeps a copy of a finished sample; the oldest held ones give way when full. */
void mc_udp_hold_put(mc_udp_hold *hold, const mc_udp_data_header *h, const void *data, int64_t now);

/* Delivers, oldest first, the held samples whose publisher known() now accepts, and
 * forgets those older than the age bound. */
void mc_udp_hold_release(mc_udp_hold *hold, int64_t now, mc_udp_hold_known_fn known,
                         mc_udp_hold_deliver_fn deliver, void *user);

/* When the oldest held sample ages out (INT64_MAX when none is held). */
int64_t mc_udp_hold_next_due(const mc_udp_hold *hold);

#endif /* MEMCAST_UDP_HOLD_H */
