/* Configuration: file reading through the system libinih, environment overrides, schema
 * binding, parsers, schema checks and suggestions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* By path: "config.h" alone would find autoconf's build/config.h first (-I. comes first). */
#include "../../framework/config.h"
#include "../../framework/loader.h"

#define MAX_TEMP_FILES 64

static char *temp_files[MAX_TEMP_FILES];
static size_t temp_count;

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *const colours[] = {"red", "green", NULL};

/* One key of every type, bounded and not. */
static const mc_config_key test_schema[] = {
    {.name = "flag", .type = MC_CFG_BOOL, .default_value = "false"},
    {.name = "count", .type = MC_CFG_INT, .default_value = "5", .min = -10, .max = 100},
    {.name = "buffer", .type = MC_CFG_SIZE, .default_value = "4K", .min = 1024, .max = 1048576},
    {.name = "timeout", .type = MC_CFG_DURATION, .default_value = "2s", .min = 10, .max = 60000},
    {.name = "colour", .type = MC_CFG_ENUM, .default_value = "red", .enum_values = colours},
    {.name = "label", .type = MC_CFG_STRING, .default_value = "none"},
    {.name = "anything", .type = MC_CFG_INT, .default_value = "0"},
    {.name = NULL},
};

/* The shipped plugins whose sections conf/memcast.ini documents; their schemas are read
 * from the built plugins themselves, so a key added to a plugin must be documented. */
static const char *const shipped_plugins[] = {"inproc", "shm", "udp"};
#define SHIPPED_PLUGINS (sizeof(shipped_plugins) / sizeof(shipped_plugins[0]))

static const mc_config_key *shipped_schema(const char *name, mc_loaded_plugin *plugin)
{
    const char *dirs[8];
    size_t ndirs = 0;
    static char paths[4096];
    const char *env = getenv("MEMCAST_PLUGIN_PATH");
    snprintf(paths, sizeof(paths), "%s", env ? env : "");
    for (char *dir = strtok(paths, ":"); dir != NULL && ndirs < 8; dir = strtok(NULL, ":"))
        dirs[ndirs++] = dir;
    if (mc_loader_open(name, dirs, ndirs, plugin) != 0)
        fail_msg("plugin '%s': %s", name, mc_last_error());
    return plugin->desc->config;
}

#define assert_error_has(fragment) check_error_has((fragment), __FILE__, __LINE__)

static void check_error_has(const char *fragment, const char *file, int line)
{
    if (strstr(mc_last_error(), fragment) == NULL) {
        print_error("expected \"%s\" in the error detail \"%s\"\n", fragment, mc_last_error());
        _fail(file, line);
    }
}

#define assert_error_lacks(fragment) check_error_lacks((fragment), __FILE__, __LINE__)

static void check_error_lacks(const char *fragment, const char *file, int line)
{
    if (strstr(mc_last_error(), fragment) != NULL) {
        print_error("did not expect \"%s\" in the error detail \"%s\"\n", fragment,
                    mc_last_error());
        _fail(file, line);
    }
}

/* Writes text to a new file under /tmp; the group teardown removes it. */
static const char *write_config(const char *text)
{
    assert_true(temp_count < MAX_TEMP_FILES);
    char *path = strdup("/tmp/mc_test_config_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    temp_files[temp_count++] = path;
    size_t length = strlen(text);
    assert_int_equal(write(fd, text, length), (ssize_t)length);
    assert_int_equal(close(fd), 0);
    return path;
}

static mc_config *load_ok(const char *text)
{
    mc_config *cfg = NULL;
    int rc = mc_config_load(write_config(text), &cfg);
    if (rc != 0)
        print_error("load failed: %s\n", mc_last_error());
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    return cfg;
}

/* Loads text, expects code, and returns the file's path for the caller's message checks. */
static const char *load_fails(const char *text, int code)
{
    const char *path = write_config(text);
    mc_config *cfg = (mc_config *)&cfg; /* must be reset to NULL on failure */
    assert_int_equal(mc_config_load(path, &cfg), code);
    assert_null(cfg);
    return path;
}

static mc_config_section *bind_ok(const mc_config *cfg, const char *section,
                                  const mc_config_key *schema)
{
    mc_config_section *sec = NULL;
    int rc = mc_config_section_bind(cfg, section, schema, &sec);
    if (rc != 0)
        print_error("bind failed: %s\n", mc_last_error());
    assert_int_equal(rc, 0);
    assert_non_null(sec);
    return sec;
}

/* Binds [t] of text against test_schema and expects code; returns the path. */
static const char *bind_fails(const char *text, int code)
{
    const char *path = write_config(text);
    mc_config *cfg = NULL;
    assert_int_equal(mc_config_load(path, &cfg), 0);
    mc_config_section *sec = (mc_config_section *)&sec;
    int rc = mc_config_section_bind(cfg, "t", test_schema, &sec);
    mc_config_free(cfg);
    assert_int_equal(rc, code);
    assert_null(sec);
    return path;
}

static char *expected(const char *path, int line, const char *rest)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s:%d: %s", path, line, rest);
    return buf;
}

/* The harness's MEMCAST_PLUGIN_PATH, put back after every test that may change it. */
static char *saved_plugin_path;

