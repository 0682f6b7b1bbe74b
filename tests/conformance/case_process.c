/*
 * Two processes (MC_SCOPE_HOST or MC_SCOPE_NETWORK), each with its own context, meeting
 * through registration (the plugin's own MC_ROLE_REGISTRATION, --registration or udp).
 * A publisher publishes only once both sides are matched: its own wait_matched, and the
 * subscriber's word (a pipe) that it saw the MATCHED event for this publisher. When the
 * plugin claims MC_CAP_RELIABLE, lossless delivery is asked for (conf_ask_reliable).
 *  - multiprocess: a forked publisher and a forked subscriber exchange 1000 messages;
 *  - robustness:   the publisher is killed with SIGKILL in mid-stream; the subscriber
 *                  process neither hangs nor crashes, and a new publisher reaches it.
 * The case process itself never opens a context: it only forks, signals and waits.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance.h"

#define TOPIC               "conformance/process"
#define PROCESS_MESSAGES    1000
#define FIRST_STREAM_SEEN   100 /* messages of the first publisher before it is killed */
#define SECOND_PUB_MESSAGES 100

typedef struct process_plan {
    int to_case[2];     /* subscriber -> case: "first publisher seen" */
    int sub_done[2];    /* subscriber -> publisher: "got everything, you may close" */
    int sub_matched[2]; /* subscriber -> publisher: "matched with you, publish" */
    uint64_t messages;  /* multiprocess: how many the subscriber expects */
    bool robustness;
} process_plan;

static bool write_byte(int fd)
{
    char c = 1;
    return write(fd, &c, 1) == 1;
}

/* Waits up to ms for a byte on fd; false on timeout or when the writer went away. */
static bool read_byte(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    char c;
    return rc == 1 && read(fd, &c, 1) == 1;
}

static void close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    fds[0] = fds[1] = -1;
}

/* ---- the subscriber process ----------------------------------------------------------------- */

typedef struct publisher_count {
    size_t index;
    uint64_t count;
} publisher_count;

static bool publisher_reached(const conf_sink *sink, const void *arg)
{
    const publisher_count *want = arg;
    return sink->pub_count > want->index && sink->pubs[want->index].count >= want->count;
}

/* A sink that also records the publishers the subscriber got MATCHED events for. The sink
 * comes first: the message callback takes the same user pointer as a conf_sink. */
#define MATCHES_MAX 8

typedef struct matching_sink {
    conf_sink sink;
    mc_endpoint_id matched[MATCHES_MAX];
    size_t matched_count;
} matching_sink;

static void record_match(void *user, const mc_event *event)
{
    matching_sink *m = user;
    if (event->kind != MC_EVENT_MATCHED)
        return;
    pthread_mutex_lock(&m->sink.lock);
    if (m->matched_count < MATCHES_MAX)
        m->matched[m->matched_count++] = event->peer;
    pthread_cond_broadcast(&m->sink.changed);
    pthread_mutex_unlock(&m->sink.lock);
}

/* Holds when a publisher other than *arg (NULL: any) was matched. */
static bool matched_other(const conf_sink *sink, const void *arg)
{
    const matching_sink *m = (const matching_sink *)sink;
    for (size_t i = 0; i < m->matched_count; i++)
        if (arg == NULL || memcmp(&m->matched[i], arg, sizeof(mc_endpoint_id)) != 0)
            return true;
    return false;
}

/* Waits for the MATCHED event of a publisher other than not_this, then tells the
 * publishers that they may publish. */
static bool announce_matched(const conf_env *env, process_plan *plan, matching_sink *m,
                             const mc_endpoint_id *not_this)
{
    conf_step("subscriber process: waiting for the MATCHED event of %s publisher",
              not_this ? "a new" : "the");
    if (!conf_sink_wait_for(&m->sink, matched_other, not_this, env->wait_ms)) {
        conf_fail("the subscriber process got no MATCHED event for %s publisher within %d ms "
                  "(registration through '%s')",
                  not_this ? "the new" : "the", env->wait_ms,
                  env->registration ? env->registration->name : "?");
        return false;
    }
    if (!write_byte(plan->sub_matched[1])) {
        conf_fail("cannot signal the publisher");
        return false;
    }
    return true;
}

static int subscribe_matching(mc_context *ctx, matching_sink *m, mc_subscriber **out)
{
    mc_sub_options opts;
    mc_sub_options_init(&opts);
    opts.on_message = conf_sink_callback;
    opts.on_event = record_match;
    opts.user = m;
    return mc_subscriber_create(ctx, TOPIC, &opts, out);
}

