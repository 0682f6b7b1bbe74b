/*
 * Helpers the conformance cases share: reporting into the shared conf_report, contexts
 * and configurations for the plugin under test, resource counts, a checking subscriber,
 * the plugin's schema and helper processes.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conformance.h"
#include "context.h"
#include "error.h"
#include "loader.h"

extern char **environ;

/* ---- reporting -------------------------------------------------------------------------- */

static conf_report *report;
static bool report_verbose;

static void report_lock(void)
{
    pthread_mutex_lock(&report->lock);
}

static void report_unlock(void)
{
    pthread_mutex_unlock(&report->lock);
}

static void diag_append_locked(const char *line)
{
    size_t room = sizeof(report->diag) - report->diag_len;
    int n = snprintf(report->diag + report->diag_len, room, "%s\n", line);
    if (n > 0)
        report->diag_len += (size_t)n < room ? (size_t)n : room - 1;
}

/* The framework and the plugin log through here while a case runs: the last lines are
 * kept for the verdict, and shown at once with --verbose. */
static void capture_log(void *user, mc_log_level level, const char *origin, const char *message)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    const char *name = level <= MC_LOG_DEBUG ? names[level] : "?";
    if (report_verbose)
        fprintf(stderr, "memcast %s [%s] %s\n", name, origin, message);
    report_lock();
    snprintf(report->log[report->log_next % CONF_LOG_LINES], CONF_LOG_MAX, "%s [%s] %s", name,
             origin, message);
    report->log_next++;
    report_unlock();
}

void conf_report_attach(conf_report *r, bool verbose)
{
    report = r;
    report_verbose = verbose;
    mc_set_log_handler(capture_log, NULL);
}

