/* The udp plugin's registration datagrams (plugins/udp/wire.c): every message type round
 * trips; a full list of 1000 endpoints splits over datagrams and comes back whole; and
 * every kind of bad input is rejected with its own reason: truncation at every byte,
 * lengths past the end, wrong magic, a future major version, bad topics, labels and
 * locators, NUL bytes inside strings. Fields a newer minor version appends are skipped.
 * The offsets written by hand below are those of doc/registration.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <memcast/memcast.h>

#include "wire.h"

#define DOMAIN "default"
#define BUF    70000

/* Header offsets (doc/registration.md). */
enum {
    H_MAJOR = 4,
    H_MINOR = 5,
    H_TYPE = 6,
    H_FLAGS = 7,
    H_HEADER_LEN = 8,
    H_PART_INDEX = 10,
    H_PART_COUNT = 12,
    H_RECORD_COUNT = 14,
    H_DOMAIN_LEN = 80,
};
/* Record offsets. */
enum { R_LEN = 0, R_KIND = 2, R_LOCATORS = 3, R_TOPIC_LEN = 28 };

static uint8_t buf[BUF];

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static mc_udp_text text(const char *s)
{
    return (mc_udp_text){.data = s, .len = strlen(s)};
}

static mc_udp_wire_header header(uint8_t type)
{
    mc_udp_wire_header h = {.type = type,
                            .part_count = 1,
                            .sequence = 41,
                            .generation = 7,
                            .endpoint_count = 3,
                            .pid = 4242,
                            .context_hi = 0x0123456789abcdefull,
                            .context_lo = 0xfedcba9876543210ull,
                            .domain = text(DOMAIN)};
    for (int i = 0; i < MC_HOST_TOKEN_SIZE; i++)
        h.host_token[i] = (uint8_t)(0xa0 + i);
    if (type == MC_UDP_MSG_REQUEST) {
        h.target_hi = 11;
        h.target_lo = 22;
    }
    return h;
}

static const uint8_t locator_bytes[40] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 255};

static mc_udp_wire_record record(uint64_t serial, const char *topic)
{
    mc_udp_wire_record r = {.kind = serial % 2 ? MC_KIND_PUBLISHER : MC_KIND_SUBSCRIBER,
                            .serial = serial,
                            .messages = serial * 1000 + 1,
                            .dropped = serial + 5,
                            .topic = text(topic),
                            .type = text("demo.Pose"),
                            .encoding = text("protobuf"),
                            .locator_count = 2};
    r.locators[0] = (mc_udp_wire_locator){
        .transport = text("shm"), .data = locator_bytes, .size = sizeof(locator_bytes)};
    r.locators[1] = (mc_udp_wire_locator){.transport = text("udp"), .data = NULL, .size = 0};
    return r;
}

static bool text_equal(mc_udp_text a, mc_udp_text b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void assert_records_equal(const mc_udp_wire_record *a, const mc_udp_wire_record *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->serial, b->serial);
    assert_int_equal(a->messages, b->messages);
    assert_int_equal(a->dropped, b->dropped);
    assert_true(text_equal(a->topic, b->topic));
    assert_true(text_equal(a->type, b->type));
    assert_true(text_equal(a->encoding, b->encoding));
    assert_int_equal(a->locator_count, b->locator_count);
    for (size_t i = 0; i < a->locator_count; i++) {
        assert_true(text_equal(a->locators[i].transport, b->locators[i].transport));
        assert_int_equal(a->locators[i].size, b->locators[i].size);
        if (a->locators[i].size > 0)
            assert_memory_equal(a->locators[i].data, b->locators[i].data, a->locators[i].size);
    }
    assert_int_equal(a->source_count, b->source_count);
    for (size_t i = 0; i < a->source_count; i++)
        assert_memory_equal(&a->sources[i], &b->sources[i], sizeof(a->sources[i]));
}

static void assert_headers_equal(const mc_udp_wire_header *a, const mc_udp_wire_header *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->part_index, b->part_index);
    assert_int_equal(a->part_count, b->part_count);
    assert_int_equal(a->sequence, b->sequence);
    assert_int_equal(a->generation, b->generation);
    assert_int_equal(a->endpoint_count, b->endpoint_count);
    assert_int_equal(a->pid, b->pid);
    assert_int_equal(a->context_hi, b->context_hi);
    assert_int_equal(a->context_lo, b->context_lo);
    assert_int_equal(a->target_hi, b->target_hi);
    assert_int_equal(a->target_lo, b->target_lo);
    assert_memory_equal(a->host_token, b->host_token, MC_HOST_TOKEN_SIZE);
    assert_true(text_equal(a->domain, b->domain));
}

/* Encodes h with the given records into buf; returns the size. */
static size_t encode(const mc_udp_wire_header *h, const mc_udp_wire_record *records, size_t n)
{
    mc_udp_wire_writer w;
    assert_int_equal(mc_udp_wire_begin(&w, buf, sizeof(buf), h), MC_UDP_WIRE_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mc_udp_wire_add(&w, &records[i]), MC_UDP_WIRE_OK);
    return mc_udp_wire_end(&w);
}

static mc_udp_wire_status decode(size_t size)
{
    mc_udp_wire_message msg;
    return mc_udp_wire_decode(buf, size, DOMAIN, &msg);
}

/* A valid incremental announce of one record; returns its size. */
static size_t one_announce(void)
{
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    mc_udp_wire_record r = record(1, "robot/pose");
    return encode(&h, &r, 1);
}

/* ---- raw records: bytes the encoder would refuse to write ------------------------------- */

typedef struct raw_locator {
    const char *transport;
    size_t transport_len;
    size_t data_len;
} raw_locator;

