/*
 * The slot protocol. The ring has N positions; each names one of N+2 physical slots. The
 * writer fills a slot that is outside the ring (a spare), then swaps it into the
 * position of the oldest message, so the ring always holds N complete messages and a
 * message being written is invisible. Readers pin the slot they deliver from and check
 * its state word before and after; the writer skips or briefly waits for pinned spares.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "doorbell.h"
#include "ring.h"
#include "segment.h"

#define LD(field)    __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define ST(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

static uint64_t round_up(uint64_t value, uint64_t unit)
{
    return (value + unit - 1) / unit * unit;
}

uint32_t mc_shm_max_spares(uint32_t ring_slots)
{
    return ring_slots + MC_SHM_MIN_SPARES;
}

int mc_shm_geometry_compute(uint32_t ring_slots, uint32_t spares, uint32_t table_entries,
                            uint64_t capacity, mc_shm_geometry *g)
{
    memset(g, 0, sizeof(*g));
    if (ring_slots < 2 || ring_slots > MC_SHM_MAX_RING_SLOTS || table_entries < 1 ||
        table_entries > MC_SHM_MAX_TABLE_ENTRIES || capacity > MC_SHM_MAX_CAPACITY ||
        spares < MC_SHM_MIN_SPARES || spares > mc_shm_max_spares(ring_slots))
        return MC_EINVAL;
    g->ring_slots = ring_slots;
    g->slot_count = ring_slots + spares;
    g->table_entries = table_entries;
    g->capacity = capacity < MC_SHM_LINE ? MC_SHM_LINE : round_up(capacity, MC_SHM_LINE);
    g->stride = sizeof(mc_shm_slot) + g->capacity;
    /* A small ring's map shares the line of write_seq (one transfer per commit, not two) */
    bool inline_map = ring_slots <= MC_SHM_INLINE_MAP_SLOTS;
    g->map_offset = inline_map ? offsetof(mc_shm_header, inline_map) : sizeof(mc_shm_header);
    g->pins_offset =
        sizeof(mc_shm_header) + (inline_map ? 0 : round_up(4u * (uint64_t)ring_slots, MC_SHM_LINE));
    g->table_offset = g->pins_offset + sizeof(mc_shm_pin) * (uint64_t)g->slot_count;
    g->slots_offset = round_up(g->table_offset + sizeof(mc_shm_entry) * (uint64_t)table_entries,
                               MC_SHM_LAYOUT_PAGE);
    g->size = g->slots_offset + g->stride * (uint64_t)g->slot_count;
    return 0;
}

/* ---- header ------------------------------------------------------------------------------- */

void mc_shm_header_init(unsigned char *base, const mc_shm_geometry *g, const mc_shm_identity *id)
{
    mc_shm_header *h = mc_shm_hdr(base);
    h->magic = MC_SHM_MAGIC;
    h->layout_version = MC_SHM_LAYOUT_VERSION;
    h->header_size = sizeof(mc_shm_header);
    h->ring_slots = g->ring_slots;
    h->slot_count = g->slot_count;
    h->slot_capacity = g->capacity;
    h->slot_stride = g->stride;
    h->segment_size = g->size;
    h->map_offset = g->map_offset;
    h->pins_offset = g->pins_offset;
    h->table_offset = g->table_offset;
    h->slots_offset = g->slots_offset;
    h->table_entries = g->table_entries;
    h->owner_pid = id->owner_pid;
    h->owner_start_time = id->owner_start_time;
    h->publisher_hi = id->publisher.context_hi;
    h->publisher_lo = id->publisher.context_lo;
    h->publisher_serial = id->publisher.serial;
    h->generation = id->generation;
    h->flags = id->flags;
    h->base_seq = id->base_seq;
    _Atomic uint32_t *map = mc_shm_map(base, g);
    for (uint32_t i = 0; i < g->ring_slots; i++)
        atomic_store_explicit(&map[i], i, memory_order_relaxed);
    atomic_store_explicit(&h->newest, UINT64_MAX, memory_order_relaxed); /* names no slot */
    atomic_store_explicit(&h->write_seq, id->base_seq, memory_order_relaxed);
    atomic_store_explicit(&h->ready, 1, memory_order_release);
}

