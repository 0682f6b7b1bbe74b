/*
 * The shm transport through the real framework: contexts in this process (and forked
 * ones) whose publishers and subscribers meet over shared memory. Until a registration
 * transport introduces contexts to each other, the test does it by hand: it reads a
 * context's registrations (mc_host_local_endpoints) and reports them to the other
 * (mc_host_remote), as the udp plugin will.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <memcast/memcast.h>

#include "../../plugins/shm/layout.h"
#include "../../plugins/shm/ring.h"
#include "../../plugins/shm/segment.h"
#include "../../plugins/shm/shm.h"
#include "context.h"

#define WAIT_SECONDS 30

static char config_dir[64];

/* ---- contexts --------------------------------------------------------------------------- */

/* A context whose only transport is shm (built in the tree), with extra [shm] lines. */
static mc_context *open_ctx_level(const char *shm_lines, const char *level)
{
    static int counter;
    char path[128];
    snprintf(path, sizeof(path), "%s/ctx%d.ini", config_dir, ++counter);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const char *builddir = getenv("MC_BUILDDIR");
    fprintf(f, "[framework]\nplugins = shm\nlog_level = %s\n[shm]\npath = %s/plugins/shm\n%s\n",
            level, builddir ? builddir : ".", shm_lines ? shm_lines : "");
    fclose(f);
    mc_context *ctx = NULL;
    int rc = mc_context_open(path, &ctx);
    if (rc != 0)
        fail_msg("mc_context_open: %s: %s", mc_strerror(rc), mc_last_error());
    return ctx;
}

static mc_context *open_ctx(const char *shm_lines)
{
    return open_ctx_level(shm_lines, "warn");
}

static mc_transport *shm_transport(mc_context *ctx)
{
    for (size_t i = 0; i < ctx->transport_count; i++)
        if (strcmp(ctx->transports[i]->desc->name, "shm") == 0)
            return ctx->transports[i];
    fail_msg("no shm transport in the context");
    return NULL;
}

/* ---- registration by hand ------------------------------------------------------------- */

/* A registration as plain data: it crosses a pipe to a forked process as it is. */
typedef struct wire_reg {
    mc_registration reg;
    mc_locator locators[MC_LOCATORS_MAX];
    char topic[MC_TOPIC_MAX + 1];
} wire_reg;

typedef struct capture {
    wire_reg regs[32];
    size_t count;
} capture;

static void capture_reg(void *user, const mc_registration *reg)
{
    capture *c = user;
    if (c->count == 32)
        return;
    wire_reg *w = &c->regs[c->count++];
    memset(w, 0, sizeof(*w));
    w->reg = *reg;
    memcpy(w->locators, reg->locators, reg->locator_count * sizeof(mc_locator));
    snprintf(w->topic, sizeof(w->topic), "%s", reg->topic);
}

static void wire_fix(wire_reg *w)
{
    w->reg.topic = w->topic;
    w->reg.type = "";
    w->reg.encoding = "";
    w->reg.locators = w->locators;
}

static void capture_all(mc_context *ctx, capture *c)
{
    c->count = 0;
    mc_host_local_endpoints((mc_host_ctx *)shm_transport(ctx), capture_reg, c);
}

static void report_to(mc_context *to, wire_reg *w, bool alive)
{
    wire_fix(w);
    mc_host_remote((mc_host_ctx *)shm_transport(to), &w->reg, alive);
}

/* Tells `to` about every endpoint of `from`. */
static void introduce(mc_context *from, mc_context *to)
{
    capture *c = malloc(sizeof(*c));
    capture_all(from, c);
    for (size_t i = 0; i < c->count; i++)
        report_to(to, &c->regs[i], true);
    free(c);
}

static void introduce_both(mc_context *a, mc_context *b)
{
    introduce(a, b);
    introduce(b, a);
}

/* The shm locator of the only endpoint of ctx (a segment or doorbell name). */
static void shm_name_of(mc_context *ctx, char *name, size_t size)
{
    capture *c = malloc(sizeof(*c));
    capture_all(ctx, c);
    assert_true(c->count >= 1);
    mc_locator *loc = &c->regs[0].locators[0];
    assert_string_equal(loc->transport, "shm");
    assert_true(loc->size > 0 && loc->size < size);
    memcpy(name, loc->data, loc->size);
    name[loc->size] = '\0';
    free(c);
}

static bool shm_file_exists(const char *name)
{
    char path[400];
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    return access(path, F_OK) == 0;
}

/* ---- payloads: pseudo-random bytes and their checksum ------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static void fill(unsigned char *buf, size_t size, uint64_t seq)
{
    uint64_t state = mix(seq + 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < size; i += 8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t n = size - i < 8 ? size - i : 8;
        memcpy(buf + i, &state, n);
    }
}

static uint64_t checksum(const unsigned char *p, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull ^ size;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t word;
        memcpy(&word, p + i, 8);
        h = (h ^ word) * 0x100000001b3ull;
    }
    for (; i < size; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* What a message with this seq and size must hold. */
static uint64_t expected_checksum(uint64_t seq, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    fill(buf, size, seq);
    uint64_t h = checksum(buf, size);
    free(buf);
    return h;
}

/* ---- a subscriber's view, waited on with deadlines -------------------------------------- */

#define KEEP 64

typedef struct collector {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t count;
    size_t bad;          /* checksum or size mismatches */
    size_t out_of_order; /* seq not above the previous one */
    uint64_t last_seq;
    uint64_t seqs[KEEP];
    size_t sizes[KEEP];
    bool gate_closed; /* callbacks wait at the gate while closed */
    size_t entered;
    unsigned spin;         /* busy work per message: a slow subscriber */
    uint64_t work;         /* its result, kept so that it is not optimised away */
    const size_t *size_of; /* expected size by seq, or NULL: any */
    size_t size_of_count;
    const void *last_data;
    char transport[16];
} collector;

static void collector_init(collector *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
}

static void collector_fini(collector *c)
{
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
}

static void collect(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    collector *c = user;
    const unsigned char *data = mc_msg_data(msg);
    size_t size = mc_msg_size(msg);
    uint64_t seq = mc_msg_seq(msg);
    bool ok = checksum(data, size) == expected_checksum(seq, size);
    pthread_mutex_lock(&c->lock);
    unsigned spin = c->spin;
    pthread_mutex_unlock(&c->lock);
    uint64_t work = 0;
    for (unsigned i = 0; i < spin; i++)
        work += mix(i);
    pthread_mutex_lock(&c->lock);
    c->work += work;
    c->entered++;
    pthread_cond_broadcast(&c->changed);
    while (c->gate_closed)
        pthread_cond_wait(&c->changed, &c->lock);
    if (c->size_of != NULL && (seq == 0 || seq > c->size_of_count || c->size_of[seq - 1] != size))
        ok = false;
    c->bad += ok ? 0 : 1;
    c->out_of_order += seq <= c->last_seq ? 1 : 0;
    c->last_seq = seq;
    if (c->count < KEEP) {
        c->seqs[c->count] = seq;
        c->sizes[c->count] = size;
    }
    c->last_data = data;
    snprintf(c->transport, sizeof(c->transport), "%s", mc_msg_transport(msg));
    c->count++;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

static void logs_dump(void);

static struct timespec deadline_in(int seconds)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += seconds;
    return t;
}

/* Waits until the collector counted n messages (or entered n callbacks). */
static bool wait_count(collector *c, size_t n, bool entered)
{
    struct timespec deadline = deadline_in(WAIT_SECONDS);
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    while ((entered ? c->entered : c->count) < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->changed, &c->lock, &deadline);
    bool ok = (entered ? c->entered : c->count) >= n;
    pthread_mutex_unlock(&c->lock);
    if (!ok) {
        fprintf(stderr, "waited for %zu messages, got %zu\n", n, c->count);
        logs_dump();
    }
    return ok;
}

static void gate(collector *c, bool closed)
{
    pthread_mutex_lock(&c->lock);
    c->gate_closed = closed;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

static mc_subscriber *subscribe(mc_context *ctx, const char *topic, collector *c)
{
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = collect;
    o.user = c;
    mc_subscriber *sub = NULL;
    int rc = mc_subscriber_create(ctx, topic, &o, &sub);
    if (rc != 0)
        fail_msg("mc_subscriber_create: %s", mc_last_error());
    return sub;
}

static mc_publisher *publisher(mc_context *ctx, const char *topic)
{
    mc_publisher *pub = NULL;
    int rc = mc_publisher_create(ctx, topic, NULL, &pub);
    if (rc != 0)
        fail_msg("mc_publisher_create: %s", mc_last_error());
    return pub;
}

/* Publishes message number seq (1, 2, ...) of size bytes. */
static int publish_seq(mc_publisher *pub, uint64_t seq, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    fill(buf, size, seq);
    int rc = mc_publish(pub, buf, size);
    free(buf);
    return rc;
}

static uint64_t overruns(mc_subscriber *sub)
{
    mc_stats st;
    mc_stats_init(&st);
    assert_int_equal(mc_subscriber_stats(sub, &st), 0);
    return st.dropped[MC_DROP_OVERRUN];
}

static uint64_t all_drops(mc_subscriber *sub)
{
    mc_stats st;
    mc_stats_init(&st);
    assert_int_equal(mc_subscriber_stats(sub, &st), 0);
    uint64_t sum = 0;
    for (int i = 0; i < MC_DROP_REASONS; i++)
        sum += st.dropped[i];
    return sum;
}

/* ---- logs ---------------------------------------------------------------------------------- */

typedef struct log_capture {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char lines[256][320];
    size_t count;
} log_capture;

static log_capture logs = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void on_log(void *user, mc_log_level level, const char *origin, const char *message)
{
    pthread_mutex_lock(&logs.lock);
    snprintf(logs.lines[logs.count % 256], sizeof(logs.lines[0]), "%s: %s", origin, message);
    logs.count++;
    pthread_cond_broadcast(&logs.changed);
    pthread_mutex_unlock(&logs.lock);
}

static void logs_clear(void)
{
    pthread_mutex_lock(&logs.lock);
    logs.count = 0;
    pthread_mutex_unlock(&logs.lock);
}

static size_t logs_matching_locked(const char *a, const char *b)
{
    size_t n = 0;
    size_t kept = logs.count < 256 ? logs.count : 256;
    for (size_t i = 0; i < kept; i++)
        if (strstr(logs.lines[i], a) && (b == NULL || strstr(logs.lines[i], b)))
            n++;
    return n;
}

static size_t logs_matching(const char *a, const char *b)
{
    pthread_mutex_lock(&logs.lock);
    size_t n = logs_matching_locked(a, b);
    pthread_mutex_unlock(&logs.lock);
    return n;
}

static void logs_dump(void)
{
    pthread_mutex_lock(&logs.lock);
    for (size_t i = 0; i < logs.count && i < 256; i++)
        fprintf(stderr, "log: %s\n", logs.lines[i]);
    pthread_mutex_unlock(&logs.lock);
}

/* Waits until a log line holds both a and b. */
static bool wait_log(const char *a, const char *b)
{
    struct timespec deadline = deadline_in(WAIT_SECONDS);
    pthread_mutex_lock(&logs.lock);
    int rc = 0;
    while (logs_matching_locked(a, b) == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&logs.changed, &logs.lock, &deadline);
    bool ok = logs_matching_locked(a, b) > 0;
    pthread_mutex_unlock(&logs.lock);
    if (!ok)
        logs_dump();
    return ok;
}

/* ---- tests: delivery ------------------------------------------------------------------------ */

static void close_all(mc_context **ctxs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mc_context_close(ctxs[i]), 0);
}

