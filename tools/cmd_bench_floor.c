/*
 * memcast bench floor: what this machine allows, measured the same way as the memcast
 * benchmarks so that their figures can be read as ratios. Two forked processes, each
 * pinned to its own core, ping-pong through a MAP_SHARED anonymous mapping:
 *  - line: one cache line holds a round counter; the waiter sleeps in a futex (block) or
 *    spins on it (spin). Nothing else is moved: this is the cost of a wake-up.
 *  - copy: the sender memcpy's its payload into a shared slot; the receiver memcpy's it
 *    out, checksums every byte, and answers the same way with the same size.
 *  - zero-copy: the sender writes every byte straight into the slot; the receiver
 *    checksums every byte in place, and answers the same way.
 * One-way latency is half the round trip measured by the first process.
 * Also here: the helpers the other bench files share (payload pattern, summaries,
 * children that are always reaped or killed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cmd.h"
#include "cmd_bench_common.h"

/* ---- shared helpers -------------------------------------------------------------------- */

long long mc_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool mc_bench_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0;
}

/* Word 0 carries the sequence; the others follow from it and the salt, so a receiver can
 * check every byte against a checksum it computes without a copy of the payload. */
#define PATTERN_STEP 0x9e3779b97f4a7c15ull

static uint64_t pattern_base(uint64_t seq, uint64_t salt)
{
    return (seq * 0xff51afd7ed558ccdull) ^ salt;
}

#if defined(__SSE2__)
/* Two words per non-temporal store once the address is 16-byte aligned; the sfence makes
 * the stores visible before whatever publishes the buffer next. */
static void fill_uncached(unsigned char *p, size_t size, uint64_t seq, uint64_t salt)
{
    size_t words = size / 8;
    uint64_t base = pattern_base(seq, salt);
    memcpy(p, &seq, 8);
    size_t j = 1;
    for (; j < words && ((uintptr_t)(p + j * 8) & 15) != 0; j++) {
        uint64_t w = base + j * PATTERN_STEP;
        memcpy(p + j * 8, &w, 8);
    }
    __m128i v = _mm_set_epi64x((long long)(base + (j + 1) * PATTERN_STEP),
                               (long long)(base + j * PATTERN_STEP));
    const __m128i step = _mm_set1_epi64x((long long)(2 * PATTERN_STEP));
    for (; j + 2 <= words; j += 2) {
        _mm_stream_si128((__m128i *)(void *)(p + j * 8), v);
        v = _mm_add_epi64(v, step);
    }
    _mm_sfence();
    for (; j < words; j++) {
        uint64_t w = base + j * PATTERN_STEP;
        memcpy(p + j * 8, &w, 8);
    }
    for (size_t i = words * 8; i < size; i++)
        p[i] = (unsigned char)(seq + i);
}
#endif

void mc_bench_fill_in_place(bool uncached, void *buf, size_t size, uint64_t seq, uint64_t salt)
{
#if defined(__SSE2__)
    if (uncached && size >= 64) {
        fill_uncached(buf, size, seq, salt);
        return;
    }
#endif
    mc_bench_fill(buf, size, seq, salt);
}

/* Two lanes at a time (a GCC/clang vector type, SSE2 on any x86-64): the fill and the check
 * run at several times the speed of a word at a time, so that they cost the publisher and
 * the subscriber less than the transport they measure. */
typedef uint64_t bench_u64x2 __attribute__((vector_size(16)));

/* Words 1.. of the pattern, four at a time with two running vectors. */
static size_t fill_words(unsigned char *p, size_t words, uint64_t base)
{
    bench_u64x2 a = {base + PATTERN_STEP, base + 2 * PATTERN_STEP};
    bench_u64x2 b = a + 2 * PATTERN_STEP;
    size_t j = 1;
    for (; j + 4 <= words; j += 4) {
        memcpy(p + j * 8, &a, sizeof(a));
        memcpy(p + (j + 2) * 8, &b, sizeof(b));
        a += 4 * PATTERN_STEP;
        b += 4 * PATTERN_STEP;
    }
    return j;
}

