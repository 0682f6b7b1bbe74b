/*
 * The memcast command, run as a separate process from the build tree: exit codes,
 * stdout and stderr of version, plugins, config and help, against the real inproc plugin
 * and the broken fixtures.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <memcast/memcast.h>
#include <memcast/version.h>

/* Not "config.h": from tests/ that name finds configure's build/config.h first; context.h
 * brings framework/config.h and loader.h from its own directory. */
#include "context.h"

#include "../../tools/pattern.h"

/* ---- environment ---------------------------------------------------------------------------- */

static char binary[4096];
static char inproc_dir[4096];
static char fixture_dir[4096];
static char fixture_path_env[8300]; /* MEMCAST_PLUGIN_PATH=fixtures:inproc */

/* Files and directories a test created; removed by its teardown even when it failed. */
#define MAX_TEMPS 8
static char temps[MAX_TEMPS][8192];
static size_t temp_count;

static int group_setup(void **state)
{
    (void)state;
    const char *build = getenv("MC_BUILDDIR");
    const char *fixtures = getenv("MC_FIXTURE_DIR");
    if (build == NULL || fixtures == NULL) {
        fprintf(stderr, "test_cli: MC_BUILDDIR and MC_FIXTURE_DIR must be set (make check)\n");
        return -1;
    }
    snprintf(binary, sizeof(binary), "%s/tools/memcast", build);
    snprintf(inproc_dir, sizeof(inproc_dir), "%s/plugins/inproc", build);
    snprintf(fixture_dir, sizeof(fixture_dir), "%s", fixtures);
    snprintf(fixture_path_env, sizeof(fixture_path_env), "MEMCAST_PLUGIN_PATH=%s:%s", fixture_dir,
             inproc_dir);
    /* Only what a test passes explicitly may configure the command. */
    unsetenv("MEMCAST_CONFIG");
    unsetenv("MEMCAST_FRAMEWORK_LOG_LEVEL");
    unsetenv("MEMCAST_FRAMEWORK_PLUGINS");
    unsetenv("MEMCAST_FRAMEWORK_PLUGIN_PATH");
    unsetenv("MEMCAST_FRAMEWORK_DOMAIN");
    char plugin_path[sizeof(inproc_dir) * 3 + 2];
    snprintf(plugin_path, sizeof(plugin_path), "%s:%s/plugins/shm:%s/plugins/udp", inproc_dir,
             build, build);
    setenv("MEMCAST_PLUGIN_PATH", plugin_path, 1); /* the default plugins */
    return access(binary, X_OK) == 0 ? 0 : -1;
}

static int remove_temps(void **state)
{
    (void)state;
    while (temp_count > 0) {
        /* Newest first: a directory's files go before the directory. */
        const char *path = temps[--temp_count];
        if (unlink(path) != 0)
            rmdir(path);
    }
    return 0;
}

static const char *remember_temp(const char *path)
{
    assert_true(temp_count < MAX_TEMPS);
    snprintf(temps[temp_count], sizeof(temps[0]), "%s", path);
    return temps[temp_count++];
}

static const char *write_config(const char *text)
{
    char path[] = "/tmp/memcast-cli-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *kept = remember_temp(path);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
    return kept;
}

/* ---- running the command -------------------------------------------------------------------- */

typedef struct run_result {
    int exit_code; /* -1 when killed by a signal */
    char *out;
    char *err;
} run_result;

static void run_result_free(run_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

typedef struct buffer {
    char *data;
    size_t len;
} buffer;

/* Reads what is available on fd into b; returns false at end of file. */
static bool drain(int fd, buffer *b)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false;
    b->data = realloc(b->data, b->len + (size_t)n + 1);
    assert_non_null(b->data);
    memcpy(b->data + b->len, chunk, (size_t)n);
    b->len += (size_t)n;
    b->data[b->len] = '\0';
    return true;
}

/* env entries are "NAME=value" to set or "NAME" to unset, in the child only. */
static void exec_child(int out_fd, int err_fd, const char *const *env, const char *const *args)
{
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        const char *eq = strchr(env[i], '=');
        if (eq == NULL) {
            unsetenv(env[i]);
        } else {
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
            setenv(name, eq + 1, 1);
        }
    }
    const char *argv[32] = {binary};
    for (size_t i = 0; args[i] != NULL && i + 2 < 32; i++)
        argv[i + 1] = args[i];
    execv(binary, (char *const *)argv);
    _exit(127);
}

