/*
 * memcast-conformance: what the runner (runner.c) and the cases (case_*.c) share.
 *
 * The runner forks one child per case. The child runs the case's function and reports
 * through a conf_report that lives in shared memory, so that the runner still knows the
 * failed step, the reason and the last memcast error when the plugin crashed the child
 * or hung it until the timeout. Cases never print to stdout: stdout is the TAP stream.
 */
#ifndef MEMCAST_CONFORMANCE_H
#define MEMCAST_CONFORMANCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <memcast/memcast.h>
#include <memcast/plugin.h>

#define CONF_PATH_MAX 4096

/* ---- what the runner learnt about the plugin before any case ran --------------------- */

typedef struct conf_plugin {
    char name[MC_PLUGIN_NAME_MAX + 1];
    char path[CONF_PATH_MAX]; /* the .la or .so as given or found */
    char dir[CONF_PATH_MAX];  /* its directory: [NAME] path in the generated config */
    char version[64];
    unsigned abi_major;
    unsigned abi_minor;
    uint32_t roles;
    uint32_t scopes;
    uint32_t caps;
    uint64_t max_message_size;
} conf_plugin;

/* Everything a case may read. */
typedef struct conf_env {
    const conf_plugin *plugin;
    /* What joins contexts: the plugin itself when it has MC_ROLE_REGISTRATION, else the
     * --registration plugin or the default (udp); NULL when there is none. */
    const conf_plugin *registration;
    /* The data transport loaded next to a plugin without MC_ROLE_DATA; NULL otherwise. */
    const conf_plugin *data;
    /* [framework] plugins = NAME (+ the data transport, + the registration transport when
     * the case needs one to meet), [NAME] path = DIR + the --config section */
    const char *config_path;
    const char *tmpdir; /* private to this run; cases may write files here */
    char domain[33];    /* unique per case; also set as MEMCAST_FRAMEWORK_DOMAIN */
    int timeout_s;      /* per case */
    int wait_ms;        /* longest a case waits for one expected event */
    bool two_contexts;  /* CONF_MEET_CONTEXTS for a plugin without MC_SCOPE_PROCESS */
} conf_env;

/* ---- the case table ------------------------------------------------------------------ */

typedef void (*conf_case_fn)(const conf_env *env);

/* Where the endpoints of a case live, and so what must bring them together. */
typedef enum conf_meet {
    CONF_MEET_NONE = 0, /* nothing has to meet across contexts */
    /* A publisher and a subscriber in this process: in one context when the plugin bridges
     * MC_SCOPE_PROCESS, else in two contexts joined by the registration transport (which
     * needs MC_SCOPE_HOST: two contexts of one process are on one host). */
    CONF_MEET_CONTEXTS = 1,
    /* In processes of their own, joined by the registration transport. */
    CONF_MEET_PROCESSES = 2,
} conf_meet;

typedef struct conf_case {
    const char *suite;
    const char *name;
    const char *summary; /* what it asserts, for --list */
    uint32_t roles;      /* every MC_ROLE_* bit needed */
    uint32_t caps;       /* every MC_CAP_* bit needed */
    uint32_t scopes;     /* at least one of these MC_SCOPE_* bits needed; 0: none */
    conf_meet meet;
    conf_case_fn run;
} conf_case;

/* Suites in the order they run; cases are listed per suite in their files. */
extern const conf_case conf_cases_abi[];
extern const conf_case conf_cases_config[];
extern const conf_case conf_cases_lifecycle[];
extern const conf_case conf_cases_loopback[];
extern const conf_case conf_cases_multiprocess[];
extern const conf_case conf_cases_limits[];
extern const conf_case conf_cases_ordering[];
extern const conf_case conf_cases_zerocopy[];
extern const conf_case conf_cases_reliable[];
extern const conf_case conf_cases_robustness[];
extern const conf_case conf_cases_concurrency[];
extern const conf_case conf_cases_registration[];

/* ---- reporting from inside a case (any process of the case may call these) ------------ */

#define CONF_REASON_MAX 1024
#define CONF_DIAG_MAX   6144
#define CONF_LOG_LINES  6
#define CONF_LOG_MAX    320

typedef enum conf_verdict { CONF_PASS = 0, CONF_FAIL = 1, CONF_SKIP = 77 } conf_verdict;

typedef struct conf_report {
    pthread_mutex_t lock; /* process-shared */
    int verdict;          /* conf_verdict; the first FAIL wins over everything */
    char step[256];       /* what the case is doing: shown when it crashes or hangs */
    char fail_step[256];  /* what it was doing when the first failure was recorded */
    char reason[CONF_REASON_MAX];
    char last_error[CONF_REASON_MAX]; /* mc_last_error() when the reason was recorded */
    char diag[CONF_DIAG_MAX];         /* further lines, '\n'-separated */
    size_t diag_len;
    char log[CONF_LOG_LINES][CONF_LOG_MAX]; /* the plugin's and framework's last log lines */
    unsigned log_next;
    bool finished; /* the case function returned: an exit before that is a failure */
} conf_report;

