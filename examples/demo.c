/*
 * The main job: a publisher process and a subscriber process over memcast's default
 * transports (they find each other through udp registration on loopback and exchange data
 * through shared memory), with figures. Uses only the public API and links libmemcast.
 *
 * The subscriber is a child process. For each message size:
 *  - latency: a ping-pong, one message in flight; the subscriber checks every byte and
 *    answers on a second topic; one-way latency is half the round trip;
 *  - throughput: a burst; the subscriber checks every byte and counts what arrived, and
 *    the framework counts what was overwritten before it could be read (the default is
 *    best effort: a publisher never waits for a slow subscriber).
 * The subscriber's counts come back over a pipe (a control channel, as iperf has one).
 *
 *   demo [--count N] [--config FILE] [--reliable]
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

#define WAIT_MS 30000

static const size_t sizes[] = {64, 4096, 65536, 1 << 20};
#define SIZE_COUNT (sizeof(sizes) / sizeof(sizes[0]))

/* What the subscriber reports after each burst. */
typedef struct burst_report {
    uint64_t received;
    uint64_t corrupt;
    uint64_t overrun; /* counted by the framework: overwritten before it could be read */
    int64_t last_ns;  /* CLOCK_MONOTONIC of the last arrival; every process shares it */
    char transport[32];
} burst_report;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Every byte depends on the sequence number, so a stale or mixed-up payload shows: byte i
 * is seq + 31 i (mod 256). That repeats every 256 bytes, so both sides copy and compare a
 * block at a time: a byte-at-a-time check of 1 MiB took longer than memcast took to
 * deliver it, and the figures measured the demo. */
#define BLOCK 256

static size_t make_block(unsigned char *block, size_t size, uint64_t seq)
{
    size_t n = size < BLOCK ? size : BLOCK;
    for (size_t i = 0; i < n; i++)
        block[i] = (unsigned char)(seq + i * 31u);
    return n;
}

static void fill(unsigned char *buf, size_t size, uint64_t seq)
{
    unsigned char block[BLOCK];
    size_t n = make_block(block, size, seq);
    for (size_t done = 0; done < size; done += n)
        memcpy(buf + done, block, size - done < n ? size - done : n);
}

static bool intact(const unsigned char *buf, size_t size, uint64_t seq)
{
    unsigned char block[BLOCK];
    size_t n = make_block(block, size, seq);
    for (size_t done = 0; done < size; done += n)
        if (memcmp(buf + done, block, size - done < n ? size - done : n) != 0)
            return false;
    return true;
}

static bool write_all(int fd, const void *buf, size_t size)
{
    return write(fd, buf, size) == (ssize_t)size;
}

/* Reads size bytes within timeout_ms; false on timeout, end of file or error. */
static bool read_all(int fd, void *buf, size_t size, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t got = 0;
    while (got < size) {
        if (poll(&p, 1, timeout_ms) <= 0)
            return false;
        ssize_t n = read(fd, (char *)buf + got, size - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* ---- the subscriber process -------------------------------------------------------------- */

typedef struct echo {
    mc_publisher *ack;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    burst_report rep;
} echo;

static void on_data(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    (void)sub;
    echo *e = user;
    uint64_t seq = mc_msg_seq(msg);
    bool ok = intact(mc_msg_data(msg), mc_msg_size(msg), seq);
    pthread_mutex_lock(&e->lock);
    e->rep.received++;
    e->rep.corrupt += !ok;
    e->rep.last_ns = mono_ns();
    snprintf(e->rep.transport, sizeof(e->rep.transport), "%s", mc_msg_transport(msg));
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->lock);
    mc_publish(e->ack, &seq, sizeof(seq)); /* the pong: which message arrived */
}

/* Waits until everything of the burst arrived or was counted as overwritten. */
static void wait_burst(echo *e, mc_subscriber *sub, uint64_t expected)
{
    int64_t deadline = mono_ns() + (int64_t)WAIT_MS * 1000000;
    for (;;) {
        mc_stats st;
        mc_stats_init(&st);
        mc_subscriber_stats(sub, &st);
        pthread_mutex_lock(&e->lock);
        e->rep.overrun = st.dropped[MC_DROP_OVERRUN];
        bool done = e->rep.received + e->rep.overrun >= expected || mono_ns() > deadline;
        if (!done) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_nsec += 10000000; /* stats have no event: look again in 10 ms */
            if (t.tv_nsec >= 1000000000) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&e->changed, &e->lock, &t);
        }
        pthread_mutex_unlock(&e->lock);
        if (done)
            return;
    }
}