static void unset_memcast_variables(void)
{
    char *names[256];
    size_t count = 0;
    for (char **env = environ; *env != NULL && count < 256; env++) {
        const char *equals = strchr(*env, '=');
        if (strncmp(*env, "MEMCAST_", 8) == 0 && equals != NULL)
            names[count++] = strndup(*env, (size_t)(equals - *env));
    }
    for (size_t i = 0; i < count; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
}

static int clean_environment(void **state)
{
    (void)state;
    unset_memcast_variables();
    if (saved_plugin_path != NULL)
        setenv("MEMCAST_PLUGIN_PATH", saved_plugin_path, 1);
    return 0;
}

static int group_setup(void **state)
{
    const char *plugin_path = getenv("MEMCAST_PLUGIN_PATH");
    if (plugin_path != NULL && (saved_plugin_path = strdup(plugin_path)) == NULL)
        return -1;
    return clean_environment(state);
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < temp_count; i++) {
        unlink(temp_files[i]);
        free(temp_files[i]);
    }
    temp_count = 0;
    free(saved_plugin_path);
    return 0;
}

/* MC_SRCDIR under make check; otherwise the source tree this file was compiled from. */
static void source_path(const char *relative, char *buf, size_t size)
{
    const char *srcdir = getenv("MC_SRCDIR");
    if (srcdir != NULL) {
        snprintf(buf, size, "%s/%s", srcdir, relative);
        return;
    }
    const char *tail = strstr(__FILE__, "tests/unit/test_config.c");
    assert_non_null(tail);
    snprintf(buf, size, "%.*s%s", (int)(tail - __FILE__), __FILE__, relative);
}

/* ---- loading ------------------------------------------------------------------------------ */

static void no_file_gives_defaults(void **state)
{
    (void)state;
    mc_config *cfg = NULL;
    assert_int_equal(mc_config_load(NULL, &cfg), 0);
    assert_null(mc_config_file(cfg));
    assert_int_equal(mc_config_section_count(cfg), 0);
    assert_null(mc_config_section_name(cfg, 0));

    mc_config_section *fw = bind_ok(cfg, "framework", mc_framework_schema);
    const char *text = NULL;
    assert_int_equal(mc_config_get_string(fw, "plugins", &text), 0);
    assert_string_equal(text, "inproc, shm, udp");
    assert_int_equal(mc_config_get_string(fw, "plugin_path", &text), 0);
    assert_string_equal(text, "");
    assert_int_equal(mc_config_get_string(fw, "domain", &text), 0);
    assert_string_equal(text, "default");
    int level = -1;
    assert_int_equal(mc_config_get_enum(fw, "log_level", &level), 0);
    assert_int_equal(level, MC_LOG_WARN);
    mc_config_source src = MC_SRC_ENV;
    const char *file = "x";
    int line = -1;
    assert_int_equal(mc_config_get_source(fw, "domain", &src, &file, &line), 0);
    assert_int_equal(src, MC_SRC_DEFAULT);
    assert_null(file);
    assert_int_equal(line, 0);
    mc_config_section_free(fw);

    /* A plugin section the file lacks: defaults plus the reserved keys. */
    mc_config_section *t = bind_ok(cfg, "t", test_schema);
    int64_t count = 0;
    assert_int_equal(mc_config_get_int(t, "count", &count), 0);
    assert_int_equal(count, 5);
    bool enabled = false;
    assert_int_equal(mc_config_get_bool(t, "enabled", &enabled), 0);
    assert_true(enabled);
    assert_int_equal(mc_config_get_string(t, "path", &text), 0);
    assert_string_equal(text, "");
    mc_config_section_free(t);
    mc_config_free(cfg);

    /* An empty MEMCAST_CONFIG means no file too. */
    setenv("MEMCAST_CONFIG", "", 1);
    assert_int_equal(mc_config_load(NULL, &cfg), 0);
    assert_null(mc_config_file(cfg));
    mc_config_free(cfg);
}

static void memcast_config_variable_names_the_file(void **state)
{
    (void)state;
    const char *path = write_config("[framework]\ndomain = fromenv\n");
    setenv("MEMCAST_CONFIG", path, 1);
    mc_config *cfg = NULL;
    assert_int_equal(mc_config_load(NULL, &cfg), 0);
    assert_string_equal(mc_config_file(cfg), path);
    mc_config_section *fw = bind_ok(cfg, "framework", mc_framework_schema);
    assert_string_equal(mc_config_get_text(fw, "domain"), "fromenv");
    mc_config_section_free(fw);
    mc_config_free(cfg);

    /* An explicit path wins over the variable. */
    const char *other = write_config("[framework]\ndomain = explicit\n");
    assert_int_equal(mc_config_load(other, &cfg), 0);
    assert_string_equal(mc_config_file(cfg), other);
    mc_config_free(cfg);
}

static void missing_file_is_enoent(void **state)
{
    (void)state;
    mc_config *cfg = (mc_config *)&cfg;
    assert_int_equal(mc_config_load("/nonexistent/memcast.ini", &cfg), MC_ENOENT);
    assert_null(cfg);
    assert_error_has("cannot open config '/nonexistent/memcast.ini': No such file or directory");

    /* A directory opens but cannot be read. */
    assert_int_equal(mc_config_load("/tmp", &cfg), MC_ENOENT);
    assert_error_has("cannot read config '/tmp'");
}

