/*
 * memcast bench latency: two processes ping-pong over memcast on two topics. The pinger
 * stamps, writes every byte of the payload (a pattern derived from the sequence) and
 * publishes; the ponger checks every byte in its callback and answers with the same size
 * (copy mode: it republishes the bytes it received; zero-copy: it writes a fresh pattern
 * into a loan). The pinger's callback checks the answer, records the round trip and sends
 * the next ping itself, so every hop is one transport wake-up and nothing more.
 * One-way latency = round trip / 2, set beside the floor measured in the same run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "cmd.h"
#include "cmd_bench_common.h"

#define PING_TOPIC       "bench/latency/ping"
#define PONG_TOPIC       "bench/latency/pong"
#define SALT_PING        0
#define SALT_PONG        1
#define MATCH_TIMEOUT_MS 10000
#define STALL_NS         5000000000ll

typedef struct lat_shared {
    _Alignas(64) _Atomic uint32_t done; /* pinger: futex word its callback wakes */
    _Atomic int ponger_ready, stop, failed;
    _Atomic long progress;
    _Atomic uint64_t corrupt_at_ponger, corrupt_at_pinger;
    size_t offsets[BENCH_MAX_SIZES]; /* where each size's round trips start in rtt[] */
    char error[256];
    double rtt[]; /* ns */
} lat_shared;

typedef struct lat_run {
    const bench_opts *o;
    const char *config;
    lat_shared *sh;
    long counts[BENCH_MAX_SIZES], warmups[BENCH_MAX_SIZES];
} lat_run;

/* Per-process state of either side, reached from the callbacks. */
typedef struct side {
    lat_run *run;
    mc_publisher *pub;
    unsigned char *scratch;
    size_t size;
    long iter, total, warmup;
    uint64_t seq;
    long long t0;
    double *rtt;
    /* The pinger's main thread sets a size up and its delivery thread runs the round trips;
     * they never overlap (one message is in flight), but the order between them passes
     * through the other process, which ThreadSanitizer cannot see: the lock shows it. */
    pthread_mutex_t lock;
} side;

static void fail(lat_shared *sh, const char *what)
{
    if (!atomic_exchange(&sh->failed, 1))
        snprintf(sh->error, sizeof(sh->error), "%s: %s", what, mc_last_error());
    atomic_store(&sh->done, 1);
    mc_bench_futex_wake(&sh->done);
}

/* Writes the payload of seq with salt, straight into a loan or into scratch + publish. */
static int send_payload(side *s, size_t size, uint64_t seq, uint64_t salt, long long *stamp)
{
    if (s->run->o->zero_copy) {
        void *buf;
        if (stamp)
            *stamp = mc_bench_now_ns();
        int rc = mc_loan(s->pub, size, &buf);
        if (rc != 0)
            return rc;
        mc_bench_fill_in_place(s->run->o->fill_uncached, buf, size, seq, salt);
        return mc_commit(s->pub, buf, size);
    }
    mc_bench_fill(s->scratch, size, seq, salt);
    if (stamp)
        *stamp = mc_bench_now_ns();
    return mc_publish(s->pub, s->scratch, size);
}

static void on_ping(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    side *s = user;
    lat_shared *sh = s->run->sh;
    const void *data = mc_msg_data(msg);
    size_t size = mc_msg_size(msg);
    uint64_t seq = 0;
    (void)sub;
    if (!mc_bench_verify(data, size, SALT_PING, &seq))
        atomic_fetch_add(&sh->corrupt_at_ponger, 1);
    int rc;
    if (s->run->o->zero_copy) {
        void *buf;
        rc = mc_loan(s->pub, size, &buf);
        if (rc == 0) {
            mc_bench_fill_in_place(s->run->o->fill_uncached, buf, size, seq, SALT_PONG);
            if (s->run->o->test_corrupt && seq % 10 == 0)
                ((unsigned char *)buf)[size / 2] ^= 0x5a;
            rc = mc_commit(s->pub, buf, size);
        }
    } else if (s->run->o->test_corrupt && seq % 10 == 0) {
        memcpy(s->scratch, data, size);
        s->scratch[size / 2] ^= 0x5a;
        rc = mc_publish(s->pub, s->scratch, size);
    } else {
        rc = mc_publish(s->pub, data, size); /* echo: one copy, like the copy floor */
    }
    if (rc != 0)
        fail(sh, "ponger: publish");
}

