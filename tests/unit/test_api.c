/* The public API's contract: argument checks, error reporting, topics, context opening
 * with good, bad and broken configurations and plugins, and the log sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <memcast/memcast.h>

/* ---- captured log ------------------------------------------------------------------------ */

static char captured[16384];

static void capture(void *user, mc_log_level level, const char *origin, const char *message)
{
    size_t used = strlen(captured);
    snprintf(captured + used, sizeof(captured) - used, "%d|%s|%s\n", (int)level, origin, message);
}

static int capture_start(void **state)
{
    captured[0] = '\0';
    mc_set_log_handler(capture, NULL);
    return 0;
}

static int capture_stop(void **state)
{
    mc_set_log_handler(NULL, NULL);
    unsetenv("MEMCAST_FRAMEWORK_PLUGINS");
    return 0;
}

/* The default plugins let processes meet: a domain of its own keeps other tests' and other
 * users' endpoints away from this binary's contexts. */
static int own_domain(void **state)
{
    (void)state;
    char domain[64];
    snprintf(domain, sizeof(domain), "test_api-%d", (int)getpid());
    return setenv("MEMCAST_FRAMEWORK_DOMAIN", domain, 1);
}

/* Writes text to a fresh temporary file and returns its path (static buffer). */
static const char *temp_config(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/mc-test-api-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* MEMCAST_PLUGIN_PATH plus the fixture directory, so broken plugins can be named. */
static void with_fixtures(void)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s:%s", getenv("MC_FIXTURE_DIR"), getenv("MEMCAST_PLUGIN_PATH"));
    setenv("MEMCAST_PLUGIN_PATH", path, 1);
}

