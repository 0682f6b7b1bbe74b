/*
 * Plugin loader: every broken fixture fails with its own error code and a detail that
 * names the defect; search order, scanning and descriptor validation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "loader.h"

#include <memcast/version.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *fixture_dir(void)
{
    const char *dir = getenv("MC_FIXTURE_DIR");
    if (dir == NULL || dir[0] == '\0')
        fail_msg("MC_FIXTURE_DIR is not set (run through make check)");
    return dir;
}

static void assert_detail_has(const char *needle)
{
    const char *detail = mc_last_error();
    if (strstr(detail, needle) == NULL)
        fail_msg("mc_last_error() '%s' lacks '%s'", detail, needle);
}

static void assert_zeroed(const mc_loaded_plugin *p)
{
    assert_null(p->handle);
    assert_null(p->desc);
    assert_string_equal(p->name, "");
    assert_string_equal(p->path, "");
}

/* Loads fixture name from MC_FIXTURE_DIR and expects code plus up to two substrings. */
static void expect_fixture_error(const char *name, int code, const char *needle1,
                                 const char *needle2)
{
    const char *dirs[] = {fixture_dir()};
    mc_loaded_plugin p;
    memset(&p, 0x5a, sizeof(p));
    int rc = mc_loader_open(name, dirs, 1, &p);
    if (rc != code)
        fail_msg("loading %s: got %d, expected %d; detail: %s", name, rc, code, mc_last_error());
    assert_detail_has(needle1);
    if (needle2 != NULL)
        assert_detail_has(needle2);
    assert_zeroed(&p);
}