/* Both pipes are read together so that a child filling one of them cannot block. */
static void collect_output(int out_fd, int err_fd, run_result *r)
{
    buffer out = {0}, err = {0};
    struct pollfd fds[2] = {{.fd = out_fd, .events = POLLIN}, {.fd = err_fd, .events = POLLIN}};
    int open_count = 2;
    while (open_count > 0) {
        if (poll(fds, 2, -1) < 0) {
            assert_int_equal(errno, EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd >= 0 && fds[i].revents != 0 && !drain(fds[i].fd, i ? &err : &out)) {
                fds[i].fd = -1;
                open_count--;
            }
        }
    }
    r->out = out.data ? out.data : strdup("");
    r->err = err.data ? err.data : strdup("");
}

static void run_memcast(run_result *r, const char *const *env, const char *const *args)
{
    int out_pipe[2], err_pipe[2];
    assert_int_equal(pipe(out_pipe), 0);
    assert_int_equal(pipe(err_pipe), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        exec_child(out_pipe[1], err_pipe[1], env, args);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    collect_output(out_pipe[0], err_pipe[0], r);
    close(out_pipe[0]);
    close(err_pipe[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r->exit_code == -1 || r->exit_code == 127)
        fprintf(stderr, "memcast %s: status 0x%x\nstdout:\n%s\nstderr:\n%s\n", args[0],
                (unsigned)status, r->out, r->err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENV(...)  ((const char *const[]){__VA_ARGS__, NULL})

/* Fails with the command's output, which is what one needs to see when it differs. */
static void expect_exit(const run_result *r, int code)
{
    if (r->exit_code != code)
        fail_msg("exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", r->exit_code, code, r->out,
                 r->err);
}

static void expect_contains(const char *text, const char *what)
{
    if (text == NULL || strstr(text, what) == NULL)
        fail_msg("expected '%s' in:\n%s", what, text ? text : "(nothing)");
}

/* ---- reading the output --------------------------------------------------------------------- */

static const char *next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : NULL;
}

/* The block `plugins` printed for name: from its "NAME  STATUS" line to the blank line. */
static char *plugin_block(const char *out, const char *name)
{
    char head[64];
    snprintf(head, sizeof(head), "%s  ", name);
    size_t head_len = strlen(head);
    for (const char *p = out; p != NULL && *p != '\0'; p = next_line(p)) {
        if (strncmp(p, head, head_len) != 0)
            continue;
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *block = strndup(p, len);
        assert_non_null(block);
        return block;
    }
    fail_msg("no block for plugin '%s' in:\n%s", name, out);
    return NULL;
}

/* The line of key in [section] of `config` output, or NULL. */
static char *config_line(const char *out, const char *section, const char *key)
{
    char head[64];
    snprintf(head, sizeof(head), "[%s]\n", section);
    const char *p = strstr(out, head);
    if (p == NULL)
        return NULL;
    const char *end = strstr(p, "\n\n");
    size_t key_len = strlen(key);
    for (p = next_line(p); p != NULL && *p != '\0' && (end == NULL || p < end); p = next_line(p))
        if (strncmp(p, key, key_len) == 0 && (p[key_len] == ' ' || p[key_len] == '='))
            return strndup(p, strcspn(p, "\n"));
    return NULL;
}

static void expect_config_line(const char *out, const char *section, const char *key,
                               const char *value, const char *source)
{
    char *line = config_line(out, section, key);
    if (line == NULL)
        fail_msg("no line for %s in [%s] in:\n%s", key, section, out);
    char want_value[512], want_source[4200];
    snprintf(want_value, sizeof(want_value), "= %s", value);
    snprintf(want_source, sizeof(want_source), "; %s", source);
    expect_contains(line, want_value);
    expect_contains(line, want_source);
    free(line);
}

/* ---- a strict JSON checker ------------------------------------------------------------------ */

static const char *json_value(const char *p, int depth);

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *json_string_end(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p != '\\')
            continue;
        p++;
        if (*p == 'u') {
            for (int i = 1; i <= 4; i++)
                if (strchr("0123456789abcdefABCDEF", p[i]) == NULL || p[i] == '\0')
                    return NULL;
            p += 4;
        } else if (*p == '\0' || strchr("\"\\/bfnrt", *p) == NULL) {
            return NULL;
        }
    }
    return p + 1;
}

static const char *json_number_end(const char *p)
{
    const char *start = p;
    if (*p == '-')
        p++;
    while ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' ||
           (*p == '-' && p != start))
        p++;
    return p > start ? p : NULL;
}

