/*
 * The slot protocol of one segment (one generation of a publisher): geometry, header
 * checks, the writer's side and the reader's side. doc/shm.md, "Protocol".
 */
#ifndef MEMCAST_SHM_RING_H
#define MEMCAST_SHM_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <memcast/plugin.h>

#include "layout.h"

#define MC_SHM_LAYOUT_PAGE 4096u /* slots start on this boundary */

/* Deadlines and pin ages of every side of the transport are on this clock. */
static inline int64_t mc_shm_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Where everything is in a segment; computed from four numbers by both sides. */
typedef struct mc_shm_geometry {
    uint32_t ring_slots;
    uint32_t slot_count;
    uint32_t table_entries;
    uint64_t capacity;
    uint64_t stride;
    uint64_t map_offset;
    uint64_t pins_offset;
    uint64_t table_offset;
    uint64_t slots_offset;
    uint64_t size;
} mc_shm_geometry;

/* The most spares a segment of ring_slots may have: enough for as many subscribing
 * contexts as ring positions. */
uint32_t mc_shm_max_spares(uint32_t ring_slots);

/* 0, or MC_EINVAL when a number is out of bounds or the segment would not be addressable. */
int mc_shm_geometry_compute(uint32_t ring_slots, uint32_t spares, uint32_t table_entries,
                            uint64_t capacity, mc_shm_geometry *g);

static inline mc_shm_header *mc_shm_hdr(unsigned char *base)
{
    return (mc_shm_header *)base;
}

static inline _Atomic uint32_t *mc_shm_map(unsigned char *base, const mc_shm_geometry *g)
{
    return (_Atomic uint32_t *)(base + g->map_offset);
}

static inline mc_shm_pin *mc_shm_pin_of(unsigned char *base, const mc_shm_geometry *g,
                                        uint32_t slot)
{
    return (mc_shm_pin *)(base + g->pins_offset) + slot;
}

static inline mc_shm_entry *mc_shm_entry_of(unsigned char *base, const mc_shm_geometry *g,
                                            uint32_t index)
{
    return (mc_shm_entry *)(base + g->table_offset) + index;
}

static inline mc_shm_slot *mc_shm_slot_of(unsigned char *base, const mc_shm_geometry *g,
                                          uint32_t slot)
{
    return (mc_shm_slot *)(base + g->slots_offset + (uint64_t)slot * g->stride);
}

static inline unsigned char *mc_shm_payload_of(unsigned char *base, const mc_shm_geometry *g,
                                               uint32_t slot)
{
    return (unsigned char *)mc_shm_slot_of(base, g, slot) + sizeof(mc_shm_slot);
}

/* What a segment's header must say for a reader to accept it. */
typedef struct mc_shm_expect {
    uint32_t generation;
    mc_endpoint_id publisher;
    int32_t owner_pid;
    uint64_t file_size;
} mc_shm_expect;

/* The writer's description of a new segment. */
typedef struct mc_shm_identity {
    mc_endpoint_id publisher;
    int32_t owner_pid;
    uint64_t owner_start_time;
    uint32_t generation;
    uint32_t flags;
    uint64_t base_seq;
} mc_shm_identity;

/* Fills a fresh (zeroed) segment's header and map, then sets ready (release). */
void mc_shm_header_init(unsigned char *base, const mc_shm_geometry *g, const mc_shm_identity *id);

/* NULL when the header is one this reader can trust, with *g filled from it; otherwise a
 * sentence saying what is wrong. Reads nothing outside expect->file_size bytes. */
const char *mc_shm_header_check(unsigned char *base, const mc_shm_expect *expect,
                                mc_shm_geometry *g);

/* NULL while the immutable part of the header still says what it said when checked,
 * else what changed. */
const char *mc_shm_header_recheck(unsigned char *base, const mc_shm_geometry *g,
                                  const mc_shm_expect *expect);

/* ---- writer --------------------------------------------------------------------------- */

typedef struct mc_shm_writer {
    unsigned char *base;
    mc_shm_geometry geo;
    int fd;               /* kept to allocate slot pages on first use */
    uint32_t spares;      /* slot_count - ring_slots */
    uint32_t *free_slots; /* [spares]: physical slots outside the ring */
    uint32_t free_count;
    uint32_t ring_taken; /* a slot taken from the ring and not committed yet, or UINT32_MAX */
    int32_t *stale_pins; /* per slot: pins left by readers that never came back */
    bool *reserved;      /* per slot: pages allocated */
    uint64_t write_seq;  /* next message number (the writer's copy of the header's) */
    uint64_t base_seq;
} mc_shm_writer;

