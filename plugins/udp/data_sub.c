/*
 * udp subscribers: a unicast socket each, bound at open so that its address can go into
 * the subscriber's locator, and a receive thread started when the framework first
 * connects it to a publisher over udp (a subscriber that only ever gets shm costs a
 * socket, no thread). The thread reads datagrams in batches (recvmmsg), drops those of
 * other topics from the header alone, feeds the rest to reassembly and delivers finished
 * samples; losses are reported to the framework as MC_DROP_LOST.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data.h"
#include "data_wire.h"
#include "hold.h"
#include "reassembly.h"
#include "udp.h"

#define RECV_BATCH 16
#define RECV_SLOT  65536 /* any datagram fits, whatever datagram_size the sender uses */

struct mc_plugin_sub {
    mc_plugin *plugin;
    void *cookie;
    int fd;
    int wake_fd;
    uint64_t topic_id;
    struct sockaddr_in addr;
    char topic[MC_TOPIC_MAX + 1];
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;

    /* multicast: the publishers the framework connected over udp (sub_connect, on the
     * registration thread; read by the receive thread) */
    pthread_mutex_t connected_lock;
    mc_endpoint_id *connected;
    size_t connected_count;
    size_t connected_capacity;
    atomic_bool connected_changed;

    /* receive thread only */
    mc_udp_rsm rsm;
    mc_udp_hold hold;          /* samples of publishers not connected yet */
    uint32_t source;           /* of the datagram being handled, network order */
    uint64_t own_unmatched;    /* datagrams of this host's publishers not connected over udp */
    uint64_t unconnected_lost; /* losses of the group's publishers not connected to us */
    struct sockaddr_in sources[RECV_BATCH];
    uint64_t foreign_topic;
    uint64_t unauthenticated; /* auth_key_file set: no tag, or one that does not verify */
    uint64_t malformed[MC_UDP_DATA_STATUS_COUNT];
    uint8_t *slots;
    struct iovec iov[RECV_BATCH];
    struct mmsghdr msgs[RECV_BATCH];
};

static int fail_errno(mc_plugin *p, const char *topic, const char *what)
{
    p->host->set_error(p->host->ctx, "topic '%s': %s: %s", topic, what, strerror(errno));
    return MC_ETRANSPORT;
}

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

/* The topic's group: every subscriber of the groups' topics in this host binds group:port
 * (SO_REUSEADDR lets them all, and the kernel gives each a copy). Bound to the group
 * address and with IP_MULTICAST_ALL off, the socket gets this group only, not unicast and
 * not the groups other sockets of the process joined. */
static int bind_group(mc_plugin_sub *sub)
{
    mc_plugin *p = sub->plugin;
    struct in_addr group = mc_udp_data_group_of(p, sub->topic_id);
    sub->addr = (struct sockaddr_in){
        .sin_family = AF_INET, .sin_port = htons(p->data.group_port), .sin_addr = group};
    if (set_int(sub->fd, SOL_SOCKET, SO_REUSEADDR, 1) != 0)
        return fail_errno(p, sub->topic, "SO_REUSEADDR on the data socket");
    if (bind(sub->fd, (struct sockaddr *)&sub->addr, sizeof(sub->addr)) != 0)
        return fail_errno(p, sub->topic, "cannot bind the data socket to its multicast group");
    if (set_int(sub->fd, IPPROTO_IP, IP_MULTICAST_ALL, 0) != 0)
        return fail_errno(p, sub->topic, "IP_MULTICAST_ALL on the data socket");
    struct ip_mreqn join = {.imr_multiaddr = group, .imr_address = p->data.address};
    if (setsockopt(sub->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &join, sizeof(join)) != 0) {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &group, text, sizeof(text));
        p->host->set_error(p->host->ctx,
                           "topic '%s': cannot join the data group %s ([udp] data_groups): %s",
                           sub->topic, text, strerror(errno));
        return MC_ETRANSPORT;
    }
    return 0;
}

