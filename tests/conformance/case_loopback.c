/*
 * loopback: a publisher and subscribers exchange messages through the plugin: in one
 * context when it bridges MC_SCOPE_PROCESS, else in two contexts of this process joined by
 * registration (MC_SCOPE_HOST). Messages arrive intact, from the right publisher and
 * transport; other topics get nothing; a destroyed subscriber gets nothing more; empty and
 * one-byte messages work; pull-mode subscribers receive what the plugin delivers.
 */
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

#define LOOPBACK_MESSAGES 100

static bool ordered(const conf_env *env)
{
    return (env->plugin->caps & MC_CAP_ORDERED) != 0;
}

static void loopback_deliver(const conf_env *env)
{
    conf_pair pair;
    unsigned char *buf = malloc(4096);
    CONF_CALL(conf_pair_open(env, "conformance/loopback", &pair));
    CONF_EXPECT(buf != NULL, "out of memory");
    conf_step("publishing %d messages of 0 to 4095 bytes", LOOPBACK_MESSAGES);
    for (uint64_t seq = 1; seq <= LOOPBACK_MESSAGES; seq++) {
        size_t size = (size_t)(seq * 397) % 4096;
        conf_fill(buf, size, seq);
        CONF_CALL(mc_publish(pair.pub, buf, size));
    }
    conf_step("waiting for %d messages", LOOPBACK_MESSAGES);
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, LOOPBACK_MESSAGES),
                "only %llu of %d messages arrived within %d ms",
                (unsigned long long)conf_sink_count(&pair.sink), LOOPBACK_MESSAGES, env->wait_ms);
    CONF_CHECK(conf_sink_verify(&pair.sink, LOOPBACK_MESSAGES, ordered(env)));
    CONF_EXPECT(pair.sink.pub_count == 1 && memcmp(&pair.sink.pubs[0].id, mc_publisher_id(pair.pub),
                                                   sizeof(mc_endpoint_id)) == 0,
                "messages carry another publisher id than the publisher's");
    CONF_EXPECT(pair.sink.pubs[0].gaps == 0 && pair.sink.pubs[0].last_seq == LOOPBACK_MESSAGES,
                "sequence numbers were not passed through: last %llu, %llu gaps",
                (unsigned long long)pair.sink.pubs[0].last_seq,
                (unsigned long long)pair.sink.pubs[0].gaps);
out:
    free(buf);
    conf_pair_close(&pair);
}

static void loopback_topic_filter(const conf_env *env)
{
    conf_pair pair;
    conf_sink other_sink;
    mc_subscriber *other_sub = NULL;
    mc_publisher *other_pub = NULL;
    conf_sink_init(&other_sink, env);
    CONF_CALL(conf_pair_open(env, "conformance/topic", &pair));
    conf_step("creating a subscriber and a publisher on 'conformance/topic_other'");
    CONF_CALL(conf_subscribe(pair.sub_ctx, "conformance/topic_other", &other_sink, &other_sub));
    CONF_CALL(mc_publisher_create(pair.pub_ctx, "conformance/topic_other", NULL, &other_pub));
    CONF_CALL(conf_wait_matched(env, other_pub, 1, other_sub, 1));
    conf_step("publishing 50 messages on 'conformance/topic'");
    CONF_CHECK(conf_publish_pattern(pair.pub, 50, 64, 1));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 50), "only %llu of 50 messages arrived",
                (unsigned long long)conf_sink_count(&pair.sink));
    /* A message the other topic must get: anything misrouted to it came first. */
    conf_step("publishing 1 message on 'conformance/topic_other'");
    CONF_CHECK(conf_publish_pattern(other_pub, 1, 64, 1));
    CONF_EXPECT(conf_sink_wait(&other_sink, env, 1),
                "the subscriber of 'conformance/topic_other' got nothing");
    CONF_EXPECT(conf_sink_verify(&other_sink, 1, false),
                "'conformance/topic_other' received messages of 'conformance/topic'");
    CONF_EXPECT(conf_sink_verify(&pair.sink, 50, false),
                "'conformance/topic' received other messages than its own");
    CONF_EXPECT(mc_publisher_matched(pair.pub) == 1, "the publisher matched %zu subscribers",
                mc_publisher_matched(pair.pub));
