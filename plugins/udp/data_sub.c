/*
 * udp subscribers: a unicast socket each, bound at open so that its address can go into
 * the subscriber's locator, and a receive thread started when the framework first
 * connects it to a publisher over udp (a subscriber that only ever gets shm costs a
 * socket, no thread). The thread reads datagrams in batches (recvmmsg), drops those of
 * other topics from the header alone, feeds the rest to reassembly and delivers finished
 * samples; losses are reported to the framework as MC_DROP_LOST.
 */
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

    /* receive thread only */
    mc_udp_rsm rsm;
    uint64_t lost_reported;
    uint64_t foreign_topic;
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

static int bind_socket(mc_plugin_sub *sub)
{
    mc_plugin *p = sub->plugin;
    sub->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sub->fd < 0)
        return fail_errno(p, sub->topic, "cannot create a UDP socket");
    mc_udp_data_buffer(p, sub->fd, true);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = p->data.address};
    socklen_t len = sizeof(sa);
    if (bind(sub->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return fail_errno(p, sub->topic, "cannot bind the data socket");
    if (getsockname(sub->fd, (struct sockaddr *)&sub->addr, &len) != 0)
        return fail_errno(p, sub->topic, "getsockname");
    return 0;
}

static void sub_free(mc_plugin_sub *sub)
{
    if (sub->fd >= 0)
        close(sub->fd);
    if (sub->wake_fd >= 0)
        close(sub->wake_fd);
    mc_udp_rsm_free(&sub->rsm);
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
    sub->topic_id = mc_udp_data_topic_id(info->topic);
    snprintf(sub->topic, sizeof(sub->topic), "%s", info->topic);
    atomic_init(&sub->stopping, false);
    sub->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = sub->wake_fd < 0 ? fail_errno(p, info->topic, "eventfd") : bind_socket(sub);
    if (rc == 0)
        rc = mc_udp_rsm_init(&sub->rsm, p->data.cfg.reassembly_memory,
                             p->data.cfg.reassembly_timeout_ms * 1000000);
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
                           "%llu evicted, %llu refused, %llu never seen), %llu duplicate and "
                           "%llu stale fragments, %llu of other topics, %llu malformed",
                           sub->topic, (unsigned long long)s->delivered,
                           (unsigned long long)s->lost, (unsigned long long)s->timed_out,
                           (unsigned long long)s->evicted, (unsigned long long)s->refused,
                           (unsigned long long)s->gaps, (unsigned long long)s->duplicates,
                           (unsigned long long)s->stale, (unsigned long long)sub->foreign_topic,
                           (unsigned long long)malformed);
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

static void deliver(void *user, const mc_udp_data_header *h, const void *data)
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

static void report_losses(mc_plugin_sub *sub)
{
    uint64_t lost = sub->rsm.stats.lost;
    if (lost == sub->lost_reported)
        return;
    sub->plugin->host->dropped(sub->plugin->host->ctx, sub->cookie, MC_DROP_LOST,
                               lost - sub->lost_reported);
    sub->lost_reported = lost;
}

static void warn_malformed(mc_plugin_sub *sub, mc_udp_data_status st)
{
    if (sub->malformed[st]++ > 0)
        return;
    sub->plugin->host->log(sub->plugin->host->ctx, MC_LOG_WARN,
                           "topic '%s': udp datagram ignored: %s (said once per kind)", sub->topic,
                           mc_udp_data_status_name(st));
}

static void handle_datagram(mc_plugin_sub *sub, const uint8_t *buf, size_t len, bool cut,
                            int64_t now)
{
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
    mc_udp_rsm_add(&sub->rsm, &h, payload, payload_len, now, deliver, sub);
}

/* Reads what is queued, a batch at a time; returns false when the socket failed. */
static bool drain(mc_plugin_sub *sub)
{
    for (int rounds = 0; rounds < 64; rounds++) {
        for (unsigned i = 0; i < RECV_BATCH; i++) {
            sub->iov[i] = (struct iovec){.iov_base = sub->slots + (size_t)i * RECV_SLOT,
                                         .iov_len = RECV_SLOT};
            sub->msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &sub->iov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(sub->fd, sub->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        int64_t now = sub->plugin->host->now_ns();
        for (int i = 0; i < n; i++)
            handle_datagram(sub, sub->iov[i].iov_base, sub->msgs[i].msg_len,
                            (sub->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, now);
        report_losses(sub);
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
        if (rc > 0 && (fds[0].revents & POLLIN) && !drain(sub)) {
            host->log(host->ctx, MC_LOG_ERROR, "topic '%s': udp data socket failed: %s", sub->topic,
                      strerror(errno));
            break;
        }
        next_due = mc_udp_rsm_expire(&sub->rsm, host->now_ns());
        report_losses(sub);
    }
    return NULL;
}

/* The first publisher connected over udp starts the thread. */
int mc_udp_sub_connect(mc_plugin_sub *sub, const mc_peer *pub)
{
    (void)pub;
    if (sub->thread_started)
        return 0;
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