void mc_bench_fill(void *buf, size_t size, uint64_t seq, uint64_t salt)
{
    unsigned char *p = buf;
    size_t words = size / 8;
    uint64_t base = pattern_base(seq, salt);
    if (words > 0)
        memcpy(p, &seq, 8);
    for (size_t j = words > 0 ? fill_words(p, words, base) : 0; j < words; j++) {
        uint64_t w = base + j * PATTERN_STEP;
        memcpy(p + j * 8, &w, 8);
    }
    for (size_t i = words * 8; i < size; i++)
        p[i] = (unsigned char)(seq + i);
}

static uint64_t sum_words(const unsigned char *p, size_t words)
{
    bench_u64x2 a = {0, 0}, b = {0, 0};
    size_t j = 1;
    for (; j + 4 <= words; j += 4) {
        bench_u64x2 x, y;
        memcpy(&x, p + j * 8, sizeof(x));
        memcpy(&y, p + (j + 2) * 8, sizeof(y));
        a += x;
        b += y;
    }
    a += b;
    uint64_t sum = a[0] + a[1];
    for (; j < words; j++) {
        uint64_t w;
        memcpy(&w, p + j * 8, 8);
        sum += w;
    }
    return sum;
}

bool mc_bench_verify(const void *buf, size_t size, uint64_t salt, uint64_t *seq_out)
{
    const unsigned char *p = buf;
    size_t words = size / 8;
    uint64_t seq = 0;
    if (words == 0)
        return false;
    memcpy(&seq, p, 8);
    uint64_t sum = sum_words(p, words);
    uint64_t n = words - 1;
    uint64_t tri = (n % 2 == 0) ? (n / 2) * (n + 1) : n * ((n + 1) / 2); /* 1 + .. + n */
    uint64_t expect = n * pattern_base(seq, salt) + tri * PATTERN_STEP;
    for (size_t i = words * 8; i < size; i++) {
        sum += p[i];
        expect += (unsigned char)(seq + i);
    }
    *seq_out = seq;
    return sum == expect;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p)
{
    double exact = p * (double)n;
    size_t rank = (size_t)exact;
    if ((double)rank < exact)
        rank++;
    return sorted[rank == 0 ? 0 : rank - 1];
}

void mc_bench_summarise(double *v, size_t n, bench_summary *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return;
    qsort(v, n, sizeof(double), compare_double);
    *out = (bench_summary){.n = n,
                           .p50 = percentile(v, n, 0.50),
                           .p90 = percentile(v, n, 0.90),
                           .p99 = percentile(v, n, 0.99),
                           .p999 = percentile(v, n, 0.999),
                           .max = v[n - 1]};
}

long mc_bench_default_count(size_t size, bool throughput)
{
    if (throughput)
        return size <= 4096 ? 1000000 : size <= (1 << 20) ? 5000 : 1000;
    return size <= 65536 ? 10000 : size <= (1 << 20) ? 2000 : 300;
}

long mc_bench_default_warmup(size_t size)
{
    return size <= 65536 ? 1000 : 30;
}

void *mc_bench_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

pid_t mc_bench_spawn(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        _exit(fn(arg));
    }
    return pid;
}

void mc_bench_kill(pid_t *pids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}

int mc_bench_reap(pid_t *pids, size_t n, long long timeout_ns, void (*tick)(void *), void *arg)
{
    long long next_tick = 0;
    long long deadline = mc_bench_now_ns() + timeout_ns;
    int failed = 0;
    for (size_t left = n; left > 0;) {
        left = 0;
        for (size_t i = 0; i < n; i++) {
            if (pids[i] <= 0)
                continue;
            int status;
            pid_t r = waitpid(pids[i], &status, WNOHANG);
            if (r == pids[i]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    failed = 1;
                pids[i] = 0;
            } else if (r < 0 && errno != EINTR) {
                pids[i] = 0;
                failed = 1;
            } else {
                left++;
            }
        }
        if (left > 0 && mc_bench_now_ns() > deadline) {
            fprintf(stderr, "memcast bench: a child process did not finish in time; killed\n");
            mc_bench_kill(pids, n);
            return -1;
        }
        if (left > 0 && tick != NULL && mc_bench_now_ns() > next_tick) {
            tick(arg);
            next_tick = mc_bench_now_ns() + 200000000;
        }
        if (left > 0)
            nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
    return failed ? -1 : 0;
}

/* The mapping is shared between forked processes, so the futex must not be private. */
int mc_bench_futex_wait(_Atomic uint32_t *word, uint32_t value, long timeout_ns)
{
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    return (int)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, value, &ts, NULL, 0);
}

