/*
 * Doorbells: one small segment per subscribing plugin instance, holding a futex word that
 * publishers bump on every commit and a flag that says whether waking is needed. Also the
 * futex calls the writer uses to wait for readers' cursors.
 */
#ifndef MEMCAST_SHM_DOORBELL_H
#define MEMCAST_SHM_DOORBELL_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "segment.h"

#define MC_SHM_BELL_SIZE 4096u

/* Waits while *word == expected: at most timeout_ns (negative: no limit). Returns at once
 * when the word already differs. Spurious returns are possible: callers re-check. */
void mc_shm_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns);

/* Wakes every waiter on word (in any process that maps it). */
void mc_shm_futex_wake(_Atomic uint32_t *word);

/* Creates and maps the doorbell name with exactly mode. Negative mc_err with err set. */
int mc_shm_bell_create(const char *name, unsigned mode, uint64_t context_hi, uint64_t context_lo,
                       mc_shm_bell **out, char *err, size_t err_size);

/* Maps another instance's doorbell after checking it, and that its owner is owner_pid. */
int mc_shm_bell_open(const char *name, int32_t owner_pid, const mc_shm_owners *owners,
                     mc_shm_bell **out, char *err, size_t err_size);

void mc_shm_bell_unmap(mc_shm_bell *bell);

/* Wakes the owner when it sleeps on this bell alone (a commit: one that sleeps on the
 * segments' readers_bell too was woken there), or, with always, however it sleeps (a new
 * generation or a close, which readers_bell of the old segment does not announce). */
void mc_shm_bell_ring(mc_shm_bell *bell, bool always);

/* A publisher committed to the segment of h: wake, with one call, every wait thread asleep
 * on its readers_bell. */
void mc_shm_readers_wake(mc_shm_header *h);

#endif