void conf_step(const char *fmt, ...)
{
    char text[sizeof(report->step)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    report_lock();
    memcpy(report->step, text, sizeof(text));
    report_unlock();
}

void conf_fail(const char *fmt, ...)
{
    char text[CONF_REASON_MAX];
    char error[CONF_REASON_MAX];
    snprintf(error, sizeof(error), "%s", mc_last_error());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    report_lock();
    if (report->verdict != CONF_FAIL) {
        report->verdict = CONF_FAIL;
        memcpy(report->reason, text, sizeof(text));
        memcpy(report->last_error, error, sizeof(error));
        memcpy(report->fail_step, report->step, sizeof(report->step));
    } else {
        diag_append_locked(text);
    }
    report_unlock();
}

void conf_skip(const char *fmt, ...)
{
    char text[CONF_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    report_lock();
    if (report->verdict != CONF_FAIL) {
        report->verdict = CONF_SKIP;
        memcpy(report->reason, text, sizeof(text));
    }
    report_unlock();
}

void conf_note(const char *fmt, ...)
{
    char text[CONF_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    report_lock();
    diag_append_locked(text);
    report_unlock();
}

bool conf_failed(void)
{
    report_lock();
    bool failed = report->verdict == CONF_FAIL;
    report_unlock();
    return failed;
}

/* ---- contexts and configurations --------------------------------------------------------- */

/* The transports the context loaded must be the plugin under test, first. */
static int check_loaded(const conf_env *env, mc_context *ctx)
{
    if (ctx->transport_count == 0 || strcmp(ctx->transports[0]->desc->name, env->plugin->name))
        return mc_error_set(MC_EPLUGIN, "the context did not load plugin '%s' first (%zu loaded)",
                            env->plugin->name, ctx->transport_count);
    return 0;
}

int conf_context_open_file(const conf_env *env, const char *path, mc_context **out)
{
    int rc = mc_context_open(path, out);
    if (rc != 0)
        return rc;
    rc = check_loaded(env, *out);
    if (rc != 0) {
        char why[CONF_REASON_MAX];
        snprintf(why, sizeof(why), "%s", mc_last_error());
        mc_context_close(*out);
        *out = NULL;
        return mc_error_set(rc, "%s", why);
    }
    return 0;
}

int conf_context_open(const conf_env *env, mc_context **out)
{
    return conf_context_open_file(env, env->config_path, out);
}

int conf_write_config(const conf_env *env, const char *tag, const char *lines, char *path,
                      size_t size)
{
    int n = snprintf(path, size, "%s/%s-%ld.ini", env->tmpdir, tag, (long)getpid());
    if (n < 0 || (size_t)n >= size)
        return mc_error_set(MC_EINVAL, "temporary file name too long in %s", env->tmpdir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return mc_error_set(MC_ENOENT, "cannot write %s: %s", path, strerror(errno));
    const conf_plugin *data = env->data; /* a plugin without MC_ROLE_DATA needs one */
    fprintf(f, "[framework]\nplugins = %s%s%s\n\n[%s]\npath = %s\n%s\n", env->plugin->name,
            data ? ", " : "", data ? data->name : "", env->plugin->name, env->plugin->dir,
            lines ? lines : "");
    if (data != NULL)
        fprintf(f, "[%s]\npath = %s\n", data->name, data->dir);
    if (fclose(f) != 0)
        return mc_error_set(MC_ENOSPC, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* ---- resources ------------------------------------------------------------------------- */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int count = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL)
        if (ent->d_name[0] != '.')
            count++;
    closedir(d);
    return count;
}

/* True when text holds number as a whole run of digits. */
static bool mentions_number(const char *text, const char *number)
{
    size_t len = strlen(number);
    for (const char *at = strstr(text, number); at != NULL; at = strstr(at + 1, number)) {
        bool starts = at == text || !isdigit((unsigned char)at[-1]);
        if (starts && !isdigit((unsigned char)at[len]))
            return true;
    }
    return false;
}

static bool shm_name_ours(const conf_env *env, const char *name)
{
    char pid[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    return strstr(name, env->domain) != NULL || mentions_number(name, pid);
}

/* Calls fn for each /dev/shm name of this case; returns how many there are. */
static int visit_shm_names(const conf_env *env, void (*fn)(const char *name))
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return 0;
    int count = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || !shm_name_ours(env, ent->d_name))
            continue;
        count++;
        if (fn != NULL)
            fn(ent->d_name);
    }
    closedir(d);
    return count;
}

static void record_fds(conf_resources *out)
{
    memset(out->fd_set, 0, sizeof(out->fd_set));
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        int fd = atoi(ent->d_name);
        if (ent->d_name[0] != '.' && fd != dirfd(d) && fd >= 0 && fd < 1024)
            out->fd_set[fd / 64] |= UINT64_C(1) << (fd % 64);
    }
    closedir(d);
}

void conf_resources_count(const conf_env *env, conf_resources *out)
{
    out->fds = count_entries("/proc/self/fd") - 1; /* the directory stream itself */
    out->threads = count_entries("/proc/self/task");
    out->shm_names = visit_shm_names(env, NULL);
    record_fds(out);
}

static int shm_noted;

static void note_shm_name(const char *name)
{
    if (shm_noted++ < 10)
        conf_note("left in /dev/shm: %s", name);
}

/* Names what the file descriptors open now but not before point at (the first ten). */
static void note_new_fds(const conf_resources *before, const conf_resources *after)
{
    int shown = 0, more = 0;
    for (int fd = 0; fd < 1024; fd++) {
        uint64_t bit = UINT64_C(1) << (fd % 64);
        if (!(after->fd_set[fd / 64] & bit) || (before->fd_set[fd / 64] & bit))
            continue;
        if (shown == 10) {
            more++;
            continue;
        }
        char link[64], target[512];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        conf_note("leaked fd %d -> %s", fd, target);
        shown++;
    }
    if (more > 0)
        conf_note("... and %d more", more);
}

bool conf_resources_same(const conf_env *env, const conf_resources *before,
                         const conf_resources *after, const char *what)
{
    bool same = true;
    if (after->fds > before->fds) {
        conf_fail("after %s: %d file descriptors open, %d before (leaked %d)", what, after->fds,
                  before->fds, after->fds - before->fds);
        note_new_fds(before, after);
        same = false;
    }
    if (after->threads > before->threads) {
        conf_fail("after %s: %d threads, %d before: threads were not joined", what, after->threads,
                  before->threads);
        same = false;
    }
    if (after->shm_names > before->shm_names) {
        conf_fail("after %s: %d names of this case in /dev/shm, %d before", what, after->shm_names,
                  before->shm_names);
        shm_noted = 0;
        int count = visit_shm_names(env, note_shm_name);
        if (count > 10)
            conf_note("... and %d more", count - 10);
        same = false;
    }
    return same;
}

/* ---- payloads and the checking subscriber ------------------------------------------------ */

static unsigned char pattern_byte(uint64_t seq, size_t i)
{
    return (unsigned char)((seq * 131u) ^ (i * 7u) ^ (i >> 8) ^ (seq >> 8));
}

void conf_fill(void *buf, size_t size, uint64_t seq)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < size; i++)
        p[i] = pattern_byte(seq, i);
}

