/*
 * The udp data datagram: encoding and the bounds-checked parser (format in data_wire.h
 * and doc/udp.md).
 */
#include <string.h>

#include "data_wire.h"

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

const char *mc_udp_data_status_name(mc_udp_data_status status)
{
    static const char *const names[MC_UDP_DATA_STATUS_COUNT] = {
        "ok",        "short",        "bad magic",  "bad version", "bad header",
        "too large", "bad fragment", "bad offset", "bad length"};
    return (unsigned)status < MC_UDP_DATA_STATUS_COUNT ? names[status] : "unknown";
}

void mc_udp_data_encode(const mc_udp_data_header *h, uint8_t *buf)
{
    put_u32(buf, MC_UDP_DATA_MAGIC);
    buf[4] = MC_UDP_DATA_VERSION;
    buf[5] = 0;
    put_u16(buf + 6, MC_UDP_DATA_HEADER_SIZE);
    put_u64(buf + 8, h->topic_id);
    put_u64(buf + 16, h->publisher.context_hi);
    put_u64(buf + 24, h->publisher.context_lo);
    put_u64(buf + 32, h->publisher.serial);
    put_u64(buf + 40, h->seq);
    put_u64(buf + 48, (uint64_t)h->send_time_ns);
    put_u64(buf + 56, h->total_size);
    put_u64(buf + 64, h->offset);
    put_u32(buf + 72, h->fragment_size);
    put_u32(buf + 76, 0);
}

uint64_t mc_udp_data_fragments(uint64_t total, uint32_t fragment_size)
{
    if (total == 0 || fragment_size == 0)
        return 1;
    return total / fragment_size + (total % fragment_size != 0);
}

static void decode_fields(const uint8_t *buf, mc_udp_data_header *h)
{
    h->topic_id = get_u64(buf + 8);
    h->publisher.context_hi = get_u64(buf + 16);
    h->publisher.context_lo = get_u64(buf + 24);
    h->publisher.serial = get_u64(buf + 32);
    h->seq = get_u64(buf + 40);
    h->send_time_ns = (int64_t)get_u64(buf + 48);
    h->total_size = get_u64(buf + 56);
    h->offset = get_u64(buf + 64);
    h->fragment_size = get_u32(buf + 72);
}

/* The fragment's place in the sample: on a boundary, inside the sample, and exactly as
 * long as the fragment size (or the rest of the sample, for the last one). */
static mc_udp_data_status check_placement(const mc_udp_data_header *h, size_t payload_len)
{
    if (h->total_size == 0)
        return h->offset != 0     ? MC_UDP_DATA_BAD_OFFSET
               : payload_len != 0 ? MC_UDP_DATA_BAD_LENGTH
                                  : MC_UDP_DATA_OK;
    if (h->fragment_size < MC_UDP_DATA_FRAGMENT_MIN ||
        h->fragment_size > MC_UDP_DATA_DATAGRAM_MAX - MC_UDP_DATA_HEADER_SIZE)
        return MC_UDP_DATA_BAD_FRAGMENT;
    if (h->offset >= h->total_size || h->offset % h->fragment_size != 0)
        return MC_UDP_DATA_BAD_OFFSET;
    uint64_t rest = h->total_size - h->offset;
    uint64_t expected = rest < h->fragment_size ? rest : h->fragment_size;
    return payload_len == expected ? MC_UDP_DATA_OK : MC_UDP_DATA_BAD_LENGTH;
}

mc_udp_data_status mc_udp_data_parse(const uint8_t *buf, size_t len, uint64_t max_message,
                                     mc_udp_data_header *h, const uint8_t **payload,
                                     size_t *payload_len)
{
    if (buf == NULL || len < MC_UDP_DATA_HEADER_SIZE)
        return MC_UDP_DATA_SHORT;
    if (get_u32(buf) != MC_UDP_DATA_MAGIC)
        return MC_UDP_DATA_BAD_MAGIC;
    if (buf[4] != MC_UDP_DATA_VERSION)
        return MC_UDP_DATA_BAD_VERSION;
    if (buf[5] != 0 || get_u16(buf + 6) != MC_UDP_DATA_HEADER_SIZE || get_u32(buf + 76) != 0)
        return MC_UDP_DATA_BAD_HEADER;
    decode_fields(buf, h);
    if (h->total_size > max_message)
        return MC_UDP_DATA_TOO_LARGE;
    size_t body = len - MC_UDP_DATA_HEADER_SIZE;
    mc_udp_data_status st = check_placement(h, body);
    if (st != MC_UDP_DATA_OK)
        return st;
    *payload = buf + MC_UDP_DATA_HEADER_SIZE;
    *payload_len = body;
    return MC_UDP_DATA_OK;
}

/* FNV-1a, 64 bits, over the domain, a NUL and the topic: stable across builds and hosts,
 * and a topic of another domain gets another id, so that samples of another domain sharing
 * a multicast group are dropped with the other topics. */
static uint64_t fnv1a(uint64_t hash, const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        hash ^= *c;
        hash *= 0x100000001b3ull;
    }
    return hash;
}

uint64_t mc_udp_data_topic_id(const char *domain, const char *topic)
{
    uint64_t hash = fnv1a(0xcbf29ce484222325ull, domain);
    hash *= 0x100000001b3ull; /* the separator: "a" + "bc" and "ab" + "c" differ */
    return fnv1a(hash, topic);
}