typedef struct raw_record {
    uint8_t kind;
    uint8_t locator_count; /* as written; locators lists what follows */
    const char *topic;
    size_t topic_len;
    const char *type;
    size_t type_len;
    const char *encoding;
    size_t encoding_len;
    raw_locator locators[12];
    size_t written_locators;
    uint8_t source_count;   /* as written (1.1) */
    size_t written_sources; /* 32 bytes each */
    bool no_sources;        /* a 1.0 record: no count at all */
} raw_record;

static raw_record raw_valid(void)
{
    return (raw_record){.kind = MC_KIND_PUBLISHER,
                        .locator_count = 1,
                        .topic = "a/b",
                        .topic_len = 3,
                        .type = "t",
                        .type_len = 1,
                        .encoding = "e",
                        .encoding_len = 1,
                        .locators = {{.transport = "shm", .transport_len = 3, .data_len = 4}},
                        .written_locators = 1};
}

static uint8_t *raw_text(uint8_t *p, const char *s, size_t len, int prefix)
{
    if (prefix == 1)
        *p++ = (uint8_t)len;
    else {
        put16(p, (uint16_t)len);
        p += 2;
    }
    for (size_t i = 0; i < len; i++)
        *p++ = s != NULL ? (uint8_t)s[i] : (uint8_t)'x';
    return p;
}

/* Writes the record at p (its length field is computed) and returns its size. */
static size_t raw_write(uint8_t *p, const raw_record *r)
{
    memset(p, 0, 28);
    p[R_KIND] = r->kind;
    p[R_LOCATORS] = r->locator_count;
    p[4] = 9; /* serial */
    uint8_t *q = raw_text(p + 28, r->topic, r->topic_len, 2);
    q = raw_text(q, r->type, r->type_len, 2);
    q = raw_text(q, r->encoding, r->encoding_len, 2);
    for (size_t i = 0; i < r->written_locators; i++) {
        q = raw_text(q, r->locators[i].transport, r->locators[i].transport_len, 1);
        q = raw_text(q, NULL, r->locators[i].data_len, 2);
    }
    if (!r->no_sources)
        *q++ = r->source_count;
    for (size_t i = 0; i < r->written_sources; i++, q += 32)
        memset(q, (int)(i + 1), 32);
    put16(p + R_LEN, (uint16_t)(q - p));
    return (size_t)(q - p);
}

/* An incremental announce whose one record is r; returns the size. */
static size_t raw_announce(const raw_record *r)
{
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    mc_udp_wire_writer w;
    assert_int_equal(mc_udp_wire_begin(&w, buf, sizeof(buf), &h), MC_UDP_WIRE_OK);
    size_t size = w.used + raw_write(buf + w.used, r);
    put16(buf + H_RECORD_COUNT, 1);
    return size;
}

static mc_udp_wire_status decode_raw(const raw_record *r)
{
    return decode(raw_announce(r));
}

/* ---- round trips ----------------------------------------------------------------------- */

static void round_trip(uint8_t type, uint8_t flags, const mc_udp_wire_record *records, size_t n)
{
    mc_udp_wire_header h = header(type);
    h.flags = flags;
    size_t size = encode(&h, records, n);
    mc_udp_wire_message msg;
    assert_int_equal(mc_udp_wire_decode(buf, size, DOMAIN, &msg), MC_UDP_WIRE_OK);
    h.record_count = (uint16_t)n;
    assert_headers_equal(&msg.header, &h);
    assert_int_equal(msg.header.minor, MC_UDP_WIRE_MINOR);
    assert_int_equal(msg.header.record_count, n);
    mc_udp_wire_cursor c;
    mc_udp_wire_record got;
    mc_udp_wire_cursor_init(&c, &msg);
    for (size_t i = 0; i < n; i++) {
        assert_true(mc_udp_wire_cursor_next(&c, &got));
        assert_records_equal(&got, &records[i]);
    }
    assert_false(mc_udp_wire_cursor_next(&c, &got));
}

static void test_every_message_type_round_trips(void **state)
{
    mc_udp_wire_record r[3] = {record(1, "a"), record(2, "robot/arm/joint-1.state"),
                               record(UINT64_MAX, "x_y")};
    r[2].locator_count = 0;
    r[2].type = text("");
    r[2].encoding = text("");
    round_trip(MC_UDP_MSG_ANNOUNCE, 0, &r[1], 1);
    round_trip(MC_UDP_MSG_ANNOUNCE, MC_UDP_FLAG_FULL, r, 3);
    round_trip(MC_UDP_MSG_ANNOUNCE, MC_UDP_FLAG_FULL, NULL, 0); /* no endpoints at all */
    round_trip(MC_UDP_MSG_WITHDRAW, 0, &r[2], 1);
    round_trip(MC_UDP_MSG_HEARTBEAT, 0, NULL, 0);
    round_trip(MC_UDP_MSG_GOODBYE, 0, NULL, 0);
    round_trip(MC_UDP_MSG_REQUEST, 0, NULL, 0); /* targeted (header() sets a target) */
}

static void test_record_of_a_registration_round_trips(void **state)
{
    mc_locator locs[MC_LOCATORS_MAX + 1];
    memset(locs, 0, sizeof(locs));
    for (int i = 0; i < MC_LOCATORS_MAX + 1; i++) {
        snprintf(locs[i].transport, sizeof(locs[i].transport), "t%d", i);
        locs[i].size = MC_LOCATOR_MAX;
        memset(locs[i].data, i, MC_LOCATOR_MAX);
    }
    mc_registration reg = {.struct_size = sizeof(reg),
                           .kind = MC_KIND_SUBSCRIBER,
                           .id = {.context_hi = 1, .context_lo = 2, .serial = 77},
                           .topic = "big/one",
                           .type = "",
                           .encoding = "raw",
                           .locator_count = MC_LOCATORS_MAX,
                           .locators = locs,
                           .messages = 5,
                           .dropped = 6};
    mc_udp_wire_record r;
    mc_udp_wire_record_from(&reg, &r);
    assert_int_equal(mc_udp_wire_record_check(&r), MC_UDP_WIRE_OK);
    round_trip(MC_UDP_MSG_ANNOUNCE, 0, &r, 1);
    assert_int_equal(r.serial, 77);
    assert_int_equal(r.locators[7].size, MC_LOCATOR_MAX);

    reg.locator_count = MC_LOCATORS_MAX + 1;
    mc_udp_wire_record_from(&reg, &r);
    assert_int_equal(mc_udp_wire_record_check(&r), MC_UDP_WIRE_TOO_MANY_LOCATORS);
    reg.locator_count = 1;
    locs[0].size = MC_LOCATOR_MAX + 1;
    mc_udp_wire_record_from(&reg, &r);
    assert_int_equal(mc_udp_wire_record_check(&r), MC_UDP_WIRE_BAD_LOCATOR);
}

