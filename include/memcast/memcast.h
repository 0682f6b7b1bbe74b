/*
 * memcast: transport-neutral publish/subscribe.
 *
 * Conventions, true for every function below unless its comment says otherwise:
 *  - Functions return 0 (MC_OK) or a negative mc_err. mc_last_error() then holds a
 *    thread-local sentence that names what was wrong (topic, file:line, key, size).
 *  - Handles are opaque. Destroy functions accept NULL.
 *  - Thread safety: every function may be called from any thread at any time on
 *    distinct handles. On the same publisher, mc_publish/mc_loan/mc_commit are
 *    serialised internally and may be called from several threads. Destroying a
 *    handle while another thread still uses it is the caller's bug.
 *  - Option structs carry their size: initialise them with the matching
 *    *_options_init() so that a program built against this header keeps working
 *    with later versions of the library.
 */
#ifndef MEMCAST_MEMCAST_H
#define MEMCAST_MEMCAST_H

#include <stddef.h>
#include <stdint.h>

#include <memcast/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MC_API __attribute__((visibility("default")))
#else
#define MC_API
#endif

/* ---- errors ---------------------------------------------------------------------------- */

typedef enum mc_err {
    MC_OK = 0,
    MC_EINVAL = -1,      /* an argument is invalid (NULL handle, bad topic, bad size) */
    MC_ENOMEM = -2,      /* out of memory */
    MC_ENOSYS = -3,      /* the operation is not implemented by any transport */
    MC_ENOTSUP = -4,     /* the transport lacks the capability asked for */
    MC_EAGAIN = -5,      /* nothing available now; try again */
    MC_ETIMEDOUT = -6,   /* a wait ran out */
    MC_EMSGSIZE = -7,    /* a message is larger than the transport allows */
    MC_ENOENT = -8,      /* a file, plugin or entry does not exist */
    MC_EEXIST = -9,      /* already exists */
    MC_EBUSY = -10,      /* the handle is in use (for example inside its own callback) */
    MC_ECLOSED = -11,    /* the context or endpoint is closing */
    MC_ENOSPC = -12,     /* no space left (queue, shared memory) */
    MC_EABI = -13,       /* a plugin's ABI does not match this library */
    MC_ECONFIG = -14,    /* the configuration is invalid */
    MC_EPLUGIN = -15,    /* a plugin could not be loaded or initialised */
    MC_ETRANSPORT = -16, /* a transport reported a failure; see mc_last_error() */
    MC_EINTERNAL = -17,  /* a bug in memcast: please report it with mc_last_error() */
} mc_err;

/* Never NULL: a short English name for an mc_err ("invalid argument"). Thread-safe. */
MC_API const char *mc_strerror(int err);

/* The detail of the last failure on this thread ("topic 'a b': ' ' is not allowed").
 * Valid until the next memcast call on this thread. Never NULL; "" when there is none. */
MC_API const char *mc_last_error(void);

/* The library's version, "MAJOR.MINOR.PATCH". Compare with MC_VERSION_STRING. */
MC_API const char *mc_version(void);

/* ---- logging --------------------------------------------------------------------------- */

typedef enum mc_log_level {
    MC_LOG_ERROR = 0,
    MC_LOG_WARN = 1,
    MC_LOG_INFO = 2,
    MC_LOG_DEBUG = 3,
} mc_log_level;

/* origin is "memcast" for the framework or a plugin's name ("inproc"). */
typedef void (*mc_log_fn)(void *user, mc_log_level level, const char *origin, const char *message);

/* Replaces the process-wide log sink (NULL restores the default, which writes to stderr).
 * Messages above a context's [framework] log_level are not produced. The sink may be
 * called from any thread, concurrently; it must not call back into memcast. */
MC_API void mc_set_log_handler(mc_log_fn fn, void *user);

/* ---- identities ------------------------------------------------------------------------ */

/* An endpoint (publisher or subscriber): the random 128-bit id of its context plus a
 * number unique within that context. */
typedef struct mc_endpoint_id {
    uint64_t context_hi;
    uint64_t context_lo;
    uint64_t serial;
} mc_endpoint_id;

/* Formats an id as 32 hex digits, '.', serial; buf needs MC_ID_STRLEN bytes. Returns buf. */
#define MC_ID_STRLEN 56
MC_API char *mc_endpoint_id_format(const mc_endpoint_id *id, char *buf, size_t size);

/* ---- context --------------------------------------------------------------------------- */

typedef struct mc_context mc_context;

/* Opens a context. config_path is an INI file, or NULL for the built-in defaults (plus
 * MEMCAST_<SECTION>_<KEY> environment overrides, and MEMCAST_CONFIG naming a file).
 * A bad configuration fails with MC_ECONFIG naming file, line and key. Plugins that
 * fail to load are logged and skipped; opening fails with MC_EPLUGIN only when no data
 * transport at all could be loaded. Thread-safe. */
MC_API int mc_context_open(const char *config_path, mc_context **out);

