/*
 * memcast bench throughput: one publisher process sends --count messages as fast as it
 * can, or --rate per second (every byte written, a pattern derived from the sequence) to 1..8
 * subscriber processes, which check every byte and count what arrived. Rate = messages / (first
 * send .. last arrival at the slowest subscriber). The publisher's CPU time per message
 * shows what each additional subscriber costs it. With one subscriber over shared memory,
 * each size is preceded by its streaming floor (tools/cmd_bench_stream.c), the same work
 * through a bare ring, measured in the same minute: this machine's bandwidth varies too much
 * for a figure taken at another time to be a reference.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "cmd.h"
#include "cmd_bench_common.h"

#define TOPIC            "bench/throughput"
#define MATCH_TIMEOUT_MS 10000

/* The bench's own clock reads cost 30 ns each in a VM, a tenth of a 64-byte message's
 * cost: a subscriber stamps the last message and every STAMP_EVERY-th (in case the last is
 * lost), and an unpaced publisher times every CALL_SAMPLE-th call (an odd stride, so every
 * ring position is sampled); a paced one times every call. */
#define STAMP_EVERY 1024u
#define CALL_SAMPLE 7

typedef struct sub_result {
    _Alignas(64) _Atomic uint64_t received;
    uint64_t corrupt, gaps, last_seq;
    uint64_t final_seq; /* the count published */
    long long last_ns;
    uint64_t overrun;
} sub_result;

typedef struct tp_shared {
    _Atomic int ready, stop, sent, failed;
    long long start_ns, end_ns, cpu_ns;
    long long call_ns;     /* inside mc_publish (or mc_loan + mc_commit), summed over... */
    long long calls_timed; /* ...this many calls */
    char error[256];
    sub_result subs[BENCH_MAX_SUBSCRIBERS];
} tp_shared;

typedef struct tp_run {
    const bench_opts *o;
    const char *config;
    tp_shared *sh;
    size_t size;
    long count;
    int index; /* subscriber number in the child */
} tp_run;

static void fail(tp_shared *sh, const char *what)
{
    if (!atomic_exchange(&sh->failed, 1))
        snprintf(sh->error, sizeof(sh->error), "%s: %s", what, mc_last_error());
}

static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000}, NULL);
}

static void on_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    sub_result *r = user;
    uint64_t seq = 0;
    (void)sub;
    if (!mc_bench_verify(mc_msg_data(msg), mc_msg_size(msg), 0, &seq))
        r->corrupt++;
    else if (seq > r->last_seq + 1)
        r->gaps += seq - r->last_seq - 1;
    if (seq > r->last_seq)
        r->last_seq = seq;
    if (seq == r->final_seq || seq % STAMP_EVERY == 0)
        r->last_ns = mc_bench_now_ns();
    atomic_fetch_add_explicit(&r->received, 1, memory_order_release);
}

/* --netns: the publisher is the PUB side, every subscriber the SUB side. */
static int enter_netns(tp_run *run, int role)
{
    char err[256];
    if (mc_bench_enter_netns(run->o, role, err, sizeof(err)) == 0)
        return 0;
    if (!atomic_exchange(&run->sh->failed, 1))
        snprintf(run->sh->error, sizeof(run->sh->error), "%s: %.240s",
                 role == BENCH_ROLE_PUB ? "publisher" : "subscriber", err);
    return -1;
}

static int subscriber_main(void *arg)
{
    tp_run *run = arg;
    tp_shared *sh = run->sh;
    sub_result *r = &sh->subs[run->index];
    r->final_seq = (uint64_t)run->count;
    if (enter_netns(run, BENCH_ROLE_SUB) != 0)
        return 1;
    mc_bench_pin(run->o->cpus[1]);
    mc_context *ctx = NULL;
    mc_subscriber *sub = NULL;
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.on_message = on_message;
    so.user = r;
    int rc = 1;
    if (mc_context_open(run->config, &ctx) != 0 ||
        mc_subscriber_create(ctx, TOPIC, &so, &sub) != 0 ||
        mc_subscriber_wait_matched(sub, 1, MATCH_TIMEOUT_MS) != 0) {
        fail(sh, "subscriber");
    } else {
        atomic_fetch_add(&sh->ready, 1);
        while (!atomic_load(&sh->stop) && !atomic_load(&sh->failed))
            sleep_ms(2);
        mc_stats st;
        mc_stats_init(&st);
        if (mc_subscriber_stats(sub, &st) == 0)
            r->overrun = st.dropped[MC_DROP_OVERRUN];
        rc = 0;
    }
    mc_subscriber_destroy(sub);
    mc_context_close(ctx);
    return rc;
}