/* ---- a full list over several datagrams -------------------------------------------------- */

static void test_1000_endpoints_split_and_all_recovered(void **state)
{
    enum { N = 1000, LIMIT = 1400 };
    static char topics[N][64];
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    h.endpoint_count = 0; /* finish sets it: the records of the whole list */
    mc_udp_wire_batch b;
    mc_udp_wire_batch_init(&b, &h, LIMIT);
    for (int i = 0; i < N; i++) {
        snprintf(topics[i], sizeof(topics[i]), "fleet/robot-%d/%s", i, i % 3 ? "pose" : "cmd");
        mc_udp_wire_record r = record((uint64_t)i + 1, topics[i]);
        assert_int_equal(mc_udp_wire_batch_add(&b, &r), MC_UDP_WIRE_OK);
    }
    assert_int_equal(mc_udp_wire_batch_finish(&b), MC_UDP_WIRE_OK);
    assert_true(b.count > 20); /* ~110 bytes a record: about 12 per datagram */

    static bool seen[N + 1];
    memset(seen, 0, sizeof(seen));
    size_t total = 0;
    for (size_t d = 0; d < b.count; d++) {
        assert_true(b.items[d].size <= LIMIT);
        mc_udp_wire_message msg;
        assert_int_equal(mc_udp_wire_decode(b.items[d].data, b.items[d].size, DOMAIN, &msg),
                         MC_UDP_WIRE_OK);
        assert_int_equal(msg.header.part_index, d);
        assert_int_equal(msg.header.part_count, b.count);
        assert_int_equal(msg.header.endpoint_count, N);
        assert_int_equal(msg.header.flags, MC_UDP_FLAG_FULL);
        mc_udp_wire_cursor c;
        mc_udp_wire_record got;
        mc_udp_wire_cursor_init(&c, &msg);
        size_t in_this = 0;
        while (mc_udp_wire_cursor_next(&c, &got)) {
            assert_true(got.serial >= 1 && got.serial <= N);
            assert_false(seen[got.serial]);
            seen[got.serial] = true;
            mc_udp_wire_record want = record(got.serial, topics[got.serial - 1]);
            assert_records_equal(&got, &want);
            in_this++;
        }
        assert_int_equal(in_this, msg.header.record_count);
        total += in_this;
    }
    assert_int_equal(total, N);
    mc_udp_wire_batch_free(&b);
}

static void test_empty_list_still_yields_one_datagram(void **state)
{
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    mc_udp_wire_batch b;
    mc_udp_wire_batch_init(&b, &h, 1400);
    assert_int_equal(mc_udp_wire_batch_finish(&b), MC_UDP_WIRE_OK);
    assert_int_equal(b.count, 1);
    mc_udp_wire_message msg;
    assert_int_equal(mc_udp_wire_decode(b.items[0].data, b.items[0].size, DOMAIN, &msg),
                     MC_UDP_WIRE_OK);
    assert_int_equal(msg.header.record_count, 0);
    assert_int_equal(msg.header.part_count, 1);
    assert_int_equal(msg.header.endpoint_count, 0);
    mc_udp_wire_batch_free(&b);
}

static void test_record_larger_than_limit_travels_alone(void **state)
{
    static char type[256];
    memset(type, 'T', 255);
    mc_udp_wire_record big = record(1, "big");
    big.type = text(type);
    big.encoding = text(type);
    big.locator_count = MC_LOCATORS_MAX;
    static const uint8_t data[MC_LOCATOR_MAX];
    for (int i = 0; i < MC_LOCATORS_MAX; i++)
        big.locators[i] =
            (mc_udp_wire_locator){.transport = text("abcdefghijklmnopqrstuvwxyz01234"),
                                  .data = data,
                                  .size = sizeof(data)};
    mc_udp_wire_record small = record(2, "small");
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    mc_udp_wire_batch b;
    mc_udp_wire_batch_init(&b, &h, 512);
    assert_int_equal(mc_udp_wire_batch_add(&b, &small), MC_UDP_WIRE_OK);
    assert_int_equal(mc_udp_wire_batch_add(&b, &big), MC_UDP_WIRE_OK);
    assert_int_equal(mc_udp_wire_batch_add(&b, &small), MC_UDP_WIRE_OK);
    assert_int_equal(mc_udp_wire_batch_finish(&b), MC_UDP_WIRE_OK);
    assert_int_equal(b.count, 3);
    assert_int_equal(b.records, 3);
    assert_int_equal(b.items[1].size,
                     MC_UDP_WIRE_HEADER_FIXED + strlen(DOMAIN) + mc_udp_wire_record_size(&big));
    assert_true(b.items[1].size > 1500);
    for (size_t i = 0; i < b.count; i++) {
        mc_udp_wire_message msg;
        assert_int_equal(mc_udp_wire_decode(b.items[i].data, b.items[i].size, DOMAIN, &msg),
                         MC_UDP_WIRE_OK);
        assert_int_equal(msg.header.record_count, 1);
    }
    mc_udp_wire_batch_free(&b);
}

/* ---- truncation and lengths ------------------------------------------------------------ */