static bool ids_equal(uint64_t hi, uint64_t lo, uint64_t serial, const mc_endpoint_id *id)
{
    return hi == id->context_hi && lo == id->context_lo && serial == id->serial;
}

/* The immutable fields against what the reader computed and expects. */
static const char *header_fields_problem(mc_shm_header *h, const mc_shm_geometry *g,
                                         const mc_shm_expect *expect)
{
    if (LD(h->magic) != MC_SHM_MAGIC)
        return "bad magic";
    if (LD(h->layout_version) != MC_SHM_LAYOUT_VERSION)
        return "unknown layout version";
    if (LD(h->header_size) != sizeof(mc_shm_header))
        return "unexpected header size";
    if (LD(h->ring_slots) != g->ring_slots || LD(h->slot_count) != g->slot_count ||
        LD(h->table_entries) != g->table_entries || LD(h->slot_capacity) != g->capacity)
        return "slot counts or capacity changed";
    if (LD(h->slot_stride) != g->stride || LD(h->map_offset) != g->map_offset ||
        LD(h->pins_offset) != g->pins_offset || LD(h->table_offset) != g->table_offset ||
        LD(h->slots_offset) != g->slots_offset || LD(h->segment_size) != g->size)
        return "offsets or sizes disagree with the slot counts";
    if (g->size != expect->file_size)
        return "segment size disagrees with the file size";
    if (LD(h->owner_pid) != expect->owner_pid)
        return "owner pid is not the one in the name";
    if (!ids_equal(LD(h->publisher_hi), LD(h->publisher_lo), LD(h->publisher_serial),
                   &expect->publisher))
        return "publisher id is not the one registered";
    if (LD(h->generation) != expect->generation)
        return "generation is not the one in the name";
    return NULL;
}

const char *mc_shm_header_check(unsigned char *base, const mc_shm_expect *expect,
                                mc_shm_geometry *g)
{
    if (expect->file_size < sizeof(mc_shm_header))
        return "file smaller than a header";
    mc_shm_header *h = mc_shm_hdr(base);
    if (atomic_load_explicit(&h->ready, memory_order_acquire) != 1)
        return "segment not ready";
    if (LD(h->magic) != MC_SHM_MAGIC)
        return "bad magic";
    if (LD(h->layout_version) != MC_SHM_LAYOUT_VERSION)
        return "unknown layout version";
    uint32_t ring_slots = LD(h->ring_slots), slot_count = LD(h->slot_count);
    if (slot_count < ring_slots)
        return "fewer slots than ring positions";
    if (mc_shm_geometry_compute(ring_slots, slot_count - ring_slots, LD(h->table_entries),
                                LD(h->slot_capacity), g) != 0)
        return "slot counts or capacity out of bounds";
    const char *problem = header_fields_problem(h, g, expect);
    if (problem != NULL)
        return problem;
    uint64_t base_seq = LD(h->base_seq);
    if (atomic_load_explicit(&h->write_seq, memory_order_acquire) < base_seq)
        return "write sequence below the generation's first message";
    return NULL;
}

const char *mc_shm_header_recheck(unsigned char *base, const mc_shm_geometry *g,
                                  const mc_shm_expect *expect)
{
    return header_fields_problem(mc_shm_hdr(base), g, expect);
}

/* ---- writer ------------------------------------------------------------------------------- */

int mc_shm_writer_init(mc_shm_writer *w, unsigned char *base, const mc_shm_geometry *g, int fd,
                       uint64_t base_seq)
{
    memset(w, 0, sizeof(*w));
    w->spares = g->slot_count - g->ring_slots;
    w->stale_pins = calloc(g->slot_count, sizeof(*w->stale_pins));
    w->reserved = calloc(g->slot_count, sizeof(*w->reserved));
    w->free_slots = calloc(w->spares, sizeof(*w->free_slots));
    if (w->stale_pins == NULL || w->reserved == NULL || w->free_slots == NULL) {
        mc_shm_writer_fini(w);
        return MC_ENOMEM;
    }
    w->base = base;
    w->geo = *g;
    w->fd = fd;
    for (uint32_t i = 0; i < w->spares; i++)
        w->free_slots[w->free_count++] = g->ring_slots + i;
    w->ring_taken = UINT32_MAX;
    w->write_seq = base_seq;
    w->base_seq = base_seq;
    return 0;
}

