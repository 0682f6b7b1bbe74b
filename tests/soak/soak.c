/*
 * mc_soak: a chaos soak of memcast between processes. Not part of `make check`: it is a
 * command, run for as long as you like (doc/reliability.md).
 *
 * A driver keeps a pool of forked worker processes: publishers and subscribers on a few
 * topics, with random message sizes, rates, zero-copy or copy, reliable or best-effort
 * publishers and slow subscribers. At random moments it kills one with SIGKILL or stops one
 * cleanly, and starts a new one in its place. Invariants, checked all along:
 *  - every delivered message is intact (a message of 8 bytes or more starts with a key from
 *    which every other byte follows; a shorter one follows from its size) and, per
 *    publisher, in the framework's sequence order with no duplicate;
 *  - every gap in a publisher's sequence is counted by the framework as a loss, and so is
 *    every message that was not intact: read in place, it can only be torn when the writer
 *    reused its slot after pin_timeout, which the framework counts as an overrun;
 *  - nothing hangs: a publisher's send returns within its bound, a worker reports at least
 *    every second, a clean stop finishes within its bound;
 *  - a long-lived worker's heap, open files and mappings stay flat;
 *  - after the run, once a context has started (which reaps), no shm file of a dead
 *    process is left in /dev/shm.
 * Exit status: 0 when no invariant was broken, 1 otherwise, 2 for bad usage.
 */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "segment.h"

#define MAX_WORKERS      32
#define STABLE_WORKERS   2
#define MAX_PUBLISHERS   64 /* publishers one subscriber tracks at once */
#define REPORT_NS        INT64_C(250000000)
#define SILENCE_BOUND_S  3  /* a worker that reports nothing for this long hangs */
#define STOP_BOUND_S     5  /* a clean stop must finish within this */
#define WARMUP_S         10 /* resource baselines are taken at this age */
#define HEAP_GROWTH_MAX  (8u << 20)
#define FD_GROWTH_MAX    16
#define MAP_GROWTH_MAX   64
#define VIOLATIONS_SHOWN 20

typedef struct options {
    int duration_s;
    int topics;
    int workers;
    int kill_every_ms;
    size_t max_size;
    unsigned seed;
    const char *transports;
    const char *keep_dir;
} options;

/* What a worker tells the driver, every REPORT_NS and once more when it stops. */
typedef struct report {
    int32_t final;
    int32_t is_publisher;
    uint64_t messages; /* published, or received */
    uint64_t bytes;
    uint64_t gaps;          /* messages missing from sequences (subscriber) */
    uint64_t torn;          /* messages read while the writer reused their slot */
    uint64_t counted_drops; /* losses the framework counted (subscriber) */
    uint64_t violations;    /* broken invariants seen by the worker */
    int64_t last_return_ns; /* publisher: CLOCK_MONOTONIC when its last send returned */
    uint64_t heap;
    uint32_t fds;
    uint32_t maps;
    char problem[160]; /* the first violation, if any */
} report;

/* ---- small helpers ----------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

static uint64_t random_below(uint64_t *state, uint64_t n)
{
    return n == 0 ? 0 : next_random(state) % n;
}

/* Byte i of a message whose key is key: the subscriber recomputes every one. */
static uint8_t pattern_byte(uint64_t key, size_t i)
{
    uint64_t x = key * UINT64_C(0x9e3779b97f4a7c15);
    return (uint8_t)((x >> (8 * (i % 8))) ^ (i / 8));
}

static void fill_payload(uint8_t *bytes, size_t size, uint64_t key)
{
    size_t i = 0;
    if (size >= sizeof(key)) {
        memcpy(bytes, &key, sizeof(key));
        i = sizeof(key);
    } else {
        key = size;
    }
    for (; i < size; i++)
        bytes[i] = pattern_byte(key, i);
}

/* SIZE_MAX when intact, else the first wrong byte. */
static size_t first_wrong_byte(const uint8_t *bytes, size_t size)
{
    uint64_t key = size;
    size_t i = 0;
    if (size >= sizeof(key)) {
        memcpy(&key, bytes, sizeof(key));
        i = sizeof(key);
    }
    for (; i < size; i++)
        if (bytes[i] != pattern_byte(key, i))
            return i;
    return SIZE_MAX;
}