static void test_truncated_at_every_offset(void **state)
{
    mc_udp_wire_record r[3] = {record(1, "a"), record(2, "b/c"), record(3, "d.e")};
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    size_t size = encode(&h, r, 3);
    size_t header_len = MC_UDP_WIRE_HEADER_FIXED + strlen(DOMAIN);
    size_t record_start[4] = {header_len};
    for (int i = 0; i < 3; i++)
        record_start[i + 1] = record_start[i] + mc_udp_wire_record_size(&r[i]);
    assert_int_equal(record_start[3], size);

    for (size_t len = 0; len < size; len++) {
        mc_udp_wire_status want;
        if (len < MC_UDP_WIRE_HEADER_FIXED)
            want = MC_UDP_WIRE_SHORT_HEADER;
        else if (len < header_len)
            want = MC_UDP_WIRE_BAD_HEADER_LENGTH;
        else {
            size_t i = 0;
            while (record_start[i + 1] <= len)
                i++;
            want = len - record_start[i] < 2 ? MC_UDP_WIRE_TRUNCATED_RECORD
                                             : MC_UDP_WIRE_BAD_RECORD_LENGTH;
        }
        mc_udp_wire_status got = decode(len);
        if (got != want)
            fail_msg("truncated to %zu of %zu bytes: got '%s', expected '%s'", len, size,
                     mc_udp_wire_status_name(got), mc_udp_wire_status_name(want));
    }
    assert_int_equal(decode(size), MC_UDP_WIRE_OK);
    assert_int_equal(mc_udp_wire_decode(NULL, 10, DOMAIN, &(mc_udp_wire_message){0}),
                     MC_UDP_WIRE_SHORT_HEADER);
}

static void test_oversized_lengths(void **state)
{
    size_t size = one_announce();
    size_t rec = MC_UDP_WIRE_HEADER_FIXED + strlen(DOMAIN);

    put16(buf + H_HEADER_LEN, (uint16_t)(size + 1)); /* past the end */
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_HEADER_LENGTH);
    put16(buf + H_HEADER_LEN, 0xffff);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_HEADER_LENGTH);
    put16(buf + H_HEADER_LEN, (uint16_t)(rec - 1)); /* shorter than its own domain */
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_HEADER_LENGTH);
    put16(buf + H_HEADER_LEN, 10);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_HEADER_LENGTH);

    size = one_announce();
    buf[H_DOMAIN_LEN] = 255; /* the domain would run into the records and past the end */
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_HEADER_LENGTH);

    size = one_announce();
    put16(buf + rec + R_LEN, (uint16_t)(size - rec + 1));
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_RECORD_LENGTH);
    put16(buf + rec + R_LEN, 0xffff);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_RECORD_LENGTH);
    put16(buf + rec + R_LEN, MC_UDP_WIRE_RECORD_FIXED - 1); /* shorter than its fields */
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_RECORD_LENGTH);
    put16(buf + rec + R_LEN, 0);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_RECORD_LENGTH);

    size = one_announce();
    put16(buf + H_RECORD_COUNT, 2); /* full announces may hold any count */
    buf[H_FLAGS] = MC_UDP_FLAG_FULL;
    assert_int_equal(decode(size), MC_UDP_WIRE_TRUNCATED_RECORD);
    put16(buf + H_RECORD_COUNT, 0xffff);
    assert_int_equal(decode(size), MC_UDP_WIRE_TRUNCATED_RECORD);
}

/* Each length field of a record set past the record's end. */
static void test_string_lengths_past_the_end(void **state)
{
    raw_record r = raw_valid();
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_OK);
    size_t rec = MC_UDP_WIRE_HEADER_FIXED + strlen(DOMAIN);
    size_t topic_at = rec + R_TOPIC_LEN;
    size_t type_at = topic_at + 2 + r.topic_len;
    size_t encoding_at = type_at + 2 + r.type_len;
    size_t transport_at = encoding_at + 2 + r.encoding_len;
    size_t data_at = transport_at + 1 + r.locators[0].transport_len;
    size_t size = raw_announce(&r);
    assert_int_equal(data_at + 2 + r.locators[0].data_len + 1, size); /* + the source count */

    const size_t fields[] = {topic_at, type_at, encoding_at, data_at};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        size = raw_announce(&r);
        put16(buf + fields[i], 0xffff);
        assert_int_equal(decode(size), MC_UDP_WIRE_FIELD_OVERRUN);
        size = raw_announce(&r);
        put16(buf + fields[i], (uint16_t)(get16(buf + fields[i]) + (size - fields[i])));
        assert_int_equal(decode(size), MC_UDP_WIRE_FIELD_OVERRUN);
    }
    size = raw_announce(&r);
    buf[transport_at] = 0xff;
    assert_int_equal(decode(size), MC_UDP_WIRE_FIELD_OVERRUN);

    /* A locator count promising more locators than the record holds. */
    r.locator_count = 3;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_FIELD_OVERRUN);
}

/* ---- versions ---------------------------------------------------------------------------- */

static void test_wrong_magic(void **state)
{
    for (int i = 0; i < 4; i++) {
        size_t size = one_announce();
        buf[i] ^= 0x20;
        assert_int_equal(decode(size), MC_UDP_WIRE_BAD_MAGIC);
    }
    memcpy(buf, "ECAL\x05\x00", 6); /* another protocol on the same port */
    assert_int_equal(decode(6), MC_UDP_WIRE_BAD_MAGIC);
    assert_int_equal(decode(4), MC_UDP_WIRE_BAD_MAGIC);
    memcpy(buf, "MCR", 3);
    assert_int_equal(decode(3), MC_UDP_WIRE_SHORT_HEADER);
    assert_int_equal(decode(0), MC_UDP_WIRE_SHORT_HEADER);
}

