/*
 * The registration socket. Every context of every process binds the same port with
 * SO_REUSEADDR: the kernel hands each broadcast or multicast datagram to every socket
 * bound to its address and port, which is what lets any number of processes meet.
 *
 * local mode: broadcast to 127.255.255.255, the loopback interface's broadcast address.
 *   The socket is bound to that address, not to INADDR_ANY, so it receives only datagrams
 *   sent to it; the kernel drops packets for 127/8 that arrive on another interface, so
 *   nothing from outside the host (or its network namespace) gets in. Unicast to
 *   127.0.0.1 or broadcasts of other interfaces on the same port are not received either.
 *   No multicast route is needed, and it works in a namespace that has only `lo`.
 *   SO_BINDTODEVICE would say the same but needs CAP_NET_RAW.
 * network mode: multicast to `group`. The socket is bound to the group address, so it
 *   receives that group only (not unicast, not local-mode broadcasts on the same port),
 *   and IP_MULTICAST_ALL = 0 keeps groups joined by other sockets of the process out.
 *   IP_MULTICAST_LOOP stays on: processes of this host must hear each other too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "udp.h"

#define LOOPBACK_BROADCAST "127.255.255.255"
#define RECEIVE_BUFFER     (4 << 20) /* the kernel caps it at net.core.rmem_max */

static int fail(mc_plugin *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sets the host error, prefixed with the section and port every failure here concerns. */
static int fail(mc_plugin *p, int code, const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    p->host->set_error(p->host->ctx, "[udp] port %lld: %s", (long long)p->cfg.port, detail);
    return code;
}

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

static int bind_to(mc_plugin *p, struct in_addr addr)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)p->cfg.port), .sin_addr = addr};
    if (bind(p->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return 0;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr, text, sizeof(text));
    return fail(p, MC_ETRANSPORT, "bind to %s failed: %s", text, strerror(errno));
}

static void set_destination(mc_plugin *p, struct in_addr addr)
{
    p->dest = (struct sockaddr_in){
        .sin_family = AF_INET, .sin_port = htons((uint16_t)p->cfg.port), .sin_addr = addr};
}

static int open_local(mc_plugin *p)
{
    struct in_addr broadcast;
    inet_pton(AF_INET, LOOPBACK_BROADCAST, &broadcast);
    if (set_int(p->fd, SOL_SOCKET, SO_BROADCAST, 1) != 0)
        return fail(p, MC_ETRANSPORT, "SO_BROADCAST failed: %s", strerror(errno));
    int rc = bind_to(p, broadcast);
    if (rc == 0)
        set_destination(p, broadcast);
    return rc;
}

/* [udp] interface: "" (the kernel's choice), an IPv4 address or an interface name. */
static int parse_interface(mc_plugin *p, struct ip_mreqn *mreq)
{
    const char *name = p->cfg.interface;
    if (name == NULL || name[0] == '\0')
        return 0;
    if (inet_pton(AF_INET, name, &mreq->imr_address) == 1)
        return 0;
    unsigned index = if_nametoindex(name);
    if (index == 0) {
        p->host->set_error(p->host->ctx,
                           "[udp] interface '%s': neither an IPv4 address nor the name of an "
                           "interface of this host",
                           name);
        return MC_ECONFIG;
    }
    mreq->imr_ifindex = (int)index;
    return 0;
}

static int parse_group(mc_plugin *p, struct in_addr *group)
{
    if (inet_pton(AF_INET, p->cfg.group, group) == 1 && IN_MULTICAST(ntohl(group->s_addr)))
        return 0;
    p->host->set_error(p->host->ctx,
                       "[udp] group '%s': not an IPv4 multicast address (224.0.0.0 to "
                       "239.255.255.255; 239.255.x.x is for local use)",
                       p->cfg.group);
    return MC_ECONFIG;
}

static int join_group(mc_plugin *p, const struct ip_mreqn *mreq)
{
    if (setsockopt(p->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq, sizeof(*mreq)) == 0)
        return 0;
    int err = errno;
    const char *where = p->cfg.interface[0] ? p->cfg.interface : "the default interface";
    p->host->set_error(p->host->ctx, "[udp] group %s port %lld: joining on %s failed: %s%s",
                       p->cfg.group, (long long)p->cfg.port, where, strerror(err),
                       err == ENODEV ? " (no route for multicast: add one, for example 'ip "
                                       "route add 224.0.0.0/4 dev eth0', or set [udp] interface)"
                                     : "");
    return MC_ETRANSPORT;
}