static unsigned count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    unsigned n = 0;
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static unsigned count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    unsigned n = 0;
    if (f == NULL)
        return 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

static void take_resources(report *r)
{
    r->heap = mallinfo2().uordblks;
    r->fds = count_entries("/proc/self/fd");
    r->maps = count_maps();
}

/* ---- worker: shared state ---------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct seen_publisher {
    mc_endpoint_id id;
    uint64_t last_seq;
} seen_publisher;

typedef struct worker {
    int report_fd;
    uint64_t random;
    size_t max_size;
    bool slow;
    pthread_mutex_t lock; /* guards everything below */
    report rep;
    seen_publisher seen[MAX_PUBLISHERS];
    size_t seen_count;
} worker;

static void worker_violation(worker *w, const char *fmt, ...)
{
    w->rep.violations++;
    if (w->rep.problem[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->rep.problem, sizeof(w->rep.problem), fmt, ap);
    va_end(ap);
}

static void send_report(worker *w, mc_subscriber *sub, bool final)
{
    pthread_mutex_lock(&w->lock);
    if (sub != NULL) {
        mc_stats st;
        mc_stats_init(&st);
        if (mc_subscriber_stats(sub, &st) == 0)
            w->rep.counted_drops = st.dropped[MC_DROP_OVERRUN] + st.dropped[MC_DROP_LOST];
    }
    w->rep.final = final;
    take_resources(&w->rep);
    report copy = w->rep;
    pthread_mutex_unlock(&w->lock);
    if (write(w->report_fd, &copy, sizeof(copy)) != (ssize_t)sizeof(copy))
        _exit(3); /* the driver is gone */
}

/* ---- worker: subscriber ------------------------------------------------------------------ */

static seen_publisher *seen_find(worker *w, const mc_endpoint_id *id)
{
    for (size_t i = 0; i < w->seen_count; i++)
        if (memcmp(&w->seen[i].id, id, sizeof(*id)) == 0)
            return &w->seen[i];
    if (w->seen_count == MAX_PUBLISHERS) /* forget the oldest: it is long dead */
        memmove(w->seen, w->seen + 1, sizeof(w->seen[0]) * --w->seen_count);
    seen_publisher *s = &w->seen[w->seen_count++];
    s->id = *id;
    s->last_seq = 0;
    return s;
}

static void check_payload(worker *w, const mc_msg *msg)
{
    const uint8_t *data = mc_msg_data(msg);
    size_t size = mc_msg_size(msg);
    uint64_t seq = mc_msg_seq(msg);
    if (size > w->max_size) {
        worker_violation(w, "message %" PRIu64 " has %zu bytes, more than any sent", seq, size);
        return;
    }
    if (first_wrong_byte(data, size) != SIZE_MAX)
        w->rep.torn++;
}

static void check_order(worker *w, const mc_msg *msg)
{
    seen_publisher *s = seen_find(w, mc_msg_publisher(msg));
    uint64_t seq = mc_msg_seq(msg);
    if (s->last_seq != 0 && seq <= s->last_seq)
        worker_violation(w, "message %" PRIu64 " after %" PRIu64 " of the same publisher", seq,
                         s->last_seq);
    else if (s->last_seq != 0)
        w->rep.gaps += seq - s->last_seq - 1;
    if (seq > s->last_seq)
        s->last_seq = seq;
}

static void on_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    (void)sub;
    worker *w = user;
    pthread_mutex_lock(&w->lock);
    check_payload(w, msg);
    check_order(w, msg);
    w->rep.messages++;
    w->rep.bytes += mc_msg_size(msg);
    bool pause = w->slow && random_below(&w->random, 50) == 0;
    uint64_t pause_ns = 1000000 + random_below(&w->random, 20000000);
    pthread_mutex_unlock(&w->lock);
    if (pause) /* a slow reader is part of the workload, not synchronisation */
        sleep_ns((int64_t)pause_ns);
}