static char *make_temp_dir(void)
{
    char *dir = strdup("/tmp/mc_test_loader_XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_temp_dir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
}

/* The built shared object of a fixture (behind its .la). */
static void fixture_so(const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/.libs/mc_%s.so", fixture_dir(), name);
}

static void link_fixture(const char *dir, const char *fixture, const char *as)
{
    char target[4096], link_path[4096];
    fixture_so(fixture, target, sizeof(target));
    snprintf(link_path, sizeof(link_path), "%s/%s", dir, as);
    assert_int_equal(symlink(target, link_path), 0);
}

/* A real copy, so that the dynamic linker sees a different file than the fixture. */
static void copy_fixture(const char *dir, const char *fixture, char *dst, size_t size)
{
    char src[4096];
    fixture_so(fixture, src, sizeof(src));
    snprintf(dst, size, "%s/mc_%s.so", dir, fixture);
    FILE *in = fopen(src, "rb");
    FILE *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static bool is_mapped(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h != NULL)
        dlclose(h);
    return h != NULL;
}

/* ---- the broken fixtures ------------------------------------------------------------------ */

static void test_bad_magic(void **state)
{
    expect_fixture_error("bad_magic", MC_EABI, "magic is 0xdeadbeef", "mc_bad_magic.la");
}

static void test_bad_abi(void **state)
{
    expect_fixture_error("bad_abi", MC_EABI, "built for plugin ABI 99.", "rebuild the plugin");
}

static void test_short_struct(void **state)
{
    expect_fixture_error("short_struct", MC_EABI, "struct_size is 8", "expected at least");
}

static void test_missing_op(void **state)
{
    expect_fixture_error("missing_op", MC_EABI, "ops->send is NULL", "MC_ROLE_DATA");
}

static void test_undefined_symbol(void **state)
{
    expect_fixture_error("undefined_symbol", MC_EPLUGIN,
                         "undefined symbol: mc_fixture_function_that_exists_nowhere",
                         "check with ldd");
    /* The detail names the shared object itself, not libltdl's "file not found". */
    assert_detail_has(".libs/mc_undefined_symbol.so");
}

static void test_name_mismatch(void **state)
{
    expect_fixture_error("name_mismatch", MC_EABI, "'someone_else'", "expected 'name_mismatch'");
}

static void test_no_entry(void **state)
{
    expect_fixture_error("no_entry", MC_EPLUGIN, "no entry symbol 'memcast_plugin_entry'",
                         "MC_PLUGIN_DEFINE");
}

/* Built only once tests/Makefile.inc lists mc_entry_null.la; skipped until then. */
static void test_entry_null(void **state)
{
    char la[4096];
    snprintf(la, sizeof(la), "%s/mc_entry_null.la", fixture_dir());
    if (access(la, F_OK) != 0)
        skip();
    expect_fixture_error("entry_null", MC_EABI, "memcast_plugin_entry(", "returned NULL");
}

static void test_bad_schema(void **state)
{
    expect_fixture_error("bad_schema", MC_EABI, "retry_count", "config schema");
}

/* init is the context's business: a plugin whose init fails still loads and validates. */
static void test_init_fails_loads(void **state)
{
    const char *dirs[] = {fixture_dir()};
    mc_loaded_plugin p;
    assert_int_equal(mc_loader_open("init_fails", dirs, 1, &p), 0);
    char expected[4096];
    snprintf(expected, sizeof(expected), "%s/mc_init_fails.la", fixture_dir());
    assert_string_equal(p.path, expected);
    assert_string_equal(p.name, "init_fails");
    assert_non_null(p.handle);
    assert_non_null(p.desc);
    assert_string_equal(p.desc->name, "init_fails");
    assert_non_null(p.desc->ops->init);
    assert_int_equal(mc_descriptor_validate(p.desc, "init_fails"), 0);
    mc_loader_close(&p);
    assert_zeroed(&p);
}

static void test_inproc_loads(void **state)
{
    const char *path = getenv("MEMCAST_PLUGIN_PATH");
    assert_non_null(path);
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    const char *dirs[8];
    size_t ndirs = 0;
    for (char *dir = strtok(copy, ":"); dir != NULL && ndirs < 8; dir = strtok(NULL, ":"))
        dirs[ndirs++] = dir;
    mc_loaded_plugin p;
    int rc = mc_loader_open("inproc", dirs, ndirs, &p);
    if (rc != 0)
        fail_msg("inproc: %d: %s", rc, mc_last_error());
    assert_string_equal(p.desc->name, "inproc");
    assert_true(p.desc->roles & MC_ROLE_DATA);
    mc_loader_close(&p);
    assert_zeroed(&p);
}

/* ---- search ------------------------------------------------------------------------------- */

static void test_not_found_lists_dirs(void **state)
{
    const char *dirs[] = {"/nonexistent/one", "", NULL, fixture_dir()};
    mc_loaded_plugin p;
    assert_int_equal(mc_loader_open("nosuchplugin", dirs, 4, &p), MC_ENOENT);
    assert_detail_has("plugin 'nosuchplugin' not found");
    assert_detail_has("/nonexistent/one, ");
    assert_detail_has(fixture_dir());
    assert_detail_has("MEMCAST_PLUGIN_PATH");
    assert_detail_has("[nosuchplugin] path");
    assert_zeroed(&p);

    assert_int_equal(mc_loader_open("nosuchplugin", NULL, 0, &p), MC_ENOENT);
    assert_detail_has("(no directory)");
}

static void test_invalid_names(void **state)
{
    const char *bad[] = {"",    "Inproc",  "1abc",
                         "a-b", "../mc_x", "a/b",
                         "_x",  "a b",     "abcdefghijklmnopqrstuvwxyz123456"};
    const char *dirs[] = {fixture_dir()};
    mc_loaded_plugin p;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mc_loader_open(bad[i], dirs, 1, &p), MC_EINVAL);
        assert_detail_has("is invalid");
    }
    assert_int_equal(mc_loader_open(NULL, dirs, 1, &p), MC_EINVAL);
    /* 31 characters is the longest valid name: that one is merely not found. */
    assert_int_equal(mc_loader_open("abcdefghijklmnopqrstuvwxyz12345", dirs, 1, &p), MC_ENOENT);
}