/* Object members or array elements up to the closing bracket. */
static const char *json_container(const char *p, char close, int depth)
{
    p = json_ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            p = json_string_end(p);
            if (p == NULL || *(p = json_ws(p)) != ':')
                return NULL;
            p++;
        }
        p = json_value(p, depth + 1);
        if (p == NULL)
            return NULL;
        p = json_ws(p);
        if (*p == close)
            return p + 1;
        if (*p != ',')
            return NULL;
        p = json_ws(p + 1);
    }
}

static const char *json_value(const char *p, int depth)
{
    if (depth > 64)
        return NULL;
    p = json_ws(p);
    if (*p == '{' || *p == '[')
        return json_container(p, *p == '{' ? '}' : ']', depth);
    if (*p == '"')
        return json_string_end(p);
    for (const char *const *w = (const char *const[]){"true", "false", "null", NULL}; *w; w++)
        if (strncmp(p, *w, strlen(*w)) == 0)
            return p + strlen(*w);
    return json_number_end(p);
}

static void expect_json(const char *text, char first)
{
    const char *start = json_ws(text);
    if (*start != first)
        fail_msg("JSON should start with '%c':\n%s", first, text);
    const char *end = json_value(start, 0);
    if (end == NULL || *json_ws(end) != '\0')
        fail_msg("not valid JSON (stopped near offset %td):\n%s", end ? end - text : -1, text);
}

/* The default of a key every plugin section has. */
static const char *reserved_default(const char *key)
{
    for (const mc_config_key *k = mc_plugin_reserved_schema; k->name != NULL; k++)
        if (strcmp(k->name, key) == 0)
            return k->default_value ? k->default_value : "";
    fail_msg("'%s' is not a reserved plugin key", key);
    return NULL;
}

/* ---- version -------------------------------------------------------------------------------- */

static void test_version(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("version"));
    expect_exit(&r, 0);
    expect_contains(r.out, "memcast " MC_VERSION_STRING "\n");
    char abi[64];
    snprintf(abi, sizeof(abi), "plugin ABI %d.%d\n", MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    expect_contains(r.out, abi);
    expect_contains(r.out, mc_loader_default_dir());
    assert_string_equal(r.err, "");
    run_result_free(&r);
}

/* ---- plugins -------------------------------------------------------------------------------- */

static void test_plugins_default_path_lists_inproc(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("plugins"));
    char *block = plugin_block(r.out, "inproc");
    expect_contains(block, "inproc  ok\n");
    expect_contains(block, inproc_dir);
    expect_contains(block, "roles:        data");
    expect_contains(block, "max message:");
    free(block);
    run_result_free(&r);

    const char *cfg = write_config("[framework]\nplugins = inproc\n");
    run_memcast(&r, NULL, ARGS("-c", cfg, "plugins"));
    expect_exit(&r, 0);
    block = plugin_block(r.out, "inproc");
    expect_contains(block, "enabled:      yes");
    free(block);
    run_result_free(&r);
}

static void test_plugins_broken_enabled_fails_but_inproc_ok(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nplugins = inproc, bad_magic\n");
    run_result r;
    run_memcast(&r, ENV(fixture_path_env), ARGS("-c", cfg, "plugins"));
    expect_exit(&r, 1);
    char *bad = plugin_block(r.out, "bad_magic");
    expect_contains(bad, "bad_magic  failed");
    expect_contains(bad, "magic is 0xdeadbeef");
    expect_contains(bad, "enabled:      yes");
    expect_contains(bad, "to do:");
    char *good = plugin_block(r.out, "inproc");
    expect_contains(good, "inproc  ok");
    /* Listed plugins come first, in the configured order. */
    assert_true(strstr(r.out, "inproc  ok") < strstr(r.out, "bad_magic  failed"));
    free(bad);
    free(good);
    run_result_free(&r);
}

