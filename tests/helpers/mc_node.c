/*
 * mc_node: one publisher or subscriber in its own process, for multi-process tests and
 * measurements. It reports what happens as lines on stdout (flushed at once), each
 * stamped with CLOCK_MONOTONIC nanoseconds, which every process on a host shares:
 *
 *   start NS                     before the context opens
 *   open NS                      the context is open and the endpoint exists
 *   matched NS TRANSPORT COUNT   a peer matched
 *   unmatched NS COUNT           a peer went away
 *   first NS SEQ                 (sub) the first message arrived
 *   sent NS COUNT                (pub) all --count messages were published
 *   received NS COUNT            (sub) --count messages arrived
 *   counted NS LOST              (sub) on exit: losses the framework counted (lost, overrun)
 *   done RECEIVED LOST CORRUPT   on exit
 *
 * It exits when its job is done and --exit is given, or when stdin reaches end of file
 * (so a test controls its lifetime through a pipe, and a clean close says goodbye).
 *
 *   mc_node [-c FILE] pub|sub TOPIC [--count N] [--size BYTES] [--wait-matched N] [--exit]
 *           [--topics N] [--type NAME]
 *
 * --topics N creates N extra endpoints of the same kind on TOPIC/0 .. TOPIC/N-1 (only the
 * main endpoint publishes or counts messages; the others exist to be discovered).
 * --type NAME gives the main endpoint a data type (endpoints of different types do not match).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <memcast/memcast.h>

typedef struct node {
    bool publisher;
    const char *topic;
    const char *config;
    const char *type;
    unsigned long long count;
    size_t size;
    unsigned wait_matched;
    bool exit_when_done;
    unsigned extra_topics;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned long long received;
    unsigned long long corrupt;
    unsigned long long last_seq;
    unsigned long long lost;
} node;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out);
    vprintf(fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&out);
    va_end(ap);
}

/* Byte i of message seq: any mix-up of messages or offsets shows. */
static unsigned char pattern(unsigned long long seq, size_t i)
{
    return (unsigned char)(seq * 151u + i * 13u + (i >> 10));
}

static void on_event(void *user, const mc_event *ev)
{
    if (ev->kind == MC_EVENT_MATCHED)
        say("matched %lld %s %zu\n", now_ns(), ev->transport, ev->matched);
    else
        say("unmatched %lld %zu\n", now_ns(), ev->matched);
}

static void on_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    node *n = user;
    const unsigned char *p = mc_msg_data(msg);
    bool ok = true;
    for (size_t i = 0; i < mc_msg_size(msg) && ok; i++)
        ok = p[i] == pattern(mc_msg_seq(msg), i);
    pthread_mutex_lock(&n->lock);
    if (n->received == 0)
        say("first %lld %llu\n", now_ns(), (unsigned long long)mc_msg_seq(msg));
    if (n->last_seq != 0 && mc_msg_seq(msg) > n->last_seq + 1)
        n->lost += mc_msg_seq(msg) - n->last_seq - 1;
    n->last_seq = mc_msg_seq(msg);
    n->received++;
    n->corrupt += !ok;
    if (n->count != 0 && n->received == n->count)
        say("received %lld %llu\n", now_ns(), n->received);
    pthread_cond_broadcast(&n->changed);
    pthread_mutex_unlock(&n->lock);
}

static int publish_all(node *n, mc_publisher *pub)
{
    if (n->wait_matched > 0 && mc_publisher_wait_matched(pub, n->wait_matched, 30000) != 0) {
        fprintf(stderr, "mc_node: %s\n", mc_last_error());
        return 1;
    }
    unsigned char *buf = malloc(n->size ? n->size : 1);
    for (unsigned long long seq = 1; seq <= n->count; seq++) {
        for (size_t i = 0; i < n->size; i++)
            buf[i] = pattern(seq, i);
        int rc = mc_publish(pub, buf, n->size);
        if (rc != 0) {
            fprintf(stderr, "mc_node: publish %llu: %s\n", seq, mc_last_error());
            free(buf);
            return 1;
        }
    }
    free(buf);
    say("sent %lld %llu\n", now_ns(), n->count);
    return 0;
}