static int run_subscriber(worker *w, mc_context *ctx, const char *topic)
{
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = on_message;
    o.user = w;
    mc_subscriber *sub;
    if (mc_subscriber_create(ctx, topic, &o, &sub) != 0) {
        fprintf(stderr, "mc_soak: subscriber on '%s': %s\n", topic, mc_last_error());
        return 1;
    }
    while (!stop_requested) {
        sleep_ns(REPORT_NS);
        send_report(w, sub, false);
    }
    int rc = mc_subscriber_destroy(sub);
    send_report(w, NULL, false);
    return rc == 0 ? 0 : 1;
}

/* ---- worker: publisher ------------------------------------------------------------------- */

static size_t pick_size(worker *w)
{
    static const size_t sizes[] = {0, 1, 64, 1000, 4096, 65536};
    uint64_t r = random_below(&w->random, 100);
    if (r < 3)
        return w->max_size;
    if (r < 8)
        return random_below(&w->random, w->max_size + 1);
    return sizes[r % (sizeof(sizes) / sizeof(sizes[0]))] % (w->max_size + 1);
}

static int publish_one(mc_publisher *pub, uint64_t key, size_t size, bool zero_copy)
{
    void *buf = NULL;
    if (zero_copy) {
        int rc = mc_loan(pub, size, &buf);
        if (rc != 0)
            return rc;
    } else {
        buf = malloc(size > 0 ? size : 1);
        if (buf == NULL)
            return MC_ENOMEM;
    }
    fill_payload(buf, size, key);
    int rc = zero_copy ? mc_commit(pub, buf, size) : mc_publish(pub, buf, size);
    if (!zero_copy)
        free(buf);
    return rc;
}

static void *publisher_reporter(void *arg)
{
    worker *w = arg;
    while (!stop_requested) {
        sleep_ns(REPORT_NS);
        send_report(w, NULL, false);
    }
    return NULL;
}

static int run_publisher(worker *w, mc_context *ctx, const char *topic)
{
    mc_publisher *pub;
    if (mc_publisher_create(ctx, topic, NULL, &pub) != 0) {
        fprintf(stderr, "mc_soak: publisher on '%s': %s\n", topic, mc_last_error());
        return 1;
    }
    bool zero_copy = random_below(&w->random, 2) == 0;
    int64_t period_ns = 100000 + (int64_t)random_below(&w->random, 5000000);
    w->rep.last_return_ns = now_ns();
    pthread_t reporter;
    pthread_create(&reporter, NULL, publisher_reporter, w);
    for (uint64_t key = 1; !stop_requested; key++) {
        size_t size = pick_size(w);
        int rc = publish_one(pub, key, size, zero_copy);
        int64_t t = now_ns();
        pthread_mutex_lock(&w->lock);
        if (t - w->rep.last_return_ns > (int64_t)SILENCE_BOUND_S * 1000000000)
            worker_violation(w, "a send of %zu bytes took %.1f s", size,
                             (t - w->rep.last_return_ns) / 1e9);
        if (rc != 0)
            worker_violation(w, "a send of %zu bytes failed: %s", size, mc_last_error());
        w->rep.messages += rc == 0;
        w->rep.bytes += rc == 0 ? size : 0;
        w->rep.last_return_ns = t;
        pthread_mutex_unlock(&w->lock);
        sleep_ns(period_ns);
    }
    pthread_join(reporter, NULL);
    return mc_publisher_destroy(pub) == 0 ? 0 : 1;
}

/* ---- worker: process --------------------------------------------------------------------- */

static int worker_main(const char *config, const char *topic, bool publisher, bool slow,
                       size_t max_size, uint64_t seed, int report_fd)
{
    signal(SIGTERM, on_term);
    worker w = {.report_fd = report_fd, .random = seed, .max_size = max_size, .slow = slow};
    pthread_mutex_init(&w.lock, NULL);
    w.rep.is_publisher = publisher;
    mc_context *ctx;
    if (mc_context_open(config, &ctx) != 0) {
        fprintf(stderr, "mc_soak: context: %s\n", mc_last_error());
        return 1;
    }
    int rc = publisher ? run_publisher(&w, ctx, topic) : run_subscriber(&w, ctx, topic);
    if (mc_context_close(ctx) != 0)
        rc = 1;
    send_report(&w, NULL, true);
    return rc;
}