/* Fills and sends message seq; when timed, sh->call_ns grows by the time spent inside
 * memcast. */
static int publish_one(tp_run *run, mc_publisher *pub, unsigned char *scratch, uint64_t seq)
{
    bool corrupt = run->o->test_corrupt && seq % 100 == 0;
    bool timed = run->o->rate > 0 || seq % CALL_SAMPLE == 1;
    long long t0 = timed ? mc_bench_now_ns() : 0;
    long long inside = 0;
    int rc;
    if (run->o->zero_copy) {
        void *buf;
        rc = mc_loan(pub, run->size, &buf);
        if (rc != 0)
            return rc;
        if (timed)
            inside = mc_bench_now_ns() - t0;
        mc_bench_fill_in_place(run->o->fill_uncached, buf, run->size, seq, 0);
        if (corrupt)
            ((unsigned char *)buf)[run->size / 2] ^= 0x5a;
        t0 = timed ? mc_bench_now_ns() : 0;
        rc = mc_commit(pub, buf, run->size);
    } else {
        mc_bench_fill(scratch, run->size, seq, 0);
        if (corrupt)
            scratch[run->size / 2] ^= 0x5a;
        t0 = timed ? mc_bench_now_ns() : 0;
        rc = mc_publish(pub, scratch, run->size);
    }
    if (timed) {
        run->sh->call_ns += inside + mc_bench_now_ns() - t0;
        run->sh->calls_timed++;
    }
    return rc;
}

/* --rate: message seq leaves at start + (seq - 1) / rate, never earlier. */
static void pace(const tp_run *run, long long start_ns, long seq)
{
    if (run->o->rate <= 0)
        return;
    long long due = start_ns + (long long)((double)(seq - 1) * 1e9 / (double)run->o->rate);
    if (due <= mc_bench_now_ns())
        return;
    struct timespec ts = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ; /* EINTR */
}

static bool wait_ready(tp_shared *sh, int want)
{
    long long deadline = mc_bench_now_ns() + MATCH_TIMEOUT_MS * 1000000ll;
    while (atomic_load(&sh->ready) < want && !atomic_load(&sh->failed))
        if (mc_bench_now_ns() > deadline)
            return false;
        else
            sleep_ms(1);
    return atomic_load(&sh->ready) >= want;
}

static int publisher_main(void *arg)
{
    tp_run *run = arg;
    tp_shared *sh = run->sh;
    int subs = (int)run->o->subscribers;
    if (enter_netns(run, BENCH_ROLE_PUB) != 0)
        return 1;
    mc_bench_pin(run->o->cpus[0]);
    mc_context *ctx = NULL;
    mc_publisher *pub = NULL;
    unsigned char *scratch = malloc(run->size);
    int rc = 1;
    if (scratch == NULL || mc_context_open(run->config, &ctx) != 0 ||
        mc_publisher_create(ctx, TOPIC, NULL, &pub) != 0 ||
        mc_publisher_wait_matched(pub, (size_t)subs, MATCH_TIMEOUT_MS) != 0 ||
        !wait_ready(sh, subs)) {
        fail(sh, "publisher: subscribers not matched within 10 s");
    } else {
        long long c0 = cpu_ns();
        sh->start_ns = mc_bench_now_ns();
        sh->call_ns = 0;
        sh->calls_timed = 0;
        rc = 0;
        for (long seq = 1; seq <= run->count && rc == 0; seq++) {
            pace(run, sh->start_ns, seq);
            if (publish_one(run, pub, scratch, (uint64_t)seq) != 0) {
                fail(sh, "publish");
                rc = 1;
            }
        }
        sh->end_ns = mc_bench_now_ns();
        sh->cpu_ns = cpu_ns() - c0;
        atomic_store(&sh->sent, 1);
        /* stay: subscribers may still be reading in place */
        while (!atomic_load(&sh->stop) && !atomic_load(&sh->failed))
            sleep_ms(2);
    }
    mc_publisher_destroy(pub);
    mc_context_close(ctx);
    free(scratch);
    return rc;
}