static void shipped_file_loads(void **state)
{
    (void)state;
    char path[4096];
    source_path("conf/memcast.ini", path, sizeof(path));
    mc_config *cfg = NULL;
    int rc = mc_config_load(path, &cfg);
    if (rc != 0)
        print_error("%s\n", mc_last_error());
    assert_int_equal(rc, 0);
    assert_int_equal(mc_config_section_count(cfg), 1 + SHIPPED_PLUGINS);
    assert_string_equal(mc_config_section_name(cfg, 0), "framework");
    mc_config_section *fw = bind_ok(cfg, "framework", mc_framework_schema);
    mc_config_section_free(fw);
    for (size_t i = 0; i < SHIPPED_PLUGINS; i++) {
        assert_string_equal(mc_config_section_name(cfg, i + 1), shipped_plugins[i]);
        mc_loaded_plugin plugin;
        mc_config_section *sec =
            bind_ok(cfg, shipped_plugins[i], shipped_schema(shipped_plugins[i], &plugin));
        mc_config_section_free(sec);
        mc_loader_close(&plugin);
    }
    mc_config_free(cfg);
}

/* Every key of a bound section came from the file and says what its default says. */
static void assert_documented_defaults(const mc_config_section *sec, const mc_config_key *schema)
{
    for (const mc_config_key *key = schema; key->name != NULL; key++) {
        mc_config_source src = MC_SRC_DEFAULT;
        assert_int_equal(mc_config_get_source(sec, key->name, &src, NULL, NULL), 0);
        if (src != MC_SRC_FILE)
            print_error("key '%s' is not documented in memcast.ini\n", key->name);
        assert_int_equal(src, MC_SRC_FILE);
        assert_string_equal(mc_config_get_text(sec, key->name), key->default_value);
    }
}

/* Uncommenting every documented key must give a valid file holding the defaults. */
static void shipped_file_documents_defaults(void **state)
{
    (void)state;
    char path[4096];
    source_path("conf/memcast.ini", path, sizeof(path));
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char text[65536];
    size_t used = 0;
    char line[512];
    while (fgets(line, sizeof(line), fp) != NULL) {
        bool documented_key = line[0] == ';' && line[1] >= 'a' && line[1] <= 'z';
        const char *copy = documented_key ? line + 1 : line;
        assert_true(used + strlen(copy) < sizeof(text));
        memcpy(text + used, copy, strlen(copy));
        used += strlen(copy);
    }
    fclose(fp);
    text[used] = '\0';

    mc_config *cfg = load_ok(text);
    mc_config_section *fw = bind_ok(cfg, "framework", mc_framework_schema);
    assert_documented_defaults(fw, mc_framework_schema);
    mc_config_section_free(fw);
    for (size_t i = 0; i < SHIPPED_PLUGINS; i++) {
        mc_loaded_plugin plugin;
        const mc_config_key *schema = shipped_schema(shipped_plugins[i], &plugin);
        mc_config_section *sec = bind_ok(cfg, shipped_plugins[i], schema);
        assert_documented_defaults(sec, schema);
        assert_documented_defaults(sec, mc_plugin_reserved_schema);
        mc_config_section_free(sec);
        mc_loader_close(&plugin);
    }
    mc_config_free(cfg);
}

static void sections_keep_file_order_and_merge(void **state)
{
    (void)state;
    mc_config *cfg = load_ok("; comment\n# other comment\n\n[t]\nflag = yes\n[other]\nx = 1\n"
                             "[t]\ncount = -3\n[empty]\n");
    assert_int_equal(mc_config_section_count(cfg), 3);
    assert_string_equal(mc_config_section_name(cfg, 0), "t");
    assert_string_equal(mc_config_section_name(cfg, 1), "other");
    assert_string_equal(mc_config_section_name(cfg, 2), "empty");
    mc_config_section *t = bind_ok(cfg, "t", test_schema);
    bool flag = false;
    int64_t count = 0;
    assert_int_equal(mc_config_get_bool(t, "flag", &flag), 0);
    assert_true(flag);
    assert_int_equal(mc_config_get_int(t, "count", &count), 0);
    assert_int_equal(count, -3);
    mc_config_source src = MC_SRC_DEFAULT;
    const char *file = NULL;
    int line = 0;
    assert_int_equal(mc_config_get_source(t, "count", &src, &file, &line), 0);
    assert_int_equal(src, MC_SRC_FILE);
    assert_string_equal(file, mc_config_file(cfg));
    assert_int_equal(line, 9);
    mc_config_section_free(t);
    mc_config_free(cfg);
}

static void file_syntax_details(void **state)
{
    (void)state;
    /* Inline ';' needs white space before it; '#' after a value is text; CRLF and a UTF-8
     * byte order mark are accepted; enum words ignore case and keep the schema's spelling. */
    mc_config *cfg = load_ok("\xEF\xBB\xBF[t]\r\nlabel = a;b ; comment\r\n"
                             "colour = GREEN ; comment\nbuffer: 8K\n  ; indented comment\n");
    mc_config_section *t = bind_ok(cfg, "t", test_schema);
    assert_string_equal(mc_config_get_text(t, "label"), "a;b");
    assert_string_equal(mc_config_get_text(t, "colour"), "green");
    int colour = -1;
    assert_int_equal(mc_config_get_enum(t, "colour", &colour), 0);
    assert_int_equal(colour, 1);
    uint64_t buffer = 0;
    assert_int_equal(mc_config_get_size(t, "buffer", &buffer), 0);
    assert_int_equal(buffer, 8192);
    mc_config_section_free(t);
    mc_config_free(cfg);

    cfg = load_ok("[t]\nlabel = x # not a comment\n");
    t = bind_ok(cfg, "t", test_schema);
    assert_string_equal(mc_config_get_text(t, "label"), "x # not a comment");
    mc_config_section_free(t);
    mc_config_free(cfg);
}

/* ---- file errors -------------------------------------------------------------------------- */

