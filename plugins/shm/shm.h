/*
 * The shm plugin's process-local state, shared by shm.c (instance, configuration,
 * doorbells of remote subscribers), publisher.c and subscriber.c.
 *
 * Locks, always taken in this order: a publisher's lock, then the instance lock. Neither
 * is held while host->deliver runs, nor while a publisher waits for readers.
 */
#ifndef MEMCAST_SHM_SHM_H
#define MEMCAST_SHM_SHM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <memcast/plugin.h>

#include "doorbell.h"
#include "ring.h"
#include "segment.h"

/* Whether to look (spin) for the other side before sleeping, learned from the last looks.
 * A look that found nothing makes the next 1, 2, 4 ... up to MC_SHM_LOOK_SKIP_MAX waits
 * sleep at once; one that paid starts over. A peer that usually answers within the look
 * but missed once (preempted, a slow minute of the VM) costs one sleep, not a run of them:
 * with a fixed "every 64 waits" two streaming processes fell into sleeping and waking each
 * other per message (26 000 futex calls per million 64-byte reliable messages, against
 * 2 000 with this). Peers that cannot answer within a look (sharing a core) still cost a
 * look only every 64 waits once the misses add up. */
#define MC_SHM_LOOK_SKIP_MAX 64u

typedef struct mc_shm_look_policy {
    uint32_t misses; /* looks in a row that found nothing */
    uint32_t skip;   /* waits left that sleep without looking */
} mc_shm_look_policy;

static inline bool mc_shm_look_now(mc_shm_look_policy *lp)
{
    if (lp->skip == 0)
        return true;
    lp->skip--;
    return false;
}

static inline void mc_shm_look_paid(mc_shm_look_policy *lp, bool found)
{
    if (found) {
        lp->misses = 0;
        return;
    }
    if (lp->misses < 31)
        lp->misses++;
    uint32_t skip = UINT32_C(1) << (lp->misses - 1);
    lp->skip = skip < MC_SHM_LOOK_SKIP_MAX ? skip : MC_SHM_LOOK_SKIP_MAX;
}

typedef struct shm_config {
    int64_t slots;
    uint64_t min_size;
    int64_t reserve_percent;
    uint64_t max_message_size;
    unsigned mode;
    int64_t ack_timeout_ms;
    int64_t pin_timeout_ms;
    int64_t max_subscribers;
    int64_t spin_us;
    int64_t look_us;
    uint64_t uncached_copy_min; /* copies of at least this size bypass the cache; 0: never */
    bool segment_wake;          /* sleep on the segments' readers_bell too (futex_waitv) */
    bool reap;
    mc_shm_owners owners; /* whose segments and doorbells this process opens */
} shm_config;

/* A remote subscriber instance's doorbell, mapped once per instance and shared by every
 * publisher of the instance that has a subscriber there. Guarded by the instance lock. */
typedef struct shm_remote_bell {
    char name[MC_LOCATOR_MAX + 1];
    mc_shm_bell *bell;
    unsigned refs;
    struct shm_remote_bell *next;
} shm_remote_bell;

typedef struct shm_sub shm_sub;
typedef struct shm_att shm_att;

struct mc_plugin {
    const mc_host *host;
    shm_config cfg;
    uint32_t domain_hash;
    uint32_t instance; /* distinguishes instances of one process in doorbell names */

    pthread_mutex_t lock;
    pthread_cond_t idle; /* a delivery batch finished */
    shm_remote_bell *remote_bells;

    /* subscriber side, started with the first subscriber */
    mc_shm_bell *bell;
    char bell_name[MC_LOCATOR_MAX + 1];
    pthread_t thread;
    bool thread_running;
    atomic_bool stopping;
    shm_sub *subs;
    shm_att *atts;
    size_t live_atts;
    bool looking; /* the thread polls attachments without the lock: none is freed under it */
    int64_t last_liveness_ns;
    mc_shm_look_policy look; /* the wait thread's look before sleeping */
};

/* Logs through the host and, for errors returned from an op, also sets the detail. */
int mc_shm_fail(mc_plugin *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Maps (or shares) the doorbell name of a subscriber instance run by pid. */
int mc_shm_remote_bell_acquire(mc_plugin *p, const char *name, int32_t pid, shm_remote_bell **out);
void mc_shm_remote_bell_release(mc_plugin *p, shm_remote_bell *rb);

/* True on a subscriber wait thread of any instance: a publish from a callback must not
 * wait for readers there. */
bool mc_shm_on_wait_thread(void);

/* publisher.c */
int mc_shm_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_pub **out);
void mc_shm_pub_close(mc_plugin_pub *pub);
int mc_shm_pub_connect(mc_plugin_pub *pub, const mc_peer *sub);
void mc_shm_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub);
int mc_shm_send(mc_plugin_pub *pub, const mc_sample *sample);
int mc_shm_loan(mc_plugin_pub *pub, size_t size, void **buf);
int mc_shm_commit(mc_plugin_pub *pub, void *buf, const mc_sample *sample);
void mc_shm_loan_discard(mc_plugin_pub *pub, void *buf);
int mc_shm_pub_locator(mc_plugin_pub *pub, void *buf, size_t size);

/* subscriber.c */
int mc_shm_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_sub **out);
void mc_shm_sub_close(mc_plugin_sub *sub);
int mc_shm_sub_connect(mc_plugin_sub *sub, const mc_peer *pub);
void mc_shm_sub_disconnect(mc_plugin_sub *sub, const mc_endpoint_id *pub);
int mc_shm_sub_locator(mc_plugin_sub *sub, void *buf, size_t size);
void mc_shm_subscriber_side_stop(mc_plugin *p); /* joins the wait thread, removes the bell */

#endif
