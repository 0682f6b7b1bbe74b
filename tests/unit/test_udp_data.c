/*
 * The udp data path.
 *  - The datagram parser (plugins/udp/data_wire.c): a header round trips; truncated
 *    datagrams, wrong magic, version or header size, a total above the limit, offsets
 *    beyond the total or off a fragment boundary, and payloads of the wrong length are
 *    each rejected with their own status.
 *  - Reassembly (plugins/udp/reassembly.c): fragments in any order make one sample,
 *    duplicates and conflicting fragments are ignored, a sample missing a fragment is
 *    counted lost once no fragment came for the timeout, memory stays under the cap (the oldest
 * sample is given up for a newer one, a sample larger than the cap is refused), a sample never seen
 * is counted from the sequence gap and a late one is not delivered as well.
 *  - End to end through the framework: two contexts of this process with `plugins = udp`
 *    (local mode, a domain and registration port of their own): 0 B, 1 B, 1 MiB and 8 MiB
 *    intact, order kept, losses made with [udp] test_drop_every counted exactly with
 *    nothing else lost, and a sample above reassembly_memory counted lost.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <memcast/memcast.h>

#include "context.h"
#include "data_wire.h"
#include "hold.h"
#include "reassembly.h"

#define MAX_MESSAGE (64ull << 20)
#define FRAG        1392u /* datagram_size 1472 (network mode's default) less the header */

static uint8_t dgram[MC_UDP_DATA_DATAGRAM_MAX];

static mc_udp_data_header header(uint64_t seq, uint64_t total, uint64_t offset)
{
    return (mc_udp_data_header){.topic_id = 42,
                                .publisher = {.context_hi = 1, .context_lo = 2, .serial = 3},
                                .seq = seq,
                                .send_time_ns = 123456789,
                                .total_size = total,
                                .offset = offset,
                                .fragment_size = FRAG};
}

static uint8_t pattern(uint64_t seq, uint64_t i)
{
    return (uint8_t)(i * 31u + seq * 7u + (i >> 9));
}

/* A datagram of fragment h: the header, then payload_len bytes of the pattern. */
static size_t make(const mc_udp_data_header *h, size_t payload_len)
{
    mc_udp_data_encode(h, dgram);
    for (size_t i = 0; i < payload_len; i++)
        dgram[MC_UDP_DATA_HEADER_SIZE + i] = pattern(h->seq, h->offset + i);
    return MC_UDP_DATA_HEADER_SIZE + payload_len;
}

static mc_udp_data_status parse(size_t len, mc_udp_data_header *out)
{
    const uint8_t *payload;
    size_t payload_len;
    return mc_udp_data_parse(dgram, len, MAX_MESSAGE, out, &payload, &payload_len);
}

/* ---- parser --------------------------------------------------------------------------- */

static void test_parse_round_trip(void **state)
{
    (void)state;
    mc_udp_data_header h = header(7, 5000, FRAG), out;
    size_t len = make(&h, FRAG);
    const uint8_t *payload = NULL;
    size_t payload_len = 0;
    assert_int_equal(mc_udp_data_parse(dgram, len, MAX_MESSAGE, &out, &payload, &payload_len),
                     MC_UDP_DATA_OK);
    assert_int_equal(out.topic_id, h.topic_id);
    assert_memory_equal(&out.publisher, &h.publisher, sizeof(h.publisher));
    assert_int_equal(out.seq, h.seq);
    assert_int_equal(out.send_time_ns, h.send_time_ns);
    assert_int_equal(out.total_size, h.total_size);
    assert_int_equal(out.offset, h.offset);
    assert_int_equal(out.fragment_size, h.fragment_size);
    assert_ptr_equal(payload, dgram + MC_UDP_DATA_HEADER_SIZE);
    assert_int_equal(payload_len, FRAG);
    /* the last fragment is the rest; an empty sample is a bare header */
    h = header(7, 5000, 3 * FRAG);
    assert_int_equal(parse(make(&h, 5000 - 3 * FRAG), &out), MC_UDP_DATA_OK);
    h = header(8, 0, 0);
    assert_int_equal(parse(make(&h, 0), &out), MC_UDP_DATA_OK);
    assert_int_equal(out.total_size, 0);
    assert_int_equal(mc_udp_data_fragments(0, FRAG), 1);
    assert_int_equal(mc_udp_data_fragments(FRAG, FRAG), 1);
    assert_int_equal(mc_udp_data_fragments(FRAG + 1, FRAG), 2);
}