static void test_first_dir_wins(void **state)
{
    char *tmp = make_temp_dir();
    link_fixture(tmp, "init_fails", "mc_init_fails.so");
    link_fixture(tmp, "bad_magic", "mc_bad_magic.so");
    char expected[4096];
    mc_loaded_plugin p;

    const char *tmp_first[] = {"", tmp, fixture_dir()};
    assert_int_equal(mc_loader_open("init_fails", tmp_first, 3, &p), 0);
    snprintf(expected, sizeof(expected), "%s/mc_init_fails.so", tmp);
    assert_string_equal(p.path, expected);
    mc_loader_close(&p);

    const char *fixture_first[] = {fixture_dir(), tmp};
    assert_int_equal(mc_loader_open("init_fails", fixture_first, 2, &p), 0);
    snprintf(expected, sizeof(expected), "%s/mc_init_fails.la", fixture_dir());
    assert_string_equal(p.path, expected);
    mc_loader_close(&p);

    /* A failure names the file of the directory that had it. */
    assert_int_equal(mc_loader_open("bad_magic", tmp_first, 3, &p), MC_EABI);
    snprintf(expected, sizeof(expected), "(%s/mc_bad_magic.so)", tmp);
    assert_detail_has(expected);
    remove_temp_dir(tmp);
}

/* A file that exists but will not load is an error, not a reason to look further. */
static void test_broken_file_is_not_skipped(void **state)
{
    char *tmp = make_temp_dir();
    write_file(tmp, "mc_init_fails.so", "this is not an ELF file\n");
    const char *dirs[] = {tmp, fixture_dir()};
    mc_loaded_plugin p;
    assert_int_equal(mc_loader_open("init_fails", dirs, 2, &p), MC_EPLUGIN);
    char expected[4096];
    snprintf(expected, sizeof(expected), "cannot load %s/mc_init_fails.so: ", tmp);
    assert_detail_has(expected);
    assert_zeroed(&p);
    remove_temp_dir(tmp);
}

static void test_la_without_shared_object(void **state)
{
    char *tmp = make_temp_dir();
    write_file(tmp, "mc_static.la", "# libtool\ndlname=''\nlibrary_names=''\n");
    write_file(tmp, "mc_gone.la", "dlname='mc_gone.so'\ninstalled=no\n");
    write_file(tmp, "mc_junk.la", "not a libtool file\n");
    const char *dirs[] = {tmp};
    mc_loaded_plugin p;

    assert_int_equal(mc_loader_open("static", dirs, 1, &p), MC_EPLUGIN);
    assert_detail_has("names no shared object");
    assert_int_equal(mc_loader_open("gone", dirs, 1, &p), MC_EPLUGIN);
    assert_detail_has("mc_gone.so: ");
    assert_detail_has("No such file");
    assert_int_equal(mc_loader_open("junk", dirs, 1, &p), MC_EPLUGIN);
    assert_detail_has("no dlname field");
    remove_temp_dir(tmp);
}

/* ---- open by path ------------------------------------------------------------------------- */

static void test_open_path(void **state)
{
    char so[4096], la[4096];
    fixture_so("init_fails", so, sizeof(so));
    snprintf(la, sizeof(la), "%s/mc_init_fails.la", fixture_dir());
    mc_loaded_plugin p;

    assert_int_equal(mc_loader_open_path(so, NULL, &p), 0);
    assert_string_equal(p.name, "init_fails");
    assert_string_equal(p.path, so);
    mc_loader_close(&p);

    assert_int_equal(mc_loader_open_path(la, "init_fails", &p), 0);
    assert_string_equal(p.path, la);
    mc_loader_close(&p);

    assert_int_equal(mc_loader_open_path(la, "other", &p), MC_EABI);
    assert_detail_has("expected 'other'");
    assert_zeroed(&p);

    snprintf(la, sizeof(la), "%s/mc_name_mismatch.la", fixture_dir());
    assert_int_equal(mc_loader_open_path(la, NULL, &p), MC_EABI);
    assert_detail_has("'someone_else'");
}

static void test_open_path_errors(void **state)
{
    mc_loaded_plugin p;
    assert_int_equal(mc_loader_open_path("/nonexistent/mc_x.so", NULL, &p), MC_ENOENT);
    assert_detail_has("/nonexistent/mc_x.so");
    assert_int_equal(mc_loader_open_path("/lib/libfoo.so", NULL, &p), MC_EINVAL);
    assert_detail_has("cannot tell the plugin name");
    assert_int_equal(mc_loader_open_path("/tmp/mc_Bad.so", NULL, &p), MC_EINVAL);
    assert_int_equal(mc_loader_open_path(NULL, NULL, &p), MC_EINVAL);
    assert_int_equal(mc_loader_open_path("/tmp/mc_x.so", "Not-a-name", &p), MC_EINVAL);
    assert_detail_has("'Not-a-name' is invalid");
}

