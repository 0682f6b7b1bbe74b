/*
 * Discovery between real processes: mc_node processes (tests/helpers/mc_node.c) with the
 * udp registration plugin and the shm data transport, on loopback. Each test uses its own
 * domain and registration port, so parallel tests and other memcast processes on the
 * machine do not meet it. Waits are for lines the nodes print, with deadlines; the only
 * fixed wait is in the domain test, which must show that something does NOT happen.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct node {
    pid_t pid;
    int in;  /* its stdin: closing it ends the node cleanly */
    int out; /* its stdout */
    char buf[1 << 16];
    size_t used;
} node;

static char config_path[64];
static int test_port;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reliable shm (a publisher waits up to 2 s for a slow subscriber) where a test counts
 * every message; the default (newest `slots` messages, overruns counted) elsewhere. */
static const char *shm_settings = "";

static void write_config(const char *domain, const char *expiry)
{
    FILE *f = fopen(config_path, "w");
    assert_non_null(f);
    fprintf(f,
            "[framework]\nplugins = shm, udp\ndomain = %s\n"
            "[shm]\npath = %s/plugins/shm\n%s"
            "[udp]\npath = %s/plugins/udp\nport = %d\nheartbeat = 100ms\nexpiry = %s\n",
            domain, getenv("MC_BUILDDIR"), shm_settings, getenv("MC_BUILDDIR"), test_port, expiry);
    fclose(f);
}