static void without_fixtures(void)
{
    const char *path = getenv("MEMCAST_PLUGIN_PATH");
    const char *colon = strchr(path, ':');
    if (colon != NULL) {
        char *rest = strdup(colon + 1);
        setenv("MEMCAST_PLUGIN_PATH", rest, 1);
        free(rest);
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_strerror_names_every_code(void **state)
{
    for (int code = MC_OK; code >= MC_EINTERNAL; code--) {
        const char *name = mc_strerror(code);
        assert_non_null(name);
        assert_string_not_equal(name, "unknown error");
        for (int other = code - 1; other >= MC_EINTERNAL; other--)
            assert_string_not_equal(name, mc_strerror(other));
    }
    assert_string_equal(mc_strerror(-999), "unknown error");
    assert_string_equal(mc_strerror(42), "unknown error");
    assert_string_equal(mc_version(), MC_VERSION_STRING);
    assert_string_equal(mc_drop_reason_name(MC_DROP_OVERRUN), "overrun");
    assert_string_equal(mc_drop_reason_name(MC_DROP_REASONS), "unknown");
}

static void test_topic_validation(void **state)
{
    char longest[MC_TOPIC_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[MC_TOPIC_MAX] = '\0';
    static const char *const good[] = {"a", "a/b", "A.b-c_d/e9", "x..y", "robot/arm.left"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(mc_topic_validate(good[i]), 0);
    assert_int_equal(mc_topic_validate(longest), 0);
    longest[MC_TOPIC_MAX] = 'a';
    longest[MC_TOPIC_MAX + 1] = '\0';
    assert_int_equal(mc_topic_validate(longest), MC_EINVAL);
    assert_non_null(strstr(mc_last_error(), "longer than 200"));

    static const struct {
        const char *topic;
        const char *why;
    } bad[] = {
        {"", "empty"},      {"/a", "segment"}, {"a/", "segment"}, {"a//b", "segment"},
        {"a/../b", "'..'"}, {".", "'.'"},      {"a b", "0x20"},   {"caf\xc3\xa9", "0xc3"},
        {"x\ny", "0x0a"},   {"a*", "0x2a"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mc_topic_validate(bad[i].topic), MC_EINVAL);
        if (strstr(mc_last_error(), bad[i].why) == NULL)
            fail_msg("topic '%s': detail '%s' lacks '%s'", bad[i].topic, mc_last_error(),
                     bad[i].why);
    }
    assert_int_equal(mc_topic_validate(NULL), MC_EINVAL);
}

static void test_null_arguments(void **state)
{
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(NULL, NULL), MC_EINVAL);
    assert_int_equal(mc_context_open(NULL, &ctx), 0);
    mc_publisher *pub = NULL;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_publisher_create(NULL, "t", NULL, &pub), MC_EINVAL);
    assert_int_equal(mc_publisher_create(ctx, "t", NULL, NULL), MC_EINVAL);
    assert_int_equal(mc_publisher_create(ctx, "bad topic", NULL, &pub), MC_EINVAL);
    assert_non_null(strstr(mc_last_error(), "bad topic"));
    assert_null(pub);
    assert_int_equal(mc_subscriber_create(ctx, NULL, NULL, &sub), MC_EINVAL);
    assert_int_equal(mc_publish(NULL, "x", 1), MC_EINVAL);
    assert_int_equal(mc_publisher_create(ctx, "t", NULL, &pub), 0);
    assert_int_equal(mc_publish(pub, NULL, 5), MC_EINVAL);
    assert_non_null(strstr(mc_last_error(), "5-byte"));
    assert_int_equal(mc_publish(pub, NULL, 0), 0); /* an empty message needs no data */
    void *buf = NULL;
    assert_int_equal(mc_loan(pub, 8, NULL), MC_EINVAL);
    assert_int_equal(mc_loan(NULL, 8, &buf), MC_EINVAL);
    assert_int_equal(mc_commit(pub, NULL, 0), MC_EINVAL);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(NULL, 0, &msg), MC_EINVAL);
    mc_stats st = {0};
    assert_int_equal(mc_publisher_stats(pub, &st), MC_EINVAL); /* not initialised */
    assert_non_null(strstr(mc_last_error(), "mc_stats_init"));
    assert_int_equal(mc_publisher_stats(NULL, &st), MC_EINVAL);
    assert_int_equal(mc_publisher_wait_matched(NULL, 1, 0), MC_EINVAL);
    assert_int_equal(mc_publisher_matched(NULL), 0);
    assert_null(mc_publisher_id(NULL));
    assert_null(mc_msg_data(NULL));
    assert_int_equal(mc_msg_size(NULL), 0);
    assert_int_equal(mc_publisher_destroy(NULL), 0);
    assert_int_equal(mc_subscriber_destroy(NULL), 0);
    assert_int_equal(mc_context_close(NULL), 0);
    mc_publisher_destroy(pub);
    mc_context_close(ctx);
}

static void test_options_must_be_initialised(void **state)
{
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(NULL, &ctx), 0);
    mc_pub_options po = {0};
    mc_publisher *pub = NULL;
    assert_int_equal(mc_publisher_create(ctx, "t", &po, &pub), MC_EINVAL);
    assert_non_null(strstr(mc_last_error(), "mc_pub_options_init"));
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.queue_depth = (size_t)1 << 30;
    mc_subscriber *sub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "t", &so, &sub), MC_EINVAL);
    assert_non_null(strstr(mc_last_error(), "queue_depth"));
    char label[300];
    memset(label, 't', sizeof(label) - 1);
    label[sizeof(label) - 1] = '\0';
    mc_pub_options_init(&po);
    po.type = label;
    assert_int_equal(mc_publisher_create(ctx, "t", &po, &pub), MC_EINVAL);
    assert_non_null(strstr(mc_last_error(), "type"));
    mc_context_close(ctx);
}

static void test_endpoint_ids(void **state)
{
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(NULL, &ctx), 0);
    mc_publisher *a = NULL, *b = NULL;
    assert_int_equal(mc_publisher_create(ctx, "id", NULL, &a), 0);
    assert_int_equal(mc_publisher_create(ctx, "id", NULL, &b), 0);
    uint64_t hi = 0, lo = 0;
    mc_context_id(ctx, &hi, &lo);
    assert_true(hi != 0 || lo != 0);
    assert_int_equal(mc_publisher_id(a)->context_hi, hi);
    assert_int_equal(mc_publisher_id(a)->context_lo, lo);
    assert_int_not_equal(mc_publisher_id(a)->serial, mc_publisher_id(b)->serial);
    char text[MC_ID_STRLEN];
    mc_endpoint_id id = {.context_hi = 0x0123456789abcdefull, .context_lo = 0xfull, .serial = 7};
    assert_string_equal(mc_endpoint_id_format(&id, text, sizeof(text)),
                        "0123456789abcdef000000000000000f.7");
    mc_context *other = NULL;
    assert_int_equal(mc_context_open(NULL, &other), 0);
    uint64_t hi2 = 0, lo2 = 0;
    mc_context_id(other, &hi2, &lo2);
    assert_true(hi != hi2 || lo != lo2);
    mc_context_close(other);
    mc_context_close(ctx);
}

