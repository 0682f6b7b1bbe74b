/* Publish/subscribe over the inproc transport, end to end through the public API. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <memcast/memcast.h>

#include "context.h"

/* ---- a thread-safe collector the tests wait on (no sleeps) --------------------------------- */

typedef struct collector {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t count;
    size_t bad_payload;
    uint64_t last_seq;
    size_t out_of_order;
    size_t sizes[64];
    int tag; /* test-specific: which subscriber this is */
    /* gate: when closed, callbacks wait until the test opens it */
    bool gate_closed;
    size_t entered;
    mc_publisher *forward; /* callbacks that publish: forward here */
    int forward_rc;
    int destroy_rc;
    mc_subscriber *self;
    mc_context *ctx;
    int close_rc;
    size_t events_matched;
    size_t events_unmatched;
    char event_transport[32];
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

/* Waits until the collector counted at least n messages; false after 10 s. */
static bool collector_wait(collector *c, size_t n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    while (c->count < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->changed, &c->lock, &deadline);
    bool ok = c->count >= n;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* Payload pattern: byte i of message seq is a function of both, so any mix-up shows. */
static unsigned char pattern(uint64_t seq, size_t i)
{
    return (unsigned char)((seq * 131u) ^ (i * 7u) ^ (i >> 8));
}

static void fill(unsigned char *buf, size_t size, uint64_t seq)
{
    for (size_t i = 0; i < size; i++)
        buf[i] = pattern(seq, i);
}

static bool payload_ok(const mc_msg *msg)
{
    const unsigned char *p = mc_msg_data(msg);
    size_t size = mc_msg_size(msg);
    for (size_t i = 0; i < size; i++)
        if (p[i] != pattern(mc_msg_seq(msg), i))
            return false;
    return true;
}

static void collect(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    collector *c = user;
    pthread_mutex_lock(&c->lock);
    c->entered++;
    pthread_cond_broadcast(&c->changed);
    while (c->gate_closed)
        pthread_cond_wait(&c->changed, &c->lock);
    if (!payload_ok(msg))
        c->bad_payload++;
    if (mc_msg_seq(msg) != c->last_seq + 1)
        c->out_of_order++;
    c->last_seq = mc_msg_seq(msg);
    if (c->count < 64)
        c->sizes[c->count] = mc_msg_size(msg);
    c->count++;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

static void on_event(void *user, const mc_event *ev)
{
    collector *c = user;
    pthread_mutex_lock(&c->lock);
    if (ev->kind == MC_EVENT_MATCHED)
        c->events_matched++;
    else
        c->events_unmatched++;
    snprintf(c->event_transport, sizeof(c->event_transport), "%s", ev->transport);
    pthread_mutex_unlock(&c->lock);
}

static mc_subscriber *subscribe(mc_context *ctx, const char *topic, collector *c)
{
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = collect;
    o.on_event = on_event;
    o.user = c;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, topic, &o, &sub), 0);
    return sub;
}

static int publish_seq(mc_publisher *pub, uint64_t seq, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    fill(buf, size, seq);
    int rc = mc_publish(pub, buf, size);
    free(buf);
    return rc;
}

static mc_context *open_context(void)
{
    mc_context *ctx = NULL;
    int rc = mc_context_open(NULL, &ctx);
    if (rc != 0)
        fail_msg("mc_context_open: %s: %s", mc_strerror(rc), mc_last_error());
    return ctx;
}

static int setup(void **state)
{
    /* The default plugins let processes meet: a domain of its own keeps other tests' and
     * other users' endpoints away from these topics. */
    char domain[64];
    snprintf(domain, sizeof(domain), "test_inproc-%d", (int)getpid());
    setenv("MEMCAST_FRAMEWORK_DOMAIN", domain, 1);
    *state = open_context();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    return mc_context_close(*state);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_ordering_and_integrity(void **state)
{
    mc_context *ctx = *state;
    collector c;
    collector_init(&c);
    mc_subscriber *sub = subscribe(ctx, "order", &c);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "order", NULL, &pub), 0);
    assert_int_equal(mc_publisher_matched(pub), 1);
    const size_t n = 20000;
    for (uint64_t seq = 1; seq <= n; seq++)
        assert_int_equal(publish_seq(pub, seq, 16 + seq % 64), 0);
    assert_true(collector_wait(&c, n));
    assert_int_equal(c.count, n);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.bad_payload, 0);
    mc_stats st;
    mc_stats_init(&st);
    assert_int_equal(mc_subscriber_stats(sub, &st), 0);
    assert_int_equal(st.messages, n);
    assert_int_equal(st.dropped[MC_DROP_OVERRUN], 0);
    assert_string_equal(st.transports[0].name, "inproc");
    assert_int_equal(st.transports[0].messages, n);
    assert_int_equal(mc_publisher_stats(pub, &st), 0);
    assert_int_equal(st.messages, n);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
    collector_fini(&c);
}