static int sending_options(mc_plugin *p, const struct ip_mreqn *mreq)
{
    bool chosen = mreq->imr_ifindex != 0 || mreq->imr_address.s_addr != INADDR_ANY;
    if (chosen && setsockopt(p->fd, IPPROTO_IP, IP_MULTICAST_IF, mreq, sizeof(*mreq)) != 0)
        return fail(p, MC_ETRANSPORT, "IP_MULTICAST_IF for [udp] interface failed: %s",
                    strerror(errno));
    if (set_int(p->fd, IPPROTO_IP, IP_MULTICAST_TTL, (int)p->cfg.ttl) != 0 ||
        set_int(p->fd, IPPROTO_IP, IP_MULTICAST_LOOP, 1) != 0)
        return fail(p, MC_ETRANSPORT, "multicast TTL or loop failed: %s", strerror(errno));
    return 0;
}

static int open_network(mc_plugin *p)
{
    struct in_addr group;
    struct ip_mreqn mreq = {0};
    int rc = parse_group(p, &group);
    if (rc == 0)
        rc = parse_interface(p, &mreq);
    if (rc != 0)
        return rc;
    mreq.imr_multiaddr = group;
    /* Without this, a socket bound to the group still gets every group the process joined
     * on other sockets with the same port. */
    if (set_int(p->fd, IPPROTO_IP, IP_MULTICAST_ALL, 0) != 0)
        return fail(p, MC_ETRANSPORT, "IP_MULTICAST_ALL failed: %s", strerror(errno));
    if ((rc = bind_to(p, group)) != 0 || (rc = join_group(p, &mreq)) != 0 ||
        (rc = sending_options(p, &mreq)) != 0)
        return rc;
    set_destination(p, group);
    return 0;
}

int mc_udp_socket_open(mc_plugin *p)
{
    p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (p->fd < 0)
        return fail(p, MC_ETRANSPORT, "cannot create a UDP socket: %s", strerror(errno));
    if (set_int(p->fd, SOL_SOCKET, SO_REUSEADDR, 1) != 0) {
        int rc = fail(p, MC_ETRANSPORT, "SO_REUSEADDR failed: %s", strerror(errno));
        mc_udp_socket_close(p);
        return rc;
    }
    /* Best effort: a larger queue absorbs bursts of full announces; the kernel counts what
     * it still drops (SO_RXQ_OVFL) and the protocol recovers it. */
    set_int(p->fd, SOL_SOCKET, SO_RCVBUF, RECEIVE_BUFFER);
    set_int(p->fd, SOL_SOCKET, SO_RXQ_OVFL, 1);
    int rc = p->cfg.mode == MC_UDP_MODE_NETWORK ? open_network(p) : open_local(p);
    if (rc != 0)
        mc_udp_socket_close(p);
    return rc;
}

void mc_udp_socket_close(mc_plugin *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

int mc_udp_socket_send(mc_plugin *p, const void *buf, size_t size, bool wait)
{
    uint8_t tag[MC_UDP_AUTH_TAG_SIZE];
    struct iovec iov[2] = {{.iov_base = (void *)buf, .iov_len = size},
                           {.iov_base = tag, .iov_len = sizeof(tag)}};
    if (p->auth.on)
        mc_udp_auth_tag(&p->auth, buf, size, NULL, 0, tag);
    struct msghdr msg = {.msg_name = &p->dest,
                         .msg_namelen = sizeof(p->dest),
                         .msg_iov = iov,
                         .msg_iovlen = p->auth.on ? 2 : 1};
    for (;;) {
        ssize_t n = sendmsg(p->fd, &msg, wait ? 0 : MSG_DONTWAIT);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return errno;
    }
}

static void read_drops(struct msghdr *msg, uint32_t *drops)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
            c->cmsg_len >= CMSG_LEN(sizeof(uint32_t)))
            memcpy(drops, CMSG_DATA(c), sizeof(uint32_t));
}

int mc_udp_socket_recv(mc_plugin *p, void *buf, size_t size, size_t *length, uint32_t *source,
                       uint32_t *drops)
{
    struct sockaddr_in from = {0};
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    union {
        char bytes[CMSG_SPACE(sizeof(uint32_t))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_name = &from,
                         .msg_namelen = sizeof(from),
                         .msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.bytes,
                         .msg_controllen = sizeof(control.bytes)};
    ssize_t n;
    do
        n = recvmsg(p->fd, &msg, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? MC_UDP_RECV_NONE : MC_UDP_RECV_ERROR;
    read_drops(&msg, drops);
    *source = ntohl(from.sin_addr.s_addr);
    *length = (size_t)n;
    /* Cannot happen with a 64 KiB buffer; a cut datagram must not be decoded as a prefix. */
    return (msg.msg_flags & MSG_TRUNC) ? MC_UDP_RECV_TRUNCATED : MC_UDP_RECV_DATA;
}