static void on_pong_locked(side *s, const mc_msg *msg);

static void on_pong(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    side *s = user;
    (void)sub;
    pthread_mutex_lock(&s->lock);
    on_pong_locked(s, msg);
    pthread_mutex_unlock(&s->lock);
}

static void on_pong_locked(side *s, const mc_msg *msg)
{
    lat_shared *sh = s->run->sh;
    uint64_t seq = 0;
    bool ok = mc_bench_verify(mc_msg_data(msg), mc_msg_size(msg),
                              s->run->o->zero_copy ? SALT_PONG : SALT_PING, &seq);
    long long t1 = mc_bench_now_ns();
    if (!ok || seq != s->seq || mc_msg_size(msg) != s->size)
        atomic_fetch_add(&sh->corrupt_at_pinger, 1);
    if (s->iter >= s->warmup)
        s->rtt[s->iter - s->warmup] = (double)(t1 - s->t0);
    s->iter++;
    atomic_store_explicit(&sh->progress, s->iter, memory_order_relaxed);
    if (s->iter < s->total) {
        s->seq++;
        if (send_payload(s, s->size, s->seq, SALT_PING, &s->t0) != 0)
            fail(sh, "pinger: publish");
        return;
    }
    atomic_store(&sh->done, 1);
    mc_bench_futex_wake(&sh->done);
}

/* --netns: the pinger is the PUB side, the ponger the SUB side. */
static int enter_netns(lat_run *run, bool pinger)
{
    char err[256];
    if (mc_bench_enter_netns(run->o, pinger ? BENCH_ROLE_PUB : BENCH_ROLE_SUB, err, sizeof(err)) ==
        0)
        return 0;
    if (!atomic_exchange(&run->sh->failed, 1))
        snprintf(run->sh->error, sizeof(run->sh->error), "%s: %.240s", pinger ? "pinger" : "ponger",
                 err);
    atomic_store(&run->sh->done, 1);
    mc_bench_futex_wake(&run->sh->done);
    return -1;
}

static int open_side(side *s, bool pinger, mc_context **ctx, mc_subscriber **sub)
{
    lat_shared *sh = s->run->sh;
    if (enter_netns(s->run, pinger) != 0)
        return -1;
    if (mc_context_open(s->run->config, ctx) != 0) {
        fail(sh, "context");
        return -1;
    }
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.on_message = pinger ? on_pong : on_ping;
    so.user = s;
    if (mc_publisher_create(*ctx, pinger ? PING_TOPIC : PONG_TOPIC, NULL, &s->pub) != 0 ||
        mc_subscriber_create(*ctx, pinger ? PONG_TOPIC : PING_TOPIC, &so, sub) != 0) {
        fail(sh, "create");
        return -1;
    }
    if (mc_publisher_wait_matched(s->pub, 1, MATCH_TIMEOUT_MS) != 0 ||
        mc_subscriber_wait_matched(*sub, 1, MATCH_TIMEOUT_MS) != 0) {
        fail(sh, "the other process was not matched within 10 s");
        return -1;
    }
    return 0;
}

static void close_side(side *s, mc_context *ctx, mc_subscriber *sub)
{
    mc_subscriber_destroy(sub);
    mc_publisher_destroy(s->pub);
    mc_context_close(ctx);
    free(s->scratch);
}

