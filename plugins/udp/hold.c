/* Samples of publishers not connected yet (hold.h). */
#include <stdlib.h>
#include <string.h>

#include "hold.h"

void mc_udp_hold_init(mc_udp_hold *hold, uint64_t bytes_max, int64_t age_max_ns)
{
    memset(hold, 0, sizeof(*hold));
    hold->bytes_max = bytes_max;
    hold->age_max_ns = age_max_ns;
}

static mc_udp_held *at(mc_udp_hold *hold, size_t i)
{
    return &hold->samples[(hold->first + i) % MC_UDP_HOLD_SAMPLES];
}

static void drop_first(mc_udp_hold *hold)
{
    mc_udp_held *s = at(hold, 0);
    hold->bytes -= s->h.total_size;
    free(s->data);
    s->data = NULL;
    hold->first = (hold->first + 1) % MC_UDP_HOLD_SAMPLES;
    hold->count--;
}

void mc_udp_hold_free(mc_udp_hold *hold)
{
    while (hold->count > 0)
        drop_first(hold);
}

void mc_udp_hold_put(mc_udp_hold *hold, const mc_udp_data_header *h, const void *data, int64_t now)
{
    uint64_t size = h->total_size;
    if (size > hold->bytes_max) {
        hold->expired++;
        return;
    }
    while (hold->count > 0 &&
           (hold->count == MC_UDP_HOLD_SAMPLES || hold->bytes + size > hold->bytes_max)) {
        drop_first(hold);
        hold->expired++;
    }
    uint8_t *copy = NULL;
    if (size > 0 && (copy = malloc(size)) == NULL) {
        hold->expired++;
        return;
    }
    if (size > 0)
        memcpy(copy, data, size);
    mc_udp_held *s = at(hold, hold->count);
    *s = (mc_udp_held){.h = *h, .data = copy, .arrived_ns = now};
    hold->count++;
    hold->bytes += size;
    hold->held++;
}

void mc_udp_hold_release(mc_udp_hold *hold, int64_t now, mc_udp_hold_known_fn known,
                         mc_udp_hold_deliver_fn deliver, void *user)
{
    size_t kept = 0;
    size_t count = hold->count;
    for (size_t i = 0; i < count; i++) {
        mc_udp_held s = *at(hold, i);
        if (known(user, &s.h.publisher)) {
            deliver(user, &s.h, s.data);
            hold->released++;
        } else if (now - s.arrived_ns > hold->age_max_ns) {
            hold->expired++;
        } else {
            *at(hold, kept++) = s; /* kept <= i: the ring is compacted in place, in order */
            continue;
        }
        hold->bytes -= s.h.total_size;
        free(s.data);
    }
    hold->count = kept;
}

int64_t mc_udp_hold_next_due(const mc_udp_hold *hold)
{
    if (hold->count == 0)
        return INT64_MAX;
    return hold->samples[hold->first].arrived_ns + hold->age_max_ns + 1;
}