void mc_bench_futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

double mc_bench_memcpy_gbps(void)
{
    size_t size = 1 << 20;
    unsigned char *a = malloc(size), *b = malloc(size);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, size);
    memset(b, 2, size);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        long long t0 = mc_bench_now_ns();
        for (int i = 0; i < 200; i++) {
            memcpy(i % 2 ? a : b, i % 2 ? b : a, size);
            __asm__ volatile("" ::: "memory");
        }
        double gbps = 200.0 * (double)size / (double)(mc_bench_now_ns() - t0);
        if (gbps > best)
            best = gbps;
    }
    free(a);
    free(b);
    return best;
}

void mc_bench_print_summary_header(void)
{
    printf("  %-30s %9s %9s %9s %9s %9s %7s\n", "one-way latency (us)", "p50", "p90", "p99",
           "p99.9", "max", "n");
}

void mc_bench_print_summary(const char *label, const bench_summary *s)
{
    printf("  %-30s %9.2f %9.2f %9.2f %9.2f %9.2f %7zu\n", label, s->p50, s->p90, s->p99, s->p999,
           s->max, s->n);
}

void mc_bench_json_summary(const char *name, const bench_summary *s)
{
    printf("\"%s\": {\"n\": %zu, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
           "\"p999_us\": %.3f, \"max_us\": %.3f}",
           name, s->n, s->p50, s->p90, s->p99, s->p999, s->max);
}

/* ---- the floor experiments --------------------------------------------------------------- */

typedef struct experiment {
    int kind; /* FLOOR_LINE, FLOOR_COPY or FLOOR_ZC */
    bool spin;
    bool uncached; /* FLOOR_ZC: the payload is written with non-temporal stores */
    size_t size;
    long warmup, count;
    double *rtt_ns; /* in the shared mapping */
} experiment;

typedef struct floor_shared {
    _Alignas(64) _Atomic uint32_t round;
    _Alignas(64) _Atomic int failed;
    _Atomic int pinned_ok;
    _Atomic long progress;
} floor_shared;

typedef struct floor_plan {
    experiment exps[2 * BENCH_MAX_SIZES + 2];
    size_t nexps;
    floor_shared *shared;
    unsigned char *slot_ab, *slot_ba; /* shared: first to second, second to first */
    size_t max_size;
    int cpus[2];
    long total_rounds;
} floor_plan;

#define FLOOR_STALL_NS 10000000000ll

/* Waits until the round counter reaches want; false after FLOOR_STALL_NS without it. */
static bool await_round(floor_shared *s, uint32_t want, bool spin)
{
    long long deadline = 0;
    for (unsigned n = 0;; n++) {
        uint32_t now = atomic_load_explicit(&s->round, memory_order_acquire);
        if (now == want)
            return true;
        if (atomic_load_explicit(&s->failed, memory_order_relaxed))
            return false;
        if (spin) {
            __builtin_ia32_pause();
            if ((n & 0xffff) != 0)
                continue;
        } else {
            mc_bench_futex_wait(&s->round, now, 100000000);
        }
        long long t = mc_bench_now_ns();
        if (deadline == 0)
            deadline = t + FLOOR_STALL_NS;
        else if (t > deadline)
            return false;
    }
}

static void signal_round(floor_shared *s, uint32_t value, bool spin)
{
    atomic_store_explicit(&s->round, value, memory_order_release);
    if (!spin)
        mc_bench_futex_wake(&s->round);
}