static void test_future_major_version_rejected(void **state)
{
    size_t size = one_announce();
    buf[H_MAJOR] = MC_UDP_WIRE_MAJOR + 1;
    assert_int_equal(decode(size), MC_UDP_WIRE_VERSION);
    assert_int_equal(mc_udp_wire_status_class(MC_UDP_WIRE_VERSION), MC_UDP_CLASS_FUTURE);
    buf[H_MAJOR] = 0;
    assert_int_equal(decode(size), MC_UDP_WIRE_VERSION);
    /* A future major may have a shorter header: still a version problem, not a short one. */
    buf[H_MAJOR] = 9;
    assert_int_equal(decode(6), MC_UDP_WIRE_VERSION);
}

/* Grows the field at `at` (a header or record) by inserting n bytes at `insert`, and bumps
 * its u16 length at `length_at`. Returns the new datagram size. */
static size_t splice(size_t size, size_t insert, size_t length_at, size_t n)
{
    memmove(buf + insert + n, buf + insert, size - insert);
    memset(buf + insert, 0xee, n);
    put16(buf + length_at, (uint16_t)(get16(buf + length_at) + n));
    return size + n;
}

static void test_newer_minor_extras_are_skipped(void **state)
{
    mc_udp_wire_record r[2] = {record(5, "x/y"), record(6, "z")};
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    size_t size = encode(&h, r, 2);
    size_t header_len = MC_UDP_WIRE_HEADER_FIXED + strlen(DOMAIN);
    size_t first = header_len, second = first + mc_udp_wire_record_size(&r[0]);
    /* From the back, so that earlier offsets stay valid: 7 bytes after the second record,
     * 5 appended to it, 3 to the first, 9 to the header. */
    size += 7;
    memset(buf + size - 7, 0xdd, 7);
    size = splice(size, second + mc_udp_wire_record_size(&r[1]), second, 5);
    size = splice(size, first + mc_udp_wire_record_size(&r[0]), first, 3);
    size = splice(size, header_len, H_HEADER_LEN, 9);

    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_HEADER_LENGTH); /* same minor: refused */
    buf[H_MINOR] = MC_UDP_WIRE_MINOR + 1;
    buf[H_FLAGS] |= 0x80; /* a flag this version does not know */
    mc_udp_wire_message msg;
    assert_int_equal(mc_udp_wire_decode(buf, size, DOMAIN, &msg), MC_UDP_WIRE_OK);
    assert_int_equal(msg.header.minor, MC_UDP_WIRE_MINOR + 1);
    assert_int_equal(msg.header.generation, h.generation);
    assert_true(text_equal(msg.header.domain, text(DOMAIN)));
    mc_udp_wire_cursor c;
    mc_udp_wire_record got;
    mc_udp_wire_cursor_init(&c, &msg);
    for (int i = 0; i < 2; i++) {
        assert_true(mc_udp_wire_cursor_next(&c, &got));
        assert_records_equal(&got, &r[i]);
    }
    assert_false(mc_udp_wire_cursor_next(&c, &got));

    /* Each extension alone is refused from this minor. */
    size = encode(&h, r, 1);
    size = splice(size, first + mc_udp_wire_record_size(&r[0]), first, 3);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_RECORD_LENGTH);
    size = encode(&h, r, 1);
    buf[size++] = 0;
    assert_int_equal(decode(size), MC_UDP_WIRE_TRAILING_BYTES);
    size = encode(&h, r, 1);
    buf[H_FLAGS] |= 0x80;
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_FLAGS);
}

static void test_unknown_types(void **state)
{
    mc_udp_wire_header h = header(MC_UDP_MSG_HEARTBEAT);
    size_t size = encode(&h, NULL, 0);
    buf[H_TYPE] = 0;
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_TYPE);
    buf[H_TYPE] = MC_UDP_MSG_REQUEST + 1;
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_TYPE);
    buf[H_MINOR] = MC_UDP_WIRE_MINOR + 1;
    assert_int_equal(decode(size), MC_UDP_WIRE_FUTURE_TYPE);
    assert_int_equal(mc_udp_wire_status_class(MC_UDP_WIRE_FUTURE_TYPE), MC_UDP_CLASS_FUTURE);

    /* A newer minor may attach records (or anything) to a heartbeat: ignored. */
    buf[H_TYPE] = MC_UDP_MSG_HEARTBEAT;
    put16(buf + H_RECORD_COUNT, 1);
    memset(buf + size, 0x5a, 40);
    mc_udp_wire_message msg;
    assert_int_equal(mc_udp_wire_decode(buf, size + 40, DOMAIN, &msg), MC_UDP_WIRE_OK);
    assert_int_equal(msg.records_size, 0);
}

/* ---- header fields -------------------------------------------------------------------- */

static void test_header_rules(void **state)
{
    mc_udp_wire_header h = header(MC_UDP_MSG_HEARTBEAT);
    size_t size = encode(&h, NULL, 0);
    put16(buf + H_PART_COUNT, 0);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_PART);
    put16(buf + H_PART_COUNT, 2); /* only full announces come in parts */
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_PART);
    put16(buf + H_PART_COUNT, 1);
    put16(buf + H_PART_INDEX, 1);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_PART);
    put16(buf + H_PART_INDEX, 0);
    buf[H_FLAGS] = MC_UDP_FLAG_FULL;
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_FLAGS);
    buf[H_FLAGS] = 0;
    put16(buf + H_RECORD_COUNT, 1);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_RECORD_COUNT);
    put16(buf + H_RECORD_COUNT, 0);
    buf[size] = 1;
    assert_int_equal(decode(size + 1), MC_UDP_WIRE_TRAILING_BYTES);
    assert_int_equal(decode(size), MC_UDP_WIRE_OK);

    h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    h.part_index = 4;
    h.part_count = 5;
    size = encode(&h, NULL, 0);
    assert_int_equal(decode(size), MC_UDP_WIRE_OK);
    put16(buf + H_PART_INDEX, 5);
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_PART);

    /* Incremental announces and withdrawals carry exactly one record. */
    mc_udp_wire_record r[2] = {record(1, "a"), record(2, "b")};
    h = header(MC_UDP_MSG_WITHDRAW);
    assert_int_equal(decode(encode(&h, r, 2)), MC_UDP_WIRE_BAD_RECORD_COUNT);
    assert_int_equal(decode(encode(&h, r, 0)), MC_UDP_WIRE_BAD_RECORD_COUNT);
    h = header(MC_UDP_MSG_ANNOUNCE);
    assert_int_equal(decode(encode(&h, r, 2)), MC_UDP_WIRE_BAD_RECORD_COUNT);
}