static int subscriber_main(const conf_env *env, void *arg)
{
    process_plan *plan = arg;
    mc_context *ctx = NULL;
    mc_subscriber *sub = NULL;
    matching_sink m;
    conf_sink *sink = &m.sink;
    int rc = 1;
    memset(&m, 0, sizeof(m));
    conf_sink_init(sink, env);
    CONF_CALL(conf_context_open(env, &ctx));
    CONF_CALL(subscribe_matching(ctx, &m, &sub));
    if (!plan->robustness) {
        CONF_CHECK(announce_matched(env, plan, &m, NULL));
        CONF_EXPECT(conf_sink_wait(sink, env, plan->messages),
                    "the subscriber process received %llu of %llu messages",
                    (unsigned long long)conf_sink_count(sink), (unsigned long long)plan->messages);
        CONF_EXPECT(conf_sink_verify(sink, plan->messages, env->plugin->caps & MC_CAP_ORDERED),
                    "bad delivery between processes");
    } else {
        publisher_count first = {0, FIRST_STREAM_SEEN};
        CONF_EXPECT(conf_sink_wait_for(sink, publisher_reached, &first, env->wait_ms),
                    "the subscriber received %llu messages of the first publisher, waited for %d",
                    (unsigned long long)conf_sink_count(sink), FIRST_STREAM_SEEN);
        CONF_EXPECT(write_byte(plan->to_case[1]), "cannot signal the case process");
        mc_endpoint_id doomed = sink->pubs[0].id;
        CONF_CHECK(announce_matched(env, plan, &m, &doomed));
        publisher_count second = {1, SECOND_PUB_MESSAGES};
        CONF_EXPECT(conf_sink_wait_for(sink, publisher_reached, &second, env->wait_ms),
                    "after the first publisher was killed, a new publisher's messages did not "
                    "arrive (%zu publishers seen, %llu messages)",
                    sink->pub_count, (unsigned long long)conf_sink_count(sink));
        CONF_EXPECT(sink->bad_payload == 0 && sink->wrong_transport == 0,
                    "%llu damaged messages, %llu from another transport",
                    (unsigned long long)sink->bad_payload,
                    (unsigned long long)sink->wrong_transport);
    }
    CONF_EXPECT(write_byte(plan->sub_done[1]), "cannot signal the publisher");
    rc = 0;
out:
    mc_subscriber_destroy(sub);
    mc_context_close(ctx);
    conf_sink_fini(sink);
    return rc;
}

/* ---- the publisher processes ---------------------------------------------------------------- */

static int publisher_open(const conf_env *env, mc_context **ctx, mc_publisher **pub)
{
    int rc = conf_context_open(env, ctx);
    if (rc == 0)
        rc = mc_publisher_create(*ctx, TOPIC, NULL, pub);
    if (rc == 0)
        rc = mc_publisher_wait_matched(*pub, 1, env->wait_ms);
    return rc;
}

/* Publishes count messages once both sides are matched and waits for the subscriber to
 * confirm it has them all. */
static int publisher_main(const conf_env *env, void *arg)
{
    process_plan *plan = arg;
    mc_context *ctx = NULL;
    mc_publisher *pub = NULL;
    int rc = 1;
    uint64_t count = plan->robustness ? SECOND_PUB_MESSAGES : plan->messages;
    CONF_CALL(publisher_open(env, &ctx, &pub));
    conf_step("publisher process: waiting for the subscriber's MATCHED event");
    CONF_EXPECT(read_byte(plan->sub_matched[0], env->wait_ms),
                "the subscriber process did not report the publisher matched within %d ms",
                env->wait_ms);
    conf_step("publisher process: publishing %llu messages", (unsigned long long)count);
    CONF_EXPECT(conf_publish_pattern(pub, count, 200, 1), "publishing from another process failed");
    CONF_EXPECT(read_byte(plan->sub_done[0], env->wait_ms),
                "the subscriber process did not confirm receipt");
    rc = 0;
out:
    mc_publisher_destroy(pub);
    mc_context_close(ctx);
    return rc;
}

/* Publishes until it is killed (or, as a safety net, until the wait time ends). */
static int doomed_publisher_main(const conf_env *env, void *arg)
{
    mc_context *ctx = NULL;
    mc_publisher *pub = NULL;
    unsigned char buf[200];
    CONF_CALL(publisher_open(env, &ctx, &pub));
    int64_t end = conf_now_ms() + env->wait_ms;
    for (uint64_t seq = 1; conf_now_ms() < end; seq++) {
        conf_fill(buf, sizeof(buf), seq);
        int rc = mc_publish(pub, buf, sizeof(buf));
        if (rc != 0 && rc != MC_EAGAIN)
            CONF_CALL(rc);
    }
out:
    mc_publisher_destroy(pub);
    mc_context_close(ctx);
    return 1; /* it was meant to be killed */
}

/* ---- the cases --------------------------------------------------------------------------------
 */

/* Asks for lossless delivery before any process of the case opens a context: what the
 * subscriber counts must all arrive. */
static void ask_reliable(const conf_env *env)
{
    if (!(env->plugin->caps & MC_CAP_RELIABLE))
        return;
    char asked[256];
    conf_ask_reliable(env, asked, sizeof(asked));
    conf_note("reliability asked: %s", asked);
}

