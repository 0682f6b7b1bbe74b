/*
 * Delivery promises between a publisher and a subscriber of this process (in one context
 * for MC_SCOPE_PROCESS, else in two joined by registration), each held to what the plugin
 * declares:
 *  - limits:      the largest message it reports works; one byte more is MC_EMSGSIZE and
 *                 nothing else breaks;
 *  - ordering:    MC_CAP_ORDERED, 10,000 messages arrive in sequence order;
 *  - zerocopy:    MC_CAP_ZERO_COPY, loans deliver what was written, discards deliver nothing,
 *                 a loan above the limit fails cleanly;
 *  - reliable:    MC_CAP_RELIABLE, a slow subscriber loses nothing;
 *  - concurrency: MC_CAP_THREAD_SAFE, 4 threads on 4 publishers, everything arrives in
 *                 order per publisher.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "conformance.h"

#define TEST_SIZE_CAP     (64u * 1024u * 1024u) /* larger limits are tested at this size */
#define ORDERING_MESSAGES 10000
#define RELIABLE_MESSAGES 5000
#define RELIABLE_DELAY_NS 50000 /* per message in the slow subscriber */
#define THREADS           4
#define THREAD_MESSAGES   5000

static bool has_cap(const conf_env *env, uint32_t cap)
{
    return (env->plugin->caps & cap) != 0;
}

/* ---- limits ----------------------------------------------------------------------------- */

static void limits_max_size(const conf_env *env)
{
    conf_pair pair;
    unsigned char *buf = NULL;
    uint64_t limit = env->plugin->max_message_size;
    size_t size = limit > TEST_SIZE_CAP ? TEST_SIZE_CAP : (size_t)limit;
    CONF_CALL(conf_pair_open(env, "conformance/limits", &pair));
    if (limit > TEST_SIZE_CAP)
        conf_note("limit %llu bytes; tested at the %u-byte cap", (unsigned long long)limit,
                  TEST_SIZE_CAP);
    CONF_EXPECT((buf = malloc(size ? size : 1)) != NULL, "out of memory for %zu bytes", size);
    conf_fill(buf, size, 1);
    conf_step("publishing one message of %zu bytes (the limit the plugin reports)", size);
    CONF_CALL(mc_publish(pair.pub, buf, size));
    conf_step("waiting for the %zu-byte message", size);
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 1), "the %zu-byte message did not arrive", size);
    CONF_CHECK(conf_sink_verify(&pair.sink, 1, false));
    CONF_EXPECT(conf_sink_last_size(&pair.sink) == size, "it arrived with %zu bytes, sent %zu",
                conf_sink_last_size(&pair.sink), size);
out:
    conf_pair_close(&pair);
    free(buf);
}

/* An over-limit buffer that costs no memory: nothing may ever read it. */
static void *untouched_buffer(uint64_t size)
{
    if (size > SIZE_MAX)
        return NULL;
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void limits_over_max(const conf_env *env)
{
    conf_pair pair;
    uint64_t limit = env->plugin->max_message_size;
    void *big = NULL;
    CONF_CALL(conf_pair_open(env, "conformance/limits", &pair));
    if (limit >= SIZE_MAX || (big = untouched_buffer(limit + 1)) == NULL) {
        conf_skip("the limit (%llu bytes) is too large to exceed on this machine",
                  (unsigned long long)limit);
        goto out;
    }
    conf_step("publishing %llu bytes, one more than the limit", (unsigned long long)limit + 1);
    int rc = mc_publish(pair.pub, big, (size_t)limit + 1);
    CONF_EXPECT(rc == MC_EMSGSIZE, "publishing %llu bytes returned %d (%s), expected MC_EMSGSIZE",
                (unsigned long long)limit + 1, rc, mc_strerror(rc));
    conf_step("publishing a small message after the refusal");
    CONF_EXPECT(conf_publish_pattern(pair.pub, 1, limit < 16 ? (size_t)limit : 16, 1),
                "the publisher does not work after refusing an oversized message");
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 1), "the message after the refusal did not arrive");
    CONF_CHECK(conf_sink_verify(&pair.sink, 1, false));
out:
    if (big != NULL)
        munmap(big, (size_t)limit + 1);
    conf_pair_close(&pair);
}

/* ---- ordering ---------------------------------------------------------------------------- */