static int bind_socket(mc_plugin_sub *sub)
{
    mc_plugin *p = sub->plugin;
    sub->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sub->fd < 0)
        return fail_errno(p, sub->topic, "cannot create a UDP socket");
    mc_udp_data_buffer(p, sub->fd, true);
    if (mc_udp_data_multicast(p))
        return bind_group(sub);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = p->data.address};
    socklen_t len = sizeof(sa);
    if (bind(sub->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return fail_errno(p, sub->topic, "cannot bind the data socket");
    if (getsockname(sub->fd, (struct sockaddr *)&sub->addr, &len) != 0)
        return fail_errno(p, sub->topic, "getsockname");
    return 0;
}

static int start_thread(mc_plugin_sub *sub);
static void report_lost(void *user, const mc_endpoint_id *publisher, uint64_t count);

static void sub_free(mc_plugin_sub *sub)
{
    if (sub->fd >= 0)
        close(sub->fd);
    if (sub->wake_fd >= 0)
        close(sub->wake_fd);
    mc_udp_rsm_free(&sub->rsm);
    mc_udp_hold_free(&sub->hold);
    pthread_mutex_destroy(&sub->connected_lock);
    free(sub->connected);
    free(sub->slots);
    free(sub);
}

int mc_udp_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie, mc_plugin_sub **out)
{
    mc_plugin_sub *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return MC_ENOMEM;
    sub->plugin = p;
    sub->cookie = cookie;
    sub->fd = -1;
    sub->topic_id = mc_udp_data_topic_id(p->host->domain, info->topic);
    snprintf(sub->topic, sizeof(sub->topic), "%s", info->topic);
    atomic_init(&sub->stopping, false);
    atomic_init(&sub->connected_changed, false);
    pthread_mutex_init(&sub->connected_lock, NULL);
    mc_udp_hold_init(&sub->hold, p->data.cfg.reassembly_memory / 4,
                     p->data.cfg.reassembly_timeout_ms * 1000000);
    sub->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = sub->wake_fd < 0 ? fail_errno(p, info->topic, "eventfd") : bind_socket(sub);
    if (rc == 0)
        rc = mc_udp_rsm_init(&sub->rsm, p->data.cfg.reassembly_memory,
                             p->data.cfg.reassembly_timeout_ms * 1000000);
    sub->rsm.on_lost = report_lost;
    sub->rsm.lost_user = sub;
    /* a group's datagrams come whoever is connected: read them from the start, so that
     * the kernel does not queue what nobody reads */
    if (rc == 0 && mc_udp_data_multicast(p))
        rc = start_thread(sub);
    if (rc != 0) {
        sub_free(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

static void log_stats(mc_plugin_sub *sub)
{
    const mc_udp_rsm_stats *s = &sub->rsm.stats;
    uint64_t malformed = 0;
    for (int i = 1; i < MC_UDP_DATA_STATUS_COUNT; i++)
        malformed += sub->malformed[i];
    sub->plugin->host->log(sub->plugin->host->ctx, MC_LOG_DEBUG,
                           "topic '%s': udp data: %llu delivered, %llu lost (%llu timed out, "
                           "%llu evicted, %llu refused, %llu overtaken, %llu never seen), "
                           "%llu duplicate and "
                           "%llu stale fragments, %llu of other topics, %llu malformed, %llu "
                           "unauthenticated",
                           sub->topic, (unsigned long long)s->delivered,
                           (unsigned long long)s->lost, (unsigned long long)s->timed_out,
                           (unsigned long long)s->evicted, (unsigned long long)s->refused,
                           (unsigned long long)s->overtaken, (unsigned long long)s->gaps,
                           (unsigned long long)s->duplicates, (unsigned long long)s->stale,
                           (unsigned long long)sub->foreign_topic, (unsigned long long)malformed,
                           (unsigned long long)sub->unauthenticated);
    if (mc_udp_data_multicast(sub->plugin))
        sub->plugin->host->log(
            sub->plugin->host->ctx, MC_LOG_DEBUG,
            "topic '%s': udp data group: %llu samples of publishers not connected yet held, "
            "%llu of them delivered later, %llu never connected, %llu lost of such publishers "
            "(not counted as ours); %llu datagrams of this host's other publishers ignored",
            sub->topic, (unsigned long long)sub->hold.held, (unsigned long long)sub->hold.released,
            (unsigned long long)sub->hold.expired, (unsigned long long)sub->unconnected_lost,
            (unsigned long long)sub->own_unmatched);
}

void mc_udp_sub_close(mc_plugin_sub *sub)
{
    if (sub->thread_started) {
        atomic_store(&sub->stopping, true);
        uint64_t one = 1;
        if (write(sub->wake_fd, &one, sizeof(one)) < 0) {
            /* the counter cannot overflow from one write; stopping is set regardless */
        }
        pthread_join(sub->thread, NULL);
        log_stats(sub);
    }
    sub_free(sub);
}

int mc_udp_sub_locator(mc_plugin_sub *sub, void *buf, size_t size)
{
    return mc_udp_locator_encode(&sub->addr, buf, size);
}

/* ---- the receive thread ------------------------------------------------------------- */

static void hand_over(void *user, const mc_udp_data_header *h, const void *data)
{
    mc_plugin_sub *sub = user;
    mc_sample sample = {.struct_size = sizeof(sample),
                        .data = h->total_size > 0 ? data : NULL,
                        .size = h->total_size,
                        .publisher = h->publisher,
                        .seq = h->seq,
                        .send_time_ns = h->send_time_ns};
    sub->plugin->host->deliver(sub->plugin->host->ctx, sub->cookie, &sample);
}

static bool connected(void *user, const mc_endpoint_id *publisher)
{
    mc_plugin_sub *sub = user;
    bool found = false;
    pthread_mutex_lock(&sub->connected_lock);
    for (size_t i = 0; i < sub->connected_count && !found; i++)
        found = memcmp(&sub->connected[i], publisher, sizeof(*publisher)) == 0;
    pthread_mutex_unlock(&sub->connected_lock);
    return found;
}

/* Multicast: a datagram of this host's own address from a publisher not connected over
 * udp is the looped-back copy of one that shm serves (or that is not matched at all): it
 * is dropped before reassembly, so it costs neither a copy nor a loss count. */
static bool own_unconnected(mc_plugin_sub *sub, const mc_endpoint_id *publisher)
{
    return mc_udp_data_multicast(sub->plugin) && sub->source == sub->plugin->data.address.s_addr &&
           !connected(sub, publisher);
}

/* Multicast brings samples of every publisher of the group (hold.h): those of publishers
 * connected over udp are delivered, after any held before; those of other hosts' others
 * are held until their publisher is connected or they age out. */
static void deliver(void *user, const mc_udp_data_header *h, const void *data)
{
    mc_plugin_sub *sub = user;
    if (!mc_udp_data_multicast(sub->plugin)) {
        hand_over(sub, h, data);
    } else if (connected(sub, &h->publisher)) {
        if (sub->hold.count > 0)
            mc_udp_hold_release(&sub->hold, sub->plugin->host->now_ns(), connected, hand_over, sub);
        hand_over(sub, h, data);
    } else {
        mc_udp_hold_put(&sub->hold, h, data, sub->plugin->host->now_ns());
    }
}

/* Every loss is told with its publisher (a framework older than ABI 1.1 gets the count).
 * Multicast: only losses of publishers connected to this subscriber over udp are its own;
 * the group's others (another type, not matched yet) are counted here alone. */
static void report_lost(void *user, const mc_endpoint_id *publisher, uint64_t count)
{
    mc_plugin_sub *sub = user;
    if (mc_udp_data_multicast(sub->plugin) && !connected(sub, publisher)) {
        sub->unconnected_lost += count;
        return;
    }
    const mc_host *host = sub->plugin->host;
    if (MC_HAS(host, mc_host, dropped_from))
        host->dropped_from(host->ctx, sub->cookie, publisher, MC_DROP_LOST, count);
    else
        host->dropped(host->ctx, sub->cookie, MC_DROP_LOST, count);
}

static void warn_malformed(mc_plugin_sub *sub, mc_udp_data_status st)
{
    if (sub->malformed[st]++ > 0)
        return;
    sub->plugin->host->log(sub->plugin->host->ctx, MC_LOG_WARN,
                           "topic '%s': udp datagram ignored: %s (said once per kind)", sub->topic,
                           mc_udp_data_status_name(st));
}

/* auth_key_file set: true when the datagram's tag verifies; *len then leaves the tag out.
 * Runs before the parser, so an unauthenticated datagram is never parsed. */
static bool authentic(mc_plugin_sub *sub, const uint8_t *buf, size_t *len)
{
    mc_plugin *p = sub->plugin;
    if (mc_udp_auth_verify(&p->auth, buf, *len)) {
        *len -= MC_UDP_AUTH_TAG_SIZE;
        return true;
    }
    if (sub->unauthenticated++ == 0) {
        char from[INET_ADDRSTRLEN];
        struct in_addr source = {.s_addr = sub->source};
        inet_ntop(AF_INET, &source, from, sizeof(from));
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "topic '%s': dropped a udp datagram from %s without a valid tag of [udp] "
                     "auth_key_file '%s' (said once; the rest are counted)",
                     sub->topic, from, p->cfg.auth_key_file);
    }
    return false;
}

static void handle_datagram(mc_plugin_sub *sub, const uint8_t *buf, size_t len, bool cut,
                            int64_t now)
{
    if (!cut && sub->plugin->auth.on && !authentic(sub, buf, &len))
        return;
    mc_udp_data_header h;
    const uint8_t *payload = NULL;
    size_t payload_len = 0;
    mc_udp_data_status st =
        cut ? MC_UDP_DATA_BAD_LENGTH
            : mc_udp_data_parse(buf, len, sub->plugin->data.cfg.max_message_size, &h, &payload,
                                &payload_len);
    if (st != MC_UDP_DATA_OK) {
        warn_malformed(sub, st);
        return;
    }
    if (h.topic_id != sub->topic_id) {
        sub->foreign_topic++;
        return;
    }
    if (own_unconnected(sub, &h.publisher)) {
        sub->own_unmatched++;
        return;
    }
    mc_udp_rsm_add(&sub->rsm, &h, payload, payload_len, now, deliver, sub);
}

/* Reads what is queued, a batch at a time; returns false when the socket failed. */
static bool drain(mc_plugin_sub *sub)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        for (unsigned i = 0; i < RECV_BATCH; i++) {
            sub->iov[i] = (struct iovec){.iov_base = sub->slots + (size_t)i * RECV_SLOT,
                                         .iov_len = RECV_SLOT};
            sub->msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &sub->sources[i],
                                                        .msg_namelen = sizeof(sub->sources[i]),
                                                        .msg_iov = &sub->iov[i],
                                                        .msg_iovlen = 1}};
        }
        int n = recvmmsg(sub->fd, sub->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        int64_t now = sub->plugin->host->now_ns();
        for (int i = 0; i < n; i++) {
            sub->source = sub->sources[i].sin_addr.s_addr;
            handle_datagram(sub, sub->iov[i].iov_base, sub->msgs[i].msg_len,
                            (sub->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, now);
        }
        if (n < RECV_BATCH)
            return true;
    }
    return true;
}