void mc_shm_writer_fini(mc_shm_writer *w)
{
    free(w->stale_pins);
    free(w->reserved);
    free(w->free_slots);
    w->stale_pins = NULL;
    w->reserved = NULL;
    w->free_slots = NULL;
}

/* Readers in slot beyond those known to have left for good. */
static bool slot_pinned(mc_shm_writer *w, uint32_t slot)
{
    int32_t pins = atomic_load(&mc_shm_pin_of(w->base, &w->geo, slot)->count);
    if (pins < w->stale_pins[slot])
        w->stale_pins[slot] = pins; /* a reader we had given up on did leave */
    return pins > w->stale_pins[slot];
}

/* The index of a spare no reader holds, or UINT32_MAX when readers hold them all. */
static uint32_t pick_free_index(mc_shm_writer *w)
{
    for (uint32_t i = 0; i < w->free_count; i++)
        if (!slot_pinned(w, w->free_slots[i]))
            return i;
    return UINT32_MAX;
}

/* The slot at the ring position the next commit takes: it holds no message yet, or the one
 * that commit pushes out of the ring anyway. */
static uint32_t next_position_slot(const mc_shm_writer *w)
{
    return atomic_load_explicit(&mc_shm_map(w->base, &w->geo)[w->write_seq % w->geo.ring_slots],
                                memory_order_relaxed);
}

/* A pinned slot is waited for with a short back-off: pins are rare (a reader still in the
 * callback of a message that left the ring), and readers do not signal their leaving. */
static bool wait_unpinned(mc_shm_writer *w, uint32_t slot, int64_t timeout_ns)
{
    if (!slot_pinned(w, slot))
        return true; /* the usual case, without reading the clock */
    int64_t deadline = mc_shm_monotonic_ns() + timeout_ns;
    for (unsigned round = 0; slot_pinned(w, slot); round++) {
        if (mc_shm_monotonic_ns() >= deadline) {
            w->stale_pins[slot] = atomic_load(&mc_shm_pin_of(w->base, &w->geo, slot)->count);
            return false;
        }
        if (round < 64) {
            sched_yield();
        } else {
            struct timespec pause = {.tv_nsec = 20000};
            nanosleep(&pause, NULL);
        }
    }
    return true;
}

/* Allocates a slot's pages on its first use, so that a full /dev/shm is an error here
 * rather than a SIGBUS when the payload is written. */
static int reserve(mc_shm_writer *w, uint32_t slot, char *err, size_t err_size)
{
    if (w->reserved[slot])
        return 0;
    int rc = mc_shm_segment_reserve(w->fd, w->geo.slots_offset + (uint64_t)slot * w->geo.stride,
                                    w->geo.stride, err, err_size);
    if (rc == 0)
        w->reserved[slot] = true;
    return rc;
}

/* Asks for the cache line of p in exclusive state (PREFETCHW on x86-64: GCC emits a plain
 * prefetch for __builtin_prefetch(p, 1) unless built for a CPU that has it). */
static inline void prefetch_for_write(const volatile void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" ::"m"(*(const volatile char *)p));
#else
    __builtin_prefetch((const void *)p, 1, 3);
#endif
}

/* The line of write_seq and newest (and of a small ring's map) was last read by a reader
 * on the other core. Asking for it while the message is being written took a 64-byte
 * ping-pong with spinning readers from 0.78 to 0.59 us one way. A larger ring's map entry
 * is asked for too: readers that keep up do not read it, but one behind does. */
