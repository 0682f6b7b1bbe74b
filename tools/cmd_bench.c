/*
 * memcast bench discovery: how long two processes take to meet. For each try it starts a
 * first process (publisher or subscriber), waits until its endpoint exists, then starts
 * the second, and measures from the second process's start (before it opens its context)
 * to: the publisher matched, the subscriber matched, and the first sample received. The
 * publisher publishes as soon as it is matched, and then every millisecond, so "first
 * sample" includes any handshake a transport needs. Both start orders are measured.
 * CLOCK_MONOTONIC is shared by all processes of a host, so the stamps compare directly.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "cli.h"
#include "cmd.h"
#include "cmd_bench_common.h"

enum { STAMP_OPEN, STAMP_MATCHED, STAMP_FIRST, STAMPS };

typedef struct child {
    pid_t pid;
    int out;  /* read end: the child's stamps */
    int stop; /* write end: closing it tells the child to finish */
} child;

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(int fd, int what, long long ns)
{
    long long msg[2] = {what, ns};
    if (write(fd, msg, sizeof(msg)) != sizeof(msg))
        _exit(3);
}

typedef struct role_state {
    int fd;
    volatile int matched;
    volatile int got_first;
} role_state;

static void role_event(void *user, const mc_event *ev)
{
    role_state *s = user;
    if (ev->kind == MC_EVENT_MATCHED && !s->matched) {
        s->matched = 1;
        report(s->fd, STAMP_MATCHED, mono_ns());
    }
}

static void role_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    role_state *s = user;
    if (!s->got_first) {
        s->got_first = 1;
        report(s->fd, STAMP_FIRST, mono_ns());
    }
}

static bool stop_requested(int stop_fd, int timeout_ms)
{
    struct pollfd p = {.fd = stop_fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) != 0;
}

/* The child's whole life: open, create the endpoint, publish every ms once matched. */
static int run_role(const char *config, const char *topic, bool publisher, int out, int stop)
{
    role_state s = {.fd = out};
    report(out, -1, mono_ns()); /* start, before the context opens */
    mc_context *ctx = NULL;
    if (mc_context_open(config, &ctx) != 0) {
        fprintf(stderr, "memcast bench: %s\n", mc_last_error());
        return 1;
    }
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    int rc;
    if (publisher) {
        mc_pub_options o;
        mc_pub_options_init(&o);
        o.on_event = role_event;
        o.user = &s;
        rc = mc_publisher_create(ctx, topic, &o, &pub);
    } else {
        mc_sub_options o;
        mc_sub_options_init(&o);
        o.on_event = role_event;
        o.on_message = role_message;
        o.user = &s;
        rc = mc_subscriber_create(ctx, topic, &o, &sub);
    }
    if (rc == 0)
        report(out, STAMP_OPEN, mono_ns());
    while (rc == 0 && !stop_requested(stop, publisher ? 1 : 50))
        if (pub != NULL && s.matched)
            mc_publish(pub, "x", 1);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
    mc_context_close(ctx);
    return rc == 0 ? 0 : 1;
}

static int spawn(const char *config, const char *topic, bool publisher, child *c)
{
    int out[2], stop[2];
    if (pipe(out) != 0 || pipe(stop) != 0)
        return -1;
    fflush(NULL);
    c->pid = fork();
    if (c->pid == 0) {
        close(out[0]);
        close(stop[1]);
        _exit(run_role(config, topic, publisher, out[1], stop[0]));
    }
    close(out[1]);
    close(stop[0]);
    c->out = out[0];
    c->stop = stop[1];
    return c->pid > 0 ? 0 : -1;
}

/* Reads stamps from a child until want is seen or the deadline passes. */
static bool read_stamps(child *c, long long stamps[STAMPS + 1], int want, long long deadline)
{
    while (stamps[want] == 0) {
        long long left_ms = (deadline - mono_ns()) / 1000000;
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        if (left_ms <= 0 || poll(&p, 1, (int)left_ms) <= 0)
            return false;
        long long msg[2];
        if (read(c->out, msg, sizeof(msg)) != sizeof(msg))
            return false;
        stamps[msg[0] + 1] = msg[1];
    }
    return true;
}