static void test_plugins_undefined_symbol_reason(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, ENV(fixture_path_env), ARGS("plugins"));
    char *block = plugin_block(r.out, "undefined_symbol");
    expect_contains(block, "undefined_symbol  failed");
    expect_contains(block, "undefined symbol");
    expect_contains(block, "mc_fixture_function_that_exists_nowhere");
    expect_contains(block, "enabled:      no");
    free(block);
    run_result_free(&r);
}

static void test_plugins_broken_but_not_enabled_exit_0(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nplugins = inproc\n");
    run_result r;
    run_memcast(&r, ENV(fixture_path_env), ARGS("-c", cfg, "plugins"));
    expect_exit(&r, 0);
    char *block = plugin_block(r.out, "bad_abi");
    expect_contains(block, "bad_abi  failed");
    expect_contains(block, "rebuild");
    free(block);
    run_result_free(&r);
}

static void test_plugins_not_found_lists_searched_dirs(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nplugins = inproc, nosuchplugin\n");
    run_result r;
    run_memcast(&r, NULL, ARGS("-c", cfg, "plugins"));
    expect_exit(&r, 1);
    char *block = plugin_block(r.out, "nosuchplugin");
    expect_contains(block, "nosuchplugin  not found");
    expect_contains(block, "searched:");
    expect_contains(block, inproc_dir);
    expect_contains(block, mc_loader_default_dir());
    free(block);
    run_result_free(&r);
}

static void test_plugins_earlier_dir_shadows_later(void **state)
{
    (void)state;
    char dir[] = "/tmp/memcast-cli-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    remember_temp(dir);
    char target[4200], link_path[4200], env[8500];
    snprintf(target, sizeof(target), "%s/.libs/mc_inproc.so", inproc_dir);
    snprintf(link_path, sizeof(link_path), "%s/mc_inproc.so", dir);
    assert_int_equal(symlink(target, link_path), 0);
    remember_temp(link_path); /* removed before its directory */
    snprintf(env, sizeof(env), "MEMCAST_PLUGIN_PATH=%s:%s", dir, inproc_dir);

    run_result r;
    run_memcast(&r, ENV(env), ARGS("plugins"));
    char *block = plugin_block(r.out, "inproc");
    char want_file[4300], want_shadowed[4300];
    snprintf(want_file, sizeof(want_file), "file:         %s\n", link_path);
    snprintf(want_shadowed, sizeof(want_shadowed), "shadowed:     %s/mc_inproc.la", inproc_dir);
    expect_contains(block, "inproc  ok");
    expect_contains(block, want_file);
    expect_contains(block, want_shadowed);
    free(block);
    run_result_free(&r);
}

/* [inproc] path comes first for inproc even when the scan meets another copy earlier
 * (nosuchplugin, listed first, puts the shared directories ahead of inproc's own). */
static void test_plugins_section_path_wins(void **state)
{
    (void)state;
    char dir[] = "/tmp/memcast-cli-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    remember_temp(dir);
    char target[4200], link_path[4200], config[8500];
    snprintf(target, sizeof(target), "%s/.libs/mc_inproc.so", inproc_dir);
    snprintf(link_path, sizeof(link_path), "%s/mc_inproc.so", dir);
    assert_int_equal(symlink(target, link_path), 0);
    remember_temp(link_path);
    snprintf(config, sizeof(config),
             "[framework]\nplugins = nosuchplugin, inproc\n[inproc]\npath = %s\n", dir);
    const char *cfg = write_config(config);

    run_result r;
    run_memcast(&r, NULL, ARGS("-c", cfg, "plugins"));
    expect_exit(&r, 1); /* nosuchplugin */
    char *block = plugin_block(r.out, "inproc");
    char want_file[4300], want_shadowed[4300];
    snprintf(want_file, sizeof(want_file), "file:         %s\n", link_path);
    snprintf(want_shadowed, sizeof(want_shadowed), "shadowed:     %s/mc_inproc.la", inproc_dir);
    expect_contains(block, "inproc  ok");
    expect_contains(block, want_file);
    expect_contains(block, want_shadowed);
    free(block);
    run_result_free(&r);
}