static void test_sizes_zero_to_16mib(void **state)
{
    mc_context *ctx = *state;
    static const size_t sizes[] = {0, 1, 7, 4096, 65536, 1 << 20, 16 << 20};
    const size_t count = sizeof(sizes) / sizeof(sizes[0]);
    collector c;
    collector_init(&c);
    mc_subscriber *sub = subscribe(ctx, "sizes", &c);
    mc_sub_options po;
    mc_sub_options_init(&po);
    po.queue_depth = count;
    mc_subscriber *pull = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "sizes", &po, &pull), 0);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "sizes", NULL, &pub), 0);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(publish_seq(pub, i + 1, sizes[i]), 0);
    assert_true(collector_wait(&c, count));
    assert_int_equal(c.bad_payload, 0);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(c.sizes[i], sizes[i]);
        mc_msg *msg = NULL;
        assert_int_equal(mc_take(pull, 5000, &msg), 0);
        assert_int_equal(mc_msg_size(msg), sizes[i]);
        assert_int_equal(mc_msg_seq(msg), i + 1);
        assert_true(payload_ok(msg));
        assert_string_equal(mc_msg_transport(msg), "inproc");
        assert_memory_equal(mc_msg_publisher(msg), mc_publisher_id(pub), sizeof(mc_endpoint_id));
        assert_true(mc_msg_send_time_ns(msg) > 1600000000ll * 1000000000ll);
        mc_msg_release(msg);
    }
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(pull);
    mc_subscriber_destroy(sub);
    collector_fini(&c);
}

static void test_thousand_topics(void **state)
{
    mc_context *ctx = *state;
    enum { TOPICS = 1000 };
    collector *cs = calloc(TOPICS, sizeof(*cs));
    mc_subscriber **subs = calloc(TOPICS, sizeof(*subs));
    mc_publisher **pubs = calloc(TOPICS, sizeof(*pubs));
    char topic[64];
    for (int i = 0; i < TOPICS; i++) {
        collector_init(&cs[i]);
        snprintf(topic, sizeof(topic), "fleet/unit%d/state", i);
        subs[i] = subscribe(ctx, topic, &cs[i]);
        assert_int_equal(mc_publisher_create(ctx, topic, NULL, &pubs[i]), 0);
    }
    for (int i = 0; i < TOPICS; i++) {
        /* each topic gets i % 3 + 1 messages, so cross-talk would change a count */
        for (int k = 0; k < i % 3 + 1; k++)
            assert_int_equal(publish_seq(pubs[i], (uint64_t)k + 1, (size_t)i), 0);
    }
    for (int i = 0; i < TOPICS; i++) {
        assert_true(collector_wait(&cs[i], (size_t)(i % 3 + 1)));
        assert_int_equal(cs[i].bad_payload, 0);
        assert_int_equal(cs[i].sizes[0], (size_t)i);
    }
    for (int i = 0; i < TOPICS; i++) {
        mc_publisher_destroy(pubs[i]);
        mc_subscriber_destroy(subs[i]);
        assert_int_equal(cs[i].count, (size_t)(i % 3 + 1));
        collector_fini(&cs[i]);
    }
    free(cs);
    free(subs);
    free(pubs);
}