static void test_parse_truncated(void **state)
{
    (void)state;
    mc_udp_data_header h = header(1, 3000, 0), out;
    size_t len = make(&h, FRAG);
    for (size_t cut = 0; cut < MC_UDP_DATA_HEADER_SIZE; cut++)
        assert_int_equal(parse(cut, &out), MC_UDP_DATA_SHORT);
    for (size_t cut = MC_UDP_DATA_HEADER_SIZE; cut < len; cut += 97)
        assert_int_equal(parse(cut, &out), MC_UDP_DATA_BAD_LENGTH);
    const uint8_t *p;
    size_t n;
    assert_int_equal(mc_udp_data_parse(NULL, 100, MAX_MESSAGE, &out, &p, &n), MC_UDP_DATA_SHORT);
}

static void test_parse_bad_header(void **state)
{
    (void)state;
    mc_udp_data_header h = header(1, 100, 0), out;
    size_t len = make(&h, 100);
    dgram[0] ^= 0x20;
    assert_int_equal(parse(len, &out), MC_UDP_DATA_BAD_MAGIC);
    len = make(&h, 100);
    dgram[4] = 2;
    assert_int_equal(parse(len, &out), MC_UDP_DATA_BAD_VERSION);
    len = make(&h, 100);
    dgram[7] = 96; /* header size */
    assert_int_equal(parse(len, &out), MC_UDP_DATA_BAD_HEADER);
    len = make(&h, 100);
    dgram[5] = 1; /* flags */
    assert_int_equal(parse(len, &out), MC_UDP_DATA_BAD_HEADER);
    len = make(&h, 100);
    dgram[79] = 1; /* reserved */
    assert_int_equal(parse(len, &out), MC_UDP_DATA_BAD_HEADER);
}

static void test_parse_bad_sizes_and_offsets(void **state)
{
    (void)state;
    mc_udp_data_header out;
    mc_udp_data_header h = header(1, MAX_MESSAGE + 1, 0);
    assert_int_equal(parse(make(&h, FRAG), &out), MC_UDP_DATA_TOO_LARGE);
    h = header(1, UINT64_MAX, 0);
    assert_int_equal(parse(make(&h, FRAG), &out), MC_UDP_DATA_TOO_LARGE);
    h = header(1, 5000, 4 * FRAG); /* beyond the total */
    assert_int_equal(parse(make(&h, 10), &out), MC_UDP_DATA_BAD_OFFSET);
    h = header(1, 5000, 5000);
    assert_int_equal(parse(make(&h, 0), &out), MC_UDP_DATA_BAD_OFFSET);
    h = header(1, 5000, UINT64_MAX - 5);
    assert_int_equal(parse(make(&h, 10), &out), MC_UDP_DATA_BAD_OFFSET);
    h = header(1, 5000, 100); /* overlapping: not on a fragment boundary */
    assert_int_equal(parse(make(&h, FRAG), &out), MC_UDP_DATA_BAD_OFFSET);
    h = header(1, 0, 0); /* an empty sample with a payload */
    assert_int_equal(parse(make(&h, 1), &out), MC_UDP_DATA_BAD_LENGTH);
    h = header(1, 0, 8);
    assert_int_equal(parse(make(&h, 0), &out), MC_UDP_DATA_BAD_OFFSET);
    h = header(1, 5000, 0); /* longer than the fragment size */
    assert_int_equal(parse(make(&h, FRAG + 1), &out), MC_UDP_DATA_BAD_LENGTH);
    h = header(1, 5000, 3 * FRAG); /* the last one, a byte short */
    assert_int_equal(parse(make(&h, 5000 - 3 * FRAG - 1), &out), MC_UDP_DATA_BAD_LENGTH);
    h = header(1, 5000, 0);
    h.fragment_size = MC_UDP_DATA_FRAGMENT_MIN - 1; /* would need a huge bitmap */
    assert_int_equal(parse(make(&h, h.fragment_size), &out), MC_UDP_DATA_BAD_FRAGMENT);
    h.fragment_size = 0;
    assert_int_equal(parse(make(&h, 0), &out), MC_UDP_DATA_BAD_FRAGMENT);
    h.fragment_size = MC_UDP_DATA_DATAGRAM_MAX;
    assert_int_equal(parse(make(&h, 5000), &out), MC_UDP_DATA_BAD_FRAGMENT);
}

/* ---- reassembly ------------------------------------------------------------------------ */

typedef struct collected {
    size_t count;
    uint64_t seqs[64];
    bool intact[64];
} collected;

static void collect(void *user, const mc_udp_data_header *h, const void *data)
{
    collected *c = user;
    bool ok = true;
    for (uint64_t i = 0; i < h->total_size && ok; i++)
        ok = ((const uint8_t *)data)[i] == pattern(h->seq, i);
    assert_true(c->count < 64);
    c->seqs[c->count] = h->seq;
    c->intact[c->count++] = ok;
}

