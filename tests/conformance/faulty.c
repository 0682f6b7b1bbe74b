/*
 * faulty: a working transport (worker thread, unbounded FIFO, loans) that claims every
 * capability and breaks exactly one promise when its [faulty] fault key asks for it. The
 * conformance suite's own tests (faults.sh) run it with each fault and check the verdict:
 * the crash fails the cases that publish and the rest of the suite still runs, the hang
 * hits the timeout, each leak fails lifecycle, each broken promise fails its suite.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memcast/plugin.h>

enum fault {
    FAULT_NONE,
    FAULT_CRASH,       /* send() of the second message kills the process with SIGSEGV */
    FAULT_HANG,        /* send() of the second message never returns */
    FAULT_EXIT,        /* send() of the second message calls exit(0) */
    FAULT_REORDER,     /* messages 1,2,3,4 are delivered as 2,1,4,3 */
    FAULT_DROP,        /* every 100th message is silently lost */
    FAULT_LEAK_FD,     /* init opens /dev/null and never closes it */
    FAULT_LEAK_THREAD, /* init starts a thread that fini never joins */
    FAULT_LEAK_SHM,    /* init creates a /dev/shm name that fini never removes */
    FAULT_LOAN_FAILS,  /* loan() fails although MC_CAP_ZERO_COPY is claimed */
};

static const char *const fault_names[] = {
    "none",    "crash",       "hang",     "exit",       "reorder", "drop",
    "leak_fd", "leak_thread", "leak_shm", "loan_fails", NULL,
};

static const mc_config_key faulty_config[] = {
    {.name = "fault",
     .type = MC_CFG_ENUM,
     .default_value = "none",
     .doc = "the promise to break",
     .enum_values = fault_names},
    {.name = NULL},
};

typedef struct job {
    struct job *next;
    mc_sample sample;
    size_t count;
    mc_endpoint_id *targets;
    unsigned char payload[];
} job;

struct mc_plugin_sub {
    mc_plugin *plugin;
    mc_endpoint_id id;
    void *cookie;
    unsigned in_flight;
    struct mc_plugin_sub *next;
};

struct mc_plugin_pub {
    mc_plugin *plugin;
    mc_endpoint_id *peers;
    size_t count;
    job *held; /* FAULT_REORDER: an odd message waiting for its successor */
};

struct mc_plugin {
    const mc_host *host;
    int fault;
    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_cond_t idle;
    job *head, *tail;
    struct mc_plugin_sub *subs;
    pthread_t worker;
    bool stopping;
};

#define FAULTY_MAX_MESSAGE (1u << 20)

static void *forever(void *arg)
{
    for (;;)
        pause();
    return arg;
}

/* ---- worker ---------------------------------------------------------------------------- */

static void deliver_to(mc_plugin *p, const mc_endpoint_id *id, const mc_sample *sample)
{
    pthread_mutex_lock(&p->lock);
    struct mc_plugin_sub *sub = p->subs;
    while (sub != NULL && memcmp(&sub->id, id, sizeof(*id)) != 0)
        sub = sub->next;
    if (sub != NULL)
        sub->in_flight++;
    pthread_mutex_unlock(&p->lock);
    if (sub == NULL)
        return;
    p->host->deliver(p->host->ctx, sub->cookie, sample);
    pthread_mutex_lock(&p->lock);
    sub->in_flight--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg)
{
    mc_plugin *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        job *j = p->head;
        if (j == NULL)
            break;
        p->head = j->next;
        if (p->head == NULL)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < j->count; i++)
            deliver_to(p, &j->targets[i], &j->sample);
        free(j->targets);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- instance ---------------------------------------------------------------------------- */