/* Publishes message number seq from a buffer misaligned by offset bytes. */
static int publish_seq_misaligned(mc_publisher *pub, uint64_t seq, size_t size, size_t offset)
{
    unsigned char *buf = malloc(size + offset + 1);
    fill(buf + offset, size, seq);
    int rc = mc_publish(pub, buf + offset, size);
    free(buf);
    return rc;
}

/* One message of each size, the i-th from a source misaligned by i % misalign bytes (0:
 * aligned), between two contexts with these [shm] lines: all arrive whole, in order, over
 * shm, nothing dropped. */
static void assert_sizes_arrive_intact(const char *cfg, const size_t *sizes, size_t count,
                                       size_t misalign)
{
    mc_context *ctx[2] = {open_ctx(cfg), open_ctx(cfg)};
    collector c;
    collector_init(&c);
    c.size_of = sizes;
    c.size_of_count = count;
    mc_publisher *pub = publisher(ctx[0], "intact");
    mc_subscriber *sub = subscribe(ctx[1], "intact", &c);
    introduce_both(ctx[0], ctx[1]);
    assert_int_equal(mc_publisher_matched(pub), 1);
    assert_int_equal(mc_subscriber_matched(sub), 1);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(publish_seq_misaligned(pub, i + 1, sizes[i], misalign ? i % misalign : 0),
                         0);
    assert_true(wait_count(&c, count, false));
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(all_drops(sub), 0);
    assert_string_equal(c.transport, "shm");
    for (size_t i = 0; i < count && i < KEEP; i++)
        assert_int_equal(c.sizes[i], sizes[i]);
    close_all(ctx, 2);
    collector_fini(&c);
}

static void test_integrity_from_0_bytes_to_64_mib(void **state)
{
    /* reliable, so nothing is overrun; two slots keep the 64 MiB generation small */
    static const size_t sizes[] = {0, 1, 4096, 1 << 20, 64 << 20, 3, 4096};
    assert_sizes_arrive_intact("slots = 2\nreserve_percent = 0\nack_timeout = 30s\n", sizes,
                               sizeof(sizes) / sizeof(sizes[0]), 0);
}

static void test_uncached_copies_keep_every_byte_of_any_length_from_any_address(void **state)
{
    /* the threshold low enough that every size but the first takes the uncached copy:
     * lengths that end inside a 16-byte store and a 64-byte round, sources not 16-aligned */
    static const size_t sizes[] = {99, 100, 101, 127, 128, 129, 200, 4095, 4096 + 17, 65536 + 63};
    assert_sizes_arrive_intact("uncached_copy_min = 100\nack_timeout = 30s\n", sizes,
                               sizeof(sizes) / sizeof(sizes[0]), 9);
}

/* n subscribers, per_context of them sharing a context (and so a doorbell and thread). */
static void fan_out(size_t n, size_t per_context, const char *wake)
{
    char cfg[200];
    snprintf(cfg, sizeof(cfg), "slots = 4\nack_timeout = 30s\n%s", wake);
    mc_context *ctx[9] = {open_ctx(cfg)};
    size_t contexts = 1 + (n + per_context - 1) / per_context;
    collector c[8];
    mc_subscriber *subs[8];
    for (size_t i = 1; i < contexts; i++)
        ctx[i] = open_ctx(cfg);
    mc_publisher *pub = publisher(ctx[0], "fan/out");
    for (size_t i = 0; i < n; i++) {
        collector_init(&c[i]);
        subs[i] = subscribe(ctx[1 + i / per_context], "fan/out", &c[i]);
    }
    for (size_t i = 1; i < contexts; i++)
        introduce_both(ctx[0], ctx[i]);
    assert_int_equal(mc_publisher_matched(pub), n);
    const size_t messages = 300;
    for (size_t s = 1; s <= messages; s++)
        assert_int_equal(publish_seq(pub, s, 1000 + (s % 7) * 100), 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(wait_count(&c[i], messages, false));
        assert_int_equal(c[i].bad, 0);
        assert_int_equal(c[i].out_of_order, 0);
        assert_int_equal(all_drops(subs[i]), 0);
    }
    close_all(ctx, contexts);
    for (size_t i = 0; i < n; i++)
        collector_fini(&c[i]);
}

static void test_one_to_eight_subscribers(void **state)
{
    fan_out(1, 1, "");
    fan_out(8, 2, "");
}

/* The same with every wait thread asleep on its doorbell alone (no futex_waitv): the path
 * of older kernels, where a commit rings each subscribing context's bell. */
static void test_one_to_eight_subscribers_woken_by_doorbells(void **state)
{
    fan_out(1, 1, "segment_wake = false\n");
    fan_out(8, 2, "segment_wake = false\n");
}

/* Base name of a publisher: its locator without "-g0". */
static void base_of(mc_context *ctx, char *base, size_t size)
{
    shm_name_of(ctx, base, size);
    size_t len = strlen(base);
    assert_true(len > 3 && strcmp(base + len - 3, "-g0") == 0);
    base[len - 3] = '\0';
}

static bool generation_exists(const char *base, unsigned gen)
{
    char name[300];
    snprintf(name, sizeof(name), "%s-g%u", base, gen);
    return shm_file_exists(name);
}

static void test_growth_across_generations_loses_nothing(void **state)
{
    /* not reliable: the subscriber is held at the first message while the publisher moves
     * through two generations; each ring holds all it wrote, so nothing may be lost */
    mc_context *ctx[2] = {open_ctx("slots = 16\n"), open_ctx("slots = 16\n")};
    static const size_t sizes[] = {100,  1000, 1000, 1000,    1000, 1000, 200000, 1000, 1000,
                                   1000, 1000, 1000, 2 << 20, 500,  500,  500,    10};
    const size_t count = sizeof(sizes) / sizeof(sizes[0]);
    collector c;
    collector_init(&c);
    c.size_of = sizes;
    c.size_of_count = count;
    mc_publisher *pub = publisher(ctx[0], "grow");
    mc_subscriber *sub = subscribe(ctx[1], "grow", &c);
    introduce_both(ctx[0], ctx[1]);
    char base[MC_LOCATOR_MAX + 1];
    base_of(ctx[0], base, sizeof(base));
    gate(&c, true);
    assert_int_equal(publish_seq(pub, 1, sizes[0]), 0);
    assert_true(wait_count(&c, 1, true));
    for (size_t i = 1; i < count - 1; i++)
        assert_int_equal(publish_seq(pub, i + 1, sizes[i]), 0);
    /* the subscriber still reads generation 0: generation 1 must stay for it */
    assert_true(generation_exists(base, 0) && generation_exists(base, 1) &&
                generation_exists(base, 2));
    gate(&c, false);
    bool got_all = wait_count(&c, count - 1, false);
    for (size_t i = 0; !got_all && i < c.count; i++)
        fprintf(stderr, "got seq %llu size %zu\n", (unsigned long long)c.seqs[i], c.sizes[i]);
    if (!got_all)
        fprintf(stderr, "drops %llu bad %zu\n", (unsigned long long)all_drops(sub), c.bad);
    assert_true(got_all);
    /* under the lock: TSan cannot see the ordering that the shared mapping provides */
    pthread_mutex_lock(&c.lock);
    size_t bad = c.bad, out_of_order = c.out_of_order;
    pthread_mutex_unlock(&c.lock);
    assert_int_equal(bad, 0);
    assert_int_equal(out_of_order, 0);
    assert_int_equal(all_drops(sub), 0);
    /* once it moved on, the next publish removes generation 1 (0 is the anchor) */
    assert_int_equal(publish_seq(pub, count, sizes[count - 1]), 0);
    assert_true(wait_count(&c, count, false));
    assert_false(generation_exists(base, 1));
    assert_true(generation_exists(base, 0) && generation_exists(base, 2));
    close_all(ctx, 2);
    assert_false(generation_exists(base, 0) || generation_exists(base, 2));
    collector_fini(&c);
}

static void test_slow_subscriber_loses_oldest_and_counts_them(void **state)
{
    mc_context *ctx[2] = {open_ctx("slots = 8\n"), open_ctx("slots = 8\n")};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "overrun");
    mc_subscriber *sub = subscribe(ctx[1], "overrun", &c);
    introduce_both(ctx[0], ctx[1]);
    gate(&c, true);
    assert_int_equal(publish_seq(pub, 1, 64), 0);
    assert_true(wait_count(&c, 1, true));
    /* the writer never waits without reliable mode: 29 more go past the blocked reader */
    for (uint64_t s = 2; s <= 30; s++)
        assert_int_equal(publish_seq(pub, s, 64), 0);
    gate(&c, false);
    /* it keeps message 1 (it held it), then finds only the newest 8 */
    assert_true(wait_count(&c, 9, false));
    assert_int_equal(c.seqs[0], 1);
    for (size_t i = 1; i < 9; i++)
        assert_int_equal(c.seqs[i], 22 + i);
    assert_int_equal(overruns(sub), 21);
    assert_int_equal(c.bad, 0);
    close_all(ctx, 2);
    collector_fini(&c);
}

typedef struct publishing {
    mc_publisher *pub;
    uint64_t first;
    uint64_t last;
    size_t size;
    int failures;
} publishing;

static void *publish_thread(void *arg)
{
    publishing *p = arg;
    for (uint64_t s = p->first; s <= p->last; s++)
        if (publish_seq(p->pub, s, p->size) != 0)
            p->failures++;
    return NULL;
}

static void test_reliable_mode_is_lossless_with_a_slow_subscriber(void **state)
{
    const char *cfg = "slots = 4\nack_timeout = 30s\n";
    mc_context *ctx[2] = {open_ctx(cfg), open_ctx(cfg)};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "reliable");
    mc_subscriber *sub = subscribe(ctx[1], "reliable", &c);
    introduce_both(ctx[0], ctx[1]);
    /* a subscriber held still: the publisher (in a thread) waits for it */
    gate(&c, true);
    publishing job = {.pub = pub, .first = 1, .last = 12, .size = 256};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, publish_thread, &job), 0);
    assert_true(wait_count(&c, 1, true));
    gate(&c, false);
    assert_true(wait_count(&c, 12, false));
    pthread_join(t, NULL);
    assert_int_equal(job.failures, 0);
    /* a subscriber slower than the publisher throughout */
    pthread_mutex_lock(&c.lock);
    c.spin = 20000;
    pthread_mutex_unlock(&c.lock);
    for (uint64_t s = 13; s <= 400; s++)
        assert_int_equal(publish_seq(pub, s, 256), 0);
    assert_true(wait_count(&c, 400, false));
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(all_drops(sub), 0);
    close_all(ctx, 2);
    collector_fini(&c);
}