/* ---- driver ------------------------------------------------------------------------------ */

typedef struct slot {
    pid_t pid;
    int fd;
    bool publisher;
    int topic;
    int64_t started_ns;
    int64_t last_report_ns;
    int64_t stop_sent_ns; /* a clean stop was asked at this time, 0 if none */
    bool baseline_taken;
    report baseline;
    report last;
    bool problem_reported;
} slot;

typedef struct driver {
    options opt;
    char domain[64];
    uint64_t random;
    slot slots[MAX_WORKERS];
    uint64_t started, killed, stopped;
    uint64_t published, received, gaps, torn, counted_drops;
    uint64_t violations;
    int64_t begin_ns;
} driver;

static void violation(driver *d, const char *fmt, ...)
{
    d->violations++;
    if (d->violations > VIOLATIONS_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION at %.1f s: ", (now_ns() - d->begin_ns) / 1e9);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void config_path(const driver *d, char *out, size_t size, unsigned n)
{
    snprintf(out, size, "%s/mc_soak.%d.%u.ini", d->opt.keep_dir, (int)getpid(), n);
}

/* Each worker gets its own reliability and ring size. */
static int write_config(driver *d, const char *path, bool publisher)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    unsigned slots = 2 + (unsigned)random_below(&d->random, 15);
    bool reliable = publisher && random_below(&d->random, 3) == 0;
    fprintf(f, "[framework]\nplugins = %s\ndomain = %s\nlog_level = error\n\n", d->opt.transports,
            d->domain);
    fprintf(f, "[shm]\nslots = %u\nack_timeout = %s\n", slots, reliable ? "200ms" : "0");
    return fclose(f);
}

static void spawn(driver *d, slot *s, bool publisher, int topic)
{
    static unsigned serial;
    char config[256], name[64];
    config_path(d, config, sizeof(config), serial++);
    if (write_config(d, config, publisher) != 0) {
        violation(d, "cannot write %s: %s", config, strerror(errno));
        return;
    }
    snprintf(name, sizeof(name), "soak/topic%d", topic);
    bool slow = !publisher && random_below(&d->random, 3) == 0;
    uint64_t seed = next_random(&d->random);
    int fds[2];
    if (pipe(fds) != 0)
        return;
    /* A stop may come the moment the worker exists: SIGTERM stays blocked until the worker
     * has its handler, else it would die of the signal instead of stopping cleanly. */
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGTERM, on_term);
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(fds[0]);
        for (size_t i = 0; i < MAX_WORKERS; i++)
            if (d->slots[i].pid > 0)
                close(d->slots[i].fd);
        _exit(worker_main(config, name, publisher, slow, d->opt.max_size, seed, fds[1]));
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return;
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    *s = (slot){.pid = pid, .fd = fds[0], .publisher = publisher, .topic = topic};
    s->started_ns = s->last_report_ns = now_ns();
    d->started++;
}

static void account(driver *d, const slot *s)
{
    if (s->publisher)
        d->published += s->last.messages;
    else
        d->received += s->last.messages;
    d->gaps += s->last.gaps;
    d->torn += s->last.torn;
    d->counted_drops += s->last.counted_drops;
}

static void check_resources(driver *d, slot *s)
{
    int64_t age_s = (now_ns() - s->started_ns) / 1000000000;
    if (!s->baseline_taken) {
        if (age_s >= WARMUP_S) {
            s->baseline = s->last;
            s->baseline_taken = true;
        }
        return;
    }
    const report *b = &s->baseline, *l = &s->last;
    if (l->heap > b->heap + HEAP_GROWTH_MAX || l->fds > b->fds + FD_GROWTH_MAX ||
        l->maps > b->maps + MAP_GROWTH_MAX) {
        if (!s->problem_reported)
            violation(d,
                      "pid %d grew since it was %d s old: heap %" PRIu64 " -> %" PRIu64
                      " B, fds %u -> %u, maps %u -> %u",
                      (int)s->pid, WARMUP_S, b->heap, l->heap, b->fds, l->fds, b->maps, l->maps);
        s->problem_reported = true;
    }
}