/* After the last send: waits until every subscriber has everything, or nothing more
 * arrived for 2 s (what is missing then is lost). */
static void wait_drained(tp_run *run)
{
    tp_shared *sh = run->sh;
    uint64_t last_total = 0;
    long long quiet_since = mc_bench_now_ns();
    for (;;) {
        uint64_t total = 0;
        bool all = true;
        for (long i = 0; i < run->o->subscribers; i++) {
            uint64_t got = atomic_load(&sh->subs[i].received);
            total += got;
            all = all && got >= (uint64_t)run->count;
        }
        if (all || atomic_load(&sh->failed))
            return;
        if (total != last_total) {
            last_total = total;
            quiet_since = mc_bench_now_ns();
        } else if (mc_bench_now_ns() - quiet_since > 2000000000ll) {
            return;
        }
        sleep_ms(2);
    }
}

static void show_progress(void *arg)
{
    tp_run *run = arg;
    if (isatty(2))
        fprintf(stderr, "\rthroughput %zu B: %llu/%ld received ", run->size,
                (unsigned long long)atomic_load(&run->sh->subs[0].received), run->count);
}

static int tick_until_sent(tp_run *run, pid_t *pids, size_t n)
{
    long long deadline = mc_bench_now_ns() + 600000000000ll;
    while (!atomic_load(&run->sh->sent) && !atomic_load(&run->sh->failed)) {
        for (size_t i = 0; i < n; i++)
            if (waitpid(pids[i], NULL, WNOHANG) == pids[i]) {
                pids[i] = 0;
                fail(run->sh, "a benchmark process ended early");
                return -1;
            }
        if (mc_bench_now_ns() > deadline)
            return -1;
        show_progress(run);
        sleep_ms(20);
    }
    return atomic_load(&run->sh->failed) ? -1 : 0;
}

static int run_size(tp_run *run)
{
    pid_t pids[BENCH_MAX_SUBSCRIBERS + 1] = {0};
    size_t n = 0;
    for (long i = 0; i < run->o->subscribers; i++) {
        run->index = (int)i;
        pids[n] = mc_bench_spawn(subscriber_main, run);
        if (pids[n++] <= 0)
            goto failed;
    }
    pids[n] = mc_bench_spawn(publisher_main, run);
    if (pids[n++] <= 0)
        goto failed;
    if (tick_until_sent(run, pids, n) != 0)
        goto failed;
    wait_drained(run);
    atomic_store(&run->sh->stop, 1);
    int rc = mc_bench_reap(pids, n, 20000000000ll, NULL, NULL);
    if (isatty(2))
        fprintf(stderr, "\r%50s\r", "");
    return rc;
failed:
    atomic_store(&run->sh->stop, 1);
    if (mc_bench_reap(pids, n, 5000000000ll, NULL, NULL) != 0)
        mc_bench_kill(pids, n);
    if (run->sh->failed)
        fprintf(stderr, "memcast bench throughput: %s\n", run->sh->error);
    return -1;
}

typedef struct tp_figures {
    double msgs_per_s, mb_per_s, cpu_ns_per_msg, call_ns_per_msg;
    uint64_t received_min, lost, corrupt, overrun;
} tp_figures;