static void start_leak(mc_plugin *p)
{
    if (p->fault == FAULT_LEAK_FD) {
        (void)open("/dev/null", O_RDONLY);
    } else if (p->fault == FAULT_LEAK_THREAD) {
        pthread_t t;
        if (pthread_create(&t, NULL, forever, NULL) == 0)
            pthread_detach(t);
    } else if (p->fault == FAULT_LEAK_SHM) {
        char name[96];
        snprintf(name, sizeof(name), "/%s-faulty-%016llx", p->host->domain,
                 (unsigned long long)p->host->context_lo); /* one per context */
        int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
        if (fd >= 0)
            close(fd);
    }
}

static int faulty_init(const mc_host *host, mc_plugin **out)
{
    mc_plugin *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return MC_ENOMEM;
    p->host = host;
    int rc = host->config_enum(host->ctx, "fault", &p->fault);
    if (rc != 0) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (pthread_create(&p->worker, NULL, worker_main, p) != 0) {
        host->set_error(host->ctx, "cannot start the worker thread");
        pthread_cond_destroy(&p->idle);
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return MC_ETRANSPORT;
    }
    start_leak(p);
    *out = p;
    return 0;
}

static void faulty_fini(mc_plugin *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->worker, NULL);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int faulty_limits(mc_plugin *p, mc_plugin_limits *out)
{
    out->max_message_size = FAULTY_MAX_MESSAGE;
    return 0;
}

/* ---- endpoints ----------------------------------------------------------------------------- */

static int faulty_pub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                           mc_plugin_pub **out)
{
    mc_plugin_pub *pub = calloc(1, sizeof(*pub));
    if (pub == NULL)
        return MC_ENOMEM;
    pub->plugin = p;
    *out = pub;
    return 0;
}

static void faulty_pub_close(mc_plugin_pub *pub)
{
    if (pub->held != NULL)
        free(pub->held->targets);
    free(pub->held);
    free(pub->peers);
    free(pub);
}

static int faulty_sub_open(mc_plugin *p, const mc_endpoint_info *info, void *cookie,
                           mc_plugin_sub **out)
{
    mc_plugin_sub *sub = calloc(1, sizeof(*sub));
    if (sub == NULL)
        return MC_ENOMEM;
    *sub = (mc_plugin_sub){.plugin = p, .id = info->id, .cookie = cookie};
    pthread_mutex_lock(&p->lock);
    sub->next = p->subs;
    p->subs = sub;
    pthread_mutex_unlock(&p->lock);
    *out = sub;
    return 0;
}

static void faulty_sub_close(mc_plugin_sub *sub)
{
    mc_plugin *p = sub->plugin;
    pthread_mutex_lock(&p->lock);
    for (mc_plugin_sub **link = &p->subs; *link != NULL; link = &(*link)->next) {
        if (*link == sub) {
            *link = sub->next;
            break;
        }
    }
    while (sub->in_flight > 0 && !pthread_equal(pthread_self(), p->worker))
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    free(sub);
}

static int faulty_pub_connect(mc_plugin_pub *pub, const mc_peer *sub)
{
    pthread_mutex_lock(&pub->plugin->lock);
    mc_endpoint_id *grown = realloc(pub->peers, (pub->count + 1) * sizeof(*grown));
    if (grown != NULL) {
        pub->peers = grown;
        pub->peers[pub->count++] = sub->id;
    }
    pthread_mutex_unlock(&pub->plugin->lock);
    return grown ? 0 : MC_ENOMEM;
}

static void faulty_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
    pthread_mutex_lock(&pub->plugin->lock);
    for (size_t i = 0; i < pub->count; i++) {
        if (memcmp(&pub->peers[i], sub, sizeof(*sub)) == 0) {
            pub->peers[i] = pub->peers[--pub->count];
            break;
        }
    }
    pthread_mutex_unlock(&pub->plugin->lock);
}

/* ---- sending --------------------------------------------------------------------------------- */

static job *job_alloc(size_t size)
{
    job *j = malloc(sizeof(*j) + (size ? size : 1));
    if (j != NULL)
        memset(j, 0, sizeof(*j));
    return j;
}

