/*
 * Registration datagrams: see wire.h for the interface and doc/registration.md for the
 * format. Reading goes through a bounded reader that refuses to step past the bytes it
 * was given, so no check elsewhere can forget a length.
 */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* Offsets of the version 1.0 header. */
enum {
    OFF_MAGIC = 0,
    OFF_MAJOR = 4,
    OFF_MINOR = 5,
    OFF_TYPE = 6,
    OFF_FLAGS = 7,
    OFF_HEADER_LEN = 8,
    OFF_PART_INDEX = 10,
    OFF_PART_COUNT = 12,
    OFF_RECORD_COUNT = 14,
    OFF_SEQUENCE = 16,
    OFF_GENERATION = 20,
    OFF_ENDPOINT_COUNT = 24,
    OFF_PID = 28,
    OFF_CONTEXT_HI = 32,
    OFF_CONTEXT_LO = 40,
    OFF_TARGET_HI = 48,
    OFF_TARGET_LO = 56,
    OFF_HOST_TOKEN = 64,
    OFF_DOMAIN_LEN = 80,
    OFF_DOMAIN = 81,
};

_Static_assert(OFF_DOMAIN == MC_UDP_WIRE_HEADER_FIXED, "header layout and size disagree");
_Static_assert(OFF_HOST_TOKEN + MC_HOST_TOKEN_SIZE == OFF_DOMAIN_LEN, "host token size");

static const char *const status_names[MC_UDP_WIRE_STATUS_COUNT] = {
    [MC_UDP_WIRE_OK] = "ok",
    [MC_UDP_WIRE_SHORT_HEADER] = "shorter than the header",
    [MC_UDP_WIRE_BAD_MAGIC] = "wrong magic (not a memcast registration datagram)",
    [MC_UDP_WIRE_VERSION] = "unsupported major version",
    [MC_UDP_WIRE_BAD_HEADER_LENGTH] = "header length does not fit the datagram or its fields",
    [MC_UDP_WIRE_BAD_DOMAIN] = "domain empty or not [A-Za-z0-9_-]",
    [MC_UDP_WIRE_OTHER_DOMAIN] = "another domain",
    [MC_UDP_WIRE_BAD_TYPE] = "unknown message type",
    [MC_UDP_WIRE_FUTURE_TYPE] = "message type of a newer minor version",
    [MC_UDP_WIRE_BAD_FLAGS] = "flags not valid for the message type",
    [MC_UDP_WIRE_BAD_PART] = "part index or count invalid",
    [MC_UDP_WIRE_BAD_RECORD_COUNT] = "record count invalid for the message type",
    [MC_UDP_WIRE_TRUNCATED_RECORD] = "datagram ends inside a record length",
    [MC_UDP_WIRE_BAD_RECORD_LENGTH] = "record length does not fit the datagram or its fields",
    [MC_UDP_WIRE_FIELD_OVERRUN] = "a field runs past the end of its record",
    [MC_UDP_WIRE_BAD_KIND] = "endpoint kind is neither publisher nor subscriber",
    [MC_UDP_WIRE_BAD_TOPIC] = "topic breaks the topic rules",
    [MC_UDP_WIRE_BAD_LABEL] = "type or encoding too long or not printable ASCII",
    [MC_UDP_WIRE_NUL_IN_STRING] = "NUL byte inside a string",
    [MC_UDP_WIRE_TOO_MANY_LOCATORS] = "too many locators",
    [MC_UDP_WIRE_BAD_LOCATOR] = "locator transport name or size invalid",
    [MC_UDP_WIRE_TRAILING_BYTES] = "bytes after the last record",
    [MC_UDP_WIRE_NO_ROOM] = "record does not fit the datagram",
    [MC_UDP_WIRE_TOO_MANY_PARTS] = "more than 65535 datagrams",
    [MC_UDP_WIRE_NO_MEMORY] = "out of memory",
    [MC_UDP_WIRE_TOO_MANY_SOURCES] = "too many losses per source",
};

const char *mc_udp_wire_status_name(mc_udp_wire_status status)
{
    if ((unsigned)status >= MC_UDP_WIRE_STATUS_COUNT)
        return "unknown status";
    return status_names[status];
}