static int subscriber_main(const char *config, const char *data_topic, const char *ack_topic,
                           int from_parent, int to_parent)
{
    mc_context *ctx = NULL;
    echo e = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = on_data;
    o.user = &e;
    mc_subscriber *sub = NULL;
    if (mc_context_open(config, &ctx) != 0 ||
        mc_publisher_create(ctx, ack_topic, NULL, &e.ack) != 0 ||
        mc_subscriber_create(ctx, data_topic, &o, &sub) != 0) {
        fprintf(stderr, "demo subscriber: %s\n", mc_last_error());
        mc_context_close(ctx); /* frees what was created (NULL is ignored) */
        return 1;
    }
    uint64_t expected;
    while (read_all(from_parent, &expected, sizeof(expected), -1)) {
        wait_burst(&e, sub, expected);
        pthread_mutex_lock(&e.lock);
        burst_report rep = e.rep;
        pthread_mutex_unlock(&e.lock);
        if (!write_all(to_parent, &rep, sizeof(rep)))
            break;
    }
    mc_subscriber_destroy(sub);
    mc_context_close(ctx);
    return 0;
}

/* ---- the publisher process --------------------------------------------------------------- */

typedef struct pong {
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    uint64_t last_seq;
} pong;

static void on_ack(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    (void)sub;
    pong *p = user;
    uint64_t seq = 0;
    if (mc_msg_size(msg) == sizeof(seq))
        memcpy(&seq, mc_msg_data(msg), sizeof(seq));
    pthread_mutex_lock(&p->lock);
    if (seq > p->last_seq)
        p->last_seq = seq;
    pthread_cond_broadcast(&p->arrived);
    pthread_mutex_unlock(&p->lock);
}

static bool wait_pong(pong *p, uint64_t seq)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    while (p->last_seq < seq && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&p->arrived, &p->lock, &deadline);
    bool ok = p->last_seq >= seq;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static int publish_one(mc_publisher *pub, size_t size, uint64_t seq)
{
    void *buf = NULL;
    int rc = mc_loan(pub, size, &buf); /* written straight into the transport's memory */
    if (rc != 0)
        return rc;
    fill(buf, size, seq);
    return mc_commit(pub, buf, size);
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct figures {
    double p50_us, p99_us, max_us;
    double msgs_per_s, mb_per_s;
    uint64_t received, overrun, corrupt;
    char transport[32];
} figures;

typedef struct channel {
    mc_publisher *data;
    pong pong;
    uint64_t seq;
    int to_child, from_child;
    burst_report last; /* the subscriber's counts after the previous burst */
} channel;

static int measure_latency(channel *l, size_t size, int samples, figures *f)
{
    int64_t *rtt = calloc((size_t)samples, sizeof(*rtt));
    if (rtt == NULL)
        return MC_ENOMEM;
    for (int i = 0; i < samples; i++) {
        int64_t start = mono_ns();
        int rc = publish_one(l->data, size, ++l->seq);
        if (rc != 0 || !wait_pong(&l->pong, l->seq)) {
            free(rtt);
            return rc ? rc : MC_ETIMEDOUT;
        }
        rtt[i] = mono_ns() - start;
    }
    qsort(rtt, (size_t)samples, sizeof(*rtt), compare_i64);
    f->p50_us = rtt[samples / 2] / 2e3;
    f->p99_us = rtt[samples * 99 / 100] / 2e3;
    f->max_us = rtt[samples - 1] / 2e3;
    free(rtt);
    return 0;
}

/* Asks the subscriber for its counts once it has seen `total` messages in all. */
static bool subscriber_counts(channel *l, uint64_t total, burst_report *rep)
{
    return write_all(l->to_child, &total, sizeof(total)) &&
           read_all(l->from_child, rep, sizeof(*rep), WAIT_MS + 5000);
}

static int measure_throughput(channel *l, size_t size, uint64_t count, figures *f)
{
    int64_t start = mono_ns();
    for (uint64_t i = 0; i < count; i++) {
        int rc = publish_one(l->data, size, ++l->seq);
        if (rc != 0)
            return rc;
    }
    burst_report rep;
    if (!subscriber_counts(l, l->seq, &rep))
        return MC_ETIMEDOUT;
    uint64_t got = rep.received - l->last.received;
    double seconds = got > 0 ? (rep.last_ns - start) / 1e9 : 0;
    f->received = got;
    f->overrun = rep.overrun - l->last.overrun;
    f->corrupt = rep.corrupt - l->last.corrupt;
    f->msgs_per_s = seconds > 0 ? got / seconds : 0;
    f->mb_per_s = seconds > 0 ? got * (double)size / seconds / 1e6 : 0;
    snprintf(f->transport, sizeof(f->transport), "%s", rep.transport);
    l->last = rep;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: demo [--count N] [--config FILE] [--reliable]\n"
            "  A publisher process and a subscriber process on the default transports; prints\n"
            "  latency (ping-pong, one-way = round trip / 2) and throughput (a burst of N,\n"
            "  default 100000, fewer for large sizes) per message size, with what was\n"
            "  overwritten before it could be read and corrupt payloads (every byte checked).\n"
            "  --reliable sets [shm] ack_timeout = 1s: nothing is overwritten unread.\n");
}