static void check_report(driver *d, slot *s)
{
    if (s->last.problem[0] != '\0' && !s->problem_reported) {
        violation(d, "pid %d (%s, topic%d): %s", (int)s->pid,
                  s->publisher ? "publisher" : "subscriber", s->topic, s->last.problem);
        s->problem_reported = true;
    }
    if (!s->publisher && s->last.gaps + s->last.torn > s->last.counted_drops &&
        !s->problem_reported) {
        violation(d,
                  "pid %d: %" PRIu64 " messages missing and %" PRIu64 " not intact, only %" PRIu64
                  " counted as lost",
                  (int)s->pid, s->last.gaps, s->last.torn, s->last.counted_drops);
        s->problem_reported = true;
    }
    check_resources(d, s);
}

/* Reads what a worker wrote; true while the pipe is open. */
static bool read_reports(driver *d, slot *s)
{
    report r;
    ssize_t n;
    while ((n = read(s->fd, &r, sizeof(r))) == (ssize_t)sizeof(r)) {
        s->last = r;
        s->last_report_ns = now_ns();
        check_report(d, s);
    }
    return n != 0;
}

static void finish(driver *d, slot *s, bool expect_clean)
{
    int status = 0;
    waitpid(s->pid, &status, 0);
    read_reports(d, s); /* what it wrote before it ended */
    close(s->fd);
    if (expect_clean && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        violation(d, "pid %d did not stop cleanly (status %#x)", (int)s->pid, status);
    if (expect_clean && !s->last.final)
        violation(d, "pid %d stopped without its final report", (int)s->pid);
    account(d, s);
    s->pid = 0;
}

static void kill_one(driver *d, slot *s)
{
    kill(s->pid, SIGKILL);
    finish(d, s, false);
    d->killed++;
}

static void check_silence(driver *d, slot *s, int64_t t)
{
    if (s->stop_sent_ns != 0) {
        if (t - s->stop_sent_ns > (int64_t)STOP_BOUND_S * 1000000000) {
            violation(d, "pid %d took more than %d s to stop", (int)s->pid, STOP_BOUND_S);
            kill_one(d, s);
        }
        return;
    }
    const int64_t bound = (int64_t)SILENCE_BOUND_S * 1000000000;
    if (t - s->last_report_ns > bound) {
        violation(d, "pid %d (%s) reported nothing for %d s", (int)s->pid,
                  s->publisher ? "publisher" : "subscriber", SILENCE_BOUND_S);
        kill_one(d, s);
    } else if (s->publisher && s->last.last_return_ns != 0 && t - s->last.last_return_ns > bound) {
        violation(d, "pid %d: a send has not returned for %d s", (int)s->pid, SILENCE_BOUND_S);
        kill_one(d, s);
    }
}

static void poll_workers(driver *d)
{
    struct pollfd pfd[MAX_WORKERS];
    slot *owner[MAX_WORKERS];
    nfds_t n = 0;
    for (size_t i = 0; i < MAX_WORKERS; i++) {
        if (d->slots[i].pid > 0) {
            pfd[n] = (struct pollfd){.fd = d->slots[i].fd, .events = POLLIN};
            owner[n++] = &d->slots[i];
        }
    }
    poll(pfd, n, 50);
    int64_t t = now_ns();
    for (nfds_t i = 0; i < n; i++) {
        slot *s = owner[i];
        if ((pfd[i].revents & (POLLIN | POLLHUP)) && !read_reports(d, s)) {
            if (s->stop_sent_ns == 0)
                violation(d, "pid %d exited on its own", (int)s->pid);
            finish(d, s, s->stop_sent_ns != 0);
            continue;
        }
        check_silence(d, s, t);
    }
}

/* The first STABLE_WORKERS slots (a publisher and a subscriber on topic 0) live through the
 * whole run: they meet every other process that comes and goes, and their heap, files and
 * mappings must stay flat through it. */
static bool may_disturb(const slot *s, size_t index)
{
    return index >= STABLE_WORKERS && s->pid > 0 && s->stop_sent_ns == 0;
}

static slot *random_live(driver *d)
{
    size_t live = 0;
    for (size_t i = 0; i < MAX_WORKERS; i++)
        live += may_disturb(&d->slots[i], i);
    if (live == 0)
        return NULL;
    size_t pick = random_below(&d->random, live);
    for (size_t i = 0; i < MAX_WORKERS; i++)
        if (may_disturb(&d->slots[i], i) && pick-- == 0)
            return &d->slots[i];
    return NULL;
}

/* Kill or stop one worker; the pool refills itself. */
static void disturb(driver *d)
{
    slot *s = random_live(d);
    if (s == NULL)
        return;
    if (random_below(&d->random, 4) == 0) {
        kill(s->pid, SIGTERM);
        s->stop_sent_ns = now_ns();
        d->stopped++;
    } else {
        kill_one(d, s);
    }
}

static void refill(driver *d)
{
    size_t live = 0;
    for (size_t i = 0; i < MAX_WORKERS; i++)
        live += d->slots[i].pid > 0;
    for (size_t i = 0; i < MAX_WORKERS && live < (size_t)d->opt.workers; i++) {
        if (d->slots[i].pid == 0) {
            bool publisher = i < STABLE_WORKERS ? i == 0 : random_below(&d->random, 5) < 2;
            int topic = i < STABLE_WORKERS ? 0 : (int)random_below(&d->random, d->opt.topics);
            spawn(d, &d->slots[i], publisher, topic);
            live++;
        }
    }
}

static void stop_all(driver *d)
{
    for (size_t i = 0; i < MAX_WORKERS; i++) {
        slot *s = &d->slots[i];
        if (s->pid > 0 && s->stop_sent_ns == 0) {
            kill(s->pid, SIGTERM);
            s->stop_sent_ns = now_ns();
        }
    }
    for (bool any = true; any;) {
        any = false;
        for (size_t i = 0; i < MAX_WORKERS; i++)
            any |= d->slots[i].pid > 0;
        if (any)
            poll_workers(d);
    }
}

/* Files of dead owners left in /dev/shm once a new context has started and reaped. */
static void check_dev_shm(driver *d)
{
    char config[256];
    config_path(d, config, sizeof(config), 999999);
    mc_context *ctx;
    if (write_config(d, config, false) != 0 || mc_context_open(config, &ctx) != 0) {
        violation(d, "the final context does not open: %s", mc_last_error());
        return;
    }
    mc_context_close(ctx);
    unlink(config);
    DIR *dir = opendir("/dev/shm");
    for (struct dirent *e; dir != NULL && (e = readdir(dir)) != NULL;) {
        mc_shm_name_info info;
        if (mc_shm_name_parse(e->d_name, &info) && kill(info.pid, 0) != 0 && errno == ESRCH)
            violation(d, "/dev/shm/%s of dead pid %d is left", e->d_name, (int)info.pid);
    }
    if (dir != NULL)
        closedir(dir);
}

static void progress(const driver *d, bool final)
{
    fprintf(stderr,
            "%s%.0f s: %" PRIu64 " started, %" PRIu64 " killed, %" PRIu64 " stopped; %" PRIu64
            " violations%s",
            final ? "" : "\r", (now_ns() - d->begin_ns) / 1e9, d->started, d->killed, d->stopped,
            d->violations, final ? "\n" : "   ");
}

static void remove_configs(const driver *d)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "mc_soak.%d.", (int)getpid());
    DIR *dir = opendir(d->opt.keep_dir);
    for (struct dirent *e; dir != NULL && (e = readdir(dir)) != NULL;) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", d->opt.keep_dir, e->d_name);
            unlink(path);
        }
    }
    if (dir != NULL)
        closedir(dir);
}