static void test_domains(void **state)
{
    size_t size = one_announce();
    mc_udp_wire_message msg;
    assert_int_equal(mc_udp_wire_decode(buf, size, "other", &msg), MC_UDP_WIRE_OTHER_DOMAIN);
    assert_int_equal(mc_udp_wire_decode(buf, size, "defaul", &msg), MC_UDP_WIRE_OTHER_DOMAIN);
    assert_int_equal(mc_udp_wire_decode(buf, size, "defaults", &msg), MC_UDP_WIRE_OTHER_DOMAIN);
    assert_int_equal(mc_udp_wire_status_class(MC_UDP_WIRE_OTHER_DOMAIN), MC_UDP_CLASS_OTHER_DOMAIN);
    assert_int_equal(mc_udp_wire_decode(buf, size, NULL, &msg), MC_UDP_WIRE_OK);

    buf[MC_UDP_WIRE_HEADER_FIXED + 2] = ' ';
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_DOMAIN);
    buf[MC_UDP_WIRE_HEADER_FIXED + 2] = '\0';
    assert_int_equal(decode(size), MC_UDP_WIRE_BAD_DOMAIN);

    mc_udp_wire_header h = header(MC_UDP_MSG_HEARTBEAT);
    h.domain = text("");
    mc_udp_wire_writer w;
    assert_int_equal(mc_udp_wire_begin(&w, buf, sizeof(buf), &h), MC_UDP_WIRE_BAD_DOMAIN);
    h.domain = text("x");
    size = encode(&h, NULL, 0);
    buf[H_DOMAIN_LEN] = 0; /* an empty domain, header length adjusted to match */
    put16(buf + H_HEADER_LEN, MC_UDP_WIRE_HEADER_FIXED);
    assert_int_equal(decode(size - 1), MC_UDP_WIRE_BAD_DOMAIN);
}

/* ---- record fields --------------------------------------------------------------------- */

/* 1.1: a subscriber's losses per publisher travel in its record; a 1.0 record (no count)
 * still decodes, with none. */
static void test_sources_travel(void **state)
{
    mc_udp_wire_record r = record(4, "robot/pose");
    r.kind = MC_KIND_SUBSCRIBER;
    r.source_count = MC_REG_SOURCES_MAX;
    for (size_t i = 0; i < MC_REG_SOURCES_MAX; i++)
        r.sources[i] = (mc_source_loss){
            .publisher = {.context_hi = 10 + i, .context_lo = 20 + i, .serial = 30 + i},
            .lost = 1000 - i};
    round_trip(MC_UDP_MSG_ANNOUNCE, 0, &r, 1);

    raw_record raw = raw_valid();
    raw.source_count = 2;
    raw.written_sources = 2;
    assert_int_equal(decode_raw(&raw), MC_UDP_WIRE_OK);
    mc_udp_wire_message msg;
    mc_udp_wire_cursor c;
    mc_udp_wire_record got;
    assert_int_equal(mc_udp_wire_decode(buf, raw_announce(&raw), DOMAIN, &msg), MC_UDP_WIRE_OK);
    mc_udp_wire_cursor_init(&c, &msg);
    assert_true(mc_udp_wire_cursor_next(&c, &got));
    assert_int_equal(got.source_count, 2);
    assert_int_equal(got.sources[1].lost, 0x0202020202020202ull);

    raw.written_sources = 1; /* the count says more than the record holds */
    assert_int_equal(decode_raw(&raw), MC_UDP_WIRE_FIELD_OVERRUN);
    raw.source_count = MC_REG_SOURCES_MAX + 1;
    raw.written_sources = MC_REG_SOURCES_MAX + 1;
    assert_int_equal(decode_raw(&raw), MC_UDP_WIRE_TOO_MANY_SOURCES);

    raw = raw_valid();
    raw.no_sources = true; /* from 1.1 on, the count must be there */
    assert_int_equal(decode_raw(&raw), MC_UDP_WIRE_FIELD_OVERRUN);
    size_t size = raw_announce(&raw);
    buf[H_MINOR] = 0; /* a 1.0 sender never writes it */
    assert_int_equal(mc_udp_wire_decode(buf, size, DOMAIN, &msg), MC_UDP_WIRE_OK);
    mc_udp_wire_cursor_init(&c, &msg);
    assert_true(mc_udp_wire_cursor_next(&c, &got));
    assert_int_equal(got.source_count, 0);

    /* the encoder refuses too many */
    r.source_count = MC_REG_SOURCES_MAX + 1;
    mc_udp_wire_writer w;
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    assert_int_equal(mc_udp_wire_begin(&w, buf, sizeof(buf), &h), MC_UDP_WIRE_OK);
    assert_int_equal(mc_udp_wire_add(&w, &r), MC_UDP_WIRE_TOO_MANY_SOURCES);
}

static void test_zero_length_topic(void **state)
{
    raw_record r = raw_valid();
    r.topic_len = 0;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_TOPIC);
    mc_udp_wire_record enc = record(1, "");
    mc_udp_wire_writer w;
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    assert_int_equal(mc_udp_wire_begin(&w, buf, sizeof(buf), &h), MC_UDP_WIRE_OK);
    assert_int_equal(mc_udp_wire_add(&w, &enc), MC_UDP_WIRE_BAD_TOPIC);
    assert_int_equal(w.records, 0);
}