static void prefetch_commit_line(const mc_shm_writer *w)
{
    prefetch_for_write(&mc_shm_hdr(w->base)->write_seq);
    prefetch_for_write(&mc_shm_map(w->base, &w->geo)[w->write_seq % w->geo.ring_slots]);
}

int mc_shm_writer_take(mc_shm_writer *w, int64_t pin_timeout_ns, bool may_take_oldest,
                       uint32_t *slot_out, bool *waited_out, char *err, size_t err_size)
{
    *waited_out = false;
    if (w->free_count == 0)
        return MC_EBUSY;
    prefetch_commit_line(w);
    uint32_t i = pick_free_index(w);
    /* Readers in every spare (still in callbacks of messages that left the ring): rather
     * than wait for them and then write under them, take the oldest message's slot, which
     * the commit would push out; readers of that message count it lost instead of reading
     * it torn. Not in reliable mode, where it may still be unread. */
    if (i == UINT32_MAX && may_take_oldest && w->ring_taken == UINT32_MAX &&
        !slot_pinned(w, next_position_slot(w))) {
        uint32_t slot = next_position_slot(w);
        int rc = reserve(w, slot, err, err_size); /* before the ring wraps, never written */
        if (rc != 0)
            return rc;
        atomic_store(&mc_shm_slot_of(w->base, &w->geo, slot)->state, 2 * w->write_seq + 1);
        *waited_out = !wait_unpinned(w, slot, pin_timeout_ns); /* a reader that came between */
        w->ring_taken = slot;
        *slot_out = slot;
        return 0;
    }
    if (i == UINT32_MAX)
        i = 0;
    uint32_t slot = w->free_slots[i];
    int rc = reserve(w, slot, err, err_size);
    if (rc != 0)
        return rc;
    w->free_slots[i] = w->free_slots[--w->free_count];
    /* odd first, then look at the pins: a reader that pins after this sees the odd state,
     * one that pinned before is seen here (both sides use sequentially consistent order) */
    atomic_store(&mc_shm_slot_of(w->base, &w->geo, slot)->state, 2 * w->write_seq + 1);
    *waited_out = !wait_unpinned(w, slot, pin_timeout_ns);
    *slot_out = slot;
    return 0;
}

void mc_shm_writer_give_back(mc_shm_writer *w, uint32_t slot)
{
    /* A slot taken from the ring and still there stays (its old message is gone: readers
     * count it lost); a spare, or one a commit has since pushed out, goes back. */
    bool in_ring = slot == w->ring_taken && slot == next_position_slot(w);
    if (slot == w->ring_taken)
        w->ring_taken = UINT32_MAX;
    if (!in_ring && w->free_count < w->spares)
        w->free_slots[w->free_count++] = slot;
}

uint64_t mc_shm_writer_evicts(const mc_shm_writer *w)
{
    if (w->write_seq - w->base_seq < w->geo.ring_slots)
        return UINT64_MAX;
    return w->write_seq - w->geo.ring_slots;
}

/* Asks for the next spare's header line and first payload line in exclusive state now,
 * while the caller goes on to prepare its next message. A reader last read that slot, so
 * the writer's first store to it otherwise waits for the line to come back from the other
 * core, and that store is sequentially consistent (the pin handshake): measured as almost
 * all of the writer's time per message in a reliable 64 B stream. Its pin count is asked
 * for only for reading (take() reads it): for writing, it made that stream slower (1.73
 * against 2.3 million messages/s), as the reader that pins next takes the line back. */
static void prefetch_next_spare(const mc_shm_writer *w)
{
    if (w->free_count == 0)
        return;
    mc_shm_slot *s = mc_shm_slot_of(w->base, &w->geo, w->free_slots[0]);
    prefetch_for_write(s);
    prefetch_for_write(s + 1); /* the first payload line */
    __builtin_prefetch(mc_shm_pin_of(w->base, &w->geo, w->free_slots[0]), 0, 3);
}

