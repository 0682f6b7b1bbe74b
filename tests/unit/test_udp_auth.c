/*
 * [udp] auth_key_file (plugins/udp/auth.c; doc/security.md), both ways.
 *  - The key file: missing, too short (31 bytes; 32 are enough), open to group or others,
 *    not a regular file (a directory; a FIFO, refused without hanging), owned by another
 *    user (as root: chowned to nobody) are each refused naming the file and the fault; an
 *    empty path is auth off; a secret of any length works and every byte of it counts.
 *  - Tags: a datagram verifies, and a tag made over header and payload apart (as the
 *    publisher does) equals the tag of the whole (as the subscriber checks it); one flipped
 *    bit anywhere (header, payload, tag), anything shorter than a tag, another key and the
 *    same key file in another domain are rejected.
 *  - Through the framework, two contexts of this process over loopback (a domain of their
 *    own per test, a registration port of this test process): with the same key they meet
 *    and samples of 0 B to 200 KB arrive intact, nothing counted unauthenticated; a keyed
 *    and a plain context (both ways round) and two contexts with different keys do not
 *    meet, the keyed side counts unauthenticated datagrams and the plain side malformed
 *    ones; data datagrams sent to a keyed subscriber's socket with no tag, another key's
 *    tag or a garbage tag are dropped and counted, and the same datagram with the right tag
 *    is delivered; a plain subscriber drops a tagged datagram as malformed and delivers
 *    the untagged one. A bad key file and a datagram_size with no room for the tag make
 *    mc_context_open fail naming them.
 * Counters are read from the plugin's own log lines (warnings as they happen, the stats
 * line each context logs at debug level when it closes), captured with mc_set_log_handler.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <memcast/memcast.h>
#include <memcast/plugin.h>

#include "auth.h"
#include "data_wire.h"
#include "wire.h"

static char dir[64];
static int test_port;

/* ---- key files --------------------------------------------------------------------------- */

