/*
 * udp: registration over UDP (doc/registration.md). Contexts tell each other which
 * endpoints they have, on the loopback interface (mode = local, the default: every
 * process of this host, no multicast route needed) or on a multicast group (mode =
 * network: other hosts too). Announcements go out the moment an endpoint appears or goes,
 * a new context asks everyone for their lists, and a heartbeat lets peers notice what
 * they missed and who died.
 *
 * This file: the descriptor, the [udp] configuration and the instance. The protocol is in
 * registration.c and peers.c, the socket in socket.c, the datagram format in wire.c.
 * The data role (samples to other processes and hosts, doc/udp.md) lives in data*.c and
 * reassembly.c; this file only lists its keys and routes its ops there.
 */
#include <stdlib.h>
#include <string.h>

#include "udp.h"

static const char *const mode_names[] = {"local", "network", NULL};

static const mc_config_key udp_config_schema[] = {
    {.name = "mode",
     .type = MC_CFG_ENUM,
     .default_value = "local",
     .doc = "local: processes of this host meet through broadcast on the loopback interface "
            "(needs no multicast route); network: processes of every host meet through "
            "multicast on `group`",
     .enum_values = mode_names},
    {.name = "port",
     .type = MC_CFG_INT,
     .default_value = "14000",
     .doc = "UDP port of registration datagrams: only processes using the same port meet",
     .min = 1,
     .max = 65535},
    {.name = "group",
     .type = MC_CFG_STRING,
     .default_value = "239.255.0.1",
     .doc = "network mode: IPv4 multicast group of registration datagrams"},
    {.name = "ttl",
     .type = MC_CFG_INT,
     .default_value = "1",
     .doc = "network mode: multicast time-to-live (1: this subnet only; 0: this host only)",
     .min = 0,
     .max = 255},
    {.name = "interface",
     .type = MC_CFG_STRING,
     .default_value = "",
     .doc = "network mode: IPv4 address or name of the interface to multicast on; empty "
            "leaves it to the kernel's route for the group"},
    {.name = "heartbeat",
     .type = MC_CFG_DURATION,
     .default_value = "1s",
     .doc = "how often a process tells the others that it is alive and how many endpoints it "
            "has (others then fetch what they missed)",
     .min = 10,
     .max = 3600000},
    {.name = "expiry",
     .type = MC_CFG_DURATION,
     .default_value = "3s",
     .doc = "a process not heard from for this long is taken as gone, with all its endpoints; "
            "must be longer than heartbeat",
     .min = 20,
     .max = 36000000},
    {.name = "max_datagram",
     .type = MC_CFG_SIZE,
     .default_value = "1400",
     .doc = "largest registration datagram: longer lists are split (one endpoint larger than "
            "this is sent alone); keep it under the path MTU in network mode",
     .min = 512,
     .max = 65000},
    {.name = "auth_key_file",
     .type = MC_CFG_STRING,
     .default_value = "",
     .doc = "file of a shared secret (at least 32 bytes, owned by this user, mode 0600): "
            "every registration and data datagram then carries a 16-byte tag made with it, "
            "and datagrams without a valid tag are dropped and counted; empty: no tags"},
    {.name = "datagram_size",
     .type = MC_CFG_SIZE,
     .default_value = "0",
     .doc = "data: largest data datagram (UDP payload: an 80-byte header, the fragment, and a "
            "16-byte tag with auth_key_file), "
            "at least 336; 0 sizes it to the path without IP fragmentation: 1472 in network "
            "mode (a 1500-byte MTU), 65507 in local mode (loopback's 64 KiB MTU)",
     .min = 0,
     .max = 65507},
    {.name = "max_message_size",
     .type = MC_CFG_SIZE,
     .default_value = "64M",
     .doc = "data: largest sample a publisher sends and a subscriber accepts",
     .min = 1,
     .max = 4294967295LL},
    {.name = "reassembly_memory",
     .type = MC_CFG_SIZE,
     .default_value = "256M",
     .doc = "data: bytes one subscriber may hold in samples not yet complete; the oldest "
            "are given up (counted lost) to make room for newer ones",
     .min = 4096,
     .max = 68719476736LL},
    {.name = "reassembly_timeout",
     .type = MC_CFG_DURATION,
     .default_value = "1s",
     .doc = "data: a sample still missing fragments that got none for this long is "
            "counted lost",
     .min = 1,
     .max = 3600000},
    {.name = "send_rate",
     .type = MC_CFG_SIZE,
     .default_value = "0",
     .doc = "data: bytes per second one publisher sends at most (pacing, so a burst does not "
            "overrun receivers' socket buffers); 0 is unlimited"},
    {.name = "rcvbuf",
     .type = MC_CFG_SIZE,
     .default_value = "64M",
     .doc = "data: receive socket buffer of each subscriber (SO_RCVBUFFORCE when allowed, "
            "else capped at net.core.rmem_max with a warning)",
     .min = 4096,
     .max = 1073741823},
    {.name = "sndbuf",
     .type = MC_CFG_SIZE,
     .default_value = "1M",
     .doc = "data: send socket buffer of each publisher (capped at net.core.wmem_max "
            "without CAP_NET_ADMIN, with a warning)",
     .min = 4096,
     .max = 1073741823},
    {
        .name = "data_groups",
        .type = MC_CFG_STRING,
        .default_value = "239.255.1.0/24",
        .doc = "data, network mode: the IPv4 multicast groups topics are mapped to (A.B.C.D/N, "
               "within 224.0.0.0/4): each topic's datagrams go once to its group, whatever the "
               "number of subscribers; \"none\" sends to every subscriber's own address instead",
    },
    {.name = "data_port",
     .type = MC_CFG_INT,
     .default_value = "0",
     .doc = "data, network mode with data_groups: the UDP port of every data group; 0 is "
            "`port` + 1",
     .min = 0,
     .max = 65535},
    {.name = "test_drop_every",
     .type = MC_CFG_INT,
     .default_value = "0",
     .doc = "FOR TESTS ONLY: a publisher skips every Nth data datagram it would send, to "
            "exercise loss without netem; 0 sends everything",
     .min = 0,
     .max = 1000000000},
    {.name = NULL},
};