/* 0 or MC_ENOMEM. base/geo/fd belong to the caller; write_seq starts at base_seq. */
int mc_shm_writer_init(mc_shm_writer *w, unsigned char *base, const mc_shm_geometry *g, int fd,
                       uint64_t base_seq);
void mc_shm_writer_fini(mc_shm_writer *w);

/* Takes a physical slot to write a message into: a spare outside the ring no reader
 * holds; when readers hold every spare and may_take_oldest (best effort), the slot of the
 * message the commit pushes out of the ring; else waits at most pin_timeout_ns for readers
 * to leave a spare. Allocates its pages on first use. *waited_out is set when readers were
 * still there at the deadline. */
int mc_shm_writer_take(mc_shm_writer *w, int64_t pin_timeout_ns, bool may_take_oldest,
                       uint32_t *slot, bool *waited_out, char *err, size_t err_size);

/* Returns a taken slot unused (a discarded loan, a failed send). */
void mc_shm_writer_give_back(mc_shm_writer *w, uint32_t slot);

/* The message whose place the next commit takes, or UINT64_MAX when none (the ring has
 * not wrapped in this generation yet). */
uint64_t mc_shm_writer_evicts(const mc_shm_writer *w);

/* Publishes slot (holding size payload bytes) as the next message. */
void mc_shm_writer_commit(mc_shm_writer *w, uint32_t slot, const mc_sample *sample, uint64_t size);

/* ---- reader --------------------------------------------------------------------------- */

typedef enum mc_shm_read {
    MC_SHM_READ_NONE = 0,    /* caught up */
    MC_SHM_READ_MESSAGE = 1, /* *sample is pinned in place: deliver, then mc_shm_reader_end */
    MC_SHM_READ_LOST = 2,    /* *lost messages were overwritten before they could be read */
    MC_SHM_READ_CORRUPT = 3, /* the segment contradicts the protocol: *problem says how */
} mc_shm_read;

typedef struct mc_shm_reader {
    unsigned char *base;
    mc_shm_geometry geo;
    mc_endpoint_id publisher;
    uint64_t cursor;        /* next message number to read */
    uint64_t known_written; /* write_seq as last read (0: not read yet) */
    uint32_t pinned;        /* slot held by the message being delivered */
    uint64_t pinned_state;
} mc_shm_reader;

mc_shm_read mc_shm_reader_begin(mc_shm_reader *r, mc_sample *sample, uint64_t *lost,
                                const char **problem);

/* Leaves the slot of the delivered message and moves on. True when the writer reused the
 * slot during delivery (it gave up waiting): the message counts as overrun. */
bool mc_shm_reader_end(mc_shm_reader *r);

/* ---- the subscriber table, subscriber side -------------------------------------------- */

/* The index of the ACTIVE or DROPPED entry for sub, or -1; *ticket gets its ticket. */
int mc_shm_table_find(unsigned char *base, const mc_shm_geometry *g, const mc_endpoint_id *sub,
                      uint32_t *ticket);

/* Raises the entry's cursor to cursor (never lowers it) and wakes a waiting writer. False
 * when the entry was taken back (another ticket). */
bool mc_shm_entry_advance(unsigned char *base, const mc_shm_geometry *g, uint32_t index,
                          uint32_t ticket, uint64_t cursor);

/* Cursor word helpers shared with the writer. */
static inline uint64_t mc_shm_cursor_word(uint32_t ticket, uint64_t cursor)
{
    return ((uint64_t)(ticket & 0xffffu) << MC_SHM_CURSOR_BITS) | (cursor & MC_SHM_CURSOR_MASK);
}

/* True when the cursor word (of this ticket) says message n was consumed. Compared in 48
 * bits modulo, so wrapping after 2^48 messages stays correct. */
static inline bool mc_shm_cursor_passed(uint64_t word, uint64_t n)
{
    uint64_t diff = ((word & MC_SHM_CURSOR_MASK) - (n + 1)) & MC_SHM_CURSOR_MASK;
    return diff < (UINT64_C(1) << (MC_SHM_CURSOR_BITS - 1));
}

#endif