/* A bare file name means the file in the current directory, not a library path search. */
static void test_open_path_relative(void **state)
{
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    char libs[4096];
    snprintf(libs, sizeof(libs), "%s/.libs", fixture_dir());
    assert_int_equal(chdir(libs), 0);
    mc_loaded_plugin p;
    int rc = mc_loader_open_path("mc_init_fails.so", NULL, &p);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("relative open: %d: %s", rc, mc_last_error());
    assert_string_equal(p.path, "./mc_init_fails.so");
    mc_loader_close(&p);
}

/* ---- close ---------------------------------------------------------------------------------- */

static void test_close_zeroed_is_safe(void **state)
{
    mc_loaded_plugin p;
    memset(&p, 0, sizeof(p));
    mc_loader_close(&p);
    mc_loader_close(&p);
    mc_loader_close(NULL);
    assert_zeroed(&p);
}

/* Both tests below decide MEMCAST_NO_DLCLOSE themselves, whatever the caller's environment
 * says (valgrind runs set it); the caller's value comes back afterwards. */
static int save_no_dlclose(void **state)
{
    const char *value = getenv("MEMCAST_NO_DLCLOSE");
    *state = value != NULL ? strdup(value) : NULL;
    return unsetenv("MEMCAST_NO_DLCLOSE");
}

static int restore_no_dlclose(void **state)
{
    char *value = *state;
    int rc =
        value != NULL ? setenv("MEMCAST_NO_DLCLOSE", value, 1) : unsetenv("MEMCAST_NO_DLCLOSE");
    free(value);
    return rc;
}

static void test_close_unmaps(void **state)
{
    char *tmp = make_temp_dir();
    char so[4096];
    copy_fixture(tmp, "init_fails", so, sizeof(so));
    mc_loaded_plugin p;
    assert_int_equal(mc_loader_open_path(so, NULL, &p), 0);
    assert_true(is_mapped(so));
    mc_loader_close(&p);
    assert_false(is_mapped(so));
    remove_temp_dir(tmp);
}

static void test_no_dlclose_keeps_mapped(void **state)
{
    char *tmp = make_temp_dir();
    char so[4096];
    copy_fixture(tmp, "init_fails", so, sizeof(so));
    mc_loaded_plugin p;
    assert_int_equal(mc_loader_open_path(so, NULL, &p), 0);
    assert_int_equal(setenv("MEMCAST_NO_DLCLOSE", "1", 1), 0);
    mc_loader_close(&p);
    assert_zeroed(&p);
    assert_true(is_mapped(so));
    remove_temp_dir(tmp);
}

/* ---- concurrency ---------------------------------------------------------------------------- */

#define LOAD_THREADS    4
#define LOAD_ITERATIONS 25

static void *load_repeatedly(void *arg)
{
    const char *dirs[] = {arg};
    intptr_t failures = 0;
    for (int i = 0; i < LOAD_ITERATIONS; i++) {
        mc_loaded_plugin p;
        if (mc_loader_open("init_fails", dirs, 1, &p) != 0)
            failures++;
        mc_loader_close(&p);
        /* Error details are per thread: this one must be ours. */
        if (mc_loader_open("bad_magic", dirs, 1, &p) != MC_EABI ||
            strstr(mc_last_error(), "bad_magic") == NULL)
            failures++;
    }
    return (void *)failures;
}

static void test_concurrent_loads(void **state)
{
    pthread_t threads[LOAD_THREADS];
    for (int i = 0; i < LOAD_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, load_repeatedly, (void *)fixture_dir()),
                         0);
    intptr_t failures = 0;
    for (int i = 0; i < LOAD_THREADS; i++) {
        void *result;
        assert_int_equal(pthread_join(threads[i], &result), 0);
        failures += (intptr_t)result;
    }
    assert_int_equal(failures, 0);
}

/* ---- scan ----------------------------------------------------------------------------------- */

typedef struct scan_result {
    size_t count;
    char names[16][64];
    char paths[16][4096];
} scan_result;