bool conf_payload_ok(const void *buf, size_t size, uint64_t seq)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < size; i++)
        if (p[i] != pattern_byte(seq, i))
            return false;
    return true;
}

void conf_sink_init(conf_sink *sink, const conf_env *env)
{
    memset(sink, 0, sizeof(*sink));
    pthread_mutex_init(&sink->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sink->changed, &attr);
    pthread_condattr_destroy(&attr);
    sink->transport = env->plugin->name;
    sink->check_payload = true;
}

void conf_sink_fini(conf_sink *sink)
{
    pthread_cond_destroy(&sink->changed);
    pthread_mutex_destroy(&sink->lock);
}

static conf_sink_publisher *sink_publisher_locked(conf_sink *sink, const mc_endpoint_id *id)
{
    for (size_t i = 0; i < sink->pub_count; i++)
        if (memcmp(&sink->pubs[i].id, id, sizeof(*id)) == 0)
            return &sink->pubs[i];
    if (sink->pub_count == CONF_SINK_PUBLISHERS)
        return NULL;
    conf_sink_publisher *p = &sink->pubs[sink->pub_count++];
    memset(p, 0, sizeof(*p));
    p->id = *id;
    return p;
}

static void sink_delay(uint64_t ns)
{
    struct timespec t = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static void sink_count_order(conf_sink_publisher *p, uint64_t seq)
{
    if (p->count > 0 && seq <= p->last_seq)
        p->out_of_order++;
    else if (p->count > 0 && seq > p->last_seq + 1)
        p->gaps++;
    p->last_seq = seq;
    p->count++;
}

void conf_sink_callback(void *user, mc_subscriber *sub, const mc_msg *msg)
{
    conf_sink *sink = user;
    const void *data = mc_msg_data(msg);
    size_t size = mc_msg_size(msg);
    uint64_t seq = mc_msg_seq(msg);
    pthread_mutex_lock(&sink->lock);
    bool check = sink->check_payload;
    uint64_t delay_ns = sink->delay_ns;
    pthread_mutex_unlock(&sink->lock);
    bool payload_ok = !check || conf_payload_ok(data, size, seq);
    if (delay_ns > 0)
        sink_delay(delay_ns); /* the slow subscriber of the reliable suite */
    pthread_mutex_lock(&sink->lock);
    if (!payload_ok)
        sink->bad_payload++;
    if (strcmp(mc_msg_transport(msg), sink->transport) != 0) {
        sink->wrong_transport++;
        snprintf(sink->seen_transport, sizeof(sink->seen_transport), "%s", mc_msg_transport(msg));
    }
    conf_sink_publisher *p = sink_publisher_locked(sink, mc_msg_publisher(msg));
    if (p != NULL)
        sink_count_order(p, seq);
    else
        sink->too_many_publishers++;
    if (sink->count < sizeof(sink->first_bytes))
        sink->first_bytes[sink->count] = size > 0 ? *(const unsigned char *)data : 0;
    sink->last_size = size;
    sink->last_data = data;
    sink->bytes += size;
    sink->count++;
    pthread_cond_broadcast(&sink->changed);
    pthread_mutex_unlock(&sink->lock);
}

static struct timespec deadline_in_ms(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

bool conf_sink_wait_for(conf_sink *sink, bool (*pred)(const conf_sink *sink, const void *arg),
                        const void *arg, int ms)
{
    struct timespec deadline = deadline_in_ms(ms);
    pthread_mutex_lock(&sink->lock);
    int rc = 0;
    while (!pred(sink, arg) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&sink->changed, &sink->lock, &deadline);
    bool reached = pred(sink, arg);
    pthread_mutex_unlock(&sink->lock);
    return reached;
}

static bool count_reached(const conf_sink *sink, const void *arg)
{
    return sink->count >= *(const uint64_t *)arg;
}

bool conf_sink_wait(conf_sink *sink, const conf_env *env, uint64_t n)
{
    return conf_sink_wait_for(sink, count_reached, &n, env->wait_ms);
}

uint64_t conf_sink_settle(conf_sink *sink, const conf_env *env, mc_subscriber *sub,
                          uint64_t expected)
{
    int64_t deadline = conf_now_ms() + env->wait_ms;
    uint64_t seen = conf_sink_count(sink);
    int64_t last_progress = conf_now_ms();
    for (;;) {
        uint64_t target = expected;
        mc_stats stats;
        mc_stats_init(&stats);
        if (mc_subscriber_stats(sub, &stats) == 0) {
            uint64_t dropped = conf_dropped(&stats);
            target = dropped < expected ? expected - dropped : 0;
        }
        /* Short slices: drops are counted outside the sink, so its condition cannot
         * tell; a second without progress ends the wait for a lossy transport. */
        if (conf_sink_wait_for(sink, count_reached, &target, 100))
            break;
        uint64_t now_seen = conf_sink_count(sink);
        if (now_seen != seen) {
            seen = now_seen;
            last_progress = conf_now_ms();
        }
        if (conf_now_ms() - last_progress > 1000 || conf_now_ms() > deadline)
            break;
    }
    return conf_sink_count(sink);
}

uint64_t conf_sink_count(conf_sink *sink)
{
    pthread_mutex_lock(&sink->lock);
    uint64_t n = sink->count;
    pthread_mutex_unlock(&sink->lock);
    return n;
}

size_t conf_sink_last_size(conf_sink *sink)
{
    pthread_mutex_lock(&sink->lock);
    size_t n = sink->last_size;
    pthread_mutex_unlock(&sink->lock);
    return n;
}

const void *conf_sink_last_data(conf_sink *sink)
{
    pthread_mutex_lock(&sink->lock);
    const void *p = sink->last_data;
    pthread_mutex_unlock(&sink->lock);
    return p;
}

uint64_t conf_sink_bytes(conf_sink *sink)
{
    pthread_mutex_lock(&sink->lock);
    uint64_t n = sink->bytes;
    pthread_mutex_unlock(&sink->lock);
    return n;
}

unsigned char conf_sink_first_byte(conf_sink *sink, size_t i)
{
    pthread_mutex_lock(&sink->lock);
    unsigned char b = i < sizeof(sink->first_bytes) ? sink->first_bytes[i] : 0;
    pthread_mutex_unlock(&sink->lock);
    return b;
}

void conf_sink_set_checks(conf_sink *sink, bool check_payload, uint64_t delay_ns)
{
    pthread_mutex_lock(&sink->lock);
    sink->check_payload = check_payload;
    sink->delay_ns = delay_ns;
    pthread_mutex_unlock(&sink->lock);
}

int conf_subscribe(mc_context *ctx, const char *topic, conf_sink *sink, mc_subscriber **out)
{
    mc_sub_options opts;
    mc_sub_options_init(&opts);
    opts.on_message = conf_sink_callback;
    opts.user = sink;
    return mc_subscriber_create(ctx, topic, &opts, out);
}

bool conf_sink_verify(conf_sink *sink, uint64_t expected, bool ordered)
{
    pthread_mutex_lock(&sink->lock);
    conf_sink s = *sink;
    pthread_mutex_unlock(&sink->lock);
    bool ok = true;
    if (s.count != expected) {
        conf_fail("the subscriber received %llu messages, expected %llu",
                  (unsigned long long)s.count, (unsigned long long)expected);
        ok = false;
    }
    if (s.bad_payload > 0) {
        conf_fail("%llu messages arrived with other bytes than were published",
                  (unsigned long long)s.bad_payload);
        ok = false;
    }
    if (s.wrong_transport > 0) {
        conf_fail("%llu messages were delivered by transport '%s', not by '%s'",
                  (unsigned long long)s.wrong_transport, s.seen_transport, s.transport);
        ok = false;
    }
    for (size_t i = 0; ordered && i < s.pub_count; i++) {
        if (s.pubs[i].out_of_order > 0) {
            conf_fail("publisher %zu: %llu messages arrived out of order (the plugin claims "
                      "MC_CAP_ORDERED)",
                      i + 1, (unsigned long long)s.pubs[i].out_of_order);
            ok = false;
        }
    }
    return ok;
}

/* "context 2" of two, or "the context" of one, for messages. */
static const char *which(const conf_env *env, bool publisher)
{
    if (!env->two_contexts)
        return "the context";
    return publisher ? "the publishing context" : "the subscribing context";
}

int conf_contexts_open(const conf_env *env, mc_context **sub_ctx, mc_context **pub_ctx)
{
    *sub_ctx = *pub_ctx = NULL;
    if (env->two_contexts && (env->plugin->caps & MC_CAP_RELIABLE)) {
        char asked[256];
        conf_ask_reliable(env, asked, sizeof(asked));
        conf_note("two contexts joined through '%s'; reliability asked: %s",
                  env->registration->name, asked);
    }
    conf_step("opening %s", env->two_contexts ? "the subscribing context" : "a context");
    int rc = conf_context_open(env, sub_ctx);
    if (rc != 0 || !env->two_contexts) {
        *pub_ctx = *sub_ctx;
        return rc;
    }
    conf_step("opening the publishing context");
    rc = conf_context_open(env, pub_ctx);
    return rc;
}

void conf_contexts_close(mc_context *sub_ctx, mc_context *pub_ctx)
{
    if (pub_ctx != sub_ctx)
        mc_context_close(pub_ctx);
    mc_context_close(sub_ctx);
}

static const char *meeting_text(const conf_env *env, char *buf, size_t size)
{
    if (!env->two_contexts)
        return "";
    conf_format(buf, size,
                " (publisher and subscriber are in two contexts: registration through '%s' "
                "did not bring them together)",
                env->registration ? env->registration->name : "?");
    return buf;
}

int conf_wait_matched(const conf_env *env, mc_publisher *pub, size_t subs, mc_subscriber *sub,
                      size_t pubs)
{
    char meeting[256];
    if (pub != NULL) {
        conf_step("waiting until the publisher in %s has %zu subscribers matched", which(env, true),
                  subs);
        int rc = mc_publisher_wait_matched(pub, subs, env->wait_ms);
        if (rc != 0) {
            conf_fail("the publisher in %s matched %zu of %zu subscribers within %d ms%s",
                      which(env, true), mc_publisher_matched(pub), subs, env->wait_ms,
                      meeting_text(env, meeting, sizeof(meeting)));
            return rc;
        }
    }
    if (sub != NULL) {
        conf_step("waiting until the subscriber in %s has %zu publishers matched",
                  which(env, false), pubs);
        int rc = mc_subscriber_wait_matched(sub, pubs, env->wait_ms);
        if (rc != 0) {
            conf_fail("the subscriber in %s matched %zu of %zu publishers within %d ms%s",
                      which(env, false), mc_subscriber_matched(sub), pubs, env->wait_ms,
                      meeting_text(env, meeting, sizeof(meeting)));
            return rc;
        }
    }
    return 0;
}

int conf_pair_open(const conf_env *env, const char *topic, conf_pair *pair)
{
    memset(pair, 0, sizeof(*pair));
    conf_sink_init(&pair->sink, env);
    int rc = conf_contexts_open(env, &pair->sub_ctx, &pair->pub_ctx);
    if (rc == 0) {
        conf_step("creating a subscriber and a publisher on '%s'", topic);
        rc = conf_subscribe(pair->sub_ctx, topic, &pair->sink, &pair->sub);
    }
    if (rc == 0)
        rc = mc_publisher_create(pair->pub_ctx, topic, NULL, &pair->pub);
    if (rc == 0)
        rc = conf_wait_matched(env, pair->pub, 1, pair->sub, 1);
    return rc;
}

void conf_pair_close(conf_pair *pair)
{
    conf_step("closing publisher, subscriber and context");
    mc_publisher_destroy(pair->pub);
    mc_subscriber_destroy(pair->sub);
    conf_contexts_close(pair->sub_ctx, pair->pub_ctx);
    conf_sink_fini(&pair->sink);
    memset(pair, 0, sizeof(*pair));
}

bool conf_publish_pattern(mc_publisher *pub, uint64_t count, size_t size, uint64_t first_seq)
{
    unsigned char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        conf_fail("out of memory for a %zu-byte message", size);
        return false;
    }
    bool ok = true;
    for (uint64_t i = 0; ok && i < count; i++) {
        conf_fill(buf, size, first_seq + i);
        int rc = mc_publish(pub, buf, size);
        if (rc != 0) {
            conf_fail("mc_publish of message %llu (%zu bytes) returned %d (%s)",
                      (unsigned long long)(first_seq + i), size, rc, mc_strerror(rc));
            ok = false;
        }
    }
    free(buf);
    return ok;
}

uint64_t conf_dropped(const mc_stats *stats)
{
    uint64_t total = 0;
    for (int i = 0; i < MC_DROP_REASONS; i++)
        total += stats->dropped[i];
    return total;
}

/* ---- the plugin's schema ----------------------------------------------------------------- */

static char *dup_or_null(const char *text)
{
    return text ? strdup(text) : NULL;
}

static const char *const *dup_enum_values(const char *const *values)
{
    if (values == NULL)
        return NULL;
    size_t n = 0;
    while (values[n] != NULL)
        n++;
    char **copy = calloc(n + 1, sizeof(*copy));
    for (size_t i = 0; copy != NULL && i < n; i++)
        copy[i] = strdup(values[i]);
    return (const char *const *)copy;
}

int conf_schema_load(const conf_env *env, conf_schema *out)
{
    memset(out, 0, sizeof(*out));
    mc_loaded_plugin loaded;
    int rc = mc_loader_open_path(env->plugin->path, NULL, &loaded);
    if (rc != 0)
        return rc;
    const mc_plugin_descriptor *d = loaded.desc;
    const char *base = (const char *)d->config;
    size_t stride = d->config_key_size;
    while (base != NULL && ((const mc_config_key *)(base + out->count * stride))->name != NULL)
        out->count++;
    out->keys = calloc(out->count + 1, sizeof(mc_config_key));
    for (size_t i = 0; out->keys != NULL && i < out->count; i++) {
        const mc_config_key *k = (const mc_config_key *)(base + i * stride);
        out->keys[i] = *k;
        out->keys[i].name = dup_or_null(k->name);
        out->keys[i].default_value = dup_or_null(k->default_value);
        out->keys[i].doc = dup_or_null(k->doc);
        out->keys[i].enum_values = dup_enum_values(k->enum_values);
    }
    mc_loader_close(&loaded);
    return out->keys ? 0 : mc_error_set(MC_ENOMEM, "out of memory copying the schema");
}

void conf_schema_free(conf_schema *schema)
{
    for (size_t i = 0; schema->keys != NULL && i < schema->count; i++) {
        mc_config_key *k = &schema->keys[i];
        free((char *)k->name);
        free((char *)k->default_value);
        free((char *)k->doc);
        for (size_t j = 0; k->enum_values != NULL && k->enum_values[j] != NULL; j++)
            free((char *)k->enum_values[j]);
        free((void *)k->enum_values);
    }
    free(schema->keys);
    memset(schema, 0, sizeof(*schema));
}

static void env_name(const conf_env *env, const char *key, char *buf, size_t size)
{
    snprintf(buf, size, "MEMCAST_%s_%s", env->plugin->name, key ? key : "");
    for (char *c = buf; *c != '\0'; c++)
        *c = (char)toupper((unsigned char)*c);
}

static bool enum_has(const mc_config_key *k, const char *value)
{
    for (size_t i = 0; k->enum_values != NULL && k->enum_values[i] != NULL; i++)
        if (strcmp(k->enum_values[i], value) == 0)
            return true;
    return false;
}

/* The keys by which a plugin lets an application ask for lossless delivery. */
static const struct {
    const char *key;
    mc_config_type type;
    const char *value;
} reliable_knobs[] = {
    {"reliable", MC_CFG_BOOL, "true"},
    {"overflow", MC_CFG_ENUM, "block"},
    {"reliability", MC_CFG_ENUM, "reliable"},
    /* A bound on how long a publisher waits for a slow subscriber (shm): long enough for
     * the slowest subscriber of the suite, well short of a case's wait. */
    {"ack_timeout", MC_CFG_DURATION, "2s"},
};

void conf_ask_reliable(const conf_env *env, char *what, size_t size)
{
    snprintf(what, size, "no key of the schema asks for it: defaults");
    conf_schema schema;
    if (conf_schema_load(env, &schema) != 0)
        return;
    size_t used = 0;
    for (size_t i = 0; i < schema.count; i++) {
        const mc_config_key *k = &schema.keys[i];
        for (size_t j = 0; j < sizeof(reliable_knobs) / sizeof(reliable_knobs[0]); j++) {
            if (strcmp(k->name, reliable_knobs[j].key) != 0 || k->type != reliable_knobs[j].type)
                continue;
            if (k->type == MC_CFG_ENUM && !enum_has(k, reliable_knobs[j].value))
                continue;
            char var[128];
            env_name(env, k->name, var, sizeof(var));
            setenv(var, reliable_knobs[j].value, 1);
            int n = snprintf(what + used, size - used, "%s%s=%s", used ? ", " : "", var,
                             reliable_knobs[j].value);
            if (n > 0 && (size_t)n < size - used)
                used += (size_t)n;
        }
    }
    conf_schema_free(&schema);
}

void conf_clear_plugin_env(const conf_env *env)
{
    char prefix[96];
    env_name(env, NULL, prefix, sizeof(prefix));
    size_t len = strlen(prefix);
    bool removed = true;
    while (removed) { /* unsetenv reshuffles environ: start over after each removal */
        removed = false;
        for (char **e = environ; e != NULL && *e != NULL; e++) {
            const char *eq = strchr(*e, '=');
            if (eq == NULL || strncmp(*e, prefix, len) != 0)
                continue;
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
            unsetenv(name);
            removed = true;
            break;
        }
    }
}

/* ---- helper processes and time ----------------------------------------------------------- */

int conf_spawn(int (*fn)(const conf_env *env, void *arg), const conf_env *env, void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(env, arg) == 0 ? 0 : 1);
    if (pid < 0)
        conf_fail("fork failed: %s", strerror(errno));
    return (int)pid;
}