static void test_reliable_mode_drops_a_stuck_subscriber_once(void **state)
{
    const char *cfg = "slots = 4\nack_timeout = 300ms\n";
    mc_context *ctx[3] = {open_ctx(cfg), open_ctx(cfg), open_ctx(cfg)};
    collector stuck, fine;
    collector_init(&stuck);
    collector_init(&fine);
    mc_publisher *pub = publisher(ctx[0], "stuck");
    mc_subscriber *stuck_sub = subscribe(ctx[1], "stuck", &stuck);
    mc_subscriber *fine_sub = subscribe(ctx[2], "stuck", &fine);
    introduce_both(ctx[0], ctx[1]);
    introduce_both(ctx[0], ctx[2]);
    logs_clear();
    gate(&stuck, true);
    assert_int_equal(publish_seq(pub, 1, 128), 0);
    assert_true(wait_count(&stuck, 1, true));
    for (uint64_t s = 2; s <= 40; s++)
        assert_int_equal(publish_seq(pub, s, 128), 0);
    assert_true(wait_count(&fine, 40, false));
    /* one ack_timeout, one warning: later sends did not wait for it again */
    assert_int_equal(logs_matching("ack_timeout", "stuck"), 1);
    assert_int_equal(all_drops(fine_sub), 0);
    assert_int_equal(fine.bad + fine.out_of_order, 0);
    /* released, it keeps the message it held and then the newest 4 */
    gate(&stuck, false);
    assert_true(wait_count(&stuck, 5, false));
    assert_int_equal(overruns(stuck_sub), 35);
    assert_int_equal(stuck.bad, 0);
    close_all(ctx, 3);
    collector_fini(&stuck);
    collector_fini(&fine);
}

static void test_messages_after_the_match_are_not_lost(void **state)
{
    mc_context *ctx[2] = {open_ctx(""), open_ctx("")};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "join");
    subscribe(ctx[1], "join", &c);
    /* the publisher learns of the subscriber first and publishes at once */
    introduce(ctx[1], ctx[0]);
    for (uint64_t s = 1; s <= 3; s++)
        assert_int_equal(publish_seq(pub, s, 32), 0);
    /* the subscriber attaches later and still gets them */
    introduce(ctx[0], ctx[1]);
    assert_true(wait_count(&c, 3, false));
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(c.seqs[i], i + 1);
    close_all(ctx, 2);
    collector_fini(&c);
}

static void test_subscribers_beyond_the_table_are_served_best_effort(void **state)
{
    mc_context *ctx[3] = {open_ctx("max_subscribers = 1\n"), open_ctx(""), open_ctx("")};
    collector c[2];
    collector_init(&c[0]);
    collector_init(&c[1]);
    mc_publisher *pub = publisher(ctx[0], "table");
    subscribe(ctx[1], "table", &c[0]);
    subscribe(ctx[2], "table", &c[1]);
    introduce_both(ctx[0], ctx[1]);
    logs_clear();
    introduce_both(ctx[0], ctx[2]);
    assert_int_equal(mc_publisher_matched(pub), 2);
    assert_int_equal(logs_matching("more than max_subscribers", "best effort"), 1);
    assert_int_equal(publish_seq(pub, 1, 10), 0);
    assert_true(wait_count(&c[0], 1, false));
    assert_true(wait_count(&c[1], 1, false));
    assert_int_equal(c[0].bad + c[1].bad, 0);
    close_all(ctx, 3);
    collector_fini(&c[0]);
    collector_fini(&c[1]);
}

/* ---- tests: zero-copy --------------------------------------------------------------------- */

/* Permissions and file of the mapping holding addr, from /proc/self/maps. */
static bool mapping_of(const void *addr, char perms[8], char *path, size_t path_size)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned long start, end;
        char p[8] = "";
        int pos = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, p, &pos) < 3)
            continue;
        if ((uintptr_t)addr >= start && (uintptr_t)addr < end) {
            memcpy(perms, p, 8);
            snprintf(path, path_size, "%s", line + pos);
            path[strcspn(path, "\n")] = '\0';
            found = true;
        }
    }
    fclose(f);
    return found;
}

static void test_loan_writes_into_shared_memory_and_readers_get_it_in_place(void **state)
{
    mc_context *ctx[2] = {open_ctx(""), open_ctx("")};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "loan");
    subscribe(ctx[1], "loan", &c);
    introduce_both(ctx[0], ctx[1]);
    char base[MC_LOCATOR_MAX + 1];
    base_of(ctx[0], base, sizeof(base));
    char perms[8], path[512];

    /* the loan is the publisher's slot: writable shared memory of its segment */
    void *buf = NULL;
    assert_int_equal(mc_loan(pub, 1000, &buf), 0);
    assert_true(mapping_of(buf, perms, path, sizeof(path)));
    assert_string_equal(perms, "rw-s");
    assert_non_null(strstr(path, base));
    fill(buf, 800, 1);
    assert_int_equal(mc_commit(pub, buf, 800), 0);
    assert_true(wait_count(&c, 1, false));
    assert_int_equal(c.sizes[0], 800);
    /* the reader got a pointer into its read-only mapping of the same segment */
    pthread_mutex_lock(&c.lock);
    const void *received = c.last_data;
    pthread_mutex_unlock(&c.lock);
    assert_true(mapping_of(received, perms, path, sizeof(path)));
    assert_string_equal(perms, "r--s");
    assert_non_null(strstr(path, base));

    /* a discarded loan sends nothing */
    assert_int_equal(mc_loan(pub, 10, &buf), 0);
    assert_int_equal(mc_loan_discard(pub, buf), 0);

    /* a publish while a loan is open uses another slot; both arrive in order */
    assert_int_equal(mc_loan(pub, 500, &buf), 0);
    assert_int_equal(publish_seq(pub, 2, 300), 0);
    fill(buf, 500, 3);
    assert_int_equal(mc_commit(pub, buf, 500), 0);

    /* the segment grows while a loan is open: the commit still delivers it */
    assert_int_equal(mc_loan(pub, 100, &buf), 0);
    assert_int_equal(publish_seq(pub, 4, 200000), 0);
    fill(buf, 100, 5);
    assert_int_equal(mc_commit(pub, buf, 100), 0);

    assert_true(wait_count(&c, 5, false));
    static const size_t sizes[] = {800, 300, 500, 200000, 100};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(c.seqs[i], i + 1);
        assert_int_equal(c.sizes[i], sizes[i]);
    }
    assert_int_equal(c.bad, 0);
    close_all(ctx, 2);
    collector_fini(&c);
}

/* ---- tests: files -------------------------------------------------------------------------- */

static int open_ctx_rc(const char *shm_lines, mc_context **out)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/rc.ini", config_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[framework]\nplugins = shm\n[shm]\npath = %s/plugins/shm\n%s\n",
            getenv("MC_BUILDDIR") ? getenv("MC_BUILDDIR") : ".", shm_lines);
    fclose(f);
    return mc_context_open(path, out);
}

static unsigned file_mode(const char *name)
{
    char path[400];
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_segments_get_exactly_the_configured_mode(void **state)
{
    mode_t old = umask(077); /* fchmod, not the umask, decides */
    mc_context *ctx[3] = {open_ctx("mode = 0600\n"), open_ctx("mode = 0660\n"),
                          open_ctx("mode = 0660\n")};
    char name[MC_LOCATOR_MAX + 1];
    publisher(ctx[0], "perm");
    shm_name_of(ctx[0], name, sizeof(name));
    assert_int_equal(file_mode(name), 0600);
    publisher(ctx[1], "perm");
    shm_name_of(ctx[1], name, sizeof(name));
    assert_int_equal(file_mode(name), 0660);
    collector c;
    collector_init(&c);
    subscribe(ctx[2], "perm", &c);
    shm_name_of(ctx[2], name, sizeof(name)); /* a subscriber's locator: its doorbell */
    assert_non_null(strstr(name, "-bell"));
    assert_int_equal(file_mode(name), 0660);
    close_all(ctx, 3);
    umask(old);
    collector_fini(&c);

    /* a bad mode is a configuration error: the context does not open and says why */
    static const char *const bad[] = {"0644x", "0400", "1777", ""};
    for (size_t i = 0; i < 4; i++) {
        char line[64], said[64];
        snprintf(line, sizeof(line), "mode = %s\n", bad[i]);
        snprintf(said, sizeof(said), "mode '%s' is not octal", bad[i]);
        logs_clear();
        mc_context *ctx_bad = NULL;
        assert_int_equal(open_ctx_rc(line, &ctx_bad), MC_ECONFIG);
        assert_null(ctx_bad);
        assert_non_null(strstr(mc_last_error(), said));
        assert_non_null(strstr(mc_last_error(), "[shm]"));
    }
}

/* A segment another user owns could hold anything that user wrote: refused, unless
 * [shm] trusted_owners names that user. Needs root, to give the file away. */
/* A publisher's goodbye often arrives before its last messages are read: they are still
 * delivered, none lost. The subscriber is held inside the first message's callback while
 * the publisher writes five more, withdraws and closes. */
static void test_messages_written_before_a_goodbye_are_delivered(void **state)
{
    mc_context *ctx[2] = {open_ctx("slots = 8\n"), open_ctx("slots = 8\n")};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "goodbye");
    mc_subscriber *sub = subscribe(ctx[1], "goodbye", &c);
    introduce_both(ctx[0], ctx[1]);
    gate(&c, true);
    for (uint64_t s = 1; s <= 6; s++)
        assert_int_equal(publish_seq(pub, s, 256), 0);
    assert_true(wait_count(&c, 1, true));
    capture *cap = malloc(sizeof(*cap));
    capture_all(ctx[0], cap);
    for (size_t i = 0; i < cap->count; i++)
        report_to(ctx[1], &cap->regs[i], false); /* the goodbye */
    free(cap);
    assert_int_equal(mc_subscriber_matched(sub), 0);
    assert_int_equal(mc_context_close(ctx[0]), 0);
    gate(&c, false);
    assert_true(wait_count(&c, 6, false));
    assert_int_equal(c.bad + c.out_of_order, 0);
    assert_int_equal(all_drops(sub), 0);
    assert_int_equal(mc_context_close(ctx[1]), 0);
    collector_fini(&c);
}