out:
    mc_publisher_destroy(other_pub);
    mc_subscriber_destroy(other_sub);
    conf_pair_close(&pair);
    conf_sink_fini(&other_sink);
}

static void loopback_unsubscribe(const conf_env *env)
{
    conf_pair pair;
    conf_sink second_sink;
    mc_subscriber *second = NULL;
    conf_sink_init(&second_sink, env);
    CONF_CALL(conf_pair_open(env, "conformance/unsubscribe", &pair));
    CONF_CALL(conf_subscribe(pair.sub_ctx, "conformance/unsubscribe", &second_sink, &second));
    CONF_CALL(conf_wait_matched(env, pair.pub, 2, second, 1));
    conf_step("publishing 10 messages to two subscribers");
    CONF_CHECK(conf_publish_pattern(pair.pub, 10, 32, 1));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 10) && conf_sink_wait(&second_sink, env, 10),
                "the two subscribers got %llu and %llu of 10 messages",
                (unsigned long long)conf_sink_count(&pair.sink),
                (unsigned long long)conf_sink_count(&second_sink));
    conf_step("destroying the first subscriber");
    CONF_CALL(mc_subscriber_destroy(pair.sub));
    pair.sub = NULL;
    uint64_t at_destroy = conf_sink_count(&pair.sink);
    conf_step("publishing 10 more messages");
    CONF_CHECK(conf_publish_pattern(pair.pub, 10, 32, 11));
    CONF_EXPECT(conf_sink_wait(&second_sink, env, 20),
                "the remaining subscriber got %llu of 20 messages",
                (unsigned long long)conf_sink_count(&second_sink));
    CONF_EXPECT(conf_sink_count(&pair.sink) == at_destroy,
                "the destroyed subscriber received %llu messages after mc_subscriber_destroy "
                "returned",
                (unsigned long long)(conf_sink_count(&pair.sink) - at_destroy));
    CONF_CHECK(conf_sink_verify(&second_sink, 20, ordered(env)));
out:
    mc_subscriber_destroy(second);
    conf_pair_close(&pair);
    conf_sink_fini(&second_sink);
}

static void loopback_empty_message(const conf_env *env)
{
    conf_pair pair;
    CONF_CALL(conf_pair_open(env, "conformance/empty", &pair));
    conf_step("publishing a 0-byte message with a NULL and with a non-NULL pointer");
    CONF_CALL(mc_publish(pair.pub, NULL, 0));
    CONF_CALL(mc_publish(pair.pub, "x", 0));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 2), "%llu of 2 empty messages arrived",
                (unsigned long long)conf_sink_count(&pair.sink));
    CONF_CHECK(conf_sink_verify(&pair.sink, 2, ordered(env)));
    CONF_EXPECT(conf_sink_bytes(&pair.sink) == 0, "empty messages arrived with %llu bytes",
                (unsigned long long)conf_sink_bytes(&pair.sink));
out:
    conf_pair_close(&pair);
}