/* Feeds fragment index of sample (seq, total) to r. */
static void feed(mc_udp_rsm *r, collected *c, uint64_t seq, uint64_t total, uint64_t index,
                 int64_t now)
{
    mc_udp_data_header h = header(seq, total, index * FRAG), out;
    uint64_t rest = total - h.offset;
    size_t len = make(&h, rest < FRAG ? rest : FRAG);
    const uint8_t *payload;
    size_t payload_len;
    assert_int_equal(mc_udp_data_parse(dgram, len, MAX_MESSAGE, &out, &payload, &payload_len),
                     MC_UDP_DATA_OK);
    mc_udp_rsm_add(r, &out, payload, payload_len, now, collect, c);
}

static void test_reassembly_any_order(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    assert_int_equal(mc_udp_rsm_init(&r, 1 << 20, 1000), 0);
    uint64_t total = 10 * FRAG + 5; /* 11 fragments */
    const uint64_t order[] = {10, 3, 0, 7, 1, 2, 9, 4, 8, 6};
    for (size_t i = 0; i < 10; i++)
        feed(&r, &c, 1, total, order[i], 0);
    feed(&r, &c, 1, total, 3, 0); /* duplicate */
    assert_int_equal(c.count, 0);
    assert_true(r.memory_used >= total && r.memory_used <= (1 << 20));
    feed(&r, &c, 1, total, 5, 0);
    assert_int_equal(c.count, 1);
    assert_true(c.intact[0]);
    assert_int_equal(r.memory_used, 0);
    assert_int_equal(r.stats.duplicates, 1);
    feed(&r, &c, 1, total, 5, 0); /* after completion: stale, not a second delivery */
    assert_int_equal(c.count, 1);
    assert_int_equal(r.stats.stale, 1);
    /* a single-fragment sample and an empty one go straight through */
    feed(&r, &c, 2, 100, 0, 0);
    feed(&r, &c, 3, 0, 0, 0);
    assert_int_equal(c.count, 3);
    assert_true(c.intact[1] && c.intact[2]);
    assert_int_equal(r.stats.lost, 0);
    mc_udp_rsm_free(&r);
}

static void test_reassembly_conflicting_fragment(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    assert_int_equal(mc_udp_rsm_init(&r, 1 << 20, 1000), 0);
    feed(&r, &c, 1, 3 * FRAG, 0, 0);
    feed(&r, &c, 1, 2 * FRAG, 1, 0); /* same sample, another total: not used */
    assert_int_equal(r.stats.duplicates, 1);
    feed(&r, &c, 1, 3 * FRAG, 1, 0);
    feed(&r, &c, 1, 3 * FRAG, 2, 0);
    assert_int_equal(c.count, 1);
    assert_true(c.intact[0]);
    mc_udp_rsm_free(&r);
}

static void test_reassembly_timeout(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    const int64_t timeout = 500000000;
    assert_int_equal(mc_udp_rsm_init(&r, 1 << 20, timeout), 0);
    feed(&r, &c, 1, 4 * FRAG, 0, 1000);
    assert_int_equal(mc_udp_rsm_expire(&r, 1000), 1000 + timeout);
    feed(&r, &c, 1, 4 * FRAG, 2, 2000); /* progress: the deadline moves */
    assert_int_equal(mc_udp_rsm_expire(&r, 2000 + timeout - 1), 2000 + timeout);
    assert_int_equal(r.stats.lost, 0);
    assert_int_equal(mc_udp_rsm_expire(&r, 2000 + timeout), INT64_MAX);
    assert_int_equal(r.stats.lost, 1);
    assert_int_equal(r.stats.timed_out, 1);
    assert_int_equal(r.memory_used, 0);
    feed(&r, &c, 1, 4 * FRAG, 1, 3000); /* a straggler of the lost sample */
    assert_int_equal(r.entry_count, 0);
    assert_int_equal(r.stats.lost, 1);
    feed(&r, &c, 2, FRAG * 2, 0, 4000); /* the next one is unaffected */
    feed(&r, &c, 2, FRAG * 2, 1, 4000);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.seqs[0], 2);
    mc_udp_rsm_free(&r);
}