static bool plan_open(const conf_env *env, process_plan *plan)
{
    plan->to_case[0] = plan->to_case[1] = plan->sub_done[0] = plan->sub_done[1] = -1;
    plan->sub_matched[0] = plan->sub_matched[1] = -1;
    ask_reliable(env);
    if (pipe(plan->to_case) == 0 && pipe(plan->sub_done) == 0 && pipe(plan->sub_matched) == 0)
        return true;
    conf_fail("pipe: %s", strerror(errno));
    return false;
}

static bool exited_cleanly(int status, const char *who)
{
    if (status == -1) {
        conf_fail("the %s process hung: killed after the case's wait time", who);
        return false;
    }
    if (WIFSIGNALED(status)) {
        conf_fail("the %s process crashed with signal %d (%s)", who, WTERMSIG(status),
                  strsignal(WTERMSIG(status)));
        return false;
    }
    if (WEXITSTATUS(status) != 0) {
        conf_fail("the %s process failed (exit status %d)", who, WEXITSTATUS(status));
        return false;
    }
    return true;
}

static int reap_ms(const conf_env *env)
{
    return env->timeout_s * 1000 - 1000 > env->wait_ms ? env->timeout_s * 1000 - 1000
                                                       : env->wait_ms;
}

static void multiprocess_pub_sub(const conf_env *env)
{
    process_plan plan = {.messages = PROCESS_MESSAGES};
    int sub = -1, pub = -1;
    CONF_CHECK(plan_open(env, &plan));
    conf_step("forking a subscriber process and a publisher process");
    sub = conf_spawn(subscriber_main, env, &plan);
    pub = conf_spawn(publisher_main, env, &plan);
    CONF_EXPECT(sub > 0 && pub > 0, "fork failed");
    conf_step("waiting for both processes (%d messages between them)", PROCESS_MESSAGES);
    int sub_status = conf_reap(sub, reap_ms(env));
    int pub_status = conf_reap(pub, reap_ms(env));
    sub = pub = -1;
    bool ok = exited_cleanly(sub_status, "subscriber");
    ok &= exited_cleanly(pub_status, "publisher");
    CONF_EXPECT(ok, "the two processes did not exchange the messages");
out:
    conf_reap(sub, 0);
    conf_reap(pub, 0);
    close_pair(plan.to_case);
    close_pair(plan.sub_done);
    close_pair(plan.sub_matched);
}

static void robustness_publisher_killed(const conf_env *env)
{
    process_plan plan = {.robustness = true};
    int sub = -1, doomed = -1, second = -1;
    CONF_CHECK(plan_open(env, &plan));
    conf_step("forking a subscriber and a publisher that publishes until it is killed");
    sub = conf_spawn(subscriber_main, env, &plan);
    doomed = conf_spawn(doomed_publisher_main, env, &plan);
    CONF_EXPECT(sub > 0 && doomed > 0, "fork failed");
    conf_step("waiting until the subscriber has %d messages of the first publisher",
              FIRST_STREAM_SEEN);
    CONF_EXPECT(read_byte(plan.to_case[0], env->wait_ms),
                "the subscriber never received %d messages of the first publisher",
                FIRST_STREAM_SEEN);
    conf_step("killing the publisher with SIGKILL in mid-stream");
    kill(doomed, SIGKILL);
    int doomed_status = conf_reap(doomed, env->wait_ms);
    doomed = -1;
    CONF_EXPECT(doomed_status != -1 && WIFSIGNALED(doomed_status),
                "the first publisher was not killed by the signal (it ended by itself?)");
    conf_step("forking a new publisher; the subscriber must receive %d messages from it",
              SECOND_PUB_MESSAGES);
    second = conf_spawn(publisher_main, env, &plan);
    CONF_EXPECT(second > 0, "fork failed");
    int sub_status = conf_reap(sub, reap_ms(env));
    int second_status = conf_reap(second, reap_ms(env));
    sub = second = -1;
    bool ok = exited_cleanly(sub_status, "subscriber");
    ok &= exited_cleanly(second_status, "second publisher");
    CONF_EXPECT(ok, "the subscriber did not survive the publisher's death");
out:
    if (doomed > 0)
        kill(doomed, SIGKILL);
    conf_reap(doomed, 0);
    conf_reap(sub, 0);
    conf_reap(second, 0);
    close_pair(plan.to_case);
    close_pair(plan.sub_done);
    close_pair(plan.sub_matched);
}

const conf_case conf_cases_multiprocess[] = {
    {"multiprocess", "pub_sub",
     "a publisher process and a subscriber process (own contexts) exchange 1000 messages",
     MC_ROLE_DATA, 0, MC_SCOPE_HOST | MC_SCOPE_NETWORK, CONF_MEET_PROCESSES, multiprocess_pub_sub},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};

const conf_case conf_cases_robustness[] = {
    {"robustness", "publisher_killed",
     "kill -9 of a publisher mid-stream: the subscriber process neither hangs nor crashes and "
     "a new publisher reaches it",
     MC_ROLE_DATA, 0, MC_SCOPE_HOST | MC_SCOPE_NETWORK, CONF_MEET_PROCESSES,
     robustness_publisher_killed},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
