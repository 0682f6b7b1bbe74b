/*
 * memcast ls: the live topics other processes announce — name, type, encoding, each
 * publisher and subscriber (host, pid), the transports they offer and share, and the
 * message rate measured between two snapshots. Like `ros2 topic list -v` or ecal_mon_cli.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memcast/memcast.h>

#include "cli.h"
#include "cmd.h"
#include "context.h"

typedef struct endpoint_row {
    mc_endpoint_id id;
    mc_endpoint_kind kind;
    char topic[MC_TOPIC_MAX + 1];
    char type[64];
    char encoding[64];
    uint8_t host_token[MC_HOST_TOKEN_SIZE];
    int pid;
    char transports[MC_LOCATORS_MAX][MC_PLUGIN_NAME_MAX + 1];
    uint32_t transport_count;
    uint64_t messages;
    uint64_t dropped;
    uint32_t source_count; /* a subscriber's publishers with the most losses */
    mc_source_loss sources[MC_REG_SOURCES_MAX];
    double rate;
} endpoint_row;

typedef struct snapshot {
    endpoint_row *rows;
    size_t count;
    size_t capacity;
    struct timespec taken;
} snapshot;

static void collect(void *user, const mc_remote *r)
{
    snapshot *s = user;
    if (s->count == s->capacity) {
        size_t capacity = s->capacity ? s->capacity * 2 : 64;
        endpoint_row *grown = realloc(s->rows, capacity * sizeof(*grown));
        if (grown == NULL)
            return;
        s->rows = grown;
        s->capacity = capacity;
    }
    endpoint_row *row = &s->rows[s->count++];
    memset(row, 0, sizeof(*row));
    row->id = r->id;
    row->kind = r->kind;
    snprintf(row->topic, sizeof(row->topic), "%s", r->topic);
    snprintf(row->type, sizeof(row->type), "%s", r->type);
    snprintf(row->encoding, sizeof(row->encoding), "%s", r->encoding);
    memcpy(row->host_token, r->host_token, sizeof(row->host_token));
    row->pid = r->pid;
    for (uint32_t i = 0; i < r->locator_count; i++)
        snprintf(row->transports[row->transport_count++], sizeof(row->transports[0]), "%s",
                 r->locators[i].transport);
    row->messages = r->messages;
    row->dropped = r->dropped;
    row->source_count = r->source_count;
    memcpy(row->sources, r->sources, sizeof(row->sources));
}

static int by_topic_then_kind(const void *a, const void *b)
{
    const endpoint_row *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c != 0)
        return c;
    if (x->kind != y->kind)
        return (int)x->kind - (int)y->kind;
    return x->pid - y->pid;
}

static void take_snapshot(mc_context *ctx, snapshot *s)
{
    s->count = 0;
    mc_registry_visit(ctx, collect, s);
    clock_gettime(CLOCK_MONOTONIC, &s->taken);
    qsort(s->rows, s->count, sizeof(*s->rows), by_topic_then_kind);
}

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* Rate of each endpoint: its message counter's growth between the two snapshots. */
static void compute_rates(const snapshot *before, snapshot *after)
{
    double dt = seconds_between(&before->taken, &after->taken);
    for (size_t i = 0; i < after->count; i++) {
        endpoint_row *row = &after->rows[i];
        for (size_t j = 0; j < before->count && dt > 0; j++) {
            const endpoint_row *old = &before->rows[j];
            if (memcmp(&old->id, &row->id, sizeof(row->id)) == 0 && row->messages >= old->messages)
                row->rate = (double)(row->messages - old->messages) / dt;
        }
    }
}

/* ---- shared transports of a topic ------------------------------------------------------- */

static bool offers(const endpoint_row *row, const char *transport)
{
    for (uint32_t i = 0; i < row->transport_count; i++)
        if (strcmp(row->transports[i], transport) == 0)
            return true;
    return false;
}

/* Where two endpoints are relative to each other, as a scope bit. */
static uint32_t scope_between(const endpoint_row *a, const endpoint_row *b)
{
    if (a->id.context_hi == b->id.context_hi && a->id.context_lo == b->id.context_lo)
        return MC_SCOPE_PROCESS;
    return memcmp(a->host_token, b->host_token, MC_HOST_TOKEN_SIZE) == 0 ? MC_SCOPE_HOST
                                                                         : MC_SCOPE_NETWORK;
}

/* What this process knows the transport to bridge; a transport it did not load might
 * bridge anything. */
static uint32_t scopes_of(const mc_context *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->transport_count; i++)
        if (strcmp(ctx->transports[i]->desc->name, name) == 0)
            return ctx->transports[i]->desc->scopes;
    return MC_SCOPE_PROCESS | MC_SCOPE_HOST | MC_SCOPE_NETWORK;
}

/* Transports by which at least one publisher of the topic reaches one of its subscribers:
 * both offer it, and it bridges where they are (shm, for one, does not cross hosts). */