static bool wait_flag(_Atomic int *flag, long long timeout_ns, lat_shared *sh)
{
    long long deadline = mc_bench_now_ns() + timeout_ns;
    while (!atomic_load(flag) && !atomic_load(&sh->failed)) {
        if (mc_bench_now_ns() > deadline)
            return false;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    return atomic_load(flag) != 0;
}

static int ponger_main(void *arg)
{
    lat_run *run = arg;
    side s = {.run = run, .lock = PTHREAD_MUTEX_INITIALIZER};
    mc_context *ctx = NULL;
    mc_subscriber *sub = NULL;
    if (!mc_bench_pin(run->o->cpus[1]))
        fprintf(stderr, "memcast bench: could not pin the ponger to CPU %d\n", run->o->cpus[1]);
    size_t max = 0;
    for (size_t i = 0; i < run->o->nsizes; i++)
        max = run->o->sizes[i] > max ? run->o->sizes[i] : max;
    s.scratch = malloc(max);
    int rc = s.scratch && open_side(&s, false, &ctx, &sub) == 0 ? 0 : 1;
    if (rc == 0) {
        atomic_store(&run->sh->ponger_ready, 1);
        wait_flag(&run->sh->stop, 3600000000000ll, run->sh);
    }
    close_side(&s, ctx, sub);
    return rc;
}

/* Runs one size to the end; false when the answers stopped coming. */
static bool pinger_size(side *s, size_t index)
{
    lat_run *run = s->run;
    lat_shared *sh = run->sh;
    pthread_mutex_lock(&s->lock);
    s->size = run->o->sizes[index];
    s->iter = 0;
    s->warmup = run->warmups[index];
    s->total = s->warmup + run->counts[index];
    s->rtt = sh->rtt + sh->offsets[index];
    atomic_store(&sh->done, 0);
    atomic_store(&sh->progress, 0);
    s->seq++;
    int rc = send_payload(s, s->size, s->seq, SALT_PING, &s->t0);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        fail(sh, "pinger: publish");
        return false;
    }
    long last = -1;
    long long stall_deadline = mc_bench_now_ns() + STALL_NS;
    while (!atomic_load(&sh->done)) {
        mc_bench_futex_wait(&sh->done, 0, 100000000);
        long now = atomic_load(&sh->progress);
        if (now != last) {
            last = now;
            stall_deadline = mc_bench_now_ns() + STALL_NS;
        } else if (mc_bench_now_ns() > stall_deadline) {
            snprintf(sh->error, sizeof(sh->error),
                     "size %zu: no answer for 5 s after %ld round trips (a message lost?)", s->size,
                     now);
            atomic_store(&sh->failed, 1);
            return false;
        }
    }
    return !atomic_load(&sh->failed);
}

static int pinger_main(void *arg)
{
    lat_run *run = arg;
    side s = {.run = run, .lock = PTHREAD_MUTEX_INITIALIZER};
    mc_context *ctx = NULL;
    mc_subscriber *sub = NULL;
    if (!mc_bench_pin(run->o->cpus[0]))
        fprintf(stderr, "memcast bench: could not pin the pinger to CPU %d\n", run->o->cpus[0]);
    size_t max = 0;
    for (size_t i = 0; i < run->o->nsizes; i++)
        max = run->o->sizes[i] > max ? run->o->sizes[i] : max;
    s.scratch = malloc(max);
    int rc = s.scratch && open_side(&s, true, &ctx, &sub) == 0 ? 0 : 1;
    if (rc == 0 && !wait_flag(&run->sh->ponger_ready, MATCH_TIMEOUT_MS * 1000000ll, run->sh)) {
        fail(run->sh, "the ponger did not get ready");
        rc = 1;
    }
    for (size_t i = 0; rc == 0 && i < run->o->nsizes; i++)
        rc = pinger_size(&s, i) ? 0 : 1;
    atomic_store(&run->sh->stop, 1);
    close_side(&s, ctx, sub);
    return rc;
}

/* ---- report ----------------------------------------------------------------------------- */

static void histogram(const double *sorted_us, size_t n)
{
    /* log2 buckets from 0.125 us: a glance at the shape, the percentiles give the numbers */
    size_t buckets[40] = {0};
    for (size_t i = 0; i < n; i++) {
        int b = 0;
        for (double edge = 0.125; sorted_us[i] > edge && b < 39; edge *= 2)
            b++;
        buckets[b > 39 ? 39 : b]++;
    }
    size_t most = 1;
    for (int b = 0; b < 40; b++)
        most = buckets[b] > most ? buckets[b] : most;
    for (int b = 0; b < 40; b++) {
        if (buckets[b] == 0)
            continue;
        char bar[51];
        size_t len = (buckets[b] * 50 + most - 1) / most;
        memset(bar, '#', len);
        bar[len] = '\0';
        double edge = 0.125;
        for (int k = 0; k < b; k++)
            edge *= 2;
        printf("    <= %10.3f us %8zu %s\n", edge, buckets[b], bar);
    }
}