/* Writes size bytes derived from seed to dir/name with mode; path receives the name. */
static void write_key(const char *name, size_t size, unsigned seed, mode_t mode, char *path,
                      size_t path_size)
{
    snprintf(path, path_size, "%s/%s", dir, name);
    unlink(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < size; i++)
        fputc((int)((i * 131u + seed * 17u + (i >> 8)) & 0xff), f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static mc_udp_auth load_ok(const char *path, const char *domain)
{
    mc_udp_auth auth;
    char why[512] = "";
    int rc = mc_udp_auth_load(&auth, path, domain, why, sizeof(why));
    if (rc != 0)
        fail_msg("loading %s: %s", path, why);
    assert_true(auth.on);
    assert_int_equal(mc_udp_auth_trailer(&auth), MC_UDP_AUTH_TAG_SIZE);
    return auth;
}

/* Loading path must fail with MC_ECONFIG, naming the file and saying what (what). */
static void assert_refused(const char *path, const char *what)
{
    mc_udp_auth auth;
    char why[512] = "";
    assert_int_equal(mc_udp_auth_load(&auth, path, "authdomain", why, sizeof(why)), MC_ECONFIG);
    assert_false(auth.on);
    if (strstr(why, path) == NULL || strstr(why, what) == NULL)
        fail_msg("expected the file '%s' and '%s' in: %s", path, what, why);
}

static void test_empty_path_is_off(void **state)
{
    (void)state;
    mc_udp_auth auth;
    char why[64] = "";
    assert_int_equal(mc_udp_auth_load(&auth, "", "d", why, sizeof(why)), 0);
    assert_false(auth.on);
    assert_int_equal(mc_udp_auth_trailer(&auth), 0);
    assert_int_equal(mc_udp_auth_load(&auth, NULL, "d", why, sizeof(why)), 0);
    assert_false(auth.on);
}

static void test_missing_file_refused(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/no-such-key", dir);
    assert_refused(path, "No such file or directory");
}

static void test_short_file_refused(void **state)
{
    (void)state;
    char path[128];
    write_key("short", 31, 1, 0600, path, sizeof(path));
    assert_refused(path, "holds 31 bytes, at least 32 expected");
    write_key("empty", 0, 1, 0600, path, sizeof(path));
    assert_refused(path, "holds 0 bytes");
    write_key("enough", 32, 1, 0600, path, sizeof(path));
    load_ok(path, "authdomain");
}

static void test_open_modes_refused(void **state)
{
    (void)state;
    char path[128];
    const mode_t modes[] = {0640, 0604, 0620, 0602, 0610, 0601, 0644, 0660};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char want[32];
        snprintf(want, sizeof(want), "mode %04o", (unsigned)modes[i]);
        write_key("open", 64, 2, modes[i], path, sizeof(path));
        assert_refused(path, want);
    }
    write_key("open", 64, 2, 0400, path, sizeof(path)); /* read-only for us is fine */
    load_ok(path, "authdomain");
}

static void test_not_regular_refused(void **state)
{
    (void)state;
    assert_refused(dir, "not a regular file");
    char path[128];
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_refused(path, "not a regular file"); /* and did not wait for a writer */
    unlink(path);
}

static void test_other_owner_refused(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    char path[128];
    write_key("given", 64, 3, 0600, path, sizeof(path));
    assert_int_equal(chown(path, 65534, 65534), 0);
    assert_refused(path, "owned by uid 65534, not by this process's uid 0");
}

/* Every byte of the secret counts, past the reader's 4 KiB chunks too; the domain counts;
 * the same bytes and domain give the same key. */
static void test_key_derivation(void **state)
{
    (void)state;
    char a[128], b[128];
    write_key("long-a", 10000, 4, 0600, a, sizeof(a));
    write_key("long-b", 10000, 4, 0600, b, sizeof(b));
    mc_udp_auth ka = load_ok(a, "authdomain");
    mc_udp_auth kb = load_ok(b, "authdomain");
    assert_memory_equal(ka.key, kb.key, MC_UDP_AUTH_KEY_SIZE);
    int fd = open(b, O_RDWR);
    assert_true(fd >= 0);
    uint8_t last = 0;
    assert_int_equal(pread(fd, &last, 1, 9999), 1);
    last ^= 1;
    assert_int_equal(pwrite(fd, &last, 1, 9999), 1);
    assert_int_equal(close(fd), 0);
    kb = load_ok(b, "authdomain");
    assert_memory_not_equal(ka.key, kb.key, MC_UDP_AUTH_KEY_SIZE);
    mc_udp_auth other = load_ok(a, "authdomain2");
    assert_memory_not_equal(ka.key, other.key, MC_UDP_AUTH_KEY_SIZE);
    mc_udp_auth_clear(&ka);
    assert_false(ka.on);
    static const uint8_t zero[MC_UDP_AUTH_KEY_SIZE];
    assert_memory_equal(ka.key, zero, MC_UDP_AUTH_KEY_SIZE);
}

/* ---- tags -------------------------------------------------------------------------------- */

#define HEAD 80
#define BODY 300

/* A datagram of HEAD + BODY bytes and its tag; returns its length with the tag. */
static size_t tagged(const mc_udp_auth *auth, uint8_t *buf)
{
    for (size_t i = 0; i < HEAD + BODY; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    mc_udp_auth_tag(auth, buf, HEAD, buf + HEAD, BODY, buf + HEAD + BODY);
    return HEAD + BODY + MC_UDP_AUTH_TAG_SIZE;
}

static void test_tag_round_trip(void **state)
{
    (void)state;
    char path[128];
    write_key("k", 32, 5, 0600, path, sizeof(path));
    mc_udp_auth auth = load_ok(path, "authdomain");
    uint8_t buf[HEAD + BODY + MC_UDP_AUTH_TAG_SIZE];
    size_t len = tagged(&auth, buf);
    assert_true(mc_udp_auth_verify(&auth, buf, len));
    uint8_t whole[MC_UDP_AUTH_TAG_SIZE];
    mc_udp_auth_tag(&auth, buf, HEAD + BODY, NULL, 0, whole);
    assert_memory_equal(whole, buf + HEAD + BODY, MC_UDP_AUTH_TAG_SIZE);
    /* an empty datagram has a tag too; anything shorter than a tag has none */
    uint8_t empty[MC_UDP_AUTH_TAG_SIZE];
    mc_udp_auth_tag(&auth, NULL, 0, NULL, 0, empty);
    assert_true(mc_udp_auth_verify(&auth, empty, sizeof(empty)));
    for (size_t n = 0; n < MC_UDP_AUTH_TAG_SIZE; n++)
        assert_false(mc_udp_auth_verify(&auth, empty + MC_UDP_AUTH_TAG_SIZE - n, n));
    /* cut or extended, the tag no longer sits where the verifier looks */
    assert_false(mc_udp_auth_verify(&auth, buf, len - 1));
    assert_false(mc_udp_auth_verify(&auth, buf + 1, len - 1));
}

static void test_flipped_bit_rejected(void **state)
{
    (void)state;
    char path[128];
    write_key("k", 32, 5, 0600, path, sizeof(path));
    mc_udp_auth auth = load_ok(path, "authdomain");
    uint8_t buf[HEAD + BODY + MC_UDP_AUTH_TAG_SIZE];
    size_t len = tagged(&auth, buf);
    for (size_t i = 0; i < len; i++) { /* header, payload and tag, every byte */
        uint8_t bit = (uint8_t)(1u << (i % 8));
        buf[i] ^= bit;
        if (mc_udp_auth_verify(&auth, buf, len))
            fail_msg("bit %u of byte %zu flipped and the tag still verifies", (unsigned)(i % 8), i);
        buf[i] ^= bit;
    }
    assert_true(mc_udp_auth_verify(&auth, buf, len));
}

static void test_other_key_and_domain_rejected(void **state)
{
    (void)state;
    char a[128], b[128];
    write_key("ka", 32, 6, 0600, a, sizeof(a));
    write_key("kb", 32, 7, 0600, b, sizeof(b));
    mc_udp_auth mine = load_ok(a, "authdomain");
    mc_udp_auth other_key = load_ok(b, "authdomain");
    mc_udp_auth other_domain = load_ok(a, "authdomain-b");
    uint8_t buf[HEAD + BODY + MC_UDP_AUTH_TAG_SIZE];
    size_t len = tagged(&mine, buf);
    assert_true(mc_udp_auth_verify(&mine, buf, len));
    assert_false(mc_udp_auth_verify(&other_key, buf, len));
    assert_false(mc_udp_auth_verify(&other_domain, buf, len));
    tagged(&other_domain, buf);
    assert_false(mc_udp_auth_verify(&mine, buf, len));
}

/* ---- the log, where the plugin's counters show ------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char *text;
    size_t used;
    size_t capacity;
} logs = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

static void on_log(void *user, mc_log_level level, const char *origin, const char *message)
{
    (void)user;
    (void)level;
    size_t need = strlen(origin) + strlen(message) + 4;
    pthread_mutex_lock(&logs.lock);
    if (logs.used + need + 1 > logs.capacity) {
        size_t capacity = (logs.capacity + need) * 2;
        char *grown = realloc(logs.text, capacity);
        if (grown == NULL) {
            pthread_mutex_unlock(&logs.lock);
            return;
        }
        logs.text = grown;
        logs.capacity = capacity;
    }
    logs.used += (size_t)sprintf(logs.text + logs.used, "%s: %s\n", origin, message);
    pthread_cond_broadcast(&logs.changed);
    pthread_mutex_unlock(&logs.lock);
}

static size_t log_mark(void)
{
    pthread_mutex_lock(&logs.lock);
    size_t mark = logs.used;
    pthread_mutex_unlock(&logs.lock);
    return mark;
}

/* Copies the first line logged after mark that contains needle into line (lock held). */
static bool find_line_locked(size_t mark, const char *needle, char *line, size_t size)
{
    if (logs.text == NULL || mark >= logs.used)
        return false;
    logs.text[logs.used] = '\0';
    const char *hit = strstr(logs.text + mark, needle);
    if (hit == NULL)
        return false;
    const char *start = hit;
    while (start > logs.text + mark && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    size_t len = end != NULL ? (size_t)(end - start) : strlen(start);
    snprintf(line, size, "%.*s", (int)len, start);
    return true;
}

/* Waits up to timeout_ms for a line after mark containing needle. */
static bool wait_log(size_t mark, const char *needle, int timeout_ms, char *line, size_t size)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&logs.lock);
    bool found;
    while (!(found = find_line_locked(mark, needle, line, size)))
        if (pthread_cond_timedwait(&logs.changed, &logs.lock, &deadline) == ETIMEDOUT) {
            found = find_line_locked(mark, needle, line, size);
            break;
        }
    pthread_mutex_unlock(&logs.lock);
    return found;
}

static size_t count_logged(size_t mark, const char *needle)
{
    size_t count = 0;
    pthread_mutex_lock(&logs.lock);
    if (logs.text != NULL && mark < logs.used) {
        logs.text[logs.used] = '\0';
        for (const char *at = logs.text + mark; (at = strstr(at, needle)) != NULL; at++)
            count++;
    }
    pthread_mutex_unlock(&logs.lock);
    return count;
}

/* The number after "name " in line ("unauthenticated 3"). */
static unsigned long long number_after(const char *line, const char *name)
{
    const char *at = strstr(line, name);
    if (at == NULL)
        fail_msg("no '%s' in: %s", name, line);
    return strtoull(at + strlen(name), NULL, 10);
}

/* The number before " name" in line ("3 unauthenticated"). */
static unsigned long long number_before(const char *line, const char *name)
{
    const char *at = strstr(line, name);
    if (at == NULL)
        fail_msg("no '%s' in: %s", name, line);
    while (at > line && at[-1] >= '0' && at[-1] <= '9')
        at--;
    return strtoull(at, NULL, 10);
}

/* ---- contexts ------------------------------------------------------------------------------ */

#define TOPIC "auth/data"

static mc_context *open_ctx(const char *domain, const char *key_path, const char *extra)
{
    static int counter;
    char path[128];
    snprintf(path, sizeof(path), "%s/ctx%d.ini", dir, ++counter);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const char *builddir = getenv("MC_BUILDDIR");
    fprintf(f,
            "[framework]\nplugins = udp\ndomain = %s\nlog_level = debug\n"
            "[udp]\npath = %s/plugins/udp\nport = %d\nheartbeat = 100ms\nexpiry = 2s\n"
            "rcvbuf = 8M\nauth_key_file = %s\n%s\n",
            domain, builddir ? builddir : ".", test_port, key_path ? key_path : "",
            extra ? extra : "");
    assert_int_equal(fclose(f), 0);
    mc_context *ctx = NULL;
    int rc = mc_context_open(path, &ctx);
    if (rc != 0)
        fail_msg("mc_context_open: %s: %s", mc_strerror(rc), mc_last_error());
    return ctx;
}

static const char *fresh_domain(void)
{
    static char domain[64];
    static int domains;
    snprintf(domain, sizeof(domain), "auth%d_%d", (int)getpid(), ++domains);
    return domain;
}

typedef struct pair {
    char domain[64];
    mc_context *pub_ctx, *sub_ctx;
    mc_publisher *pub;
    mc_subscriber *sub;
} pair;

/* Two contexts of a fresh domain, a publisher in one and a pull subscriber in the other;
 * not waited for. */
static void pair_open(pair *p, const char *pub_key, const char *sub_key, const char *extra)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->domain, sizeof(p->domain), "%s", fresh_domain());
    p->pub_ctx = open_ctx(p->domain, pub_key, extra);
    p->sub_ctx = open_ctx(p->domain, sub_key, extra);
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.queue_depth = 16;
    assert_int_equal(mc_subscriber_create(p->sub_ctx, TOPIC, &so, &p->sub), 0);
    assert_int_equal(mc_publisher_create(p->pub_ctx, TOPIC, NULL, &p->pub), 0);
}

