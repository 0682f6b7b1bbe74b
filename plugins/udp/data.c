/*
 * The udp data role's shared parts: its [udp] keys, the address subscribers bind, the
 * topics' multicast groups, the locator format and socket buffer sizing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data.h"
#include "data_wire.h"
#include "udp.h"

static int read_keys(mc_plugin *p)
{
    const mc_host *h = p->host;
    udp_data_config *c = &p->data.cfg;
    const char *failed = "datagram_size";
    int rc = h->config_size(h->ctx, failed, &c->datagram_size);
    if (rc == 0 &&
        (rc = h->config_size(h->ctx, failed = "max_message_size", &c->max_message_size)) == 0 &&
        (rc = h->config_size(h->ctx, failed = "reassembly_memory", &c->reassembly_memory)) == 0 &&
        (rc = h->config_duration_ms(h->ctx, failed = "reassembly_timeout",
                                    &c->reassembly_timeout_ms)) == 0 &&
        (rc = h->config_size(h->ctx, failed = "send_rate", &c->send_rate)) == 0 &&
        (rc = h->config_size(h->ctx, failed = "rcvbuf", &c->rcvbuf)) == 0 &&
        (rc = h->config_size(h->ctx, failed = "sndbuf", &c->sndbuf)) == 0 &&
        (rc = h->config_string(h->ctx, failed = "data_groups", &c->groups)) == 0 &&
        (rc = h->config_int(h->ctx, failed = "data_port", &c->port)) == 0)
        rc = h->config_int(h->ctx, failed = "test_drop_every", &c->test_drop_every);
    if (rc != 0)
        h->set_error(h->ctx, "[udp] %s: cannot read the key", failed);
    return rc;
}

/* An interface given by name: its first IPv4 address. */
static int interface_address(mc_plugin *p, const char *name, struct in_addr *out)
{
    struct ifreq req = {0};
    snprintf(req.ifr_name, sizeof(req.ifr_name), "%s", name);
    req.ifr_addr.sa_family = AF_INET;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = fd >= 0 ? ioctl(fd, SIOCGIFADDR, &req) : -1;
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        p->host->set_error(p->host->ctx,
                           "[udp] interface '%s': no IPv4 address to receive data on: %s", name,
                           strerror(err));
        return MC_ECONFIG;
    }
    memcpy(out, &((struct sockaddr_in *)&req.ifr_addr)->sin_addr, sizeof(*out));
    return 0;
}

/* No interface configured: the source address the kernel would use towards the
 * registration group, which is where the other hosts are. */
static int route_address(mc_plugin *p, struct in_addr *out)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->cfg.port)};
    struct sockaddr_in me = {0};
    socklen_t len = sizeof(me);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int ok = fd >= 0 && inet_pton(AF_INET, p->cfg.group, &to.sin_addr) == 1 &&
             connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0 &&
             getsockname(fd, (struct sockaddr *)&me, &len) == 0 && me.sin_addr.s_addr != 0;
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (!ok) {
        p->host->set_error(p->host->ctx,
                           "[udp] no address to receive data on: no route to group %s (%s); "
                           "set [udp] interface",
                           p->cfg.group, strerror(err));
        return MC_ECONFIG;
    }
    *out = me.sin_addr;
    return 0;
}

static int find_address(mc_plugin *p)
{
    struct in_addr *out = &p->data.address;
    if (p->cfg.mode != MC_UDP_MODE_NETWORK) {
        out->s_addr = htonl(INADDR_LOOPBACK);
        return 0;
    }
    const char *name = p->cfg.interface;
    if (name == NULL || name[0] == '\0')
        return route_address(p, out);
    if (inet_pton(AF_INET, name, out) == 1)
        return 0;
    return interface_address(p, name, out);
}

static int bad_groups(mc_plugin *p, const char *why)
{
    p->host->set_error(p->host->ctx,
                       "[udp] data_groups '%s': %s; expected A.B.C.D/N within 224.0.0.0/4 "
                       "(for example 239.255.1.0/24), or none",
                       p->data.cfg.groups, why);
    return MC_ECONFIG;
}