static void test_reassembly_memory_cap(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    const uint64_t cap = 20 * FRAG;
    assert_int_equal(mc_udp_rsm_init(&r, cap, 1000000000), 0);
    feed(&r, &c, 1, 12 * FRAG, 0, 1);
    assert_true(r.memory_used > 12 * FRAG && r.memory_used <= cap);
    feed(&r, &c, 2, 12 * FRAG, 0, 2); /* no room for both: the older is given up */
    assert_true(r.memory_used <= cap);
    assert_int_equal(r.entry_count, 1);
    assert_int_equal(r.stats.evicted, 1);
    feed(&r, &c, 3, 21 * FRAG, 0, 3); /* larger than the cap: refused, the other kept */
    assert_int_equal(r.stats.refused, 1);
    assert_int_equal(r.entry_count, 1);
    feed(&r, &c, 3, 21 * FRAG, 1, 3); /* and the rest of it ignored */
    assert_int_equal(r.stats.refused, 1);
    assert_int_equal(r.stats.lost, 2);
    for (uint64_t i = 1; i < 12; i++)
        feed(&r, &c, 2, 12 * FRAG, i, 4);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.seqs[0], 2);
    assert_true(c.intact[0]);
    assert_int_equal(r.memory_used, 0);
    mc_udp_rsm_free(&r);
}

static void test_reassembly_entry_cap(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    assert_int_equal(mc_udp_rsm_init(&r, 1 << 30, 1000000000), 0);
    for (uint64_t seq = 1; seq <= MC_UDP_RSM_ENTRIES + 10; seq++)
        feed(&r, &c, seq, 2 * FRAG, 0, (int64_t)seq);
    assert_int_equal(r.entry_count, MC_UDP_RSM_ENTRIES);
    assert_int_equal(r.stats.evicted, 10);
    mc_udp_rsm_free(&r);
}

static void test_reassembly_sequence_gap(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    assert_int_equal(mc_udp_rsm_init(&r, 1 << 20, 1000), 0);
    feed(&r, &c, 10, 100, 0, 0); /* the first one seen sets the start: nothing lost */
    feed(&r, &c, 11, 100, 0, 0);
    feed(&r, &c, 14, 100, 0, 0); /* 12 and 13 never came */
    assert_int_equal(r.stats.gaps, 2);
    assert_int_equal(r.stats.lost, 2);
    feed(&r, &c, 12, 100, 0, 0); /* too late: already counted lost */
    assert_int_equal(c.count, 3);
    assert_int_equal(r.stats.lost, 2);
    feed(&r, &c, 14, 100, 0, 0); /* a duplicate */
    assert_int_equal(c.count, 3);
    mc_udp_rsm_free(&r);
}

/* A publisher's samples come out in its order: one still missing a fragment when a newer
 * one completes is given up (counted lost) before the newer one is delivered, and its late
 * fragment is stale. */