/* Both sides matched: the publisher sends to the subscriber only once it has matched too. */
static void pair_wait_matched(pair *p)
{
    assert_int_equal(mc_publisher_wait_matched(p->pub, 1, 10000), 0);
    assert_int_equal(mc_subscriber_wait_matched(p->sub, 1, 10000), 0);
}

/* Closes ctx and returns its stats line (containing needle) logged while closing. */
static void close_with_stats(mc_context *ctx, const char *needle, char *line, size_t size)
{
    size_t mark = log_mark();
    assert_int_equal(mc_context_close(ctx), 0);
    if (!wait_log(mark, needle, 0, line, size))
        fail_msg("closing logged no line with '%s'", needle);
}

static uint8_t pattern(uint64_t seq, size_t i)
{
    return (uint8_t)(i * 13u + seq * 5u + (i >> 10));
}

static void publish_pattern(mc_publisher *pub, uint64_t seq, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    assert_non_null(buf);
    for (size_t i = 0; i < size; i++)
        buf[i] = pattern(seq, i);
    assert_int_equal(mc_publish(pub, buf, size), 0);
    free(buf);
}

static void take_pattern(mc_subscriber *sub, uint64_t seq, size_t size)
{
    mc_msg *msg = NULL;
    int rc = mc_take(sub, 10000, &msg);
    if (rc != 0)
        fail_msg("sample %llu of %zu bytes: %s", (unsigned long long)seq, size, mc_strerror(rc));
    assert_int_equal(mc_msg_seq(msg), seq);
    assert_int_equal(mc_msg_size(msg), size);
    const uint8_t *data = mc_msg_data(msg);
    for (size_t i = 0; i < size; i++)
        if (data[i] != pattern(seq, i))
            fail_msg("sample %llu: byte %zu differs", (unsigned long long)seq, i);
    mc_msg_release(msg);
}