static int setup(void **state)
{
    snprintf(config_path, sizeof(config_path), "/tmp/mc-discovery-XXXXXX");
    int fd = mkstemp(config_path);
    if (fd < 0)
        return -1;
    close(fd);
    /* a port of its own per test process, away from the default 14000 */
    test_port = 20000 + (int)(getpid() % 20000);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int teardown(void **state)
{
    unlink(config_path);
    return 0;
}

/* Starts mc_node with args (NULL-terminated) and the test's config. */
static void start(node *n, const char *role, const char *topic, ...)
{
    const char *argv[32];
    int argc = 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/helpers/mc_node", getenv("MC_BUILDDIR"));
    argv[argc++] = path;
    argv[argc++] = "-c";
    argv[argc++] = config_path;
    argv[argc++] = role;
    argv[argc++] = topic;
    va_list ap;
    va_start(ap, topic);
    for (const char *a = va_arg(ap, const char *); a != NULL && argc < 31;
         a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    int in[2], out[2];
    /* close-on-exec: a later node must not hold this node's stdin open */
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    memset(n, 0, sizeof(*n));
    n->pid = fork();
    assert_true(n->pid >= 0);
    if (n->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[1]);
        close(out[0]);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    n->in = in[1];
    n->out = out[0];
}

/* The first line starting with prefix, waiting until deadline_ms (monotonic). Lines read
 * stay in the buffer, so several waits can look for different lines. */
static const char *wait_line(node *n, const char *prefix, long long deadline_ms)
{
    for (;;) {
        n->buf[n->used] = '\0';
        for (char *line = n->buf; *line != '\0';) {
            char *end = strchr(line, '\n');
            if (end == NULL)
                break;
            if (strncmp(line, prefix, strlen(prefix)) == 0)
                return line;
            line = end + 1;
        }
        long long left = deadline_ms - now_ms();
        struct pollfd p = {.fd = n->out, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return NULL;
        ssize_t got = read(n->out, n->buf + n->used, sizeof(n->buf) - 1 - n->used);
        if (got <= 0)
            return NULL;
        n->used += (size_t)got;
    }
}

static size_t count_lines(node *n, const char *prefix)
{
    size_t count = 0;
    n->buf[n->used] = '\0';
    for (char *line = n->buf; (line = strstr(line, prefix)) != NULL; line++)
        if (line == n->buf || line[-1] == '\n')
            count++;
    return count;
}

/* Ends a node: cleanly (stdin closed) or with kill -9; returns its exit status. */
static int stop(node *n, bool kill9)
{
    if (kill9)
        kill(n->pid, SIGKILL);
    close(n->in);
    /* keep what it prints while closing ("done ..."): read until it closes stdout (end of
     * file ends the wait), 10 s at most */
    wait_line(n, "\x01 never printed", now_ms() + 10000);
    int status = 0;
    waitpid(n->pid, &status, 0);
    close(n->out);
    return status;
}

static void expect_meeting(node *pub, node *sub)
{
    long long deadline = now_ms() + 10000;
    const char *line = wait_line(sub, "matched ", deadline);
    if (line == NULL)
        fail_msg("subscriber never matched; it printed: %s", sub->buf);
    assert_non_null(strstr(line, " shm "));
    assert_non_null(wait_line(pub, "matched ", deadline));
    assert_non_null(wait_line(sub, "first ", deadline));
}

static void test_subscriber_first(void **state)
{
    shm_settings = "ack_timeout = 2s\n";
    write_config("disc-a", "500ms");
    shm_settings = "";
    node pub, sub;
    start(&sub, "sub", "meet/sub_first", "--count", "1000", NULL);
    assert_non_null(wait_line(&sub, "open ", now_ms() + 10000));
    start(&pub, "pub", "meet/sub_first", "--count", "1000", "--size", "256", "--wait-matched", "1",
          NULL);
    expect_meeting(&pub, &sub);
    assert_non_null(wait_line(&pub, "sent ", now_ms() + 10000));
    /* a closing publisher removes its segment: let the subscriber drain it first */
    assert_non_null(wait_line(&sub, "received ", now_ms() + 10000));
    assert_int_equal(stop(&pub, false), 0);
    assert_int_equal(stop(&sub, false), 0);
    if (strstr(sub.buf, "done 1000 0 0") == NULL)
        fail_msg("subscriber printed:\n%s", sub.buf);
}

static void test_publisher_first(void **state)
{
    shm_settings = "ack_timeout = 2s\n";
    write_config("disc-b", "500ms");
    shm_settings = "";
    node pub, sub;
    start(&pub, "pub", "meet/pub_first", "--count", "100", "--wait-matched", "1", NULL);
    assert_non_null(wait_line(&pub, "open ", now_ms() + 10000));
    start(&sub, "sub", "meet/pub_first", "--count", "100", NULL);
    expect_meeting(&pub, &sub);
    assert_non_null(wait_line(&sub, "received ", now_ms() + 10000));
    assert_int_equal(stop(&pub, false), 0);
    assert_int_equal(stop(&sub, false), 0);
    if (strstr(sub.buf, "done 100 0 0") == NULL)
        fail_msg("subscriber printed:\n%s", sub.buf);
}

/* A clean close says goodbye: the peer unmatches at once, long before expiry (5 s here). */
static void test_goodbye_on_clean_exit(void **state)
{
    write_config("disc-c", "5s");
    node pub, sub;
    start(&sub, "sub", "meet/goodbye", NULL);
    assert_non_null(wait_line(&sub, "open ", now_ms() + 10000));
    start(&pub, "pub", "meet/goodbye", "--count", "1", "--wait-matched", "1", NULL);
    expect_meeting(&pub, &sub);
    long long closed = now_ms();
    assert_int_equal(stop(&pub, false), 0);
    assert_non_null(wait_line(&sub, "unmatched ", closed + 2500));
    stop(&sub, false);
}

/* kill -9 says nothing: the peer expires after `expiry` (500 ms here). */
static void test_expiry_after_kill9(void **state)
{
    write_config("disc-d", "500ms");
    node pub, sub;
    start(&sub, "sub", "meet/kill", NULL);
    assert_non_null(wait_line(&sub, "open ", now_ms() + 10000));
    start(&pub, "pub", "meet/kill", "--count", "10", "--wait-matched", "1", NULL);
    expect_meeting(&pub, &sub);
    stop(&pub, true);
    assert_non_null(wait_line(&sub, "unmatched ", now_ms() + 5000));
    assert_int_equal(stop(&sub, false), 0);
}

/* 1,000 topics in one process are announced completely (over several datagrams). */
static void test_thousand_topics(void **state)
{
    write_config("disc-e", "500ms");
    node pub, sub;
    start(&sub, "sub", "many", "--topics", "1000", NULL);
    assert_non_null(wait_line(&sub, "open ", now_ms() + 20000));
    start(&pub, "pub", "many", "--topics", "1000", NULL);
    long long deadline = now_ms() + 20000;
    while (count_lines(&sub, "matched ") < 1001 && now_ms() < deadline)
        wait_line(&sub, "no such line", now_ms() + 50);
    assert_int_equal(count_lines(&sub, "matched "), 1001);
    while (count_lines(&pub, "matched ") < 1001 && now_ms() < deadline)
        wait_line(&pub, "no such line", now_ms() + 50);
    assert_int_equal(count_lines(&pub, "matched "), 1001);
    stop(&pub, false);
    stop(&sub, false);
}

/* Contexts of different domains share the port but never meet; a context of the same
 * domain, started after, meets the publisher (so the traffic did flow). */
static void test_domains_do_not_mix(void **state)
{
    write_config("disc-f-one", "500ms");
    node pub, stranger, friend_;
    start(&pub, "pub", "meet/domain", NULL);
    assert_non_null(wait_line(&pub, "open ", now_ms() + 10000));
    write_config("disc-f-two", "500ms");
    start(&stranger, "sub", "meet/domain", NULL);
    assert_non_null(wait_line(&stranger, "open ", now_ms() + 10000));
    write_config("disc-f-one", "500ms");
    start(&friend_, "sub", "meet/domain", NULL);
    assert_non_null(wait_line(&friend_, "matched ", now_ms() + 10000));
    /* by now the stranger has heard the publisher's announcements too: it must not match
     * (wait a few heartbeats more to be sure) */
    assert_null(wait_line(&stranger, "matched ", now_ms() + 500));
    stop(&friend_, false);
    stop(&stranger, false);
    stop(&pub, false);
}

/* Runs `memcast -c CONFIG ls --json` and returns what it printed (static buffer). */
static const char *memcast_ls(void)
{
    static char out[65536];
    char path[4096];
    snprintf(path, sizeof(path), "%s/tools/memcast", getenv("MC_BUILDDIR"));
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execl(path, path, "-c", config_path, "ls", "--json", "--interval", "300", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t got;
    while (used < sizeof(out) - 1 && (got = read(fds[0], out + used, sizeof(out) - 1 - used)) > 0)
        used += (size_t)got;
    out[used] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return out;
}

/* memcast ls, a third process, sees the topic, both endpoints and the transport they share. */
static void test_ls_shows_topic_endpoints_and_shared_transport(void **state)
{
    write_config("disc-g", "500ms");
    node pub, sub;
    start(&sub, "sub", "seen/by_ls", NULL);
    assert_non_null(wait_line(&sub, "open ", now_ms() + 10000));
    start(&pub, "pub", "seen/by_ls", "--count", "5", "--wait-matched", "1", NULL);
    expect_meeting(&pub, &sub);
    const char *json = memcast_ls();
    if (strstr(json, "\"topic\":\"seen/by_ls\"") == NULL ||
        /* shm first (the one used); udp also bridges host scope */
        strstr(json, "\"shared_transports\":\"shm,udp\"") == NULL ||
        strstr(json, "\"kind\":\"publisher\"") == NULL ||
        strstr(json, "\"kind\":\"subscriber\"") == NULL)
        fail_msg("memcast ls printed: %s", json);
    char pid_text[32];
    snprintf(pid_text, sizeof(pid_text), "\"pid\":%d,", (int)pub.pid);
    assert_non_null(strstr(json, pid_text));
    snprintf(pid_text, sizeof(pid_text), "\"pid\":%d,", (int)sub.pid);
    assert_non_null(strstr(json, pid_text));
    stop(&pub, false);
    stop(&sub, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscriber_first),
        cmocka_unit_test(test_publisher_first),
        cmocka_unit_test(test_goodbye_on_clean_exit),
        cmocka_unit_test(test_expiry_after_kill9),
        cmocka_unit_test(test_thousand_topics),
        cmocka_unit_test(test_domains_do_not_mix),
        cmocka_unit_test(test_ls_shows_topic_endpoints_and_shared_transport),
    };
    return cmocka_run_group_tests_name("discovery", tests, setup, teardown);
}