void mc_shm_writer_commit(mc_shm_writer *w, uint32_t slot, const mc_sample *sample, uint64_t size)
{
    uint64_t n = w->write_seq;
    mc_shm_slot *s = mc_shm_slot_of(w->base, &w->geo, slot);
    ST(s->size, size);
    ST(s->seq, sample->seq);
    ST(s->send_time_ns, sample->send_time_ns);
    ST(s->publisher_hi, sample->publisher.context_hi);
    ST(s->publisher_lo, sample->publisher.context_lo);
    ST(s->publisher_serial, sample->publisher.serial);
    atomic_store_explicit(&s->state, 2 * n + 2, memory_order_release);
    _Atomic uint32_t *position = &mc_shm_map(w->base, &w->geo)[n % w->geo.ring_slots];
    uint32_t evicted = atomic_load_explicit(position, memory_order_relaxed);
    atomic_store_explicit(position, slot, memory_order_release);
    /* The pushed-out slot becomes a spare, unless it was taken from this position (by this
     * message, or by a loan still open: that one owns it) */
    if (evicted != slot && evicted != w->ring_taken)
        w->free_slots[w->free_count++] = evicted;
    if (slot == w->ring_taken)
        w->ring_taken = UINT32_MAX;
    w->write_seq = n + 1;
    mc_shm_header *h = mc_shm_hdr(w->base);
    atomic_store_explicit(&h->newest, (n << MC_SHM_NEWEST_SLOT_BITS) | slot, memory_order_relaxed);
    atomic_store(&h->write_seq, n + 1);
    prefetch_next_spare(w);
}

/* ---- reader ------------------------------------------------------------------------------- */

/* written comes from shared memory: a jump no ring could make (half the 48-bit cursor
 * space or more) is corruption, not a loss to count. */
static mc_shm_read lost_up_to(mc_shm_reader *r, uint64_t written, uint64_t *lost,
                              const char **problem)
{
    if (written - r->cursor >= (UINT64_C(1) << (MC_SHM_CURSOR_BITS - 1))) {
        *problem = "the write sequence jumped beyond what a ring can hold";
        return MC_SHM_READ_CORRUPT;
    }
    uint64_t oldest = written - r->geo.ring_slots;
    *lost = oldest - r->cursor;
    r->cursor = oldest;
    return MC_SHM_READ_LOST;
}

/* The state word did not say "message cursor": either the writer lapped us since we read
 * write_seq, or the segment lies. A lap shows in write_seq (read again now), or, when the
 * writer has just put message m into our position and not yet raised write_seq (or died
 * between the two), in the state itself: m is committed, so m + 1 count as written. */
static mc_shm_read explain_mismatch(mc_shm_reader *r, uint64_t state, uint64_t *lost,
                                    const char **problem)
{
    uint64_t written = atomic_load_explicit(&mc_shm_hdr(r->base)->write_seq, memory_order_acquire);
    if (state % 2 == 0 && state >= 2 && state / 2 > written)
        written = state / 2;
    /* odd: the writer is writing message m here, taken from the position of message
     * m - N (every spare held by readers): that one counts as overwritten */
    if (state % 2 == 1 && state / 2 + 1 > written)
        written = state / 2 + 1;
    if (written >= r->cursor && written - r->cursor > r->geo.ring_slots)
        return lost_up_to(r, written, lost, problem);
    *problem = "a ring position names a slot that does not hold its message";
    return MC_SHM_READ_CORRUPT;
}

static mc_shm_read fill_sample(mc_shm_reader *r, uint32_t slot, mc_sample *sample,
                               const char **problem)
{
    mc_shm_slot *s = mc_shm_slot_of(r->base, &r->geo, slot);
    uint64_t size = LD(s->size);
    if (size > r->geo.capacity) {
        *problem = "a message is larger than its slot";
        return MC_SHM_READ_CORRUPT;
    }
    if (!ids_equal(LD(s->publisher_hi), LD(s->publisher_lo), LD(s->publisher_serial),
                   &r->publisher)) {
        *problem = "a message carries another publisher's id";
        return MC_SHM_READ_CORRUPT;
    }
    *sample = (mc_sample){.struct_size = sizeof(mc_sample),
                          .data = mc_shm_payload_of(r->base, &r->geo, slot),
                          .size = size,
                          .publisher = r->publisher,
                          .seq = LD(s->seq),
                          .send_time_ns = LD(s->send_time_ns)};
    return MC_SHM_READ_MESSAGE;
}