static void test_unsubscribe_stops_delivery(void **state)
{
    mc_context *ctx = *state;
    collector a, b, pe;
    collector_init(&a);
    collector_init(&b);
    collector_init(&pe);
    mc_subscriber *sa = subscribe(ctx, "unsub", &a);
    mc_subscriber *sb = subscribe(ctx, "unsub", &b);
    mc_pub_options o;
    mc_pub_options_init(&o);
    o.on_event = on_event;
    o.user = &pe;
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "unsub", &o, &pub), 0);
    assert_int_equal(pe.events_matched, 2);
    assert_string_equal(pe.event_transport, "inproc");
    assert_int_equal(a.events_matched, 1);
    assert_int_equal(mc_publisher_matched(pub), 2);
    assert_int_equal(publish_seq(pub, 1, 10), 0);
    assert_true(collector_wait(&a, 1));
    assert_true(collector_wait(&b, 1));
    assert_int_equal(mc_subscriber_destroy(sa), 0);
    assert_int_equal(pe.events_unmatched, 1);
    assert_int_equal(mc_publisher_matched(pub), 1);
    for (uint64_t seq = 2; seq <= 50; seq++)
        assert_int_equal(publish_seq(pub, seq, 10), 0);
    assert_true(collector_wait(&b, 50));
    assert_int_equal(a.count, 1);
    mc_publisher_destroy(pub);
    assert_int_equal(b.events_unmatched, 1);
    mc_subscriber_destroy(sb);
    collector_fini(&a);
    collector_fini(&b);
    collector_fini(&pe);
}

/* A callback that publishes: ping -> (callback) -> pong. */
static void forward(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    collector *c = user;
    int rc = mc_publish(c->forward, mc_msg_data(msg), mc_msg_size(msg));
    pthread_mutex_lock(&c->lock);
    if (rc != 0)
        c->forward_rc = rc;
    c->count++;
    pthread_mutex_unlock(&c->lock);
}

static void test_callbacks_that_publish(void **state)
{
    mc_context *ctx = *state;
    collector relay, sink;
    collector_init(&relay);
    collector_init(&sink);
    mc_subscriber *pongs = subscribe(ctx, "pong", &sink);
    assert_int_equal(mc_publisher_create(ctx, "pong", NULL, &relay.forward), 0);
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = forward;
    o.user = &relay;
    mc_subscriber *pings = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "ping", &o, &pings), 0);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "ping", NULL, &pub), 0);
    for (uint64_t seq = 1; seq <= 500; seq++)
        assert_int_equal(publish_seq(pub, seq, 100), 0);
    assert_true(collector_wait(&sink, 500));
    assert_int_equal(relay.forward_rc, 0);
    assert_int_equal(sink.bad_payload, 0);
    assert_int_equal(sink.out_of_order, 0);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(pings);
    mc_publisher_destroy(relay.forward);
    mc_subscriber_destroy(pongs);
    collector_fini(&relay);
    collector_fini(&sink);
}

static void try_destroy_self(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    collector *c = user;
    int rc = mc_subscriber_destroy(sub);
    int close_rc = mc_context_close(c->ctx);
    pthread_mutex_lock(&c->lock);
    c->destroy_rc = rc;
    c->close_rc = close_rc;
    c->count++;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

static void test_destroy_inside_own_callback_is_refused(void **state)
{
    mc_context *ctx = *state;
    collector c;
    collector_init(&c);
    c.ctx = ctx;
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = try_destroy_self;
    o.user = &c;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "self", &o, &sub), 0);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "self", NULL, &pub), 0);
    assert_int_equal(mc_publish(pub, "x", 1), 0);
    assert_true(collector_wait(&c, 1));
    assert_int_equal(c.destroy_rc, MC_EBUSY);
    assert_int_equal(c.close_rc, MC_EBUSY);
    assert_int_equal(mc_subscriber_destroy(sub), 0);
    mc_publisher_destroy(pub);
    collector_fini(&c);
}