mc_udp_wire_class mc_udp_wire_status_class(mc_udp_wire_status status)
{
    switch (status) {
    case MC_UDP_WIRE_OTHER_DOMAIN:
        return MC_UDP_CLASS_OTHER_DOMAIN;
    case MC_UDP_WIRE_VERSION:
    case MC_UDP_WIRE_FUTURE_TYPE:
        return MC_UDP_CLASS_FUTURE;
    default:
        return MC_UDP_CLASS_MALFORMED;
    }
}

/* ---- little-endian access -------------------------------------------------------------- */

static uint16_t load16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load64(const uint8_t *p)
{
    return (uint64_t)load32(p) | (uint64_t)load32(p + 4) << 32;
}

static void store16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void store32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void store64(uint8_t *p, uint64_t v)
{
    store32(p, (uint32_t)v);
    store32(p + 4, (uint32_t)(v >> 32));
}

/* A bounded reader: every take fails rather than step past the end. */
typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static bool take(reader *r, size_t n, const uint8_t **out)
{
    if (n > r->left)
        return false;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static bool take8(reader *r, uint8_t *v)
{
    const uint8_t *p;
    if (!take(r, 1, &p))
        return false;
    *v = p[0];
    return true;
}

static bool take16(reader *r, uint16_t *v)
{
    const uint8_t *p;
    if (!take(r, 2, &p))
        return false;
    *v = load16(p);
    return true;
}

/* A string with a length prefix of prefix_bytes (1 or 2). */
static bool take_text(reader *r, size_t prefix_bytes, mc_udp_text *t)
{
    size_t len;
    if (prefix_bytes == 1) {
        uint8_t n;
        if (!take8(r, &n))
            return false;
        len = n;
    } else {
        uint16_t n;
        if (!take16(r, &n))
            return false;
        len = n;
    }
    const uint8_t *p;
    if (!take(r, len, &p))
        return false;
    t->data = (const char *)p;
    t->len = len;
    return true;
}

/* ---- field rules -------------------------------------------------------------------------- */

static bool has_nul(mc_udp_text t)
{
    return t.len > 0 && memchr(t.data, '\0', t.len) != NULL;
}

static bool topic_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/';
}

static bool segment_ok(const char *seg, size_t len)
{
    if (len == 0)
        return false; /* leading, trailing or double '/' */
    return !(len == 1 && seg[0] == '.') && !(len == 2 && seg[0] == '.' && seg[1] == '.');
}

/* The rule of mc_topic_validate, which a plugin cannot call: 1..200 bytes of
 * [A-Za-z0-9_.-/], segments between '/' neither empty nor "." nor "..". */
bool mc_udp_wire_topic_ok(const char *topic, size_t len)
{
    if (len == 0 || len > MC_UDP_WIRE_TOPIC_MAX)
        return false;
    size_t seg_start = 0;
    for (size_t i = 0; i < len; i++) {
        if (!topic_char_ok(topic[i]))
            return false;
        if (topic[i] == '/') {
            if (!segment_ok(topic + seg_start, i - seg_start))
                return false;
            seg_start = i + 1;
        }
    }
    return segment_ok(topic + seg_start, len - seg_start);
}

static bool label_ok(mc_udp_text t)
{
    if (t.len > MC_UDP_WIRE_LABEL_MAX)
        return false;
    for (size_t i = 0; i < t.len; i++)
        if ((unsigned char)t.data[i] < 0x20 || (unsigned char)t.data[i] > 0x7e)
            return false;
    return true;
}