/* Set up by the runner in the case process before the case runs. */
void conf_report_attach(conf_report *report, bool verbose);

/* Records what the case is about to do. */
void conf_step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Records a failure; the first one becomes the reason, later ones go to the diagnostics.
 * The current mc_last_error() is captured with it. */
void conf_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Marks the case skipped (unless it already failed). */
void conf_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Adds a diagnostic line shown with the verdict. */
void conf_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool conf_failed(void);

/* Checks for cases; each jumps to the case's `out:` label on failure. */
#define CONF_EXPECT(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            conf_fail(__VA_ARGS__);                                                                \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* For helpers that record their own failure (conf_sink_verify, conf_resources_same...). */
#define CONF_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            goto out;                                                                              \
    } while (0)

/* Calls a memcast function that must return 0. */
#define CONF_CALL(call)                                                                            \
    do {                                                                                           \
        int conf_rc_ = (call);                                                                     \
        if (conf_rc_ != 0) {                                                                       \
            conf_fail("%s returned %d (%s)", #call, conf_rc_, mc_strerror(conf_rc_));              \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* ---- helpers for cases (support.c) ------------------------------------------------------ */

/* Opens a context from env->config_path and checks that exactly the plugin under test was
 * loaded. */
int conf_context_open(const conf_env *env, mc_context **out);
/* The same for another configuration file. */
int conf_context_open_file(const conf_env *env, const char *path, mc_context **out);

/* Writes a configuration naming only the plugin, with its section holding `lines` (may be
 * NULL or ""), into env->tmpdir; path receives its name. */
int conf_write_config(const conf_env *env, const char *tag, const char *lines, char *path,
                      size_t size);

/* Resources a plugin must give back. */
typedef struct conf_resources {
    int fds;
    int threads;
    int shm_names;       /* /dev/shm names mentioning the case's domain or pid */
    uint64_t fd_set[16]; /* which of fds 0..1023 are open, to name the leaked ones */
} conf_resources;
void conf_resources_count(const conf_env *env, conf_resources *out);
/* Fails the case when after holds more than before; what names what was cycled. */
bool conf_resources_same(const conf_env *env, const conf_resources *before,
                         const conf_resources *after, const char *what);

/* Payload pattern: byte i of message seq depends on both, so any mix-up shows. */
void conf_fill(void *buf, size_t size, uint64_t seq);
bool conf_payload_ok(const void *buf, size_t size, uint64_t seq);

/* A subscriber callback target that counts, checks payloads and order per publisher. */
#define CONF_SINK_PUBLISHERS 8

typedef struct conf_sink_publisher {
    mc_endpoint_id id;
    uint64_t count;
    uint64_t last_seq;
    uint64_t out_of_order; /* seq not greater than the previous one */
    uint64_t gaps;         /* seq more than one past the previous one */
} conf_sink_publisher;

typedef struct conf_sink {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    const char *transport; /* expected mc_msg_transport() */
    bool check_payload;
    uint64_t delay_ns; /* each callback takes at least this long: a slow subscriber */
    uint64_t count;
    uint64_t bad_payload;
    uint64_t wrong_transport;
    char seen_transport[32];
    uint64_t too_many_publishers;
    uint64_t bytes;
    size_t last_size;
    unsigned char first_bytes[8]; /* byte 0 of the first 8 messages */
    const void *last_data;
    conf_sink_publisher pubs[CONF_SINK_PUBLISHERS];
    size_t pub_count;
} conf_sink;

void conf_sink_init(conf_sink *sink, const conf_env *env);
void conf_sink_fini(conf_sink *sink);
void conf_sink_callback(void *user, mc_subscriber *sub, const mc_msg *msg);
/* Waits until the sink counted at least n messages; false after env->wait_ms. */
bool conf_sink_wait(conf_sink *sink, const conf_env *env, uint64_t n);
/* Waits until pred(sink, arg) holds (called with the sink locked); false after ms. */
bool conf_sink_wait_for(conf_sink *sink, bool (*pred)(const conf_sink *sink, const void *arg),
                        const void *arg, int ms);
/* For transports that may lose messages: waits until the sink counted expected messages,
 * or expected minus those the subscriber's stats report dropped, or until nothing arrived
 * for a second. Returns what the sink counted. */
uint64_t conf_sink_settle(conf_sink *sink, const conf_env *env, mc_subscriber *sub,
                          uint64_t expected);
uint64_t conf_sink_count(conf_sink *sink);
/* What the callback wrote, read under the sink's lock: the callback runs on a transport's
 * thread, which the sanitizers cannot always see ordered after this one. */
size_t conf_sink_last_size(conf_sink *sink);
const void *conf_sink_last_data(conf_sink *sink);
uint64_t conf_sink_bytes(conf_sink *sink);
unsigned char conf_sink_first_byte(conf_sink *sink, size_t i);
/* Changes what the callback does, under the sink's lock. */
void conf_sink_set_checks(conf_sink *sink, bool check_payload, uint64_t delay_ns);
/* Creates a callback subscriber feeding sink. */
int conf_subscribe(mc_context *ctx, const char *topic, conf_sink *sink, mc_subscriber **out);

/* Fails unless the sink saw exactly its messages intact from the right transport. */
bool conf_sink_verify(conf_sink *sink, uint64_t expected, bool ordered);

/* The contexts of a CONF_MEET_CONTEXTS case: subscribers go into sub_ctx, publishers into
 * pub_ctx. They are one context for a plugin of MC_SCOPE_PROCESS and two otherwise
 * (env->two_contexts); two contexts ask for lossless delivery (conf_ask_reliable) when the
 * plugin claims MC_CAP_RELIABLE, since nothing else stops a publisher from overrunning a
 * subscriber that is no longer called from inside mc_publish. */
int conf_contexts_open(const conf_env *env, mc_context **sub_ctx, mc_context **pub_ctx);
void conf_contexts_close(mc_context *sub_ctx, mc_context *pub_ctx);

/* Waits until pub (may be NULL) has at least subs subscribers matched and sub (may be
 * NULL) at least pubs publishers: both sides, so that what is published next reaches the
 * subscriber. Records a failure naming the side that was not matched and returns
 * MC_ETIMEDOUT after env->wait_ms. */
int conf_wait_matched(const conf_env *env, mc_publisher *pub, size_t subs, mc_subscriber *sub,
                      size_t pubs);

/* One publisher and one subscriber (feeding sink) on topic, matched on both sides. */
typedef struct conf_pair {
    mc_context *sub_ctx;
    mc_context *pub_ctx; /* == sub_ctx unless env->two_contexts */
    mc_publisher *pub;
    mc_subscriber *sub;
    conf_sink sink;
} conf_pair;
int conf_pair_open(const conf_env *env, const char *topic, conf_pair *pair);
void conf_pair_close(conf_pair *pair);

/* Publishes count messages of size bytes with the pattern, seq numbers first_seq... */
bool conf_publish_pattern(mc_publisher *pub, uint64_t count, size_t size, uint64_t first_seq);

/* Total drops of a subscriber or publisher, any reason. */
uint64_t conf_dropped(const mc_stats *stats);

/* The plugin's config schema, copied out of the module (strings included). */
typedef struct conf_schema {
    size_t count;
    mc_config_key *keys;
} conf_schema;
int conf_schema_load(const conf_env *env, conf_schema *out);
void conf_schema_free(conf_schema *schema);

/* Sets the plugin's own keys that ask for lossless delivery (for example overflow = block,
 * ack_timeout = 2s), through MEMCAST_<NAME>_<KEY>, when its schema has them. Describes
 * what it set in what. */
void conf_ask_reliable(const conf_env *env, char *what, size_t size);

/* Removes every MEMCAST_<NAME>_* variable: cases that judge defaults run without them. */
void conf_clear_plugin_env(const conf_env *env);

/* Forks a helper process of the case; the child runs fn and exits with its result (0 or
 * 1), the parent gets its pid. */
int conf_spawn(int (*fn)(const conf_env *env, void *arg), const conf_env *env, void *arg);
/* Waits for a helper up to timeout_ms; kills it when it overstays. Returns its exit
 * status as waitpid reports it, or -1 on timeout. */
int conf_reap(int pid, int timeout_ms);
/* Waits for child pid up to timeout_ms. True with *status when it exited in time; false
 * after killing it (its whole process group when group is set) and reaping it. */
bool conf_wait_child(int pid, int timeout_ms, bool group, int *status);

int64_t conf_now_ms(void);

/* snprintf for messages that may be cut short: truncation is fine there. */
void conf_format(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Names of flags, for messages ("ordered, zero-copy"). */
void conf_caps_text(uint32_t caps, char *buf, size_t size);
void conf_scopes_text(uint32_t scopes, char *buf, size_t size);

/* The defined dynamic symbols of an ELF shared object (elf_exports.c): calls fn for each. */
int conf_elf_exports(const char *path, void (*fn)(void *user, const char *name), void *user,
                     char *why, size_t why_size);

#endif