typedef struct destroy_in_event {
    mc_subscriber *victim;
    int rc;
    int calls;
} destroy_in_event;

static void destroy_victim(void *user, const mc_event *ev)
{
    destroy_in_event *d = user;
    if (ev->kind == MC_EVENT_MATCHED && d->calls++ == 0)
        d->rc = mc_subscriber_destroy(d->victim);
}

/* An event callback runs under the registry lock: destroying an endpoint there could wait
 * for a transport thread that waits for that lock, so it is refused. */
static void test_destroy_inside_event_callback_is_refused(void **state)
{
    mc_context *ctx = *state;
    destroy_in_event d = {0};
    assert_int_equal(mc_subscriber_create(ctx, "victim", NULL, &d.victim), 0);
    mc_pub_options o;
    mc_pub_options_init(&o);
    o.on_event = destroy_victim;
    o.user = &d;
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "victim", &o, &pub), 0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, MC_EBUSY);
    /* the victim is intact and still receives */
    assert_int_equal(mc_publish(pub, "alive", 5), 0);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(d.victim, 5000, &msg), 0);
    assert_memory_equal(mc_msg_data(msg), "alive", 5);
    mc_msg_release(msg);
    assert_int_equal(mc_subscriber_destroy(d.victim), 0);
    mc_publisher_destroy(pub);
}

static void test_loan_and_commit(void **state)
{
    mc_context *ctx = *state;
    collector c;
    collector_init(&c);
    mc_subscriber *sub = subscribe(ctx, "loan", &c);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "loan", NULL, &pub), 0);
    void *buf = NULL, *second = NULL;
    assert_int_equal(mc_loan(pub, 1 << 20, &buf), 0);
    assert_int_equal(mc_loan(pub, 10, &second), MC_EBUSY);
    fill(buf, 1000, 1); /* seq 1: the first message of this publisher */
    assert_int_equal(mc_commit(pub, buf, 1000), 0);
    assert_true(collector_wait(&c, 1));
    assert_int_equal(c.sizes[0], 1000);
    assert_int_equal(c.bad_payload, 0);
    /* a commit larger than the loan ends the loan with an error */
    assert_int_equal(mc_loan(pub, 16, &buf), 0);
    assert_int_equal(mc_commit(pub, buf, 17), MC_EMSGSIZE);
    assert_non_null(strstr(mc_last_error(), "16-byte loan"));
    /* a foreign pointer is not the loan */
    char other[4];
    assert_int_equal(mc_loan(pub, 16, &buf), 0);
    assert_int_equal(mc_commit(pub, other, 4), MC_EINVAL);
    assert_int_equal(mc_loan_discard(pub, buf), 0);
    assert_int_equal(mc_loan_discard(pub, buf), MC_EINVAL);
    /* with no subscriber the loan falls back to the heap and still works */
    mc_subscriber_destroy(sub);
    assert_int_equal(mc_loan(pub, 64, &buf), 0);
    assert_int_equal(mc_commit(pub, buf, 64), 0);
    mc_publisher_destroy(pub);
    assert_int_equal(c.count, 1);
    collector_fini(&c);
}