/* ---- end to end ------------------------------------------------------------------------------ */

/* Local mode's datagrams are 65507 bytes: full fragments only fit with the tag when the
 * fragment leaves room for it; 1472 is network mode's size. */
static void same_key_flows(const char *extra)
{
    char key[128];
    write_key("shared", 48, 8, 0600, key, sizeof(key));
    pair p;
    pair_open(&p, key, key, extra);
    pair_wait_matched(&p);
    const size_t sizes[] = {0, 1, 1376, 1377, 65411, 65412, 200000};
    const size_t n = sizeof(sizes) / sizeof(sizes[0]);
    for (size_t i = 0; i < n; i++)
        publish_pattern(p.pub, i + 1, sizes[i]);
    for (size_t i = 0; i < n; i++)
        take_pattern(p.sub, i + 1, sizes[i]);
    char line[2048];
    close_with_stats(p.sub_ctx, "udp data:", line, sizeof(line));
    assert_int_equal(number_before(line, " unauthenticated"), 0);
    assert_int_equal(number_before(line, " malformed"), 0);
    assert_int_equal(number_before(line, " delivered"), n);
    close_with_stats(p.pub_ctx, "datagrams: sent", line, sizeof(line));
    assert_true(number_after(line, "accepted ") > 0);
}

static void test_same_key_meets_and_delivers(void **state)
{
    (void)state;
    same_key_flows(NULL);
}