static void test_reassembly_in_order(void **state)
{
    (void)state;
    mc_udp_rsm r;
    collected c = {0};
    assert_int_equal(mc_udp_rsm_init(&r, 1 << 20, 1000000000), 0);
    feed(&r, &c, 1, 3 * FRAG, 0, 0); /* 1 of 3 fragments */
    feed(&r, &c, 2, 2 * FRAG, 0, 0);
    feed(&r, &c, 2, 2 * FRAG, 1, 0); /* 2 completes first */
    assert_int_equal(c.count, 1);
    assert_int_equal(c.seqs[0], 2);
    assert_int_equal(r.stats.lost, 1);
    assert_int_equal(r.stats.overtaken, 1);
    assert_int_equal(r.entry_count, 0);
    feed(&r, &c, 1, 3 * FRAG, 1, 0); /* the rest of 1, too late */
    feed(&r, &c, 1, 3 * FRAG, 2, 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(r.stats.lost, 1);
    assert_int_equal(r.entry_count, 0);
    /* another publisher's sample in progress is not touched */
    mc_udp_data_header h = header(5, 2 * FRAG, 0), out;
    h.publisher.serial = 99;
    size_t len = make(&h, FRAG);
    const uint8_t *payload;
    size_t payload_len;
    assert_int_equal(mc_udp_data_parse(dgram, len, MAX_MESSAGE, &out, &payload, &payload_len),
                     MC_UDP_DATA_OK);
    mc_udp_rsm_add(&r, &out, payload, payload_len, 0, collect, &c);
    feed(&r, &c, 3, 100, 0, 0);
    assert_int_equal(c.count, 2);
    assert_int_equal(r.entry_count, 1);
    assert_int_equal(r.stats.lost, 1);
    mc_udp_rsm_free(&r);
}

/* ---- end to end ---------------------------------------------------------------------- */

#define E2E_MAX 256

typedef struct receiver {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t count;
    uint64_t seqs[E2E_MAX];
    uint64_t sizes[E2E_MAX];
    bool intact[E2E_MAX];
} receiver;

static char config_dir[64];
static int test_port;

static void on_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    (void)sub;
    receiver *r = user;
    const uint8_t *data = mc_msg_data(msg);
    size_t size = mc_msg_size(msg);
    uint64_t seq = mc_msg_seq(msg);
    bool ok = true;
    for (size_t i = 0; i < size && ok; i++)
        ok = data[i] == pattern(seq, i);
    pthread_mutex_lock(&r->lock);
    if (r->count < E2E_MAX) {
        r->seqs[r->count] = seq;
        r->sizes[r->count] = size;
        r->intact[r->count] = ok;
        r->count++;
    }
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

static mc_context *open_ctx(const char *domain, const char *udp_lines)
{
    static int counter;
    char path[128];
    snprintf(path, sizeof(path), "%s/ctx%d.ini", config_dir, ++counter);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const char *builddir = getenv("MC_BUILDDIR");
    fprintf(f,
            "[framework]\nplugins = udp\ndomain = %s\nlog_level = warn\n"
            "[udp]\npath = %s/plugins/udp\nport = %d\nheartbeat = 100ms\nexpiry = 2s\n"
            "%s%s\n",
            domain, builddir ? builddir : ".", test_port,
            udp_lines && strstr(udp_lines, "rcvbuf") ? "" : "rcvbuf = 32M\n",
            udp_lines ? udp_lines : "");
    fclose(f);
    mc_context *ctx = NULL;
    int rc = mc_context_open(path, &ctx);
    if (rc != 0)
        fail_msg("mc_context_open: %s: %s", mc_strerror(rc), mc_last_error());
    return ctx;
}

typedef struct pair {
    mc_context *pub_ctx, *sub_ctx;
    mc_publisher *pub;
    mc_subscriber *sub;
    receiver rx;
} pair;

/* A publisher and a subscriber of topic in two contexts of a fresh domain, matched. */
static void pair_open(pair *p, const char *pub_lines, const char *sub_lines)
{
    static int domains;
    char domain[64];
    snprintf(domain, sizeof(domain), "udpdata%d_%d", (int)getpid(), ++domains);
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->rx.lock, NULL);
    pthread_cond_init(&p->rx.changed, NULL);
    p->pub_ctx = open_ctx(domain, pub_lines);
    p->sub_ctx = open_ctx(domain, sub_lines);
    mc_sub_options so;
    mc_sub_options_init(&so);
    so.on_message = on_message;
    so.user = &p->rx;
    assert_int_equal(mc_subscriber_create(p->sub_ctx, "udp/data", &so, &p->sub), 0);
    assert_int_equal(mc_publisher_create(p->pub_ctx, "udp/data", NULL, &p->pub), 0);
    assert_int_equal(mc_publisher_wait_matched(p->pub, 1, 10000), 0);
    assert_int_equal(mc_subscriber_wait_matched(p->sub, 1, 10000), 0);
}

static void pair_close(pair *p)
{
    assert_int_equal(mc_context_close(p->pub_ctx), 0);
    assert_int_equal(mc_context_close(p->sub_ctx), 0);
    pthread_mutex_destroy(&p->rx.lock);
    pthread_cond_destroy(&p->rx.changed);
}

static void publish_pattern(pair *p, uint64_t seq, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    assert_non_null(buf);
    for (size_t i = 0; i < size; i++)
        buf[i] = pattern(seq, i);
    assert_int_equal(mc_publish(p->pub, buf, size), 0);
    free(buf);
}

static mc_stats sub_stats(pair *p)
{
    mc_stats st;
    mc_stats_init(&st);
    assert_int_equal(mc_subscriber_stats(p->sub, &st), 0);
    return st;
}

/* Waits up to 20 s until delivered + lost reaches n; returns delivered. */
static size_t wait_accounted(pair *p, size_t n)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&p->rx.lock);
    for (;;) {
        mc_stats st = sub_stats(p);
        if (p->rx.count + st.dropped[MC_DROP_LOST] >= n)
            break;
        /* the cond only wakes on deliveries; losses are polled at the 50 ms tick */
        struct timespec tick;
        clock_gettime(CLOCK_REALTIME, &tick);
        tick.tv_nsec += 50000000;
        if (tick.tv_nsec >= 1000000000) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000;
        }
        if (tick.tv_sec > deadline.tv_sec ||
            (tick.tv_sec == deadline.tv_sec && tick.tv_nsec > deadline.tv_nsec))
            break;
        pthread_cond_timedwait(&p->rx.changed, &p->rx.lock, &tick);
    }
    size_t count = p->rx.count;
    pthread_mutex_unlock(&p->rx.lock);
    return count;
}

