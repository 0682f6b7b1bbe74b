/*
 * The streaming floor of memcast bench throughput: the fastest lossless pipelined transfer
 * between two processes on this machine, with the work per message the bench does. The
 * VM's cross-core bandwidth changes several fold from one minute to the next, so the bench
 * measures this right before each size and reports memcast against it.
 *
 * A writer and a reader process, pinned like the bench's publisher and subscriber, share a
 * ring in a MAP_SHARED mapping. Each slot is one cache line whose state is 2n+2 while it
 * holds message n, then the payload. The writer fills a slot (copy mode: fills a private
 * buffer and copies it in, the one copy mc_publish makes, uncached from [shm]
 * uncached_copy_min's default as there; zero-copy: fills the slot in place) once the
 * reader has freed it; the reader checks every byte in place and moves its
 * cursor on. Nothing is lost and nothing waits in the kernel.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../plugins/shm/copy.h"
#include "cmd_bench_common.h"

#define STREAM_SLOTS       8 /* memcast's shm default `slots`: the ring the bench publishes into */
#define STREAM_LINE        64
#define STREAM_PAGE        4096
#define STREAM_MAX_COUNT   2000000
#define STREAM_MAX_BYTES   (2ull << 30)  /* moved per floor: well under a second or two here */
#define STREAM_TIMEOUT_NS  60000000000ll /* a stuck child never hangs the bench */
#define STREAM_CHECK_SPINS 1024

typedef struct stream_shared {
    _Alignas(STREAM_LINE) _Atomic uint64_t cursor; /* the next message the reader will read */
    _Alignas(STREAM_LINE) _Atomic uint64_t ready, failed;
    long long start_ns, end_ns;
    uint64_t corrupt;
} stream_shared;

