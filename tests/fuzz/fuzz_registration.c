/*
 * libFuzzer target for the udp plugin's registration datagrams (plugins/udp/wire.c).
 * Built and run by tests/fuzz/run.sh. For every input:
 *  - the decoder must return without reading outside the input (ASan) or undefined
 *    behaviour (UBSan);
 *  - checking the domain changes a verdict only to "another domain";
 *  - whatever is accepted walks cleanly, every record passes the record check, and
 *    encoding it again yields a datagram that decodes to the same content.
 * A broken property traps, which libFuzzer reports as a finding.
 *
 * Built with -DMC_FUZZ_WRITE_SEEDS instead, it is a program that writes the seed corpus
 * (valid datagrams of every type) into the directory given as its argument.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define DOMAIN "default"

static bool same_text(mc_udp_text a, mc_udp_text b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool same_record(const mc_udp_wire_record *a, const mc_udp_wire_record *b)
{
    if (a->kind != b->kind || a->serial != b->serial || a->messages != b->messages ||
        a->dropped != b->dropped || !same_text(a->topic, b->topic) ||
        !same_text(a->type, b->type) || !same_text(a->encoding, b->encoding) ||
        a->locator_count != b->locator_count)
        return false;
    for (size_t i = 0; i < a->locator_count; i++) {
        const mc_udp_wire_locator *x = &a->locators[i], *y = &b->locators[i];
        if (!same_text(x->transport, y->transport) || x->size != y->size ||
            (x->size > 0 && memcmp(x->data, y->data, x->size) != 0))
            return false;
    }
    return true;
}

static bool same_header(const mc_udp_wire_header *a, const mc_udp_wire_header *b)
{
    return a->type == b->type && a->part_index == b->part_index && a->part_count == b->part_count &&
           a->sequence == b->sequence && a->generation == b->generation &&
           a->endpoint_count == b->endpoint_count && a->pid == b->pid &&
           a->context_hi == b->context_hi && a->context_lo == b->context_lo &&
           a->target_hi == b->target_hi && a->target_lo == b->target_lo &&
           memcmp(a->host_token, b->host_token, MC_HOST_TOKEN_SIZE) == 0 &&
           same_text(a->domain, b->domain);
}

static void require(bool ok)
{
    if (!ok)
        __builtin_trap();
}

/* Encodes what was accepted again and decodes the result: the content must survive. */
static void reencode(const mc_udp_wire_message *msg)
{
    static uint8_t out[MC_UDP_WIRE_DATAGRAM_MAX + 1024];
    mc_udp_wire_header h = msg->header;
    h.flags &= MC_UDP_FLAG_FULL; /* flags of a newer minor are not ours to send */
    mc_udp_wire_writer w;
    require(mc_udp_wire_begin(&w, out, sizeof(out), &h) == MC_UDP_WIRE_OK);
    mc_udp_wire_cursor c;
    mc_udp_wire_record r;
    size_t records = 0;
    mc_udp_wire_cursor_init(&c, msg);
    while (mc_udp_wire_cursor_next(&c, &r)) {
        require(mc_udp_wire_record_check(&r) == MC_UDP_WIRE_OK);
        require(mc_udp_wire_add(&w, &r) == MC_UDP_WIRE_OK);
        records++;
    }
    size_t size = mc_udp_wire_end(&w);
    mc_udp_wire_message again;
    require(mc_udp_wire_decode(out, size, NULL, &again) == MC_UDP_WIRE_OK);
    require(same_header(&again.header, &msg->header));
    require(again.header.record_count == records);

    mc_udp_wire_cursor c1, c2;
    mc_udp_wire_record r1, r2;
    mc_udp_wire_cursor_init(&c1, msg);
    mc_udp_wire_cursor_init(&c2, &again);
    while (mc_udp_wire_cursor_next(&c1, &r1)) {
        require(mc_udp_wire_cursor_next(&c2, &r2));
        require(same_record(&r1, &r2));
    }
    require(!mc_udp_wire_cursor_next(&c2, &r2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_udp_wire_message any, ours;
    mc_udp_wire_status st_any = mc_udp_wire_decode(data, size, NULL, &any);
    mc_udp_wire_status st_ours = mc_udp_wire_decode(data, size, DOMAIN, &ours);
    require((unsigned)st_any < MC_UDP_WIRE_STATUS_COUNT);
    require(st_ours == st_any || st_ours == MC_UDP_WIRE_OTHER_DOMAIN);
    require(mc_udp_wire_status_name(st_any) != NULL);
    if (st_any == MC_UDP_WIRE_OK)
        reencode(&any);
    return 0;
}

#ifdef MC_FUZZ_WRITE_SEEDS

static const uint8_t locator[12] = {'m', 'c', '_', 's', 'h', 'm', 0, 1, 2, 3, 4, 5};

static mc_udp_text text(const char *s)
{
    return (mc_udp_text){.data = s, .len = strlen(s)};
}

static mc_udp_wire_header seed_header(uint8_t type, uint8_t flags)
{
    mc_udp_wire_header h = {.type = type,
                            .flags = flags,
                            .part_count = 1,
                            .sequence = 100,
                            .generation = 3,
                            .endpoint_count = 2,
                            .pid = 1234,
                            .context_hi = 0x1122334455667788ull,
                            .context_lo = 0x99aabbccddeeff00ull,
                            .domain = text(DOMAIN)};
    memset(h.host_token, 0x5c, sizeof(h.host_token));
    return h;
}

static mc_udp_wire_record seed_record(uint64_t serial, const char *topic, int locators)
{
    mc_udp_wire_record r = {.kind = serial % 2 ? MC_KIND_PUBLISHER : MC_KIND_SUBSCRIBER,
                            .serial = serial,
                            .messages = 10,
                            .dropped = 1,
                            .topic = text(topic),
                            .type = text("demo.Pose"),
                            .encoding = text("protobuf"),
                            .locator_count = (uint8_t)locators};
    for (int i = 0; i < locators; i++)
        r.locators[i] = (mc_udp_wire_locator){
            .transport = text(i ? "udp" : "shm"), .data = locator, .size = sizeof(locator)};
    return r;
}

static int write_seed(const char *dir, const char *name, const mc_udp_wire_header *h,
                      const mc_udp_wire_record *records, size_t n)
{
    static uint8_t buf[4096];
    mc_udp_wire_writer w;
    if (mc_udp_wire_begin(&w, buf, sizeof(buf), h) != MC_UDP_WIRE_OK)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (mc_udp_wire_add(&w, &records[i]) != MC_UDP_WIRE_OK)
            return 1;
    size_t size = mc_udp_wire_end(&w);
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
    const char *dir = argv[1];
    mc_udp_wire_record r[3] = {seed_record(1, "robot/pose", 2), seed_record(2, "a", 0),
                               seed_record(3, "fleet/robot-7/cmd.vel", 1)};
    mc_udp_wire_header full = seed_header(MC_UDP_MSG_ANNOUNCE, MC_UDP_FLAG_FULL);
    full.part_index = 1;
    full.part_count = 3;
    mc_udp_wire_header request = seed_header(MC_UDP_MSG_REQUEST, 0);
    request.target_hi = 7;
    request.target_lo = 8;
    int failed = 0;
    mc_udp_wire_header h = seed_header(MC_UDP_MSG_ANNOUNCE, 0);
    failed |= write_seed(dir, "announce", &h, r, 1);
    failed |= write_seed(dir, "full-part", &full, r, 3);
    h = seed_header(MC_UDP_MSG_WITHDRAW, 0);
    failed |= write_seed(dir, "withdraw", &h, &r[2], 1);
    h = seed_header(MC_UDP_MSG_HEARTBEAT, 0);
    failed |= write_seed(dir, "heartbeat", &h, NULL, 0);
    h = seed_header(MC_UDP_MSG_GOODBYE, 0);
    failed |= write_seed(dir, "goodbye", &h, NULL, 0);
    failed |= write_seed(dir, "request", &request, NULL, 0);
    return failed;
}

#endif