static void test_topic_rules_match_the_framework(void **state)
{
    static char longest[MC_TOPIC_MAX + 2];
    memset(longest, 'a', MC_TOPIC_MAX + 1);
    const char *bad[] = {"a b", "a\tb", "a*b",   "a:b",  "caf\xc3\xa9", "/a",   "a/",  "a//b", "/",
                         ".",   "..",   "a/./b", "a/..", "../a",        "a\\b", "a+b", longest};
    const char *good[] = {"a",          "a/b",    "a.b",   "...",  "a/.../b",  "-_.",
                          "robot/pose", "A-Z_09", ".a/b.", "a..b", longest + 1};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_record r = raw_valid();
        r.topic = bad[i];
        r.topic_len = strlen(bad[i]);
        assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_TOPIC);
        assert_false(mc_udp_wire_topic_ok(bad[i], strlen(bad[i])));
        assert_int_not_equal(mc_topic_validate(bad[i]), 0);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        raw_record r = raw_valid();
        r.topic = good[i];
        r.topic_len = strlen(good[i]);
        assert_int_equal(decode_raw(&r), MC_UDP_WIRE_OK);
        assert_true(mc_udp_wire_topic_ok(good[i], strlen(good[i])));
        assert_int_equal(mc_topic_validate(good[i]), 0);
    }
    /* Every short string over a small alphabet: the two rules never disagree. */
    const char alphabet[] = "a./_ -";
    char topic[5];
    for (int len = 1; len <= 4; len++) {
        int combos = 1;
        for (int i = 0; i < len; i++)
            combos *= (int)strlen(alphabet);
        for (int n = 0; n < combos; n++) {
            int v = n;
            for (int i = 0; i < len; i++, v /= (int)strlen(alphabet))
                topic[i] = alphabet[v % (int)strlen(alphabet)];
            topic[len] = '\0';
            bool ours = mc_udp_wire_topic_ok(topic, (size_t)len);
            if (ours != (mc_topic_validate(topic) == 0))
                fail_msg("topic '%s': wire says %d, the framework disagrees", topic, ours);
        }
    }
}

static void test_too_many_locators(void **state)
{
    raw_record r = raw_valid();
    r.locator_count = MC_LOCATORS_MAX;
    r.written_locators = MC_LOCATORS_MAX;
    for (int i = 0; i < MC_LOCATORS_MAX; i++)
        r.locators[i] = (raw_locator){.transport = "shm", .transport_len = 3, .data_len = 8};
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_OK);
    r.locator_count = MC_LOCATORS_MAX + 1;
    r.written_locators = MC_LOCATORS_MAX + 1;
    r.locators[MC_LOCATORS_MAX] = r.locators[0];
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_TOO_MANY_LOCATORS);
    r.locator_count = 255; /* without the locators behind it */
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_TOO_MANY_LOCATORS);
}

static void test_nul_inside_strings(void **state)
{
    raw_record r = raw_valid();
    r.topic = "a\0b";
    r.topic_len = 3;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_NUL_IN_STRING);
    r = raw_valid();
    r.topic = "ab\0";
    r.topic_len = 3; /* a C string's terminator sent by mistake */
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_NUL_IN_STRING);
    r = raw_valid();
    r.type = "x\0";
    r.type_len = 2;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_NUL_IN_STRING);
    r = raw_valid();
    r.encoding = "\0";
    r.encoding_len = 1;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_NUL_IN_STRING);
    r = raw_valid();
    r.locators[0].transport = "sh\0m";
    r.locators[0].transport_len = 4;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_NUL_IN_STRING);
}

static void test_bad_kind_labels_and_locators(void **state)
{
    raw_record r = raw_valid();
    r.kind = 0;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_KIND);
    r.kind = 3;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_KIND);

    static char long_label[MC_UDP_WIRE_LABEL_MAX + 1];
    memset(long_label, 'L', sizeof(long_label));
    r = raw_valid();
    r.type = long_label;
    r.type_len = MC_UDP_WIRE_LABEL_MAX;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_OK);
    r.type_len = MC_UDP_WIRE_LABEL_MAX + 1;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_LABEL);
    const char *bad_labels[] = {"a\nb", "\x7f", "\xff", "tab\t"};
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        r = raw_valid();
        r.encoding = bad_labels[i];
        r.encoding_len = strlen(bad_labels[i]);
        assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_LABEL);
    }

    const char *bad_transports[] = {"", "Shm", "1shm", "sh-m", "abcdefghijklmnopqrstuvwxyz012345"};
    for (size_t i = 0; i < sizeof(bad_transports) / sizeof(bad_transports[0]); i++) {
        r = raw_valid();
        r.locators[0].transport = bad_transports[i];
        r.locators[0].transport_len = strlen(bad_transports[i]);
        assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_LOCATOR);
    }
    r = raw_valid();
    r.locators[0].data_len = MC_LOCATOR_MAX;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_OK);
    r.locators[0].data_len = MC_LOCATOR_MAX + 1;
    assert_int_equal(decode_raw(&r), MC_UDP_WIRE_BAD_LOCATOR);
}

/* ---- the encoder -------------------------------------------------------------------------- */