static tp_figures figures(const tp_run *run)
{
    const tp_shared *sh = run->sh;
    tp_figures f = {.received_min = UINT64_MAX};
    long long last = sh->end_ns;
    for (long i = 0; i < run->o->subscribers; i++) {
        const sub_result *r = &sh->subs[i];
        uint64_t got = atomic_load(&r->received);
        f.received_min = got < f.received_min ? got : f.received_min;
        f.lost += got < (uint64_t)run->count ? (uint64_t)run->count - got : 0;
        f.corrupt += r->corrupt;
        f.overrun += r->overrun;
        last = r->last_ns > last ? r->last_ns : last;
    }
    double secs = (double)(last - sh->start_ns) / 1e9;
    f.msgs_per_s = secs > 0 ? (double)f.received_min / secs : 0;
    f.mb_per_s = f.msgs_per_s * (double)run->size / 1e6;
    f.cpu_ns_per_msg = (double)sh->cpu_ns / (double)run->count;
    f.call_ns_per_msg = sh->calls_timed > 0 ? (double)sh->call_ns / (double)sh->calls_timed : 0;
    return f;
}

/* What a size is read against: one core's memcpy, and the streaming floor (0: not measured). */
typedef struct tp_refs {
    double memcpy_gbps;
    bench_stream_floor stream;
} tp_refs;

/* The floor is a shared-memory figure between two processes: nothing to compare several
 * subscribers or another host with. */
static bool stream_floor_planned(const bench_opts *o)
{
    return !o->no_floor && o->subscribers == 1 && o->netns[BENCH_ROLE_PUB][0] == '\0';
}

static double floor_ratio(const tp_figures *f, const tp_refs *refs)
{
    return refs->stream.msgs_per_s > 0 ? f->msgs_per_s / refs->stream.msgs_per_s : 0;
}

static void print_figures_json(const tp_run *run, const tp_figures *f, const tp_refs *refs,
                               bool first)
{
    double memcpy_gbps = refs->memcpy_gbps;
    printf("%s{\"size\": %zu, \"count\": %ld, \"received\": %llu, \"msgs_per_s\": %.0f, "
           "\"mb_per_s\": %.1f, \"lost\": %llu, \"corrupt\": %llu, \"overrun\": %llu, "
           "\"pub_cpu_ns_per_msg\": %.1f, \"publish_ns_per_msg\": %.1f, \"memcpy_ratio\": %.3f, "
           "\"floor_msgs_per_s\": %.0f, \"floor_mb_per_s\": %.1f, \"floor_ratio\": %.3f}",
           first ? "" : ", ", run->size, run->count, (unsigned long long)f->received_min,
           f->msgs_per_s, f->mb_per_s, (unsigned long long)f->lost, (unsigned long long)f->corrupt,
           (unsigned long long)f->overrun, f->cpu_ns_per_msg, f->call_ns_per_msg,
           memcpy_gbps > 0 ? f->mb_per_s / 1000.0 / memcpy_gbps : 0, refs->stream.msgs_per_s,
           refs->stream.mb_per_s, floor_ratio(f, refs));
}

static void print_figures(const tp_run *run, const tp_figures *f, const tp_refs *refs, bool first)
{
    const bench_opts *o = run->o;
    double memcpy_gbps = refs->memcpy_gbps;
    if (o->json) {
        print_figures_json(run, f, refs, first);
        return;
    }
    printf("  %10zu %10ld %12.0f %10.1f %8llu %8llu %8llu %14.1f %14.1f", run->size, run->count,
           f->msgs_per_s, f->mb_per_s, (unsigned long long)f->lost, (unsigned long long)f->corrupt,
           (unsigned long long)f->overrun, f->cpu_ns_per_msg, f->call_ns_per_msg);
    if (memcpy_gbps > 0)
        printf("   %5.1f%%", 100.0 * f->mb_per_s / 1000.0 / memcpy_gbps);
    if (stream_floor_planned(o) && refs->stream.msgs_per_s > 0)
        printf(" %12.0f %8.2f", refs->stream.msgs_per_s, floor_ratio(f, refs));
    else if (stream_floor_planned(o))
        printf(" %12s %8s", "-", "-");
    printf("\n");
}

