/*
 * The shm transport's shared-memory layout: what one process writes and another reads.
 * doc/shm.md describes every field; change both together, and bump the layout version
 * for anything a reader of the old layout would misread.
 *
 * Rules that keep a hostile or crashed peer harmless:
 *  - fixed-width fields and offsets only, no pointers;
 *  - a reader recomputes every offset from the few sizes in the header and rejects the
 *    segment unless they all agree with the file size from fstat;
 *  - mutable words are C11 atomics that must be lock-free (checked below), because they
 *    are shared between processes.
 */
#ifndef MEMCAST_SHM_LAYOUT_H
#define MEMCAST_SHM_LAYOUT_H

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MC_SHM_MAGIC          0x4853434du /* "MCSH" in memory on little-endian hosts */
#define MC_SHM_BELL_MAGIC     0x4c42434du /* "MCBL" */
#define MC_SHM_LAYOUT_VERSION 3
#define MC_SHM_LINE           64u /* cache line: the unit of every region */
/* Physical slots beyond the ring (spares): one for a send, one for a loan, and one more for
 * each subscribing context that may hold a slot inside a callback, up to the ring's size. */
#define MC_SHM_MIN_SPARES 2u

/* Bounds a reader enforces on a header before trusting any of it. */
#define MC_SHM_MAX_RING_SLOTS    1024u /* slots (2N + 2 at most) fit in newest's 24 bits */
#define MC_SHM_MAX_TABLE_ENTRIES 4096u
#define MC_SHM_MAX_CAPACITY      (UINT64_C(1) << 40)

/* Header flags. */
#define MC_SHM_FLAG_RELIABLE 1u /* the publisher waits for subscribers' cursors */

/* Offset 0 of every segment. The first block is written once before `ready`; the rest
 * changes while the publisher runs. */
typedef struct mc_shm_header {
    uint32_t magic;            /* MC_SHM_MAGIC */
    uint16_t layout_version;   /* MC_SHM_LAYOUT_VERSION */
    uint16_t header_size;      /* sizeof(mc_shm_header) */
    uint32_t ring_slots;       /* N: messages a subscriber can find */
    uint32_t slot_count;       /* N + spares (2 to N + 2) physical slots */
    uint64_t slot_capacity;    /* payload bytes per slot */
    uint64_t slot_stride;      /* bytes from one slot to the next */
    uint64_t segment_size;     /* bytes of the whole file */
    uint64_t map_offset;       /* uint32 map[ring_slots]: ring position -> physical slot */
    uint64_t pins_offset;      /* mc_shm_pin[slot_count] */
    uint64_t table_offset;     /* mc_shm_entry[table_entries] */
    uint64_t slots_offset;     /* first slot; page aligned */
    uint32_t table_entries;    /* subscriber table size */
    int32_t owner_pid;         /* the publisher's process */
    uint64_t owner_start_time; /* its start time (/proc/PID/stat field 22) */
    uint64_t publisher_hi;     /* the publisher's endpoint id */
    uint64_t publisher_lo;
    uint64_t publisher_serial;
    uint32_t generation;                /* 0 for the first segment of a publisher, +1 per growth */
    uint32_t flags;                     /* MC_SHM_FLAG_* */
    uint64_t base_seq;                  /* number of the first message written in this generation */
    _Atomic uint32_t ready;             /* 1 once all of the above is written (release) */
    _Atomic uint32_t closed;            /* 1 once the publisher closed: drain, then detach */
    _Atomic uint32_t next_generation;   /* 0, or the generation that replaced this one */
    _Atomic uint32_t table_version;     /* +1 whenever a subscriber table entry changes */
    _Atomic uint32_t ack_word;          /* futex: readers bump it when the writer waits */
    _Atomic uint32_t writer_waiting;    /* 1 while the writer waits for cursors */
    _Atomic uint32_t newest_generation; /* generation 0 only: the one written now */
    _Atomic uint32_t readers_armed;     /* 1: a wait thread sleeps on readers_bell */
    _Atomic uint64_t ack_wanted;        /* while writer_waiting: the message it waits for */
    _Atomic uint32_t readers_bell;      /* futex: +1 by the commit that finds readers_armed */
    uint8_t reserved1b[20];
    _Atomic uint64_t write_seq; /* messages committed, over every generation */
    /* The newest message's number and slot (MC_SHM_NEWEST_*), written before write_seq: a
     * reader that sees write_seq move by one finds the slot in the same cache line, however
     * large the ring. */
    _Atomic uint64_t newest;
    /* The ring's map itself when it has at most MC_SHM_INLINE_MAP_SLOTS positions, so that
     * a reader a few messages behind finds their slots in this line too. */
    uint8_t inline_map[48];
} mc_shm_header;

#define MC_SHM_INLINE_MAP_SLOTS 12u /* inline_map's uint32 entries */
#define MC_SHM_NEWEST_SLOT_BITS 24  /* newest = (number mod 2^40) << 24 | slot */
#define MC_SHM_NEWEST_SLOT_MASK ((UINT64_C(1) << MC_SHM_NEWEST_SLOT_BITS) - 1)

/* One physical slot: this header, then slot_capacity payload bytes (64-byte aligned). */
typedef struct mc_shm_slot {
    _Atomic uint64_t state; /* 0 never written; 2n+1 being written; 2n+2 holds message n */
    uint64_t size;          /* payload bytes */
    uint64_t seq;           /* the framework's sequence number of the message */
    int64_t send_time_ns;   /* CLOCK_REALTIME at publish */
    uint64_t publisher_hi;  /* the framework's publisher id */
    uint64_t publisher_lo;
    uint64_t publisher_serial;
    uint64_t reserved;
} mc_shm_slot;