/* A context must open before workers are worth starting: tried in a child, so that this
 * process starts no memcast thread before it forks. */
static bool context_opens(driver *d)
{
    char config[256];
    config_path(d, config, sizeof(config), 999998);
    if (write_config(d, config, false) != 0)
        return false;
    pid_t pid = fork();
    if (pid == 0) {
        mc_context *ctx;
        if (mc_context_open(config, &ctx) != 0) {
            fprintf(stderr, "mc_soak: %s\n", mc_last_error());
            _exit(1);
        }
        _exit(mc_context_close(ctx) == 0 ? 0 : 1);
    }
    int status = 0;
    bool ok =
        pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    unlink(config);
    return ok;
}

static int run(driver *d)
{
    d->begin_ns = now_ns();
    int64_t end = d->begin_ns + (int64_t)d->opt.duration_s * 1000000000;
    int64_t next_disturb = d->begin_ns + 2000000000;
    int64_t next_progress = d->begin_ns;
    while (now_ns() < end && d->violations < 1000) {
        refill(d);
        poll_workers(d);
        int64_t t = now_ns();
        if (t >= next_disturb) {
            disturb(d);
            next_disturb =
                t + 1000000 * (int64_t)random_below(&d->random, 2 * d->opt.kill_every_ms);
        }
        if (t >= next_progress && isatty(2)) {
            progress(d, false);
            next_progress = t + 1000000000;
        }
    }
    stop_all(d);
    check_dev_shm(d);
    remove_configs(d);
    progress(d, true);
    printf("duration %d s, processes started %" PRIu64 ", killed (SIGKILL) %" PRIu64
           ", stopped cleanly %" PRIu64 "\n",
           d->opt.duration_s, d->started, d->killed, d->stopped);
    printf("messages published %" PRIu64 ", received %" PRIu64 ", missing in sequences %" PRIu64
           ", torn (slot reused during the callback) %" PRIu64 ", counted as lost %" PRIu64 "\n",
           d->published, d->received, d->gaps, d->torn, d->counted_drops);
    printf("violations: %" PRIu64 "\n", d->violations);
    return d->violations == 0 ? 0 : 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mc_soak [options]\n"
            "  -d, --duration S      how long (60)\n"
            "  -w, --workers N       processes alive at once, 4 to %d (8)\n"
            "  -t, --topics N        topics (3)\n"
            "  -k, --kill-every MS   mean time between a kill or a stop (500)\n"
            "  -m, --max-size BYTES  largest message (1048576)\n"
            "  -p, --transports LIST [framework] plugins, with a registration plugin (shm, udp);\n"
            "                        udp alone carries the data over udp\n"
            "  -s, --seed N          random seed (time)\n"
            "  -h, --help\n"
            "Prints the counts and every broken invariant; exit 0 when none was broken.\n",
            MAX_WORKERS);
}