static bool subscriber_done(node *n)
{
    pthread_mutex_lock(&n->lock);
    bool done = n->count != 0 && n->received >= n->count;
    pthread_mutex_unlock(&n->lock);
    return done;
}

/* Waits until stdin closes, or (with --exit) the job is done. */
static void wait_for_end(node *n)
{
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    char buf[256];
    for (;;) {
        if (n->exit_when_done && (n->publisher || subscriber_done(n)))
            return;
        int r = poll(&pfd, 1, 20);
        if (r > 0 && read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
            return;
    }
}

static int parse(int argc, char **argv, node *n)
{
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "-c") == 0) {
        n->config = argv[i + 1];
        i += 2;
    }
    if (i + 1 >= argc)
        return -1;
    n->publisher = strcmp(argv[i], "pub") == 0;
    if (!n->publisher && strcmp(argv[i], "sub") != 0)
        return -1;
    n->topic = argv[i + 1];
    for (i += 2; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--count") == 0 && has_value)
            n->count = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0 && has_value)
            n->size = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--wait-matched") == 0 && has_value)
            n->wait_matched = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--topics") == 0 && has_value)
            n->extra_topics = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--type") == 0 && has_value)
            n->type = argv[++i];
        else if (strcmp(argv[i], "--exit") == 0)
            n->exit_when_done = true;
        else
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    node n = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
    if (parse(argc, argv, &n) != 0) {
        fprintf(stderr, "usage: mc_node [-c FILE] pub|sub TOPIC [--count N] [--size BYTES] "
                        "[--wait-matched N] [--exit] [--topics N] [--type NAME]\n");
        return 2;
    }
    say("start %lld\n", now_ns());
    mc_context *ctx = NULL;
    if (mc_context_open(n.config, &ctx) != 0) {
        fprintf(stderr, "mc_node: %s\n", mc_last_error());
        return 1;
    }
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    int rc;
    if (n.publisher) {
        mc_pub_options o;
        mc_pub_options_init(&o);
        o.on_event = on_event;
        o.type = n.type;
        rc = mc_publisher_create(ctx, n.topic, &o, &pub);
    } else {
        mc_sub_options o;
        mc_sub_options_init(&o);
        o.on_event = on_event;
        o.on_message = on_message;
        o.user = &n;
        o.type = n.type;
        rc = mc_subscriber_create(ctx, n.topic, &o, &sub);
    }
    if (rc != 0) {
        fprintf(stderr, "mc_node: %s\n", mc_last_error());
        mc_context_close(ctx);
        return 1;
    }
    void **extra = calloc(n.extra_topics ? n.extra_topics : 1, sizeof(void *));
    for (unsigned i = 0; i < n.extra_topics && rc == 0; i++) {
        char topic[MC_TOPIC_MAX + 1];
        snprintf(topic, sizeof(topic), "%s/%u", n.topic, i);
        mc_pub_options po;
        mc_pub_options_init(&po);
        po.on_event = on_event;
        mc_sub_options so;
        mc_sub_options_init(&so);
        so.on_event = on_event;
        rc = n.publisher ? mc_publisher_create(ctx, topic, &po, (mc_publisher **)&extra[i])
                         : mc_subscriber_create(ctx, topic, &so, (mc_subscriber **)&extra[i]);
    }
    if (rc != 0) {
        fprintf(stderr, "mc_node: %s\n", mc_last_error());
        mc_context_close(ctx);
        return 1;
    }
    say("open %lld\n", now_ns());
    int status = (n.publisher && n.count > 0) ? publish_all(&n, pub) : 0;
    wait_for_end(&n);
    if (sub != NULL) {
        mc_stats st;
        mc_stats_init(&st);
        if (mc_subscriber_stats(sub, &st) == 0)
            say("counted %lld %llu\n", now_ns(),
                (unsigned long long)(st.dropped[MC_DROP_LOST] + st.dropped[MC_DROP_OVERRUN]));
    }
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
    mc_context_close(ctx); /* also closes the extra endpoints */
    free(extra);
    say("done %llu %llu %llu\n", n.received, n.lost, n.corrupt);
    return status != 0 ? status : (n.corrupt != 0 ? 3 : 0);
}
