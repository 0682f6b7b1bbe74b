/*
 * The udp plugin's registration datagrams: encoding and decoding, nothing else.
 *
 * Pure functions over byte buffers (no sockets, no clock, no host table), so the unit
 * test and the fuzz target call exactly what the plugin calls. doc/registration.md is the
 * reference for the format; the offsets below must agree with it.
 *
 * Every field is fixed-width little-endian. A datagram is a header, then record_count
 * records; header and records carry their own length so that a newer minor version can
 * append fields that an older reader skips. The decoder checks every length against the
 * bytes that remain before reading, and validates every string with the rules the
 * framework applies, so that a decoded message can be handed on without further checks.
 */
#ifndef MEMCAST_UDP_WIRE_H
#define MEMCAST_UDP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memcast/plugin.h>

#define MC_UDP_WIRE_MAGIC        "MCRG"
#define MC_UDP_WIRE_MAJOR        1
#define MC_UDP_WIRE_MINOR        1     /* 1.1: records end with losses per source */
#define MC_UDP_WIRE_HEADER_FIXED 81    /* header bytes before the domain, version 1.0 */
#define MC_UDP_WIRE_RECORD_FIXED 28    /* record bytes before the topic, version 1.0 */
#define MC_UDP_WIRE_DATAGRAM_MAX 65507 /* largest UDP payload over IPv4 */
#define MC_UDP_WIRE_DOMAIN_MAX   255
#define MC_UDP_WIRE_TOPIC_MAX    200 /* MC_TOPIC_MAX */
#define MC_UDP_WIRE_LABEL_MAX    255 /* type and encoding */

/* Message types. */
enum {
    MC_UDP_MSG_ANNOUNCE = 1,  /* endpoints appeared or changed (flag FULL: all of them) */
    MC_UDP_MSG_WITHDRAW = 2,  /* one endpoint went away */
    MC_UDP_MSG_HEARTBEAT = 3, /* alive; header carries generation and endpoint count */
    MC_UDP_MSG_GOODBYE = 4,   /* the context is closing: forget it now */
    MC_UDP_MSG_REQUEST = 5,   /* announce all your endpoints now (target 0:0 = everyone) */
};

#define MC_UDP_FLAG_FULL 0x01u /* ANNOUNCE only: part of a complete list */

/* Why a datagram was rejected (or could not be written). Each check has its own code so
 * that tests assert the exact reason and logs name it. */
typedef enum mc_udp_wire_status {
    MC_UDP_WIRE_OK = 0,
    MC_UDP_WIRE_SHORT_HEADER,      /* fewer bytes than the fixed header */
    MC_UDP_WIRE_BAD_MAGIC,         /* not "MCRG": not a memcast registration datagram */
    MC_UDP_WIRE_VERSION,           /* a major version this code does not speak */
    MC_UDP_WIRE_BAD_HEADER_LENGTH, /* header length shorter than its fields, or past the end */
    MC_UDP_WIRE_BAD_DOMAIN,        /* domain empty or with characters outside [A-Za-z0-9_-] */
    MC_UDP_WIRE_OTHER_DOMAIN,      /* a valid datagram of another domain */
    MC_UDP_WIRE_BAD_TYPE,          /* unknown message type of this minor version or older */
    MC_UDP_WIRE_FUTURE_TYPE,       /* unknown message type from a newer minor version */
    MC_UDP_WIRE_BAD_FLAGS,         /* FULL on a type other than ANNOUNCE, or unknown bits */
    MC_UDP_WIRE_BAD_PART,          /* part count 0, index past count, parts on a non-full */
    MC_UDP_WIRE_BAD_RECORD_COUNT,  /* records where the type has none, or not exactly one */
    MC_UDP_WIRE_TRUNCATED_RECORD,  /* the datagram ends inside a record's length field */
    MC_UDP_WIRE_BAD_RECORD_LENGTH, /* record length past the end, or not its fields' size */
    MC_UDP_WIRE_FIELD_OVERRUN,     /* a string or locator runs past the end of its record */
    MC_UDP_WIRE_BAD_KIND,          /* neither publisher nor subscriber */
    MC_UDP_WIRE_BAD_TOPIC,         /* breaks the topic rules (see mc_topic_validate) */
    MC_UDP_WIRE_BAD_LABEL,         /* type or encoding longer than 255 or not printable */
    MC_UDP_WIRE_NUL_IN_STRING,     /* a NUL byte inside a length-prefixed string */
    MC_UDP_WIRE_TOO_MANY_LOCATORS, /* more than MC_LOCATORS_MAX */
    MC_UDP_WIRE_BAD_LOCATOR,       /* transport name not a plugin name, or data too long */
    MC_UDP_WIRE_TRAILING_BYTES,    /* bytes after the last record (same minor or older) */
    MC_UDP_WIRE_NO_ROOM,           /* encoding: the record does not fit the buffer */
    MC_UDP_WIRE_TOO_MANY_PARTS,    /* encoding: more than 65535 datagrams */
    MC_UDP_WIRE_NO_MEMORY,         /* encoding: allocation failed */
    MC_UDP_WIRE_TOO_MANY_SOURCES,  /* more than MC_REG_SOURCES_MAX losses per source (1.1) */
    MC_UDP_WIRE_STATUS_COUNT
} mc_udp_wire_status;