static int publisher_main(const char *config, const char *data_topic, const char *ack_topic,
                          channel *l, uint64_t count)
{
    mc_context *ctx = NULL;
    mc_subscriber *acks = NULL;
    int rc = mc_context_open(config, &ctx);
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = on_ack;
    o.user = &l->pong;
    if (rc == 0)
        rc = mc_subscriber_create(ctx, ack_topic, &o, &acks);
    if (rc == 0)
        rc = mc_publisher_create(ctx, data_topic, NULL, &l->data);
    if (rc == 0)
        rc = mc_publisher_wait_matched(l->data, 1, 10000);
    if (rc == 0)
        rc = mc_subscriber_wait_matched(acks, 1, 10000);
    if (rc != 0) {
        fprintf(stderr, "demo: %s: %s\n", mc_strerror(rc), mc_last_error());
        mc_context_close(ctx);
        return 1;
    }
    printf("%10s %10s %10s %10s %12s %10s %9s %8s %8s  %s\n", "size", "p50 us", "p99 us", "max us",
           "msgs/s", "MB/s", "received", "overrun", "corrupt", "via");
    int failed = 0;
    for (size_t i = 0; i < SIZE_COUNT && !failed; i++) {
        uint64_t n =
            count * sizes[i] > ((uint64_t)2 << 30) ? ((uint64_t)2 << 30) / sizes[i] : count;
        figures f = {0};
        rc = measure_latency(l, sizes[i], sizes[i] >= (1u << 20) ? 200 : 2000, &f);
        burst_report settle;
        if (rc == 0 && subscriber_counts(l, l->seq, &settle))
            l->last = settle;
        if (rc == 0)
            rc = measure_throughput(l, sizes[i], n, &f);
        if (rc != 0) {
            fprintf(stderr, "demo: %zu bytes: %s: %s\n", sizes[i], mc_strerror(rc),
                    mc_last_error());
            failed = 1;
            break;
        }
        printf("%10zu %10.1f %10.1f %10.1f %12.0f %10.1f %9llu %8llu %8llu  %s\n", sizes[i],
               f.p50_us, f.p99_us, f.max_us, f.msgs_per_s, f.mb_per_s,
               (unsigned long long)f.received, (unsigned long long)f.overrun,
               (unsigned long long)f.corrupt, f.transport);
        fflush(stdout);
        failed |= f.corrupt != 0;
    }
    mc_subscriber_destroy(acks);
    mc_context_close(ctx);
    return failed;
}

int main(int argc, char **argv)
{
    uint64_t count = 100000;
    const char *config = NULL;
    bool reliable = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--reliable") == 0) {
            reliable = true;
        } else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    /* An environment override, so that it holds with or without a file; both processes
     * inherit it. A reliable shm publisher waits (at most 1 s) for a slow subscriber. */
    if (reliable)
        setenv("MEMCAST_SHM_ACK_TIMEOUT", "1s", 1);
    char data_topic[64], ack_topic[64];
    snprintf(data_topic, sizeof(data_topic), "demo/%d/data", (int)getpid());
    snprintf(ack_topic, sizeof(ack_topic), "demo/%d/ack", (int)getpid());
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) {
        perror("demo: pipe");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork(); /* before any context: no memcast thread exists yet */
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        _exit(subscriber_main(config, data_topic, ack_topic, down[0], up[1]));
    }
    close(down[0]);
    close(up[1]);
    if (child < 0) {
        perror("demo: fork");
        return 1;
    }
    printf("memcast %s: publisher pid %d, subscriber pid %d, default transports (shm for "
           "data, udp to meet), %s\n",
           mc_version(), (int)getpid(), (int)child,
           reliable ? "reliable: the publisher waits for the subscriber"
                    : "best effort: a subscriber that falls behind loses the oldest");
    channel l = {.pong = {.lock = PTHREAD_MUTEX_INITIALIZER, .arrived = PTHREAD_COND_INITIALIZER},
                 .to_child = down[1],
                 .from_child = up[0]};
    int failed = publisher_main(config, data_topic, ack_topic, &l, count);
    close(down[1]); /* the subscriber's end of file: it closes and exits */
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        failed = 1;
    close(up[0]);
    return failed;
}