static void loopback_one_byte(const conf_env *env)
{
    static const unsigned char bytes[] = {0x00, 0xff, 0x0a};
    conf_pair pair;
    CONF_CALL(conf_pair_open(env, "conformance/one_byte", &pair));
    conf_sink_set_checks(&pair.sink, false, 0);
    conf_step("publishing three 1-byte messages: 0x00, 0xff, 0x0a");
    for (size_t i = 0; i < sizeof(bytes); i++)
        CONF_CALL(mc_publish(pair.pub, &bytes[i], 1));
    CONF_EXPECT(conf_sink_wait(&pair.sink, env, 3), "%llu of 3 messages arrived",
                (unsigned long long)conf_sink_count(&pair.sink));
    CONF_CHECK(conf_sink_verify(&pair.sink, 3, ordered(env)));
    CONF_EXPECT(conf_sink_bytes(&pair.sink) == 3,
                "3 one-byte messages arrived with %llu bytes in all",
                (unsigned long long)conf_sink_bytes(&pair.sink));
    for (size_t i = 0; ordered(env) && i < sizeof(bytes); i++)
        CONF_EXPECT(conf_sink_first_byte(&pair.sink, i) == bytes[i],
                    "message %zu arrived as 0x%02x, sent 0x%02x", i + 1,
                    conf_sink_first_byte(&pair.sink, i), bytes[i]);
out:
    conf_pair_close(&pair);
}

static void loopback_pull(const conf_env *env)
{
    mc_context *sub_ctx = NULL, *pub_ctx = NULL;
    mc_subscriber *sub = NULL;
    mc_publisher *pub = NULL;
    mc_msg *msg = NULL;
    mc_sub_options opts;
    mc_sub_options_init(&opts);
    opts.queue_depth = 32;
    CONF_CALL(conf_contexts_open(env, &sub_ctx, &pub_ctx));
    conf_step("creating a pull-mode subscriber and a publisher");
    CONF_CALL(mc_subscriber_create(sub_ctx, "conformance/pull", &opts, &sub));
    CONF_CALL(mc_publisher_create(pub_ctx, "conformance/pull", NULL, &pub));
    CONF_CALL(conf_wait_matched(env, pub, 1, sub, 1));
    conf_step("publishing 10 messages");
    CONF_CHECK(conf_publish_pattern(pub, 10, 100, 1));
    for (uint64_t i = 1; i <= 10; i++) {
        conf_step("taking message %llu of 10", (unsigned long long)i);
        CONF_CALL(mc_take(sub, env->wait_ms, &msg));
        CONF_EXPECT(
            mc_msg_size(msg) == 100 && conf_payload_ok(mc_msg_data(msg), 100, mc_msg_seq(msg)),
            "message %llu arrived damaged (%zu bytes)", (unsigned long long)i, mc_msg_size(msg));
        CONF_EXPECT(!ordered(env) || mc_msg_seq(msg) == i, "took seq %llu, expected %llu",
                    (unsigned long long)mc_msg_seq(msg), (unsigned long long)i);
        mc_msg_release(msg);
        msg = NULL;
    }
    CONF_EXPECT(mc_take(sub, 0, &msg) == MC_EAGAIN, "an 11th message arrived");
out:
    mc_msg_release(msg);
    mc_publisher_destroy(pub);
    mc_subscriber_destroy(sub);
    conf_contexts_close(sub_ctx, pub_ctx);
}

const conf_case conf_cases_loopback[] = {
    {"loopback", "deliver",
     "100 messages of 0..4095 bytes arrive intact, with publisher id, seq and transport",
     MC_ROLE_DATA, 0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, loopback_deliver},
    {"loopback", "topic_filter", "a subscriber of another topic (a longer name) receives nothing",
     MC_ROLE_DATA, 0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, loopback_topic_filter},
    {"loopback", "unsubscribe", "after mc_subscriber_destroy the subscriber receives nothing more",
     MC_ROLE_DATA, 0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, loopback_unsubscribe},
    {"loopback", "empty_message", "0-byte messages are delivered as 0-byte messages", MC_ROLE_DATA,
     0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, loopback_empty_message},
    {"loopback", "one_byte", "1-byte messages 0x00, 0xff, 0x0a arrive as sent", MC_ROLE_DATA, 0,
     MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, loopback_one_byte},
    {"loopback", "pull", "a pull-mode subscriber takes what the plugin delivers, nothing more",
     MC_ROLE_DATA, 0, MC_SCOPE_PROCESS | MC_SCOPE_HOST, CONF_MEET_CONTEXTS, loopback_pull},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
