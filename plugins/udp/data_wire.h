/*
 * The udp data datagram (doc/udp.md): one fragment of one sample. Pure code with no
 * sockets and no allocation, shared by the plugin, the unit test and the fuzz target.
 *
 * Every field is big-endian. The header is fixed and self-describing, so a receiver
 * decides from it alone whether it wants the datagram (topic id) and where its payload
 * goes in the final buffer (offset), before touching the payload:
 *
 *    0  u32 magic "MCUD"          40  u64 sequence (the framework's, 1, 2, ...)
 *    4  u8  version (1)           48  i64 send time, ns since the epoch
 *    5  u8  flags (0)             56  u64 total size of the sample
 *    6  u16 header size (80)      64  u64 offset of this fragment's payload in the sample
 *    8  u64 topic id              72  u32 fragment size: payload bytes of every fragment
 *   16  u64 publisher context hi          of this sample but the last
 *   24  u64 publisher context lo  76  u32 reserved (0)
 *   32  u64 publisher serial      80  payload
 */
#ifndef MEMCAST_UDP_DATA_WIRE_H
#define MEMCAST_UDP_DATA_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memcast/memcast.h>

#define MC_UDP_DATA_MAGIC        0x4d435544u /* "MCUD" */
#define MC_UDP_DATA_VERSION      1
#define MC_UDP_DATA_HEADER_SIZE  80
#define MC_UDP_DATA_FRAGMENT_MIN 256   /* bounds the fragments of a sample (and its bitmap) */
#define MC_UDP_DATA_DATAGRAM_MAX 65507 /* largest UDP payload over IPv4 */

typedef struct mc_udp_data_header {
    uint64_t topic_id;
    mc_endpoint_id publisher;
    uint64_t seq;
    int64_t send_time_ns;
    uint64_t total_size;
    uint64_t offset;
    uint32_t fragment_size;
} mc_udp_data_header;

typedef enum mc_udp_data_status {
    MC_UDP_DATA_OK = 0,
    MC_UDP_DATA_SHORT,        /* fewer bytes than a header */
    MC_UDP_DATA_BAD_MAGIC,    /* not a memcast data datagram */
    MC_UDP_DATA_BAD_VERSION,  /* a version this build does not read */
    MC_UDP_DATA_BAD_HEADER,   /* header size, flags or reserved field wrong */
    MC_UDP_DATA_TOO_LARGE,    /* total size above the receiver's max_message_size */
    MC_UDP_DATA_BAD_FRAGMENT, /* fragment size below the minimum or zero */
    MC_UDP_DATA_BAD_OFFSET,   /* offset beyond the total or not on a fragment boundary */
    MC_UDP_DATA_BAD_LENGTH,   /* payload length not what offset and total imply */
    MC_UDP_DATA_STATUS_COUNT
} mc_udp_data_status;

/* A short name for a status ("bad offset"), for logs. */
const char *mc_udp_data_status_name(mc_udp_data_status status);

/* Writes the header of one fragment into buf (MC_UDP_DATA_HEADER_SIZE bytes). */
void mc_udp_data_encode(const mc_udp_data_header *h, uint8_t *buf);

/* Checks a received datagram of len bytes and decodes its header. Nothing in it is
 * trusted: every length and offset is checked against len, max_message and the other
 * fields. On MC_UDP_DATA_OK, *payload and *payload_len describe this fragment's bytes
 * (inside buf), which belong at h->offset of a sample of h->total_size bytes. */
mc_udp_data_status mc_udp_data_parse(const uint8_t *buf, size_t len, uint64_t max_message,
                                     mc_udp_data_header *h, const uint8_t **payload,
                                     size_t *payload_len);

/* Fragments a sample of total bytes is cut into (1 for an empty sample). */
uint64_t mc_udp_data_fragments(uint64_t total, uint32_t fragment_size);

/* The topic id carried in every datagram: a 64-bit hash of the domain and topic names. */
uint64_t mc_udp_data_topic_id(const char *domain, const char *topic);

#endif /* MEMCAST_UDP_DATA_WIRE_H */