static void test_missing_config_file(void **state)
{
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open("/nonexistent/memcast.ini", &ctx), MC_ENOENT);
    assert_non_null(strstr(mc_last_error(), "/nonexistent/memcast.ini"));
    assert_null(ctx);
}

static void test_misspelt_key_fails_with_line_and_suggestion(void **state)
{
    const char *path = temp_config("[framework]\nlog_level = warn\n\n[inproc]\nqueue_dpeth = 8\n");
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(path, &ctx), MC_ECONFIG);
    char where[128];
    snprintf(where, sizeof(where), "%s:5", path);
    if (strstr(mc_last_error(), where) == NULL || strstr(mc_last_error(), "queue_dpeth") == NULL ||
        strstr(mc_last_error(), "did you mean 'queue_depth'") == NULL)
        fail_msg("detail: %s", mc_last_error());
    unlink(path);
    assert_null(ctx);
}

static void test_broken_plugin_is_skipped_good_one_loads(void **state)
{
    with_fixtures();
    const char *path = temp_config("[framework]\nplugins = bad_magic, init_fails, inproc\n");
    mc_context *ctx = NULL;
    int rc = mc_context_open(path, &ctx);
    without_fixtures();
    unlink(path);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(captured, "bad_magic"));
    assert_non_null(strstr(captured, "magic"));
    assert_non_null(strstr(captured, "init_fails"));
    assert_non_null(strstr(captured, "init failed"));
    /* the good transport works */
    mc_subscriber *sub = NULL;
    mc_publisher *pub = NULL;
    assert_int_equal(mc_subscriber_create(ctx, "still/works", NULL, &sub), 0);
    assert_int_equal(mc_publisher_create(ctx, "still/works", NULL, &pub), 0);
    assert_int_equal(mc_publish(pub, "ok", 2), 0);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(sub, 5000, &msg), 0);
    assert_memory_equal(mc_msg_data(msg), "ok", 2);
    mc_msg_release(msg);
    mc_context_close(ctx);
}

static void test_no_data_transport_is_an_error(void **state)
{
    with_fixtures();
    setenv("MEMCAST_FRAMEWORK_PLUGINS", "bad_abi", 1);
    mc_context *ctx = NULL;
    int rc = mc_context_open(NULL, &ctx);
    without_fixtures();
    assert_int_equal(rc, MC_EPLUGIN);
    assert_non_null(strstr(mc_last_error(), "no data transport"));
    assert_non_null(strstr(captured, "bad_abi"));
    assert_null(ctx);
}

static void test_disabled_plugin_is_not_loaded(void **state)
{
    const char *path = temp_config("[framework]\nplugins = inproc\n\n[inproc]\nenabled = false\n");
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(path, &ctx), MC_EPLUGIN);
    unlink(path);
}

static void test_unknown_section_is_warned_about(void **state)
{
    const char *path = temp_config("[inproc]\nqueue_depth = 8\n[shmm]\nsize = 1\n");
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(path, &ctx), 0);
    unlink(path);
    assert_non_null(strstr(captured, "[shmm]"));
    mc_context_close(ctx);
}

static void test_log_handler_is_replaceable(void **state)
{
    const char *path = temp_config("[framework]\nplugins = nosuchplugin, inproc\n");
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(path, &ctx), 0);
    assert_non_null(strstr(captured, "nosuchplugin"));
    assert_non_null(strstr(captured, "0|memcast|")); /* an error, from the framework */
    mc_context_close(ctx);
    mc_set_log_handler(NULL, NULL);
    captured[0] = '\0';
    assert_int_equal(mc_context_open(path, &ctx), 0); /* goes to stderr now */
    assert_string_equal(captured, "");
    mc_context_close(ctx);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_topic_validation),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_options_must_be_initialised),
        cmocka_unit_test(test_endpoint_ids),
        cmocka_unit_test(test_missing_config_file),
        cmocka_unit_test_setup_teardown(test_misspelt_key_fails_with_line_and_suggestion,
                                        capture_start, capture_stop),
        cmocka_unit_test_setup_teardown(test_broken_plugin_is_skipped_good_one_loads, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_no_data_transport_is_an_error, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_disabled_plugin_is_not_loaded, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_unknown_section_is_warned_about, capture_start,
                                        capture_stop),
        cmocka_unit_test_setup_teardown(test_log_handler_is_replaceable, capture_start,
                                        capture_stop),
    };
    return cmocka_run_group_tests_name("api", tests, own_domain, NULL);
}