static void test_segments_of_other_users_are_refused_unless_trusted(void **state)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: only root can give a segment to another user\n");
        skip();
    }
    mc_context *ctx[3] = {open_ctx(""), open_ctx(""), open_ctx("trusted_owners = 65534\n")};
    collector c[2];
    collector_init(&c[0]);
    collector_init(&c[1]);
    mc_publisher *pub = publisher(ctx[0], "owned");
    char name[MC_LOCATOR_MAX + 1], path[MC_LOCATOR_MAX + 16];
    shm_name_of(ctx[0], name, sizeof(name));
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    assert_int_equal(chown(path, 65534, 65534), 0);
    logs_clear();
    subscribe(ctx[1], "owned", &c[0]);
    introduce_both(ctx[0], ctx[1]);
    assert_true(wait_log("belongs to uid 65534", "not opened"));
    subscribe(ctx[2], "owned", &c[1]);
    introduce_both(ctx[0], ctx[2]);
    assert_int_equal(publish_seq(pub, 1, 64), 0);
    assert_true(wait_count(&c[1], 1, false));
    assert_int_equal(c[1].bad, 0);
    assert_int_equal(c[0].count, 0);
    close_all(ctx, 3);
    collector_fini(&c[0]);
    collector_fini(&c[1]);

    /* a user that does not exist is a configuration error naming it */
    mc_context *bad = NULL;
    assert_int_equal(open_ctx_rc("trusted_owners = nosuchuser_mc\n", &bad), MC_ECONFIG);
    assert_non_null(strstr(mc_last_error(), "no user 'nosuchuser_mc'"));
}

/* Sleeps in a row that skip the look after `misses` looks that found nothing. */
static unsigned skipped_after_misses(mc_shm_look_policy *lp, unsigned misses)
{
    for (unsigned i = 0; i < misses; i++) {
        while (!mc_shm_look_now(lp)) {
        }
        mc_shm_look_paid(lp, false);
    }
    unsigned skipped = 0;
    while (!mc_shm_look_now(lp))
        skipped++;
    return skipped;
}

/* One miss must cost one sleep, not a run of 64 (that pattern had a streaming publisher
 * and its subscriber wake each other per message); misses that go on back off to one look
 * every 64 sleeps; a look that pays starts over. */
static void test_looks_back_off_after_misses_and_start_over_after_one_pays(void **state)
{
    (void)state;
    mc_shm_look_policy lp = {0};
    assert_true(mc_shm_look_now(&lp));
    mc_shm_look_paid(&lp, true);
    assert_true(mc_shm_look_now(&lp));
    mc_shm_look_policy fresh = {0};
    assert_int_equal(skipped_after_misses(&fresh, 1), 1);
    fresh = (mc_shm_look_policy){0};
    assert_int_equal(skipped_after_misses(&fresh, 3), 4);
    fresh = (mc_shm_look_policy){0};
    assert_int_equal(skipped_after_misses(&fresh, 7), MC_SHM_LOOK_SKIP_MAX);
    assert_int_equal(skipped_after_misses(&fresh, 40), MC_SHM_LOOK_SKIP_MAX);
    mc_shm_look_paid(&fresh, true);
    assert_true(mc_shm_look_now(&fresh));
    mc_shm_look_paid(&fresh, false);
    assert_false(mc_shm_look_now(&fresh));
    assert_true(mc_shm_look_now(&fresh));
}

static void test_names_stay_inside_dev_shm_and_parse_back(void **state)
{
    char topic[MC_TOPIC_MAX + 1];
    memset(topic, 'x', MC_TOPIC_MAX);
    topic[MC_TOPIC_MAX] = '\0';
    topic[3] = topic[10] = '/';
    char base[MC_SHM_NAME_MAX + 1], name[MC_SHM_NAME_MAX + 1];
    int len = mc_shm_segment_base(base, sizeof(base), MC_LOCATOR_MAX, 0xabcdef01u, topic, 4194304,
                                  18446744073709551615ull, 0xffffffffu, 18446744073709551615ull);
    assert_true(len > 0);
    assert_true(mc_shm_segment_name(name, sizeof(name), base, 0) <= MC_LOCATOR_MAX);
    assert_null(strchr(name + 1, '/'));
    mc_shm_name_info info;
    assert_true(mc_shm_name_parse(name, &info));
    assert_false(info.is_bell);
    assert_int_equal(info.pid, 4194304);
    assert_true(info.start_time == 18446744073709551615ull);
    assert_int_equal(info.context, 0xffffffffu);
    assert_int_equal(info.generation, 0);
    assert_int_equal(info.base_length, (size_t)len);
    /* a short topic keeps its '/' as '+' */
    mc_shm_segment_base(base, sizeof(base), MC_LOCATOR_MAX, 1, "cam/front.left", 42, 7, 9, 3);
    mc_shm_segment_name(name, sizeof(name), base, 12);
    assert_string_equal(name, "/mc-00000001-cam+front.left-42-7-00000009-3-g12");
    assert_true(mc_shm_name_parse(name, &info) && info.generation == 12 && info.number == 3);
    mc_shm_bell_name(name, sizeof(name), 1, 42, 7, 9, 2);
    assert_true(mc_shm_name_parse(name, &info) && info.is_bell && info.number == 2);
    /* what is not exactly ours is never taken for ours */
    static const char *const foreign[] = {
        "/mc-00000001-42-7-00000009-2-bel",  "/mc-00000001-t-42-7-0000009-3-g0",
        "/mc-0000000g-t-42-7-00000009-3-g0", "/mc-00000001-t-0-7-00000009-3-g0",
        "/mc-00000001-t-42-7-00000009-3-g",  "/xx-00000001-t-42-7-00000009-3-g0",
        "/mc-00000001-42-7-00000009-3-g0",   "/mc-00000001-a/b-42-7-00000009-3-g0",
        "/mc-00000001-t-42-x7-00000009-3-g0"};
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
        assert_false(mc_shm_name_parse(foreign[i], &info));
}

typedef struct reaped {
    char names[64][MC_SHM_NAME_MAX + 1];
    size_t count;
} reaped;

static void on_reaped(const char *name, void *user)
{
    reaped *r = user;
    if (r->count < 64)
        snprintf(r->names[r->count++], sizeof(r->names[0]), "/%s", name);
}

static bool was_reaped(const reaped *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->names[i], name) == 0)
            return true;
    return false;
}

/* ---- forked processes ------------------------------------------------------------------------ */

/* In a forked child cmocka's asserts must not run: these report and return instead. */
#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "child check failed at line %d: %s (%s)\n", __LINE__, #cond,           \
                    mc_last_error());                                                              \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static mc_context *child_ctx(const char *shm_lines, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s-%d.ini", config_dir, name, (int)getpid());
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return NULL;
    fprintf(f, "[framework]\nplugins = shm\n[shm]\npath = %s/plugins/shm\n%s\n",
            getenv("MC_BUILDDIR") ? getenv("MC_BUILDDIR") : ".", shm_lines);
    fclose(f);
    mc_context *ctx = NULL;
    return mc_context_open(path, &ctx) == 0 ? ctx : NULL;
}

static bool write_all(int fd, const void *buf, size_t size)
{
    const char *p = buf;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n <= 0 && errno != EINTR)
            return false;
        if (n > 0) {
            p += n;
            size -= (size_t)n;
        }
    }
    return true;
}

static bool read_all(int fd, void *buf, size_t size)
{
    char *p = buf;
    while (size > 0) {
        ssize_t n = read(fd, p, size);
        if (n == 0 || (n < 0 && errno != EINTR))
            return false;
        if (n > 0) {
            p += n;
            size -= (size_t)n;
        }
    }
    return true;
}

/* Sends the only endpoint of ctx down fd. */
static bool send_registration(mc_context *ctx, int fd)
{
    capture *c = malloc(sizeof(*c));
    capture_all(ctx, c);
    bool ok = c->count == 1 && write_all(fd, &c->regs[0], sizeof(wire_reg));
    free(c);
    return ok;
}

/* Reads a registration from fd and reports it to ctx. */
static bool receive_registration(mc_context *ctx, int fd, wire_reg *w)
{
    if (!read_all(fd, w, sizeof(*w)))
        return false;
    report_to(ctx, w, true);
    return true;
}

typedef struct child {
    pid_t pid;
    int to_child;
    int from_child;
} child;

static child child_start(int (*body)(int to_parent, int from_parent))
{
    int down[2], up[2];
    assert_int_equal(pipe(down), 0);
    assert_int_equal(pipe(up), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        _exit(body(up[1], down[0]));
    }
    close(down[0]);
    close(up[1]);
    return (child){.pid = pid, .to_child = down[1], .from_child = up[0]};
}

static int child_reap(child *ch, int signal_to_send)
{
    if (signal_to_send)
        kill(ch->pid, signal_to_send);
    int status = 0;
    waitpid(ch->pid, &status, 0);
    close(ch->to_child);
    close(ch->from_child);
    return status;
}

/* ---- tests: a full /dev/shm ------------------------------------------------------------------ */

static bool fill_dev_shm(const char *name)
{
    int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
    if (fd < 0)
        return false;
    off_t size = 0;
    for (off_t chunk = 1 << 20; chunk >= 4096; chunk /= 2)
        while (ftruncate(fd, size + chunk) == 0 && posix_fallocate(fd, size, chunk) == 0)
            size += chunk;
    close(fd);
    return true;
}

static int take_checked(mc_subscriber *sub, uint64_t seq, size_t size)
{
    mc_msg *msg = NULL;
    CHILD_CHECK(mc_take(sub, 10000, &msg) == 0);
    CHILD_CHECK(mc_msg_seq(msg) == seq && mc_msg_size(msg) == size);
    CHILD_CHECK(checksum(mc_msg_data(msg), size) == expected_checksum(seq, size));
    mc_msg_release(msg);
    return 0;
}

