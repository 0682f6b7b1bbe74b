/*
 * udp publishers: a socket each, the addresses of the subscribers connected to it, and
 * send(), which cuts a sample into fragments of datagram_size and hands the kernel up to
 * MC_UDP_BATCH datagrams per sendmmsg call. The payload is never copied: each datagram is
 * a header and a pointer into the sample (two iovecs), and its tag when [udp]
 * auth_key_file is set (a third: the tag is computed over the other two where they lie).
 *
 * send() runs under the framework's publisher lock; pub_connect/disconnect run under the
 * registry lock and may come at the same time, so the destinations have a lock of their
 * own, held for the whole send.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "data_wire.h"
#include "udp.h"

#define MC_UDP_BATCH 64

typedef struct destination {
    mc_endpoint_id id;
    struct sockaddr_in addr;
} destination;

struct mc_plugin_pub {
    mc_plugin *plugin;
    void *cookie;
    int fd;
    uint64_t topic_id;
    char topic[MC_TOPIC_MAX + 1];

    pthread_mutex_t lock; /* everything below */
    destination *dests;
    size_t dest_count;
    size_t dest_capacity;
    uint64_t datagrams; /* counted for test_drop_every */
    int64_t pace_next_ns;
    int last_errno;
    uint8_t headers[MC_UDP_BATCH][MC_UDP_DATA_HEADER_SIZE];
    uint8_t tags[MC_UDP_BATCH][MC_UDP_AUTH_TAG_SIZE];
    struct iovec iov[MC_UDP_BATCH][3]; /* header, payload, tag (auth on only) */
    struct mmsghdr msgs[MC_UDP_BATCH];
};

/* Groups go out of the interface the data path uses, as far as ttl allows; looped back so
 * that subscribers of this host in another IPC namespace (or with udp alone) get them. */
static int multicast_options(mc_plugin *p, int fd)
{
    struct ip_mreqn out = {.imr_address = p->data.address};
    int ttl = (int)p->cfg.ttl;
    if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &out, sizeof(out)) != 0)
        return -1;
    return setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
}

int mc_udp_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_pub **out)
{
    mc_plugin_pub *pub = calloc(1, sizeof(*pub));
    if (pub == NULL)
        return MC_ENOMEM;
    pub->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (pub->fd < 0) {
        free(pub);
        p->host->set_error(p->host->ctx, "topic '%s': cannot create a UDP socket: %s", info->topic,
                           strerror(errno));
        return MC_ETRANSPORT;
    }
    mc_udp_data_buffer(p, pub->fd, false);
    if (p->cfg.mode == MC_UDP_MODE_NETWORK && multicast_options(p, pub->fd) != 0) {
        p->host->set_error(p->host->ctx, "topic '%s': cannot set up multicast sending: %s",
                           info->topic, strerror(errno));
        close(pub->fd);
        free(pub);
        return MC_ETRANSPORT;
    }
    pub->plugin = p;
    pub->cookie = cookie;
    pub->topic_id = mc_udp_data_topic_id(p->host->domain, info->topic);
    snprintf(pub->topic, sizeof(pub->topic), "%s", info->topic);
    pthread_mutex_init(&pub->lock, NULL);
    *out = pub;
    return 0;
}

void mc_udp_pub_close(mc_plugin_pub *pub)
{
    close(pub->fd);
    pthread_mutex_destroy(&pub->lock);
    free(pub->dests);
    free(pub);
}

static int add_destination_locked(mc_plugin_pub *pub, const destination *d)
{
    if (pub->dest_count == pub->dest_capacity) {
        size_t capacity = pub->dest_capacity ? pub->dest_capacity * 2 : 4;
        destination *grown = realloc(pub->dests, capacity * sizeof(*grown));
        if (grown == NULL)
            return MC_ENOMEM;
        pub->dests = grown;
        pub->dest_capacity = capacity;
    }
    pub->dests[pub->dest_count++] = *d;
    return 0;
}

int mc_udp_pub_connect(mc_plugin_pub *pub, const mc_peer *sub)
{
    destination d = {.id = sub->id};
    int rc = mc_udp_locator_decode(pub->plugin, sub, &d.addr);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&pub->lock);
    rc = add_destination_locked(pub, &d);
    pthread_mutex_unlock(&pub->lock);
    return rc;
}

void mc_udp_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
    pthread_mutex_lock(&pub->lock);
    for (size_t i = 0; i < pub->dest_count; i++) {
        if (memcmp(&pub->dests[i].id, sub, sizeof(*sub)) == 0) {
            pub->dests[i] = pub->dests[--pub->dest_count];
            break;
        }
    }
    pthread_mutex_unlock(&pub->lock);
}

/* ---- sending ------------------------------------------------------------------------- */

static int64_t now_ns(const mc_plugin_pub *pub)
{
    return pub->plugin->host->now_ns();
}