static void enqueue_locked(mc_plugin *p, job *j)
{
    if (p->tail != NULL)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->work);
}

/* Addresses j to the publisher's subscribers and queues it, faults applied. */
static int post(mc_plugin_pub *pub, job *j, const mc_sample *sample)
{
    mc_plugin *p = pub->plugin;
    j->sample = *sample;
    j->sample.data = j->payload;
    pthread_mutex_lock(&p->lock);
    j->count = pub->count;
    j->targets = malloc((pub->count ? pub->count : 1) * sizeof(*j->targets));
    bool dropped = p->fault == FAULT_DROP && sample->seq % 100 == 0;
    if (j->targets == NULL || pub->count == 0 || dropped) {
        int rc = j->targets == NULL ? MC_ENOMEM : 0;
        pthread_mutex_unlock(&p->lock);
        free(j->targets);
        free(j);
        return rc;
    }
    memcpy(j->targets, pub->peers, pub->count * sizeof(*j->targets));
    if (p->fault == FAULT_REORDER && sample->seq % 2 == 1) {
        pub->held = j; /* waits for its successor, which overtakes it */
    } else {
        enqueue_locked(p, j);
        if (pub->held != NULL)
            enqueue_locked(p, pub->held);
        pub->held = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static void misbehave(mc_plugin *p, uint64_t seq)
{
    if (seq != 2)
        return;
    if (p->fault == FAULT_CRASH) {
        signal(SIGSEGV, SIG_DFL); /* no sanitizer report: die of the signal itself */
        raise(SIGSEGV);
    } else if (p->fault == FAULT_HANG) {
        forever(NULL);
    } else if (p->fault == FAULT_EXIT) {
        exit(0);
    }
}

static int faulty_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    misbehave(pub->plugin, sample->seq);
    job *j = job_alloc(sample->size);
    if (j == NULL)
        return MC_ENOMEM;
    if (sample->size > 0)
        memcpy(j->payload, sample->data, sample->size);
    return post(pub, j, sample);
}

static int faulty_loan(mc_plugin_pub *pub, size_t size, void **buf)
{
    if (pub->plugin->fault == FAULT_LOAN_FAILS)
        return MC_ENOSYS;
    job *j = job_alloc(size);
    if (j == NULL)
        return MC_ENOMEM;
    *buf = j->payload;
    return 0;
}

static job *job_of(void *payload)
{
    return (job *)((unsigned char *)payload - offsetof(job, payload));
}

static int faulty_commit(mc_plugin_pub *pub, void *buf, const mc_sample *sample)
{
    return post(pub, job_of(buf), sample);
}

static void faulty_loan_discard(mc_plugin_pub *pub, void *buf)
{
    free(job_of(buf));
}

static const mc_plugin_ops faulty_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = faulty_init,
    .fini = faulty_fini,
    .limits = faulty_limits,
    .pub_open = faulty_pub_open,
    .pub_close = faulty_pub_close,
    .sub_open = faulty_sub_open,
    .sub_close = faulty_sub_close,
    .pub_connect = faulty_pub_connect,
    .pub_disconnect = faulty_pub_disconnect,
    .send = faulty_send,
    .loan = faulty_loan,
    .commit = faulty_commit,
    .loan_discard = faulty_loan_discard,
};

static const mc_plugin_descriptor faulty_descriptor = {
    MC_PLUGIN_DESCRIPTOR_HEADER,
    .name = "faulty",
    .version = "0.0.1",
    .description = "conformance fixture: a transport that breaks the promise it is told to",
    .roles = MC_ROLE_DATA,
    .scopes = MC_SCOPE_PROCESS,
    .caps = MC_CAP_ORDERED | MC_CAP_RELIABLE | MC_CAP_ZERO_COPY | MC_CAP_THREAD_SAFE,
    .config = faulty_config,
    .ops = &faulty_ops,
};

MC_PLUGIN_DEFINE(faulty_descriptor)
