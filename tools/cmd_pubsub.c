/*
 * memcast pub / memcast sub: publish text or generated payloads on a topic, and print or
 * verify what arrives. Generated payloads carry a pattern derived from the publisher's
 * sequence number, so `sub --verify` checks every byte without a side channel.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <memcast/memcast.h>

#include "cli.h"
#include "cmd.h"
#include "pattern.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = 1;
}

static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int open_context(const cli_global *global, mc_context **ctx)
{
    if (mc_context_open(global->config_path, ctx) != 0) {
        fprintf(stderr, "memcast: %s\n", mc_last_error());
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

static int parse_count(const char *text, const char *what, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = text ? strtoull(text, &end, 10) : 0;
    if (text != NULL && (errno != 0 || end == text || *end != '\0' || text[0] == '-')) {
        fprintf(stderr, "memcast: %s '%s' is not a non-negative whole number\n", what, text);
        return EXIT_USAGE;
    }
    *out = v;
    return EXIT_OK;
}

static int parse_size(const char *text, unsigned long long *out)
{
    if (text != NULL && !cli_parse_size(text, out)) {
        fprintf(stderr, "memcast: --size '%s' is not a size (bytes, or with K, M or G)\n", text);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* ---- pub ---------------------------------------------------------------------------------- */

static void sleep_until(struct timespec *next, long period_ns)
{
    next->tv_nsec += period_ns;
    while (next->tv_nsec >= 1000000000) {
        next->tv_nsec -= 1000000000;
        next->tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL) == EINTR && !interrupted)
        ;
}

static int publish_generated(mc_publisher *pub, unsigned long long size, unsigned long long rate,
                             unsigned long long count)
{
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long period = rate ? (long)(1000000000ull / rate) : 0;
    for (uint64_t seq = 1; (count == 0 || seq <= count) && !interrupted; seq++) {
        void *buf = NULL;
        if (mc_loan(pub, size, &buf) != 0) {
            fprintf(stderr, "memcast pub: %s\n", mc_last_error());
            return EXIT_FAILED;
        }
        mc_cli_pattern_fill(buf, size, seq);
        if (mc_commit(pub, buf, size) != 0) {
            fprintf(stderr, "memcast pub: %s\n", mc_last_error());
            return EXIT_FAILED;
        }
        if (period)
            sleep_until(&next, period);
    }
    return EXIT_OK;
}

static int publish_text(mc_publisher *pub, int nwords, const char **words)
{
    if (nwords > 0) {
        size_t len = 0;
        for (int i = 0; i < nwords; i++)
            len += strlen(words[i]) + 1;
        char *text = calloc(1, len + 1);
        for (int i = 0; i < nwords; i++) {
            strcat(text, words[i]);
            if (i + 1 < nwords)
                strcat(text, " ");
        }
        int rc = mc_publish(pub, text, strlen(text));
        free(text);
        if (rc != 0)
            fprintf(stderr, "memcast pub: %s\n", mc_last_error());
        return rc ? EXIT_FAILED : EXIT_OK;
    }
    char line[65536];
    while (!interrupted && fgets(line, sizeof(line), stdin) != NULL) {
        size_t len = strcspn(line, "\n");
        if (mc_publish(pub, line, len) != 0) {
            fprintf(stderr, "memcast pub: %s\n", mc_last_error());
            return EXIT_FAILED;
        }
    }
    return EXIT_OK;
}

int mc_cmd_pub(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    const char *size_text = NULL, *rate_text = NULL, *count_text = NULL, *wait_text = NULL;
    const cli_option opts[] = {{"--size", 's', NULL, &size_text},
                               {"--rate", 'r', NULL, &rate_text},
                               {"--count", 'n', NULL, &count_text},
                               {"--wait", 'w', NULL, &wait_text},
                               {"--config", 'c', NULL, &global->config_path}};
    const char *positional[64];
    size_t npos = 0;
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 5, positional, 64, &npos);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    unsigned long long size = 0, rate = 0, count = 0, wait = 1;
    if (npos == 0) {
        fprintf(stderr, "memcast pub: a TOPIC is needed\nTry 'memcast pub --help'.\n");
        return EXIT_USAGE;
    }
    if (parse_size(size_text, &size) || parse_count(rate_text, "--rate", &rate) ||
        parse_count(count_text, "--count", &count) || parse_count(wait_text, "--wait", &wait))
        return EXIT_USAGE;
    mc_context *ctx = NULL;
    if (open_context(global, &ctx) != EXIT_OK)
        return EXIT_FAILED;
    catch_signals();
    mc_publisher *pub = NULL;
    int status = EXIT_FAILED;
    if (mc_publisher_create(ctx, positional[0], NULL, &pub) != 0) {
        fprintf(stderr, "memcast pub: %s\n", mc_last_error());
    } else if (wait > 0 && mc_publisher_wait_matched(pub, wait, 10000) != 0) {
        fprintf(stderr, "memcast pub: %s\n", mc_last_error());
    } else if (size_text != NULL || count_text != NULL || rate_text != NULL) {
        status = publish_generated(pub, size, rate, count ? count : (rate ? 0 : 1));
    } else {
        status = publish_text(pub, (int)npos - 1, positional + 1);
    }
    mc_publisher_destroy(pub);
    mc_context_close(ctx);
    return status;
}