/* Runs in a private mount namespace with a 1 MiB /dev/shm. */
static int full_dev_shm_checks(void)
{
    mc_context *small = child_ctx("min_size = 2M\n", "full-a");
    CHILD_CHECK(small != NULL);
    mc_publisher *pub = NULL;
    CHILD_CHECK(mc_publisher_create(small, "full", NULL, &pub) == MC_ENOSPC);
    CHILD_CHECK(strstr(mc_last_error(), "needs") && strstr(mc_last_error(), "bytes free"));
    mc_context_close(small);

    mc_context *a = child_ctx("", "full-b"), *b = child_ctx("", "full-c");
    CHILD_CHECK(a && b);
    mc_subscriber *sub = NULL;
    CHILD_CHECK(mc_publisher_create(a, "full", NULL, &pub) == 0);
    CHILD_CHECK(mc_subscriber_create(b, "full", NULL, &sub) == 0);
    introduce_both(a, b);
    CHILD_CHECK(mc_publisher_matched(pub) == 1);
    /* growing past what is free fails cleanly, and the publisher keeps working */
    CHILD_CHECK(publish_seq(pub, 1, 2 << 20) == MC_ENOSPC);
    CHILD_CHECK(strstr(mc_last_error(), "bytes free"));
    CHILD_CHECK(publish_seq(pub, 2, 100) == 0);
    CHILD_CHECK(take_checked(sub, 2, 100) == 0);
    /* a slot used for the first time when the memory is gone: an error, not SIGBUS */
    CHILD_CHECK(fill_dev_shm("/mc-test-filler"));
    uint64_t seq = 3;
    int rc = 0;
    for (; seq < 20 && (rc = publish_seq(pub, seq, 100)) == 0; seq++)
        CHILD_CHECK(take_checked(sub, seq, 100) == 0);
    CHILD_CHECK(rc == MC_ENOSPC && strstr(mc_last_error(), "full"));
    shm_unlink("/mc-test-filler");
    seq++;
    CHILD_CHECK(publish_seq(pub, seq, 100) == 0);
    CHILD_CHECK(take_checked(sub, seq, 100) == 0);
    mc_context_close(b);
    mc_context_close(a);
    return 0;
}

static int private_dev_shm(const char *options);

static int full_dev_shm_child(int to_parent, int from_parent)
{
    int rc = private_dev_shm("size=1m");
    return rc != 0 ? rc : full_dev_shm_checks();
}

static bool private_dev_shm_possible(void);