/* A short English phrase for a status ("topic breaks the topic rules"); never NULL. */
const char *mc_udp_wire_status_name(mc_udp_wire_status status);

/* Counting classes for rejected datagrams. */
typedef enum mc_udp_wire_class {
    MC_UDP_CLASS_MALFORMED = 0,
    MC_UDP_CLASS_OTHER_DOMAIN = 1,
    MC_UDP_CLASS_FUTURE = 2, /* newer protocol: expected during upgrades, not an attack */
} mc_udp_wire_class;

mc_udp_wire_class mc_udp_wire_status_class(mc_udp_wire_status status);

/* A string that is not NUL-terminated (it points into a datagram when decoded). */
typedef struct mc_udp_text {
    const char *data;
    size_t len;
} mc_udp_text;

typedef struct mc_udp_wire_header {
    uint8_t minor; /* decoded: the sender's minor version; ignored when encoding */
    uint8_t type;
    uint8_t flags;
    uint16_t part_index;
    uint16_t part_count; /* 1 except for a full announce split over datagrams */
    uint16_t record_count;
    uint32_t sequence;       /* per sender and datagram; the parts of one full announce
                                are consecutive */
    uint32_t generation;     /* the sender's generation (see doc/registration.md) */
    uint32_t endpoint_count; /* the sender's endpoints at that generation */
    int32_t pid;
    uint64_t context_hi;
    uint64_t context_lo;
    uint64_t target_hi; /* REQUEST: the context asked, 0:0 for everyone */
    uint64_t target_lo;
    uint8_t host_token[MC_HOST_TOKEN_SIZE];
    mc_udp_text domain;
} mc_udp_wire_header;

typedef struct mc_udp_wire_locator {
    mc_udp_text transport;
    const uint8_t *data;
    size_t size;
} mc_udp_wire_locator;

typedef struct mc_udp_wire_record {
    uint8_t kind; /* MC_KIND_PUBLISHER or MC_KIND_SUBSCRIBER */
    uint8_t locator_count;
    uint64_t serial;
    uint64_t messages;
    uint64_t dropped;
    mc_udp_text topic;
    mc_udp_text type;
    mc_udp_text encoding;
    mc_udp_wire_locator locators[MC_LOCATORS_MAX];
    uint8_t source_count; /* 1.1: a subscriber's publishers with the most losses */
    mc_source_loss sources[MC_REG_SOURCES_MAX];
} mc_udp_wire_record;

/* ---- decoding ------------------------------------------------------------------------- */

/* A datagram whose header and records were all validated. */
typedef struct mc_udp_wire_message {
    mc_udp_wire_header header;
    const uint8_t *records; /* the first record */
    size_t records_size;    /* bytes from records to the end of the last record */
} mc_udp_wire_message;

