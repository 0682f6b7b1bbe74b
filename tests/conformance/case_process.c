/*
 * Two processes (MC_SCOPE_HOST or MC_SCOPE_NETWORK), each with its own context, meeting
 * through registration (the plugin's own MC_ROLE_REGISTRATION or --registration):
 *  - multiprocess: a forked publisher and a forked subscriber exchange 1000 messages;
 *  - robustness:   the publisher is killed with SIGKILL in mid-stream; the subscriber
 *                  process neither hangs nor crashes, and a new publisher reaches it.
 * The case process itself never opens a context: it only forks, signals and waits.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance.h"

#define TOPIC               "conformance/process"
#define PROCESS_MESSAGES    1000
#define FIRST_STREAM_SEEN   100 /* messages of the first publisher before it is killed */
#define SECOND_PUB_MESSAGES 100

typedef struct process_plan {
    int to_case[2];    /* subscriber -> case: "first publisher seen" */
    int sub_done[2];   /* subscriber -> publisher: "got everything, you may close" */
    uint64_t messages; /* multiprocess: how many the subscriber expects */
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

static int subscriber_main(const conf_env *env, void *arg)
{
    process_plan *plan = arg;
    mc_context *ctx = NULL;
    mc_subscriber *sub = NULL;
    conf_sink sink;
    int rc = 1;
    conf_sink_init(&sink, env);
    CONF_CALL(conf_context_open(env, &ctx));
    CONF_CALL(conf_subscribe(ctx, TOPIC, &sink, &sub));
    if (!plan->robustness) {
        CONF_EXPECT(conf_sink_wait(&sink, env, plan->messages),
                    "the subscriber process received %llu of %llu messages",
                    (unsigned long long)conf_sink_count(&sink), (unsigned long long)plan->messages);
        CONF_EXPECT(conf_sink_verify(&sink, plan->messages, env->plugin->caps & MC_CAP_ORDERED),
                    "bad delivery between processes");
    } else {
        publisher_count first = {0, FIRST_STREAM_SEEN};
        CONF_EXPECT(conf_sink_wait_for(&sink, publisher_reached, &first, env->wait_ms),
                    "the subscriber received %llu messages of the first publisher, waited for %d",
                    (unsigned long long)conf_sink_count(&sink), FIRST_STREAM_SEEN);
        CONF_EXPECT(write_byte(plan->to_case[1]), "cannot signal the case process");
        publisher_count second = {1, SECOND_PUB_MESSAGES};
        CONF_EXPECT(conf_sink_wait_for(&sink, publisher_reached, &second, env->wait_ms),
                    "after the first publisher was killed, a new publisher's messages did not "
                    "arrive (%zu publishers seen, %llu messages)",
                    sink.pub_count, (unsigned long long)conf_sink_count(&sink));
        CONF_EXPECT(sink.bad_payload == 0 && sink.wrong_transport == 0,
                    "%llu damaged messages, %llu from another transport",
                    (unsigned long long)sink.bad_payload, (unsigned long long)sink.wrong_transport);
    }
    CONF_EXPECT(write_byte(plan->sub_done[1]), "cannot signal the publisher");
    rc = 0;
out:
    mc_subscriber_destroy(sub);
    mc_context_close(ctx);
    conf_sink_fini(&sink);
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

/* Publishes count messages and waits for the subscriber to confirm it has them all. */
static int publisher_main(const conf_env *env, void *arg)
{
    process_plan *plan = arg;
    mc_context *ctx = NULL;
    mc_publisher *pub = NULL;
    int rc = 1;
    uint64_t count = plan->robustness ? SECOND_PUB_MESSAGES : plan->messages;
    CONF_CALL(publisher_open(env, &ctx, &pub));
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

static bool plan_open(process_plan *plan)
{
    plan->to_case[0] = plan->to_case[1] = plan->sub_done[0] = plan->sub_done[1] = -1;
    if (pipe(plan->to_case) == 0 && pipe(plan->sub_done) == 0)
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
    CONF_CHECK(plan_open(&plan));
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
}

static void robustness_publisher_killed(const conf_env *env)
{
    process_plan plan = {.robustness = true};
    int sub = -1, doomed = -1, second = -1;
    CONF_CHECK(plan_open(&plan));
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
}

const conf_case conf_cases_multiprocess[] = {
    {"multiprocess", "pub_sub",
     "a publisher process and a subscriber process (own contexts) exchange 1000 messages", 0,
     MC_SCOPE_HOST | MC_SCOPE_NETWORK, true, multiprocess_pub_sub},
    {NULL, NULL, NULL, 0, 0, false, NULL},
};

const conf_case conf_cases_robustness[] = {
    {"robustness", "publisher_killed",
     "kill -9 of a publisher mid-stream: the subscriber process neither hangs nor crashes and "
     "a new publisher reaches it",
     0, MC_SCOPE_HOST | MC_SCOPE_NETWORK, true, robustness_publisher_killed},
    {NULL, NULL, NULL, 0, 0, false, NULL},
};