static void test_e2e_sizes_intact(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, "send_rate = 200M", NULL);
    const size_t sizes[] = {0, 1, 1 << 20, 8 << 20};
    for (size_t i = 0; i < 4; i++)
        publish_pattern(&p, i + 1, sizes[i]);
    assert_int_equal(wait_accounted(&p, 4), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(p.rx.seqs[i], i + 1);
        assert_int_equal(p.rx.sizes[i], sizes[i]);
        assert_true(p.rx.intact[i]);
    }
    mc_stats st = sub_stats(&p);
    for (int r = 0; r < MC_DROP_REASONS; r++)
        assert_int_equal(st.dropped[r], 0);
    assert_int_equal(st.transport_count, 1);
    assert_string_equal(st.transports[0].name, "udp");
    pair_close(&p);
}

static void test_e2e_order(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, NULL, NULL);
    const size_t n = 200;
    for (size_t i = 0; i < n; i++)
        publish_pattern(&p, i + 1, 100 + (i % 5) * 1500); /* 1 to 6 fragments */
    assert_int_equal(wait_accounted(&p, n), n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p.rx.seqs[i], i + 1);
        assert_true(p.rx.intact[i]);
    }
    assert_int_equal(sub_stats(&p).dropped[MC_DROP_LOST], 0);
    pair_close(&p);
}

/* Every 25th datagram is not sent: a sample of 10 fragments is lost exactly when one of
 * its datagrams' numbers (counted from 1 per publisher) is a multiple of 25. */
typedef struct announced {
    mc_endpoint_id subscriber;
    mc_source_loss loss;
    uint32_t count;
} announced;

static void find_announced(void *user, const mc_remote *r)
{
    announced *a = user;
    if (memcmp(&r->id, &a->subscriber, sizeof(r->id)) != 0)
        return;
    a->count = r->source_count;
    if (r->source_count > 0)
        a->loss = r->sources[0];
}

/* What other contexts (and `memcast ls`) hear: the subscriber's registration names the
 * publisher it lost samples of, and how many. Asks for fresh counters as `ls` does. */
static void assert_announced_losses(mc_context *observer, const mc_endpoint_id *subscriber,
                                    const mc_endpoint_id *publisher, uint64_t lost)
{
    announced a = {.subscriber = *subscriber};
    for (int tries = 0; tries < 500 && (a.count != 1 || a.loss.lost != lost); tries++) {
        for (size_t i = 0; i < observer->transport_count; i++) {
            mc_transport *tp = observer->transports[i];
            if (tp->ops->reg_refresh != NULL)
                tp->ops->reg_refresh(tp->instance);
        }
        struct timespec t = {.tv_nsec = 10000000}; /* waits for an answer over udp */
        nanosleep(&t, NULL);
        mc_registry_visit(observer, find_announced, &a);
    }
    assert_int_equal(a.count, 1);
    assert_memory_equal(&a.loss.publisher, publisher, sizeof(*publisher));
    assert_int_equal(a.loss.lost, lost);
}

static void test_e2e_losses_counted(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, "test_drop_every = 25\ndatagram_size = 1472", "reassembly_timeout = 100ms");
    const uint64_t n = 50, fragments = 10, every = 25;
    bool lost[50] = {false};
    uint64_t expect_lost = 0;
    for (uint64_t j = 0; j < n; j++) {
        for (uint64_t k = j * fragments + 1; k <= (j + 1) * fragments; k++)
            lost[j] = lost[j] || k % every == 0;
        expect_lost += lost[j];
        publish_pattern(&p, j + 1, fragments * FRAG);
    }
    assert_int_equal(expect_lost, 20);
    size_t delivered = wait_accounted(&p, n);
    mc_stats st = sub_stats(&p);
    assert_int_equal(delivered, n - expect_lost);
    assert_int_equal(st.dropped[MC_DROP_LOST], expect_lost);
    /* counted for the publisher they came from too */
    mc_source_stats sources[2];
    size_t source_count = 0;
    assert_int_equal(mc_subscriber_sources(p.sub, sources, 2, &source_count), 0);
    assert_int_equal(source_count, 1);
    assert_memory_equal(&sources[0].publisher, mc_publisher_id(p.pub), sizeof(mc_endpoint_id));
    assert_int_equal(sources[0].messages, n - expect_lost);
    assert_int_equal(sources[0].dropped[MC_DROP_LOST], expect_lost);
    assert_announced_losses(p.pub_ctx, mc_subscriber_id(p.sub), mc_publisher_id(p.pub),
                            expect_lost);
    size_t next = 0;
    for (uint64_t j = 0; j < n; j++) {
        if (lost[j])
            continue;
        assert_int_equal(p.rx.seqs[next], j + 1);
        assert_true(p.rx.intact[next]);
        next++;
    }
    pair_close(&p);
}

