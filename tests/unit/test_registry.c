/* The framework's side of registration: announcing local endpoints, validating and
 * matching remote ones, choosing the transport by scope, and unmatching. Two fake
 * transports (one reaching the host, one the network, both carrying registration) are
 * put into a real context next to inproc and record what the framework asks of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "context.h"

/* ---- a recording fake transport ---------------------------------------------------------- */

typedef struct fake {
    const mc_host *host;
    int announced;
    int withdrawn;
    mc_endpoint_id last_announced;
    uint32_t last_locator_count;
    char last_locator_transport[32];
    int pub_connects;
    int pub_disconnects;
    int sub_connects;
    int sub_disconnects;
    char last_locator[MC_LOCATOR_MAX + 1];
    uint32_t last_scope;
} fake;

static fake fakes[2];

struct mc_plugin_pub {
    fake *f;
};
struct mc_plugin_sub {
    fake *f;
};

static int fake_init(const mc_host *host, mc_plugin **out)
{
    return MC_ENOSYS; /* never called: the test instantiates the fakes itself */
}

static void fake_fini(mc_plugin *p)
{
}

static int fake_limits(mc_plugin *p, mc_plugin_limits *out)
{
    out->max_message_size = 1 << 20;
    return 0;
}

static int fake_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                         mc_plugin_pub **out)
{
    mc_plugin_pub *pub = malloc(sizeof(*pub));
    pub->f = (fake *)p;
    *out = pub;
    return 0;
}

static void fake_pub_close(mc_plugin_pub *pub)
{
    free(pub);
}

static int fake_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                         mc_plugin_sub **out)
{
    mc_plugin_sub *sub = malloc(sizeof(*sub));
    sub->f = (fake *)p;
    *out = sub;
    return 0;
}

static void fake_sub_close(mc_plugin_sub *sub)
{
    free(sub);
}

static void remember_peer(fake *f, const mc_peer *peer)
{
    memset(f->last_locator, 0, sizeof(f->last_locator));
    if (peer->locator)
        memcpy(f->last_locator, peer->locator, peer->locator_size);
    f->last_scope = peer->scope;
}

static int fake_pub_connect(mc_plugin_pub *pub, const mc_peer *peer)
{
    pub->f->pub_connects++;
    remember_peer(pub->f, peer);
    return 0;
}

static void fake_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *id)
{
    pub->f->pub_disconnects++;
}

static int fake_sub_connect(mc_plugin_sub *sub, const mc_peer *peer)
{
    sub->f->sub_connects++;
    remember_peer(sub->f, peer);
    return 0;
}

static void fake_sub_disconnect(mc_plugin_sub *sub, const mc_endpoint_id *id)
{
    sub->f->sub_disconnects++;
}

static int fake_send(mc_plugin_pub *pub, const mc_sample *s)
{
    return 0;
}

static int fake_pub_locator(mc_plugin_pub *pub, void *buf, size_t size)
{
    return snprintf(buf, size, "pub-at-%s", pub->f == &fakes[0] ? "host" : "net");
}

static int fake_announce(mc_plugin *p, const mc_registration *reg)
{
    fake *f = (fake *)p;
    f->announced++;
    f->last_announced = reg->id;
    f->last_locator_count = reg->locator_count;
    if (reg->locator_count > 0)
        snprintf(f->last_locator_transport, sizeof(f->last_locator_transport), "%s",
                 reg->locators[0].transport);
    return 0;
}

static void fake_withdraw(mc_plugin *p, const mc_registration *reg)
{
    ((fake *)p)->withdrawn++;
}

static const mc_plugin_ops fake_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = fake_init,
    .fini = fake_fini,
    .limits = fake_limits,
    .pub_open = fake_pub_open,
    .pub_close = fake_pub_close,
    .sub_open = fake_sub_open,
    .sub_close = fake_sub_close,
    .pub_connect = fake_pub_connect,
    .pub_disconnect = fake_pub_disconnect,
    .send = fake_send,
    .sub_connect = fake_sub_connect,
    .sub_disconnect = fake_sub_disconnect,
    .pub_locator = fake_pub_locator,
    .reg_announce = fake_announce,
    .reg_withdraw = fake_withdraw,
};

static const mc_plugin_descriptor fake_host_desc = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "fakehost",
    .version = "1",
    .description = "test",
    .roles = MC_ROLE_DATA | MC_ROLE_REGISTRATION,
    .scopes = MC_SCOPE_HOST,
    .ops = &fake_ops,
};