static void test_same_key_delivers_in_mtu_datagrams(void **state)
{
    (void)state;
    same_key_flows("datagram_size = 1472\nsend_rate = 100M");
}

/* A keyed and a plain context, or two with different keys: each keyed side drops the
 * other's datagrams unauthenticated, a plain side drops the tagged ones as malformed and
 * says why; they never meet and nothing is delivered. */
static void expect_apart(const char *pub_key, const char *sub_key)
{
    size_t mark = log_mark();
    pair p;
    pair_open(&p, pub_key, sub_key, NULL);
    char line[2048], want[256];
    const char *keys[2] = {pub_key, sub_key};
    for (int i = 0; i < 2; i++) {
        if (keys[i] != NULL)
            snprintf(want, sizeof(want), "without a valid tag of [udp] auth_key_file '%s'",
                     keys[i]);
        else
            snprintf(want, sizeof(want), "end in what looks like an authentication tag");
        if (!wait_log(mark, want, 10000, line, sizeof(line)))
            fail_msg("no log line with: %s", want);
    }
    /* both have now heard the other: not matching is not for lack of datagrams */
    assert_int_equal(mc_publisher_wait_matched(p.pub, 1, 1000), MC_ETIMEDOUT);
    assert_int_equal(mc_subscriber_matched(p.sub), 0);
    publish_pattern(p.pub, 1, 100);
    mc_msg *msg = NULL;
    assert_int_equal(mc_take(p.sub, 0, &msg), MC_EAGAIN);
    mc_context *ctxs[2] = {p.pub_ctx, p.sub_ctx};
    for (int i = 0; i < 2; i++) {
        close_with_stats(ctxs[i], "datagrams: sent", line, sizeof(line));
        if (keys[i] != NULL)
            assert_true(number_after(line, "unauthenticated ") > 0);
        else
            assert_true(number_after(line, "malformed ") > 0);
        assert_int_equal(number_after(line, "accepted "), 0);
    }
}