static int parse(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"duration", 1, 0, 'd'},   {"workers", 1, 0, 'w'},  {"topics", 1, 0, 't'},
        {"kill-every", 1, 0, 'k'}, {"max-size", 1, 0, 'm'}, {"transports", 1, 0, 'p'},
        {"seed", 1, 0, 's'},       {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    *o = (options){60, 3, 8, 500, 1u << 20, (unsigned)time(NULL), "shm, udp", "/tmp"};
    for (int c; (c = getopt_long(argc, argv, "d:w:t:k:m:p:s:h", longs, NULL)) != -1;) {
        switch (c) {
        case 'd':
            o->duration_s = atoi(optarg);
            break;
        case 'w':
            o->workers = atoi(optarg);
            break;
        case 't':
            o->topics = atoi(optarg);
            break;
        case 'k':
            o->kill_every_ms = atoi(optarg);
            break;
        case 'm':
            o->max_size = strtoull(optarg, NULL, 10);
            break;
        case 'p':
            o->transports = optarg;
            break;
        case 's':
            o->seed = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (o->duration_s < 1 || o->workers < STABLE_WORKERS + 2 || o->workers > MAX_WORKERS ||
        o->topics < 1 || o->kill_every_ms < 1 || o->max_size > (64u << 20)) {
        fprintf(stderr, "mc_soak: an option is out of range\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    driver d = {0};
    if (parse(argc, argv, &d.opt) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    d.random = d.opt.seed;
    snprintf(d.domain, sizeof(d.domain), "soak-%d", (int)getpid());
    printf("mc_soak: seed %u, %d workers on %d topics over %s, %d s, domain %s\n", d.opt.seed,
           d.opt.workers, d.opt.topics, d.opt.transports, d.opt.duration_s, d.domain);
    fflush(stdout);
    if (!context_opens(&d)) {
        fprintf(stderr, "mc_soak: no context opens with plugins = %s (MEMCAST_PLUGIN_PATH?)\n",
                d.opt.transports);
        return 2;
    }
    return run(&d);
}