static void ordering_single_publisher(const conf_env *env)
{
    conf_pair pair;
    char asked[256] = "";
    if (has_cap(env, MC_CAP_RELIABLE))
        conf_ask_reliable(env, asked, sizeof(asked));
    CONF_CALL(conf_pair_open(env, "conformance/ordering", &pair));
    conf_step("publishing %d messages", ORDERING_MESSAGES);
    CONF_CHECK(conf_publish_pattern(pair.pub, ORDERING_MESSAGES, 24, 1));
    conf_step("waiting for %d messages", ORDERING_MESSAGES);
    uint64_t got = conf_sink_settle(&pair.sink, env, pair.sub, ORDERING_MESSAGES);
    if (has_cap(env, MC_CAP_RELIABLE))
        CONF_EXPECT(got == ORDERING_MESSAGES, "%llu of %d messages arrived (reliability asked: %s)",
                    (unsigned long long)got, ORDERING_MESSAGES, asked);
    CONF_EXPECT(got > 0, "no message arrived");
    CONF_CHECK(conf_sink_verify(&pair.sink, got, true));
    conf_note("%llu of %d messages arrived, in order", (unsigned long long)got, ORDERING_MESSAGES);
out:
    conf_pair_close(&pair);
}

/* ---- zero-copy ---------------------------------------------------------------------------- */

static int loan_write_commit(mc_publisher *pub, size_t loan_size, size_t commit_size, uint64_t seq,
                             void **loaned)
{
    void *buf = NULL;
    int rc = mc_loan(pub, loan_size, &buf);
    if (rc != 0)
        return rc;
    if (buf == NULL)
        return MC_EINTERNAL;
    conf_fill(buf, commit_size, seq);
    if (loaned != NULL)
        *loaned = buf;
    return mc_commit(pub, buf, commit_size);
}

static void zerocopy_loan_commit(const conf_env *env)
{
    conf_pair pair;
    void *loaned = NULL;
    CONF_CALL(conf_pair_open(env, "conformance/zerocopy", &pair));
    conf_step("loaning 4096 bytes, writing and committing them");
    CONF_CALL(loan_write_commit(pair.pub, 4096, 4096, 1, &loaned));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 1), "the committed message did not arrive");
    CONF_EXPECT(conf_sink_last_size(&pair.sink) == 4096,
                "it arrived with %zu bytes, committed 4096", conf_sink_last_size(&pair.sink));
    if (!env->two_contexts) /* two contexts map the memory at two addresses */
        conf_note("the subscriber %s", conf_sink_last_data(&pair.sink) == loaned
                                           ? "read the loaned buffer itself (no copy)"
                                           : "read a copy of the loaned buffer");
    conf_step("loaning 4096 bytes and committing the first 1000");
    CONF_CALL(loan_write_commit(pair.pub, 4096, 1000, 2, NULL));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 2), "the partly committed message did not arrive");
    CONF_EXPECT(conf_sink_last_size(&pair.sink) == 1000,
                "it arrived with %zu bytes, committed 1000", conf_sink_last_size(&pair.sink));
    for (uint64_t seq = 3; seq <= 102; seq++) {
        conf_step("loan and commit %llu of 100", (unsigned long long)seq - 2);
        CONF_CALL(loan_write_commit(pair.pub, 256, 256, seq, NULL));
    }
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 102), "%llu of 102 committed messages arrived",
                (unsigned long long)conf_sink_count(&pair.sink));
    CONF_CHECK(conf_sink_verify(&pair.sink, 102, has_cap(env, MC_CAP_ORDERED)));
out:
    conf_pair_close(&pair);
}

static void zerocopy_loan_discard(const conf_env *env)
{
    conf_pair pair;
    conf_resources before, after;
    CONF_CALL(conf_pair_open(env, "conformance/zerocopy", &pair));
    void *buf = NULL;
    conf_step("loaning 512 bytes and discarding the loan");
    CONF_CALL(mc_loan(pair.pub, 512, &buf));
    memset(buf, 0xee, 512);
    CONF_CALL(mc_loan_discard(pair.pub, buf));
    conf_resources_count(env, &before);
    for (int i = 1; i <= 1000; i++) {
        conf_step("loan and discard %d of 1000", i);
        CONF_CALL(mc_loan(pair.pub, 512, &buf));
        CONF_CALL(mc_loan_discard(pair.pub, buf));
    }
    conf_resources_count(env, &after);
    CONF_CHECK(conf_resources_same(env, &before, &after, "1000 loans discarded"));
    conf_step("loaning again and committing");
    CONF_CALL(loan_write_commit(pair.pub, 512, 512, 1, NULL));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 1), "the committed message did not arrive");
    CONF_EXPECT(conf_sink_verify(&pair.sink, 1, false),
                "discarded loans were delivered (or the commit after them was damaged)");
out:
    conf_pair_close(&pair);
}