/* Destroys every publisher and subscriber still open, stops the transports, joins their
 * threads and frees everything. Must not be called from inside a memcast callback
 * (returns MC_EBUSY). Not thread-safe with other calls on the same context. */
MC_API int mc_context_close(mc_context *ctx);

/* The context's random 128-bit id. */
MC_API void mc_context_id(const mc_context *ctx, uint64_t *hi, uint64_t *lo);

/* ---- topics ---------------------------------------------------------------------------- */

/* Longest topic name, in bytes. Topics are 1..MC_TOPIC_MAX bytes of [A-Za-z0-9_.-/],
 * must not start or end with '/', and contain neither "//" nor a "." or ".." segment. */
#define MC_TOPIC_MAX 200

/* 0 when topic is a valid name, MC_EINVAL with the reason in mc_last_error() otherwise. */
MC_API int mc_topic_validate(const char *topic);

/* ---- events ---------------------------------------------------------------------------- */

typedef enum mc_event_kind {
    MC_EVENT_MATCHED = 1,   /* a peer endpoint now exchanges data with this one */
    MC_EVENT_UNMATCHED = 2, /* that peer went away or closed */
} mc_event_kind;

typedef struct mc_event {
    mc_event_kind kind;
    mc_endpoint_id peer;   /* the other side */
    const char *transport; /* which transport carries the pair ("inproc") */
    size_t matched;        /* how many peers are matched after this event */
} mc_event;

/* Called on the thread whose call made the match change (creating or destroying an
 * endpoint, or a transport thread when a remote peer comes or goes), with the context's
 * registry lock held: keep it short. It may publish and create endpoints; it must not
 * destroy any endpoint, close the context or wait for matches (those return MC_EBUSY:
 * a transport closing an endpoint may wait for its own thread, which may be waiting for
 * the registry lock). The event is valid during the call only. */
typedef void (*mc_event_fn)(void *user, const mc_event *event);

/* ---- statistics ------------------------------------------------------------------------ */

typedef enum mc_drop_reason {
    MC_DROP_OVERRUN = 0,   /* a reader was too slow: the oldest messages were overwritten */
    MC_DROP_DUPLICATE = 1, /* the same sample arrived over a second transport */
    MC_DROP_LOST = 2,      /* the transport lost it (network loss, expired reassembly) */
    MC_DROP_INVALID = 3,   /* it failed validation (size, checksum, malformed) */
    MC_DROP_REASONS = 4
} mc_drop_reason;

/* Never NULL: a short name for a drop reason ("overrun"). */
MC_API const char *mc_drop_reason_name(mc_drop_reason reason);

#define MC_STATS_TRANSPORTS 8

typedef struct mc_transport_stats {
    char name[32];     /* the transport's name */
    uint64_t messages; /* sent (publisher) or delivered (subscriber) over it */
    uint64_t bytes;    /* payload bytes of those messages */
    uint64_t dropped;  /* drops it reported, any reason */
} mc_transport_stats;

typedef struct mc_stats {
    size_t struct_size; /* set by mc_stats_init() */
    uint64_t messages;  /* published; or received (callback run, or queued for mc_take) */
    uint64_t bytes;     /* payload bytes of those */
    uint64_t dropped[MC_DROP_REASONS]; /* by reason */
    size_t matched;                    /* peers matched now */
    size_t transport_count;            /* used entries of transports[] */
    mc_transport_stats transports[MC_STATS_TRANSPORTS];
} mc_stats;

MC_API void mc_stats_init(mc_stats *stats);

/* ---- publishers ------------------------------------------------------------------------ */

typedef struct mc_publisher mc_publisher;

typedef struct mc_pub_options {
    size_t struct_size;   /* set by mc_pub_options_init() */
    const char *type;     /* optional data type name ("sensor.Imu"); copied */
    const char *encoding; /* optional encoding ("protobuf", "raw"); copied */
    mc_event_fn on_event; /* optional: matched/unmatched events */
    void *user;           /* passed to on_event */
} mc_pub_options;

MC_API void mc_pub_options_init(mc_pub_options *opts);

/* Creates a publisher on topic. opts may be NULL. Subscribers with a different non-empty
 * type or encoding on the same topic are not matched (and a warning is logged). */
MC_API int mc_publisher_create(mc_context *ctx, const char *topic, const mc_pub_options *opts,
                               mc_publisher **out);

/* Closes the publisher; matched subscribers get MC_EVENT_UNMATCHED. May be called inside a
 * message callback of another endpoint; inside any event callback it returns MC_EBUSY. */
MC_API int mc_publisher_destroy(mc_publisher *pub);

/* Sends size bytes (0 allowed). The data is copied before the call returns. Returns
 * MC_EMSGSIZE, naming the limit, when a matched transport cannot carry that size. With no
 * subscriber matched it succeeds and sends nothing. */
MC_API int mc_publish(mc_publisher *pub, const void *data, size_t size);

/* Zero-copy publish: lends a buffer of size bytes to write the message into, straight in
 * the transport's memory where it can (shared memory), else in a heap buffer that is
 * copied once at commit. One loan per publisher at a time (MC_EBUSY otherwise). */