static int poll_timeout_ms(int64_t next_due, int64_t now)
{
    if (next_due == INT64_MAX)
        return -1;
    int64_t ms = (next_due - now + 999999) / 1000000;
    return ms <= 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* sub_connect or close woke the thread: empty the eventfd, and deliver what a newly
 * connected publisher sent before. */
static void take_wake(mc_plugin_sub *sub)
{
    uint64_t count;
    if (read(sub->wake_fd, &count, sizeof(count)) < 0) {
        /* EAGAIN: another read emptied it; nothing else can fail on an eventfd */
    }
    if (atomic_exchange(&sub->connected_changed, false))
        mc_udp_hold_release(&sub->hold, sub->plugin->host->now_ns(), connected, hand_over, sub);
}

static void *receive_thread(void *arg)
{
    mc_plugin_sub *sub = arg;
    const mc_host *host = sub->plugin->host;
    struct pollfd fds[2] = {{.fd = sub->fd, .events = POLLIN},
                            {.fd = sub->wake_fd, .events = POLLIN}};
    int64_t next_due = INT64_MAX;
    while (!atomic_load(&sub->stopping)) {
        int rc = poll(fds, 2, poll_timeout_ms(next_due, host->now_ns()));
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0 && (fds[1].revents & POLLIN))
            take_wake(sub);
        if (rc > 0 && (fds[0].revents & POLLIN) && !drain(sub)) {
            host->log(host->ctx, MC_LOG_ERROR, "topic '%s': udp data socket failed: %s", sub->topic,
                      strerror(errno));
            break;
        }
        int64_t now = host->now_ns();
        if (sub->hold.count > 0)
            mc_udp_hold_release(&sub->hold, now, connected, hand_over, sub);
        next_due = earliest(mc_udp_rsm_expire(&sub->rsm, now), mc_udp_hold_next_due(&sub->hold));
    }
    return NULL;
}

