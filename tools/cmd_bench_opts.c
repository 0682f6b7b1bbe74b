/*
 * memcast bench floor/latency/throughput: option parsing, the environment that gives each
 * run its own transports and domain, and the floor subcommand's report.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "cmd_bench_common.h"

static bool parse_size(const char *text, size_t *out)
{
    unsigned long long v = 0;
    if (!cli_parse_size(text, &v) || v < 16 || v > (1ull << 30))
        return false;
    *out = (size_t)v;
    return true;
}

static bool parse_size_list(const char *text, bench_opts *o)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", text);
    o->nsizes = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        if (o->nsizes == BENCH_MAX_SIZES || !parse_size(t, &o->sizes[o->nsizes]))
            return false;
        o->nsizes++;
    }
    return o->nsizes > 0;
}

static bool parse_long(const char *text, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_cpus(const char *text, int cpus[2])
{
    long a, b;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", text);
    char *comma = strchr(buf, ',');
    if (comma == NULL)
        return false;
    *comma = '\0';
    if (!parse_long(buf, 0, 4095, &a) || !parse_long(comma + 1, 0, 4095, &b))
        return false;
    cpus[0] = (int)a;
    cpus[1] = (int)b;
    return true;
}

/* A name that stays inside BENCH_NETNS_DIR and goes into JSON as it is. */
static bool valid_netns_name(const char *name, size_t len)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._-";
    if (len == 0 || len >= BENCH_NETNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (strchr(allowed, name[i]) == NULL)
            return false;
    return !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.');
}

static bool parse_netns(const char *text, char names[2][BENCH_NETNS_NAME_MAX])
{
    const char *comma = strchr(text, ',');
    if (comma == NULL || strchr(comma + 1, ',') != NULL)
        return false;
    size_t pub_len = (size_t)(comma - text), sub_len = strlen(comma + 1);
    if (!valid_netns_name(text, pub_len) || !valid_netns_name(comma + 1, sub_len))
        return false;
    memcpy(names[BENCH_ROLE_PUB], text, pub_len);
    names[BENCH_ROLE_PUB][pub_len] = '\0';
    memcpy(names[BENCH_ROLE_SUB], comma + 1, sub_len + 1);
    return true;
}

static int usage_error(const char *what)
{
    fprintf(stderr, "memcast bench: %s\nTry 'memcast bench --help'.\n", what);
    return EXIT_USAGE;
}