static void test_pull_mode(void **state)
{
    mc_context *ctx = *state;
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.queue_depth = 4;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "pull", &o, &sub), 0);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(sub, 0, &msg), MC_EAGAIN);
    assert_int_equal(mc_take(sub, 20, &msg), MC_ETIMEDOUT);
    assert_null(msg);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "pull", NULL, &pub), 0);
    for (uint64_t seq = 1; seq <= 10; seq++)
        assert_int_equal(publish_seq(pub, seq, 32), 0);
    /* pull mode has no callback to signal us: poll the counters until all ten were
     * handed over (six of them then dropped), for at most 10 s */
    mc_stats st;
    mc_stats_init(&st);
    time_t give_up = time(NULL) + 10;
    /* the count goes up before the copy is queued (and the oldest dropped): wait for both */
    do {
        mc_subscriber_stats(sub, &st);
    } while ((st.messages < 10 || st.dropped[MC_DROP_OVERRUN] < 6) && time(NULL) < give_up &&
             sched_yield() == 0);
    assert_int_equal(st.messages, 10);
    assert_int_equal(st.dropped[MC_DROP_OVERRUN], 6);
    for (uint64_t seq = 7; seq <= 10; seq++) {
        assert_int_equal(mc_take(sub, 1000, &msg), 0);
        assert_int_equal(mc_msg_seq(msg), seq);
        assert_true(payload_ok(msg));
        mc_msg_release(msg);
    }
    assert_int_equal(mc_take(sub, 0, &msg), MC_EAGAIN);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
}

static void test_take_on_callback_subscriber_is_invalid(void **state)
{
    collector c;
    collector_init(&c);
    mc_subscriber *sub = subscribe(*state, "cb", &c);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(sub, 0, &msg), MC_EINVAL);
    mc_subscriber_destroy(sub);
    collector_fini(&c);
}

static void test_wait_matched(void **state)
{
    mc_context *ctx = *state;
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "wait", NULL, &pub), 0);
    assert_int_equal(mc_publisher_wait_matched(pub, 1, 30), MC_ETIMEDOUT);
    assert_non_null(strstr(mc_last_error(), "0 of 1"));
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "wait", NULL, &sub), 0);
    assert_int_equal(mc_publisher_wait_matched(pub, 1, 1000), 0);
    assert_int_equal(mc_subscriber_wait_matched(sub, 1, 0), 0);
    assert_int_equal(mc_subscriber_matched(sub), 1);
    mc_subscriber_destroy(sub);
    assert_int_equal(mc_publisher_matched(pub), 0);
    mc_publisher_destroy(pub);
}

static void test_type_mismatch_does_not_match(void **state)
{
    mc_context *ctx = *state;
    mc_pub_options po;
    mc_pub_options_init(&po);
    po.type = "imu";
    po.encoding = "raw";
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "typed", &po, &pub), 0);
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.type = "gps";
    mc_subscriber *wrong = NULL, *untyped = NULL, *right = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "typed", &so, &wrong), 0);
    assert_int_equal(mc_subscriber_matched(wrong), 0);
    assert_int_equal(mc_subscriber_create(ctx, "typed", NULL, &untyped), 0);
    assert_int_equal(mc_subscriber_matched(untyped), 1);
    so.type = "imu";
    so.encoding = "raw";
    assert_int_equal(mc_subscriber_create(ctx, "typed", &so, &right), 0);
    assert_int_equal(mc_publisher_matched(pub), 2);
    mc_subscriber_destroy(wrong);
    mc_subscriber_destroy(untyped);
    mc_subscriber_destroy(right);
    mc_publisher_destroy(pub);
}

static mc_sample sample_of(const mc_endpoint_id *publisher, uint64_t seq)
{
    return (mc_sample){.struct_size = sizeof(mc_sample),
                       .data = "dup",
                       .size = 3,
                       .publisher = *publisher,
                       .seq = seq};
}

/* Feeds samples straight into the framework's delivery entry, as a second transport
 * delivering the same samples would. */