static void collect(void *user, const char *name, const char *path)
{
    scan_result *r = user;
    if (r->count < 16) {
        snprintf(r->names[r->count], sizeof(r->names[0]), "%s", name);
        snprintf(r->paths[r->count], sizeof(r->paths[0]), "%s", path);
    }
    r->count++;
}

static void test_scan_filters_junk(void **state)
{
    char *tmp = make_temp_dir();
    const char *files[] = {"README",
                           "mc_good.la.bak",
                           "mc_Bad.so",
                           "mc_x.so",
                           "mc_x.la",
                           "notmc_y.so",
                           "mc_zz.so",
                           "mc_aa.la",
                           "mc_.so",
                           "mc_a-b.so",
                           "mc_q.so.1",
                           "mc_x",
                           "mc_9lives.so",
                           "mc_abcdefghijklmnopqrstuvwxyz123456.so",
                           "mc_abcdefghijklmnopqrstuvwxyz12345.so"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        write_file(tmp, files[i], "");

    scan_result r = {0};
    mc_loader_scan(tmp, collect, &r);
    const char *names[] = {"aa", "abcdefghijklmnopqrstuvwxyz12345", "x", "zz"};
    const char *files_expected[] = {"mc_aa.la", "mc_abcdefghijklmnopqrstuvwxyz12345.so", "mc_x.la",
                                    "mc_zz.so"};
    assert_int_equal(r.count, 4);
    for (size_t i = 0; i < 4; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", tmp, files_expected[i]);
        assert_string_equal(r.names[i], names[i]);
        assert_string_equal(r.paths[i], path);
    }
    remove_temp_dir(tmp);

    scan_result none = {0};
    mc_loader_scan("/nonexistent/dir", collect, &none);
    assert_int_equal(none.count, 0);
}

static void test_scan_fixture_dir(void **state)
{
    static const char *const fixtures[] = {"bad_abi",    "bad_magic",    "bad_schema",
                                           "init_fails", "missing_op",   "name_mismatch",
                                           "no_entry",   "short_struct", "undefined_symbol"};
    scan_result r = {0};
    mc_loader_scan(fixture_dir(), collect, &r);
    assert_in_range(r.count, 9, 16);
    for (size_t i = 1; i < r.count; i++)
        assert_true(strcmp(r.names[i - 1], r.names[i]) < 0);
    for (size_t f = 0; f < 9; f++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/mc_%s.la", fixture_dir(), fixtures[f]);
        size_t i = 0;
        while (i < r.count && strcmp(r.names[i], fixtures[f]) != 0)
            i++;
        if (i == r.count)
            fail_msg("scan of %s missed %s", fixture_dir(), fixtures[f]);
        assert_string_equal(r.paths[i], path);
    }
}

static void test_default_dir(void **state)
{
    assert_string_equal(mc_loader_default_dir(), MC_PKGLIBDIR);
    assert_int_equal(mc_loader_default_dir()[0], '/');
}

/* ---- mc_descriptor_validate ------------------------------------------------------------------ */

static int stub_init(const mc_host *host, mc_plugin **out)
{
    return MC_ENOSYS;
}
static void stub_fini(mc_plugin *plugin)
{
}
static int stub_limits(mc_plugin *plugin, mc_plugin_limits *out)
{
    return MC_ENOSYS;
}
static int stub_pub_open(mc_plugin *plugin, const mc_endpoint_info *info, void *cookie,
                         mc_plugin_pub **out)
{
    return MC_ENOSYS;
}
static void stub_pub_close(mc_plugin_pub *pub)
{
}
static int stub_sub_open(mc_plugin *plugin, const mc_endpoint_info *info, void *cookie,
                         mc_plugin_sub **out)
{
    return MC_ENOSYS;
}
static void stub_sub_close(mc_plugin_sub *sub)
{
}
static int stub_pub_connect(mc_plugin_pub *pub, const mc_peer *sub)
{
    return MC_ENOSYS;
}
static void stub_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
}
static int stub_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    return MC_ENOSYS;
}
static int stub_loan(mc_plugin_pub *pub, size_t size, void **buf)
{
    return MC_ENOSYS;
}
static int stub_commit(mc_plugin_pub *pub, void *buf, const mc_sample *sample)
{
    return MC_ENOSYS;
}
static void stub_loan_discard(mc_plugin_pub *pub, void *buf)
{
}