/* Returns -1 when the options are fine, else the exit status to return. */
int mc_bench_parse(const cli_command *cmd, int argc, char **argv, bench_opts *o, const char **what)
{
    const char *size = NULL, *count = NULL, *warmup = NULL, *cpus = NULL, *wait = NULL,
               *subs = NULL, *netns = NULL, *rate = NULL;
    memset(o, 0, sizeof(*o));
    o->transport = "shm";
    o->warmup = -1;
    o->subscribers = 1;
    o->cpus[0] = 0;
    o->cpus[1] = 1;
    const cli_option opts[] = {{"--size", 's', NULL, &size},
                               {"--count", 'n', NULL, &count},
                               {"--warmup", 0, NULL, &warmup},
                               {"--cpus", 0, NULL, &cpus},
                               {"--wait", 0, NULL, &wait},
                               {"--subscribers", 0, NULL, &subs},
                               {"--rate", 0, NULL, &rate},
                               {"--transport", 't', NULL, &o->transport},
                               {"--netns", 0, NULL, &netns},
                               {"--zero-copy", 0, &o->zero_copy, NULL},
                               {"--fill-uncached", 0, &o->fill_uncached, NULL},
                               {"--reliable", 0, &o->reliable, NULL},
                               {"--json", 0, &o->json, NULL},
                               {"--no-floor", 0, &o->no_floor, NULL},
                               {"--test-corrupt", 0, &o->test_corrupt, NULL},
                               {"--config", 'c', NULL, &o->config_path}};
    size_t npos = 0;
    parse_result r =
        cli_parse_options(cmd, argc, argv, opts, sizeof(opts) / sizeof(opts[0]), what, 1, &npos);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    if (!parse_size_list(size ? size : "64,4K,1M,8M", o))
        return usage_error("--size wants a list like 64,4K,1M,8M (16 bytes to 1G each)");
    if (count && !parse_long(count, 1, 100000000, &o->count))
        return usage_error("--count wants 1..100000000");
    if (warmup && !parse_long(warmup, 0, 1000000, &o->warmup))
        return usage_error("--warmup wants 0..1000000");
    if (cpus && !parse_cpus(cpus, o->cpus))
        return usage_error("--cpus wants two CPU numbers, A,B");
    if (subs && !parse_long(subs, 1, BENCH_MAX_SUBSCRIBERS, &o->subscribers))
        return usage_error("--subscribers wants 1..8");
    if (rate && !parse_long(rate, 1, 10000000, &o->rate))
        return usage_error("--rate wants 1..10000000 messages per second");
    if (wait && strcmp(wait, "spin") != 0 && strcmp(wait, "block") != 0)
        return usage_error("--wait wants block or spin");
    o->spin = wait && strcmp(wait, "spin") == 0;
    if (strspn(o->transport, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(o->transport) ||
        o->transport[0] == '\0')
        return usage_error("--transport wants a plugin name such as shm");
    if (netns && !parse_netns(netns, o->netns))
        return usage_error("--netns wants two network namespace names, PUB,SUB, of letters, "
                           "digits, '.', '_' and '-' (as made by 'ip netns add NAME')");
    /* shm and inproc stop at the host (a network namespace counts as a host): only udp
     * reaches the other side, and listing another transport would measure udp under its
     * name. */
    if (netns && strcmp(o->transport, "udp") != 0)
        return usage_error("--netns needs --transport udp (the only transport that reaches "
                           "another network namespace)");
    return -1;
}

/* Environment overrides win over any -c FILE, and forked children inherit them: the data
 * transport asked for plus udp registration in local mode (network mode with --netns: local
 * mode never leaves a namespace's loopback), in a domain of this run only. The rest of
 * [udp] (group, port, interface, send_rate) comes from -c FILE or MEMCAST_UDP_* overrides
 * the caller set. */
void mc_bench_setenv(const bench_opts *o, const char *run_name)
{
    char plugins[128], domain[64], value[32];
    if (strcmp(o->transport, "udp") == 0)
        snprintf(plugins, sizeof(plugins), "udp");
    else
        snprintf(plugins, sizeof(plugins), "%s, udp", o->transport);
    snprintf(domain, sizeof(domain), "bench-%s-%d", run_name, (int)getpid());
    setenv("MEMCAST_FRAMEWORK_PLUGINS", plugins, 1);
    setenv("MEMCAST_FRAMEWORK_DOMAIN", domain, 1);
    setenv("MEMCAST_UDP_MODE", o->netns[BENCH_ROLE_PUB][0] != '\0' ? "network" : "local", 1);
    if (strcmp(o->transport, "shm") == 0) {
        setenv("MEMCAST_SHM_ACK_TIMEOUT", o->reliable ? "10s" : "0", 1);
        /* block: the wait the configuration gives (spin_us from -c, else the default) */
        if (o->spin) {
            snprintf(value, sizeof(value), "%d", 1000000);
            setenv("MEMCAST_SHM_SPIN_US", value, 1);
        }
    }
}

int mc_bench_enter_netns(const bench_opts *o, int role, char *err, size_t err_size)
{
    const char *name = o->netns[role];
    if (name[0] == '\0')
        return 0;
    char path[sizeof(BENCH_NETNS_DIR) + BENCH_NETNS_NAME_MAX];
    snprintf(path, sizeof(path), "%s/%s", BENCH_NETNS_DIR, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, err_size, "network namespace '%s': cannot open %s: %s%s", name, path,
                 strerror(e), e == ENOENT ? " (make it with: ip netns add NAME)" : "");
        return -1;
    }
    int rc = setns(fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    snprintf(err, err_size, "cannot enter network namespace '%s': %s%s", name, strerror(e),
             e == EPERM    ? " (needs root: CAP_SYS_ADMIN)"
             : e == EINVAL ? " (not a network namespace)"
                           : "");
    return -1;
}

/* The probe child: enters the publisher's namespace, then the subscriber's. */
static int netns_probe(void *arg)
{
    const bench_opts *o = arg;
    char err[256];
    for (int role = BENCH_ROLE_PUB; role <= BENCH_ROLE_SUB; role++)
        if (mc_bench_enter_netns(o, role, err, sizeof(err)) != 0) {
            fprintf(stderr, "memcast bench: %s\n", err);
            return 1;
        }
    return 0;
}

bool mc_bench_netns_usable(const bench_opts *o)
{
    if (o->netns[BENCH_ROLE_PUB][0] == '\0')
        return true;
    pid_t pid = mc_bench_spawn(netns_probe, (void *)o);
    return pid > 0 && mc_bench_reap(&pid, 1, 10000000000ll, NULL, NULL) == 0;
}

int mc_bench_start(const cli_command *cmd, int argc, char **argv, bench_opts *o)
{
    const char *what = NULL;
    int rc = mc_bench_parse(cmd, argc, argv, o, &what);
    if (rc >= 0)
        return rc;
    if (o->fill_uncached && !o->zero_copy)
        return usage_error("--fill-uncached needs --zero-copy: it is how the publisher writes "
                           "its loan (mc_publish copies with non-temporal stores by itself, from "
                           "[shm] uncached_copy_min)");
    if (!mc_bench_netns_usable(o))
        return EXIT_FAILED;
    signal(SIGPIPE, SIG_IGN);
    return -1;
}

static const char *human_size(size_t size, char *buf, size_t n)
{
    if (size >= (1u << 20) && size % (1u << 20) == 0)
        snprintf(buf, n, "%zuM", size >> 20);
    else if (size >= 1024 && size % 1024 == 0)
        snprintf(buf, n, "%zuK", size >> 10);
    else
        snprintf(buf, n, "%zu", size);
    return buf;
}

static void floor_text(const bench_opts *o, const floor_result *f)
{
    char label[64], hs[32];
    printf("memcast bench floor: CPUs %d,%d%s; payload rounds wait by %s%s\n", o->cpus[0],
           o->cpus[1], f->pinned ? "" : " (pinning FAILED: processes float)",
           o->spin ? "spinning" : "futex",
           o->fill_uncached ? "; zero-copy payloads written uncached" : "");
    mc_bench_print_summary_header();
    mc_bench_print_summary("line, futex wait/wake", &f->line_block);
    mc_bench_print_summary("line, spinning", &f->line_spin);
    for (size_t i = 0; i < o->nsizes; i++) {
        snprintf(label, sizeof(label), "copy %.20s", human_size(o->sizes[i], hs, sizeof(hs)));
        mc_bench_print_summary(label, &f->copy[i]);
        snprintf(label, sizeof(label), "zero-copy %.20s", human_size(o->sizes[i], hs, sizeof(hs)));
        mc_bench_print_summary(label, &f->zc[i]);
    }
    printf("  memcpy bandwidth, one core, 1 MiB blocks: %.2f GB/s\n", f->memcpy_gbps);
}

static void floor_json(const bench_opts *o, const floor_result *f)
{
    printf("{\"bench\": \"floor\", \"cpus\": [%d, %d], \"pinned\": %s, \"wait\": \"%s\", "
           "\"fill_uncached\": %s, ",
           o->cpus[0], o->cpus[1], f->pinned ? "true" : "false", o->spin ? "spin" : "block",
           o->fill_uncached ? "true" : "false");
    mc_bench_json_summary("line_block", &f->line_block);
    printf(", ");
    mc_bench_json_summary("line_spin", &f->line_spin);
    printf(", \"memcpy_gbps\": %.3f, \"sizes\": [", f->memcpy_gbps);
    for (size_t i = 0; i < o->nsizes; i++) {
        printf("%s{\"size\": %zu, ", i ? ", " : "", o->sizes[i]);
        mc_bench_json_summary("copy", &f->copy[i]);
        printf(", ");
        mc_bench_json_summary("zero_copy", &f->zc[i]);
        printf("}");
    }
    printf("]}\n");
}

int mc_bench_floor(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bench_opts o;
    const char *what = NULL;
    (void)global;
    int rc = mc_bench_parse(cmd, argc, argv, &o, &what);
    if (rc >= 0)
        return rc;
    floor_result *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return EXIT_FAILED;
    if (mc_bench_floor_run(&o, FLOOR_LINE | FLOOR_SPIN_LINE | FLOOR_COPY | FLOOR_ZC, o.spin, f) !=
        0) {
        fprintf(stderr, "memcast bench floor: the measurement failed\n");
        free(f);
        return EXIT_FAILED;
    }
    if (o.json)
        floor_json(&o, f);
    else
        floor_text(&o, f);
    free(f);
    return EXIT_OK;
}