/* ---- sub ---------------------------------------------------------------------------------- */

typedef struct sub_state {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned long long received;
    unsigned long long corrupt;
    unsigned long long lost;
    uint64_t last_seq;
    bool verify;
    bool quiet;
} sub_state;

static bool payload_intact(const mc_msg *msg)
{
    return mc_cli_pattern_intact(mc_msg_data(msg), mc_msg_size(msg), mc_msg_seq(msg));
}

static bool printable(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] > 0x7e)
            return false;
    return true;
}

static void print_message(const mc_msg *msg)
{
    const unsigned char *p = mc_msg_data(msg);
    size_t n = mc_msg_size(msg);
    if (printable(p, n)) {
        printf("%.*s\n", (int)n, (const char *)p);
    } else {
        printf("[%zu bytes, seq %llu, via %s]", n, (unsigned long long)mc_msg_seq(msg),
               mc_msg_transport(msg));
        for (size_t i = 0; i < n && i < 16; i++)
            printf(" %02x", p[i]);
        printf("%s\n", n > 16 ? " ..." : "");
    }
    fflush(stdout);
}

static void on_message(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    sub_state *s = user;
    bool intact = !s->verify || payload_intact(msg);
    if (!s->quiet)
        print_message(msg);
    pthread_mutex_lock(&s->lock);
    if (s->last_seq != 0 && mc_msg_seq(msg) > s->last_seq + 1)
        s->lost += mc_msg_seq(msg) - s->last_seq - 1;
    s->last_seq = mc_msg_seq(msg);
    s->received++;
    s->corrupt += !intact;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
}

/* Waits for count messages (0: until interrupted), waking every 100 ms to see a signal. */
static void wait_messages(sub_state *s, unsigned long long count)
{
    pthread_mutex_lock(&s->lock);
    while (!interrupted && (count == 0 || s->received < count)) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 100000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->changed, &s->lock, &t);
    }
    pthread_mutex_unlock(&s->lock);
}

int mc_cmd_sub(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    const char *count_text = NULL;
    bool verify = false, quiet = false;
    const cli_option opts[] = {{"--count", 'n', NULL, &count_text},
                               {"--verify", 0, &verify, NULL},
                               {"--quiet", 'q', &quiet, NULL},
                               {"--config", 'c', NULL, &global->config_path}};
    const char *topic = NULL;
    size_t npos = 0;
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 4, &topic, 1, &npos);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    unsigned long long count = 0;
    if (npos == 0) {
        fprintf(stderr, "memcast sub: a TOPIC is needed\nTry 'memcast sub --help'.\n");
        return EXIT_USAGE;
    }
    if (parse_count(count_text, "--count", &count))
        return EXIT_USAGE;
    mc_context *ctx = NULL;
    if (open_context(global, &ctx) != EXIT_OK)
        return EXIT_FAILED;
    catch_signals();
    sub_state s = {.lock = PTHREAD_MUTEX_INITIALIZER,
                   .changed = PTHREAD_COND_INITIALIZER,
                   .verify = verify,
                   .quiet = quiet};
    mc_sub_options o;
    mc_sub_options_init(&o);
    o.on_message = on_message;
    o.user = &s;
    mc_subscriber *sub = NULL;
    int status = EXIT_FAILED;
    if (mc_subscriber_create(ctx, topic, &o, &sub) != 0) {
        fprintf(stderr, "memcast sub: %s\n", mc_last_error());
    } else {
        wait_messages(&s, count);
        mc_stats st;
        mc_stats_init(&st);
        mc_subscriber_stats(sub, &st);
        mc_subscriber_destroy(sub);
        fprintf(
            stderr,
            "memcast sub: %llu received, %llu lost (sequence gaps), %llu overrun, %llu corrupt\n",
            s.received, s.lost, (unsigned long long)st.dropped[MC_DROP_OVERRUN], s.corrupt);
        status = (s.corrupt == 0 && (count == 0 || s.received >= count)) ? EXIT_OK : EXIT_FAILED;
    }
    mc_context_close(ctx);
    return status;
}