static void test_keyed_publisher_plain_subscriber(void **state)
{
    (void)state;
    char key[128];
    write_key("pubkey", 32, 9, 0600, key, sizeof(key));
    expect_apart(key, NULL);
}

static void test_plain_publisher_keyed_subscriber(void **state)
{
    (void)state;
    char key[128];
    write_key("subkey", 32, 10, 0600, key, sizeof(key));
    expect_apart(NULL, key);
}

static void test_different_keys(void **state)
{
    (void)state;
    char a[128], b[128];
    write_key("key-a", 32, 11, 0600, a, sizeof(a));
    write_key("key-b", 32, 12, 0600, b, sizeof(b));
    expect_apart(a, b);
}

/* ---- forged data datagrams --------------------------------------------------------------- */

static int sniffer_open(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)test_port)};
    inet_pton(AF_INET, "127.255.255.255", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* A subscriber record of TOPIC with a udp locator: its address. */
static bool subscriber_address(const mc_udp_wire_message *msg, struct sockaddr_in *addr)
{
    mc_udp_wire_cursor c;
    mc_udp_wire_record r;
    mc_udp_wire_cursor_init(&c, msg);
    while (mc_udp_wire_cursor_next(&c, &r)) {
        if (r.kind != MC_KIND_SUBSCRIBER || r.topic.len != strlen(TOPIC) ||
            memcmp(r.topic.data, TOPIC, r.topic.len) != 0)
            continue;
        for (size_t i = 0; i < r.locator_count; i++) {
            const mc_udp_wire_locator *l = &r.locators[i];
            if (l->transport.len == 3 && memcmp(l->transport.data, "udp", 3) == 0 && l->size == 8) {
                *addr = (struct sockaddr_in){.sin_family = AF_INET};
                memcpy(&addr->sin_port, l->data + 2, 2);
                memcpy(&addr->sin_addr.s_addr, l->data + 4, 4);
                return true;
            }
        }
    }
    return false;
}

/* Reads registration datagrams, as anyone on the network could, until one of our domain
 * (with a valid tag, when auth is not NULL) announces the subscriber; the announcement is
 * readable either way (no secrecy). */
static void sniff_subscriber(int fd, const mc_udp_auth *auth, const char *domain,
                             struct sockaddr_in *addr)
{
    static uint8_t buf[65536];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = 10000 - (long)((now.tv_sec - start.tv_sec) * 1000 +
                                   (now.tv_nsec - start.tv_nsec) / 1000000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            fail_msg("no announcement of the subscriber within 10 s");
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0 || (auth != NULL && !mc_udp_auth_verify(auth, buf, (size_t)n)))
            continue;
        size_t len = (size_t)n - (auth != NULL ? MC_UDP_AUTH_TAG_SIZE : 0);
        mc_udp_wire_message msg;
        if (mc_udp_wire_decode(buf, len, domain, &msg) == MC_UDP_WIRE_OK &&
            msg.header.type == MC_UDP_MSG_ANNOUNCE && subscriber_address(&msg, addr))
            return;
    }
}

#define FORGED_SIZE 300