typedef struct test_plugin {
    mc_plugin_descriptor desc;
    mc_plugin_ops ops;
} test_plugin;

/* A valid data plugin named "good"; tests break one thing at a time. */
static int stub_reg_announce(mc_plugin *p, const mc_registration *reg)
{
    return 0;
}

static void stub_reg_withdraw(mc_plugin *p, const mc_registration *reg)
{
}

static void make_good(test_plugin *t)
{
    memset(t, 0, sizeof(*t));
    t->ops = (mc_plugin_ops){
        .struct_size = sizeof(mc_plugin_ops),
        .init = stub_init,
        .fini = stub_fini,
        .limits = stub_limits,
        .pub_open = stub_pub_open,
        .pub_close = stub_pub_close,
        .sub_open = stub_sub_open,
        .sub_close = stub_sub_close,
        .pub_connect = stub_pub_connect,
        .pub_disconnect = stub_pub_disconnect,
        .send = stub_send,
    };
    t->desc = (mc_plugin_descriptor){
        MC_PLUGIN_DESCRIPTOR_HEADER,
        .name = "good",
        .version = "1.0",
        .description = "a test descriptor",
        .roles = MC_ROLE_DATA,
        .scopes = MC_SCOPE_PROCESS,
        .ops = &t->ops,
    };
}

static void expect_invalid(const test_plugin *t, const char *needle)
{
    int rc = mc_descriptor_validate(&t->desc, "good");
    if (rc != MC_EABI)
        fail_msg("expected MC_EABI for '%s', got %d (%s)", needle, rc, mc_last_error());
    assert_detail_has("plugin 'good'");
    assert_detail_has(needle);
}

static void test_validate_good(void **state)
{
    test_plugin t;
    make_good(&t);
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);
    assert_int_equal(mc_descriptor_validate(&t.desc, NULL), 0);
    assert_int_equal(mc_descriptor_validate(NULL, "good"), MC_EABI);
    assert_detail_has("descriptor is NULL");
}

static void test_validate_each_required_op(void **state)
{
    static const struct {
        const char *name;
        size_t offset;
    } ops[] = {
        {"init", offsetof(mc_plugin_ops, init)},
        {"fini", offsetof(mc_plugin_ops, fini)},
        {"limits", offsetof(mc_plugin_ops, limits)},
        {"pub_open", offsetof(mc_plugin_ops, pub_open)},
        {"pub_close", offsetof(mc_plugin_ops, pub_close)},
        {"sub_open", offsetof(mc_plugin_ops, sub_open)},
        {"sub_close", offsetof(mc_plugin_ops, sub_close)},
        {"pub_connect", offsetof(mc_plugin_ops, pub_connect)},
        {"pub_disconnect", offsetof(mc_plugin_ops, pub_disconnect)},
        {"send", offsetof(mc_plugin_ops, send)},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        test_plugin t;
        make_good(&t);
        memset((char *)&t.ops + ops[i].offset, 0, sizeof(t.ops.send));
        char needle[64];
        snprintf(needle, sizeof(needle), "ops->%s is NULL", ops[i].name);
        expect_invalid(&t, needle);

        /* A registration-only plugin needs no data ops, but still init, fini, limits. */
        t.desc.roles = MC_ROLE_REGISTRATION;
        t.desc.scopes = 0;
        t.ops.reg_announce = stub_reg_announce;
        t.ops.reg_withdraw = stub_reg_withdraw;
        int rc = mc_descriptor_validate(&t.desc, "good");
        if (i < 3)
            expect_invalid(&t, needle);
        else
            assert_int_equal(rc, 0);
    }
}

static void test_validate_registration_ops(void **state)
{
    test_plugin t;
    make_good(&t);
    t.desc.roles = MC_ROLE_DATA | MC_ROLE_REGISTRATION;
    expect_invalid(&t, "ops->reg_announce is missing");
    t.ops.reg_announce = stub_reg_announce;
    expect_invalid(&t, "ops->reg_withdraw is missing");
    t.ops.reg_withdraw = stub_reg_withdraw;
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);
    /* set, but beyond the table the plugin declared: missing */
    t.ops.struct_size = offsetof(mc_plugin_ops, reg_announce);
    expect_invalid(&t, "ops->reg_announce is missing");
}

