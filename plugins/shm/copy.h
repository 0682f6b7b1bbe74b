/*
 * The copy mc_publish makes into a slot, for large messages: non-temporal stores. Depends
 * on libc only, so that `memcast bench` can give its streaming floor the same copy.
 */
#ifndef MEMCAST_SHM_COPY_H
#define MEMCAST_SHM_COPY_H

#include <stddef.h>

/* [shm] uncached_copy_min's default, "768K" in the plugin's schema (shm.c). */
#define MC_SHM_UNCACHED_COPY_MIN_DEFAULT ((size_t)768 * 1024)

/* Copies size bytes with stores that go to memory without first pulling each line into
 * this core's cache (SSE2; a plain memcpy where the CPU has none), then fences them, so
 * that a store that publishes dst afterwards is seen after them. */
void mc_shm_copy_uncached(void *dst, const void *src, size_t size);

#endif