static void test_a_full_dev_shm_gives_clean_errors(void **state)
{
    if (!private_dev_shm_possible()) {
        fprintf(stderr, "skipped: a 1 MiB /dev/shm in a private mount namespace cannot be made "
                        "here (needs root and a mount point at /)\n");
        skip();
    }
    child ch = child_start(full_dev_shm_child);
    int status = child_reap(&ch, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- tests: reaping ------------------------------------------------------------------------ */

static bool make_file(const char *name)
{
    int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static int reap_checks(void)
{
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    CHILD_CHECK(waitpid(dead, NULL, 0) == dead);
    unsigned long long me_start = mc_shm_self_start_time();
    CHILD_CHECK(me_start > 0);
    char dead_seg[128], dead_bell[128], reused[128], live[128];
    snprintf(dead_seg, sizeof(dead_seg), "/mc-0badc0de-reap+test-%d-12345-0badc0de-7-g0",
             (int)dead);
    snprintf(dead_bell, sizeof(dead_bell), "/mc-0badc0de-%d-12345-0badc0de-3-bell", (int)dead);
    snprintf(reused, sizeof(reused), "/mc-0badc0de-reap+test-%d-%llu-0badc0de-8-g1", (int)getpid(),
             me_start + 1);
    snprintf(live, sizeof(live), "/mc-0badc0de-reap+test-%d-%llu-0badc0de-9-g0", (int)getpid(),
             me_start);
    const char *foreign = "/mc-not-ours-at-all";
    const char *made[] = {dead_seg, dead_bell, reused, live, foreign};
    for (size_t i = 0; i < 5; i++)
        CHILD_CHECK(make_file(made[i]));

    reaped r = {.count = 0};
    CHILD_CHECK(mc_shm_reap(true, on_reaped, &r) >= 3);
    CHILD_CHECK(was_reaped(&r, dead_seg) && was_reaped(&r, dead_bell) && was_reaped(&r, reused));
    CHILD_CHECK(!was_reaped(&r, live) && !was_reaped(&r, foreign));
    for (size_t i = 0; i < 5; i++)
        CHILD_CHECK(shm_file_exists(made[i])); /* a dry run removes nothing */

    r.count = 0;
    CHILD_CHECK(mc_shm_reap(false, on_reaped, &r) >= 3);
    CHILD_CHECK(was_reaped(&r, dead_seg) && was_reaped(&r, dead_bell) && was_reaped(&r, reused));
    CHILD_CHECK(!shm_file_exists(dead_seg) && !shm_file_exists(dead_bell) &&
                !shm_file_exists(reused));
    CHILD_CHECK(shm_file_exists(live) && shm_file_exists(foreign));

    /* every context start reaps, unless told not to */
    CHILD_CHECK(make_file(dead_seg));
    mc_context *ctx = child_ctx("reap = false\n", "reap-off");
    CHILD_CHECK(ctx != NULL && shm_file_exists(dead_seg));
    mc_context_close(ctx);
    ctx = child_ctx("", "reap-on");
    CHILD_CHECK(ctx != NULL && !shm_file_exists(dead_seg));
    mc_context_close(ctx);
    shm_unlink(live);
    shm_unlink(foreign);
    return 0;
}

/* A tmpfs of our own on /dev/shm, in a mount namespace of our own. */
static int private_dev_shm(const char *options)
{
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", 0, options) != 0) {
        fprintf(stderr, "cannot mount a private /dev/shm: %s\n", strerror(errno));
        return 2;
    }
    return 0;
}

static int probe_private_dev_shm_child(int to_parent, int from_parent)
{
    return private_dev_shm("size=1m");
}

/* Root is not always enough: in a chroot whose "/" is not a mount point the mounts fail. */
static bool private_dev_shm_possible(void)
{
    if (geteuid() != 0)
        return false;
    child ch = child_start(probe_private_dev_shm_child);
    int status = child_reap(&ch, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int reap_child(int to_parent, int from_parent)
{
    int rc = private_dev_shm("size=4m");
    return rc != 0 ? rc : reap_checks();
}

static void test_files_of_dead_processes_are_reaped(void **state)
{
    /* Every memcast process reaps when it starts, so the fake dead files of this test would
     * vanish under it if another ran now: as root it gets a /dev/shm of its own. */
    if (!private_dev_shm_possible()) {
        /* on the shared /dev/shm, shm contexts of tests running in parallel reap the fake
         * files at their start, so the checks would race them */
        fprintf(stderr, "skipped: reaping is checked in a private /dev/shm, which cannot be "
                        "made here (needs root and a mount point at /)\n");
        skip();
    }
    child ch = child_start(reap_child);
    int status = child_reap(&ch, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- tests: hostile and crashing peers ---------------------------------------------------------
 */

static void *map_segment(const char *name, size_t size)
{
    int fd = shm_open(name, O_RDWR, 0);
    assert_true(fd >= 0);
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(map != MAP_FAILED);
    return map;
}

static void reset_collector(collector *c)
{
    pthread_mutex_lock(&c->lock);
    c->count = 0;
    c->last_seq = 0;
    pthread_mutex_unlock(&c->lock);
}

/* The subscriber still works: a new publisher on the topic reaches it. */
static void assert_subscriber_alive(mc_context *sub_ctx, collector *c, const char *topic)
{
    mc_context *fresh = open_ctx("");
    mc_publisher *pub = publisher(fresh, topic);
    introduce_both(fresh, sub_ctx);
    reset_collector(c);
    assert_int_equal(publish_seq(pub, 1, 64), 0);
    assert_true(wait_count(c, 1, false));
    assert_int_equal(c->bad, 0);
    assert_int_equal(mc_context_close(fresh), 0);
}

/* A new publisher in ctx that sent one message to the subscriber; maps its segment. */
static uint64_t *lying_publisher(mc_context *ctx, mc_context *sub_ctx, collector *c)
{
    mc_publisher *liar = publisher(ctx, "corrupt");
    introduce_both(ctx, sub_ctx);
    reset_collector(c);
    assert_int_equal(publish_seq(liar, 1, 64), 0);
    assert_true(wait_count(c, 1, false));
    logs_clear();
    char name[MC_LOCATOR_MAX + 1] = "";
    capture *cap = malloc(sizeof(*cap));
    capture_all(ctx, cap);
    for (size_t i = 0; i < cap->count; i++)
        if (cap->regs[i].reg.kind == MC_KIND_PUBLISHER)
            snprintf(name, sizeof(name), "%.*s", (int)cap->regs[i].locators[0].size,
                     (const char *)cap->regs[i].locators[0].data);
    free(cap);
    return map_segment(name, 4096);
}

static void test_a_corrupt_segment_is_dropped_and_the_subscriber_lives_on(void **state)
{
    mc_context *ctx[4] = {open_ctx(""), open_ctx(""), open_ctx(""), open_ctx("")};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "corrupt");
    mc_subscriber *sub = subscribe(ctx[1], "corrupt", &c);
    introduce_both(ctx[0], ctx[1]);
    assert_int_equal(publish_seq(pub, 1, 64), 0);
    assert_true(wait_count(&c, 1, false));
    logs_clear();

    /* garbage over the whole header, then a publish to wake the subscriber */
    char name[MC_LOCATOR_MAX + 1];
    shm_name_of(ctx[0], name, sizeof(name));
    uint64_t *header = map_segment(name, 4096);
    for (size_t i = 0; i < 32; i++)
        __atomic_store_n(&header[i], mix(i + 1), __ATOMIC_RELAXED);
    assert_int_equal(publish_seq(pub, 2, 64), 0);
    assert_true(wait_log("is corrupt", "corrupt"));
    /* A pass that checked the header just before the garbage landed may still read message 2
     * (it is intact: c.bad stays 0); nothing is read after the drop. */
    assert_in_range(c.count, 1, 2);
    munmap(header, 4096);
    assert_subscriber_alive(ctx[1], &c, "corrupt");

    /* an intact header whose write sequence claims messages that are not there */
    uint64_t *words = lying_publisher(ctx[2], ctx[1], &c);
    uint64_t *write_seq = &words[192 / 8];
    __atomic_store_n(write_seq, __atomic_load_n(write_seq, __ATOMIC_RELAXED) + 2, __ATOMIC_RELAXED);
    /* nothing rings: the wait thread's safety wake-up finds it */
    assert_true(wait_log("is corrupt", "does not hold its message"));
    assert_int_equal(c.count, 1);
    munmap(words, 4096);
    assert_subscriber_alive(ctx[1], &c, "corrupt");

    /* one that claims more messages than a ring could ever have overrun: corruption, not a
     * loss of 2^47 messages in the subscriber's counters */
    mc_stats before;
    mc_stats_init(&before);
    assert_int_equal(mc_subscriber_stats(sub, &before), 0);
    words = lying_publisher(ctx[3], ctx[1], &c);
    write_seq = &words[192 / 8];
    __atomic_store_n(write_seq, __atomic_load_n(write_seq, __ATOMIC_RELAXED) + (UINT64_C(1) << 47),
                     __ATOMIC_RELAXED);
    assert_true(wait_log("is corrupt", "jumped beyond"));
    mc_stats after;
    mc_stats_init(&after);
    assert_int_equal(mc_subscriber_stats(sub, &after), 0);
    assert_int_equal(after.dropped[MC_DROP_OVERRUN], before.dropped[MC_DROP_OVERRUN]);
    munmap(words, 4096);
    assert_subscriber_alive(ctx[1], &c, "corrupt");
    close_all(ctx, 4);
    collector_fini(&c);
}

static void test_readers_that_died_inside_slots_do_not_stall_the_writer(void **state)
{
    const char *cfg = "slots = 8\nack_timeout = 30s\n";
    mc_context *ctx[2] = {open_ctx_level(cfg, "info"), open_ctx(cfg)};
    collector c;
    collector_init(&c);
    mc_publisher *pub = publisher(ctx[0], "pinned");
    subscribe(ctx[1], "pinned", &c);
    introduce_both(ctx[0], ctx[1]);
    /* as if a reader had been killed inside every slot: their pins stay for ever */
    char name[MC_LOCATOR_MAX + 1];
    shm_name_of(ctx[0], name, sizeof(name));
    unsigned char *base = map_segment(name, 4096);
    mc_shm_header *h = (mc_shm_header *)base;
    assert_true(h->pins_offset + sizeof(mc_shm_pin) * h->slot_count <= 4096);
    for (uint32_t i = 0; i < h->slot_count; i++)
        atomic_fetch_add(&((mc_shm_pin *)(base + h->pins_offset))[i].count, 1);
    logs_clear();
    for (uint64_t s = 1; s <= 50; s++)
        assert_int_equal(publish_seq(pub, s, 100), 0);
    assert_true(wait_count(&c, 50, false));
    assert_int_equal(c.bad + c.out_of_order, 0);
    /* the writer waited pin_timeout once per slot, then stopped counting those pins */
    assert_int_equal(logs_matching("longer than pin_timeout", "pinned"), 1);
    munmap(base, 4096);
    close_all(ctx, 2);
    collector_fini(&c);
}

/* A publisher in one context, a subscriber in another, introduced, and the publisher's
 * segment header mapped here: for the tests that watch or set words in shared memory. */
typedef struct watched_pair {
    mc_context *ctx[2];
    collector c;
    mc_publisher *pub;
    mc_subscriber *sub;
    unsigned char *base;
} watched_pair;

static mc_shm_header *watched_pair_open(watched_pair *w, mc_context *pub_ctx, mc_context *sub_ctx,
                                        const char *topic)
{
    w->ctx[0] = pub_ctx;
    w->ctx[1] = sub_ctx;
    collector_init(&w->c);
    w->pub = publisher(w->ctx[0], topic);
    w->sub = subscribe(w->ctx[1], topic, &w->c);
    introduce_both(w->ctx[0], w->ctx[1]);
    char name[MC_LOCATOR_MAX + 1];
    shm_name_of(w->ctx[0], name, sizeof(name));
    w->base = map_segment(name, 4096);
    return (mc_shm_header *)w->base;
}

static void watched_pair_close(watched_pair *w)
{
    munmap(w->base, 4096);
    close_all(w->ctx, 2);
    collector_fini(&w->c);
}

/* ring_slots of generation gen of the segment base. */
static uint32_t ring_of_generation(const char *base, unsigned gen)
{
    char name[300];
    snprintf(name, sizeof(name), "%s-g%u", base, gen);
    int fd = shm_open(name, O_RDONLY, 0);
    assert_true(fd >= 0);
    mc_shm_header h;
    assert_int_equal(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    close(fd);
    return h.ring_slots;
}

/* Generations 0 (first slots) and 1 (grown for a 1 MiB message) of a publisher. */
static void rings_before_and_after_growth(const char *shm_lines, uint32_t ring[2])
{
    watched_pair w;
    mc_shm_header *h = watched_pair_open(&w, open_ctx(shm_lines), open_ctx(shm_lines), "ring");
    char base[MC_LOCATOR_MAX + 1];
    base_of(w.ctx[0], base, sizeof(base));
    assert_int_equal(publish_seq(w.pub, 1, 100), 0);
    assert_int_equal(publish_seq(w.pub, 2, 1 << 20), 0);
    assert_true(wait_count(&w.c, 2, false));
    assert_int_equal(w.c.bad, 0);
    ring[0] = h->ring_slots;
    ring[1] = ring_of_generation(base, 1);
    watched_pair_close(&w);
}

/* By default the ring is long for small slots (a reliable fan-out then waits once per 64
 * messages, not per 8) and short for large ones (memory); a fixed slots keeps N. */
static void test_the_default_ring_follows_the_slot_size(void **state)
{
    (void)state;
    uint32_t ring[2];
    rings_before_and_after_growth(NULL, ring);
    assert_int_equal(ring[0], 64);
    assert_int_equal(ring[1], 8);
    rings_before_and_after_growth("min_size = 128K\n", ring);
    assert_int_equal(ring[0], 8);
    rings_before_and_after_growth("min_size = 32K\n", ring);
    assert_int_equal(ring[0], 32);
    rings_before_and_after_growth("slots = 16\n", ring);
    assert_int_equal(ring[0], 16);
    assert_int_equal(ring[1], 16);
    mc_context *bad = NULL;
    assert_int_equal(open_ctx_rc("slots = 1\n", &bad), MC_ECONFIG);
    assert_non_null(strstr(mc_last_error(), "slots = 1"));
}

/* Readers held in every spare (still in callbacks of messages long gone): a best-effort
 * writer takes the slot of the message it pushes out anyway instead of waiting pin_timeout
 * and writing under a reader. */
static void test_held_spares_do_not_make_the_writer_wait(void **state)
{
    const char *cfg = "slots = 8\n";
    watched_pair w;
    mc_shm_header *h = watched_pair_open(&w, open_ctx_level(cfg, "info"), open_ctx(cfg), "spares");
    unsigned char *base = w.base;
    assert_int_equal(h->slot_count, h->ring_slots + 2);      /* one context, a send or a loan */
    for (uint32_t i = h->ring_slots; i < h->slot_count; i++) /* every spare */
        atomic_fetch_add(&((mc_shm_pin *)(base + h->pins_offset))[i].count, 1);
    logs_clear();
    for (uint64_t s = 1; s <= 3 * 8; s++) {
        assert_int_equal(publish_seq(w.pub, s, 100), 0);
        assert_true(wait_count(&w.c, s, false));
    }
    assert_int_equal(w.c.bad + w.c.out_of_order, 0);
    assert_int_equal(all_drops(w.sub), 0);
    assert_int_equal(logs_matching("longer than pin_timeout", "spares"), 0);
    for (uint32_t i = h->ring_slots; i < h->slot_count; i++)
        atomic_fetch_sub(&((mc_shm_pin *)(base + h->pins_offset))[i].count, 1);
    watched_pair_close(&w);
}

/* Pins count readers in the slot: as many as one per subscribing context, each still in
 * a callback, placed on spares and on the slot the next commit would push out. */
static void hold_readers(unsigned char *base, uint32_t readers, int delta)
{
    mc_shm_header *h = (mc_shm_header *)base;
    uint32_t *map = (uint32_t *)(base + h->map_offset);
    mc_shm_pin *pins = (mc_shm_pin *)(base + h->pins_offset);
    uint64_t next = atomic_load(&h->write_seq); /* its position: message numbers mod N */
    atomic_fetch_add(&pins[map[next % h->ring_slots]].count, delta);
    for (uint32_t slot = h->ring_slots; slot < h->slot_count && readers > 1; slot++, readers--)
        atomic_fetch_add(&pins[slot].count, delta);
}

/* Four subscribing contexts: the publisher moves to a generation with a spare for each
 * (plus one), so even with all four readers held in slots the writer never waits
 * for one and never writes under one. With two spares it waited pin_timeout here and
 * reused a pinned slot (logged once). */
static void test_a_spare_per_subscribing_context(void **state)
{
    const char *cfg = "slots = 8\n";
    mc_context *ctx[5] = {open_ctx_level(cfg, "info")};
    collector c[4];
    mc_subscriber *subs[4];
    mc_publisher *pub = publisher(ctx[0], "spare/each");
    for (size_t i = 0; i < 4; i++) {
        ctx[1 + i] = open_ctx(cfg);
        collector_init(&c[i]);
        subs[i] = subscribe(ctx[1 + i], "spare/each", &c[i]);
        introduce_both(ctx[0], ctx[1 + i]);
    }
    logs_clear();
    assert_int_equal(publish_seq(pub, 1, 100), 0);
    assert_int_equal(logs_matching("need more spare slots", "generation 1 has"), 1);
    char base_name[300], name[320];
    base_of(ctx[0], base_name, sizeof(base_name));
    snprintf(name, sizeof(name), "%s-g1", base_name);
    unsigned char *base = map_segment(name, 4096);
    mc_shm_header *h = (mc_shm_header *)base;
    assert_int_equal(h->slot_count, h->ring_slots + 1 + 4);
    for (size_t i = 0; i < 4; i++)
        assert_true(wait_count(&c[i], 1, false));
    hold_readers(base, 4, 1);
    for (uint64_t s = 2; s <= 3 * 8; s++) { /* one at a time: a slow reader is not overrun */
        assert_int_equal(publish_seq(pub, s, 100), 0);
        for (size_t i = 0; i < 4; i++)
            assert_true(wait_count(&c[i], s, false));
    }
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(c[i].bad + c[i].out_of_order, 0);
        assert_int_equal(all_drops(subs[i]), 0);
    }
    assert_int_equal(logs_matching("longer than pin_timeout", "spare/each"), 0);
    hold_readers(base, 4, -1);
    munmap(base, 4096);
    close_all(ctx, 5);
    for (size_t i = 0; i < 4; i++)
        collector_fini(&c[i]);
}

static void set_entry(unsigned char *base, const mc_shm_geometry *g, uint32_t index,
                      uint32_t ticket, uint64_t cursor)
{
    mc_shm_entry *e = mc_shm_entry_of(base, g, index);
    atomic_store(&e->ticket, ticket);
    atomic_store(&e->cursor, mc_shm_cursor_word(ticket, cursor));
    atomic_store(&e->state, MC_SHM_ENTRY_ACTIVE);
}

/* Whether a reader's move wakes the sleeping writer (ack_word bumped, writer_waiting
 * cleared) or leaves it asleep. */
static bool advance_wakes(unsigned char *base, const mc_shm_geometry *g, uint32_t index,
                          uint32_t ticket, uint64_t cursor)
{
    mc_shm_header *h = (mc_shm_header *)base;
    uint32_t before = atomic_load(&h->ack_word);
    assert_true(mc_shm_entry_advance(base, g, index, ticket, cursor));
    bool woken = atomic_load(&h->ack_word) != before;
    assert_int_equal(atomic_load(&h->writer_waiting), woken ? 0 : 1);
    return woken;
}

/* A reliable writer asleep waits for every reader to be past ack_wanted: one reader past
 * it must not wake it (it would find the others behind and sleep again, a wake per reader
 * per message); the last one to get there must (else it sleeps a whole slice). Dropped
 * entries do not count, and a writer that leaves ack_wanted at 0 is woken at once. */
static void test_readers_wake_a_sleeping_writer_once_all_are_past(void **state)
{
    mc_shm_geometry g;
    assert_int_equal(mc_shm_geometry_compute(8, MC_SHM_MIN_SPARES, 4, 64, &g), 0);
    unsigned char *base = calloc(1, g.size);
    assert_non_null(base);
    mc_shm_identity id = {.owner_pid = getpid()};
    mc_shm_header_init(base, &g, &id);
    mc_shm_header *h = (mc_shm_header *)base;
    set_entry(base, &g, 0, 1, 10);
    set_entry(base, &g, 1, 2, 10);
    atomic_store(&h->ack_wanted, 20);
    atomic_store(&h->writer_waiting, 1);
    assert_false(advance_wakes(base, &g, 0, 1, 21)); /* entry 1 is still at 10 */
    assert_false(advance_wakes(base, &g, 1, 2, 20)); /* has read 19, not 20 */
    assert_true(advance_wakes(base, &g, 1, 2, 21));
    atomic_store(&h->ack_wanted, 30);
    atomic_store(&h->writer_waiting, 1);
    atomic_store(&mc_shm_entry_of(base, &g, 1)->state, MC_SHM_ENTRY_DROPPED);
    assert_true(advance_wakes(base, &g, 0, 1, 31));
    atomic_store(&h->ack_wanted, 0);
    atomic_store(&h->writer_waiting, 1);
    assert_true(advance_wakes(base, &g, 0, 1, 32));
    /* a reader whose entry was taken back (another ticket) moves nothing, wakes nobody */
    atomic_store(&h->writer_waiting, 1);
    assert_false(mc_shm_entry_advance(base, &g, 0, 7, 40));
    assert_int_equal(atomic_load(&h->writer_waiting), 1);
    free(base);
}

/* Writes ring_slots messages, then reads them all: every map position is live at once. */
static void write_then_read_a_ring(mc_shm_writer *w, mc_shm_reader *r, uint64_t first)
{
    const mc_shm_geometry *g = &w->geo;
    for (uint64_t n = first; n < first + g->ring_slots; n++) {
        uint32_t slot = 0;
        bool waited_out = false;
        char err[200];
        assert_int_equal(mc_shm_writer_take(w, 0, true, &slot, &waited_out, err, sizeof(err)), 0);
        memset(mc_shm_payload_of(w->base, g, slot), (int)(n & 0xff), 64);
        mc_sample sample = {.struct_size = sizeof(sample), .publisher = r->publisher, .seq = n};
        mc_shm_writer_commit(w, slot, &sample, 64);
    }
    for (uint64_t n = first; n < first + g->ring_slots; n++) {
        mc_sample got;
        uint64_t lost = 0;
        const char *problem = NULL;
        assert_int_equal(mc_shm_reader_begin(r, &got, &lost, &problem), MC_SHM_READ_MESSAGE);
        assert_int_equal(got.seq, n);
        assert_int_equal(got.size, 64);
        for (size_t i = 0; i < 64; i++)
            assert_int_equal(((const unsigned char *)got.data)[i], n & 0xff);
        assert_false(mc_shm_reader_end(r));
    }
}

static uint32_t commit_empty(mc_shm_writer *w, const mc_endpoint_id *publisher)
{
    uint32_t slot = 0;
    bool waited_out = false;
    char err[200];
    assert_int_equal(mc_shm_writer_take(w, 0, true, &slot, &waited_out, err, sizeof(err)), 0);
    mc_sample sample = {
        .struct_size = sizeof(sample), .publisher = *publisher, .seq = w->write_seq};
    mc_shm_writer_commit(w, slot, &sample, 0);
    uint64_t newest = atomic_load(&mc_shm_hdr(w->base)->newest);
    assert_int_equal(newest & MC_SHM_NEWEST_SLOT_MASK, slot);
    assert_int_equal(newest >> MC_SHM_NEWEST_SLOT_BITS, w->write_seq - 1);
    return slot;
}

/* Reads with the map entry of message cursor pointing at the wrong slot for a moment. */
static mc_shm_read read_with_a_bad_map_entry(mc_shm_reader *r, uint32_t right_slot)
{
    _Atomic uint32_t *entry = &mc_shm_map(r->base, &r->geo)[r->cursor % r->geo.ring_slots];
    atomic_store(entry, (right_slot + 1) % r->geo.slot_count);
    mc_sample got;
    uint64_t lost = 0;
    const char *problem = NULL;
    mc_shm_read result = mc_shm_reader_begin(r, &got, &lost, &problem);
    atomic_store(entry, right_slot);
    if (result == MC_SHM_READ_MESSAGE)
        assert_false(mc_shm_reader_end(r));
    return result;
}

/* A reader that keeps up takes the newest message's slot from write_seq's line, so a bad
 * map entry for it goes unread; one message behind, it goes by the map (and refuses the
 * bad entry). */
static void keep_up_then_fall_behind(mc_shm_writer *w, mc_shm_reader *r)
{
    uint32_t slot = commit_empty(w, &r->publisher);
    assert_int_equal(read_with_a_bad_map_entry(r, slot), MC_SHM_READ_MESSAGE);
    slot = commit_empty(w, &r->publisher);
    uint32_t next = commit_empty(w, &r->publisher);
    assert_int_equal(read_with_a_bad_map_entry(r, slot), MC_SHM_READ_CORRUPT);
    r->cursor++;
    assert_int_equal(read_with_a_bad_map_entry(r, next), MC_SHM_READ_MESSAGE);
    assert_int_equal(r->cursor, w->write_seq);
}

/* A ring of up to 12 positions keeps its map in the rest of write_seq's cache line (a
 * reader a few messages behind finds the slots without a second transfer); a larger one
 * after the header. Either way the map overwrites nothing: three rings' worth of messages
 * arrive whole and in order, and the header still checks. */
static void ring_with_slots(uint32_t ring_slots)
{
    mc_shm_geometry g;
    assert_int_equal(mc_shm_geometry_compute(ring_slots, MC_SHM_MIN_SPARES, 4, 64, &g), 0);
    bool inline_map = ring_slots <= MC_SHM_INLINE_MAP_SLOTS;
    size_t map_line = inline_map ? offsetof(mc_shm_header, write_seq) / MC_SHM_LINE
                                 : sizeof(mc_shm_header) / MC_SHM_LINE;
    assert_int_equal(g.map_offset / MC_SHM_LINE, map_line);
    assert_true(g.map_offset + 4u * ring_slots <=
                (inline_map ? sizeof(mc_shm_header) : g.pins_offset));
    assert_true(g.pins_offset >= sizeof(mc_shm_header));
    int fd = memfd_create("ring", 0);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)g.size), 0);
    unsigned char *base = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(base != MAP_FAILED);
    mc_endpoint_id pub_id = {.context_hi = 11, .context_lo = 12, .serial = 13};
    mc_shm_identity id = {.publisher = pub_id, .owner_pid = getpid()};
    mc_shm_header_init(base, &g, &id);
    mc_shm_writer w;
    assert_int_equal(mc_shm_writer_init(&w, base, &g, fd, 0), 0);
    mc_shm_reader r = {.base = base, .geo = g, .publisher = pub_id};
    for (uint64_t round = 0; round < 3; round++)
        write_then_read_a_ring(&w, &r, round * ring_slots);
    assert_int_equal(atomic_load(&((mc_shm_header *)base)->write_seq), 3u * ring_slots);
    keep_up_then_fall_behind(&w, &r);
    mc_shm_expect expect = {.publisher = pub_id, .owner_pid = getpid(), .file_size = g.size};
    mc_shm_geometry checked;
    assert_null(mc_shm_header_check(base, &expect, &checked));
    assert_int_equal(checked.map_offset, g.map_offset);
    mc_shm_writer_fini(&w);
    munmap(base, g.size);
    close(fd);
}

static void test_the_newest_slot_and_a_small_map_sit_beside_write_seq(void **state)
{
    ring_with_slots(2);
    ring_with_slots(8);
    ring_with_slots(MC_SHM_INLINE_MAP_SLOTS);
    ring_with_slots(MC_SHM_INLINE_MAP_SLOTS + 1);
    ring_with_slots(64);
}

/* The kernel has futex_waitv (5.16 on) and no seccomp filter refuses it: asked to wait on
 * no word at all it answers EINVAL (ENOSYS without it, EPERM or ENOSYS when filtered). */
static bool kernel_has_futex_waitv(void)
{
    return syscall(SYS_futex_waitv, NULL, 0u, 0u, NULL, CLOCK_MONOTONIC) < 0 && errno == EINVAL;
}

static bool wait_armed(mc_shm_header *h)
{
    struct timespec deadline = deadline_in(WAIT_SECONDS);
    while (atomic_load(&h->readers_armed) == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > deadline.tv_sec)
            return false;
        sched_yield();
    }
    return true;
}

/* A wait thread going to sleep arms the segment of every publisher it reads; the next
 * commit wakes it there (one FUTEX_WAKE serves every subscriber process) and disarms it.
 * Message after message, each finds the reader asleep and wakes it through the segment. */
static void test_a_commit_wakes_sleeping_readers_through_the_segment(void **state)
{
    if (!kernel_has_futex_waitv())
        skip();
    watched_pair w;
    mc_shm_header *h =
        watched_pair_open(&w, open_ctx("look_us = 0\n"), open_ctx("look_us = 0\n"), "armed");
    for (uint64_t s = 1; s <= 20; s++) {
        assert_true(wait_armed(h));
        uint32_t bell = atomic_load(&h->readers_bell);
        assert_int_equal(publish_seq(w.pub, s, 100), 0);
        assert_int_equal(atomic_load(&h->readers_bell), bell + 1); /* only commits raise it */
        assert_true(wait_count(&w.c, s, false));
    }
    assert_int_equal(w.c.bad + w.c.out_of_order, 0);
    assert_int_equal(all_drops(w.sub), 0);
    watched_pair_close(&w);
}

/* segment_wake = false: no thread arms a segment, so commits never wake through it (the
 * doorbells carry every wake), and delivery goes on as before. */
static void test_without_segment_wake_nothing_arms_the_segment(void **state)
{
    const char *cfg = "look_us = 0\nsegment_wake = false\n";
    watched_pair w;
    mc_shm_header *h = watched_pair_open(&w, open_ctx(cfg), open_ctx(cfg), "bells");
    for (uint64_t s = 1; s <= 20; s++) {
        assert_int_equal(publish_seq(w.pub, s, 100), 0);
        assert_true(wait_count(&w.c, s, false));
    }
    assert_int_equal(atomic_load(&h->readers_armed), 0);
    assert_int_equal(atomic_load(&h->readers_bell), 0);
    assert_int_equal(w.c.bad + w.c.out_of_order, 0);
    watched_pair_close(&w);
}

/* In a child: a publisher on topic, matched with the parent's endpoint through the pipes
 * (registrations both ways); NULL when any step failed. */
static mc_publisher *child_matched_publisher(const char *name, const char *topic, int to_parent,
                                             int from_parent)
{
    mc_context *ctx = child_ctx("", name);
    mc_publisher *pub = NULL;
    wire_reg w;
    if (ctx == NULL || mc_publisher_create(ctx, topic, NULL, &pub) != 0 ||
        !send_registration(ctx, to_parent) || !receive_registration(ctx, from_parent, &w))
        return NULL;
    return pub;
}

static int endless_publisher(int to_parent, int from_parent)
{
    mc_publisher *pub = child_matched_publisher("killed-pub", "crash/pub", to_parent, from_parent);
    CHILD_CHECK(pub != NULL);
    for (uint64_t seq = 1;; seq++)
        CHILD_CHECK(publish_seq(pub, seq, 1024) == 0);
}

static void test_killing_a_publisher_never_hangs_its_subscriber(void **state)
{
    child ch = child_start(endless_publisher);
    mc_context *ctx = open_ctx_level("", "info");
    collector c;
    collector_init(&c);
    mc_subscriber *sub = subscribe(ctx, "crash/pub", &c);
    wire_reg w;
    assert_true(receive_registration(ctx, ch.from_child, &w));
    assert_true(send_registration(ctx, ch.to_child));
    assert_int_equal(mc_subscriber_matched(sub), 1);
    logs_clear();
    assert_true(wait_count(&c, 200, false));
    /* the subscriber notices (while the child is a zombie not yet waited for), drains what
     * is left and removes the dead segment */
    kill(ch.pid, SIGKILL);
    assert_true(wait_log("is gone", "crash/pub"));
    child_reap(&ch, 0);
    char name[MC_LOCATOR_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)w.locators[0].size, (const char *)w.locators[0].data);
    assert_false(shm_file_exists(name));
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.out_of_order, 0);
    report_to(ctx, &w, false);
    assert_int_equal(mc_subscriber_matched(sub), 0);
    assert_subscriber_alive(ctx, &c, "crash/pub");
    assert_int_equal(mc_context_close(ctx), 0);
    collector_fini(&c);
}

