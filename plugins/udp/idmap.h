/*
 * A hash map from 64-bit keys to non-NULL pointers (open addressing, linear probing,
 * backward-shift deletion), for endpoint serials. Not thread-safe: the owner locks.
 */
#ifndef MEMCAST_UDP_IDMAP_H
#define MEMCAST_UDP_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mc_udp_idmap_slot {
    uint64_t key;
    void *value; /* NULL: the slot is free */
} mc_udp_idmap_slot;

typedef struct mc_udp_idmap {
    mc_udp_idmap_slot *slots;
    size_t capacity; /* a power of two, or 0 */
    size_t count;
} mc_udp_idmap;

void *mc_udp_idmap_get(const mc_udp_idmap *m, uint64_t key);
/* Inserts or replaces; returns false when out of memory (the map is unchanged). */
bool mc_udp_idmap_put(mc_udp_idmap *m, uint64_t key, void *value);
/* Removes key and returns its value, or NULL. */
void *mc_udp_idmap_remove(mc_udp_idmap *m, uint64_t key);
void mc_udp_idmap_free(mc_udp_idmap *m);

/* Iteration over occupied slots: for (size_t i = 0; i < m->capacity; i++) if value. The
 * map must not change during the walk. */

#endif /* MEMCAST_UDP_IDMAP_H */