static void test_duplicates_are_dropped(void **state)
{
    mc_context *ctx = *state;
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.queue_depth = 100;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "dedup", &o, &sub), 0);
    mc_binding *binding = &((mc_endpoint *)sub)->bindings[0];
    mc_endpoint_id peer = {.context_hi = 1, .context_lo = 2, .serial = 3};
    static const uint64_t seqs[] = {1, 2, 2, 3, 1, 5, 4, 4, 200, 100, 199, 200};
    /* 100 is more than 64 behind 200: too old to tell, dropped as a duplicate */
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        mc_sample s = sample_of(&peer, seqs[i]);
        mc_deliver(NULL, binding, &s);
    }
    mc_sample bad = sample_of(&peer, 300);
    bad.data = NULL; /* 3 bytes at NULL: invalid */
    mc_deliver(NULL, binding, &bad);
    mc_stats st;
    mc_stats_init(&st);
    assert_int_equal(mc_subscriber_stats(sub, &st), 0);
    assert_int_equal(st.messages, 7); /* 1 2 3 5 4 200 199 */
    assert_int_equal(st.dropped[MC_DROP_DUPLICATE], 5);
    assert_int_equal(st.dropped[MC_DROP_INVALID], 1);
    static const uint64_t expect[] = {1, 2, 3, 5, 4, 200, 199};
    for (size_t i = 0; i < 7; i++) {
        mc_msg *msg = NULL;
        assert_int_equal(mc_take(sub, 0, &msg), 0);
        assert_int_equal(mc_msg_seq(msg), expect[i]);
        mc_msg_release(msg);
    }
    /* per publisher: a second one, and losses a transport attributes to each */
    mc_endpoint_id other = {.context_hi = 4, .context_lo = 5, .serial = 6};
    mc_sample s = sample_of(&other, 1);
    mc_deliver(NULL, binding, &s);
    mc_dropped_from(NULL, binding, &other, MC_DROP_LOST, 4);
    mc_dropped_from(NULL, binding, &peer, MC_DROP_LOST, 2);
    mc_source_stats sources[3];
    size_t count = 0;
    assert_int_equal(mc_subscriber_sources(sub, sources, 3, &count), 0);
    assert_int_equal(count, 2);
    assert_memory_equal(&sources[0].publisher, &peer, sizeof(peer));
    assert_int_equal(sources[0].messages, 7);
    assert_int_equal(sources[0].dropped[MC_DROP_DUPLICATE], 5);
    assert_int_equal(sources[0].dropped[MC_DROP_LOST], 2);
    assert_memory_equal(&sources[1].publisher, &other, sizeof(other));
    assert_int_equal(sources[1].messages, 1);
    assert_int_equal(sources[1].dropped[MC_DROP_LOST], 4);
    assert_int_equal(mc_subscriber_stats(sub, &st), 0);
    assert_int_equal(st.dropped[MC_DROP_LOST], 6); /* in the totals too */
    count = 0;
    assert_int_equal(mc_subscriber_sources(sub, NULL, 0, &count), 0); /* just the count */
    assert_int_equal(count, 2);
    assert_int_equal(mc_subscriber_sources(sub, NULL, 1, &count), MC_EINVAL);
    assert_int_equal(mc_subscriber_sources(NULL, sources, 1, &count), MC_EINVAL);
    mc_subscriber_destroy(sub);
}

static mc_context *open_with_env(const char *name, const char *value, const char *name2,
                                 const char *value2)
{
    setenv(name, value, 1);
    if (name2)
        setenv(name2, value2, 1);
    mc_context *ctx = open_context();
    unsetenv(name);
    if (name2)
        unsetenv(name2);
    return ctx;
}