static void ratio_row(const char *label, const bench_summary *m, const bench_summary *f)
{
    printf("  %-30s %9.2f %9.2f %9.2f %9.2f %9.2f\n", label, m->p50 / f->p50, m->p90 / f->p90,
           m->p99 / f->p99, m->p999 / f->p999, m->max / f->max);
}

static const bench_summary *matching_floor(const bench_opts *o, const floor_result *f, size_t i)
{
    return o->zero_copy ? &f->zc[i] : &f->copy[i];
}

static void report_text(const lat_run *run, const bench_summary *m, const floor_result *f)
{
    const bench_opts *o = run->o;
    printf("memcast bench latency: transport %s, %s, %s wait, %s, CPUs %d,%d%s\n", o->transport,
           o->zero_copy
               ? (o->fill_uncached ? "zero-copy (loan, written uncached)" : "zero-copy (loan)")
               : "copy (publish)",
           o->spin ? "spin" : "block", o->reliable ? "reliable" : "best effort", o->cpus[0],
           o->cpus[1], f && !f->pinned ? " (pinning FAILED)" : "");
    if (o->netns[BENCH_ROLE_PUB][0] != '\0')
        printf("network namespaces: pinger in %s, ponger in %s (the floor: this namespace)\n",
               o->netns[BENCH_ROLE_PUB], o->netns[BENCH_ROLE_SUB]);
    for (size_t i = 0; i < o->nsizes; i++) {
        printf("\nsize %zu bytes, %ld round trips after %ld warm-up\n", o->sizes[i], run->counts[i],
               run->warmups[i]);
        mc_bench_print_summary_header();
        mc_bench_print_summary("memcast", &m[i]);
        if (f != NULL) {
            const bench_summary *line = o->spin ? &f->line_spin : &f->line_block;
            const bench_summary *pay = matching_floor(o, f, i);
            mc_bench_print_summary(o->spin ? "floor: line, spinning" : "floor: line, futex", line);
            mc_bench_print_summary(o->zero_copy ? "floor: zero-copy" : "floor: copy", pay);
            ratio_row("ratio memcast / line floor", &m[i], line);
            ratio_row("ratio memcast / payload floor", &m[i], pay);
        }
        histogram(run->sh->rtt + run->sh->offsets[i], (size_t)run->counts[i]);
    }
    printf("\ncorrupt: %llu at the ponger, %llu at the pinger\n",
           (unsigned long long)atomic_load(&run->sh->corrupt_at_ponger),
           (unsigned long long)atomic_load(&run->sh->corrupt_at_pinger));
}

static void report_json(const lat_run *run, const bench_summary *m, const floor_result *f)
{
    const bench_opts *o = run->o;
    printf("{\"bench\": \"latency\", \"transport\": \"%s\", \"zero_copy\": %s, "
           "\"fill_uncached\": %s, \"wait\": \"%s\", "
           "\"reliable\": %s, \"cpus\": [%d, %d], \"corrupt\": %llu, \"lost\": 0, ",
           o->transport, o->zero_copy ? "true" : "false", o->fill_uncached ? "true" : "false",
           o->spin ? "spin" : "block", o->reliable ? "true" : "false", o->cpus[0], o->cpus[1],
           (unsigned long long)(atomic_load(&run->sh->corrupt_at_ponger) +
                                atomic_load(&run->sh->corrupt_at_pinger)));
    if (o->netns[BENCH_ROLE_PUB][0] != '\0')
        printf("\"netns\": [\"%s\", \"%s\"], ", o->netns[BENCH_ROLE_PUB], o->netns[BENCH_ROLE_SUB]);
    if (f != NULL) {
        printf("\"pinned\": %s, ", f->pinned ? "true" : "false");
        mc_bench_json_summary(o->spin ? "floor_line_spin" : "floor_line_block",
                              o->spin ? &f->line_spin : &f->line_block);
        printf(", ");
    }
    printf("\"sizes\": [");
    for (size_t i = 0; i < o->nsizes; i++) {
        printf("%s{\"size\": %zu, \"count\": %ld, ", i ? ", " : "", o->sizes[i], run->counts[i]);
        mc_bench_json_summary("memcast", &m[i]);
        if (f != NULL) {
            printf(", ");
            mc_bench_json_summary("floor", matching_floor(o, f, i));
            printf(", \"ratio_p50\": %.3f, \"ratio_p99\": %.3f",
                   m[i].p50 / matching_floor(o, f, i)->p50,
                   m[i].p99 / matching_floor(o, f, i)->p99);
        }
        printf("}");
    }
    printf("]}\n");
}

