/*
 * The udp data role (doc/udp.md): samples to subscribers in other processes and on other
 * hosts, cut into datagrams sized to the path.
 *   data.c        [udp] data keys, the address subscribers bind, locators, socket buffers
 *   data_pub.c    publishers: destinations, fragmenting, batching (sendmmsg), pacing
 *   data_sub.c    subscribers: the socket, the receive thread, delivery
 *   data_wire.c   the datagram header (pure: unit test and fuzzer)
 *   reassembly.c  samples in progress, with bounded memory and age (pure: unit test)
 *
 * Addressing: in local mode (and in network mode with data_groups = none) every
 * subscriber binds a unicast socket of its own (127.0.0.1, or the interface's address)
 * and announces ip:port as its locator. In network mode a topic's subscribers bind and
 * join the topic's multicast group and announce group:port. A publisher sends every
 * fragment once to each distinct address among its connected subscribers: one copy per
 * group however many subscribers it has.
 */
#ifndef MEMCAST_UDP_DATA_H
#define MEMCAST_UDP_DATA_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memcast/plugin.h>

#define MC_UDP_LOCATOR_SIZE    8 /* version, 0, port (2), IPv4 address (4), network order */
#define MC_UDP_LOCATOR_VERSION 1

typedef struct udp_data_config {
    uint64_t datagram_size;
    uint64_t max_message_size;
    uint64_t reassembly_memory;
    int64_t reassembly_timeout_ms;
    uint64_t send_rate; /* bytes per second, 0: unlimited */
    uint64_t rcvbuf;
    uint64_t sndbuf;
    int64_t test_drop_every;
    const char *groups; /* data_groups as written */
    int64_t port;       /* data_port as written */
} udp_data_config;

typedef struct udp_data {
    udp_data_config cfg;
    struct in_addr address; /* this host's address on the data path, network order */
    /* network mode with data_groups: topics map to group_base + (topic id % group_count) */
    uint32_t group_base;  /* host order */
    uint32_t group_count; /* 0: unicast to each subscriber's address */
    uint16_t group_port;  /* host order */
    atomic_bool warned_rcvbuf;
    atomic_bool warned_sndbuf;
} udp_data;

/* ---- data.c --------------------------------------------------------------------------- */

/* Reads the data keys and finds the address to bind; sets the host error on failure. */
int mc_udp_data_init(mc_plugin *p);
void mc_udp_data_fini(mc_plugin *p);
/* Sets SO_SNDBUF or SO_RCVBUF (forcing past the kernel's cap when allowed) and warns
 * once when the kernel granted less than asked. */
void mc_udp_data_buffer(mc_plugin *p, int fd, bool receive);
int mc_udp_locator_encode(const struct sockaddr_in *addr, void *buf, size_t size);
int mc_udp_locator_decode(mc_plugin *p, const mc_peer *peer, struct sockaddr_in *addr);
/* The multicast group of a topic (network order), when topics map to groups. */
bool mc_udp_data_multicast(const mc_plugin *p);
struct in_addr mc_udp_data_group_of(const mc_plugin *p, uint64_t topic_id);

/* ---- data_pub.c ----------------------------------------------------------------------- */

int mc_udp_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_pub **out);
void mc_udp_pub_close(mc_plugin_pub *pub);
int mc_udp_pub_connect(mc_plugin_pub *pub, const mc_peer *sub);
void mc_udp_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub);
int mc_udp_send(mc_plugin_pub *pub, const mc_sample *sample);

/* ---- data_sub.c ----------------------------------------------------------------------- */

int mc_udp_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_sub **out);
void mc_udp_sub_close(mc_plugin_sub *sub);
int mc_udp_sub_connect(mc_plugin_sub *sub, const mc_peer *pub);
void mc_udp_sub_disconnect(mc_plugin_sub *sub, const mc_endpoint_id *pub);
int mc_udp_sub_locator(mc_plugin_sub *sub, void *buf, size_t size);

#endif /* MEMCAST_UDP_DATA_H */