static const mc_plugin_descriptor fake_net_desc = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "fakenet",
    .version = "1",
    .description = "test",
    .roles = MC_ROLE_DATA | MC_ROLE_REGISTRATION,
    .scopes = MC_SCOPE_HOST | MC_SCOPE_NETWORK,
    .ops = &fake_ops,
};

/* Adds a fake transport to an open context, as if loaded, after inproc. */
static mc_transport *add_fake(mc_context *ctx, const mc_plugin_descriptor *desc, fake *f)
{
    mc_transport *tp = calloc(1, sizeof(*tp));
    tp->ctx = ctx;
    tp->desc = desc;
    tp->ops = desc->ops;
    tp->instance = (mc_plugin *)f;
    tp->limits.max_message_size = 1 << 20;
    tp->host.struct_size = sizeof(tp->host);
    tp->host.ctx = (mc_host_ctx *)tp;
    ctx->transports[ctx->transport_count++] = tp;
    return tp;
}

typedef struct world {
    mc_context *ctx;
    mc_transport *host_tp;
    mc_transport *net_tp;
} world;

static int setup(void **state)
{
    memset(fakes, 0, sizeof(fakes));
    setenv("MEMCAST_FRAMEWORK_PLUGINS", "inproc", 1); /* the fakes are the transports under test */
    world *w = calloc(1, sizeof(*w));
    if (mc_context_open(NULL, &w->ctx) != 0)
        return -1;
    w->host_tp = add_fake(w->ctx, &fake_host_desc, &fakes[0]);
    w->net_tp = add_fake(w->ctx, &fake_net_desc, &fakes[1]);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    mc_endpoint_free_all(w->ctx);
    /* the fakes are not loaded plugins: take them out before the context stops the rest */
    w->ctx->transport_count -= 2;
    free(w->host_tp);
    free(w->net_tp);
    int rc = mc_context_close(w->ctx);
    free(w);
    return rc;
}

/* A registration as another process on this host (or another host) would send it. */
typedef struct remote_reg {
    mc_registration reg;
    mc_locator locators[2];
} remote_reg;

static remote_reg make_remote(const mc_context *ctx, mc_endpoint_kind kind, const char *topic,
                              bool same_host, uint64_t serial)
{
    remote_reg r;
    memset(&r, 0, sizeof(r));
    r.reg.struct_size = sizeof(r.reg);
    r.reg.kind = kind;
    r.reg.id = (mc_endpoint_id){.context_hi = 0xabc, .context_lo = 0xdef, .serial = serial};
    r.reg.topic = topic;
    r.reg.type = "";
    r.reg.encoding = "";
    memcpy(r.reg.host_token, ctx->host_token, MC_HOST_TOKEN_SIZE);
    if (!same_host)
        r.reg.host_token[0] ^= 0xff;
    r.reg.pid = 4242;
    snprintf(r.locators[0].transport, sizeof(r.locators[0].transport), "fakehost");
    memcpy(r.locators[0].data, "shm-name", 8);
    r.locators[0].size = 8;
    snprintf(r.locators[1].transport, sizeof(r.locators[1].transport), "fakenet");
    memcpy(r.locators[1].data, "10.0.0.1:9", 10);
    r.locators[1].size = 10;
    r.reg.locator_count = 2;
    r.reg.locators = r.locators;
    return r;
}

/* r was returned by value: point its locators at its own copy before use. */
static void report(world *w, mc_transport *via, remote_reg *r, bool alive)
{
    if (r->reg.locators != NULL)
        r->reg.locators = r->locators;
    mc_host_remote((mc_host_ctx *)via, &r->reg, alive);
}

/* ---- events ---------------------------------------------------------------------------- */

typedef struct events {
    int matched;
    int unmatched;
    char transport[32];
    size_t count_after;
} events;

static void on_event(void *user, const mc_event *ev)
{
    events *e = user;
    if (ev->kind == MC_EVENT_MATCHED)
        e->matched++;
    else
        e->unmatched++;
    snprintf(e->transport, sizeof(e->transport), "%s", ev->transport);
    e->count_after = ev->matched;
}