static bool domain_ok(mc_udp_text t)
{
    if (t.len == 0 || t.len > MC_UDP_WIRE_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < t.len; i++) {
        char c = t.data[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* A plugin name: [a-z][a-z0-9_]*, at most MC_PLUGIN_NAME_MAX. */
static bool transport_name_ok(mc_udp_text t)
{
    if (t.len == 0 || t.len > MC_PLUGIN_NAME_MAX || t.data[0] < 'a' || t.data[0] > 'z')
        return false;
    for (size_t i = 1; i < t.len; i++) {
        char c = t.data[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static mc_udp_wire_status locators_check(const mc_udp_wire_record *r)
{
    for (size_t i = 0; i < r->locator_count; i++) {
        const mc_udp_wire_locator *l = &r->locators[i];
        if (has_nul(l->transport))
            return MC_UDP_WIRE_NUL_IN_STRING;
        if (!transport_name_ok(l->transport) || l->size > MC_LOCATOR_MAX)
            return MC_UDP_WIRE_BAD_LOCATOR;
    }
    return MC_UDP_WIRE_OK;
}

mc_udp_wire_status mc_udp_wire_record_check(const mc_udp_wire_record *r)
{
    if (r->kind != MC_KIND_PUBLISHER && r->kind != MC_KIND_SUBSCRIBER)
        return MC_UDP_WIRE_BAD_KIND;
    if (r->locator_count > MC_LOCATORS_MAX)
        return MC_UDP_WIRE_TOO_MANY_LOCATORS;
    if (has_nul(r->topic) || has_nul(r->type) || has_nul(r->encoding))
        return MC_UDP_WIRE_NUL_IN_STRING;
    if (!mc_udp_wire_topic_ok(r->topic.data, r->topic.len))
        return MC_UDP_WIRE_BAD_TOPIC;
    if (!label_ok(r->type) || !label_ok(r->encoding))
        return MC_UDP_WIRE_BAD_LABEL;
    if (r->source_count > MC_REG_SOURCES_MAX)
        return MC_UDP_WIRE_TOO_MANY_SOURCES;
    return locators_check(r);
}

static mc_udp_text text_of(const char *s, size_t max)
{
    if (s == NULL)
        return (mc_udp_text){.data = "", .len = 0};
    return (mc_udp_text){.data = s, .len = strnlen(s, max + 1)};
}

void mc_udp_wire_record_from(const mc_registration *reg, mc_udp_wire_record *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = (uint8_t)(reg->kind <= 0xff ? reg->kind : 0);
    out->serial = reg->id.serial;
    out->messages = reg->messages;
    out->dropped = reg->dropped;
    out->topic = text_of(reg->topic, MC_UDP_WIRE_TOPIC_MAX);
    out->type = text_of(reg->type, MC_UDP_WIRE_LABEL_MAX);
    out->encoding = text_of(reg->encoding, MC_UDP_WIRE_LABEL_MAX);
    /* One more than the maximum stands for "too many": the check rejects it. */
    uint32_t count = reg->locators != NULL ? reg->locator_count : 0;
    out->locator_count = (uint8_t)(count > MC_LOCATORS_MAX ? MC_LOCATORS_MAX + 1 : count);
    for (uint32_t i = 0; i < count && i < MC_LOCATORS_MAX; i++) {
        const mc_locator *l = &reg->locators[i];
        out->locators[i].transport = text_of(l->transport, MC_PLUGIN_NAME_MAX);
        out->locators[i].data = l->data;
        out->locators[i].size = l->size;
    }
    /* One more than the maximum stands for "too many" here too. */
    uint32_t sources =
        reg->struct_size >= sizeof(mc_registration) && reg->sources != NULL ? reg->source_count : 0;
    out->source_count = (uint8_t)(sources > MC_REG_SOURCES_MAX ? MC_REG_SOURCES_MAX + 1 : sources);
    for (uint32_t i = 0; i < sources && i < MC_REG_SOURCES_MAX; i++)
        out->sources[i] = reg->sources[i];
}

/* ---- decoding ------------------------------------------------------------------------------ */

static bool type_known(uint8_t type)
{
    return type >= MC_UDP_MSG_ANNOUNCE && type <= MC_UDP_MSG_REQUEST;
}

static bool is_full_announce(const mc_udp_wire_header *h)
{
    return h->type == MC_UDP_MSG_ANNOUNCE && (h->flags & MC_UDP_FLAG_FULL);
}

static void header_fields(const uint8_t *p, mc_udp_wire_header *h)
{
    h->minor = p[OFF_MINOR];
    h->type = p[OFF_TYPE];
    h->flags = p[OFF_FLAGS];
    h->part_index = load16(p + OFF_PART_INDEX);
    h->part_count = load16(p + OFF_PART_COUNT);
    h->record_count = load16(p + OFF_RECORD_COUNT);
    h->sequence = load32(p + OFF_SEQUENCE);
    h->generation = load32(p + OFF_GENERATION);
    h->endpoint_count = load32(p + OFF_ENDPOINT_COUNT);
    h->pid = (int32_t)load32(p + OFF_PID);
    h->context_hi = load64(p + OFF_CONTEXT_HI);
    h->context_lo = load64(p + OFF_CONTEXT_LO);
    h->target_hi = load64(p + OFF_TARGET_HI);
    h->target_lo = load64(p + OFF_TARGET_LO);
    memcpy(h->host_token, p + OFF_HOST_TOKEN, MC_HOST_TOKEN_SIZE);
    h->domain.len = p[OFF_DOMAIN_LEN];
    h->domain.data = (const char *)p + OFF_DOMAIN;
}

/* Magic and major first: a future major may have a different header size. */
static mc_udp_wire_status check_preamble(const uint8_t *p, size_t size)
{
    if (size < OFF_MAJOR + 1)
        return size >= 4 && memcmp(p, MC_UDP_WIRE_MAGIC, 4) != 0 ? MC_UDP_WIRE_BAD_MAGIC
                                                                 : MC_UDP_WIRE_SHORT_HEADER;
    if (memcmp(p + OFF_MAGIC, MC_UDP_WIRE_MAGIC, 4) != 0)
        return MC_UDP_WIRE_BAD_MAGIC;
    if (p[OFF_MAJOR] != MC_UDP_WIRE_MAJOR)
        return MC_UDP_WIRE_VERSION;
    if (size < MC_UDP_WIRE_HEADER_FIXED)
        return MC_UDP_WIRE_SHORT_HEADER;
    return MC_UDP_WIRE_OK;
}

static mc_udp_wire_status check_header_length(const uint8_t *p, size_t size, uint8_t minor)
{
    size_t header_len = load16(p + OFF_HEADER_LEN);
    size_t needed = MC_UDP_WIRE_HEADER_FIXED + p[OFF_DOMAIN_LEN];
    if (header_len < needed || header_len > size)
        return MC_UDP_WIRE_BAD_HEADER_LENGTH;
    if (minor <= MC_UDP_WIRE_MINOR && header_len != needed)
        return MC_UDP_WIRE_BAD_HEADER_LENGTH; /* extra fields only from a newer minor */
    return MC_UDP_WIRE_OK;
}

static bool domain_equals(mc_udp_text t, const char *domain)
{
    return strlen(domain) == t.len && memcmp(domain, t.data, t.len) == 0;
}

static mc_udp_wire_status check_type_and_flags(const mc_udp_wire_header *h)
{
    bool newer = h->minor > MC_UDP_WIRE_MINOR;
    if (!type_known(h->type))
        return newer ? MC_UDP_WIRE_FUTURE_TYPE : MC_UDP_WIRE_BAD_TYPE;
    if ((h->flags & MC_UDP_FLAG_FULL) && h->type != MC_UDP_MSG_ANNOUNCE)
        return MC_UDP_WIRE_BAD_FLAGS;
    if (!newer && (h->flags & ~MC_UDP_FLAG_FULL))
        return MC_UDP_WIRE_BAD_FLAGS;
    return MC_UDP_WIRE_OK;
}

static mc_udp_wire_status check_parts(const mc_udp_wire_header *h)
{
    if (h->part_count == 0 || h->part_index >= h->part_count)
        return MC_UDP_WIRE_BAD_PART;
    if (!is_full_announce(h) && h->part_count != 1)
        return MC_UDP_WIRE_BAD_PART;
    return MC_UDP_WIRE_OK;
}

static mc_udp_wire_status check_record_count(const mc_udp_wire_header *h)
{
    switch (h->type) {
    case MC_UDP_MSG_ANNOUNCE:
        if (is_full_announce(h))
            return MC_UDP_WIRE_OK;
        return h->record_count == 1 ? MC_UDP_WIRE_OK : MC_UDP_WIRE_BAD_RECORD_COUNT;
    case MC_UDP_MSG_WITHDRAW:
        return h->record_count == 1 ? MC_UDP_WIRE_OK : MC_UDP_WIRE_BAD_RECORD_COUNT;
    default:
        /* A newer minor may attach records to these types; this version ignores them. */
        if (h->minor > MC_UDP_WIRE_MINOR)
            return MC_UDP_WIRE_OK;
        return h->record_count == 0 ? MC_UDP_WIRE_OK : MC_UDP_WIRE_BAD_RECORD_COUNT;
    }
}

static bool carries_records(const mc_udp_wire_header *h)
{
    return h->type == MC_UDP_MSG_ANNOUNCE || h->type == MC_UDP_MSG_WITHDRAW;
}

static bool take_locators(reader *body, mc_udp_wire_record *out)
{
    for (size_t i = 0; i < out->locator_count; i++) {
        mc_udp_wire_locator *l = &out->locators[i];
        mc_udp_text data;
        if (!take_text(body, 1, &l->transport) || !take_text(body, 2, &data))
            return false;
        l->data = (const uint8_t *)data.data;
        l->size = data.len;
    }
    return true;
}

#define SOURCE_SIZE 32 /* context hi, context lo, serial, lost */

/* 1.1: the count, then each source's publisher id and losses. */
static mc_udp_wire_status take_sources(reader *body, mc_udp_wire_record *out)
{
    const uint8_t *p;
    if (!take8(body, &out->source_count))
        return MC_UDP_WIRE_FIELD_OVERRUN;
    if (out->source_count > MC_REG_SOURCES_MAX)
        return MC_UDP_WIRE_TOO_MANY_SOURCES;
    for (size_t i = 0; i < out->source_count; i++) {
        if (!take(body, SOURCE_SIZE, &p))
            return MC_UDP_WIRE_FIELD_OVERRUN;
        out->sources[i] = (mc_source_loss){.publisher = {.context_hi = load64(p),
                                                         .context_lo = load64(p + 8),
                                                         .serial = load64(p + 16)},
                                           .lost = load64(p + 24)};
    }
    return MC_UDP_WIRE_OK;
}

/* Reads the fields of one record of record_len bytes (length field included) at p. */
static mc_udp_wire_status parse_record(const uint8_t *p, size_t record_len, uint8_t minor,
                                       mc_udp_wire_record *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = p[2];
    out->locator_count = p[3];
    out->serial = load64(p + 4);
    out->messages = load64(p + 12);
    out->dropped = load64(p + 20);
    if (out->locator_count > MC_LOCATORS_MAX)
        return MC_UDP_WIRE_TOO_MANY_LOCATORS;
    reader body = {.p = p + MC_UDP_WIRE_RECORD_FIXED,
                   .left = record_len - MC_UDP_WIRE_RECORD_FIXED};
    if (!take_text(&body, 2, &out->topic) || !take_text(&body, 2, &out->type) ||
        !take_text(&body, 2, &out->encoding) || !take_locators(&body, out))
        return MC_UDP_WIRE_FIELD_OVERRUN;
    mc_udp_wire_status st = minor >= 1 ? take_sources(&body, out) : MC_UDP_WIRE_OK;
    if (st != MC_UDP_WIRE_OK)
        return st;
    if (body.left > 0 && minor <= MC_UDP_WIRE_MINOR)
        return MC_UDP_WIRE_BAD_RECORD_LENGTH; /* extra fields only from a newer minor */
    return mc_udp_wire_record_check(out);
}

/* Takes the next record off r: its length field, then its fields. */
static mc_udp_wire_status next_record(reader *r, uint8_t minor, mc_udp_wire_record *out)
{
    if (r->left < 2)
        return MC_UDP_WIRE_TRUNCATED_RECORD;
    size_t record_len = load16(r->p);
    if (record_len < MC_UDP_WIRE_RECORD_FIXED || record_len > r->left)
        return MC_UDP_WIRE_BAD_RECORD_LENGTH;
    const uint8_t *p = NULL;
    if (!take(r, record_len, &p))
        return MC_UDP_WIRE_BAD_RECORD_LENGTH;
    return parse_record(p, record_len, minor, out);
}

static mc_udp_wire_status check_records(const uint8_t *p, size_t size, mc_udp_wire_message *msg)
{
    const mc_udp_wire_header *h = &msg->header;
    reader r = {.p = p, .left = size};
    msg->records = p;
    msg->records_size = 0;
    if (!carries_records(h))
        return size > 0 && h->minor <= MC_UDP_WIRE_MINOR ? MC_UDP_WIRE_TRAILING_BYTES
                                                         : MC_UDP_WIRE_OK;
    for (size_t i = 0; i < h->record_count; i++) {
        mc_udp_wire_record rec;
        mc_udp_wire_status st = next_record(&r, h->minor, &rec);
        if (st != MC_UDP_WIRE_OK)
            return st;
    }
    msg->records_size = size - r.left;
    if (r.left > 0 && h->minor <= MC_UDP_WIRE_MINOR)
        return MC_UDP_WIRE_TRAILING_BYTES;
    return MC_UDP_WIRE_OK;
}

mc_udp_wire_status mc_udp_wire_decode(const void *buf, size_t size, const char *domain,
                                      mc_udp_wire_message *out)
{
    const uint8_t *p = buf;
    if (p == NULL || out == NULL)
        return MC_UDP_WIRE_SHORT_HEADER;
    memset(out, 0, sizeof(*out));
    mc_udp_wire_status st = check_preamble(p, size);
    if (st == MC_UDP_WIRE_OK)
        st = check_header_length(p, size, p[OFF_MINOR]);
    if (st != MC_UDP_WIRE_OK)
        return st;
    mc_udp_wire_header *h = &out->header;
    header_fields(p, h);
    if (!domain_ok(h->domain))
        return MC_UDP_WIRE_BAD_DOMAIN;
    if (domain != NULL && !domain_equals(h->domain, domain))
        return MC_UDP_WIRE_OTHER_DOMAIN;
    if ((st = check_type_and_flags(h)) != MC_UDP_WIRE_OK ||
        (st = check_parts(h)) != MC_UDP_WIRE_OK || (st = check_record_count(h)) != MC_UDP_WIRE_OK)
        return st;
    size_t header_len = load16(p + OFF_HEADER_LEN);
    return check_records(p + header_len, size - header_len, out);
}

void mc_udp_wire_cursor_init(mc_udp_wire_cursor *c, const mc_udp_wire_message *msg)
{
    c->next = msg->records;
    c->left = msg->records_size;
    c->minor = msg->header.minor;
}

bool mc_udp_wire_cursor_next(mc_udp_wire_cursor *c, mc_udp_wire_record *out)
{
    if (c->left == 0)
        return false;
    reader r = {.p = c->next, .left = c->left};
    if (next_record(&r, c->minor, out) != MC_UDP_WIRE_OK) {
        c->left = 0; /* cannot happen after a successful decode; stop rather than loop */
        return false;
    }
    c->next = r.p;
    c->left = r.left;
    return true;
}

/* ---- encoding ---------------------------------------------------------------------------- */

size_t mc_udp_wire_header_size(const mc_udp_wire_header *h)
{
    return MC_UDP_WIRE_HEADER_FIXED + h->domain.len;
}

size_t mc_udp_wire_record_size(const mc_udp_wire_record *r)
{
    size_t size =
        MC_UDP_WIRE_RECORD_FIXED + 2 + r->topic.len + 2 + r->type.len + 2 + r->encoding.len;
    for (size_t i = 0; i < r->locator_count && i < MC_LOCATORS_MAX; i++)
        size += 1 + r->locators[i].transport.len + 2 + r->locators[i].size;
    return size + 1 + (size_t)r->source_count * SOURCE_SIZE;
}

static void write_header(uint8_t *p, const mc_udp_wire_header *h)
{
    memset(p, 0, MC_UDP_WIRE_HEADER_FIXED);
    memcpy(p + OFF_MAGIC, MC_UDP_WIRE_MAGIC, 4);
    p[OFF_MAJOR] = MC_UDP_WIRE_MAJOR;
    p[OFF_MINOR] = MC_UDP_WIRE_MINOR;
    p[OFF_TYPE] = h->type;
    p[OFF_FLAGS] = h->flags;
    store16(p + OFF_HEADER_LEN, (uint16_t)mc_udp_wire_header_size(h));
    store16(p + OFF_PART_INDEX, h->part_index);
    store16(p + OFF_PART_COUNT, h->part_count);
    store16(p + OFF_RECORD_COUNT, 0);
    store32(p + OFF_SEQUENCE, h->sequence);
    store32(p + OFF_GENERATION, h->generation);
    store32(p + OFF_ENDPOINT_COUNT, h->endpoint_count);
    store32(p + OFF_PID, (uint32_t)h->pid);
    store64(p + OFF_CONTEXT_HI, h->context_hi);
    store64(p + OFF_CONTEXT_LO, h->context_lo);
    store64(p + OFF_TARGET_HI, h->target_hi);
    store64(p + OFF_TARGET_LO, h->target_lo);
    memcpy(p + OFF_HOST_TOKEN, h->host_token, MC_HOST_TOKEN_SIZE);
    p[OFF_DOMAIN_LEN] = (uint8_t)h->domain.len;
    memcpy(p + OFF_DOMAIN, h->domain.data, h->domain.len);
}

mc_udp_wire_status mc_udp_wire_begin(mc_udp_wire_writer *w, void *buf, size_t capacity,
                                     const mc_udp_wire_header *h)
{
    memset(w, 0, sizeof(*w));
    if (h->domain.data == NULL || !domain_ok(h->domain))
        return MC_UDP_WIRE_BAD_DOMAIN;
    size_t size = mc_udp_wire_header_size(h);
    if (buf == NULL || capacity < size)
        return MC_UDP_WIRE_NO_ROOM;
    write_header(buf, h);
    *w = (mc_udp_wire_writer){.buf = buf, .capacity = capacity, .used = size};
    return MC_UDP_WIRE_OK;
}

static uint8_t *put_text(uint8_t *p, mc_udp_text t, size_t prefix_bytes)
{
    if (prefix_bytes == 1)
        *p++ = (uint8_t)t.len;
    else {
        store16(p, (uint16_t)t.len);
        p += 2;
    }
    if (t.len > 0)
        memcpy(p, t.data, t.len);
    return p + t.len;
}

static void write_record(uint8_t *p, const mc_udp_wire_record *r, size_t size)
{
    store16(p, (uint16_t)size);
    p[2] = r->kind;
    p[3] = r->locator_count;
    store64(p + 4, r->serial);
    store64(p + 12, r->messages);
    store64(p + 20, r->dropped);
    uint8_t *q = p + MC_UDP_WIRE_RECORD_FIXED;
    q = put_text(q, r->topic, 2);
    q = put_text(q, r->type, 2);
    q = put_text(q, r->encoding, 2);
    for (size_t i = 0; i < r->locator_count; i++) {
        const mc_udp_wire_locator *l = &r->locators[i];
        q = put_text(q, l->transport, 1);
        q = put_text(q, (mc_udp_text){.data = (const char *)l->data, .len = l->size}, 2);
    }
    *q++ = r->source_count;
    for (size_t i = 0; i < r->source_count; i++, q += SOURCE_SIZE) {
        store64(q, r->sources[i].publisher.context_hi);
        store64(q + 8, r->sources[i].publisher.context_lo);
        store64(q + 16, r->sources[i].publisher.serial);
        store64(q + 24, r->sources[i].lost);
    }
}

mc_udp_wire_status mc_udp_wire_add(mc_udp_wire_writer *w, const mc_udp_wire_record *r)
{
    mc_udp_wire_status st = mc_udp_wire_record_check(r);
    if (st != MC_UDP_WIRE_OK)
        return st;
    size_t size = mc_udp_wire_record_size(r); /* at most about 1.8 KB once checked */
    if (w->buf == NULL || size > w->capacity - w->used || w->records == UINT16_MAX)
        return MC_UDP_WIRE_NO_ROOM;
    write_record(w->buf + w->used, r, size);
    w->used += size;
    w->records++;
    return MC_UDP_WIRE_OK;
}

size_t mc_udp_wire_end(mc_udp_wire_writer *w)
{
    if (w->buf == NULL)
        return 0;
    store16(w->buf + OFF_RECORD_COUNT, w->records);
    return w->used;
}

void mc_udp_wire_set_part(void *datagram, uint16_t index, uint16_t count)
{
    store16((uint8_t *)datagram + OFF_PART_INDEX, index);
    store16((uint8_t *)datagram + OFF_PART_COUNT, count);
}

void mc_udp_wire_set_sequence(void *datagram, uint32_t sequence)
{
    store32((uint8_t *)datagram + OFF_SEQUENCE, sequence);
}

/* ---- batches -------------------------------------------------------------------------------- */

void mc_udp_wire_batch_init(mc_udp_wire_batch *b, const mc_udp_wire_header *h, size_t limit)
{
    memset(b, 0, sizeof(*b));
    b->header = *h;
    b->header.part_index = 0;
    b->header.part_count = 1;
    b->limit = limit;
}

static mc_udp_wire_status batch_close(mc_udp_wire_batch *b)
{
    if (b->count == b->capacity) {
        size_t capacity = b->capacity ? b->capacity * 2 : 8;
        mc_udp_wire_datagram *items = realloc(b->items, capacity * sizeof(*items));
        if (items == NULL)
            return MC_UDP_WIRE_NO_MEMORY;
        b->items = items;
        b->capacity = capacity;
    }
    size_t size = mc_udp_wire_end(&b->open);
    b->items[b->count++] = (mc_udp_wire_datagram){.data = b->open.buf, .size = size};
    memset(&b->open, 0, sizeof(b->open));
    return MC_UDP_WIRE_OK;
}

/* Starts a datagram able to hold at least `need` bytes of records. */
static mc_udp_wire_status batch_open(mc_udp_wire_batch *b, size_t need)
{
    if (b->count >= UINT16_MAX)
        return MC_UDP_WIRE_TOO_MANY_PARTS;
    size_t capacity = mc_udp_wire_header_size(&b->header) + need;
    if (capacity < b->limit)
        capacity = b->limit;
    uint8_t *buf = malloc(capacity);
    if (buf == NULL)
        return MC_UDP_WIRE_NO_MEMORY;
    mc_udp_wire_status st = mc_udp_wire_begin(&b->open, buf, capacity, &b->header);
    if (st != MC_UDP_WIRE_OK) {
        free(buf);
        memset(&b->open, 0, sizeof(b->open));
    }
    return st;
}

mc_udp_wire_status mc_udp_wire_batch_add(mc_udp_wire_batch *b, const mc_udp_wire_record *r)
{
    mc_udp_wire_status st = mc_udp_wire_record_check(r);
    if (st != MC_UDP_WIRE_OK)
        return st;
    if (b->open.buf != NULL) {
        st = mc_udp_wire_add(&b->open, r);
        b->records += st == MC_UDP_WIRE_OK;
        if (st != MC_UDP_WIRE_NO_ROOM)
            return st;
        if ((st = batch_close(b)) != MC_UDP_WIRE_OK)
            return st;
    }
    if ((st = batch_open(b, mc_udp_wire_record_size(r))) != MC_UDP_WIRE_OK)
        return st;
    st = mc_udp_wire_add(&b->open, r);
    b->records += st == MC_UDP_WIRE_OK;
    return st;
}

mc_udp_wire_status mc_udp_wire_batch_finish(mc_udp_wire_batch *b)
{
    mc_udp_wire_status st = MC_UDP_WIRE_OK;
    if (b->open.buf == NULL && b->count == 0)
        st = batch_open(b, 0);
    if (st == MC_UDP_WIRE_OK && b->open.buf != NULL)
        st = batch_close(b);
    if (st != MC_UDP_WIRE_OK)
        return st;
    if (b->count > UINT16_MAX)
        return MC_UDP_WIRE_TOO_MANY_PARTS;
    for (size_t i = 0; i < b->count; i++) {
        mc_udp_wire_set_part(b->items[i].data, (uint16_t)i, (uint16_t)b->count);
        store32(b->items[i].data + OFF_ENDPOINT_COUNT, (uint32_t)b->records);
    }
    return MC_UDP_WIRE_OK;
}

void mc_udp_wire_batch_free(mc_udp_wire_batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->items[i].data);
    free(b->items);
    free(b->open.buf);
    memset(b, 0, sizeof(*b));
}