typedef struct stream_run {
    stream_shared *sh;
    unsigned char *ring; /* STREAM_SLOTS slots of stride bytes, after sh in the same mapping */
    size_t size, stride;
    uint64_t count;
    bool zero_copy, fill_uncached;
    int cpus[2]; /* writer, reader */
} stream_run;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spins until *word >= want (a slot's state and the cursor only grow). Now and then: stops
 * when the other side gave up, and lets another task have the core, without which two ends
 * that share one core would each wait out whole time slices. */
static bool await_at_least(stream_shared *sh, _Atomic uint64_t *word, uint64_t want)
{
    for (unsigned spins = 1;; spins++) {
        if (atomic_load_explicit(word, memory_order_acquire) >= want)
            return true;
        cpu_relax();
        if (spins % STREAM_CHECK_SPINS == 0) {
            if (atomic_load_explicit(&sh->failed, memory_order_relaxed))
                return false;
            sched_yield();
        }
    }
}

/* Maps every page of the ring into this process before the clock starts: page faults are
 * not part of a transfer. */
static void touch_pages(const stream_run *r)
{
    for (size_t i = 0; i < STREAM_SLOTS * r->stride; i += STREAM_PAGE)
        (void)*(const volatile unsigned char *)(r->ring + i);
}

static unsigned char *slot_at(const stream_run *r, uint64_t n)
{
    return r->ring + (n % STREAM_SLOTS) * r->stride;
}

static _Atomic uint64_t *slot_state(unsigned char *slot)
{
    return (_Atomic uint64_t *)(void *)slot;
}

/* Messages carry sequence n + 1, as the bench's do (1..count). */
static void write_message(const stream_run *r, unsigned char *scratch, uint64_t n)
{
    unsigned char *slot = slot_at(r, n);
    if (scratch != NULL) {
        mc_bench_fill(scratch, r->size, n + 1, 0);
        if (r->size >= MC_SHM_UNCACHED_COPY_MIN_DEFAULT)
            mc_shm_copy_uncached(slot + STREAM_LINE, scratch, r->size);
        else
            memcpy(slot + STREAM_LINE, scratch, r->size);
    } else {
        mc_bench_fill_in_place(r->fill_uncached, slot + STREAM_LINE, r->size, n + 1, 0);
    }
    atomic_store_explicit(slot_state(slot), 2 * n + 2, memory_order_release);
}

static int write_all(const stream_run *r, unsigned char *scratch)
{
    stream_shared *sh = r->sh;
    touch_pages(r);
    if (!await_at_least(sh, &sh->ready, 1))
        return 1;
    sh->start_ns = mc_bench_now_ns();
    for (uint64_t n = 0; n < r->count; n++) {
        if (n >= STREAM_SLOTS && !await_at_least(sh, &sh->cursor, n - STREAM_SLOTS + 1))
            return 1;
        write_message(r, scratch, n);
    }
    return 0;
}

static int writer_main(void *arg)
{
    const stream_run *r = arg;
    mc_bench_pin(r->cpus[0]);
    unsigned char *scratch = r->zero_copy ? NULL : malloc(r->size);
    int rc = 1;
    if (r->zero_copy || scratch != NULL) {
        if (scratch != NULL)
            memset(scratch, 0, r->size); /* its pages too are faulted in before the clock */
        rc = write_all(r, scratch);
    }
    free(scratch);
    if (rc != 0)
        atomic_store(&r->sh->failed, 1);
    return rc;
}

static int reader_main(void *arg)
{
    const stream_run *r = arg;
    stream_shared *sh = r->sh;
    mc_bench_pin(r->cpus[1]);
    touch_pages(r);
    atomic_store(&sh->ready, 1);
    uint64_t corrupt = 0;
    for (uint64_t n = 0; n < r->count; n++) {
        unsigned char *slot = slot_at(r, n);
        if (!await_at_least(sh, slot_state(slot), 2 * n + 2)) {
            atomic_store(&sh->failed, 1);
            return 1;
        }
        uint64_t seq = 0;
        if (!mc_bench_verify(slot + STREAM_LINE, r->size, 0, &seq) || seq != n + 1)
            corrupt++;
        atomic_store_explicit(&sh->cursor, n + 1, memory_order_release);
    }
    sh->end_ns = mc_bench_now_ns();
    sh->corrupt = corrupt;
    return 0;
}

__attribute__((format(printf, 2, 3))) static int floor_failed(size_t size, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fprintf(stderr, "memcast bench throughput: streaming floor at %zu B: %s; going on without it\n",
            size, why);
    return -1;
}

/* The bench's count, capped so that the floor stays short, but never so low that the
 * ring does not go round a few times. */
static uint64_t capped_count(size_t size, long count)
{
    uint64_t cap = STREAM_MAX_BYTES / size;
    if (cap < 4 * STREAM_SLOTS)
        cap = 4 * STREAM_SLOTS;
    if (cap > STREAM_MAX_COUNT)
        cap = STREAM_MAX_COUNT;
    return (uint64_t)count < cap ? (uint64_t)count : cap;
}

static int run_children(stream_run *r)
{
    pid_t pids[2] = {mc_bench_spawn(reader_main, r), 0};
    if (pids[0] > 0)
        pids[1] = mc_bench_spawn(writer_main, r);
    bool started = pids[1] > 0;
    if (!started)
        atomic_store(&r->sh->failed, 1); /* the reader stops at its next check */
    int rc = mc_bench_reap(pids, 2, STREAM_TIMEOUT_NS, NULL, NULL); /* zeroes pids */
    return started ? rc : -1;
}

static int measure(stream_run *r, bench_stream_floor *out)
{
    if (run_children(r) != 0)
        return floor_failed(r->size, "a process failed, was killed or did not start");
    if (r->sh->corrupt > 0)
        return floor_failed(r->size, "%llu of %llu messages corrupt",
                            (unsigned long long)r->sh->corrupt, (unsigned long long)r->count);
    double secs = (double)(r->sh->end_ns - r->sh->start_ns) / 1e9;
    if (secs <= 0)
        return floor_failed(r->size, "no time elapsed");
    out->count = (long)r->count;
    out->msgs_per_s = (double)r->count / secs;
    out->mb_per_s = out->msgs_per_s * (double)r->size / 1e6;
    return 0;
}

int mc_bench_stream_floor(const bench_opts *o, size_t size, long count, bench_stream_floor *out)
{
    *out = (bench_stream_floor){0};
    if (size == 0 || count <= 0)
        return floor_failed(size, "nothing to send");
    stream_run r = {.size = size,
                    .stride = STREAM_LINE + (size + STREAM_LINE - 1) / STREAM_LINE * STREAM_LINE,
                    .count = capped_count(size, count),
                    .zero_copy = o->zero_copy,
                    .fill_uncached = o->fill_uncached,
                    .cpus = {o->cpus[0], o->cpus[1]}};
    size_t bytes = sizeof(stream_shared) + STREAM_SLOTS * r.stride;
    void *map = mc_bench_shared_alloc(bytes);
    if (map == NULL)
        return floor_failed(size, "cannot map a ring of %zu bytes: %s", bytes, strerror(errno));
    r.sh = map;
    r.ring = (unsigned char *)map + sizeof(stream_shared);
    int rc = measure(&r, out);
    munmap(map, bytes);
    return rc;
}