static int read_config(mc_plugin *p)
{
    const mc_host *h = p->host;
    udp_config *c = &p->cfg;
    const char *failed = "mode";
    int rc = h->config_enum(h->ctx, "mode", &c->mode);
    if (rc == 0 && (rc = h->config_int(h->ctx, failed = "port", &c->port)) == 0 &&
        (rc = h->config_string(h->ctx, failed = "group", &c->group)) == 0 &&
        (rc = h->config_int(h->ctx, failed = "ttl", &c->ttl)) == 0 &&
        (rc = h->config_string(h->ctx, failed = "interface", &c->interface)) == 0 &&
        (rc = h->config_duration_ms(h->ctx, failed = "heartbeat", &c->heartbeat_ms)) == 0 &&
        (rc = h->config_duration_ms(h->ctx, failed = "expiry", &c->expiry_ms)) == 0 &&
        (rc = h->config_size(h->ctx, failed = "max_datagram", &c->max_datagram)) == 0)
        rc = h->config_string(h->ctx, failed = "auth_key_file", &c->auth_key_file);
    if (rc != 0)
        h->set_error(h->ctx, "[udp] %s: cannot read the key", failed);
    return rc;
}

static int check_config(mc_plugin *p)
{
    const udp_config *c = &p->cfg;
    if (c->expiry_ms <= c->heartbeat_ms) {
        p->host->set_error(p->host->ctx,
                           "[udp] expiry %lld ms must be longer than heartbeat %lld ms (a "
                           "few heartbeats, so that one lost datagram does not expire a "
                           "process)",
                           (long long)c->expiry_ms, (long long)c->heartbeat_ms);
        return MC_ECONFIG;
    }
    return 0;
}

/* The registration services arrived in ABI 1.1 of the host table; the domain is the
 * only string sent, and it must fit the wire's rules. */
static int check_host(const mc_host *host)
{
    if (!MC_HAS(host, mc_host, remote) || !MC_HAS(host, mc_host, local_endpoints) ||
        host->struct_size < offsetof(mc_host, pid) + sizeof(host->pid)) {
        host->set_error(host->ctx,
                        "the framework's host table (%u bytes) lacks the "
                        "registration services: this memcast is too old for udp",
                        (unsigned)host->struct_size);
        return MC_EABI;
    }
    size_t len = host->domain != NULL ? strlen(host->domain) : 0;
    if (len == 0 || len > MC_UDP_WIRE_DOMAIN_MAX) {
        host->set_error(host->ctx, "domain '%s' cannot be sent: 1 to %d characters expected",
                        host->domain != NULL ? host->domain : "(null)", MC_UDP_WIRE_DOMAIN_MAX);
        return MC_EINVAL;
    }
    return 0;
}

