/*
 * registration: for plugins with MC_ROLE_REGISTRATION. Two contexts of this process, each
 * with the plugin as its only registration transport, must learn each other's endpoints:
 *  - endpoints_seen:     each context's registry lists the other's publisher or subscriber
 *                        with its kind, topic, type, encoding, pid and host token; a
 *                        destroyed endpoint disappears from the other's registry;
 *  - matched_both_ways:  with a data transport that bridges MC_SCOPE_HOST next to it, a
 *                        publisher and a subscriber in the two contexts both get matched,
 *                        a message flows, and destroying the subscriber gives the
 *                        publisher its UNMATCHED event.
 * A plugin without MC_ROLE_DATA is loaded with a data transport (env->data) because a
 * context needs one.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conformance.h"
#include "context.h"

#define TOPIC    "conformance/registration"
#define TYPE     "conformance.Sample"
#define ENCODING "raw"

/* ---- what a context's registry holds ------------------------------------------------------ */

typedef struct remote_query {
    mc_endpoint_id id; /* a copy: the endpoint is destroyed while it is still looked for */
    const uint8_t *host_token;
    bool found;
    bool fields_ok;
    char wrong[256]; /* the first field that differed */
    mc_endpoint_kind kind;
} remote_query;

static void check_remote(void *user, const mc_remote *r)
{
    remote_query *q = user;
    if (memcmp(&r->id, &q->id, sizeof(q->id)) != 0)
        return;
    q->found = true;
    q->fields_ok = false;
    if (r->kind != q->kind)
        conf_format(q->wrong, sizeof(q->wrong), "kind %d, expected %d", (int)r->kind, (int)q->kind);
    else if (strcmp(r->topic, TOPIC) != 0)
        conf_format(q->wrong, sizeof(q->wrong), "topic '%s', expected '%s'", r->topic, TOPIC);
    else if (strcmp(r->type, TYPE) != 0 || strcmp(r->encoding, ENCODING) != 0)
        conf_format(q->wrong, sizeof(q->wrong), "type '%s' and encoding '%s', expected '%s', '%s'",
                    r->type, r->encoding, TYPE, ENCODING);
    else if (r->pid != (int32_t)getpid())
        conf_format(q->wrong, sizeof(q->wrong), "pid %d, expected %d", (int)r->pid, (int)getpid());
    else if (memcmp(r->host_token, q->host_token, MC_HOST_TOKEN_SIZE) != 0)
        conf_format(q->wrong, sizeof(q->wrong), "another host token than this host's");
    else
        q->fields_ok = true;
}

static void query_registry(mc_context *ctx, remote_query *q)
{
    q->found = false;
    q->fields_ok = false;
    q->wrong[0] = '\0';
    mc_registry_visit(ctx, check_remote, q);
}