static void shared_transports(const mc_context *ctx, const snapshot *s, size_t first, size_t end,
                              char *out, size_t size)
{
    out[0] = '\0';
    for (size_t i = first; i < end; i++) {
        const endpoint_row *pub = &s->rows[i];
        if (pub->kind != MC_KIND_PUBLISHER)
            continue;
        for (uint32_t t = 0; t < pub->transport_count; t++) {
            const char *name = pub->transports[t];
            bool has_sub = false;
            for (size_t j = first; j < end && !has_sub; j++)
                has_sub = s->rows[j].kind == MC_KIND_SUBSCRIBER && offers(&s->rows[j], name) &&
                          (scopes_of(ctx, name) & scope_between(pub, &s->rows[j])) != 0;
            if (has_sub && strstr(out, name) == NULL) {
                size_t used = strlen(out);
                snprintf(out + used, size - used, "%s%s", used ? "," : "", name);
            }
        }
    }
    if (out[0] == '\0')
        snprintf(out, size, "-");
}

static size_t topic_end(const snapshot *s, size_t first)
{
    size_t end = first;
    while (end < s->count && strcmp(s->rows[end].topic, s->rows[first].topic) == 0)
        end++;
    return end;
}

static void host_text(const endpoint_row *row, const uint8_t *own, char *out, size_t size)
{
    snprintf(out, size, "%02x%02x%02x%02x%s", row->host_token[0], row->host_token[1],
             row->host_token[2], row->host_token[3],
             memcmp(row->host_token, own, MC_HOST_TOKEN_SIZE) == 0 ? " (this host)" : "");
}

/* A subscriber's losses per publisher, naming the publisher by pid when it is listed. */
static void print_sources(const snapshot *s, const endpoint_row *row)
{
    for (uint32_t i = 0; i < row->source_count; i++) {
        const mc_source_loss *l = &row->sources[i];
        const endpoint_row *pub = NULL;
        for (size_t j = 0; j < s->count && pub == NULL; j++)
            if (memcmp(&s->rows[j].id, &l->publisher, sizeof(l->publisher)) == 0)
                pub = &s->rows[j];
        char id[MC_ID_STRLEN];
        if (pub != NULL)
            printf("        lost %-10llu from pub pid %d\n", (unsigned long long)l->lost, pub->pid);
        else
            printf("        lost %-10llu from pub %s (gone)\n", (unsigned long long)l->lost,
                   mc_endpoint_id_format(&l->publisher, id, sizeof(id)));
    }
}

static void print_text(const mc_context *ctx, const snapshot *s)
{
    const uint8_t *own_token = ctx->host_token;
    printf("%-32s %-16s %-10s %4s %4s %10s  %s\n", "TOPIC", "TYPE", "ENCODING", "PUBS", "SUBS",
           "MSG/S", "SHARED TRANSPORTS");
    for (size_t first = 0; first < s->count;) {
        size_t end = topic_end(s, first);
        size_t pubs = 0, subs = 0;
        double rate = 0;
        for (size_t i = first; i < end; i++) {
            pubs += s->rows[i].kind == MC_KIND_PUBLISHER;
            subs += s->rows[i].kind == MC_KIND_SUBSCRIBER;
            if (s->rows[i].kind == MC_KIND_PUBLISHER)
                rate += s->rows[i].rate;
        }
        char shared[128];
        shared_transports(ctx, s, first, end, shared, sizeof(shared));
        const endpoint_row *head = &s->rows[first];
        printf("%-32s %-16s %-10s %4zu %4zu %10.1f  %s\n", head->topic,
               head->type[0] ? head->type : "-", head->encoding[0] ? head->encoding : "-", pubs,
               subs, rate, shared);
        for (size_t i = first; i < end; i++) {
            const endpoint_row *row = &s->rows[i];
            char host[40];
            host_text(row, own_token, host, sizeof(host));
            printf("    %-3s pid %-7d host %-22s messages %-10llu dropped %-6llu via",
                   row->kind == MC_KIND_PUBLISHER ? "pub" : "sub", row->pid, host,
                   (unsigned long long)row->messages, (unsigned long long)row->dropped);
            for (uint32_t t = 0; t < row->transport_count; t++)
                printf(" %s", row->transports[t]);
            printf("\n");
            print_sources(s, row);
        }
        first = end;
    }
    if (s->count == 0)
        printf("(no endpoints announced by other processes)\n");
}