/* The write sequence, read from the header only when the reader has caught up with the
 * last value it read: the header's line changes with every commit, so a reader that is
 * behind saves a transfer between cores per message. A message the writer overwrote in
 * the meantime still shows in its slot's state (explain_mismatch reads write_seq again). */
static uint64_t written_so_far(mc_shm_reader *r)
{
    if (r->cursor < r->known_written && r->known_written - r->cursor <= r->geo.ring_slots)
        return r->known_written;
    r->known_written = atomic_load_explicit(&mc_shm_hdr(r->base)->write_seq, memory_order_acquire);
    return r->known_written;
}

/* The pin, the slot's header and its first payload line were all last written by the
 * writer's core. Asked for together here, before the pin's locked add (which lets no later
 * load start before it ends), they cross between cores at the same time instead of one
 * after the other: in a ping-pong that is most of a reader's time per message. */
static void prefetch_slot(const mc_shm_reader *r, uint32_t slot, _Atomic int32_t *pins)
{
    const char *header = (const char *)mc_shm_slot_of(r->base, &r->geo, slot);
    __builtin_prefetch(header, 0, 3);
    __builtin_prefetch(header + sizeof(mc_shm_slot), 0, 3);
    prefetch_for_write(pins);
}

/* The slot of message cursor: a reader that keeps up reads the newest message, whose slot
 * is in write_seq's line (newest is written before write_seq, and the acquire load of
 * write_seq that showed the message makes it, or a later one, visible); one behind looks
 * it up in the map. Either way the slot's state word is checked before it counts. */
static uint32_t slot_to_read(const mc_shm_reader *r, uint64_t written)
{
    if (written == r->cursor + 1) {
        uint64_t newest = atomic_load_explicit(&mc_shm_hdr(r->base)->newest, memory_order_relaxed);
        if (newest >> MC_SHM_NEWEST_SLOT_BITS ==
            (r->cursor & (UINT64_MAX >> MC_SHM_NEWEST_SLOT_BITS)))
            return (uint32_t)(newest & MC_SHM_NEWEST_SLOT_MASK);
    }
    return atomic_load_explicit(&mc_shm_map(r->base, &r->geo)[r->cursor % r->geo.ring_slots],
                                memory_order_acquire);
}

mc_shm_read mc_shm_reader_begin(mc_shm_reader *r, mc_sample *sample, uint64_t *lost,
                                const char **problem)
{
    uint64_t written = written_so_far(r);
    if (written < r->cursor) {
        *problem = "the write sequence went backwards";
        return MC_SHM_READ_CORRUPT;
    }
    if (written == r->cursor)
        return MC_SHM_READ_NONE;
    if (written - r->cursor > r->geo.ring_slots)
        return lost_up_to(r, written, lost, problem);
    uint32_t slot = slot_to_read(r, written);
    if (slot >= r->geo.slot_count) {
        *problem = "a ring position names a slot that does not exist";
        return MC_SHM_READ_CORRUPT;
    }
    _Atomic int32_t *pins = &mc_shm_pin_of(r->base, &r->geo, slot)->count;
    prefetch_slot(r, slot, pins);
    atomic_fetch_add(pins, 1);
    uint64_t state = atomic_load(&mc_shm_slot_of(r->base, &r->geo, slot)->state);
    mc_shm_read result =
        state == 2 * r->cursor + 2 ? fill_sample(r, slot, sample, problem) : MC_SHM_READ_NONE;
    if (result != MC_SHM_READ_MESSAGE) {
        atomic_fetch_sub_explicit(pins, 1, memory_order_release);
        return result == MC_SHM_READ_CORRUPT ? result : explain_mismatch(r, state, lost, problem);
    }
    r->pinned = slot;
    r->pinned_state = state;
    return MC_SHM_READ_MESSAGE;
}