static uint64_t checksum_copy_out(unsigned char *dst, const unsigned char *src, size_t size,
                                  uint64_t salt, bool *bad)
{
    uint64_t seq;
    memcpy(dst, src, size);
    if (!mc_bench_verify(dst, size, salt, &seq))
        *bad = true;
    return seq;
}

/* One side's part of one round after it received: read what came, write the answer. */
static void handle_payload(const experiment *e, const unsigned char *in, unsigned char *out,
                           unsigned char *priv_in, uint64_t seq, uint64_t salt_in, bool *bad)
{
    uint64_t got = 0;
    if (e->kind == FLOOR_COPY) {
        got = checksum_copy_out(priv_in, in, e->size, salt_in, bad);
    } else {
        if (!mc_bench_verify(in, e->size, salt_in, &got))
            *bad = true;
        if (out != NULL)
            mc_bench_fill_in_place(e->uncached, out, e->size, seq, salt_in ^ 1);
    }
    if (got != seq)
        *bad = true;
}

static int floor_side(floor_plan *p, bool first)
{
    floor_shared *s = p->shared;
    if (!mc_bench_pin(p->cpus[first ? 0 : 1]))
        atomic_store(&s->pinned_ok, 0);
    unsigned char *priv_in = malloc(p->max_size + 8), *priv_out = malloc(p->max_size + 8);
    if (priv_in == NULL || priv_out == NULL)
        return 1;
    uint32_t round = 0;
    bool bad = false;
    for (size_t x = 0; x < p->nexps; x++) {
        experiment *e = &p->exps[x];
        long total = e->warmup + e->count;
        for (long i = 0; i < total; i++, round += 2) {
            uint64_t seq = (uint64_t)round + 1;
            if (first) {
                if (e->kind == FLOOR_COPY)
                    mc_bench_fill(priv_out, e->size, seq, 0);
                long long t0 = mc_bench_now_ns();
                if (e->kind == FLOOR_COPY)
                    memcpy(p->slot_ab, priv_out, e->size);
                else if (e->kind == FLOOR_ZC)
                    mc_bench_fill_in_place(e->uncached, p->slot_ab, e->size, seq, 0);
                signal_round(s, round + 1, e->spin);
                if (!await_round(s, round + 2, e->spin))
                    goto failed;
                if (e->kind != FLOOR_LINE)
                    handle_payload(e, p->slot_ba, NULL, priv_in, seq, e->kind == FLOOR_COPY ? 0 : 1,
                                   &bad);
                long long t1 = mc_bench_now_ns();
                if (i >= e->warmup)
                    e->rtt_ns[i - e->warmup] = (double)(t1 - t0);
                atomic_store_explicit(&s->progress, (long)round, memory_order_relaxed);
            } else {
                if (!await_round(s, round + 1, e->spin))
                    goto failed;
                if (e->kind != FLOOR_LINE) {
                    /* the copy answer is the payload as received: same bytes, same size */
                    handle_payload(e, p->slot_ab, e->kind == FLOOR_ZC ? p->slot_ba : NULL, priv_in,
                                   seq, 0, &bad);
                    if (e->kind == FLOOR_COPY)
                        memcpy(p->slot_ba, priv_in, e->size);
                }
                signal_round(s, round + 2, e->spin);
            }
        }
    }
    free(priv_in);
    free(priv_out);
    if (bad)
        fprintf(stderr, "memcast bench floor: a payload failed its checksum\n");
    return bad ? 1 : 0;
failed:
    atomic_store(&s->failed, 1);
    mc_bench_futex_wake(&s->round);
    fprintf(stderr, "memcast bench floor: the other process stopped answering\n");
    free(priv_in);
    free(priv_out);
    return 1;
}

static int floor_first(void *arg)
{
    return floor_side(arg, true);
}

static int floor_second(void *arg)
{
    return floor_side(arg, false);
}

static void plan_add(floor_plan *p, int kind, bool spin, size_t size, const bench_opts *o)
{
    experiment *e = &p->exps[p->nexps++];
    e->kind = kind;
    e->spin = spin;
    e->uncached = kind == FLOOR_ZC && o->fill_uncached;
    e->size = size;
    e->count = o->count > 0 ? o->count : mc_bench_default_count(size, false);
    e->warmup = o->warmup >= 0 ? o->warmup : mc_bench_default_warmup(size);
}