static void finish(child *c)
{
    close(c->stop);
    int status;
    if (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
        waitpid(c->pid, &status, 0);
    close(c->out);
}

typedef struct sample_set {
    double *ms;
    size_t count;
} sample_set;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_set(const char *label, sample_set *s, size_t tries)
{
    if (s->count == 0) {
        printf("  %-34s no result in %zu tries\n", label, tries);
        return;
    }
    qsort(s->ms, s->count, sizeof(double), compare_double);
    printf("  %-34s median %8.2f ms  p90 %8.2f ms  max %8.2f ms  (%zu of %zu tries)\n", label,
           s->ms[s->count / 2], s->ms[(s->count * 9) / 10], s->ms[s->count - 1], s->count, tries);
}

/* One start order: returns how many tries met completely. */
static size_t run_order(const char *config, bool sub_first, size_t tries, sample_set sets[3])
{
    size_t complete = 0;
    for (size_t t = 0; t < tries; t++) {
        char topic[64];
        snprintf(topic, sizeof(topic), "bench/discovery/%d/%zu", (int)getpid(), t);
        child first, second;
        long long a[STAMPS + 1] = {0}, b[STAMPS + 1] = {0};
        if (spawn(config, topic, !sub_first, &first) != 0)
            return complete;
        bool ok = read_stamps(&first, a, STAMP_OPEN + 1, mono_ns() + 10000000000ll);
        if (ok && spawn(config, topic, sub_first, &second) == 0) {
            long long deadline = mono_ns() + 5000000000ll;
            child *pub = sub_first ? &second : &first, *sub = sub_first ? &first : &second;
            long long *ps = sub_first ? b : a, *ss = sub_first ? a : b;
            bool met = read_stamps(pub, ps, STAMP_MATCHED + 1, deadline) &&
                       read_stamps(sub, ss, STAMP_MATCHED + 1, deadline) &&
                       read_stamps(sub, ss, STAMP_FIRST + 1, deadline);
            long long start = b[0];
            if (met) {
                sets[0].ms[sets[0].count++] = (ps[STAMP_MATCHED + 1] - start) / 1e6;
                sets[1].ms[sets[1].count++] = (ss[STAMP_MATCHED + 1] - start) / 1e6;
                sets[2].ms[sets[2].count++] = (ss[STAMP_FIRST + 1] - start) / 1e6;
                complete++;
            }
            finish(&second);
        }
        finish(&first);
        if (complete == 0 && t == 0) { /* the rest would wait just as long for nothing */
            fprintf(stderr, "memcast bench: the two processes did not meet within 5 s; do their "
                            "contexts load a registration plugin (udp) and a data transport they "
                            "share? See 'memcast plugins'.\n");
            return complete;
        }
    }
    return complete;
}

static int bench_discovery(const cli_global *global, size_t tries)
{
    printf("memcast bench discovery: %zu tries per start order; times from the second "
           "process's start\n",
           tries);
    int status = EXIT_OK;
    for (int order = 0; order < 2; order++) {
        sample_set sets[3];
        for (int i = 0; i < 3; i++)
            sets[i] = (sample_set){.ms = calloc(tries, sizeof(double))};
        bool sub_first = order == 0;
        size_t met = run_order(global->config_path, sub_first, tries, sets);
        printf("%s started first:\n", sub_first ? "subscriber" : "publisher");
        print_set("publisher matched", &sets[0], tries);
        print_set("subscriber matched", &sets[1], tries);
        print_set("first sample received", &sets[2], tries);
        if (met < tries)
            status = EXIT_FAILED;
        for (int i = 0; i < 3; i++)
            free(sets[i].ms);
    }
    return status;
}

int mc_cmd_bench(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    /* the measurement's name may come after options and their values */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "floor") == 0)
            return mc_bench_floor(cmd, global, argc, argv);
        if (strcmp(argv[i], "latency") == 0)
            return mc_bench_latency(cmd, global, argc, argv);
        if (strcmp(argv[i], "throughput") == 0)
            return mc_bench_throughput(cmd, global, argc, argv);
    }
    const char *tries_text = NULL;
    const cli_option opts[] = {{"--tries", 'n', NULL, &tries_text},
                               {"--config", 'c', NULL, &global->config_path}};
    const char *what = NULL;
    size_t npos = 0;
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 2, &what, 1, &npos);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    long tries = tries_text ? atol(tries_text) : 20;
    if (npos == 0 || strcmp(what, "discovery") != 0 || tries <= 0 || tries > 10000) {
        fprintf(stderr, "memcast bench: expected 'discovery' and --tries 1..10000\n"
                        "Try 'memcast bench --help'.\n");
        return EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    return bench_discovery(global, (size_t)tries);
}