/* Readers in a slot right now; one cache line each so readers do not share lines. */
typedef struct mc_shm_pin {
    _Atomic int32_t count;
    uint8_t reserved[60];
} mc_shm_pin;

/* Subscriber table entry states. */
#define MC_SHM_ENTRY_FREE    0u
#define MC_SHM_ENTRY_ACTIVE  1u /* the writer waits for its cursor (reliable mode) */
#define MC_SHM_ENTRY_DROPPED 2u /* missed ack_timeout: no longer waited for */

/* The cursor word: a 16-bit ticket (which claim of the entry) over 48 bits of "next
 * message to read", so a subscriber whose entry was taken back cannot move another's. */
#define MC_SHM_CURSOR_BITS 48
#define MC_SHM_CURSOR_MASK ((UINT64_C(1) << MC_SHM_CURSOR_BITS) - 1)

/* One subscriber endpoint known to the publisher: written by the publisher, except
 * cursor and gen (and DROPPED -> ACTIVE), which the subscriber writes. */
typedef struct mc_shm_entry {
    _Atomic uint32_t state;      /* MC_SHM_ENTRY_* */
    _Atomic uint32_t ticket;     /* 16 bits used; +1 per claim */
    _Atomic int32_t pid;         /* the subscriber's process */
    _Atomic uint32_t gen;        /* generation the subscriber reads now */
    _Atomic uint64_t start_time; /* its start time */
    _Atomic uint64_t sub_hi;     /* the subscriber's endpoint id */
    _Atomic uint64_t sub_lo;
    _Atomic uint64_t sub_serial;
    _Atomic uint64_t cursor; /* ticket << 48 | next message number */
    uint64_t reserved;
} mc_shm_entry;

/* A doorbell's sleeping word. */
#define MC_SHM_BELL_AWAKE    0u
#define MC_SHM_BELL_SLEEPING 1u /* ring this bell to wake it (the publisher clears it) */
#define MC_SHM_BELL_ON_SEGMENTS                                                                    \
    2u /* also asleep on the readers_bell of every segment it reads: commits wake it there */

/* A subscriber instance's doorbell: its own segment of one page. */
typedef struct mc_shm_bell {
    uint32_t magic;          /* MC_SHM_BELL_MAGIC */
    uint16_t layout_version; /* MC_SHM_LAYOUT_VERSION */
    uint16_t header_size;    /* sizeof(mc_shm_bell) */
    uint32_t segment_size;   /* bytes of the file */
    int32_t owner_pid;
    uint64_t owner_start_time;
    uint64_t context_hi; /* the subscribing context */
    uint64_t context_lo;
    _Atomic uint32_t ready;
    uint8_t reserved1[20];
    _Atomic uint32_t ring;     /* futex word: +1 by a publisher that wakes the thread */
    _Atomic uint32_t sleeping; /* MC_SHM_BELL_*: whether and how the wait thread may sleep */
    uint8_t reserved2[56];
} mc_shm_bell;

/* Cross-process atomics must not hide behind a lock. */
static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4,
              "atomics must have the size of the plain type");

static_assert(sizeof(mc_shm_header) == 256, "header layout changed");
static_assert(offsetof(mc_shm_header, ring_slots) == 8, "header layout changed");
static_assert(offsetof(mc_shm_header, slot_capacity) == 16, "header layout changed");
static_assert(offsetof(mc_shm_header, map_offset) == 40, "header layout changed");
static_assert(offsetof(mc_shm_header, table_entries) == 72, "header layout changed");
static_assert(offsetof(mc_shm_header, owner_start_time) == 80, "header layout changed");
static_assert(offsetof(mc_shm_header, publisher_hi) == 88, "header layout changed");
static_assert(offsetof(mc_shm_header, generation) == 112, "header layout changed");
static_assert(offsetof(mc_shm_header, base_seq) == 120, "header layout changed");
static_assert(offsetof(mc_shm_header, ready) == 128, "header layout changed");
static_assert(offsetof(mc_shm_header, writer_waiting) == 148, "header layout changed");
static_assert(offsetof(mc_shm_header, newest_generation) == 152, "header layout changed");
static_assert(offsetof(mc_shm_header, readers_armed) == 156, "header layout changed");
static_assert(offsetof(mc_shm_header, ack_wanted) == 160, "header layout changed");
static_assert(offsetof(mc_shm_header, readers_bell) == 168, "header layout changed");
static_assert(offsetof(mc_shm_header, write_seq) == 192, "header layout changed");
static_assert(offsetof(mc_shm_header, newest) == 200, "newest must share write_seq's line");
static_assert(offsetof(mc_shm_header, inline_map) == 208 &&
                  sizeof(((mc_shm_header *)0)->inline_map) == 4 * MC_SHM_INLINE_MAP_SLOTS,
              "the inline map must share write_seq's line");
static_assert(sizeof(mc_shm_slot) == MC_SHM_LINE, "slot header must be one line");
static_assert(sizeof(mc_shm_pin) == MC_SHM_LINE, "pin must be one line");
static_assert(sizeof(mc_shm_entry) == MC_SHM_LINE, "entry must be one line");
static_assert(offsetof(mc_shm_entry, cursor) == 48, "entry layout changed");
static_assert(sizeof(mc_shm_bell) == 128, "bell layout changed");
static_assert(offsetof(mc_shm_bell, ring) == 64, "bell layout changed");

#endif