bool conf_wait_child(int pid, int timeout_ms, bool group, int *status)
{
    int64_t deadline = conf_now_ms() + timeout_ms;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0); /* readable once the child exits */
    bool exited = false;
    for (;;) {
        pid_t done = waitpid(pid, status, WNOHANG);
        if (done == pid) {
            exited = true;
            break;
        }
        if (done < 0 && errno != EINTR)
            break;
        int64_t left = deadline - conf_now_ms();
        if (left <= 0)
            break;
        if (fd >= 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            poll(&p, 1, (int)left);
        } else {
            struct timespec tick = {.tv_sec = 0, .tv_nsec = 10000000};
            nanosleep(&tick, NULL); /* a kernel without pidfd: look every 10 ms */
        }
    }
    if (fd >= 0)
        close(fd);
    if (!exited) {
        kill(group ? -pid : pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0 && errno == EINTR)
            ;
    }
    return exited;
}

int conf_reap(int pid, int timeout_ms)
{
    int status = 0;
    if (pid <= 0)
        return -1;
    return conf_wait_child(pid, timeout_ms, false, &status) ? status : -1;
}

void conf_format(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

int64_t conf_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- names of flags ------------------------------------------------------------------------ */

static void flags_text(uint32_t flags, const char *const names[], size_t count, char *buf,
                       size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (!(flags & (1u << i)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", names[i]);
        if (n < 0 || (size_t)n >= size - used)
            return;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, size, "none");
}

void conf_caps_text(uint32_t caps, char *buf, size_t size)
{
    static const char *const names[] = {"ordered", "reliable", "zero-copy", "multi-process",
                                        "thread-safe"};
    flags_text(caps, names, sizeof(names) / sizeof(names[0]), buf, size);
}

void conf_scopes_text(uint32_t scopes, char *buf, size_t size)
{
    static const char *const names[] = {"process", "host", "network"};
    flags_text(scopes, names, sizeof(names) / sizeof(names[0]), buf, size);
}