static void test_validate_zero_copy(void **state)
{
    test_plugin t;
    make_good(&t);
    t.ops.loan = stub_loan;
    expect_invalid(&t, "found loan=set, commit=NULL, loan_discard=NULL");
    t.ops.commit = stub_commit;
    expect_invalid(&t, "loan_discard=NULL");
    t.ops.loan = NULL;
    t.ops.loan_discard = stub_loan_discard;
    expect_invalid(&t, "loan=NULL, commit=set, loan_discard=set");
    t.ops.loan = stub_loan;
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);
    t.desc.caps = MC_CAP_ZERO_COPY;
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);

    /* Set, but beyond the table as the plugin declared it: they do not count. */
    t.ops.struct_size = offsetof(mc_plugin_ops, loan);
    expect_invalid(&t, "MC_CAP_ZERO_COPY");

    make_good(&t);
    t.desc.caps = MC_CAP_ZERO_COPY;
    expect_invalid(&t, "MC_CAP_ZERO_COPY");
}

static void test_validate_bits(void **state)
{
    test_plugin t;
    make_good(&t);
    t.desc.roles = MC_ROLE_DATA | (1u << 5);
    expect_invalid(&t, "unknown bits 0x20");
    t.desc.roles = 0;
    expect_invalid(&t, "roles is 0");
    t.desc.roles = MC_ROLE_DATA;
    t.desc.scopes = 0;
    expect_invalid(&t, "scopes is 0");
    t.desc.scopes = MC_SCOPE_HOST;
    t.desc.caps = MC_CAP_ORDERED | (1u << 9);
    expect_invalid(&t, "caps 0x201 has unknown bits 0x200");
    t.desc.caps = MC_CAP_ORDERED | MC_CAP_RELIABLE | MC_CAP_THREAD_SAFE | MC_CAP_MULTI_PROCESS;
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);
}

static void test_validate_header(void **state)
{
    test_plugin t;
    make_good(&t);
    t.desc.magic = 0x12345678u;
    expect_invalid(&t, "magic is 0x12345678, expected 0x4c50434d");

    make_good(&t);
    t.desc.abi_major = MC_PLUGIN_ABI_MAJOR + 1;
    char needle[128];
    snprintf(needle, sizeof(needle), "built for plugin ABI %d.%d, this memcast speaks %d.%d",
             MC_PLUGIN_ABI_MAJOR + 1, MC_PLUGIN_ABI_MINOR, MC_PLUGIN_ABI_MAJOR,
             MC_PLUGIN_ABI_MINOR);
    expect_invalid(&t, needle);

    /* Another minor, older or newer, is compatible by design. */
    make_good(&t);
    t.desc.abi_minor = MC_PLUGIN_ABI_MINOR + 7;
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);

    make_good(&t);
    t.desc.struct_size = sizeof(mc_plugin_descriptor) - 8;
    expect_invalid(&t, "descriptor struct_size");

    make_good(&t);
    t.desc.config_key_size = sizeof(mc_config_key) - 1;
    expect_invalid(&t, "config_key_size");
}

/* A plugin built against a later minor has longer tables: accepted. */
static void test_validate_larger_structs(void **state)
{
    struct {
        mc_plugin_descriptor desc;
        uint64_t future[4];
    } big_desc;
    struct {
        mc_plugin_ops ops;
        void (*future_op)(void);
    } big_ops;
    test_plugin t;
    make_good(&t);
    memset(&big_desc, 0, sizeof(big_desc));
    memset(&big_ops, 0, sizeof(big_ops));
    big_ops.ops = t.ops;
    big_ops.ops.struct_size = sizeof(big_ops);
    big_desc.desc = t.desc;
    big_desc.desc.struct_size = sizeof(big_desc);
    big_desc.desc.ops = &big_ops.ops;
    assert_int_equal(mc_descriptor_validate(&big_desc.desc, "good"), 0);

    /* And a 1.0 ops table that stops right after send. */
    t.ops.struct_size = offsetof(mc_plugin_ops, sub_connect);
    assert_int_equal(mc_descriptor_validate(&t.desc, "good"), 0);
    t.ops.struct_size = offsetof(mc_plugin_ops, send);
    expect_invalid(&t, "ops struct_size is");
    t.desc.ops = NULL;
    expect_invalid(&t, "descriptor ops is NULL");
}