MC_API int mc_loan(mc_publisher *pub, size_t size, void **buf);

/* Publishes the first size bytes (size <= the loaned size) of the loaned buffer and ends
 * the loan. buf is invalid afterwards, also on failure. */
MC_API int mc_commit(mc_publisher *pub, void *buf, size_t size);

/* Ends a loan without publishing. */
MC_API int mc_loan_discard(mc_publisher *pub, void *buf);

/* How many subscribers are matched now. */
MC_API size_t mc_publisher_matched(mc_publisher *pub);

/* Waits until at least count subscribers are matched: 0, or MC_ETIMEDOUT after
 * timeout_ms (negative waits for ever). */
MC_API int mc_publisher_wait_matched(mc_publisher *pub, size_t count, int timeout_ms);

MC_API int mc_publisher_stats(mc_publisher *pub, mc_stats *stats);

MC_API const mc_endpoint_id *mc_publisher_id(const mc_publisher *pub);

/* ---- received messages ----------------------------------------------------------------- */

typedef struct mc_msg mc_msg;

/* The payload; valid while the message is (during the callback, or until mc_msg_release).
 * It may point straight into a transport's memory: read it, do not write it. */
MC_API const void *mc_msg_data(const mc_msg *msg);
MC_API size_t mc_msg_size(const mc_msg *msg);
MC_API const mc_endpoint_id *mc_msg_publisher(const mc_msg *msg);
/* The publisher's sequence number: 1 for its first message, +1 for each publish. */
MC_API uint64_t mc_msg_seq(const mc_msg *msg);
/* When it was published: nanoseconds since the Unix epoch (CLOCK_REALTIME). */
MC_API int64_t mc_msg_send_time_ns(const mc_msg *msg);
/* The transport that delivered it ("inproc"). */
MC_API const char *mc_msg_transport(const mc_msg *msg);

/* Frees a message obtained from mc_take. NULL is ignored. */
MC_API void mc_msg_release(mc_msg *msg);

/* ---- subscribers ----------------------------------------------------------------------- */

typedef struct mc_subscriber mc_subscriber;

/* A subscriber callback runs on a transport's thread, one call at a time per subscriber.
 * Inside it you may publish, loan, commit, create or destroy *other* publishers and
 * subscribers and read stats. You may not destroy this subscriber or close the context
 * (both return MC_EBUSY). msg is valid until the callback returns. */
typedef void (*mc_msg_fn)(void *user, mc_subscriber *sub, const mc_msg *msg);

typedef struct mc_sub_options {
    size_t struct_size;   /* set by mc_sub_options_init() */
    const char *type;     /* optional, see mc_pub_options */
    const char *encoding; /* optional */
    mc_msg_fn on_message; /* NULL: pull mode, read with mc_take() */
    void *user;           /* passed to on_message and on_event */
    mc_event_fn on_event; /* optional: matched/unmatched events */
    size_t queue_depth;   /* pull mode: messages kept before the oldest is dropped; 0 = 64 */
} mc_sub_options;

MC_API void mc_sub_options_init(mc_sub_options *opts);

MC_API int mc_subscriber_create(mc_context *ctx, const char *topic, const mc_sub_options *opts,
                                mc_subscriber **out);

/* Stops delivery: when it returns, the callback is not running and will not run again.
 * Returns MC_EBUSY when called from this subscriber's own callback. */
MC_API int mc_subscriber_destroy(mc_subscriber *sub);

/* Pull mode: waits up to timeout_ms (0 polls, negative waits for ever) for the next
 * message. Returns MC_EAGAIN (timeout 0) or MC_ETIMEDOUT when none came, MC_EINVAL for
 * a subscriber that has a callback. Release the message with mc_msg_release(). */
MC_API int mc_take(mc_subscriber *sub, int timeout_ms, mc_msg **out);

MC_API size_t mc_subscriber_matched(mc_subscriber *sub);
MC_API int mc_subscriber_wait_matched(mc_subscriber *sub, size_t count, int timeout_ms);
MC_API int mc_subscriber_stats(mc_subscriber *sub, mc_stats *stats);
MC_API const mc_endpoint_id *mc_subscriber_id(const mc_subscriber *sub);

/* What a subscriber received from one publisher, and lost of it: duplicates, and the losses
 * its transport attributed to that publisher (udp attributes every loss; a loss a
 * transport cannot attribute is counted in mc_stats only). */
typedef struct mc_source_stats {
    mc_endpoint_id publisher;
    uint64_t messages;
    uint64_t dropped[MC_DROP_REASONS];
} mc_source_stats;

/* Copies up to max entries (one per publisher this subscriber received from or lost
 * samples of, oldest first) into out, and sets *count to how many there are, which may
 * exceed max. */
MC_API int mc_subscriber_sources(mc_subscriber *sub, mc_source_stats *out, size_t max,
                                 size_t *count);

#ifdef __cplusplus
}
#endif

#endif /* MEMCAST_MEMCAST_H */
