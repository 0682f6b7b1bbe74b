/*
 * libFuzzer target for what a subscriber trusts in a publisher's shared-memory segment
 * (plugins/shm/ring.c): the header check and then the reader walking the ring. The input is
 * the whole file, held in a buffer of exactly its size, so any read outside it is an ASan
 * finding. The identity the subscriber expects (publisher id, pid, generation) is taken from
 * the input itself: a hostile process can write those fields too, and the fuzzer should get
 * past them to the parts that lie about sizes and positions. Properties:
 *  - the check never reads outside the file and rejects anything whose layout does not fit;
 *  - an accepted header still passes the recheck;
 *  - the reader, for at most two laps of the ring, only returns messages that lie inside the
 *    file (every byte of each is read), and stops at "caught up" or "corrupt".
 * A broken property traps, which libFuzzer reports as a finding.
 *
 * Built with -DMC_FUZZ_WRITE_SEEDS instead, it is a program that writes valid segments
 * (empty, part full, wrapped) into the directory given as its argument.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ring.h"

#ifndef MC_FUZZ_WRITE_SEEDS

static mc_shm_expect expect_from(const unsigned char *data, size_t size)
{
    mc_shm_expect expect = {.file_size = size};
    if (size >= sizeof(mc_shm_header)) {
        mc_shm_header h;
        memcpy(&h, data, sizeof(h));
        expect.generation = h.generation;
        expect.owner_pid = h.owner_pid;
        expect.publisher.context_hi = h.publisher_hi;
        expect.publisher.context_lo = h.publisher_lo;
        expect.publisher.serial = h.publisher_serial;
    }
    return expect;
}

static unsigned read_every_byte(const mc_sample *sample)
{
    const volatile unsigned char *p = sample->data;
    unsigned sum = 0;
    for (uint64_t i = 0; i < sample->size; i++)
        sum += p[i];
    return sum;
}

static void walk_ring(unsigned char *base, size_t size, const mc_shm_geometry *g,
                      const mc_shm_expect *expect)
{
    mc_shm_reader reader = {.base = base, .geo = *g, .publisher = expect->publisher};
    reader.cursor = mc_shm_hdr(base)->base_seq;
    for (uint32_t step = 0; step < 2 * g->ring_slots + 2; step++) {
        mc_sample sample = {.struct_size = sizeof(sample)};
        uint64_t lost = 0;
        const char *problem = NULL;
        mc_shm_read r = mc_shm_reader_begin(&reader, &sample, &lost, &problem);
        if (r == MC_SHM_READ_NONE)
            return;
        if (r == MC_SHM_READ_CORRUPT) {
            if (problem == NULL)
                __builtin_trap();
            return;
        }
        if (r != MC_SHM_READ_MESSAGE)
            continue;
        const unsigned char *from = sample.data;
        if (from < base || sample.size > size || from + sample.size > base + size)
            __builtin_trap();
        (void)read_every_byte(&sample);
        mc_shm_reader_end(&reader);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the header is read with atomics: give it the alignment a mapping has */
    unsigned char *base = aligned_alloc(64, (size + 63) / 64 * 64);
    if (base == NULL)
        return 0;
    memcpy(base, data, size);
    mc_shm_expect expect = expect_from(data, size);
    expect.file_size = size;
    mc_shm_geometry g;
    if (mc_shm_header_check(base, &expect, &g) == NULL) {
        if (g.size != size || mc_shm_header_recheck(base, &g, &expect) != NULL)
            __builtin_trap();
        walk_ring(base, size, &g, &expect);
    }
    free(base);
    return 0;
}

#else /* the seed writer */

static int write_file(const char *dir, const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size) {
        perror(path);
        return -1;
    }
    return fclose(f);
}

/* A segment of ring_slots slots of 64 bytes holding `messages` messages. */
static int write_segment(const char *dir, const char *name, uint32_t ring_slots, unsigned messages)
{
    mc_shm_geometry g;
    if (mc_shm_geometry_compute(ring_slots, MC_SHM_MIN_SPARES, 1, 64, &g) != 0)
        return -1;
    int fd = memfd_create("seed", 0);
    if (fd < 0 || ftruncate(fd, (off_t)g.size) != 0)
        return -1;
    unsigned char *base = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -1;
    mc_shm_identity id = {.publisher = {0x1122334455667788u, 0x99aabbccddeeff00u, 7},
                          .owner_pid = 4242,
                          .owner_start_time = 99};
    mc_shm_header_init(base, &g, &id);
    mc_shm_writer w;
    if (mc_shm_writer_init(&w, base, &g, fd, 0) != 0)
        return -1;
    for (unsigned n = 0; n < messages; n++) {
        uint32_t slot;
        bool waited_out;
        char err[256];
        if (mc_shm_writer_take(&w, 0, true, &slot, &waited_out, err, sizeof(err)) != 0)
            return -1;
        unsigned char *payload = mc_shm_payload_of(base, &g, slot);
        uint64_t size = 1 + n * 7 % 64;
        memset(payload, (int)('a' + n), size);
        mc_sample sample = {.struct_size = sizeof(sample), .publisher = id.publisher, .seq = n + 1};
        mc_shm_writer_commit(&w, slot, &sample, size);
    }
    int rc = write_file(dir, name, base, g.size);
    mc_shm_writer_fini(&w);
    munmap(base, g.size);
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 2;
    }
    if (write_segment(argv[1], "empty", 2, 0) != 0 || write_segment(argv[1], "one", 2, 1) != 0 ||
        write_segment(argv[1], "wrapped", 2, 5) != 0 || write_segment(argv[1], "four", 4, 3) != 0 ||
        write_segment(argv[1], "large_ring", 16, 21) != 0)
        return 1;
    return 0;
}

#endif