static void test_plugins_json(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nplugins = inproc, bad_magic, nosuchplugin\n");
    run_result r;
    run_memcast(&r, ENV(fixture_path_env), ARGS("-c", cfg, "plugins", "--json"));
    expect_exit(&r, 1);
    expect_json(r.out, '[');
    expect_contains(r.out, "\"name\": \"inproc\", \"status\": \"ok\"");
    expect_contains(r.out, "\"name\": \"bad_magic\", \"status\": \"failed\"");
    expect_contains(r.out, "\"name\": \"nosuchplugin\", \"status\": \"not found\"");
    expect_contains(r.out, "\"roles\": [\"data\"]");
    run_result_free(&r);
}

/* ---- config --------------------------------------------------------------------------------- */

static void test_config_defaults(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("config"));
    expect_exit(&r, 0);
    expect_contains(r.out, "file: none");
    for (const mc_config_key *k = mc_framework_schema; k->name != NULL; k++)
        expect_config_line(r.out, "framework", k->name, k->default_value ? k->default_value : "",
                           "default");
    run_result_free(&r);
}

static void test_config_sources_file_and_env(void **state)
{
    (void)state;
    const char *cfg =
        write_config("[framework]\n; a comment line\nplugins = inproc\n\ndomain = clitest\n");
    run_result r;
    run_memcast(&r, ENV("MEMCAST_FRAMEWORK_LOG_LEVEL=debug"), ARGS("-c", cfg, "config"));
    expect_exit(&r, 0);
    char at_line3[4200], at_line5[4200];
    snprintf(at_line3, sizeof(at_line3), "%s:3", cfg);
    snprintf(at_line5, sizeof(at_line5), "%s:5", cfg);
    expect_config_line(r.out, "framework", "plugins", "inproc", at_line3);
    expect_config_line(r.out, "framework", "domain", "clitest", at_line5);
    expect_config_line(r.out, "framework", "log_level", "debug", "env MEMCAST_FRAMEWORK_LOG_LEVEL");
    expect_config_line(r.out, "framework", "plugin_path", "", "default");
    /* The plugin section shows its keys (the reserved ones at least) with their sources. */
    expect_config_line(r.out, "inproc", "enabled", reserved_default("enabled"), "default");
    run_result_free(&r);

    /* The same with the option after the subcommand. */
    run_memcast(&r, NULL, ARGS("config", "--config", cfg));
    expect_exit(&r, 0);
    expect_config_line(r.out, "framework", "domain", "clitest", at_line5);
    run_result_free(&r);
}

static void test_config_misspelt_key(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nlog_levle = debug\n");
    run_result r;
    run_memcast(&r, NULL, ARGS("-c", cfg, "config"));
    expect_exit(&r, 1);
    char at_line2[4200];
    snprintf(at_line2, sizeof(at_line2), "%s:2", cfg);
    expect_contains(r.err, at_line2);
    expect_contains(r.err, "log_levle");
    expect_contains(r.err, "did you mean");
    expect_contains(r.err, "log_level");
    assert_string_equal(r.out, "");
    run_result_free(&r);
}

static void test_config_missing_file(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("--config=/nonexistent/memcast-cli.ini", "config"));
    expect_exit(&r, 1);
    expect_contains(r.err, "/nonexistent/memcast-cli.ini");
    run_result_free(&r);
}

static void test_config_plugin_that_fails_to_load(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nplugins = inproc, bad_magic\n");
    run_result r;
    run_memcast(&r, ENV(fixture_path_env), ARGS("-c", cfg, "config"));
    expect_exit(&r, 1);
    expect_contains(r.out, "[bad_magic]\n");
    expect_contains(r.out, "keys omitted");
    expect_contains(r.out, "magic is 0xdeadbeef");
    assert_null(config_line(r.out, "bad_magic", "enabled"));
    expect_config_line(r.out, "inproc", "enabled", reserved_default("enabled"), "default");
    run_result_free(&r);
}

static void test_config_json_escapes(void **state)
{
    (void)state;
    /* A quote, a backslash and a tab in a value must come out escaped. */
    const char *cfg = write_config("[framework]\nplugin_path = /tmp/a\"b\\c\td\n");
    run_result r;
    run_memcast(&r, ENV("MEMCAST_FRAMEWORK_LOG_LEVEL=info"), ARGS("-c", cfg, "config", "--json"));
    expect_exit(&r, 0);
    expect_json(r.out, '{');
    expect_contains(r.out, "\"value\": \"/tmp/a\\\"b\\\\c\\td\"");
    expect_contains(r.out, "\"source\": \"env MEMCAST_FRAMEWORK_LOG_LEVEL\"");
    run_result_free(&r);
}