static void test_e2e_memory_bounded(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, "send_rate = 200M", "reassembly_memory = 4M");
    publish_pattern(&p, 1, 8 << 20); /* more than the subscriber may hold */
    publish_pattern(&p, 2, 1 << 20);
    size_t delivered = wait_accounted(&p, 2);
    assert_int_equal(delivered, 1);
    assert_int_equal(p.rx.seqs[0], 2);
    assert_true(p.rx.intact[0]);
    assert_int_equal(sub_stats(&p).dropped[MC_DROP_LOST], 1);
    /* above max_message_size the publisher refuses, naming the limit */
    pair_close(&p);
}

/* The largest sample of the default configuration (64 MiB), unpaced, in local mode's
 * 64 KiB datagrams. The receive buffer holds the whole burst (128M), so that it arrives
 * even when the receiving thread is slowed down (valgrind); the default 64M suffices when
 * it keeps up (the conformance suite's limits/max_size checks that). */
static void test_e2e_max_message(void **state)
{
    (void)state;
    pair p;
    pair_open(&p, NULL, "rcvbuf = 128M");
    publish_pattern(&p, 1, 64 << 20);
    assert_int_equal(wait_accounted(&p, 1), 1);
    assert_int_equal(p.rx.sizes[0], 64 << 20);
    assert_true(p.rx.intact[0]);
    pair_close(&p);
}

/* ---- samples of publishers not connected yet (hold.c) ------------------------------------ */

typedef struct hold_world {
    uint64_t known_serial; /* publisher serials up to this one are connected */
    collected got;
} hold_world;

static bool hold_known(void *user, const mc_endpoint_id *publisher)
{
    return publisher->serial <= ((hold_world *)user)->known_serial;
}

static void hold_collect(void *user, const mc_udp_data_header *h, const void *data)
{
    collect(&((hold_world *)user)->got, h, data);
}

static void hold_put(mc_udp_hold *hold, uint64_t serial, uint64_t seq, size_t size, int64_t now)
{
    static uint8_t data[4096];
    mc_udp_data_header h = header(seq, size, 0);
    h.publisher.serial = serial;
    for (size_t i = 0; i < size; i++)
        data[i] = pattern(seq, i);
    mc_udp_hold_put(hold, &h, data, now);
}

/* Held samples come out intact and in order once their publisher is known; others stay. */
static void test_hold_releases_in_order(void **state)
{
    (void)state;
    mc_udp_hold hold;
    mc_udp_hold_init(&hold, 1 << 20, 1000);
    hold_world w = {.known_serial = 0};
    hold_put(&hold, 1, 10, 100, 0);
    hold_put(&hold, 2, 20, 200, 0);
    hold_put(&hold, 1, 11, 0, 0);
    mc_udp_hold_release(&hold, 0, hold_known, hold_collect, &w);
    assert_int_equal(w.got.count, 0);
    w.known_serial = 1;
    mc_udp_hold_release(&hold, 1, hold_known, hold_collect, &w);
    assert_int_equal(w.got.count, 2);
    assert_int_equal(w.got.seqs[0], 10);
    assert_int_equal(w.got.seqs[1], 11);
    assert_true(w.got.intact[0] && w.got.intact[1]);
    assert_int_equal(hold.count, 1);
    assert_int_equal(hold.bytes, 200);
    assert_int_equal(hold.released, 2);
    mc_udp_hold_free(&hold);
    assert_int_equal(hold.count, 0);
}

/* What is never connected ages out, counted; nothing is delivered. */
static void test_hold_ages_out(void **state)
{
    (void)state;
    mc_udp_hold hold;
    mc_udp_hold_init(&hold, 1 << 20, 1000);
    hold_world w = {.known_serial = 0};
    hold_put(&hold, 5, 1, 10, 0);
    hold_put(&hold, 5, 2, 10, 600);
    assert_int_equal(mc_udp_hold_next_due(&hold), 1001);
    mc_udp_hold_release(&hold, 1001, hold_known, hold_collect, &w);
    assert_int_equal(hold.count, 1);
    assert_int_equal(hold.expired, 1);
    assert_int_equal(mc_udp_hold_next_due(&hold), 1601);
    mc_udp_hold_release(&hold, 1601, hold_known, hold_collect, &w);
    assert_int_equal(hold.count, 0);
    assert_int_equal(hold.expired, 2);
    assert_int_equal(hold.bytes, 0);
    assert_int_equal(w.got.count, 0);
    assert_true(mc_udp_hold_next_due(&hold) == INT64_MAX);
}

/* Bounded in bytes and samples: the oldest give way, a sample larger than the bound is
 * not kept at all. */