static void test_max_message_size(void **state)
{
    mc_context *ctx = open_with_env("MEMCAST_INPROC_MAX_MESSAGE_SIZE", "1K", NULL, NULL);
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "limit", NULL, &sub), 0);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "limit", NULL, &pub), 0);
    assert_int_equal(publish_seq(pub, 1, 1024), 0);
    assert_int_equal(publish_seq(pub, 2, 1025), MC_EMSGSIZE);
    assert_non_null(strstr(mc_last_error(), "topic 'limit'"));
    assert_non_null(strstr(mc_last_error(), "1025"));
    assert_non_null(strstr(mc_last_error(), "1024"));
    void *buf = NULL;
    assert_int_equal(mc_loan(pub, 1025, &buf), MC_EMSGSIZE);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(sub, 5000, &msg), 0);
    assert_int_equal(mc_msg_size(msg), 1024);
    mc_msg_release(msg);
    assert_int_equal(mc_take(sub, 20, &msg), MC_ETIMEDOUT);
    mc_context_close(ctx);
}

static void test_drop_oldest_counts_losses(void **state)
{
    mc_context *ctx =
        open_with_env("MEMCAST_INPROC_OVERFLOW", "drop_oldest", "MEMCAST_INPROC_QUEUE_DEPTH", "4");
    collector c;
    collector_init(&c);
    c.gate_closed = true;
    mc_subscriber *sub = subscribe(ctx, "slow", &c);
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "slow", NULL, &pub), 0);
    assert_int_equal(publish_seq(pub, 1, 8), 0);
    /* wait until the first message is inside the (blocked) callback */
    pthread_mutex_lock(&c.lock);
    while (c.entered == 0)
        pthread_cond_wait(&c.changed, &c.lock);
    pthread_mutex_unlock(&c.lock);
    for (uint64_t seq = 2; seq <= 20; seq++)
        assert_int_equal(publish_seq(pub, seq, 8), 0);
    pthread_mutex_lock(&c.lock);
    c.gate_closed = false;
    pthread_cond_broadcast(&c.changed);
    pthread_mutex_unlock(&c.lock);
    assert_true(collector_wait(&c, 4));
    mc_publisher_destroy(pub);
    mc_stats st;
    mc_stats_init(&st);
    mc_subscriber_stats(sub, &st);
    /* the message inside the callback still counts against the depth of 4: it, the newest
     * three, and sixteen overwritten */
    assert_int_equal(st.dropped[MC_DROP_OVERRUN], 16);
    assert_int_equal(c.count, 4);
    assert_int_equal(c.last_seq, 20);
    assert_int_equal(c.bad_payload, 0);
    mc_subscriber_destroy(sub);
    mc_context_close(ctx);
    collector_fini(&c);
}

static void test_close_with_open_endpoints(void **state)
{
    mc_context *ctx = open_context();
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "left/open", NULL, &pub), 0);
    assert_int_equal(mc_subscriber_create(ctx, "left/open", NULL, &sub), 0);
    assert_int_equal(mc_publish(pub, "abc", 3), 0);
    /* close frees both endpoints and the queued message; valgrind/ASan check the rest */
    assert_int_equal(mc_context_close(ctx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordering_and_integrity),
        cmocka_unit_test(test_sizes_zero_to_16mib),
        cmocka_unit_test(test_thousand_topics),
        cmocka_unit_test(test_unsubscribe_stops_delivery),
        cmocka_unit_test(test_callbacks_that_publish),
        cmocka_unit_test(test_destroy_inside_own_callback_is_refused),
        cmocka_unit_test(test_destroy_inside_event_callback_is_refused),
        cmocka_unit_test(test_loan_and_commit),
        cmocka_unit_test(test_pull_mode),
        cmocka_unit_test(test_take_on_callback_subscriber_is_invalid),
        cmocka_unit_test(test_wait_matched),
        cmocka_unit_test(test_type_mismatch_does_not_match),
        cmocka_unit_test(test_duplicates_are_dropped),
        cmocka_unit_test(test_max_message_size),
        cmocka_unit_test(test_drop_oldest_counts_losses),
        cmocka_unit_test(test_close_with_open_endpoints),
    };
    return cmocka_run_group_tests_name("inproc", tests, setup, teardown);
}