static void json_text(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void print_json_endpoint(const endpoint_row *row, const uint8_t *own)
{
    char id[MC_ID_STRLEN];
    printf("{\"kind\":\"%s\",\"id\":\"%s\",\"pid\":%d,\"host\":\"%02x%02x%02x%02x\","
           "\"this_host\":%s,\"messages\":%llu,\"dropped\":%llu,\"rate\":%.1f,\"transports\":[",
           row->kind == MC_KIND_PUBLISHER ? "publisher" : "subscriber",
           mc_endpoint_id_format(&row->id, id, sizeof(id)), row->pid, row->host_token[0],
           row->host_token[1], row->host_token[2], row->host_token[3],
           memcmp(row->host_token, own, MC_HOST_TOKEN_SIZE) == 0 ? "true" : "false",
           (unsigned long long)row->messages, (unsigned long long)row->dropped, row->rate);
    for (uint32_t t = 0; t < row->transport_count; t++) {
        printf(t ? "," : "");
        json_text(row->transports[t]);
    }
    printf("],\"lost_from\":[");
    for (uint32_t i = 0; i < row->source_count; i++)
        printf("%s{\"publisher\":\"%s\",\"lost\":%llu}", i ? "," : "",
               mc_endpoint_id_format(&row->sources[i].publisher, id, sizeof(id)),
               (unsigned long long)row->sources[i].lost);
    printf("]}");
}

static void print_json(const mc_context *ctx, const snapshot *s)
{
    const uint8_t *own = ctx->host_token;
    printf("[");
    for (size_t first = 0; first < s->count;) {
        size_t end = topic_end(s, first);
        const endpoint_row *head = &s->rows[first];
        printf(first ? ",{\"topic\":" : "{\"topic\":");
        json_text(head->topic);
        printf(",\"type\":");
        json_text(head->type);
        printf(",\"encoding\":");
        json_text(head->encoding);
        char shared[128];
        shared_transports(ctx, s, first, end, shared, sizeof(shared));
        printf(",\"shared_transports\":");
        json_text(shared);
        printf(",\"endpoints\":[");
        for (size_t i = first; i < end; i++) {
            printf(i > first ? "," : "");
            print_json_endpoint(&s->rows[i], own);
        }
        printf("]}");
        first = end;
    }
    printf("]\n");
}

static volatile sig_atomic_t stop_watch;

static void on_interrupt(int sig)
{
    stop_watch = 1;
}

static void pause_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

static void refresh_all(mc_context *ctx)
{
    for (size_t i = 0; i < ctx->transport_count; i++) {
        mc_transport *tp = ctx->transports[i];
        if ((tp->desc->roles & MC_ROLE_REGISTRATION) && MC_HAS(tp->ops, mc_plugin_ops, reg_refresh))
            tp->ops->reg_refresh(tp->instance);
    }
}

/* Two snapshots `interval` apart. Each asks every peer to announce its counters, waits
 * `wait` for the answers, and is dated at the request: the counters are from then. */
static void snapshot_after_refresh(mc_context *ctx, long wait_ms, snapshot *s)
{
    struct timespec asked;
    clock_gettime(CLOCK_MONOTONIC, &asked);
    refresh_all(ctx);
    pause_ms(wait_ms);
    take_snapshot(ctx, s);
    s->taken = asked;
}

static void measure(mc_context *ctx, long wait_ms, long interval_ms, snapshot *before,
                    snapshot *after)
{
    snapshot_after_refresh(ctx, wait_ms, before);
    pause_ms(interval_ms > wait_ms ? interval_ms - wait_ms : 0);
    snapshot_after_refresh(ctx, wait_ms, after);
    compute_rates(before, after);
}

static bool has_registration(const mc_context *ctx)
{
    for (size_t i = 0; i < ctx->transport_count; i++)
        if (ctx->transports[i]->desc->roles & MC_ROLE_REGISTRATION)
            return true;
    return false;
}

int mc_cmd_ls(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bool json = false, watch = false;
    const char *wait_text = NULL, *interval_text = NULL;
    const cli_option opts[] = {{"--json", 0, &json, NULL},
                               {"--watch", 'w', &watch, NULL},
                               {"--wait", 0, NULL, &wait_text},
                               {"--interval", 0, NULL, &interval_text},
                               {"--config", 'c', NULL, &global->config_path}};
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 5, NULL, 0, NULL);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    long wait_ms = wait_text ? atol(wait_text) : 200;
    long interval_ms = interval_text ? atol(interval_text) : 1000;
    if (wait_ms < 0 || interval_ms <= 0) {
        fprintf(stderr, "memcast ls: --wait must be >= 0 and --interval > 0 (milliseconds)\n");
        return EXIT_USAGE;
    }
    mc_context *ctx = NULL;
    if (mc_context_open(global->config_path, &ctx) != 0) {
        fprintf(stderr, "memcast: %s\n", mc_last_error());
        return EXIT_FAILED;
    }
    if (!has_registration(ctx)) {
        fprintf(stderr, "memcast ls: no registration plugin is loaded (add udp to [framework] "
                        "plugins): other processes cannot be seen\n");
        mc_context_close(ctx);
        return EXIT_FAILED;
    }
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    snapshot before = {0}, after = {0};
    do {
        measure(ctx, wait_ms, interval_ms, &before, &after);
        if (watch)
            printf("\033[H\033[2J"); /* refresh in place */
        if (json)
            print_json(ctx, &after);
        else
            print_text(ctx, &after);
        fflush(stdout);
    } while (watch && !stop_watch);
    free(before.rows);
    free(after.rows);
    mc_context_close(ctx);
    return EXIT_OK;
}