static void pause_ms(int ms)
{
    struct timespec t = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* The registry has no event of its own to wait on: it is looked at every 5 ms until it
 * holds (or no longer holds) the endpoint, for at most env->wait_ms. */
static bool registry_lists(const conf_env *env, mc_context *ctx, remote_query *q, bool present)
{
    int64_t deadline = conf_now_ms() + env->wait_ms;
    for (;;) {
        query_registry(ctx, q);
        if (q->found == present)
            return true;
        if (conf_now_ms() >= deadline)
            return false;
        pause_ms(5);
    }
}

static int create_labelled(mc_context *pub_ctx, mc_context *sub_ctx, mc_publisher **pub,
                           mc_subscriber **sub)
{
    mc_pub_options popts;
    mc_pub_options_init(&popts);
    popts.type = TYPE;
    popts.encoding = ENCODING;
    mc_sub_options sopts;
    mc_sub_options_init(&sopts);
    sopts.type = TYPE;
    sopts.encoding = ENCODING;
    int rc = mc_publisher_create(pub_ctx, TOPIC, &popts, pub);
    return rc != 0 ? rc : mc_subscriber_create(sub_ctx, TOPIC, &sopts, sub);
}

static bool seen_by(const conf_env *env, mc_context *ctx, const char *where, remote_query *q,
                    const char *what)
{
    if (!registry_lists(env, ctx, q, true)) {
        conf_fail("%s did not learn of the %s of the other context within %d ms", where, what,
                  env->wait_ms);
        return false;
    }
    if (!q->fields_ok) {
        conf_fail("%s lists the %s of the other context with %s", where, what, q->wrong);
        return false;
    }
    return true;
}

static void registration_endpoints_seen(const conf_env *env)
{
    mc_context *a = NULL, *b = NULL;
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    conf_step("opening two contexts");
    CONF_CALL(conf_context_open(env, &a));
    CONF_CALL(conf_context_open(env, &b));
    conf_step("creating a publisher in context 1 and a subscriber in context 2");
    CONF_CALL(create_labelled(a, b, &pub, &sub));
    remote_query pub_in_b = {
        .id = *mc_publisher_id(pub), .host_token = a->host_token, .kind = MC_KIND_PUBLISHER};
    remote_query sub_in_a = {
        .id = *mc_subscriber_id(sub), .host_token = b->host_token, .kind = MC_KIND_SUBSCRIBER};
    conf_step("waiting until each context lists the other's endpoint");
    CONF_CHECK(seen_by(env, b, "context 2", &pub_in_b, "publisher"));
    CONF_CHECK(seen_by(env, a, "context 1", &sub_in_a, "subscriber"));
    conf_step("destroying the subscriber of context 2");
    CONF_CALL(mc_subscriber_destroy(sub));
    sub = NULL;
    CONF_EXPECT(registry_lists(env, a, &sub_in_a, false),
                "context 1 still lists the subscriber of context 2 %d ms after it was destroyed",
                env->wait_ms);
    conf_step("destroying the publisher of context 1");
    CONF_CALL(mc_publisher_destroy(pub));
    pub = NULL;
    CONF_EXPECT(registry_lists(env, b, &pub_in_b, false),
                "context 2 still lists the publisher of context 1 %d ms after it was destroyed",
                env->wait_ms);
out:
    mc_subscriber_destroy(sub);
    mc_publisher_destroy(pub);
    mc_context_close(b);
    mc_context_close(a);
}

/* ---- matched both ways ------------------------------------------------------------------- */

/* The data transport that would carry samples between the two contexts, or NULL. */
static const char *host_data_transport(const conf_env *env)
{
    const conf_plugin *candidates[] = {env->plugin, env->data};
    for (size_t i = 0; i < 2; i++) {
        const conf_plugin *p = candidates[i];
        if (p != NULL && (p->roles & MC_ROLE_DATA) && (p->scopes & MC_SCOPE_HOST))
            return p->name;
    }
    return NULL;
}

static bool unmatched_once(const conf_sink *sink, const void *arg)
{
    (void)arg;
    return sink->count > 0; /* the events are counted in a sink of their own */
}

static void count_unmatched(void *user, const mc_event *event)
{
    conf_sink *events = user;
    if (event->kind != MC_EVENT_UNMATCHED)
        return;
    pthread_mutex_lock(&events->lock);
    events->count++;
    pthread_cond_broadcast(&events->changed);
    pthread_mutex_unlock(&events->lock);
}

static void registration_matched_both_ways(const conf_env *env)
{
    mc_context *a = NULL, *b = NULL;
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    conf_sink sink, unmatched;
    conf_sink_init(&sink, env);
    conf_sink_init(&unmatched, env);
    const char *carrier = host_data_transport(env);
    if (carrier == NULL) {
        conf_skip("needs a data transport of scope host next to '%s' to match endpoints of two "
                  "contexts; loaded: '%s' (pass --data PLUGIN, for example --data shm)",
                  env->plugin->name, env->data ? env->data->name : env->plugin->name);
        goto out;
    }
    sink.transport = carrier;
    conf_step("opening two contexts");
    CONF_CALL(conf_context_open(env, &a));
    CONF_CALL(conf_context_open(env, &b));
    conf_step("creating a publisher in context 1 and a subscriber in context 2");
    mc_sub_options opts;
    mc_sub_options_init(&opts);
    opts.on_message = conf_sink_callback;
    opts.user = &sink;
    CONF_CALL(mc_subscriber_create(b, TOPIC, &opts, &sub));
    mc_pub_options popts;
    mc_pub_options_init(&popts);
    popts.on_event = count_unmatched;
    popts.user = &unmatched;
    CONF_CALL(mc_publisher_create(a, TOPIC, &popts, &pub));
    CONF_CALL(conf_wait_matched(env, pub, 1, sub, 1));
    conf_step("publishing one message through '%s'", carrier);
    CONF_CHECK(conf_publish_pattern(pub, 1, 64, 1));
    CONF_EXPECT(conf_sink_wait(&sink, env, 1),
                "matched on both sides, but the message published did not arrive");
    CONF_CHECK(conf_sink_verify(&sink, 1, false));
    conf_step("destroying the subscriber: the publisher must get MC_EVENT_UNMATCHED");
    CONF_CALL(mc_subscriber_destroy(sub));
    sub = NULL;
    CONF_EXPECT(conf_sink_wait_for(&unmatched, unmatched_once, NULL, env->wait_ms),
                "the publisher of context 1 got no UNMATCHED event within %d ms of the "
                "subscriber of context 2 being destroyed",
                env->wait_ms);
    CONF_EXPECT(mc_publisher_matched(pub) == 0, "the publisher still counts %zu subscribers",
                mc_publisher_matched(pub));
    conf_note("matched both ways; the message went through '%s'", carrier);
out:
    mc_subscriber_destroy(sub);
    mc_publisher_destroy(pub);
    mc_context_close(b);
    mc_context_close(a);
    conf_sink_fini(&sink);
    conf_sink_fini(&unmatched);
}

const conf_case conf_cases_registration[] = {
    {"registration", "endpoints_seen",
     "two contexts with the plugin as registration list each other's endpoints with their "
     "fields, and drop them when they are destroyed",
     MC_ROLE_REGISTRATION, 0, 0, CONF_MEET_NONE, registration_endpoints_seen},
    {"registration", "matched_both_ways",
     "with a host-scope data transport: publisher and subscriber of two contexts both get "
     "MATCHED, a message flows, destroying the subscriber gives the publisher UNMATCHED",
     MC_ROLE_REGISTRATION, 0, 0, CONF_MEET_NONE, registration_matched_both_ways},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