static void test_encoder_limits(void **state)
{
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    mc_udp_wire_writer w;
    uint8_t small[100];
    assert_int_equal(mc_udp_wire_begin(&w, small, MC_UDP_WIRE_HEADER_FIXED, &h),
                     MC_UDP_WIRE_NO_ROOM);
    assert_int_equal(mc_udp_wire_begin(&w, small, sizeof(small), &h), MC_UDP_WIRE_OK);
    mc_udp_wire_record r = record(1, "a");
    assert_int_equal(mc_udp_wire_add(&w, &r), MC_UDP_WIRE_NO_ROOM);
    assert_int_equal(w.records, 0);
    assert_int_equal(w.used, MC_UDP_WIRE_HEADER_FIXED + strlen(DOMAIN));
    r.kind = 9;
    assert_int_equal(mc_udp_wire_add(&w, &r), MC_UDP_WIRE_BAD_KIND);

    mc_udp_wire_batch b;
    h.flags = MC_UDP_FLAG_FULL;
    mc_udp_wire_batch_init(&b, &h, 1400);
    assert_int_equal(mc_udp_wire_batch_add(&b, &r), MC_UDP_WIRE_BAD_KIND);
    mc_udp_wire_batch_free(&b);

    for (int s = 0; s < MC_UDP_WIRE_STATUS_COUNT; s++) {
        const char *name = mc_udp_wire_status_name((mc_udp_wire_status)s);
        assert_non_null(name);
        assert_string_not_equal(name, "unknown status");
    }
    assert_string_equal(mc_udp_wire_status_name(MC_UDP_WIRE_STATUS_COUNT), "unknown status");
}

/* ---- garbage ------------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

typedef struct tally {
    unsigned by_status[MC_UDP_WIRE_STATUS_COUNT];
    unsigned by_class[3];
    unsigned total;
} tally;

static mc_udp_wire_status count(tally *t, size_t size)
{
    mc_udp_wire_message msg;
    mc_udp_wire_status st = mc_udp_wire_decode(buf, size, DOMAIN, &msg);
    assert_true((unsigned)st < MC_UDP_WIRE_STATUS_COUNT);
    t->by_status[st]++;
    t->total++;
    if (st != MC_UDP_WIRE_OK) {
        t->by_class[mc_udp_wire_status_class(st)]++;
        return st;
    }
    /* Whatever was accepted must walk cleanly, inside the buffer. */
    mc_udp_wire_cursor c;
    mc_udp_wire_record r;
    mc_udp_wire_cursor_init(&c, &msg);
    size_t n = 0;
    while (mc_udp_wire_cursor_next(&c, &r)) {
        assert_int_equal(mc_udp_wire_record_check(&r), MC_UDP_WIRE_OK);
        assert_true((const uint8_t *)r.topic.data >= buf &&
                    (const uint8_t *)r.topic.data + r.topic.len <= buf + size);
        n++;
    }
    if (msg.records_size > 0)
        assert_int_equal(n, msg.header.record_count);
    return st;
}

static void test_garbage_is_rejected_and_counted(void **state)
{
    tally random_bytes = {0};
    for (int i = 0; i < 20000; i++) {
        size_t size = next_random() % 1500;
        for (size_t j = 0; j < size; j++)
            buf[j] = (uint8_t)next_random();
        if (i % 2) /* get past the magic and version, to reach the deeper checks */
            memcpy(buf, "MCRG\x01\x00", size < 6 ? size : 6);
        assert_int_not_equal(count(&random_bytes, size), MC_UDP_WIRE_OK);
    }
    assert_int_equal(random_bytes.total, 20000);
    assert_int_equal(random_bytes.by_class[MC_UDP_CLASS_MALFORMED] +
                         random_bytes.by_class[MC_UDP_CLASS_OTHER_DOMAIN] +
                         random_bytes.by_class[MC_UDP_CLASS_FUTURE],
                     20000);
    assert_true(random_bytes.by_status[MC_UDP_WIRE_BAD_MAGIC] > 5000);
    assert_true(random_bytes.by_status[MC_UDP_WIRE_BAD_HEADER_LENGTH] > 1000);

    /* Valid datagrams with a few bytes changed: reach every check, never crash. */
    mc_udp_wire_record r[4] = {record(1, "a/b"), record(2, "c"), record(3, "d/e/f"),
                               record(4, "g")};
    mc_udp_wire_header h = header(MC_UDP_MSG_ANNOUNCE);
    h.flags = MC_UDP_FLAG_FULL;
    tally mutated = {0};
    for (int i = 0; i < 50000; i++) {
        size_t size = encode(&h, r, 4);
        int flips = 1 + (int)(next_random() % 3);
        for (int f = 0; f < flips; f++)
            buf[next_random() % size] ^= (uint8_t)(1u << (next_random() % 8));
        count(&mutated, size - (next_random() % 4 == 0 ? next_random() % size : 0));
    }
    assert_int_equal(mutated.total, 50000);
    assert_true(mutated.by_status[MC_UDP_WIRE_OK] > 0); /* counter or serial bits */
    int reasons = 0;
    for (int s = 1; s < MC_UDP_WIRE_STATUS_COUNT; s++)
        reasons += mutated.by_status[s] > 0;
    assert_true(reasons >= 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_message_type_round_trips),
        cmocka_unit_test(test_record_of_a_registration_round_trips),
        cmocka_unit_test(test_1000_endpoints_split_and_all_recovered),
        cmocka_unit_test(test_empty_list_still_yields_one_datagram),
        cmocka_unit_test(test_record_larger_than_limit_travels_alone),
        cmocka_unit_test(test_truncated_at_every_offset),
        cmocka_unit_test(test_oversized_lengths),
        cmocka_unit_test(test_string_lengths_past_the_end),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_future_major_version_rejected),
        cmocka_unit_test(test_newer_minor_extras_are_skipped),
        cmocka_unit_test(test_sources_travel),
        cmocka_unit_test(test_unknown_types),
        cmocka_unit_test(test_header_rules),
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_zero_length_topic),
        cmocka_unit_test(test_topic_rules_match_the_framework),
        cmocka_unit_test(test_too_many_locators),
        cmocka_unit_test(test_nul_inside_strings),
        cmocka_unit_test(test_bad_kind_labels_and_locators),
        cmocka_unit_test(test_encoder_limits),
        cmocka_unit_test(test_garbage_is_rejected_and_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