/* Before any socket: a context that was asked to authenticate never sends untagged. */
static int load_auth(mc_plugin *p)
{
    char why[600];
    int rc = mc_udp_auth_load(&p->auth, p->cfg.auth_key_file, p->host->domain, why, sizeof(why));
    if (rc != 0)
        p->host->set_error(p->host->ctx, "[udp] auth_key_file: %s", why);
    else if (p->auth.on)
        p->host->log(p->host->ctx, MC_LOG_INFO,
                     "datagrams are authenticated with the key of '%s' (domain '%s')",
                     p->cfg.auth_key_file, p->host->domain);
    return rc;
}

static void instance_free(mc_plugin *p)
{
    mc_udp_data_fini(p);
    mc_udp_socket_close(p);
    mc_udp_peers_free(p);
    mc_udp_idmap_free(&p->local);
    mc_udp_auth_clear(&p->auth);
    pthread_mutex_destroy(&p->lock);
    free(p->send_buf);
    free(p);
}

static int udp_init(const mc_host *host, mc_plugin **out)
{
    int rc = check_host(host);
    if (rc != 0)
        return rc;
    mc_plugin *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return MC_ENOMEM;
    p->host = host;
    p->fd = -1;
    p->wake_fd = -1;
    atomic_init(&p->stopping, false);
    pthread_mutex_init(&p->lock, NULL);
    p->send_buf = malloc(MC_UDP_WIRE_DATAGRAM_MAX);
    rc = p->send_buf == NULL ? MC_ENOMEM : read_config(p);
    if (rc == 0)
        rc = check_config(p);
    if (rc == 0)
        rc = load_auth(p);
    if (rc == 0)
        rc = mc_udp_socket_open(p);
    if (rc == 0) /* after the socket: its errors name a bad group or interface best */
        rc = mc_udp_data_init(p);
    if (rc == 0)
        rc = mc_udp_registration_start(p);
    if (rc != 0) {
        mc_udp_registration_stop(p);
        instance_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

static void udp_fini(mc_plugin *p)
{
    mc_udp_registration_stop(p);
    mc_udp_log_stats(p);
    instance_free(p);
}

static int udp_limits(mc_plugin *p, mc_plugin_limits *out)
{
    out->max_message_size = p->data.cfg.max_message_size;
    return 0;
}

static int udp_reg_announce(mc_plugin *p, const mc_registration *reg)
{
    return mc_udp_announce(p, reg);
}

static void udp_reg_withdraw(mc_plugin *p, const mc_registration *reg)
{
    mc_udp_withdraw(p, reg);
}

static void udp_reg_refresh(mc_plugin *p)
{
    mc_udp_send_request(p, 0, 0);
}

static const mc_plugin_ops udp_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = udp_init,
    .fini = udp_fini,
    .limits = udp_limits,
    .pub_open = mc_udp_pub_open,
    .pub_close = mc_udp_pub_close,
    .sub_open = mc_udp_sub_open,
    .sub_close = mc_udp_sub_close,
    .pub_connect = mc_udp_pub_connect,
    .pub_disconnect = mc_udp_pub_disconnect,
    .send = mc_udp_send,
    .sub_connect = mc_udp_sub_connect,
    .sub_disconnect = mc_udp_sub_disconnect,
    .sub_locator = mc_udp_sub_locator,
    .reg_announce = udp_reg_announce,
    .reg_withdraw = udp_reg_withdraw,
    .reg_refresh = udp_reg_refresh,
};

static const mc_plugin_descriptor udp_descriptor = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "udp",
    .version = "0.1.0",
    .description = "registration over UDP (loopback broadcast or multicast) and samples to "
                   "other processes and hosts in MTU-sized datagrams",
    .roles = MC_ROLE_REGISTRATION | MC_ROLE_DATA,
    .scopes = MC_SCOPE_HOST | MC_SCOPE_NETWORK,
    .caps = MC_CAP_MULTI_PROCESS | MC_CAP_THREAD_SAFE,
    .config = udp_config_schema,
    .ops = &udp_ops,
};

MC_PLUGIN_DEFINE(udp_descriptor)