/* Publishes message 1, waits for the word, publishes a message larger than its slots
 * (generation 1), says so, and waits to be killed. */
static int growing_publisher(int to_parent, int from_parent)
{
    mc_publisher *pub = child_matched_publisher("grown-pub", "crash/grown", to_parent, from_parent);
    CHILD_CHECK(pub != NULL);
    char word = 0;
    CHILD_CHECK(publish_seq(pub, 1, 64) == 0);
    CHILD_CHECK(read_all(from_parent, &word, 1));
    CHILD_CHECK(publish_seq(pub, 2, 64 * 1024) == 0);
    CHILD_CHECK(write_all(to_parent, &word, 1));
    for (;;)
        pause();
}

/* A callback that keeps the first message until released. */
typedef struct holder {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    uint64_t got;
    bool release;
} holder;

static void hold_first(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    (void)sub;
    (void)msg;
    holder *h = user;
    pthread_mutex_lock(&h->lock);
    h->got++;
    pthread_cond_broadcast(&h->changed);
    while (h->got == 1 && !h->release)
        pthread_cond_wait(&h->changed, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

static bool holder_wait_first(holder *h)
{
    struct timespec deadline = deadline_in(WAIT_SECONDS);
    pthread_mutex_lock(&h->lock);
    int rc = 0;
    while (h->got == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->changed, &h->lock, &deadline);
    bool ok = h->got > 0;
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/* The publisher grew, was killed, and a new context reaped its files while the subscriber
 * was still in the old generation: that is a loss to tell (of unknown size), not a
 * corrupt segment. */
static void test_a_dead_publishers_reaped_generation_is_a_loss_not_corruption(void **state)
{
    (void)state;
    child ch = child_start(growing_publisher);
    mc_context *ctx = open_ctx_level("", "info");
    holder h = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = hold_first;
    o.user = &h;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "crash/grown", &o, &sub), 0);
    wire_reg w;
    assert_true(receive_registration(ctx, ch.from_child, &w));
    assert_true(send_registration(ctx, ch.to_child));
    assert_int_equal(mc_subscriber_matched(sub), 1);
    assert_true(holder_wait_first(&h));
    char word = 1;
    assert_true(write_all(ch.to_child, &word, 1));
    assert_true(read_all(ch.from_child, &word, 1)); /* generation 1 holds message 2 */
    child_reap(&ch, SIGKILL);
    mc_context *reaper = open_ctx_level("", "warn"); /* a start reaps the dead one's files */
    assert_int_equal(mc_context_close(reaper), 0);
    char name[MC_LOCATOR_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)w.locators[0].size, (const char *)w.locators[0].data);
    assert_false(shm_file_exists(name));
    logs_clear();
    pthread_mutex_lock(&h.lock);
    h.release = true;
    pthread_cond_broadcast(&h.changed);
    pthread_mutex_unlock(&h.lock);
    assert_true(wait_log("is gone", "generation 1: what it wrote there is lost"));
    assert_int_equal(logs_matching("corrupt", NULL), 0);
    assert_int_equal(h.got, 1);
    report_to(ctx, &w, false);
    assert_int_equal(mc_context_close(ctx), 0);
}

