/*
 * lifecycle: everything a plugin takes it gives back. Contexts and endpoints are opened
 * and closed many times; file descriptors (/proc/self/fd), threads (/proc/self/task) and
 * the case's names in /dev/shm must not grow. One warm-up cycle runs first so that
 * one-time allocations of the C library or the loader do not count.
 */
#include <stdio.h>

#include "conformance.h"

#define CONTEXT_CYCLES  100
#define ENDPOINT_CYCLES 1000

static void lifecycle_context_cycles(const conf_env *env)
{
    mc_context *ctx = NULL;
    conf_resources before, after;
    conf_step("warm-up: opening and closing one context");
    CONF_CALL(conf_context_open(env, &ctx));
    CONF_CALL(mc_context_close(ctx));
    ctx = NULL;
    conf_resources_count(env, &before);
    for (int i = 1; i <= CONTEXT_CYCLES; i++) {
        conf_step("context open/close cycle %d of %d", i, CONTEXT_CYCLES);
        CONF_CALL(conf_context_open(env, &ctx));
        CONF_CALL(mc_context_close(ctx));
        ctx = NULL;
    }
    conf_resources_count(env, &after);
    CONF_CHECK(conf_resources_same(env, &before, &after, "100 context open/close cycles"));
    conf_note("%d cycles; before and after: fds %d, threads %d, /dev/shm names %d", CONTEXT_CYCLES,
              after.fds, after.threads, after.shm_names);
out:
    mc_context_close(ctx);
}

/* One publisher and one matched subscriber, closed in alternating order. */
static int endpoint_cycle(mc_context *ctx, int i)
{
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    int rc = mc_publisher_create(ctx, "conformance/lifecycle", NULL, &pub);
    if (rc == 0)
        rc = mc_subscriber_create(ctx, "conformance/lifecycle", NULL, &sub);
    if (i % 2 == 0) {
        int a = mc_subscriber_destroy(sub);
        int b = mc_publisher_destroy(pub);
        return rc ? rc : a ? a : b;
    }
    int a = mc_publisher_destroy(pub);
    int b = mc_subscriber_destroy(sub);
    return rc ? rc : a ? a : b;
}

static void lifecycle_endpoint_cycles(const conf_env *env)
{
    mc_context *ctx = NULL;
    conf_resources before, after;
    conf_step("opening a context");
    CONF_CALL(conf_context_open(env, &ctx));
    conf_step("warm-up: one publisher and subscriber");
    CONF_CALL(endpoint_cycle(ctx, 0));
    conf_resources_count(env, &before);
    for (int i = 1; i <= ENDPOINT_CYCLES; i++) {
        conf_step("endpoint open/close cycle %d of %d", i, ENDPOINT_CYCLES);
        CONF_CALL(endpoint_cycle(ctx, i));
    }
    conf_resources_count(env, &after);
    CONF_CHECK(conf_resources_same(env, &before, &after,
                                   "1000 publisher and subscriber open/close cycles"));
    conf_note("%d cycles; before and after: fds %d, threads %d, /dev/shm names %d", ENDPOINT_CYCLES,
              after.fds, after.threads, after.shm_names);
out:
    mc_context_close(ctx);
}

const conf_case conf_cases_lifecycle[] = {
    {"lifecycle", "context_cycles",
     "100 context open/close: no growth in fds, threads or /dev/shm names", 0, 0, 0, CONF_MEET_NONE,
     lifecycle_context_cycles},
    {"lifecycle", "endpoint_cycles",
     "1000 publisher+subscriber open/close in one context: no growth in fds, threads, names", 0, 0,
     0, CONF_MEET_NONE, lifecycle_endpoint_cycles},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
