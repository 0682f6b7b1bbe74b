/*
 * The main job: one publisher and one subscriber over memcast's default transport, with
 * figures. For each message size it measures latency (one message in flight at a time,
 * one-way = publish to callback) and throughput (a burst, with losses counted), and checks
 * every byte of every payload. Uses only the public API and links the shared libmemcast.
 *
 *   demo [--count N] [--config FILE]
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memcast/memcast.h>

typedef struct receiver {
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    uint64_t count;
    uint64_t corrupt;
    int64_t last_latency_ns;
} receiver;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Every byte depends on the sequence number, so a stale or mixed-up payload shows. */
static void fill(unsigned char *buf, size_t size, uint64_t seq)
{
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)(seq + i * 31u);
}

static bool intact(const unsigned char *buf, size_t size, uint64_t seq)
{
    for (size_t i = 0; i < size; i++)
        if (buf[i] != (unsigned char)(seq + i * 31u))
            return false;
    return true;
}

static void on_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    receiver *r = user;
    int64_t latency = now_ns() - mc_msg_send_time_ns(msg);
    bool ok = intact(mc_msg_data(msg), mc_msg_size(msg), mc_msg_seq(msg));
    pthread_mutex_lock(&r->lock);
    r->count++;
    r->corrupt += !ok;
    r->last_latency_ns = latency;
    pthread_cond_signal(&r->arrived);
    pthread_mutex_unlock(&r->lock);
}

/* Waits until r has count messages; false after timeout_ms. */
static bool wait_for(receiver *r, uint64_t count, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->lock);
    int rc = 0;
    while (r->count < count && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&r->arrived, &r->lock, &deadline);
    bool ok = r->count >= count;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct figures {
    double p50_us, p99_us, max_us;
    double msgs_per_s, mb_per_s;
    uint64_t lost, corrupt;
} figures;

static int publish_one(mc_publisher *pub, size_t size, uint64_t seq)
{
    void *buf = NULL;
    int rc = mc_loan(pub, size, &buf);
    if (rc != 0)
        return rc;
    fill(buf, size, seq);
    return mc_commit(pub, buf, size);
}

static int measure_latency(mc_publisher *pub, receiver *r, size_t size, int samples, uint64_t *seq,
                           figures *f)
{
    int64_t *lat = calloc((size_t)samples, sizeof(*lat));
    if (lat == NULL)
        return MC_ENOMEM;
    for (int i = 0; i < samples; i++) {
        int rc = publish_one(pub, size, ++*seq);
        if (rc != 0 || !wait_for(r, *seq, 30000)) {
            free(lat);
            return rc ? rc : MC_ETIMEDOUT;
        }
        lat[i] = r->last_latency_ns;
    }
    qsort(lat, (size_t)samples, sizeof(*lat), compare_i64);
    f->p50_us = lat[samples / 2] / 1e3;
    f->p99_us = lat[samples * 99 / 100] / 1e3;
    f->max_us = lat[samples - 1] / 1e3;
    free(lat);
    return 0;
}

static int measure_throughput(mc_publisher *pub, mc_subscriber *sub, receiver *r, size_t size,
                              uint64_t count, uint64_t *seq, figures *f)
{
    mc_stats before, after;
    mc_stats_init(&before);
    mc_stats_init(&after);
    mc_subscriber_stats(sub, &before);
    uint64_t start_count = r->count;
    int64_t start = now_ns();
    for (uint64_t i = 0; i < count; i++) {
        int rc = publish_one(pub, size, ++*seq);
        if (rc != 0)
            return rc;
    }
    /* Everything published either arrives or is counted as dropped. */
    uint64_t dropped = 0;
    for (int waited_ms = 0; waited_ms < 30000; waited_ms += 100) {
        mc_subscriber_stats(sub, &after);
        dropped = after.dropped[MC_DROP_OVERRUN] - before.dropped[MC_DROP_OVERRUN];
        if (wait_for(r, start_count + count - dropped, 100))
            break;
    }
    double seconds = (now_ns() - start) / 1e9;
    uint64_t got = r->count - start_count;
    f->msgs_per_s = got / seconds;
    f->mb_per_s = got * (double)size / seconds / 1e6;
    f->lost = count - got;
    f->corrupt = r->corrupt;
    return 0;
}

static int run_size(mc_context *ctx, size_t size, uint64_t count, figures *f)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "demo/size%zu", size);
    receiver r = {.lock = PTHREAD_MUTEX_INITIALIZER, .arrived = PTHREAD_COND_INITIALIZER};
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.on_message = on_message;
    so.user = &r;
    mc_subscriber *sub = NULL;
    mc_publisher *pub = NULL;
    int rc = mc_subscriber_create(ctx, topic, &so, &sub);
    if (rc == 0)
        rc = mc_publisher_create(ctx, topic, NULL, &pub);
    if (rc == 0)
        rc = mc_publisher_wait_matched(pub, 1, 5000);
    uint64_t seq = 0;
    int samples = size >= (1 << 20) ? 200 : 2000;
    if (rc == 0)
        rc = measure_latency(pub, &r, size, samples, &seq, f);
    if (rc == 0)
        rc = measure_throughput(pub, sub, &r, size, count, &seq, f);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: demo [--count N] [--config FILE]\n"
                 "  One publisher and one subscriber on the default transport; prints latency\n"
                 "  (one message at a time) and throughput (a burst of N, default 100000,\n"
                 "  fewer for large sizes) per message size, with losses and corrupt payloads.\n");
}

int main(int argc, char **argv)
{
    uint64_t count = 100000;
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    mc_context *ctx = NULL;
    int rc = mc_context_open(config, &ctx);
    if (rc != 0) {
        fprintf(stderr, "demo: %s: %s\n", mc_strerror(rc), mc_last_error());
        return 1;
    }
    printf("memcast %s: one publisher, one subscriber, default transport (inproc, same "
           "process)\n",
           mc_version());
    printf("%10s %10s %10s %10s %12s %10s %8s %8s\n", "size", "p50 us", "p99 us", "max us",
           "msgs/s", "MB/s", "lost", "corrupt");
    static const size_t sizes[] = {64, 4096, 65536, 1 << 20};
    int failed = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t n = count;
        if (n * sizes[i] > (uint64_t)2 << 30)
            n = ((uint64_t)2 << 30) / sizes[i];
        figures f = {0};
        rc = run_size(ctx, sizes[i], n, &f);
        if (rc != 0) {
            fprintf(stderr, "demo: %zu bytes: %s: %s\n", sizes[i], mc_strerror(rc),
                    mc_last_error());
            failed = 1;
            continue;
        }
        printf("%10zu %10.1f %10.1f %10.1f %12.0f %10.1f %8llu %8llu\n", sizes[i], f.p50_us,
               f.p99_us, f.max_us, f.msgs_per_s, f.mb_per_s, (unsigned long long)f.lost,
               (unsigned long long)f.corrupt);
        failed |= f.corrupt != 0;
    }
    mc_context_close(ctx);
    return failed;
}