/* ---- help and usage errors ------------------------------------------------------------------ */

/* The subcommands listed by `memcast --help`, so that new ones are covered too. */
static size_t listed_subcommands(const char *help, char names[][32], size_t max)
{
    const char *p = strstr(help, "Subcommands:\n");
    assert_non_null(p);
    size_t count = 0;
    for (p = next_line(p); p != NULL && strncmp(p, "  ", 2) == 0 && count < max; p = next_line(p)) {
        size_t len = strcspn(p + 2, " \n");
        snprintf(names[count++], 32, "%.*s", (int)len, p + 2);
    }
    return count;
}

static void test_help_for_every_subcommand(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("--help"));
    expect_exit(&r, 0);
    expect_contains(r.out, "usage: memcast");
    expect_contains(r.out, "Exit status:");
    expect_contains(r.out, "  2  usage error");
    char names[32][32];
    size_t count = listed_subcommands(r.out, names, 32);
    run_result_free(&r);
    assert_true(count >= 4);

    for (size_t i = 0; i < count; i++) {
        const char *usage = "usage: memcast";
        run_memcast(&r, NULL, ARGS(names[i], "--help"));
        expect_exit(&r, 0);
        expect_contains(r.out, usage);
        expect_contains(r.out, names[i]);
        expect_contains(r.out, "Exit status");
        assert_string_equal(r.err, "");
        run_result_free(&r);

        run_memcast(&r, NULL, ARGS("help", names[i]));
        expect_exit(&r, 0);
        expect_contains(r.out, usage);
        run_result_free(&r);
    }
    const char *required[] = {"version", "plugins", "config", "help"};
    for (size_t i = 0; i < 4; i++) {
        bool seen = false;
        for (size_t j = 0; j < count; j++)
            seen = seen || strcmp(names[j], required[i]) == 0;
        if (!seen)
            fail_msg("'%s' is not listed in memcast --help", required[i]);
    }
}

static void test_unknown_subcommand_suggests(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("plugin"));
    expect_exit(&r, 2);
    expect_contains(r.err, "unknown subcommand 'plugin'");
    expect_contains(r.err, "did you mean 'plugins'");
    assert_string_equal(r.out, "");
    run_result_free(&r);

    run_memcast(&r, NULL, ARGS("help", "confgi"));
    expect_exit(&r, 2);
    expect_contains(r.err, "did you mean 'config'");
    run_result_free(&r);
}

static void test_usage_errors_exit_2(void **state)
{
    (void)state;
    run_result r;
    run_memcast(&r, NULL, ARGS("plugins", "--jsn"));
    expect_exit(&r, 2);
    expect_contains(r.err, "unknown option '--jsn'");
    expect_contains(r.err, "did you mean '--json'");
    run_result_free(&r);

    run_memcast(&r, NULL, ARGS("--frobnicate", "version"));
    expect_exit(&r, 2);
    expect_contains(r.err, "'--frobnicate'");
    run_result_free(&r);

    run_memcast(&r, NULL, ARGS("version", "extra"));
    expect_exit(&r, 2);
    expect_contains(r.err, "'extra'");
    run_result_free(&r);

    run_memcast(&r, NULL, ARGS("-c"));
    expect_exit(&r, 2);
    run_result_free(&r);

    run_memcast(&r, NULL, (const char *const[]){NULL});
    expect_exit(&r, 2);
    expect_contains(r.err, "no subcommand");
    run_result_free(&r);
}

/* ---- generated payloads (pub --size, sub --verify) ----------------------------------------- */

/* Sizes around the 16-byte chunks and the KiB steps of the pattern, at odd addresses. */
static const size_t pattern_sizes[] = {0, 1, 15, 16, 17, 31, 1023, 1024, 1025, 2049, 5000};