static void show_progress(void *arg)
{
    lat_run *run = arg;
    if (isatty(2))
        fprintf(stderr, "\rlatency: %ld round trips ", atomic_load(&run->sh->progress));
}

static int run_pair(lat_run *run)
{
    pid_t pids[2] = {mc_bench_spawn(ponger_main, run), 0};
    pids[1] = pids[0] > 0 ? mc_bench_spawn(pinger_main, run) : -1;
    if (pids[1] <= 0) {
        mc_bench_kill(pids, 2);
        return -1;
    }
    int rc = mc_bench_reap(pids, 2, 900000000000ll, show_progress, run);
    if (isatty(2))
        fprintf(stderr, "\r%40s\r", "");
    if (atomic_load(&run->sh->failed)) {
        fprintf(stderr, "memcast bench latency: %s\n", run->sh->error);
        rc = -1;
    }
    return rc;
}

int mc_bench_latency(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bench_opts o;
    int rc = mc_bench_start(cmd, argc, argv, &o);
    if (rc >= 0)
        return rc;
    lat_run run = {.o = &o, .config = o.config_path ? o.config_path : global->config_path};
    size_t total = 0;
    size_t offsets[BENCH_MAX_SIZES];
    for (size_t i = 0; i < o.nsizes; i++) {
        run.counts[i] = o.count > 0 ? o.count : mc_bench_default_count(o.sizes[i], false);
        run.warmups[i] = o.warmup >= 0 ? o.warmup : mc_bench_default_warmup(o.sizes[i]);
        offsets[i] = total;
        total += (size_t)run.counts[i];
    }
    run.sh = mc_bench_shared_alloc(sizeof(lat_shared) + total * sizeof(double));
    floor_result *f = o.no_floor ? NULL : calloc(1, sizeof(*f));
    if (run.sh == NULL || (!o.no_floor && f == NULL)) {
        fprintf(stderr, "memcast bench latency: out of memory\n");
        return EXIT_FAILED;
    }
    memcpy(run.sh->offsets, offsets, sizeof(offsets));
    int what_floor =
        (o.spin ? FLOOR_SPIN_LINE : FLOOR_LINE) | (o.zero_copy ? FLOOR_ZC : FLOOR_COPY);
    if (f != NULL && mc_bench_floor_run(&o, what_floor, o.spin, f) != 0) {
        fprintf(stderr, "memcast bench latency: the floor measurement failed\n");
        return EXIT_FAILED;
    }
    mc_bench_setenv(&o, "latency");
    if (run_pair(&run) != 0)
        return EXIT_FAILED;
    bench_summary m[BENCH_MAX_SIZES];
    for (size_t i = 0; i < o.nsizes; i++) {
        double *v = run.sh->rtt + offsets[i];
        for (long k = 0; k < run.counts[i]; k++)
            v[k] /= 2000.0;
        mc_bench_summarise(v, (size_t)run.counts[i], &m[i]);
    }
    if (o.json)
        report_json(&run, m, f);
    else
        report_text(&run, m, f);
    free(f);
    bool corrupt =
        atomic_load(&run.sh->corrupt_at_ponger) + atomic_load(&run.sh->corrupt_at_pinger);
    return corrupt ? EXIT_FAILED : EXIT_OK;
}