/* One whole sample in one data datagram, as a publisher would send it, without a tag. */
static size_t forge(uint8_t *buf, const mc_endpoint_id *publisher, const char *domain, uint64_t seq)
{
    mc_udp_data_header h = {.topic_id = mc_udp_data_topic_id(domain, TOPIC),
                            .publisher = *publisher,
                            .seq = seq,
                            .send_time_ns = 1,
                            .total_size = FORGED_SIZE,
                            .offset = 0,
                            .fragment_size = 1376};
    mc_udp_data_encode(&h, buf);
    for (size_t i = 0; i < FORGED_SIZE; i++)
        buf[MC_UDP_DATA_HEADER_SIZE + i] = pattern(seq, i);
    return MC_UDP_DATA_HEADER_SIZE + FORGED_SIZE;
}

static void send_to(int fd, const void *buf, size_t len, const struct sockaddr_in *addr)
{
    ssize_t n = sendto(fd, buf, len, 0, (const struct sockaddr *)addr, sizeof(*addr));
    assert_int_equal(n, (ssize_t)len);
}

static void test_forged_data_dropped(void **state)
{
    (void)state;
    char key[128], line[2048], want[256];
    write_key("datakey", 32, 13, 0600, key, sizeof(key));
    int sniffer = sniffer_open();
    size_t mark = log_mark();
    pair p;
    pair_open(&p, key, key, NULL);
    pair_wait_matched(&p);
    mc_udp_auth right = load_ok(key, p.domain);
    mc_udp_auth other_domain = load_ok(key, "authelsewhere");
    struct sockaddr_in to;
    sniff_subscriber(sniffer, &right, p.domain, &to);
    close(sniffer);

    int out = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(out >= 0);
    uint8_t buf[MC_UDP_DATA_HEADER_SIZE + FORGED_SIZE + MC_UDP_AUTH_TAG_SIZE];
    size_t len = forge(buf, mc_publisher_id(p.pub), p.domain, 1);
    send_to(out, buf, len, &to); /* no tag */
    mc_udp_auth_tag(&other_domain, buf, len, NULL, 0, buf + len);
    send_to(out, buf, len + MC_UDP_AUTH_TAG_SIZE, &to); /* a tag of another domain's key */
    memset(buf + len, 0xa5, MC_UDP_AUTH_TAG_SIZE);
    send_to(out, buf, len + MC_UDP_AUTH_TAG_SIZE, &to); /* garbage */
    mc_udp_auth_tag(&right, buf, len, NULL, 0, buf + len);
    send_to(out, buf, len + MC_UDP_AUTH_TAG_SIZE, &to); /* the right tag */
    close(out);
    /* the right one arrives; the three before it were read first, from the same socket */
    take_pattern(p.sub, 1, FORGED_SIZE);
    snprintf(want, sizeof(want),
             "dropped a udp datagram from 127.0.0.1 without a valid tag of [udp] auth_key_file "
             "'%s'",
             key);
    assert_true(wait_log(mark, want, 0, line, sizeof(line)));
    assert_int_equal(count_logged(mark, "dropped a udp datagram from"), 1); /* said once */
    close_with_stats(p.sub_ctx, "udp data:", line, sizeof(line));
    assert_int_equal(number_before(line, " unauthenticated"), 3);
    assert_int_equal(number_before(line, " malformed"), 0);
    assert_int_equal(number_before(line, " delivered"), 1);
    assert_int_equal(mc_context_close(p.pub_ctx), 0);
}

/* A subscriber without the key takes a tagged datagram for a malformed one (its payload is
 * 16 bytes longer than the header allows) and drops it; the same datagram untagged is
 * delivered. */
static void test_tagged_data_to_plain_subscriber(void **state)
{
    (void)state;
    char key[128], line[2048];
    write_key("plainkey", 32, 16, 0600, key, sizeof(key));
    int sniffer = sniffer_open();
    pair p;
    pair_open(&p, NULL, NULL, NULL);
    pair_wait_matched(&p);
    mc_udp_auth auth = load_ok(key, p.domain);
    struct sockaddr_in to;
    sniff_subscriber(sniffer, NULL, p.domain, &to);
    close(sniffer);

    int out = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(out >= 0);
    uint8_t buf[MC_UDP_DATA_HEADER_SIZE + FORGED_SIZE + MC_UDP_AUTH_TAG_SIZE];
    size_t len = forge(buf, mc_publisher_id(p.pub), p.domain, 1);
    mc_udp_auth_tag(&auth, buf, len, NULL, 0, buf + len);
    send_to(out, buf, len + MC_UDP_AUTH_TAG_SIZE, &to);
    send_to(out, buf, len, &to);
    close(out);
    take_pattern(p.sub, 1, FORGED_SIZE);
    close_with_stats(p.sub_ctx, "udp data:", line, sizeof(line));
    assert_int_equal(number_before(line, " malformed"), 1);
    assert_int_equal(number_before(line, " unauthenticated"), 0);
    assert_int_equal(number_before(line, " delivered"), 1);
    assert_int_equal(mc_context_close(p.pub_ctx), 0);
}