static void test_pattern_fill_writes_the_pattern_byte_by_byte(void **state)
{
    (void)state;
    unsigned char *buf = malloc(5000 + 3);
    assert_non_null(buf);
    for (uint64_t seq = 0; seq < 300; seq += 37)
        for (size_t s = 0; s < sizeof(pattern_sizes) / sizeof(*pattern_sizes); s++)
            for (size_t offset = 0; offset < 3; offset++) {
                size_t size = pattern_sizes[s];
                memset(buf, 0x5a, 5000 + 3);
                mc_cli_pattern_fill(buf + offset, size, seq);
                for (size_t i = 0; i < size; i++)
                    assert_int_equal(buf[offset + i], mc_cli_pattern(seq, i));
                assert_int_equal(buf[offset + size], 0x5a); /* nothing beyond */
                assert_true(mc_cli_pattern_intact(buf + offset, size, seq));
            }
    free(buf);
}

/* One wrong byte anywhere, or the pattern of another message, is found. */
static void test_pattern_check_finds_any_changed_byte(void **state)
{
    (void)state;
    size_t size = 5000;
    unsigned char *buf = malloc(size + 1);
    assert_non_null(buf);
    mc_cli_pattern_fill(buf + 1, size, 7);
    assert_false(mc_cli_pattern_intact(buf + 1, size, 8));
    for (size_t i = 0; i < size; i++) {
        buf[1 + i] ^= 0x10;
        assert_false(mc_cli_pattern_intact(buf + 1, size, 7));
        buf[1 + i] ^= 0x10;
    }
    assert_true(mc_cli_pattern_intact(buf + 1, size, 7));
    free(buf);
}

/* --size takes the units bench --size takes; what is not a size says so. */
static void test_pub_size_takes_units(void **state)
{
    (void)state;
    const char *cfg = write_config("[framework]\nplugins = inproc\n");
    run_result r;
    run_memcast(&r, NULL, ARGS("-c", cfg, "pub", "sizes", "--size", "4K", "--wait", "0"));
    expect_exit(&r, 0);
    run_result_free(&r);

    const char *bad[] = {"4Q", "-1", "K", "1K2", " 1", "20000000000G"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        run_memcast(&r, NULL, ARGS("-c", cfg, "pub", "sizes", "--size", bad[i], "--wait", "0"));
        expect_exit(&r, 2);
        expect_contains(r.err, "--size");
        expect_contains(r.err, bad[i]);
        run_result_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_version, remove_temps),
        cmocka_unit_test_teardown(test_plugins_default_path_lists_inproc, remove_temps),
        cmocka_unit_test_teardown(test_plugins_broken_enabled_fails_but_inproc_ok, remove_temps),
        cmocka_unit_test_teardown(test_plugins_undefined_symbol_reason, remove_temps),
        cmocka_unit_test_teardown(test_plugins_broken_but_not_enabled_exit_0, remove_temps),
        cmocka_unit_test_teardown(test_plugins_not_found_lists_searched_dirs, remove_temps),
        cmocka_unit_test_teardown(test_plugins_earlier_dir_shadows_later, remove_temps),
        cmocka_unit_test_teardown(test_plugins_section_path_wins, remove_temps),
        cmocka_unit_test_teardown(test_plugins_json, remove_temps),
        cmocka_unit_test_teardown(test_config_defaults, remove_temps),
        cmocka_unit_test_teardown(test_config_sources_file_and_env, remove_temps),
        cmocka_unit_test_teardown(test_config_misspelt_key, remove_temps),
        cmocka_unit_test_teardown(test_config_missing_file, remove_temps),
        cmocka_unit_test_teardown(test_config_plugin_that_fails_to_load, remove_temps),
        cmocka_unit_test_teardown(test_config_json_escapes, remove_temps),
        cmocka_unit_test_teardown(test_help_for_every_subcommand, remove_temps),
        cmocka_unit_test_teardown(test_unknown_subcommand_suggests, remove_temps),
        cmocka_unit_test_teardown(test_usage_errors_exit_2, remove_temps),
        cmocka_unit_test(test_pattern_fill_writes_the_pattern_byte_by_byte),
        cmocka_unit_test(test_pattern_check_finds_any_changed_byte),
        cmocka_unit_test_teardown(test_pub_size_takes_units, remove_temps),
    };
    return cmocka_run_group_tests_name("memcast command", tests, group_setup, NULL);
}