static void misspelt_key_suggests(void **state)
{
    (void)state;
    const char *path = bind_fails("[t]\nflag = on\ncoutn = 3\n", MC_ECONFIG);
    assert_error_has(expected(path, 3, "[t] unknown key 'coutn' (did you mean 'count'?)"));

    /* In [framework] the load itself fails. */
    path = load_fails("[framework]\n\nlog_levle = info\n", MC_ECONFIG);
    assert_error_has(
        expected(path, 3, "[framework] unknown key 'log_levle' (did you mean 'log_level'?)"));
}

static void unknown_key_without_near_match(void **state)
{
    (void)state;
    const char *path = bind_fails("[t]\nfrobnicate = 1\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "[t] unknown key 'frobnicate'"));
    assert_error_lacks("did you mean");
}

static void bad_value_of_each_type(void **state)
{
    (void)state;
    const char *path = bind_fails("[t]\nflag = maybe\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[t] key 'flag': 'maybe' is not a valid BOOL (expected true/false, "
                              "yes/no, on/off or 1/0)"));
    path = bind_fails("[t]\ncount = 12abc\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[t] key 'count': '12abc' is not a valid INT (expected a "
                              "decimal integer"));
    path = bind_fails("[t]\n\nbuffer = 16X\n", MC_ECONFIG);
    assert_error_has(expected(path, 3,
                              "[t] key 'buffer': '16X' is not a valid SIZE (expected a number "
                              "with an optional K, M or G suffix, e.g. 16M)"));
    path = bind_fails("[t]\ntimeout = 5min\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[t] key 'timeout': '5min' is not a valid DURATION "
                              "(expected a number with an optional ms or s suffix"));
    path = bind_fails("[t]\ncolour = blue\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[t] key 'colour': 'blue' is not a valid ENUM (expected "
                              "one of: red, green)"));
    path = bind_fails("[t]\nenabled = perhaps\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "[t] key 'enabled': 'perhaps' is not a valid BOOL"));
    path = bind_fails("[t]\ncount =\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "[t] key 'count': '' is not a valid INT"));
}

static void values_out_of_bounds(void **state)
{
    (void)state;
    const char *path = bind_fails("[t]\ncount = 101\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[t] key 'count': '101' is out of range (expected -10 to "
                              "100)"));
    path = bind_fails("[t]\ncount = -11\n", MC_ECONFIG);
    assert_error_has("'-11' is out of range (expected -10 to 100)");
    path = bind_fails("[t]\nbuffer = 1023\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[t] key 'buffer': '1023' is out of range (expected 1024 "
                              "bytes to 1048576 bytes)"));
    bind_fails("[t]\nbuffer = 2M\n", MC_ECONFIG);
    assert_error_has("'2M' is out of range");
    bind_fails("[t]\ntimeout = 9ms\n", MC_ECONFIG);
    assert_error_has("'9ms' is out of range (expected 10ms to 60000ms)");
    bind_fails("[t]\ntimeout = 61s\n", MC_ECONFIG);
    assert_error_has("'61s' is out of range");

    /* The edges themselves are inside; an unbounded key takes anything. */
    mc_config *cfg = load_ok("[t]\ncount = 100\nbuffer = 1M\ntimeout = 10\n"
                             "anything = -9223372036854775808\n");
    mc_config_section *t = bind_ok(cfg, "t", test_schema);
    int64_t value = 0;
    assert_int_equal(mc_config_get_int(t, "anything", &value), 0);
    assert_true(value == INT64_MIN);
    assert_int_equal(mc_config_get_duration_ms(t, "timeout", &value), 0);
    assert_int_equal(value, 10);
    mc_config_section_free(t);
    mc_config_free(cfg);
}

static void duplicate_key_names_both_lines(void **state)
{
    (void)state;
    const char *path = load_fails("[t]\nflag = 1\ncount = 2\nflag = 0\n", MC_ECONFIG);
    assert_error_has(expected(path, 4, "[t] key 'flag' is set twice (lines 2 and 4)"));

    /* Merged sections still may not repeat a key. */
    path = load_fails("[t]\ncount = 1\n[u]\ncount = 1\n[t]\ncount = 2\n", MC_ECONFIG);
    assert_error_has(expected(path, 6, "[t] key 'count' is set twice (lines 2 and 6)"));
}