static void zerocopy_loan_over_limit(const conf_env *env)
{
    conf_pair pair;
    uint64_t limit = env->plugin->max_message_size;
    void *buf = NULL;
    CONF_CALL(conf_pair_open(env, "conformance/zerocopy", &pair));
    if (limit >= SIZE_MAX) {
        conf_skip("the limit (%llu bytes) cannot be exceeded", (unsigned long long)limit);
        goto out;
    }
    conf_step("loaning %llu bytes, one more than the limit", (unsigned long long)limit + 1);
    int rc = mc_loan(pair.pub, (size_t)limit + 1, &buf);
    CONF_EXPECT(rc == MC_EMSGSIZE, "a loan of %llu bytes returned %d (%s), expected MC_EMSGSIZE",
                (unsigned long long)limit + 1, rc, mc_strerror(rc));
    if (limit <= TEST_SIZE_CAP) {
        conf_step("loaning exactly the limit, %llu bytes, and discarding it",
                  (unsigned long long)limit);
        CONF_CALL(mc_loan(pair.pub, (size_t)limit, &buf));
        CONF_CALL(mc_loan_discard(pair.pub, buf));
    }
    conf_step("loaning a small buffer after the refusal");
    size_t small = limit < 16 ? (size_t)limit : 16;
    CONF_CALL(loan_write_commit(pair.pub, small, small, 1, NULL));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 1), "the message after the refusal did not arrive");
    CONF_CHECK(conf_sink_verify(&pair.sink, 1, false));
out:
    conf_pair_close(&pair);
}

/* ---- reliable ------------------------------------------------------------------------------ */

static void reliable_slow_subscriber(const conf_env *env)
{
    conf_pair pair;
    char asked[256];
    conf_ask_reliable(env, asked, sizeof(asked));
    if (!env->two_contexts) /* two contexts note it themselves */
        conf_note("reliability asked: %s", asked);
    CONF_CALL(conf_pair_open(env, "conformance/reliable", &pair));
    conf_sink_set_checks(&pair.sink, true, RELIABLE_DELAY_NS);
    conf_step("publishing %d messages to a subscriber that takes 50 us for each",
              RELIABLE_MESSAGES);
    CONF_CHECK(conf_publish_pattern(pair.pub, RELIABLE_MESSAGES, 256, 1));
    uint64_t when_done = conf_sink_count(&pair.sink);
    conf_note("when the last publish returned the subscriber had %llu of %d",
              (unsigned long long)when_done, RELIABLE_MESSAGES);
    conf_step("waiting for %d messages", RELIABLE_MESSAGES);
    uint64_t got = conf_sink_settle(&pair.sink, env, pair.sub, RELIABLE_MESSAGES);
    mc_stats sub_stats, pub_stats;
    mc_stats_init(&sub_stats);
    mc_stats_init(&pub_stats);
    CONF_CALL(mc_subscriber_stats(pair.sub, &sub_stats));
    CONF_CALL(mc_publisher_stats(pair.pub, &pub_stats));
    CONF_EXPECT(got == RELIABLE_MESSAGES && conf_dropped(&sub_stats) == 0,
                "a slow subscriber lost messages: %llu of %d arrived, %llu reported dropped",
                (unsigned long long)got, RELIABLE_MESSAGES,
                (unsigned long long)conf_dropped(&sub_stats));
    CONF_EXPECT(conf_dropped(&pub_stats) == 0, "the publisher reports %llu messages dropped",
                (unsigned long long)conf_dropped(&pub_stats));
    CONF_CHECK(conf_sink_verify(&pair.sink, RELIABLE_MESSAGES, has_cap(env, MC_CAP_ORDERED)));
    CONF_EXPECT(pair.sink.pubs[0].gaps == 0, "%llu gaps in the sequence numbers",
                (unsigned long long)pair.sink.pubs[0].gaps);
out:
    conf_pair_close(&pair);
}

/* ---- concurrency --------------------------------------------------------------------------- */

typedef struct publisher_thread {
    pthread_t thread;
    pthread_barrier_t *start;
    mc_publisher *pub;
    bool ok;
} publisher_thread;

static void *publish_from_thread(void *arg)
{
    publisher_thread *t = arg;
    pthread_barrier_wait(t->start); /* all four publish at the same time */
    t->ok = conf_publish_pattern(t->pub, THREAD_MESSAGES, 32, 1);
    return NULL;
}

static bool start_publishers(publisher_thread *threads, pthread_barrier_t *start)
{
    for (int i = 0; i < THREADS; i++) {
        threads[i].start = start;
        if (pthread_create(&threads[i].thread, NULL, publish_from_thread, &threads[i]) != 0) {
            conf_fail("pthread_create failed");
            return false;
        }
    }
    return true;
}

