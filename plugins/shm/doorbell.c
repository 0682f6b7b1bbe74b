/*
 * Doorbells and futexes. The wait thread's side of the handshake is in subscriber.c:
 * set sleeping, read the word, look at every publisher, FUTEX_WAIT on the word read.
 * A publisher bumps the word after its write sequence and then reads sleeping, so one of
 * the two always sees the other (both use sequentially consistent atomics).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "doorbell.h"
#include "segment.h"

void mc_shm_futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts;
    struct timespec *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    /* shared (not FUTEX_PRIVATE_FLAG): the word lives in a segment other processes map */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0);
}

void mc_shm_futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int mc_shm_bell_create(const char *name, unsigned mode, uint64_t context_hi, uint64_t context_lo,
                       mc_shm_bell **out, char *err, size_t err_size)
{
    int fd = -1;
    void *map = NULL;
    int rc = mc_shm_segment_create(name, MC_SHM_BELL_SIZE, MC_SHM_BELL_SIZE, mode, &fd, &map, err,
                                   err_size);
    if (rc != 0)
        return rc;
    close(fd);
    mc_shm_bell *b = map;
    b->magic = MC_SHM_BELL_MAGIC;
    b->layout_version = MC_SHM_LAYOUT_VERSION;
    b->header_size = sizeof(mc_shm_bell);
    b->segment_size = MC_SHM_BELL_SIZE;
    b->owner_pid = (int32_t)getpid();
    b->owner_start_time = mc_shm_self_start_time();
    b->context_hi = context_hi;
    b->context_lo = context_lo;
    atomic_store_explicit(&b->ready, 1, memory_order_release);
    *out = b;
    return 0;
}

static const char *bell_problem(mc_shm_bell *b, int32_t owner_pid)
{
    if (atomic_load_explicit(&b->ready, memory_order_acquire) != 1)
        return "not ready";
    if (__atomic_load_n(&b->magic, __ATOMIC_RELAXED) != MC_SHM_BELL_MAGIC)
        return "bad magic";
    if (__atomic_load_n(&b->layout_version, __ATOMIC_RELAXED) != MC_SHM_LAYOUT_VERSION ||
        __atomic_load_n(&b->header_size, __ATOMIC_RELAXED) != sizeof(mc_shm_bell) ||
        __atomic_load_n(&b->segment_size, __ATOMIC_RELAXED) != MC_SHM_BELL_SIZE)
        return "unknown layout";
    if (__atomic_load_n(&b->owner_pid, __ATOMIC_RELAXED) != owner_pid)
        return "owner is not the registered process";
    return NULL;
}

int mc_shm_bell_open(const char *name, int32_t owner_pid, const mc_shm_owners *owners,
                     mc_shm_bell **out, char *err, size_t err_size)
{
    mc_shm_name_info info;
    if (!mc_shm_name_parse(name, &info) || !info.is_bell || info.pid != owner_pid) {
        snprintf(err, err_size, "'%.100s' is not the doorbell of pid %d", name, (int)owner_pid);
        return MC_EINVAL;
    }
    void *map = NULL;
    uint64_t size = 0;
    int rc = mc_shm_segment_open(name, owners, MC_SHM_BELL_SIZE, MC_SHM_BELL_SIZE, &map, &size, err,
                                 err_size);
    if (rc != 0)
        return rc;
    const char *problem = bell_problem(map, owner_pid);
    if (problem != NULL) {
        snprintf(err, err_size, "doorbell %s: %s", name, problem);
        munmap(map, MC_SHM_BELL_SIZE);
        return MC_EINVAL;
    }
    *out = map;
    return 0;
}

void mc_shm_bell_unmap(mc_shm_bell *bell)
{
    if (bell != NULL)
        munmap(bell, MC_SHM_BELL_SIZE);
}

void mc_shm_bell_ring(mc_shm_bell *bell, bool always)
{
    /* The caller raised a write sequence first (sequentially consistent), and the thread
     * sets sleeping before its last look at the write sequences: either it sees the
     * message, or this sees it sleeping. While it is awake, the bell's line is only read
     * here, so a busy stream moves no cache line for it.
     * Clearing the flag makes this the only wake until the thread says it sleeps again:
     * publishes that follow before it runs (from here or other publishers) skip the
     * syscall instead of waking a thread that is already being woken. */
    uint32_t how = atomic_load(&bell->sleeping);
    if (how == MC_SHM_BELL_AWAKE || (how == MC_SHM_BELL_ON_SEGMENTS && !always) ||
        !atomic_compare_exchange_strong(&bell->sleeping, &how, MC_SHM_BELL_AWAKE))
        return;
    atomic_fetch_add(&bell->ring, 1);
    mc_shm_futex_wake(&bell->ring);
}

void mc_shm_readers_wake(mc_shm_header *h)
{
    /* As with a bell: the commit raised write_seq first and a thread arms before its last
     * look; the one that clears the flag wakes all sleepers, the rest skip the syscall. */
    if (!atomic_load(&h->readers_armed) || !atomic_exchange(&h->readers_armed, 0))
        return;
    atomic_fetch_add(&h->readers_bell, 1);
    mc_shm_futex_wake(&h->readers_bell);
}