static int quiet_subscriber(int to_parent, int from_parent)
{
    mc_context *ctx = child_ctx("", "killed-sub");
    CHILD_CHECK(ctx != NULL);
    mc_subscriber *sub = NULL;
    CHILD_CHECK(mc_subscriber_create(ctx, "crash/sub", NULL, &sub) == 0);
    CHILD_CHECK(send_registration(ctx, to_parent));
    wire_reg w;
    CHILD_CHECK(receive_registration(ctx, from_parent, &w));
    CHILD_CHECK(mc_subscriber_matched(sub) == 1);
    char attached = 1;
    CHILD_CHECK(write_all(to_parent, &attached, 1));
    /* takes messages until killed */
    for (;;) {
        mc_msg *msg = NULL;
        if (mc_take(sub, 1000, &msg) == 0)
            mc_msg_release(msg);
    }
}

static void test_a_killed_subscriber_costs_reliable_sends_no_timeout(void **state)
{
    child ch = child_start(quiet_subscriber);
    mc_context *ctx = open_ctx_level("slots = 4\nack_timeout = 60s\n", "info");
    mc_publisher *pub = publisher(ctx, "crash/sub");
    wire_reg w;
    assert_true(receive_registration(ctx, ch.from_child, &w));
    assert_true(send_registration(ctx, ch.to_child));
    char attached = 0;
    assert_true(read_all(ch.from_child, &attached, 1));
    assert_int_equal(mc_publisher_matched(pub), 1);
    for (uint64_t s = 1; s <= 10; s++)
        assert_int_equal(publish_seq(pub, s, 64), 0);
    logs_clear();
    kill(ch.pid, SIGKILL);
    /* the first send that needs the dead reader finds it gone (a zombie, not yet waited
     * for) instead of waiting 60 s */
    for (uint64_t s = 11; s <= 30; s++)
        assert_int_equal(publish_seq(pub, s, 64), 0);
    child_reap(&ch, 0);
    assert_int_equal(logs_matching("is gone; no longer waiting", "crash/sub"), 1);
    assert_int_equal(logs_matching("ack_timeout", NULL), 0);
    report_to(ctx, &w, false);
    assert_int_equal(mc_context_close(ctx), 0);
    /* its doorbell was left behind, for the reaper (this one, or any memcast process that
     * started meanwhile) */
    char bell[MC_LOCATOR_MAX + 1];
    snprintf(bell, sizeof(bell), "%.*s", (int)w.locators[0].size, (const char *)w.locators[0].data);
    assert_true(mc_shm_reap(false, NULL, NULL) >= 0);
    assert_false(shm_file_exists(bell));
}

/* ---- main ------------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    snprintf(config_dir, sizeof(config_dir), "/tmp/mc-test-shm.XXXXXX");
    if (mkdtemp(config_dir) == NULL)
        return -1;
    mc_set_log_handler(on_log, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    mc_set_log_handler(NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", config_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integrity_from_0_bytes_to_64_mib),
        cmocka_unit_test(test_uncached_copies_keep_every_byte_of_any_length_from_any_address),
        cmocka_unit_test(test_one_to_eight_subscribers),
        cmocka_unit_test(test_one_to_eight_subscribers_woken_by_doorbells),
        cmocka_unit_test(test_growth_across_generations_loses_nothing),
        cmocka_unit_test(test_the_default_ring_follows_the_slot_size),
        cmocka_unit_test(test_slow_subscriber_loses_oldest_and_counts_them),
        cmocka_unit_test(test_reliable_mode_is_lossless_with_a_slow_subscriber),
        cmocka_unit_test(test_reliable_mode_drops_a_stuck_subscriber_once),
        cmocka_unit_test(test_messages_after_the_match_are_not_lost),
        cmocka_unit_test(test_subscribers_beyond_the_table_are_served_best_effort),
        cmocka_unit_test(test_loan_writes_into_shared_memory_and_readers_get_it_in_place),
        cmocka_unit_test(test_segments_get_exactly_the_configured_mode),
        cmocka_unit_test(test_messages_written_before_a_goodbye_are_delivered),
        cmocka_unit_test(test_segments_of_other_users_are_refused_unless_trusted),
        cmocka_unit_test(test_names_stay_inside_dev_shm_and_parse_back),
        cmocka_unit_test(test_looks_back_off_after_misses_and_start_over_after_one_pays),
        cmocka_unit_test(test_files_of_dead_processes_are_reaped),
        cmocka_unit_test(test_a_full_dev_shm_gives_clean_errors),
        cmocka_unit_test(test_a_corrupt_segment_is_dropped_and_the_subscriber_lives_on),
        cmocka_unit_test(test_readers_that_died_inside_slots_do_not_stall_the_writer),
        cmocka_unit_test(test_a_spare_per_subscribing_context),
        cmocka_unit_test(test_readers_wake_a_sleeping_writer_once_all_are_past),
        cmocka_unit_test(test_the_newest_slot_and_a_small_map_sit_beside_write_seq),
        cmocka_unit_test(test_a_commit_wakes_sleeping_readers_through_the_segment),
        cmocka_unit_test(test_without_segment_wake_nothing_arms_the_segment),
        cmocka_unit_test(test_held_spares_do_not_make_the_writer_wait),
        cmocka_unit_test(test_killing_a_publisher_never_hangs_its_subscriber),
        cmocka_unit_test(test_a_dead_publishers_reaped_generation_is_a_loss_not_corruption),
        cmocka_unit_test(test_a_killed_subscriber_costs_reliable_sends_no_timeout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