/* send_rate: waits until bytes may go out, so a burst leaves at the configured rate. */
static void pace(mc_plugin_pub *pub, size_t bytes)
{
    uint64_t rate = pub->plugin->data.cfg.send_rate;
    if (rate == 0)
        return;
    int64_t now = now_ns(pub);
    if (pub->pace_next_ns < now)
        pub->pace_next_ns = now;
    int64_t wait = pub->pace_next_ns - now;
    pub->pace_next_ns += (int64_t)((double)bytes * 1e9 / (double)rate);
    if (wait <= 0)
        return;
    struct timespec ts = {.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* test_drop_every = N: every Nth datagram of this publisher is not sent (tests only). */
static bool drop_for_test(mc_plugin_pub *pub)
{
    int64_t every = pub->plugin->data.cfg.test_drop_every;
    return every > 0 && ++pub->datagrams % (uint64_t)every == 0;
}

static void report_send_error(mc_plugin_pub *pub, int err, const destination *d)
{
    if (err == pub->last_errno)
        return;
    pub->last_errno = err;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &d->addr.sin_addr, ip, sizeof(ip));
    pub->plugin->host->log(pub->plugin->host->ctx, MC_LOG_WARN,
                           "topic '%s': sending to %s:%u failed: %s", pub->topic, ip,
                           (unsigned)ntohs(d->addr.sin_port), strerror(err));
}

/* Sends the prepared datagrams [0, count) to d; on an error the rest of this batch is
 * given up for d (the subscriber counts that sample lost). */
static void send_batch(mc_plugin_pub *pub, const destination *d, unsigned count)
{
    unsigned first = 0, used = 0;
    struct mmsghdr *out = pub->msgs;
    for (unsigned i = 0; i < count; i++) {
        if (drop_for_test(pub))
            continue;
        out[used] = (struct mmsghdr){.msg_hdr = {.msg_name = (void *)&d->addr,
                                                 .msg_namelen = sizeof(d->addr),
                                                 .msg_iov = pub->iov[i],
                                                 .msg_iovlen = pub->plugin->auth.on ? 3 : 2}};
        used++;
    }
    size_t bytes = 0;
    for (unsigned i = 0; i < used; i++)
        bytes += pub->msgs[i].msg_hdr.msg_iov[0].iov_len + pub->msgs[i].msg_hdr.msg_iov[1].iov_len +
                 mc_udp_auth_trailer(&pub->plugin->auth);
    pace(pub, bytes);
    while (first < used) {
        int n = sendmmsg(pub->fd, out + first, used - first, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            report_send_error(pub, n < 0 ? errno : EIO, d);
            return;
        }
        first += (unsigned)n;
    }
}

/* Payload bytes of a full datagram: what the header and the tag (auth on) leave of it. */
static uint32_t fragment_size(const mc_plugin *p)
{
    size_t overhead = MC_UDP_DATA_HEADER_SIZE + mc_udp_auth_trailer(&p->auth);
    return (uint32_t)(p->data.cfg.datagram_size - overhead);
}

/* The tag of prepared datagram i, over its header and payload iovecs. */
static void tag_datagram(mc_plugin_pub *pub, unsigned i)
{
    const struct iovec *v = pub->iov[i];
    mc_udp_auth_tag(&pub->plugin->auth, v[0].iov_base, v[0].iov_len, v[1].iov_base, v[1].iov_len,
                    pub->tags[i]);
    pub->iov[i][2] = (struct iovec){.iov_base = pub->tags[i], .iov_len = MC_UDP_AUTH_TAG_SIZE};
}

/* Prepares the headers and iovecs of fragments [first, first + count). */
static void prepare_batch(mc_plugin_pub *pub, mc_udp_data_header *h, const mc_sample *sample,
                          uint64_t first, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        h->offset = (first + i) * h->fragment_size;
        uint64_t rest = sample->size - h->offset;
        size_t len = (size_t)(rest < h->fragment_size ? rest : h->fragment_size);
        mc_udp_data_encode(h, pub->headers[i]);
        pub->iov[i][0] =
            (struct iovec){.iov_base = pub->headers[i], .iov_len = MC_UDP_DATA_HEADER_SIZE};
        /* an empty sample may come with data NULL, which takes no offset */
        void *base = len > 0 ? (uint8_t *)sample->data + h->offset : NULL;
        pub->iov[i][1] = (struct iovec){.iov_base = base, .iov_len = len};
        if (pub->plugin->auth.on)
            tag_datagram(pub, i);
    }
}

/* Subscribers of a topic's multicast group share its address: one copy reaches them all. */
static bool sent_already(const mc_plugin_pub *pub, size_t index)
{
    const struct sockaddr_in *to = &pub->dests[index].addr;
    for (size_t i = 0; i < index; i++)
        if (pub->dests[i].addr.sin_addr.s_addr == to->sin_addr.s_addr &&
            pub->dests[i].addr.sin_port == to->sin_port)
            return true;
    return false;
}

static int size_ok(mc_plugin_pub *pub, uint64_t size)
{
    mc_plugin *p = pub->plugin;
    if (size <= p->data.cfg.max_message_size)
        return 0;
    p->host->set_error(
        p->host->ctx, "topic '%s': message of %llu bytes exceeds [udp] max_message_size %llu",
        pub->topic, (unsigned long long)size, (unsigned long long)p->data.cfg.max_message_size);
    return MC_EMSGSIZE;
}

int mc_udp_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    int rc = size_ok(pub, sample->size);
    if (rc != 0)
        return rc;
    mc_udp_data_header h = {.topic_id = pub->topic_id,
                            .publisher = sample->publisher,
                            .seq = sample->seq,
                            .send_time_ns = sample->send_time_ns,
                            .total_size = sample->size,
                            .fragment_size = fragment_size(pub->plugin)};
    uint64_t fragments = mc_udp_data_fragments(sample->size, h.fragment_size);
    pthread_mutex_lock(&pub->lock);
    for (uint64_t first = 0; first < fragments && pub->dest_count > 0; first += MC_UDP_BATCH) {
        unsigned count =
            (unsigned)(fragments - first < MC_UDP_BATCH ? fragments - first : MC_UDP_BATCH);
        prepare_batch(pub, &h, sample, first, count);
        for (size_t d = 0; d < pub->dest_count; d++)
            if (!sent_already(pub, d))
                send_batch(pub, &pub->dests[d], count);
    }
    pthread_mutex_unlock(&pub->lock);
    return 0;
}