static void test_hold_bounded(void **state)
{
    (void)state;
    mc_udp_hold hold;
    mc_udp_hold_init(&hold, 1000, 1000000);
    hold_put(&hold, 1, 1, 400, 0);
    hold_put(&hold, 1, 2, 400, 0);
    hold_put(&hold, 1, 3, 400, 0); /* pushes seq 1 out */
    assert_int_equal(hold.count, 2);
    assert_int_equal(hold.bytes, 800);
    assert_int_equal(hold.expired, 1);
    hold_put(&hold, 1, 4, 1001, 0);
    assert_int_equal(hold.count, 2);
    assert_int_equal(hold.expired, 2);
    for (uint64_t seq = 5; seq < 5 + 2 * MC_UDP_HOLD_SAMPLES; seq++)
        hold_put(&hold, 1, seq, 0, 0);
    assert_int_equal(hold.count, MC_UDP_HOLD_SAMPLES);
    assert_int_equal(hold.bytes, 0);
    hold_world w = {.known_serial = 1};
    mc_udp_hold_release(&hold, 0, hold_known, hold_collect, &w);
    assert_int_equal(w.got.count, MC_UDP_HOLD_SAMPLES);
    assert_int_equal(w.got.seqs[0], 5 + MC_UDP_HOLD_SAMPLES);
    assert_int_equal(w.got.seqs[MC_UDP_HOLD_SAMPLES - 1], 4 + 2 * MC_UDP_HOLD_SAMPLES);
    mc_udp_hold_free(&hold);
}

/* A wrong data_groups is a configuration error naming the key and what is wrong. */
static void test_bad_data_groups_named(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"10.0.0.0/24", "not a multicast address"},
        {"239.255.1.1/24", "host bits"},
        {"239.255.1.0", "no /N"},
        {"239.255.1.0/33", "N must be"},
        {"239.255.x.0/24", "not an IPv4 address"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/groups.ini", config_dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f,
                "[framework]\nplugins = udp\ndomain = udpbad\nlog_level = error\n"
                "[udp]\npath = %s/plugins/udp\nport = %d\nmode = network\n"
                "interface = 127.0.0.1\ndata_groups = %s\n",
                getenv("MC_BUILDDIR") ? getenv("MC_BUILDDIR") : ".", test_port, cases[i][0]);
        fclose(f);
        mc_context *ctx = NULL;
        assert_int_equal(mc_context_open(path, &ctx), MC_ECONFIG);
        assert_null(ctx);
        if (strstr(mc_last_error(), "data_groups") == NULL ||
            strstr(mc_last_error(), cases[i][1]) == NULL)
            fail_msg("%s: the error does not say '%s': %s", cases[i][0], cases[i][1],
                     mc_last_error());
    }
}

/* A datagram size too small for a header and a fragment is a configuration error that
 * names the key. */
static void test_bad_datagram_size_named(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/bad.ini", config_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[framework]\nplugins = udp\ndomain = udpbad\nlog_level = error\n"
            "[udp]\npath = %s/plugins/udp\nport = %d\ndatagram_size = 300\n",
            getenv("MC_BUILDDIR") ? getenv("MC_BUILDDIR") : ".", test_port);
    fclose(f);
    mc_context *ctx = NULL;
    assert_int_equal(mc_context_open(path, &ctx), MC_ECONFIG);
    assert_null(ctx);
    if (strstr(mc_last_error(), "datagram_size 300") == NULL)
        fail_msg("the error does not name the key: %s", mc_last_error());
}

static int setup(void **state)
{
    (void)state;
    snprintf(config_dir, sizeof(config_dir), "/tmp/mc-udp-data-XXXXXX");
    if (mkdtemp(config_dir) == NULL)
        return -1;
    test_port = 40000 + (int)(getpid() % 20000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", config_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_round_trip),
        cmocka_unit_test(test_parse_truncated),
        cmocka_unit_test(test_parse_bad_header),
        cmocka_unit_test(test_parse_bad_sizes_and_offsets),
        cmocka_unit_test(test_reassembly_any_order),
        cmocka_unit_test(test_reassembly_conflicting_fragment),
        cmocka_unit_test(test_reassembly_timeout),
        cmocka_unit_test(test_reassembly_memory_cap),
        cmocka_unit_test(test_reassembly_entry_cap),
        cmocka_unit_test(test_reassembly_sequence_gap),
        cmocka_unit_test(test_reassembly_in_order),
        cmocka_unit_test(test_hold_releases_in_order),
        cmocka_unit_test(test_hold_ages_out),
        cmocka_unit_test(test_hold_bounded),
        cmocka_unit_test(test_bad_data_groups_named),
        cmocka_unit_test(test_e2e_sizes_intact),
        cmocka_unit_test(test_e2e_order),
        cmocka_unit_test(test_e2e_losses_counted),
        cmocka_unit_test(test_e2e_memory_bounded),
        cmocka_unit_test(test_e2e_max_message),
        cmocka_unit_test(test_bad_datagram_size_named),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
