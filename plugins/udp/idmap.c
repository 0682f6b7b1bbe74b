/*
 * Endpoint serials of one context are small consecutive numbers: a multiplicative hash
 * spreads them over the table.
 */
#include <stdlib.h>

#include "idmap.h"

static size_t slot_of(const mc_udp_idmap *m, uint64_t key)
{
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (m->capacity - 1);
}

void *mc_udp_idmap_get(const mc_udp_idmap *m, uint64_t key)
{
    if (m->capacity == 0)
        return NULL;
    for (size_t i = slot_of(m, key);; i = (i + 1) & (m->capacity - 1)) {
        if (m->slots[i].value == NULL)
            return NULL;
        if (m->slots[i].key == key)
            return m->slots[i].value;
    }
}

static void place(mc_udp_idmap *m, uint64_t key, void *value)
{
    size_t i = slot_of(m, key);
    while (m->slots[i].value != NULL && m->slots[i].key != key)
        i = (i + 1) & (m->capacity - 1);
    if (m->slots[i].value == NULL)
        m->count++;
    m->slots[i] = (mc_udp_idmap_slot){.key = key, .value = value};
}

static bool grow(mc_udp_idmap *m)
{
    size_t capacity = m->capacity ? m->capacity * 2 : 16;
    mc_udp_idmap_slot *slots = calloc(capacity, sizeof(*slots));
    if (slots == NULL)
        return false;
    mc_udp_idmap old = *m;
    *m = (mc_udp_idmap){.slots = slots, .capacity = capacity};
    for (size_t i = 0; i < old.capacity; i++)
        if (old.slots[i].value != NULL)
            place(m, old.slots[i].key, old.slots[i].value);
    free(old.slots);
    return true;
}

bool mc_udp_idmap_put(mc_udp_idmap *m, uint64_t key, void *value)
{
    /* Kept at most half full so that probes stay short. */
    if ((m->count + 1) * 2 > m->capacity && !grow(m))
        return false;
    place(m, key, value);
    return true;
}

/* Distance of slot i from where key k would sit. */
static size_t probe_distance(const mc_udp_idmap *m, size_t i, uint64_t k)
{
    return (i - slot_of(m, k)) & (m->capacity - 1);
}

void *mc_udp_idmap_remove(mc_udp_idmap *m, uint64_t key)
{
    if (m->capacity == 0)
        return NULL;
    size_t i = slot_of(m, key);
    while (m->slots[i].value != NULL && m->slots[i].key != key)
        i = (i + 1) & (m->capacity - 1);
    void *value = m->slots[i].value;
    if (value == NULL)
        return NULL;
    /* Backward shift: move later members of the run into the hole when that keeps them
     * reachable from their home slot, so lookups never need tombstones. */
    size_t hole = i;
    for (size_t j = (i + 1) & (m->capacity - 1); m->slots[j].value != NULL;
         j = (j + 1) & (m->capacity - 1)) {
        if (probe_distance(m, j, m->slots[j].key) >= ((j - hole) & (m->capacity - 1))) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole] = (mc_udp_idmap_slot){0};
    m->count--;
    return value;
}

void mc_udp_idmap_free(mc_udp_idmap *m)
{
    free(m->slots);
    *m = (mc_udp_idmap){0};
}