bool mc_shm_reader_end(mc_shm_reader *r)
{
    uint64_t state = atomic_load_explicit(&mc_shm_slot_of(r->base, &r->geo, r->pinned)->state,
                                          memory_order_acquire);
    atomic_fetch_sub_explicit(&mc_shm_pin_of(r->base, &r->geo, r->pinned)->count, 1,
                              memory_order_release);
    r->cursor++;
    return state != r->pinned_state;
}

/* ---- subscriber table, subscriber side ------------------------------------------------------ */

int mc_shm_table_find(unsigned char *base, const mc_shm_geometry *g, const mc_endpoint_id *sub,
                      uint32_t *ticket)
{
    for (uint32_t i = 0; i < g->table_entries; i++) {
        mc_shm_entry *e = mc_shm_entry_of(base, g, i);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
        if (state != MC_SHM_ENTRY_ACTIVE && state != MC_SHM_ENTRY_DROPPED)
            continue;
        if (atomic_load_explicit(&e->sub_hi, memory_order_relaxed) == sub->context_hi &&
            atomic_load_explicit(&e->sub_lo, memory_order_relaxed) == sub->context_lo &&
            atomic_load_explicit(&e->sub_serial, memory_order_relaxed) == sub->serial) {
            *ticket = atomic_load_explicit(&e->ticket, memory_order_relaxed) & 0xffffu;
            return (int)i;
        }
    }
    return -1;
}

/* One wake per sleep of the writer, as with the doorbell: it sets writer_waiting again
 * before every sleep, and the reader that wakes it clears it, so the others make no
 * syscall for every message they read while it is being woken. */
static void wake_writer(mc_shm_header *h)
{
    if (atomic_exchange(&h->writer_waiting, 0)) {
        atomic_fetch_add(&h->ack_word, 1);
        mc_shm_futex_wake(&h->ack_word);
    }
}

/* True when every ACTIVE entry has read message `wanted`, the one the sleeping writer needs:
 * only the last reader to get there wakes it. Each reader raised its own cursor (sc) before
 * it looks at the others' (sc), so of two readers getting there at once at least one sees
 * the other's cursor. An entry being claimed or taken back (ticket and cursor disagree)
 * does not hold the wake back. */
static bool all_cursors_past(unsigned char *base, const mc_shm_geometry *g, uint64_t wanted)
{
    for (uint32_t i = 0; i < g->table_entries; i++) {
        mc_shm_entry *e = mc_shm_entry_of(base, g, i);
        if (atomic_load(&e->state) != MC_SHM_ENTRY_ACTIVE)
            continue;
        uint64_t word = atomic_load(&e->cursor);
        if ((word >> MC_SHM_CURSOR_BITS) != (atomic_load(&e->ticket) & 0xffffu))
            continue;
        if (!mc_shm_cursor_passed(word, wanted))
            return false;
    }
    return true;
}

bool mc_shm_entry_advance(unsigned char *base, const mc_shm_geometry *g, uint32_t index,
                          uint32_t ticket, uint64_t cursor)
{
    mc_shm_entry *e = mc_shm_entry_of(base, g, index);
    uint64_t word = atomic_load(&e->cursor);
    uint64_t desired = mc_shm_cursor_word(ticket, cursor);
    for (;;) {
        if ((word >> MC_SHM_CURSOR_BITS) != (ticket & 0xffffu))
            return false;
        if (cursor == 0 || mc_shm_cursor_passed(word, cursor - 1))
            break; /* already there */
        if (atomic_compare_exchange_weak(&e->cursor, &word, desired))
            break;
    }
    mc_shm_header *h = mc_shm_hdr(base);
    if (!atomic_load(&h->writer_waiting))
        return true;
    uint64_t wanted = atomic_load(&h->ack_wanted);
    if (wanted == 0 || /* a writer that does not batch */
        (mc_shm_cursor_passed(desired, wanted) && all_cursors_past(base, g, wanted)))
        wake_writer(h);
    return true;
}