static void concurrency_publishers(const conf_env *env)
{
    conf_pair pair;
    publisher_thread threads[THREADS];
    pthread_barrier_t start;
    char asked[256] = "not asked (no MC_CAP_RELIABLE)";
    bool reliable = has_cap(env, MC_CAP_RELIABLE);
    bool started = false;
    memset(threads, 0, sizeof(threads));
    pthread_barrier_init(&start, NULL, THREADS);
    if (reliable)
        conf_ask_reliable(env, asked, sizeof(asked));
    CONF_CALL(conf_pair_open(env, "conformance/concurrency", &pair));
    threads[0].pub = pair.pub;
    for (int i = 1; i < THREADS; i++) {
        CONF_CALL(
            mc_publisher_create(pair.pub_ctx, "conformance/concurrency", NULL, &threads[i].pub));
        CONF_CALL(conf_wait_matched(env, threads[i].pub, 1, pair.sub, (size_t)i + 1));
    }
    conf_step("4 threads publishing %d messages each on their own publisher", THREAD_MESSAGES);
    started = start_publishers(threads, &start);
    for (int i = 0; started && i < THREADS; i++)
        pthread_join(threads[i].thread, NULL);
    started = false;
    for (int i = 0; i < THREADS; i++)
        CONF_EXPECT(threads[i].ok, "publisher thread %d failed", i + 1);
    conf_step("waiting for %d messages", THREADS * THREAD_MESSAGES);
    uint64_t got = conf_sink_settle(&pair.sink, env, pair.sub, THREADS * THREAD_MESSAGES);
    if (reliable)
        CONF_EXPECT(got == THREADS * THREAD_MESSAGES,
                    "%llu of %d messages arrived (reliability "
                    "asked: %s)",
                    (unsigned long long)got, THREADS * THREAD_MESSAGES, asked);
    CONF_CHECK(conf_sink_verify(&pair.sink, got, has_cap(env, MC_CAP_ORDERED)));
    CONF_EXPECT(pair.sink.pub_count == THREADS, "messages came from %zu publishers, expected %d",
                pair.sink.pub_count, THREADS);
    for (size_t i = 0; reliable && i < pair.sink.pub_count; i++)
        CONF_EXPECT(pair.sink.pubs[i].count == THREAD_MESSAGES,
                    "publisher %zu: %llu of %d messages arrived", i + 1,
                    (unsigned long long)pair.sink.pubs[i].count, THREAD_MESSAGES);
out:
    for (int i = 0; started && i < THREADS; i++)
        pthread_join(threads[i].thread, NULL);
    for (int i = 1; i < THREADS; i++)
        mc_publisher_destroy(threads[i].pub);
    conf_pair_close(&pair);
    pthread_barrier_destroy(&start);
}

/* ---- tables -------------------------------------------------------------------------------- */

const conf_case conf_cases_limits[] = {
    {"limits", "max_size",
     "a message of the reported max_message_size (capped at 64 MiB) arrives intact", MC_ROLE_DATA,
     0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, limits_max_size},
    {"limits", "over_max",
     "one byte over the limit is MC_EMSGSIZE; the publisher keeps working afterwards", MC_ROLE_DATA,
     0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, limits_over_max},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};

const conf_case conf_cases_ordering[] = {
    {"ordering", "single_publisher", "10,000 messages of one publisher arrive in seq order",
     MC_ROLE_DATA, MC_CAP_ORDERED, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS,
     ordering_single_publisher},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};

const conf_case conf_cases_zerocopy[] = {
    {"zerocopy", "loan_commit",
     "mc_loan + mc_commit deliver the written bytes, also a partial commit; 100 in a row",
     MC_ROLE_DATA, MC_CAP_ZERO_COPY, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS,
     zerocopy_loan_commit},
    {"zerocopy", "loan_discard",
     "a discarded loan delivers nothing and leaks nothing (1000 loans); the next loan works",
     MC_ROLE_DATA, MC_CAP_ZERO_COPY, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS,
     zerocopy_loan_discard},
    {"zerocopy", "loan_over_limit",
     "a loan one byte over the limit is MC_EMSGSIZE; loans keep working afterwards", MC_ROLE_DATA,
     MC_CAP_ZERO_COPY, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS,
     zerocopy_loan_over_limit},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};

const conf_case conf_cases_reliable[] = {
    {"reliable", "slow_subscriber",
     "a subscriber slower than the publisher loses nothing: 5000 arrive, 0 dropped", MC_ROLE_DATA,
     MC_CAP_RELIABLE, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS,
     reliable_slow_subscriber},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};

const conf_case conf_cases_concurrency[] = {
    {"concurrency", "publishers",
     "4 threads x 5000 messages on their own publishers: all arrive, in order per publisher",
     MC_ROLE_DATA, MC_CAP_THREAD_SAFE, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS,
     concurrency_publishers},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