static void indented_line_is_rejected(void **state)
{
    (void)state;
    const char *path = load_fails("[t]\nlabel = a\n; fine\n  count = 3\n", MC_ECONFIG);
    assert_error_has(expected(path, 4,
                              "indented line: remove the leading white space (inih would read "
                              "it as a continuation of 'label')"));

    path = load_fails("[t]\n\tcount = 3\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "indented line: remove the leading white space"));
    assert_error_lacks("continuation");
}

static void over_long_line_is_rejected(void **state)
{
    (void)state;
    char text[512];
    /* 198 characters is the longest line inih 55 reads whole. */
    snprintf(text, sizeof(text), "[t]\n; %0196d\nlabel = %0190d\n", 0, 0);
    mc_config *cfg = load_ok(text);
    mc_config_free(cfg);

    snprintf(text, sizeof(text), "[t]\nflag = 1\nlabel = %0191d\n", 0);
    const char *path = load_fails(text, MC_ECONFIG);
    assert_error_has(expected(path, 3, "line is too long (199 characters; inih reads at most 198"));

    /* A comment too: inih would read its tail as a line of its own. */
    snprintf(text, sizeof(text), "; %0250d\n[t]\n", 0);
    path = load_fails(text, MC_ECONFIG);
    assert_error_has(expected(path, 1, "line is too long (252 characters"));
}

static void syntax_error_names_the_line(void **state)
{
    (void)state;
    const char *path = load_fails("[t]\nflag = 1\nthis is not a key\ncount = 2\n", MC_ECONFIG);
    assert_error_has(expected(path, 3, "syntax error"));

    path = load_fails("[t]\nflag = 1\n[broken\n", MC_ECONFIG);
    assert_error_has(expected(path, 3, "syntax error: section header without a closing ']'"));

    /* The earliest problem wins, whoever found it. */
    path = load_fails("[t]\nflag = 1\nnonsense\nflag = 0\n", MC_ECONFIG);
    assert_error_has(expected(path, 3, "syntax error"));

    path = load_fails("flag = 1\n[t]\n", MC_ECONFIG);
    assert_error_has(expected(path, 1, "key 'flag' is outside any section"));

    path = load_fails("[t]\n= 1\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "[t] a key name is missing"));

    path = load_fails("[t]\n[Bad Name]\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "section name 'Bad Name' is not valid"));
}

static void framework_domain_is_validated(void **state)
{
    (void)state;
    const char *path = load_fails("[framework]\ndomain = two words\n", MC_ECONFIG);
    assert_error_has(expected(path, 2,
                              "[framework] key 'domain': 'two words' is not a valid "
                              "domain"));
    load_fails("[framework]\ndomain = 123456789012345678901234567890123\n", MC_ECONFIG);
    assert_error_has("is not a valid domain");
    load_fails("[framework]\ndomain =\n", MC_ECONFIG);
    assert_error_has("'' is not a valid domain");

    mc_config *cfg = load_ok("[framework]\ndomain = Ab-9_123456789012345678901234567\n");
    mc_config_free(cfg);

    setenv("MEMCAST_FRAMEWORK_DOMAIN", "a/b", 1);
    cfg = (mc_config *)&cfg;
    assert_int_equal(mc_config_load(NULL, &cfg), MC_ECONFIG);
    assert_null(cfg);
    assert_error_has("environment MEMCAST_FRAMEWORK_DOMAIN: [framework] key 'domain': 'a/b' is "
                     "not a valid domain");
}

/* ---- environment -------------------------------------------------------------------------- */

static void environment_beats_file(void **state)
{
    (void)state;
    mc_config *cfg = load_ok("[t]\ncount = 10\nlabel = fromfile\n");
    setenv("MEMCAST_T_COUNT", " 20 ", 1);
    setenv("MEMCAST_T_TIMEOUT", "3s", 1);
    mc_config_section *t = bind_ok(cfg, "t", test_schema);

    int64_t value = 0;
    assert_int_equal(mc_config_get_int(t, "count", &value), 0);
    assert_int_equal(value, 20);
    assert_string_equal(mc_config_get_text(t, "count"), "20");
    mc_config_source src = MC_SRC_DEFAULT;
    const char *origin = NULL;
    int line = -1;
    assert_int_equal(mc_config_get_source(t, "count", &src, &origin, &line), 0);
    assert_int_equal(src, MC_SRC_ENV);
    assert_string_equal(origin, "MEMCAST_T_COUNT");
    assert_int_equal(line, 0);

    assert_int_equal(mc_config_get_duration_ms(t, "timeout", &value), 0);
    assert_int_equal(value, 3000);
    assert_int_equal(mc_config_get_source(t, "label", &src, &origin, &line), 0);
    assert_int_equal(src, MC_SRC_FILE);
    assert_int_equal(line, 3);
    mc_config_section_free(t);

    /* [framework] reads MEMCAST_FRAMEWORK_*. */
    setenv("MEMCAST_FRAMEWORK_LOG_LEVEL", "debug", 1);
    mc_config_section *fw = bind_ok(cfg, "framework", mc_framework_schema);
    int level = -1;
    assert_int_equal(mc_config_get_enum(fw, "log_level", &level), 0);
    assert_int_equal(level, MC_LOG_DEBUG);
    mc_config_section_free(fw);
    mc_config_free(cfg);
}

static void bad_environment_value(void **state)
{
    (void)state;
    mc_config *cfg = load_ok("[t]\ncount = 10\n");
    setenv("MEMCAST_T_COUNT", "lots", 1);
    mc_config_section *t = (mc_config_section *)&t;
    assert_int_equal(mc_config_section_bind(cfg, "t", test_schema, &t), MC_ECONFIG);
    assert_null(t);
    assert_error_has("environment MEMCAST_T_COUNT: [t] key 'count': 'lots' is not a valid INT");
    unsetenv("MEMCAST_T_COUNT");

    /* A variable naming no key of the section. */
    setenv("MEMCAST_T_CONUT", "1", 1);
    assert_int_equal(mc_config_section_bind(cfg, "t", test_schema, &t), MC_ECONFIG);
    assert_error_has("environment MEMCAST_T_CONUT: [t] unknown key 'conut' (did you mean "
                     "'count'?)");
    unsetenv("MEMCAST_T_CONUT");
    mc_config_free(cfg);

    /* ... unless it belongs to a longer section of the file. */
    cfg = load_ok("[t]\n[t_x]\n");
    setenv("MEMCAST_T_X_FOO", "1", 1);
    t = bind_ok(cfg, "t", test_schema);
    mc_config_section_free(t);
    mc_config_free(cfg);

    setenv("MEMCAST_FRAMEWORK_LOG_LEVEL", "loud", 1);
    cfg = (mc_config *)&cfg;
    assert_int_equal(mc_config_load(NULL, &cfg), MC_ECONFIG);
    assert_error_has("environment MEMCAST_FRAMEWORK_LOG_LEVEL: [framework] key 'log_level': "
                     "'loud' is not a valid ENUM (expected one of: error, warn, info, debug)");
}

static void reserved_keys_in_plugin_sections(void **state)
{
    (void)state;
    mc_config *cfg = load_ok("[t]\npath = /opt/plugins\nenabled = no\n");
    mc_config_section *t = bind_ok(cfg, "t", test_schema);
    const char *text = NULL;
    assert_int_equal(mc_config_get_string(t, "path", &text), 0);
    assert_string_equal(text, "/opt/plugins");
    bool enabled = true;
    assert_int_equal(mc_config_get_bool(t, "enabled", &enabled), 0);
    assert_false(enabled);
    mc_config_section_free(t);

    /* Reserved keys exist even without a schema, and read the environment. */
    setenv("MEMCAST_T_ENABLED", "on", 1);
    t = bind_ok(cfg, "t", NULL);
    assert_int_equal(mc_config_get_bool(t, "enabled", &enabled), 0);
    assert_true(enabled);
    mc_config_section_free(t);
    mc_config_free(cfg);

    /* [framework] has none. */
    const char *path = load_fails("[framework]\npath = /x\n", MC_ECONFIG);
    assert_error_has(expected(path, 2, "[framework] unknown key 'path'"));
}

static void raw_values_before_binding(void **state)
{
    (void)state;
    mc_config *cfg = load_ok("[t]\npath = /from/file\nenabled = no\n");
    assert_string_equal(mc_config_raw(cfg, "t", "path"), "/from/file");
    assert_string_equal(mc_config_raw(cfg, "t", "enabled"), "no");
    assert_null(mc_config_raw(cfg, "t", "count"));
    assert_null(mc_config_raw(cfg, "u", "path"));
    setenv("MEMCAST_T_PATH", "/from/env", 1);
    setenv("MEMCAST_U_ENABLED", "off", 1);
    assert_string_equal(mc_config_raw(cfg, "t", "path"), "/from/env");
    assert_string_equal(mc_config_raw(cfg, "u", "enabled"), "off");
    assert_string_equal(mc_config_raw(NULL, "u", "enabled"), "off");
    /* MEMCAST_PLUGIN_PATH is the search path, not [plugin] path. */
    setenv("MEMCAST_PLUGIN_PATH", "/search", 1);
    assert_null(mc_config_raw(cfg, "plugin", "path"));
    mc_config_free(cfg);
}

static void getters_check_key_and_type(void **state)
{
    (void)state;
    mc_config *cfg = load_ok("[t]\n");
    mc_config_section *t = bind_ok(cfg, "t", test_schema);
    int64_t value = 0;
    uint64_t size = 0;
    bool flag = false;
    const char *text = NULL;
    int index = 0;
    assert_int_equal(mc_config_get_int(t, "nope", &value), MC_ENOENT);
    assert_int_equal(mc_config_get_int(t, "label", &value), MC_EINVAL);
    assert_error_has("[t] key 'label' is of type STRING, not INT");
    assert_int_equal(mc_config_get_size(t, "count", &size), MC_EINVAL);
    assert_int_equal(mc_config_get_bool(t, "count", &flag), MC_EINVAL);
    assert_int_equal(mc_config_get_string(t, "flag", &text), MC_EINVAL);
    assert_int_equal(mc_config_get_enum(t, "label", &index), MC_EINVAL);
    assert_int_equal(mc_config_get_duration_ms(t, "count", &value), MC_EINVAL);
    assert_int_equal(mc_config_get_source(t, "nope", NULL, NULL, NULL), MC_ENOENT);
    assert_null(mc_config_get_text(t, "nope"));
    assert_int_equal(mc_config_get_size(t, "buffer", &size), 0);
    assert_int_equal(size, 4096);
    assert_string_equal(mc_config_get_text(t, "buffer"), "4K");
    mc_config_section_free(t);
    mc_config_free(cfg);
}

/* ---- parsers ------------------------------------------------------------------------------ */

static void parse_size_cases(void **state)
{
    (void)state;
    uint64_t v = 1;
    assert_int_equal(mc_config_parse_size("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(mc_config_parse_size("1K", &v), 0);
    assert_int_equal(v, 1024);
    assert_int_equal(mc_config_parse_size("2G", &v), 0);
    assert_int_equal(v, UINT64_C(2) << 30);
    assert_int_equal(mc_config_parse_size("3m", &v), 0);
    assert_int_equal(v, UINT64_C(3) << 20);
    assert_int_equal(mc_config_parse_size("64KiB", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(mc_config_parse_size(" 5 MiB ", &v), 0);
    assert_int_equal(v, UINT64_C(5) << 20);
    assert_int_equal(mc_config_parse_size("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(mc_config_parse_size("18446744073709551616", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("17179869184G", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("17179869183G", &v), 0);
    assert_int_equal(mc_config_parse_size("", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("K", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("-1", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("1T", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("1KB", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size("1.5M", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_size(NULL, &v), MC_EINVAL);
}

static void parse_int_cases(void **state)
{
    (void)state;
    int64_t v = 1;
    assert_int_equal(mc_config_parse_int("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(mc_config_parse_int("+42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(mc_config_parse_int(" -7 ", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(mc_config_parse_int("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(mc_config_parse_int("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(mc_config_parse_int("9223372036854775808", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("-9223372036854775809", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("99999999999999999999", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("-", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("0x10", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("1 2", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_int("1K", &v), MC_EINVAL);
}

static void parse_duration_cases(void **state)
{
    (void)state;
    int64_t v = 1;
    assert_int_equal(mc_config_parse_duration_ms("250ms", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(mc_config_parse_duration_ms("2s", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(mc_config_parse_duration_ms("7", &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(mc_config_parse_duration_ms("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(mc_config_parse_duration_ms("9223372036854775s", &v), 0);
    assert_int_equal(mc_config_parse_duration_ms("9223372036854776s", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_duration_ms("9223372036854775808", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_duration_ms("-1s", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_duration_ms("1h", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_duration_ms("ms", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_duration_ms("1.5s", &v), MC_EINVAL);
}

static void parse_bool_cases(void **state)
{
    (void)state;
    static const char *const yes[] = {"true", "TRUE", "Yes", "on", "1", " on "};
    static const char *const no[] = {"false", "No", "OFF", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        bool v = false;
        assert_int_equal(mc_config_parse_bool(yes[i], &v), 0);
        assert_true(v);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        bool v = true;
        assert_int_equal(mc_config_parse_bool(no[i], &v), 0);
        assert_false(v);
    }
    bool v;
    assert_int_equal(mc_config_parse_bool("2", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_bool("", &v), MC_EINVAL);
    assert_int_equal(mc_config_parse_bool("yess", &v), MC_EINVAL);
}

/* ---- schema check ------------------------------------------------------------------------- */

static void expect_schema_rejected(const mc_config_key *schema, const char *fragment)
{
    assert_int_equal(mc_config_schema_check(schema, sizeof(mc_config_key)), MC_EINVAL);
    assert_error_has(fragment);
    /* Binding runs the same check. */
    mc_config_section *sec = NULL;
    assert_int_equal(mc_config_section_bind(NULL, "t", schema, &sec), MC_EINVAL);
    assert_null(sec);
}

static void schema_check_rejects_broken_schemas(void **state)
{
    (void)state;
    static const char *const no_values[] = {NULL};
    const mc_config_key bad_default[] = {{.name = "n", .type = MC_CFG_INT, .default_value = "abc"},
                                         {.name = NULL}};
    const mc_config_key default_out_of_bounds[] = {
        {.name = "n", .type = MC_CFG_INT, .default_value = "0", .min = 1, .max = 5},
        {.name = NULL}};
    const mc_config_key no_default[] = {{.name = "n", .type = MC_CFG_STRING}, {.name = NULL}};
    const mc_config_key duplicate[] = {{.name = "n", .type = MC_CFG_STRING, .default_value = ""},
                                       {.name = "m", .type = MC_CFG_STRING, .default_value = ""},
                                       {.name = "n", .type = MC_CFG_BOOL, .default_value = "no"},
                                       {.name = NULL}};
    const mc_config_key reserved[] = {
        {.name = "enabled", .type = MC_CFG_BOOL, .default_value = "no"}, {.name = NULL}};
    const mc_config_key bad_name[] = {
        {.name = "Queue-Depth", .type = MC_CFG_INT, .default_value = "1"}, {.name = NULL}};
    const mc_config_key enum_null[] = {{.name = "e", .type = MC_CFG_ENUM, .default_value = "a"},
                                       {.name = NULL}};
    const mc_config_key enum_empty[] = {
        {.name = "e", .type = MC_CFG_ENUM, .default_value = "a", .enum_values = no_values},
        {.name = NULL}};
    const mc_config_key enum_default[] = {
        {.name = "e", .type = MC_CFG_ENUM, .default_value = "blue", .enum_values = colours},
        {.name = NULL}};
    const mc_config_key bad_type[] = {
        {.name = "x", .type = (mc_config_type)99, .default_value = "1"}, {.name = NULL}};
    const mc_config_key min_above_max[] = {
        {.name = "x", .type = MC_CFG_INT, .default_value = "1", .min = 5, .max = 1},
        {.name = NULL}};

    expect_schema_rejected(bad_default, "key 'n': 'abc' is not a valid INT");
    expect_schema_rejected(default_out_of_bounds, "key 'n': '0' is out of range");
    expect_schema_rejected(no_default, "key 'n': no default value");
    expect_schema_rejected(duplicate, "key 'n': declared twice (entries 0 and 2)");
    expect_schema_rejected(reserved, "key 'enabled': the name is reserved");
    expect_schema_rejected(bad_name, "name 'Queue-Depth' is not valid");
    expect_schema_rejected(enum_null, "key 'e': ENUM without values");
    expect_schema_rejected(enum_empty, "key 'e': ENUM without values");
    expect_schema_rejected(enum_default, "'blue' is not a valid ENUM");
    expect_schema_rejected(bad_type, "key 'x': unknown type 99");
    expect_schema_rejected(min_above_max, "key 'x': min 5 is above max 1");

    assert_int_equal(mc_config_schema_check(test_schema, sizeof(mc_config_key)), 0);
    assert_int_equal(mc_config_schema_check(NULL, sizeof(mc_config_key)), 0);
    assert_int_equal(mc_config_schema_check(mc_framework_schema, sizeof(mc_config_key)), 0);
    assert_int_equal(mc_config_schema_check(test_schema, sizeof(mc_config_key) - 8), MC_EINVAL);
    assert_error_has("smaller than the ABI 1.0 layout");
}

static void schema_check_bounds_the_key_count(void **state)
{
    (void)state;
    enum { KEYS = 258 };
    static char names[KEYS][8];
    static mc_config_key schema[KEYS];
    for (int i = 0; i < KEYS; i++) {
        snprintf(names[i], sizeof(names[i]), "k%03d", i);
        schema[i] = (mc_config_key){.name = names[i], .type = MC_CFG_BOOL, .default_value = "1"};
    }
    schema[256].name = NULL; /* 256 keys: the most allowed */
    assert_int_equal(mc_config_schema_check(schema, sizeof(mc_config_key)), 0);
    schema[256].name = names[256];
    schema[257].name = NULL; /* 257 keys */
    assert_int_equal(mc_config_schema_check(schema, sizeof(mc_config_key)), MC_EINVAL);
    assert_error_has("more than 256 keys");
}

/* A plugin built against a later ABI with a longer mc_config_key. */
typedef struct longer_key {
    mc_config_key key;
    int64_t added_later;
    const char *also_added;
} longer_key;

static void schema_check_uses_the_plugin_stride(void **state)
{
    (void)state;
    const longer_key good[] = {
        {.key = {.name = "a", .type = MC_CFG_INT, .default_value = "1"}, .added_later = -1},
        {.key = {.name = "b", .type = MC_CFG_SIZE, .default_value = "1M"}, .also_added = "x"},
        {.key = {.name = NULL}},
    };
    assert_int_equal(mc_config_schema_check(&good[0].key, sizeof(longer_key)), 0);

    const longer_key bad[] = {
        {.key = {.name = "a", .type = MC_CFG_INT, .default_value = "1"}},
        {.key = {.name = "b", .type = MC_CFG_SIZE, .default_value = "lots"}},
        {.key = {.name = NULL}},
    };
    assert_int_equal(mc_config_schema_check(&bad[0].key, sizeof(longer_key)), MC_EINVAL);
    assert_error_has("key 'b': 'lots' is not a valid SIZE");
}

/* ---- suggestions -------------------------------------------------------------------------- */

static void suggest_cases(void **state)
{
    (void)state;
    static const char *const keys[] = {"queue_depth",      "queue_bytes", "overflow",
                                       "max_message_size", "path",        "enabled"};
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    assert_string_equal(mc_suggest("queue_dpeth", keys, n), "queue_depth");
    assert_string_equal(mc_suggest("QUEUE_DEPTH", keys, n), "queue_depth");
    assert_string_equal(mc_suggest("queue_byts", keys, n), "queue_bytes");
    assert_string_equal(mc_suggest("overflw", keys, n), "overflow");
    assert_string_equal(mc_suggest("pth", keys, n), "path");
    /* A third of a long word may differ. */
    assert_string_equal(mc_suggest("maxi_mesage_sise", keys, n), "max_message_size");
    assert_null(mc_suggest("colour", keys, n));
    assert_null(mc_suggest("xy", keys, n));
    /* Within two edits, but nothing of the word is left. */
    static const char *const tiny[] = {"cd"};
    assert_null(mc_suggest("ab", tiny, 1));
    assert_string_equal(mc_suggest("cx", tiny, 1), "cd");
    assert_null(mc_suggest("verbose", keys, n));
    assert_null(mc_suggest("", keys, n));
    assert_null(mc_suggest(NULL, keys, n));
    assert_null(mc_suggest("path", keys, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(no_file_gives_defaults, clean_environment),
        cmocka_unit_test_teardown(memcast_config_variable_names_the_file, clean_environment),
        cmocka_unit_test_teardown(missing_file_is_enoent, clean_environment),
        cmocka_unit_test_teardown(shipped_file_loads, clean_environment),
        cmocka_unit_test_teardown(shipped_file_documents_defaults, clean_environment),
        cmocka_unit_test_teardown(sections_keep_file_order_and_merge, clean_environment),
        cmocka_unit_test_teardown(file_syntax_details, clean_environment),
        cmocka_unit_test_teardown(misspelt_key_suggests, clean_environment),
        cmocka_unit_test_teardown(unknown_key_without_near_match, clean_environment),
        cmocka_unit_test_teardown(bad_value_of_each_type, clean_environment),
        cmocka_unit_test_teardown(values_out_of_bounds, clean_environment),
        cmocka_unit_test_teardown(duplicate_key_names_both_lines, clean_environment),
        cmocka_unit_test_teardown(indented_line_is_rejected, clean_environment),
        cmocka_unit_test_teardown(over_long_line_is_rejected, clean_environment),
        cmocka_unit_test_teardown(syntax_error_names_the_line, clean_environment),
        cmocka_unit_test_teardown(framework_domain_is_validated, clean_environment),
        cmocka_unit_test_teardown(environment_beats_file, clean_environment),
        cmocka_unit_test_teardown(bad_environment_value, clean_environment),
        cmocka_unit_test_teardown(reserved_keys_in_plugin_sections, clean_environment),
        cmocka_unit_test_teardown(raw_values_before_binding, clean_environment),
        cmocka_unit_test_teardown(getters_check_key_and_type, clean_environment),
        cmocka_unit_test(parse_size_cases),
        cmocka_unit_test(parse_int_cases),
        cmocka_unit_test(parse_duration_cases),
        cmocka_unit_test(parse_bool_cases),
        cmocka_unit_test(schema_check_rejects_broken_schemas),
        cmocka_unit_test(schema_check_bounds_the_key_count),
        cmocka_unit_test(schema_check_uses_the_plugin_stride),
        cmocka_unit_test(suggest_cases),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