/* ---- configuration errors ------------------------------------------------------------------ */

static int open_expect_fail(const char *key_path, const char *extra)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/bad.ini", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[framework]\nplugins = udp\ndomain = authbad\nlog_level = error\n"
            "[udp]\npath = %s/plugins/udp\nport = %d\nauth_key_file = %s\n%s\n",
            getenv("MC_BUILDDIR") ? getenv("MC_BUILDDIR") : ".", test_port, key_path,
            extra ? extra : "");
    assert_int_equal(fclose(f), 0);
    mc_context *ctx = NULL;
    int rc = mc_context_open(path, &ctx);
    assert_null(ctx);
    return rc;
}

static void test_bad_key_fails_context_open(void **state)
{
    (void)state;
    char key[128];
    write_key("grp", 32, 14, 0640, key, sizeof(key));
    assert_int_equal(open_expect_fail(key, NULL), MC_ECONFIG);
    const char *error = mc_last_error();
    if (strstr(error, "auth_key_file") == NULL || strstr(error, key) == NULL ||
        strstr(error, "mode 0640") == NULL)
        fail_msg("the error does not name the key, the file and the fault: %s", error);
}

static void test_datagram_size_leaves_room_for_tag(void **state)
{
    (void)state;
    char key[128];
    write_key("room", 32, 15, 0600, key, sizeof(key));
    assert_int_equal(open_expect_fail(key, "datagram_size = 351"), MC_ECONFIG);
    if (strstr(mc_last_error(), "at least 352") == NULL)
        fail_msg("the error does not give the size with the tag: %s", mc_last_error());
    /* 352 is enough: header, the smallest fragment and the tag */
    pair p;
    pair_open(&p, key, key, "datagram_size = 352");
    pair_wait_matched(&p);
    publish_pattern(p.pub, 1, 1000); /* 4 fragments of 256 bytes */
    take_pattern(p.sub, 1, 1000);
    assert_int_equal(mc_context_close(p.pub_ctx), 0);
    assert_int_equal(mc_context_close(p.sub_ctx), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/mc-udp-auth-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    /* outside the kernel's default ephemeral ports (32768-60999) and the ranges of
     * test_discovery and test_udp_data */
    test_port = 61000 + (int)(getpid() % 4000);
    mc_set_log_handler(on_log, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mc_set_log_handler(NULL, NULL);
    free(logs.text);
    logs.text = NULL;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_path_is_off),
        cmocka_unit_test(test_missing_file_refused),
        cmocka_unit_test(test_short_file_refused),
        cmocka_unit_test(test_open_modes_refused),
        cmocka_unit_test(test_not_regular_refused),
        cmocka_unit_test(test_other_owner_refused),
        cmocka_unit_test(test_key_derivation),
        cmocka_unit_test(test_tag_round_trip),
        cmocka_unit_test(test_flipped_bit_rejected),
        cmocka_unit_test(test_other_key_and_domain_rejected),
        cmocka_unit_test(test_same_key_meets_and_delivers),
        cmocka_unit_test(test_same_key_delivers_in_mtu_datagrams),
        cmocka_unit_test(test_keyed_publisher_plain_subscriber),
        cmocka_unit_test(test_plain_publisher_keyed_subscriber),
        cmocka_unit_test(test_different_keys),
        cmocka_unit_test(test_forged_data_dropped),
        cmocka_unit_test(test_tagged_data_to_plain_subscriber),
        cmocka_unit_test(test_bad_key_fails_context_open),
        cmocka_unit_test(test_datagram_size_leaves_room_for_tag),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