static void plan_build(floor_plan *p, const bench_opts *o, int what, bool payload_spin)
{
    if (what & FLOOR_LINE)
        plan_add(p, FLOOR_LINE, false, 0, o);
    if (what & FLOOR_SPIN_LINE)
        plan_add(p, FLOOR_LINE, true, 0, o);
    for (size_t i = 0; i < o->nsizes; i++) {
        if (what & FLOOR_COPY)
            plan_add(p, FLOOR_COPY, payload_spin, o->sizes[i], o);
        if (what & FLOOR_ZC)
            plan_add(p, FLOOR_ZC, payload_spin, o->sizes[i], o);
        if (o->sizes[i] > p->max_size)
            p->max_size = o->sizes[i];
    }
}

static void show_progress(void *arg)
{
    const floor_plan *p = arg;
    if (!isatty(2))
        return;
    long done = atomic_load(&p->shared->progress) / 2;
    fprintf(stderr, "\rfloor: %ld/%ld rounds ", done, p->total_rounds);
}

static int run_plan(floor_plan *p)
{
    long total = 0;
    size_t slot = (p->max_size + 4095) & ~(size_t)4095;
    size_t bytes = 4096 + 2 * slot;
    for (size_t i = 0; i < p->nexps; i++) {
        total += p->exps[i].warmup + p->exps[i].count;
        bytes += (size_t)p->exps[i].count * sizeof(double);
    }
    unsigned char *base = mc_bench_shared_alloc(bytes);
    if (base == NULL) {
        fprintf(stderr, "memcast bench floor: cannot map %zu shared bytes\n", bytes);
        return -1;
    }
    p->shared = (floor_shared *)base;
    atomic_store(&p->shared->pinned_ok, 1);
    p->slot_ab = base + 4096;
    p->slot_ba = p->slot_ab + slot;
    double *r = (double *)(p->slot_ba + slot);
    for (size_t i = 0; i < p->nexps; i++) {
        p->exps[i].rtt_ns = r;
        r += p->exps[i].count;
    }
    pid_t pids[2] = {mc_bench_spawn(floor_second, p), 0};
    pids[1] = pids[0] > 0 ? mc_bench_spawn(floor_first, p) : -1;
    if (pids[1] <= 0) {
        mc_bench_kill(pids, 2);
        return -1;
    }
    /* generous bound: each round of the largest experiment may take a few ms */
    p->total_rounds = total;
    int rc = mc_bench_reap(pids, 2, 600000000000ll, show_progress, p);
    if (isatty(2))
        fprintf(stderr, "\r%40s\r", "");
    return rc;
}

int mc_bench_floor_run(const bench_opts *o, int what, bool payload_spin, floor_result *out)
{
    floor_plan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -1;
    p->cpus[0] = o->cpus[0];
    p->cpus[1] = o->cpus[1];
    plan_build(p, o, what, payload_spin);
    memset(out, 0, sizeof(*out));
    int rc = run_plan(p);
    if (rc == 0) {
        out->pinned = atomic_load(&p->shared->pinned_ok);
        size_t size_index[3] = {0, 0, 0};
        for (size_t i = 0; i < p->nexps; i++) {
            experiment *e = &p->exps[i];
            bench_summary *dst = e->kind == FLOOR_LINE
                                     ? (e->spin ? &out->line_spin : &out->line_block)
                                 : e->kind == FLOOR_COPY ? &out->copy[size_index[1]++]
                                                         : &out->zc[size_index[2]++];
            for (long k = 0; k < e->count; k++)
                e->rtt_ns[k] /= 2000.0; /* round trip ns -> one way us */
            mc_bench_summarise(e->rtt_ns, (size_t)e->count, dst);
        }
        if (o->cpus[0] >= 0)
            mc_bench_pin(o->cpus[0]);
        out->memcpy_gbps = mc_bench_memcpy_gbps();
    }
    free(p);
    return rc;
}