/* data_groups = A.B.C.D/N: the 2^(32-N) groups from the network address A.B.C.D. */
static int parse_groups(mc_plugin *p)
{
    const char *text = p->data.cfg.groups;
    if (p->cfg.mode != MC_UDP_MODE_NETWORK || text == NULL || strcmp(text, "none") == 0)
        return 0;
    char address[INET_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t length = slash ? (size_t)(slash - text) : 0;
    if (slash == NULL || length >= sizeof(address))
        return bad_groups(p, "no /N");
    memcpy(address, text, length);
    address[length] = '\0';
    struct in_addr base;
    char *end = NULL;
    long bits = strtol(slash + 1, &end, 10);
    if (inet_pton(AF_INET, address, &base) != 1)
        return bad_groups(p, "not an IPv4 address");
    if (end == slash + 1 || *end != '\0' || bits < 4 || bits > 32)
        return bad_groups(p, "N must be 4 to 32");
    uint32_t first = ntohl(base.s_addr);
    uint32_t count = bits == 32 ? 1 : 1u << (32 - bits);
    if ((first & 0xf0000000u) != 0xe0000000u)
        return bad_groups(p, "not a multicast address");
    if ((first & (count - 1)) != 0)
        return bad_groups(p, "host bits are set below /N");
    p->data.group_base = first;
    p->data.group_count = count;
    int64_t port = p->data.cfg.port ? p->data.cfg.port : p->cfg.port + 1;
    if (port > 65535 || port == p->cfg.port) {
        p->host->set_error(p->host->ctx,
                           "[udp] data_port %lld: must differ from port %lld and be at most "
                           "65535 (0 takes port + 1)",
                           (long long)port, (long long)p->cfg.port);
        return MC_ECONFIG;
    }
    p->data.group_port = (uint16_t)port;
    return 0;
}

bool mc_udp_data_multicast(const mc_plugin *p)
{
    return p->data.group_count > 0;
}

struct in_addr mc_udp_data_group_of(const mc_plugin *p, uint64_t topic_id)
{
    uint32_t group = p->data.group_base + (uint32_t)(topic_id % p->data.group_count);
    return (struct in_addr){.s_addr = htonl(group)};
}

int mc_udp_data_init(mc_plugin *p)
{
    atomic_init(&p->data.warned_rcvbuf, false);
    atomic_init(&p->data.warned_sndbuf, false);
    int rc = read_keys(p);
    if (rc != 0)
        return rc;
    if (p->data.cfg.datagram_size == 0) /* IPv4 and UDP headers take 28 bytes of the MTU */
        p->data.cfg.datagram_size =
            p->cfg.mode == MC_UDP_MODE_NETWORK ? 1500 - 28 : MC_UDP_DATA_DATAGRAM_MAX;
    /* the tag (auth_key_file) is part of the datagram: fragments are that much smaller */
    size_t smallest =
        MC_UDP_DATA_HEADER_SIZE + MC_UDP_DATA_FRAGMENT_MIN + mc_udp_auth_trailer(&p->auth);
    if (p->data.cfg.datagram_size < smallest) {
        p->host->set_error(p->host->ctx,
                           "[udp] datagram_size %llu: 0 (sized to the path) or at least %zu "
                           "expected%s",
                           (unsigned long long)p->data.cfg.datagram_size, smallest,
                           p->auth.on ? " (with auth_key_file's 16-byte tag)" : "");
        return MC_ECONFIG;
    }
    rc = parse_groups(p);
    return rc != 0 ? rc : find_address(p);
}

void mc_udp_data_fini(mc_plugin *p)
{
    (void)p;
}

void mc_udp_data_buffer(mc_plugin *p, int fd, bool receive)
{
    uint64_t want64 = receive ? p->data.cfg.rcvbuf : p->data.cfg.sndbuf;
    int want = want64 > (uint64_t)(INT32_MAX / 2) ? INT32_MAX / 2 : (int)want64;
    int force = receive ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
    int plain = receive ? SO_RCVBUF : SO_SNDBUF;
    /* FORCE passes net.core.[rw]mem_max with CAP_NET_ADMIN; without it, the plain option
     * is capped there. */
    if (setsockopt(fd, SOL_SOCKET, force, &want, sizeof(want)) != 0)
        setsockopt(fd, SOL_SOCKET, plain, &want, sizeof(want));
    int granted = 0;
    socklen_t len = sizeof(granted);
    getsockopt(fd, SOL_SOCKET, plain, &granted, &len);
    granted /= 2; /* the kernel reports twice what it counts as payload room */
    atomic_bool *warned = receive ? &p->data.warned_rcvbuf : &p->data.warned_sndbuf;
    if (granted < want && !atomic_exchange(warned, true))
        p->host->log(p->host->ctx, MC_LOG_WARN,
                     "[udp] %s = %d bytes asked, the kernel granted %d (raise "
                     "net.core.%s, or run with CAP_NET_ADMIN); large messages may be lost",
                     receive ? "rcvbuf" : "sndbuf", want, granted,
                     receive ? "rmem_max" : "wmem_max");
}

int mc_udp_locator_encode(const struct sockaddr_in *addr, void *buf, size_t size)
{
    if (size < MC_UDP_LOCATOR_SIZE)
        return MC_EINVAL;
    uint8_t *b = buf;
    b[0] = MC_UDP_LOCATOR_VERSION;
    b[1] = 0;
    memcpy(b + 2, &addr->sin_port, 2);
    memcpy(b + 4, &addr->sin_addr.s_addr, 4);
    return MC_UDP_LOCATOR_SIZE;
}

int mc_udp_locator_decode(mc_plugin *p, const mc_peer *peer, struct sockaddr_in *addr)
{
    const uint8_t *b = peer->locator;
    if (b == NULL || peer->locator_size != MC_UDP_LOCATOR_SIZE || b[0] != MC_UDP_LOCATOR_VERSION) {
        p->host->set_error(p->host->ctx,
                           "topic '%s': subscriber pid %d gave a udp locator of %zu bytes, "
                           "expected %d of version %d",
                           peer->topic, (int)peer->pid, peer->locator_size, MC_UDP_LOCATOR_SIZE,
                           MC_UDP_LOCATOR_VERSION);
        return MC_EINVAL;
    }
    *addr = (struct sockaddr_in){.sin_family = AF_INET};
    memcpy(&addr->sin_port, b + 2, 2);
    memcpy(&addr->sin_addr.s_addr, b + 4, 4);
    if (addr->sin_port == 0 || addr->sin_addr.s_addr == 0) {
        p->host->set_error(p->host->ctx,
                           "topic '%s': subscriber pid %d gave a udp locator "
                           "without address or port",
                           peer->topic, (int)peer->pid);
        return MC_EINVAL;
    }
    return 0;
}