static mc_publisher *publisher_with_events(mc_context *ctx, const char *topic, events *e)
{
    mc_pub_options o;
    mc_pub_options_init(&o);
    o.on_event = on_event;
    o.user = e;
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, topic, &o, &pub), 0);
    return pub;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_local_endpoints_are_announced_and_withdrawn(void **state)
{
    world *w = *state;
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(w->ctx, "cam/front", NULL, &pub), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fakes[i].announced, 1);
        assert_memory_equal(&fakes[i].last_announced, mc_publisher_id(pub), sizeof(mc_endpoint_id));
        /* inproc stays private to the process: only the two fakes are offered */
        assert_int_equal(fakes[i].last_locator_count, 2);
        assert_string_equal(fakes[i].last_locator_transport, "fakehost");
    }
    mc_publisher_destroy(pub);
    assert_int_equal(fakes[0].withdrawn, 1);
    assert_int_equal(fakes[1].withdrawn, 1);
}

static void test_remote_subscriber_on_same_host_uses_host_transport(void **state)
{
    world *w = *state;
    events e = {0};
    mc_publisher *pub = publisher_with_events(w->ctx, "cam/front", &e);
    remote_reg r = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "cam/front", true, 7);
    report(w, w->net_tp, &r, true);
    assert_int_equal(e.matched, 1);
    assert_string_equal(e.transport, "fakehost");
    assert_int_equal(mc_publisher_matched(pub), 1);
    assert_int_equal(fakes[0].pub_connects, 1);
    assert_int_equal(fakes[1].pub_connects, 0);
    assert_string_equal(fakes[0].last_locator, "shm-name");
    assert_int_equal(fakes[0].last_scope, MC_SCOPE_HOST);
    /* the same report again (a heartbeat or re-announcement) changes nothing */
    report(w, w->net_tp, &r, true);
    assert_int_equal(e.matched, 1);
    assert_int_equal(fakes[0].pub_connects, 1);
    /* gone */
    report(w, w->net_tp, &r, false);
    assert_int_equal(e.unmatched, 1);
    assert_int_equal(e.count_after, 0);
    assert_int_equal(fakes[0].pub_disconnects, 1);
    assert_int_equal(mc_publisher_matched(pub), 0);
    mc_publisher_destroy(pub);
}

static void test_remote_on_other_host_uses_network_transport(void **state)
{
    world *w = *state;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(w->ctx, "lidar", NULL, &sub), 0);
    remote_reg r = make_remote(w->ctx, MC_KIND_PUBLISHER, "lidar", false, 9);
    report(w, w->net_tp, &r, true);
    assert_int_equal(mc_subscriber_matched(sub), 1);
    assert_int_equal(fakes[1].sub_connects, 1);
    assert_int_equal(fakes[0].sub_connects, 0);
    assert_string_equal(fakes[1].last_locator, "10.0.0.1:9");
    assert_int_equal(fakes[1].last_scope, MC_SCOPE_NETWORK);
    /* the local endpoint leaving disconnects it */
    mc_subscriber_destroy(sub);
    assert_int_equal(fakes[1].sub_disconnects, 1);
}

static void test_remote_without_common_transport_is_not_matched(void **state)
{
    world *w = *state;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(w->ctx, "lidar", NULL, &sub), 0);
    remote_reg r = make_remote(w->ctx, MC_KIND_PUBLISHER, "lidar", true, 9);
    snprintf(r.locators[0].transport, sizeof(r.locators[0].transport), "other");
    snprintf(r.locators[1].transport, sizeof(r.locators[1].transport), "inproc");
    report(w, w->net_tp, &r, true);
    assert_int_equal(mc_subscriber_matched(sub), 0);
    mc_subscriber_destroy(sub);
}

static void test_remote_known_before_local_endpoint_matches_at_creation(void **state)
{
    world *w = *state;
    remote_reg r = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "late/pub", true, 11);
    report(w, w->host_tp, &r, true);
    events e = {0};
    mc_publisher *pub = publisher_with_events(w->ctx, "late/pub", &e);
    assert_int_equal(e.matched, 1);
    assert_int_equal(mc_publisher_matched(pub), 1);
    assert_int_equal(mc_publisher_wait_matched(pub, 1, 0), 0);
    mc_publisher_destroy(pub);
}