/* Validates the whole datagram. domain NULL accepts any domain; otherwise a valid datagram
 * of another domain yields MC_UDP_WIRE_OTHER_DOMAIN (its records are then not checked).
 * On MC_UDP_WIRE_OK, out describes the datagram and points into buf. */
mc_udp_wire_status mc_udp_wire_decode(const void *buf, size_t size, const char *domain,
                                      mc_udp_wire_message *out);

/* Walks the records of a message that mc_udp_wire_decode accepted. */
typedef struct mc_udp_wire_cursor {
    const uint8_t *next;
    size_t left;
    uint8_t minor;
} mc_udp_wire_cursor;

void mc_udp_wire_cursor_init(mc_udp_wire_cursor *c, const mc_udp_wire_message *msg);
/* Fills out with the next record; false after the last. */
bool mc_udp_wire_cursor_next(mc_udp_wire_cursor *c, mc_udp_wire_record *out);

/* ---- validation shared with the encoder --------------------------------------------- */

bool mc_udp_wire_topic_ok(const char *topic, size_t len);
/* Checks a record as the decoder would (kind, strings, locators). */
mc_udp_wire_status mc_udp_wire_record_check(const mc_udp_wire_record *r);
/* The record of a registration; strings borrowed from reg. Does not validate. */
void mc_udp_wire_record_from(const mc_registration *reg, mc_udp_wire_record *out);

/* ---- encoding one datagram ---------------------------------------------------------------- */

typedef struct mc_udp_wire_writer {
    uint8_t *buf;
    size_t capacity;
    size_t used;
    uint16_t records;
} mc_udp_wire_writer;

/* Size of the header of h (with its domain). */
size_t mc_udp_wire_header_size(const mc_udp_wire_header *h);
/* Size of the encoding of r. */
size_t mc_udp_wire_record_size(const mc_udp_wire_record *r);

/* Writes the header of h (record_count is filled in by end). NO_ROOM when the buffer is
 * too small, BAD_DOMAIN when the domain is empty or too long. */
mc_udp_wire_status mc_udp_wire_begin(mc_udp_wire_writer *w, void *buf, size_t capacity,
                                     const mc_udp_wire_header *h);
/* Appends a record after checking it; NO_ROOM leaves the writer as it was. */
mc_udp_wire_status mc_udp_wire_add(mc_udp_wire_writer *w, const mc_udp_wire_record *r);
/* Completes the datagram and returns its size. */
size_t mc_udp_wire_end(mc_udp_wire_writer *w);

/* Rewrite fields of an encoded datagram (at least MC_UDP_WIRE_HEADER_FIXED bytes). */
void mc_udp_wire_set_part(void *datagram, uint16_t index, uint16_t count);
void mc_udp_wire_set_sequence(void *datagram, uint32_t sequence);

/* ---- encoding a list that may need several datagrams (a full announce) --------------- */

typedef struct mc_udp_wire_datagram {
    uint8_t *data;
    size_t size;
} mc_udp_wire_datagram;

typedef struct mc_udp_wire_batch {
    mc_udp_wire_header header;
    size_t limit; /* datagram size to fill up to; a lone larger record gets its own */
    mc_udp_wire_datagram *items;
    size_t count;
    size_t capacity;
    size_t records;          /* in all datagrams */
    mc_udp_wire_writer open; /* the datagram being filled, when open.buf != NULL */
} mc_udp_wire_batch;

void mc_udp_wire_batch_init(mc_udp_wire_batch *b, const mc_udp_wire_header *h, size_t limit);
mc_udp_wire_status mc_udp_wire_batch_add(mc_udp_wire_batch *b, const mc_udp_wire_record *r);
/* Closes the last datagram (an empty list still yields one), numbers the parts and sets
 * every header's endpoint_count to the number of records in the whole list. */
mc_udp_wire_status mc_udp_wire_batch_finish(mc_udp_wire_batch *b);
void mc_udp_wire_batch_free(mc_udp_wire_batch *b);

#endif /* MEMCAST_UDP_WIRE_H */
