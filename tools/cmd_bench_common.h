/* Helpers shared by memcast bench floor, latency and throughput (tools/cmd_bench_*.c). */
#ifndef MEMCAST_TOOLS_CMD_BENCH_COMMON_H
#define MEMCAST_TOOLS_CMD_BENCH_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"

#define BENCH_MAX_SIZES       16
#define BENCH_MAX_SUBSCRIBERS 8
#define BENCH_NETNS_DIR       "/var/run/netns" /* where `ip netns add` puts them */
#define BENCH_NETNS_NAME_MAX  64

/* The two sides of latency and throughput, also the index of their --netns name. */
enum { BENCH_ROLE_PUB, BENCH_ROLE_SUB };

typedef struct bench_opts {
    size_t sizes[BENCH_MAX_SIZES];
    size_t nsizes;
    long count;  /* 0: a default per size */
    long warmup; /* -1: a default per size */
    int cpus[2];
    bool zero_copy, reliable, spin, json, no_floor, test_corrupt;
    bool fill_uncached; /* zero-copy payloads are written with non-temporal stores */
    const char *transport;
    long subscribers;
    long rate; /* throughput: messages per second the publisher paces itself to; 0: unpaced */
    const char *config_path; /* -c FILE: its keys are kept, bench keys are added */
    /* --netns PUB,SUB: each side runs in that network namespace; "" when not asked */
    char netns[2][BENCH_NETNS_NAME_MAX];
} bench_opts;

/* One-way latency summary in microseconds. */
typedef struct bench_summary {
    size_t n;
    double p50, p90, p99, p999, max;
} bench_summary;

typedef struct floor_result {
    bench_summary line_block, line_spin; /* one cache line, no payload */
    bench_summary copy[BENCH_MAX_SIZES]; /* memcpy in, memcpy out + checksum */
    bench_summary zc[BENCH_MAX_SIZES];   /* write in place, checksum in place */
    double memcpy_gbps;                  /* one core, 1 MiB blocks */
    bool pinned;
} floor_result;

enum { FLOOR_LINE = 1, FLOOR_COPY = 2, FLOOR_ZC = 4, FLOOR_SPIN_LINE = 8 };

long long mc_bench_now_ns(void);
bool mc_bench_pin(int cpu);
void mc_bench_fill(void *buf, size_t size, uint64_t seq, uint64_t salt);
/* The same payload written in place (a loan, a zero-copy floor's slot): with ordinary
 * stores, or with non-temporal ones (--fill-uncached). */
void mc_bench_fill_in_place(bool uncached, void *buf, size_t size, uint64_t seq, uint64_t salt);
bool mc_bench_verify(const void *buf, size_t size, uint64_t salt, uint64_t *seq);
void mc_bench_summarise(double *one_way_us, size_t n, bench_summary *out);
long mc_bench_default_count(size_t size, bool throughput);
long mc_bench_default_warmup(size_t size);
void *mc_bench_shared_alloc(size_t size);
pid_t mc_bench_spawn(int (*fn)(void *), void *arg);
/* Waits for every child; kills them all when the deadline passes or stop() says so.
 * Returns 0 when all exited 0. */
int mc_bench_reap(pid_t *pids, size_t n, long long timeout_ns, void (*tick)(void *), void *arg);
void mc_bench_kill(pid_t *pids, size_t n);
int mc_bench_futex_wait(_Atomic uint32_t *word, uint32_t value, long timeout_ns);
void mc_bench_futex_wake(_Atomic uint32_t *word);
double mc_bench_memcpy_gbps(void);
int mc_bench_floor_run(const bench_opts *o, int what, bool payload_spin, floor_result *out);
void mc_bench_print_summary_header(void);
void mc_bench_print_summary(const char *label, const bench_summary *s);
void mc_bench_json_summary(const char *name, const bench_summary *s);
int mc_bench_parse(const cli_command *cmd, int argc, char **argv, bench_opts *o, const char **what);
void mc_bench_setenv(const bench_opts *o, const char *run_name);
/* Moves the calling process into the network namespace of role (nothing without --netns).
 * Returns 0, or -1 with a message naming the namespace in err. */
int mc_bench_enter_netns(const bench_opts *o, int role, char *err, size_t err_size);
/* Without --netns: true. Else tries, in a child, to enter both namespaces, and prints
 * why not: one clear error before any measurement starts. */
bool mc_bench_netns_usable(const bench_opts *o);
/* The start of latency and throughput: options parsed, namespaces usable, SIGPIPE ignored
 * (a child's pipe may close). -1 to go on, else the exit status. */
int mc_bench_start(const cli_command *cmd, int argc, char **argv, bench_opts *o);

/* The streaming floor of one size (tools/cmd_bench_stream.c): a writer pinned to cpus[0]
 * and a reader pinned to cpus[1] move messages of size bytes through a ring of 8 slots in
 * shared memory, with the bench's fill and check per message. count is capped so that the
 * run stays short. Returns 0, or -1 with the reason on stderr and *out all zero. */
typedef struct bench_stream_floor {
    long count;
    double msgs_per_s, mb_per_s; /* MB = 1e6 bytes */
} bench_stream_floor;

int mc_bench_stream_floor(const bench_opts *o, size_t size, long count, bench_stream_floor *out);

int mc_bench_floor(const cli_command *cmd, cli_global *global, int argc, char **argv);
int mc_bench_latency(const cli_command *cmd, cli_global *global, int argc, char **argv);
int mc_bench_throughput(const cli_command *cmd, cli_global *global, int argc, char **argv);

#endif