static void test_changed_locator_rematches(void **state)
{
    world *w = *state;
    events e = {0};
    mc_publisher *pub = publisher_with_events(w->ctx, "t", &e);
    remote_reg r = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 5);
    report(w, w->host_tp, &r, true);
    memcpy(r.locators[0].data, "shm-new!", 8);
    report(w, w->host_tp, &r, true);
    assert_int_equal(e.matched, 2);
    assert_int_equal(e.unmatched, 1);
    assert_string_equal(fakes[0].last_locator, "shm-new!");
    assert_int_equal(mc_publisher_matched(pub), 1);
    mc_publisher_destroy(pub);
}

static void test_same_kind_other_topic_own_context_ignored(void **state)
{
    world *w = *state;
    events e = {0};
    mc_publisher *pub = publisher_with_events(w->ctx, "t", &e);
    remote_reg same_kind = make_remote(w->ctx, MC_KIND_PUBLISHER, "t", true, 1);
    remote_reg other_topic = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "u", true, 2);
    remote_reg own = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 3);
    own.reg.id.context_hi = w->ctx->id_hi;
    own.reg.id.context_lo = w->ctx->id_lo;
    report(w, w->host_tp, &same_kind, true);
    report(w, w->host_tp, &other_topic, true);
    report(w, w->host_tp, &own, true);
    assert_int_equal(e.matched, 0);
    mc_publisher_destroy(pub);
}

static void test_malformed_registrations_are_ignored(void **state)
{
    world *w = *state;
    events e = {0};
    mc_publisher *pub = publisher_with_events(w->ctx, "t", &e);
    remote_reg bad;
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "bad topic", true, 1);
    report(w, w->host_tp, &bad, true);
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 2);
    bad.reg.kind = 99;
    report(w, w->host_tp, &bad, true);
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 3);
    bad.reg.locator_count = MC_LOCATORS_MAX + 1;
    report(w, w->host_tp, &bad, true);
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 4);
    bad.locators[0].size = MC_LOCATOR_MAX + 1;
    report(w, w->host_tp, &bad, true);
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 5);
    memset(bad.locators[1].transport, 'x', sizeof(bad.locators[1].transport)); /* no NUL */
    report(w, w->host_tp, &bad, true);
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 6);
    bad.reg.type = "\x01";
    report(w, w->host_tp, &bad, true);
    bad = make_remote(w->ctx, MC_KIND_SUBSCRIBER, "t", true, 7);
    bad.reg.struct_size = 8;
    report(w, w->host_tp, &bad, true);
    mc_host_remote((mc_host_ctx *)w->host_tp, NULL, true);
    assert_int_equal(e.matched, 0);
    assert_int_equal(fakes[0].pub_connects, 0);
    mc_publisher_destroy(pub);
}

typedef struct seen_count {
    int publishers;
    int subscribers;
    uint64_t messages;
} seen_count;

static void count_registration(void *user, const mc_registration *reg)
{
    seen_count *seen = user;
    if (reg->kind == MC_KIND_PUBLISHER)
        seen->publishers++;
    else
        seen->subscribers++;
    seen->messages += reg->messages;
}

static void test_local_endpoints_service_lists_all(void **state)
{
    world *w = *state;
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_publisher_create(w->ctx, "a", NULL, &pub), 0);
    assert_int_equal(mc_subscriber_create(w->ctx, "b", NULL, &sub), 0);
    assert_int_equal(mc_publish(pub, "x", 1), 0);
    seen_count seen = {0};
    mc_host_local_endpoints((mc_host_ctx *)w->host_tp, count_registration, &seen);
    assert_int_equal(seen.publishers, 1);
    assert_int_equal(seen.subscribers, 1);
    assert_int_equal(seen.messages, 1);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
}

static void test_host_token_is_stable_and_nonzero(void **state)
{
    uint8_t a[MC_HOST_TOKEN_SIZE], b[MC_HOST_TOKEN_SIZE], zero[MC_HOST_TOKEN_SIZE] = {0};
    mc_host_token_compute(a);
    mc_host_token_compute(b);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_endpoints_are_announced_and_withdrawn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remote_subscriber_on_same_host_uses_host_transport,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_on_other_host_uses_network_transport, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remote_without_common_transport_is_not_matched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remote_known_before_local_endpoint_matches_at_creation,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_locator_rematches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_kind_other_topic_own_context_ignored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_registrations_are_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_endpoints_service_lists_all, setup, teardown),
        cmocka_unit_test(test_host_token_is_stable_and_nonzero),
    };
    return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