static int start_thread(mc_plugin_sub *sub)
{
    if (sub->slots == NULL)
        sub->slots = malloc((size_t)RECV_BATCH * RECV_SLOT);
    if (sub->slots == NULL)
        return MC_ENOMEM;
    int rc = pthread_create(&sub->thread, NULL, receive_thread, sub);
    if (rc != 0) {
        sub->plugin->host->set_error(sub->plugin->host->ctx,
                                     "topic '%s': cannot start the udp receive thread: %s",
                                     sub->topic, strerror(rc));
        return MC_ETRANSPORT;
    }
    sub->thread_started = true;
    return 0;
}

static int add_connected(mc_plugin_sub *sub, const mc_endpoint_id *publisher)
{
    int rc = 0;
    pthread_mutex_lock(&sub->connected_lock);
    if (sub->connected_count == sub->connected_capacity) {
        size_t capacity = sub->connected_capacity ? sub->connected_capacity * 2 : 4;
        mc_endpoint_id *grown = realloc(sub->connected, capacity * sizeof(*grown));
        if (grown != NULL) {
            sub->connected = grown;
            sub->connected_capacity = capacity;
        }
    }
    if (sub->connected_count < sub->connected_capacity)
        sub->connected[sub->connected_count++] = *publisher;
    else
        rc = MC_ENOMEM;
    pthread_mutex_unlock(&sub->connected_lock);
    return rc;
}

/* Unicast: the first publisher connected over udp starts the thread. Multicast: the
 * thread runs already; it is told to deliver what this publisher sent before. */
int mc_udp_sub_connect(mc_plugin_sub *sub, const mc_peer *pub)
{
    if (!mc_udp_data_multicast(sub->plugin))
        return sub->thread_started ? 0 : start_thread(sub);
    int rc = add_connected(sub, &pub->id);
    if (rc != 0)
        return rc;
    atomic_store(&sub->connected_changed, true);
    uint64_t one = 1;
    if (write(sub->wake_fd, &one, sizeof(one)) < 0) {
        /* cannot overflow from one write; connected_changed is seen at the next wake-up */
    }
    return 0;
}

void mc_udp_sub_disconnect(mc_plugin_sub *sub, const mc_endpoint_id *pub)
{
    pthread_mutex_lock(&sub->connected_lock);
    for (size_t i = 0; i < sub->connected_count; i++) {
        if (memcmp(&sub->connected[i], pub, sizeof(*pub)) == 0) {
            sub->connected[i] = sub->connected[--sub->connected_count];
            break;
        }
    }
    pthread_mutex_unlock(&sub->connected_lock);
}
