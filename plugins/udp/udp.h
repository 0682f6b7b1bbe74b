/*
 * The udp plugin's process-local state, shared by its files:
 *   udp.c           descriptor, [udp] configuration, instance, ops
 *   socket.c        the registration socket (loopback broadcast or multicast)
 *   registration.c  what this context sends and when; the receive thread and its timers
 *   peers.c         the receive thread's table of other contexts and their endpoints
 *   wire.c          the datagram format (pure functions, shared with tests and the fuzzer)
 *   auth.c          [udp] auth_key_file: the tag every datagram ends in when it is set
 * The data path lives in files of its own (data.h) and shares only `data` below.
 *
 * Locks: `lock` guards this context's own registration state (generation, endpoint set,
 * sequence, send buffer). The framework calls reg_announce and reg_withdraw with its
 * registry lock held, and host->remote and host->local_endpoints take that lock, so the
 * order is always registry lock, then `lock`: nothing here calls the host while holding
 * `lock`. The table of other contexts (peers) belongs to the receive thread alone and
 * needs no lock; that thread reports to the host without holding any plugin lock.
 */
#ifndef MEMCAST_UDP_UDP_H
#define MEMCAST_UDP_UDP_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <memcast/plugin.h>

#include "auth.h"
#include "data.h"
#include "idmap.h"
#include "wire.h"

enum { MC_UDP_MODE_LOCAL = 0, MC_UDP_MODE_NETWORK = 1 };

/* Bounds on what other contexts can make us hold (network mode accepts datagrams from
 * anyone on the subnet). */
#define MC_UDP_PEERS_MAX        16384
#define MC_UDP_PEER_ENDPOINTS   65536
#define MC_UDP_AHEAD_MAX        32          /* increments remembered beyond the synced generation */
#define MC_UDP_DEPARTED_MAX     32          /* contexts that said goodbye, ignored afterwards */
#define MC_UDP_FULL_COALESCE_NS 5000000LL   /* requests closer than this share one answer */
#define MC_UDP_REQUEST_RETRY_NS 100000000LL /* at most one request to a context per this */
#define MC_UDP_RECV_BURST       64          /* datagrams read before timers are looked at again */
#define MC_UDP_SEQUENCE_JUMP    65536       /* a larger gap in a sender's sequence is not counted */

typedef struct udp_config {
    int mode;
    int64_t port;
    const char *group;
    int64_t ttl;
    const char *interface;
    int64_t heartbeat_ms;
    int64_t expiry_ms;
    uint64_t max_datagram;
    const char *auth_key_file; /* "": datagrams carry no tag */
} udp_config;

/* Counters of the receive thread (written by it alone). */
typedef struct udp_recv_stats {
    uint64_t received;
    uint64_t accepted;
    uint64_t own;
    uint64_t other_domain;
    uint64_t future;
    uint64_t malformed;
    uint64_t unauthenticated; /* auth on: no tag, or a tag that does not verify */
    uint64_t foreign_source;  /* local mode: not from 127.0.0.0/8 */
    uint64_t departed;        /* from a context that already said goodbye */
    uint64_t kernel_dropped;  /* the socket's receive queue overflowed (SO_RXQ_OVFL) */
    uint64_t lost;            /* gaps in senders' sequence numbers */
    uint64_t stale;           /* increments older than what we hold */
    uint64_t fulls_sent;
    uint64_t expired;
    uint64_t goodbyes;
    uint64_t over_limit; /* contexts or endpoints beyond the bounds above */
} udp_recv_stats;

typedef struct udp_peer udp_peer;

typedef struct udp_peers {
    udp_peer *list;
    size_t count;
    uint64_t departed[MC_UDP_DEPARTED_MAX][2];
    size_t departed_next;
} udp_peers;

struct mc_plugin {
    const mc_host *host;
    udp_config cfg;
    udp_data data;    /* the data role (data.c): its keys and receive address */
    mc_udp_auth auth; /* read-only after init: every thread tags and verifies with it */

    int fd;      /* the registration socket */
    int wake_fd; /* eventfd: wakes the receive thread to stop */
    struct sockaddr_in dest;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;

    pthread_mutex_t lock;
    uint32_t generation; /* bumped by every announce and withdraw of this context */
    uint32_t sequence;   /* of the next datagram sent */
    mc_udp_idmap local;  /* serials of this context's endpoints */
    uint8_t *send_buf;   /* MC_UDP_WIRE_DATAGRAM_MAX bytes */
    uint64_t sent;
    uint64_t send_failed;
    uint64_t requests_sent;
    int last_send_errno; /* logged when it changes, so a broken route does not flood */

    /* receive thread only */
    uint8_t *recv_buf;
    udp_peers peers;
    udp_recv_stats stats;
    int64_t next_heartbeat_ns;
    int64_t full_due_ns; /* 0: no full announce owed */
    int64_t last_full_ns;
    bool warned[MC_UDP_WIRE_STATUS_COUNT];
    bool warned_foreign;
    bool warned_unauthenticated;
    bool warned_tagged; /* auth off, and a datagram came with what looks like a tag */
    bool warned_limit;
    bool warned_kernel_drops;
};

/* ---- socket.c ---------------------------------------------------------------------------- */

/* Opens and binds the socket of cfg.mode; on failure sets the host error naming the key. */
int mc_udp_socket_open(mc_plugin *p);
void mc_udp_socket_close(mc_plugin *p);
/* Sends one datagram to the registration address, followed by its tag when auth is on.
 * wait = false never blocks. Returns 0 or the errno. */
int mc_udp_socket_send(mc_plugin *p, const void *buf, size_t size, bool wait);
/* Reads one datagram without blocking into buf: MC_UDP_RECV_DATA with its length and the
 * sender's IPv4 address (host order). *drops receives the socket's count of datagrams the
 * kernel dropped so far, when the kernel reported it (else it is left alone). */
enum { MC_UDP_RECV_DATA, MC_UDP_RECV_NONE, MC_UDP_RECV_TRUNCATED, MC_UDP_RECV_ERROR };
int mc_udp_socket_recv(mc_plugin *p, void *buf, size_t size, size_t *length, uint32_t *source,
                       uint32_t *drops);

/* ---- registration.c ---------------------------------------------------------------------- */

int mc_udp_registration_start(mc_plugin *p);
void mc_udp_registration_stop(mc_plugin *p);
int mc_udp_announce(mc_plugin *p, const mc_registration *reg);
void mc_udp_withdraw(mc_plugin *p, const mc_registration *reg);
/* Asks other contexts to announce everything: target 0:0 asks all of them. */
void mc_udp_send_request(mc_plugin *p, uint64_t target_hi, uint64_t target_lo);
void mc_udp_log_stats(mc_plugin *p);

/* ---- peers.c ----------------------------------------------------------------------------- */

/* Applies a validated datagram of another context. */
void mc_udp_peers_handle(mc_plugin *p, const mc_udp_wire_message *msg, int64_t now);
/* Forgets contexts not heard from within expiry, reporting their endpoints gone; returns
 * when the next one would expire (INT64_MAX when there are none). */
int64_t mc_udp_peers_expire(mc_plugin *p, int64_t now);
/* Frees the table without reporting (the instance is going away). */
void mc_udp_peers_free(mc_plugin *p);

#endif /* MEMCAST_UDP_UDP_H */