static void print_header(const bench_opts *o, double gbps)
{
    bool netns = o->netns[BENCH_ROLE_PUB][0] != '\0';
    if (o->json) {
        printf("{\"bench\": \"throughput\", \"transport\": \"%s\", \"zero_copy\": %s, "
               "\"fill_uncached\": %s, \"reliable\": %s, \"subscribers\": %ld, \"rate\": %ld, "
               "\"memcpy_gbps\": %.3f, ",
               o->transport, o->zero_copy ? "true" : "false", o->fill_uncached ? "true" : "false",
               o->reliable ? "true" : "false", o->subscribers, o->rate, gbps);
        if (netns)
            printf("\"netns\": [\"%s\", \"%s\"], ", o->netns[BENCH_ROLE_PUB],
                   o->netns[BENCH_ROLE_SUB]);
        printf("\"sizes\": [");
        return;
    }
    printf("memcast bench throughput: transport %s, %s, %s, %ld subscriber(s), CPUs %d "
           "(publisher), %d (subscribers)\n",
           o->transport,
           o->zero_copy ? (o->fill_uncached ? "zero-copy (written uncached)" : "zero-copy")
                        : "copy",
           o->reliable ? "reliable" : "best effort", o->subscribers, o->cpus[0], o->cpus[1]);
    if (o->rate > 0)
        printf("paced: %ld messages per second\n", o->rate);
    if (netns)
        printf("network namespaces: publisher in %s, subscribers in %s\n", o->netns[BENCH_ROLE_PUB],
               o->netns[BENCH_ROLE_SUB]);
    printf("  %10s %10s %12s %10s %8s %8s %8s %14s %14s%s", "size", "count", "msg/s", "MB/s",
           "lost", "corrupt", "overrun", "pub CPU ns/msg", "publish ns/msg",
           gbps > 0 ? "  of memcpy" : "");
    if (stream_floor_planned(o))
        printf(" %12s %8s", "floor msg/s", "of floor");
    printf("\n");
}

static void print_footer(const bench_opts *o, double gbps)
{
    if (o->json) {
        printf("]}\n");
        return;
    }
    if (gbps > 0)
        printf("  memcpy bandwidth, one core, 1 MiB blocks: %.2f GB/s\n", gbps);
    if (stream_floor_planned(o))
        printf("  floor: the same fill and check per message through a bare %s ring of 8 slots "
               "between two processes, measured right before each size\n",
               o->zero_copy ? "zero-copy" : "copy (uncached from 768 KiB, as mc_publish)");
}

/* One core's memcpy bandwidth, measured on the publisher's CPU. */
static double measure_memcpy(const bench_opts *o)
{
    mc_bench_pin(o->cpus[0]);
    double gbps = mc_bench_memcpy_gbps();
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    sched_setaffinity(0, sizeof(all), &all);
    return gbps;
}

/* The floor, then memcast, for one size. 0: measured and clean; 1: corrupt or (reliable)
 * lost; -1: the run failed, stop. */
static int measure_size(tp_run *run, tp_refs *refs, bool first)
{
    refs->stream = (bench_stream_floor){0};
    if (stream_floor_planned(run->o))
        mc_bench_stream_floor(run->o, run->size, run->count, &refs->stream);
    if (run_size(run) != 0)
        return -1;
    tp_figures f = figures(run);
    print_figures(run, &f, refs, first);
    return f.corrupt > 0 || (run->o->reliable && f.lost > 0) ? 1 : 0;
}

int mc_bench_throughput(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bench_opts o;
    int rc = mc_bench_start(cmd, argc, argv, &o);
    if (rc >= 0)
        return rc;
    tp_refs refs = {.memcpy_gbps = o.no_floor ? 0 : measure_memcpy(&o)};
    mc_bench_setenv(&o, "throughput");
    tp_shared *sh = mc_bench_shared_alloc(sizeof(tp_shared));
    if (sh == NULL)
        return EXIT_FAILED;
    print_header(&o, refs.memcpy_gbps);
    int status = EXIT_OK, outcome = 0;
    for (size_t i = 0; i < o.nsizes && outcome >= 0; i++) {
        memset(sh, 0, sizeof(*sh));
        tp_run run = {.o = &o,
                      .config = o.config_path ? o.config_path : global->config_path,
                      .sh = sh,
                      .size = o.sizes[i],
                      .count = o.count > 0 ? o.count : mc_bench_default_count(o.sizes[i], true)};
        outcome = measure_size(&run, &refs, i == 0);
        if (outcome != 0)
            status = EXIT_FAILED;
    }
    print_footer(&o, refs.memcpy_gbps);
    return status;
}