static void test_validate_names_and_strings(void **state)
{
    test_plugin t;
    make_good(&t);
    assert_int_equal(mc_descriptor_validate(&t.desc, "other"), MC_EABI);
    assert_detail_has("descriptor name is 'good', expected 'other'");

    const char *bad[] = {"Good", "9good", "go-od", "", "abcdefghijklmnopqrstuvwxyz123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t.desc.name = bad[i];
        assert_int_equal(mc_descriptor_validate(&t.desc, NULL), MC_EABI);
        assert_detail_has("is invalid");
    }
    t.desc.name = NULL;
    expect_invalid(&t, "descriptor name is NULL");

    make_good(&t);
    t.desc.version = NULL;
    expect_invalid(&t, "version is NULL");
    make_good(&t);
    t.desc.description = NULL;
    expect_invalid(&t, "description is NULL");
}

static void test_validate_schema(void **state)
{
    static const mc_config_key good_schema[] = {
        {.name = "depth", .type = MC_CFG_INT, .default_value = "3", .min = 0, .max = 10},
        {.name = "verbose", .type = MC_CFG_BOOL, .default_value = "false"},
        {.name = "segment", .type = MC_CFG_SIZE, .default_value = "4K"},
        {.name = "period", .type = MC_CFG_DURATION, .default_value = "250ms"},
        {.name = "label", .type = MC_CFG_STRING, .default_value = "x"},
        {.name = NULL},
    };
    static const mc_config_key bad_schema[] = {
        {.name = "depth", .type = MC_CFG_INT, .default_value = "3"},
        {.name = "queue_len", .type = MC_CFG_INT, .default_value = "many"},
        {.name = NULL},
    };
    test_plugin t;
    make_good(&t);
    t.desc.config = good_schema;
    if (mc_descriptor_validate(&t.desc, "good") != 0)
        fail_msg("good schema rejected: %s", mc_last_error());
    t.desc.config = bad_schema;
    expect_invalid(&t, "config schema: ");
    assert_detail_has("queue_len");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_bad_abi),
        cmocka_unit_test(test_short_struct),
        cmocka_unit_test(test_missing_op),
        cmocka_unit_test(test_undefined_symbol),
        cmocka_unit_test(test_name_mismatch),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_bad_schema),
        cmocka_unit_test(test_entry_null),
        cmocka_unit_test(test_init_fails_loads),
        cmocka_unit_test(test_inproc_loads),
        cmocka_unit_test(test_not_found_lists_dirs),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_first_dir_wins),
        cmocka_unit_test(test_broken_file_is_not_skipped),
        cmocka_unit_test(test_la_without_shared_object),
        cmocka_unit_test(test_open_path),
        cmocka_unit_test(test_open_path_errors),
        cmocka_unit_test(test_open_path_relative),
        cmocka_unit_test(test_close_zeroed_is_safe),
        cmocka_unit_test_setup_teardown(test_close_unmaps, save_no_dlclose, restore_no_dlclose),
        cmocka_unit_test_setup_teardown(test_no_dlclose_keeps_mapped, save_no_dlclose,
                                        restore_no_dlclose),
        cmocka_unit_test(test_concurrent_loads),
        cmocka_unit_test(test_scan_filters_junk),
        cmocka_unit_test(test_scan_fixture_dir),
        cmocka_unit_test(test_default_dir),
        cmocka_unit_test(test_validate_good),
        cmocka_unit_test(test_validate_each_required_op),
        cmocka_unit_test(test_validate_registration_ops),
        cmocka_unit_test(test_validate_zero_copy),
        cmocka_unit_test(test_validate_bits),
        cmocka_unit_test(test_validate_header),
        cmocka_unit_test(test_validate_larger_structs),
        cmocka_unit_test(test_validate_names_and_strings),
        cmocka_unit_test(test_validate_schema),
    };
    return cmocka_run_group_tests_name("loader", tests, NULL, NULL);
}
