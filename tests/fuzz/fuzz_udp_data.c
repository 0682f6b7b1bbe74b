/*
 * libFuzzer target for the udp data datagrams (plugins/udp/data_wire.c) and the
 * reassembly they feed (plugins/udp/reassembly.c). Built and run by tests/fuzz/run.sh.
 *
 * An input is a sequence of datagrams, each preceded by its length (2 bytes, big-endian),
 * all handed to one subscriber's reassembly as they would arrive, a millisecond apart.
 * For every datagram:
 *  - the parser must return without reading outside it (ASan) or undefined behaviour
 *    (UBSan), and a status it can name;
 *  - an accepted datagram's payload lies inside it, at an offset inside the sample, and
 *    encoding the decoded header again gives the same header bytes;
 * and throughout, reassembly holds no more memory than its cap, delivers only samples of
 * the size their header announced, and frees everything (LeakSanitizer).
 * A broken property traps, which libFuzzer reports as a finding.
 *
 * Built with -DMC_FUZZ_WRITE_SEEDS instead, it is a program that writes the seed corpus
 * (fragmented and whole samples, in and out of order) into the directory given.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_wire.h"
#include "reassembly.h"

#define MAX_MESSAGE (1u << 20) /* keeps the fuzzer's allocations small */
#define MEMORY_CAP  (256u << 10)
#define TIMEOUT_NS  5000000

static void require(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static void check_delivery(void *user, const mc_udp_data_header *h, const void *data)
{
    uint64_t *delivered = user;
    require(h->total_size <= MAX_MESSAGE);
    require(h->total_size == 0 || data != NULL);
    /* touch every byte: ASan proves the buffer is as long as announced */
    const volatile uint8_t *bytes = data;
    uint8_t sum = 0;
    for (uint64_t i = 0; i < h->total_size; i++)
        sum ^= bytes[i];
    (void)sum;
    (*delivered)++;
}

static void check_datagram(const uint8_t *buf, size_t len, mc_udp_rsm *r, int64_t now,
                           uint64_t *delivered)
{
    mc_udp_data_header h;
    const uint8_t *payload = NULL;
    size_t payload_len = 0;
    mc_udp_data_status st = mc_udp_data_parse(buf, len, MAX_MESSAGE, &h, &payload, &payload_len);
    require((unsigned)st < MC_UDP_DATA_STATUS_COUNT);
    require(mc_udp_data_status_name(st) != NULL);
    if (st != MC_UDP_DATA_OK)
        return;
    require(payload >= buf && payload + payload_len == buf + len);
    require(h.total_size <= MAX_MESSAGE);
    require(h.offset + payload_len <= h.total_size);
    uint8_t again[MC_UDP_DATA_HEADER_SIZE];
    mc_udp_data_encode(&h, again);
    require(memcmp(again, buf, MC_UDP_DATA_HEADER_SIZE) == 0);
    mc_udp_rsm_add(r, &h, payload, payload_len, now, check_delivery, delivered);
    require(r->memory_used <= MEMORY_CAP);
    require(r->entry_count <= MC_UDP_RSM_ENTRIES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_udp_rsm r;
    if (mc_udp_rsm_init(&r, MEMORY_CAP, TIMEOUT_NS) != 0)
        return 0;
    uint64_t delivered = 0;
    int64_t now = 0;
    while (size >= 2) {
        size_t len = (size_t)data[0] << 8 | data[1];
        data += 2;
        size -= 2;
        if (len > size)
            len = size;
        /* a copy of exactly len bytes: reading past it is an ASan finding */
        uint8_t *copy = malloc(len ? len : 1);
        if (copy == NULL)
            break;
        memcpy(copy, data, len);
        now += 1000000;
        check_datagram(copy, len, &r, now, &delivered);
        free(copy);
        mc_udp_rsm_expire(&r, now);
        require(r.memory_used <= MEMORY_CAP);
        data += len;
        size -= len;
    }
    require(r.stats.delivered == delivered);
    mc_udp_rsm_expire(&r, INT64_MAX);
    require(r.memory_used == 0 && r.entry_count == 0);
    mc_udp_rsm_free(&r);
    return 0;
}

#ifdef MC_FUZZ_WRITE_SEEDS

#define FRAG MC_UDP_DATA_FRAGMENT_MIN

static size_t append(uint8_t *out, size_t used, uint64_t seq, uint64_t total, uint64_t index)
{
    mc_udp_data_header h = {.topic_id = mc_udp_data_topic_id("default", "robot/pose"),
                            .publisher = {.context_hi = 0x1122, .context_lo = 0x3344, .serial = 5},
                            .seq = seq,
                            .send_time_ns = 1700000000000000000,
                            .total_size = total,
                            .offset = index * FRAG,
                            .fragment_size = FRAG};
    uint64_t rest = total - (total ? h.offset : 0);
    size_t len = MC_UDP_DATA_HEADER_SIZE + (size_t)(rest < FRAG ? rest : FRAG);
    out[used] = (uint8_t)(len >> 8);
    out[used + 1] = (uint8_t)len;
    mc_udp_data_encode(&h, out + used + 2);
    for (size_t i = MC_UDP_DATA_HEADER_SIZE; i < len; i++)
        out[used + 2 + i] = (uint8_t)(i * 13 + seq);
    return used + 2 + len;
}

static int write_seed(const char *dir, const char *name, const uint8_t *buf, size_t size)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, size, f) != size) {
        perror(path);
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 2;
    }
    static uint8_t buf[8192];
    int failed = 0;
    size_t n = append(buf, 0, 1, 0, 0);
    n = append(buf, n, 2, 100, 0);
    failed |= write_seed(argv[1], "whole", buf, n);
    n = 0;
    for (uint64_t i = 0; i < 4; i++)
        n = append(buf, n, 7, 3 * FRAG + 17, i);
    failed |= write_seed(argv[1], "in-order", buf, n);
    n = 0;
    const uint64_t order[] = {3, 1, 1, 0, 2};
    for (size_t i = 0; i < 5; i++)
        n = append(buf, n, 9, 4 * FRAG, order[i]);
    failed |= write_seed(argv[1], "shuffled-duplicate", buf, n);
    n = append(buf, 0, 3, 6 * FRAG, 0);
    n = append(buf, n, 5, 2 * FRAG, 1);
    n = append(buf, n, 4, 2 * FRAG, 0);
    n = append(buf, n, 3, 6 * FRAG, 5);
    failed |= write_seed(argv[1], "gaps-and-partial", buf, n);
    return failed;
}

#endif
