/*
 * memcast-conformance: runs the conformance suite against one transport plugin.
 *
 *   memcast-conformance [options] PLUGIN
 *
 * The runner itself never loads the plugin. It writes a configuration naming only that
 * plugin into a private temporary directory, checks in a child process that the plugin
 * loads, validates and initialises (exit 99 otherwise), then runs every case in a child
 * of its own with a timeout: a crash or a hang fails that case, not the suite. Cases
 * declare the roles, capabilities and scopes they need; a plugin without them gets SKIP
 * with the reason.
 *
 * Endpoints of different contexts meet through a registration transport: the plugin
 * itself when it has MC_ROLE_REGISTRATION, else --registration, else (for a plugin that
 * bridges beyond its process) the udp plugin found on the search path; the cases that
 * need one are skipped, with the reason, when none loads. A plugin without MC_ROLE_DATA
 * is loaded with a data transport (--data, default inproc), since a context needs one.
 *
 * Exit status: 0 every case passed or was skipped, 1 a case failed, 77 no case applied,
 * 99 the plugin is unusable, 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memcast/version.h>

#include "conformance.h"
#include "../../framework/config.h"
#include "context.h"

#define EXIT_PASS     0
#define EXIT_FAIL     1
#define EXIT_USAGE    2
#define EXIT_NONE     77
#define EXIT_UNUSABLE 99
#define MAX_EXCLUDES  32
#define MAX_CASES     64

typedef enum output_format { FORMAT_TAP, FORMAT_TEXT } output_format;

typedef struct options {
    const char *plugin;
    const char *config;
    const char *registration;
    const char *data;
    const char *suites; /* comma-separated, NULL: all */
    const char *exclude_text[MAX_EXCLUDES];
    regex_t exclude[MAX_EXCLUDES];
    size_t exclude_count;
    int timeout_s;
    output_format format;
    bool list;
    bool verbose;
} options;

/* What the runner and its children share: one page set, mapped before any fork. */
typedef struct shared_area {
    conf_report report;
    conf_plugin plugin;
    conf_plugin registration;
    conf_plugin data;
} shared_area;

/* The registration and data transports the run settled on, and the configurations. */
typedef struct setup {
    const conf_plugin *registration;            /* NULL: cases that need one are skipped */
    bool separate_registration;                 /* not the plugin itself: loaded by meet_config */
    char registration_missing[CONF_REASON_MAX]; /* why there is none */
    const conf_plugin *data;                    /* NULL unless the plugin has no data role */
    char base_config[CONF_PATH_MAX + 32];       /* the plugin (and the data transport) */
    char meet_config[CONF_PATH_MAX + 32];       /* the same plus the registration transport */
} setup;

#define DEFAULT_REGISTRATION "udp"
#define DEFAULT_DATA         "inproc"

typedef struct suite {
    const char *name;
    const conf_case *cases;
} suite;

static const suite suites[] = {
    {"abi", conf_cases_abi},
    {"config", conf_cases_config},
    {"lifecycle", conf_cases_lifecycle},
    {"loopback", conf_cases_loopback},
    {"multiprocess", conf_cases_multiprocess},
    {"limits", conf_cases_limits},
    {"ordering", conf_cases_ordering},
    {"zerocopy", conf_cases_zerocopy},
    {"reliable", conf_cases_reliable},
    {"robustness", conf_cases_robustness},
    {"concurrency", conf_cases_concurrency},
    {"registration", conf_cases_registration},
};
#define SUITE_COUNT (sizeof(suites) / sizeof(suites[0]))

typedef struct result {
    const conf_case *c;
    conf_verdict verdict;
    bool ran; /* a case process ran: its report holds the details */
    char skip_reason[CONF_REASON_MAX];
    double seconds;
} result;

static volatile sig_atomic_t running_child;
static volatile sig_atomic_t interrupted;

/* ---- small utilities --------------------------------------------------------------------- */

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("memcast-conformance: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (try --help)\n", stderr);
    va_end(ap);
    exit(EXIT_USAGE);
}

static bool ends_with(const char *text, const char *suffix)
{
    size_t a = strlen(text), b = strlen(suffix);
    return a >= b && strcmp(text + a - b, suffix) == 0;
}

static bool plugin_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > MC_PLUGIN_NAME_MAX || name[0] < 'a' || name[0] > 'z')
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_'))
            return false;
    return true;
}

static double seconds_since(int64_t start_ms)
{
    return (double)(conf_now_ms() - start_ms) / 1000.0;
}

/* ---- LD_BIND_NOW ------------------------------------------------------------------------- */

/* With lazy binding a plugin that calls a function that exists nowhere loads fine and dies
 * at the first call; with LD_BIND_NOW it fails to load, which is the verdict it deserves.
 * The dynamic linker reads the variable at exec time, hence the re-exec. */
static void ensure_bind_now(char **argv)
{
    const char *now = getenv("LD_BIND_NOW");
    if (now != NULL && now[0] != '\0')
        return;
    setenv("LD_BIND_NOW", "1", 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "memcast-conformance: warning: cannot re-execute with LD_BIND_NOW=1: %s\n",
            strerror(errno));
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: memcast-conformance [options] PLUGIN\n"
            "\n"
            "Runs the memcast conformance suite against one transport plugin and holds it to\n"
            "the capabilities its descriptor declares. PLUGIN is a path to mc_NAME.so or a\n"
            "libtool mc_NAME.la, or a bare NAME found like memcast finds plugins\n"
            "(MEMCAST_PLUGIN_PATH, [framework] plugin_path of --config, %s).\n"
            "\n"
            "options:\n"
            "  -s, --suite LIST       comma-separated suites to run (default: all):\n"
            "                         abi,config,lifecycle,loopback,multiprocess,limits,\n"
            "                         ordering,zerocopy,reliable,robustness,concurrency,\n"
            "                         registration\n"
            "  -e, --exclude REGEX    skip cases whose SUITE/CASE name matches (repeatable)\n"
            "  -t, --timeout SEC      per case; a case running longer fails (default 30)\n"
            "  -c, --config FILE      use the [NAME] section of FILE for the plugin\n"
            "  -r, --registration PLUGIN\n"
            "                         the registration transport that joins contexts and\n"
            "                         processes when the plugin has no MC_ROLE_REGISTRATION;\n"
            "                         default for a plugin of scope host or "
            "network: " DEFAULT_REGISTRATION "\n"
            "                         from the search path (its cases skip if none loads)\n"
            "  -d, --data PLUGIN      the data transport loaded next to a plugin that has no\n"
            "                         MC_ROLE_DATA (default: " DEFAULT_DATA "; the registration\n"
            "                         suite's matching case needs one of scope host)\n"
            "  -l, --list             list the cases and what each asserts, then exit\n"
            "  -f, --format tap|text  output (default: text on a terminal, tap otherwise)\n"
            "  -v, --verbose          show the log of the plugin and memcast on stderr\n"
            "  -h, --help             this text\n"
            "      --version          print the version\n"
            "\n"
            "\n"
            "A plugin of scope process runs the delivery suites in one context; a plugin of\n"
            "scope host runs them with publisher and subscriber in two contexts of one\n"
            "process, joined by the registration transport. Each case runs in a domain of\n"
            "its own. SKIP says what the plugin does not declare (role, capability, scope)\n"
            "or what is missing to run the case (a registration transport); a capability\n"
            "that is declared and not kept is a FAIL.\n"
            "\n"
            "exit status: 0 passed (skips allowed), 1 a case failed, 77 no case applied,\n"
            "99 the plugin does not load, validate or initialise, 2 bad usage.\n",
            mc_loader_default_dir());
}

static bool suite_known(const char *name, size_t len)
{
    for (size_t i = 0; i < SUITE_COUNT; i++)
        if (strlen(suites[i].name) == len && strncmp(suites[i].name, name, len) == 0)
            return true;
    return false;
}

static void check_suite_list(const char *list)
{
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ", ");
        if (len > 0 && !suite_known(p, len))
            die_usage("unknown suite '%.*s'", (int)len, p);
        p += len;
        p += strspn(p, ", ");
    }
}

static bool suite_selected(const options *o, const char *name)
{
    if (o->suites == NULL)
        return true;
    size_t want = strlen(name);
    for (const char *p = o->suites; *p != '\0';) {
        size_t len = strcspn(p, ", ");
        if (len == want && strncmp(p, name, len) == 0)
            return true;
        p += len;
        p += strspn(p, ", ");
    }
    return false;
}

static void add_exclude(options *o, const char *regex)
{
    if (o->exclude_count == MAX_EXCLUDES)
        die_usage("at most %d --exclude options", MAX_EXCLUDES);
    int rc = regcomp(&o->exclude[o->exclude_count], regex, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[256];
        regerror(rc, &o->exclude[o->exclude_count], why, sizeof(why));
        die_usage("--exclude '%s': %s", regex, why);
    }
    o->exclude_text[o->exclude_count++] = regex;
}

static int parse_timeout(const char *text)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < 1 || value > 86400)
        die_usage("--timeout '%s': expected whole seconds from 1 to 86400", text);
    return (int)value;
}

static void parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"suite", required_argument, NULL, 's'},
        {"exclude", required_argument, NULL, 'e'},
        {"timeout", required_argument, NULL, 't'},
        {"config", required_argument, NULL, 'c'},
        {"registration", required_argument, NULL, 'r'},
        {"data", required_argument, NULL, 'd'},
        {"list", no_argument, NULL, 'l'},
        {"format", required_argument, NULL, 'f'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->timeout_s = 30;
    o->format = isatty(STDOUT_FILENO) ? FORMAT_TEXT : FORMAT_TAP;
    int opt;
    while ((opt = getopt_long(argc, argv, "s:e:t:c:r:d:lf:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            check_suite_list(optarg);
            o->suites = optarg;
            break;
        case 'e':
            add_exclude(o, optarg);
            break;
        case 't':
            o->timeout_s = parse_timeout(optarg);
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'r':
            o->registration = optarg;
            break;
        case 'd':
            o->data = optarg;
            break;
        case 'l':
            o->list = true;
            break;
        case 'f':
            if (strcmp(optarg, "tap") == 0)
                o->format = FORMAT_TAP;
            else if (strcmp(optarg, "text") == 0)
                o->format = FORMAT_TEXT;
            else
                die_usage("--format '%s': expected tap or text", optarg);
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_PASS);
        case 'V':
            printf("memcast-conformance %s (plugin ABI %d.%d)\n", MC_VERSION_STRING,
                   MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
            exit(EXIT_PASS);
        default:
            die_usage("bad option");
        }
    }
    if (optind < argc)
        o->plugin = argv[optind++];
    if (optind < argc)
        die_usage("one PLUGIN only; '%s' is extra", argv[optind]);
    if (o->plugin == NULL && !o->list)
        die_usage("no PLUGIN given");
}

/* ---- --list --------------------------------------------------------------------------------- */

static void any_of(uint32_t scopes, char *buf, size_t size);

static const char *meet_text(conf_meet meet)
{
    switch (meet) {
    case CONF_MEET_CONTEXTS:
        return "one context for scope process, else two joined by registration";
    case CONF_MEET_PROCESSES:
        return "processes meet through registration";
    case CONF_MEET_NONE:
        break;
    }
    return "";
}

static void roles_text(uint32_t roles, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s%s", roles & MC_ROLE_DATA ? "data" : "",
             (roles & MC_ROLE_DATA) && (roles & MC_ROLE_REGISTRATION) ? ", " : "",
             roles & MC_ROLE_REGISTRATION ? "registration" : "");
}

/* "role: data; caps: ordered; scope: process, host; two contexts..." */
static void requirement_text(const conf_case *c, char *buf, size_t size)
{
    char part[160];
    size_t used = 0;
    buf[0] = '\0';
    if (c->roles) {
        roles_text(c->roles, part, sizeof(part));
        used += (size_t)snprintf(buf + used, size - used, "role: %s", part);
    }
    if (c->caps && used < size) {
        conf_caps_text(c->caps, part, sizeof(part));
        used += (size_t)snprintf(buf + used, size - used, "%scaps: %s", used ? "; " : "", part);
    }
    if (c->scopes && used < size) {
        any_of(c->scopes, part, sizeof(part));
        used += (size_t)snprintf(buf + used, size - used, "%sscope: %s", used ? "; " : "", part);
    }
    if (c->meet != CONF_MEET_NONE && used < size)
        snprintf(buf + used, size - used, "%s%s", used ? "; " : "", meet_text(c->meet));
}

static void list_cases(void)
{
    for (size_t s = 0; s < SUITE_COUNT; s++) {
        for (const conf_case *c = suites[s].cases; c->name != NULL; c++) {
            char full[96], needs[256];
            snprintf(full, sizeof(full), "%s/%s", c->suite, c->name);
            requirement_text(c, needs, sizeof(needs));
            printf("%-32s %s\n", full, c->summary);
            if (needs[0] != '\0')
                printf("%-32s   [needs %s]\n", "", needs);
        }
    }
}

/* ---- finding the plugin ------------------------------------------------------------------- */

static bool looks_like_path(const char *arg)
{
    return strchr(arg, '/') != NULL || ends_with(arg, ".la") || ends_with(arg, ".so");
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Fills name, path and dir from a file path; the directory is made absolute (the
 * generated configuration must not depend on the working directory). */
static bool plugin_from_path(const char *arg, conf_plugin *p, char *why, size_t size)
{
    const char *slash = strrchr(arg, '/');
    const char *base = slash ? slash + 1 : arg;
    char dir[CONF_PATH_MAX];
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - arg) : 1, slash ? arg : ".");
    if (dir[0] == '\0')
        snprintf(dir, sizeof(dir), "/");
    size_t len = strlen(base);
    bool suffix_ok = ends_with(base, ".la") || ends_with(base, ".so");
    if (strncmp(base, MC_PLUGIN_FILE_PREFIX, 3) != 0 || !suffix_ok ||
        !plugin_name_ok(base + 3, len - 6)) {
        snprintf(why, size,
                 "%s: cannot tell the plugin name from the file name: expected mc_NAME.so or "
                 "mc_NAME.la (memcast finds plugins by that name)",
                 arg);
        return false;
    }
    if (!is_file(arg)) {
        snprintf(why, size, "%s: no such file", arg);
        return false;
    }
    char absolute[PATH_MAX];
    if (realpath(dir, absolute) == NULL) {
        conf_format(why, size, "%s: %s", dir, strerror(errno));
        return false;
    }
    if (strlen(absolute) + 1 + len >= sizeof(p->path)) {
        snprintf(why, size, "%s: the path is too long", arg);
        return false;
    }
    snprintf(p->name, sizeof(p->name), "%.*s", (int)(len - 6), base + 3);
    snprintf(p->dir, sizeof(p->dir), "%s", absolute);
    conf_format(p->path, sizeof(p->path), "%s/%s", absolute, base);
    return true;
}

/* A bare name is looked up where the framework would look for it. */
static bool plugin_from_name(const char *name, const char *config, conf_plugin *p, char *why,
                             size_t size)
{
    if (!plugin_name_ok(name, strlen(name))) {
        snprintf(why, size, "'%s' is neither a plugin file nor a plugin name ([a-z][a-z0-9_]*)",
                 name);
        return false;
    }
    mc_config *cfg = NULL;
    mc_config_section *framework = NULL;
    if (config != NULL &&
        (mc_config_load(config, &cfg) != 0 ||
         mc_config_section_bind(cfg, "framework", mc_framework_schema, &framework) != 0)) {
        snprintf(why, size, "%s", mc_last_error());
        mc_config_free(cfg);
        return false;
    }
    static char storage[MC_MAX_SEARCH_DIRS][4096];
    const char *dirs[MC_MAX_SEARCH_DIRS];
    size_t n = mc_plugin_search_dirs(cfg, framework, name, storage, dirs, MC_MAX_SEARCH_DIRS);
    bool found = false;
    char looked[2048] = "";
    for (size_t i = 0; i < n && !found; i++) {
        for (int la = 1; la >= 0 && !found; la--) {
            char file[CONF_PATH_MAX + 64];
            snprintf(file, sizeof(file), "%s/mc_%s.%s", dirs[i], name, la ? "la" : "so");
            if (is_file(file))
                found = plugin_from_path(file, p, why, size);
        }
        size_t used = strlen(looked);
        snprintf(looked + used, sizeof(looked) - used, "%s%s", used ? ", " : "", dirs[i]);
    }
    mc_config_section_free(framework);
    mc_config_free(cfg);
    if (!found && why[0] == '\0')
        snprintf(why, size, "plugin '%s' not found; looked in: %s (set MEMCAST_PLUGIN_PATH)", name,
                 looked);
    return found;
}

static bool resolve_plugin(const char *arg, const char *config, conf_plugin *p, char *why,
                           size_t size)
{
    why[0] = '\0';
    memset(p, 0, sizeof(*p));
    return looks_like_path(arg) ? plugin_from_path(arg, p, why, size)
                                : plugin_from_name(arg, config, p, why, size);
}

/* ---- the generated configuration ----------------------------------------------------------- */

static bool is_section_header(const char *line, char *name, size_t size)
{
    const char *p = line + strspn(line, " \t");
    if (*p != '[')
        return false;
    const char *end = strchr(p, ']');
    if (end == NULL)
        return false;
    snprintf(name, size, "%.*s", (int)(end - p - 1), p + 1);
    return true;
}

static bool reserved_key(const char *line)
{
    const char *p = line + strspn(line, " \t");
    size_t len = strcspn(p, " \t=:");
    return (len == 4 && strncmp(p, "path", 4) == 0) || (len == 7 && strncmp(p, "enabled", 7) == 0);
}

/* Copies the [name] section of the user's file, except the keys the suite sets itself. */
static bool copy_user_section(FILE *out, const char *file, const char *name)
{
    FILE *in = fopen(file, "r");
    if (in == NULL)
        return false;
    char line[4096];
    bool inside = false;
    while (fgets(line, sizeof(line), in) != NULL) {
        char section[256];
        if (is_section_header(line, section, sizeof(section))) {
            inside = strcmp(section, name) == 0;
            continue;
        }
        if (!inside)
            continue;
        if (reserved_key(line)) {
            fprintf(stderr,
                    "memcast-conformance: ignoring '%.*s' in [%s] of %s: the suite loads the "
                    "plugin given on the command line\n",
                    (int)strcspn(line, "\n"), line, name, file);
            continue;
        }
        fputs(line, out);
    }
    fclose(in);
    return true;
}

/* One [NAME] section: path, and the lines of the user's --config section. */
static bool write_section(FILE *f, const options *o, const conf_plugin *p)
{
    fprintf(f, "\n[%s]\npath = %s\n", p->name, p->dir);
    return o->config == NULL || copy_user_section(f, o->config, p->name);
}

/* The plugin under test first (the cases check that it is the context's first transport),
 * then the data transport it needs, then the registration transport. */
static bool write_config(const options *o, const conf_plugin *p, const conf_plugin *data,
                         const conf_plugin *reg, const char *path, char *why, size_t size)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        conf_format(why, size, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    fprintf(f, "# written by memcast-conformance; removed when it exits\n[framework]\n");
    fprintf(f, "plugins = %s%s%s%s%s\n", p->name, data ? ", " : "", data ? data->name : "",
            reg ? ", " : "", reg ? reg->name : "");
    bool ok = write_section(f, o, p);
    if (data != NULL)
        ok = write_section(f, o, data) && ok;
    if (reg != NULL)
        ok = write_section(f, o, reg) && ok;
    if (fclose(f) != 0 || !ok) {
        conf_format(why, size, "cannot %s: %s", ok ? "write the configuration" : "read --config",
                    ok ? path : o->config);
        return false;
    }
    return true;
}

/* Variables that would override the generated [framework] section, or name another file. */
static void clean_environment(void)
{
    static const char *const names[] = {"MEMCAST_CONFIG", "MEMCAST_FRAMEWORK_PLUGINS",
                                        "MEMCAST_FRAMEWORK_PLUGIN_PATH", "MEMCAST_FRAMEWORK_DOMAIN",
                                        "MEMCAST_FRAMEWORK_LOG_LEVEL"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (getenv(names[i]) != NULL)
            fprintf(stderr, "memcast-conformance: ignoring %s from the environment\n", names[i]);
        unsetenv(names[i]);
    }
}

static void remove_tmpdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
                continue;
            char path[CONF_PATH_MAX + 256];
            snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* mc_plugin_check_path initialises the plugin in the domain "memcast-check": names of that
 * domain that appear during the preflight were left by the plugin's init and fini. */
#define CHECK_DOMAIN "memcast-check"

typedef struct name_list {
    char names[64][256];
    size_t count;
} name_list;

static void list_check_names(name_list *list)
{
    list->count = 0;
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL && list->count < 64)
        if (strstr(ent->d_name, CHECK_DOMAIN) != NULL)
            snprintf(list->names[list->count++], sizeof(list->names[0]), "%s", ent->d_name);
    closedir(d);
}

static bool listed_name(const name_list *list, const char *name)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->names[i], name) == 0)
            return true;
    return false;
}

static void remove_new_check_names(const name_list *before)
{
    name_list *after = malloc(sizeof(*after));
    if (after == NULL)
        return;
    list_check_names(after);
    for (size_t i = 0; i < after->count; i++) {
        if (listed_name(before, after->names[i]))
            continue;
        char path[300];
        conf_format(path, sizeof(path), "/dev/shm/%s", after->names[i]);
        fprintf(stderr, "memcast-conformance: the plugin's init and fini left %s; removed\n", path);
        unlink(path);
    }
    free(after);
}

/* Names in /dev/shm that carry the case's domain are the case's own: a plugin that leaves
 * them behind fails lifecycle, and the suite still leaves the machine clean. */
static void remove_shm_names(const char *domain)
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || strstr(ent->d_name, domain) == NULL)
            continue;
        char path[300];
        conf_format(path, sizeof(path), "/dev/shm/%s", ent->d_name);
        unlink(path);
    }
    closedir(d);
}

/* ---- running one child --------------------------------------------------------------------- */

static void report_reset(conf_report *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&r->lock, &attr);
    pthread_mutexattr_destroy(&attr);
}

static void on_interrupt(int sig)
{
    interrupted = sig;
    if (running_child > 0)
        kill(-running_child, SIGKILL);
}

typedef struct child_outcome {
    bool timed_out;
    int signal; /* killed by it */
    int exit_code;
} child_outcome;

/* Runs fn(env, arg) in a child of its own process group and waits for it. */
static child_outcome run_child(void (*fn)(const conf_env *, const void *), const conf_env *env,
                               const void *arg, conf_report *report, const options *o)
{
    child_outcome out = {0};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        conf_report_attach(report, o->verbose);
        setenv("MEMCAST_FRAMEWORK_DOMAIN", env->domain, 1);
        fn(env, arg);
        report->finished = true;
        _exit(report->verdict);
    }
    if (pid < 0) {
        out.exit_code = -1;
        snprintf(report->reason, sizeof(report->reason), "fork failed: %s", strerror(errno));
        report->verdict = CONF_FAIL;
        return out;
    }
    setpgid(pid, pid); /* also here: whichever runs first */
    running_child = pid;
    int status = 0;
    out.timed_out = !conf_wait_child(pid, o->timeout_s * 1000, true, &status);
    running_child = 0;
    kill(-pid, SIGKILL); /* helpers the case left behind */
    remove_shm_names(env->domain);
    if (WIFSIGNALED(status))
        out.signal = WTERMSIG(status);
    else if (WIFEXITED(status))
        out.exit_code = WEXITSTATUS(status);
    return out;
}

static void diag_add(conf_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diag_add(conf_report *r, const char *fmt, ...)
{
    size_t room = sizeof(r->diag) - r->diag_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->diag + r->diag_len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->diag_len += (size_t)n < room ? (size_t)n : room - 1;
}

static void force_fail(conf_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void force_fail(conf_report *r, const char *fmt, ...)
{
    if (r->verdict == CONF_FAIL)
        return; /* the case's own reason says more */
    r->verdict = CONF_FAIL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
}

/* Turns the child's exit into the verdict; a crash or a timeout always fails. The child
 * may have died holding the report's lock: nothing here takes it. */
static conf_verdict judge(const child_outcome *out, conf_report *r, int timeout_s)
{
    /* After a recorded failure the case may have gone on to hang or crash elsewhere. */
    bool had_reason = r->verdict == CONF_FAIL;
    const char *later = had_reason && strcmp(r->fail_step, r->step) != 0 ? r->step : "";
    const char *sep = later[0] ? " while: " : "";
    if (out->timed_out && had_reason) {
        diag_add(r, "then it hung: killed after %d s (--timeout)%s%s\n", timeout_s, sep, later);
    } else if (out->timed_out) {
        force_fail(r, "no result within %d s (--timeout): the plugin hangs; killed", timeout_s);
    } else if (out->signal != 0 && had_reason) {
        diag_add(r, "then it crashed: signal %d (%s)%s%s\n", out->signal, strsignal(out->signal),
                 sep, later);
    } else if (out->signal != 0) {
        force_fail(r, "the case process crashed with signal %d (%s)", out->signal,
                   strsignal(out->signal));
    } else if (!r->finished) {
        force_fail(r,
                   "the case process exited with status %d before the case finished (did "
                   "the plugin call exit()?)",
                   out->exit_code);
    } else if (out->exit_code != r->verdict) {
        force_fail(r, "the case process exited with status %d", out->exit_code);
    }
    return (conf_verdict)r->verdict;
}

/* ---- output ------------------------------------------------------------------------------ */

typedef struct printer {
    const options *o;
    int width; /* of the SUITE/CASE column in text output */
} printer;

static void full_name(const conf_case *c, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", c->suite, c->name);
}

/* Calls fn for each line of text (lines end with '\n' or the string). */
static void each_line(const char *text, void (*fn)(const printer *, const char *, const char *),
                      const printer *pr, const char *prefix)
{
    while (text != NULL && *text != '\0') {
        size_t len = strcspn(text, "\n");
        char line[CONF_REASON_MAX + 64];
        snprintf(line, sizeof(line), "%.*s", (int)len, text);
        if (len > 0)
            fn(pr, prefix, line);
        text += len;
        if (*text == '\n')
            text++;
    }
}

static void put_detail(const printer *pr, const char *prefix, const char *line)
{
    if (pr->o->format == FORMAT_TAP)
        printf("# %s%s\n", prefix, line);
    else
        printf("      %s%s\n", prefix, line);
}

/* Reason, step, last error, diagnostics and (for failures) the captured log. */
static void print_details(const printer *pr, const conf_report *r, conf_verdict v, bool reason)
{
    if (v == CONF_FAIL) {
        if (reason)
            each_line(r->reason, put_detail, pr, "");
        const char *step = r->fail_step[0] != '\0' ? r->fail_step : r->step;
        if (step[0] != '\0')
            put_detail(pr, "while: ", step);
        if (r->last_error[0] != '\0' && strstr(r->reason, r->last_error) == NULL)
            put_detail(pr, "last memcast error: ", r->last_error);
    }
    each_line(r->diag, put_detail, pr, "");
    if (v != CONF_FAIL)
        return;
    unsigned lines = r->log_next < CONF_LOG_LINES ? r->log_next : CONF_LOG_LINES;
    for (unsigned i = r->log_next - lines; i < r->log_next; i++)
        put_detail(pr, "log: ", r->log[i % CONF_LOG_LINES]);
}

static void print_result(const printer *pr, size_t number, const result *res, const conf_report *r)
{
    char name[96];
    full_name(res->c, name, sizeof(name));
    if (pr->o->format == FORMAT_TAP) {
        if (res->verdict == CONF_SKIP)
            printf("ok %zu - %s # SKIP %s\n", number, name, res->skip_reason);
        else
            printf("%s %zu - %s\n", res->verdict == CONF_PASS ? "ok" : "not ok", number, name);
    } else {
        const char *word = res->verdict == CONF_PASS   ? "PASS"
                           : res->verdict == CONF_SKIP ? "SKIP"
                                                       : "FAIL";
        if (res->verdict == CONF_SKIP)
            printf("%s  %-*s  %s\n", word, pr->width, name, res->skip_reason);
        else
            printf("%s  %-*s  %6.2fs\n", word, pr->width, name, res->seconds);
    }
    if (res->ran)
        print_details(pr, r, res->verdict, true);
    fflush(stdout);
}

/* "udp (/path/mc_udp.la)", "the plugin itself", or why there is none. */
static void registration_text(const setup *su, char *buf, size_t size)
{
    if (su->registration == NULL)
        conf_format(buf, size, "none: %s", su->registration_missing);
    else if (!su->separate_registration)
        conf_format(buf, size, "the plugin itself");
    else
        conf_format(buf, size, "%s (%s)", su->registration->name, su->registration->path);
}

static void print_header(const printer *pr, const conf_plugin *p, const setup *su, size_t planned)
{
    char caps[128], scopes[64], roles[64], reg[CONF_REASON_MAX + 64];
    conf_caps_text(p->caps, caps, sizeof(caps));
    conf_scopes_text(p->scopes, scopes, sizeof(scopes));
    roles_text(p->roles, roles, sizeof(roles));
    registration_text(su, reg, sizeof(reg));
    if (pr->o->format == FORMAT_TAP) {
        printf("1..%zu\n", planned);
        printf("# memcast-conformance %s: plugin '%s' %s (%s)\n", MC_VERSION_STRING, p->name,
               p->version, p->path);
        printf("# ABI %u.%u; roles: %s; scopes: %s; caps: %s; max message %llu bytes\n",
               p->abi_major, p->abi_minor, roles, scopes, caps,
               (unsigned long long)p->max_message_size);
        printf("# registration: %s\n", reg);
        if (su->data != NULL)
            printf("# data transport: %s (%s)\n", su->data->name, su->data->path);
    } else {
        printf("memcast-conformance %s\n", MC_VERSION_STRING);
        printf("plugin        %s %s (%s)\n", p->name, p->version, p->path);
        printf("ABI           %u.%u (this memcast speaks %d.%d)\n", p->abi_major, p->abi_minor,
               MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
        printf("roles         %s\nscopes        %s\ncaps          %s\n", roles, scopes, caps);
        printf("limit         %llu bytes per message\n", (unsigned long long)p->max_message_size);
        printf("registration  %s\n", reg);
        if (su->data != NULL)
            printf("data          %s (%s)\n", su->data->name, su->data->path);
        printf("\n");
    }
    fflush(stdout);
}

static void print_summary(const printer *pr, const int counts[3], size_t total, double seconds)
{
    const char *prefix = pr->o->format == FORMAT_TAP ? "# " : "\n";
    printf("%s%zu cases: %d passed, %d failed, %d skipped in %.1f s\n", prefix, total, counts[0],
           counts[1], counts[2], seconds);
}

static int unusable(const options *o, const char *plugin, const conf_report *r, const char *why)
{
    printer pr = {o, 0};
    if (o->format == FORMAT_TAP)
        printf("1..0\nBail out! plugin %s is unusable: %s\n", plugin, why);
    else
        printf("UNUSABLE  %s\n      %s\n", plugin, why);
    if (r != NULL)
        print_details(&pr, r, CONF_FAIL, false);
    if (o->format == FORMAT_TAP) /* stdout may be a log file: say it where a person looks */
        fprintf(stderr, "memcast-conformance: %s: unusable: %s\n", plugin, why);
    return EXIT_UNUSABLE;
}

/* ---- preflight: does the plugin load, validate and initialise? ------------------------------ */

static void fill_plugin(conf_plugin *p, const mc_plugin_report *rep)
{
    snprintf(p->version, sizeof(p->version), "%s", rep->version);
    p->abi_major = rep->abi_major;
    p->abi_minor = rep->abi_minor;
    p->roles = rep->roles;
    p->scopes = rep->scopes;
    p->caps = rep->caps;
    p->max_message_size = rep->max_message_size;
}

static bool check_one(const mc_config *cfg, conf_plugin *p)
{
    conf_step("loading, validating and initialising %s", p->path);
    mc_plugin_report rep;
    if (mc_plugin_check_path(cfg, p->path, &rep) != 0) {
        conf_fail("%s", mc_last_error());
        return false;
    }
    fill_plugin(p, &rep);
    return true;
}

typedef struct preflight_plan {
    conf_plugin *plugins[4]; /* NULL-terminated */
    bool open_context;
} preflight_plan;

/* Checks that the plugins of the plan load, validate and initialise (which also fills in
 * what their descriptors declare), then opens a context with env->config_path. */
static void preflight(const conf_env *env, const void *arg)
{
    const preflight_plan *plan = arg;
    conf_plugin *const *plugins = plan->plugins;
    mc_config *cfg = NULL;
    conf_step("reading the generated configuration %s", env->config_path);
    if (mc_config_load(env->config_path, &cfg) != 0) {
        conf_fail("%s", mc_last_error());
        return;
    }
    bool ok = true;
    for (size_t i = 0; ok && plugins[i] != NULL; i++)
        ok = check_one(cfg, plugins[i]);
    mc_config_free(cfg);
    if (!ok || !plan->open_context)
        return;
    conf_step("opening a context with the generated configuration");
    mc_context *ctx = NULL;
    if (conf_context_open(env, &ctx) != 0) {
        conf_fail("%s", mc_last_error());
        return;
    }
    const char *loaded = ctx->transports[0]->loaded.path;
    if (strcmp(loaded, env->plugin->path) != 0)
        conf_note("note: for this configuration memcast loads %s", loaded);
    mc_context_close(ctx);
}

/* ---- selecting and running cases ------------------------------------------------------------- */

static const char *excluded_by(const options *o, const char *name)
{
    for (size_t i = 0; i < o->exclude_count; i++)
        if (regexec(&o->exclude[i], name, 0, NULL, 0) == 0)
            return o->exclude_text[i];
    return NULL;
}

/* "host or network" */
static void any_of(uint32_t scopes, char *buf, size_t size)
{
    char list[64];
    conf_scopes_text(scopes, list, sizeof(list));
    size_t used = 0;
    for (const char *p = list; *p != '\0' && used + 4 < size; p++) {
        if (p[0] == ',' && p[1] == ' ') {
            memcpy(buf + used, " or", 3);
            used += 3;
            continue;
        }
        buf[used++] = *p;
    }
    buf[used] = '\0';
}

/* A case of this kind runs with publisher and subscriber in two contexts. */
static bool needs_two_contexts(const conf_case *c, const conf_plugin *p)
{
    return c->meet == CONF_MEET_CONTEXTS && !(p->scopes & MC_SCOPE_PROCESS);
}

static bool needs_registration(const conf_case *c, const conf_plugin *p)
{
    return c->meet == CONF_MEET_PROCESSES || needs_two_contexts(c, p);
}

/* Why the case does not apply to this plugin, or "" when it does. */
static void skip_reason(const options *o, const setup *su, const conf_case *c, const conf_plugin *p,
                        char *why, size_t size)
{
    char name[96], have[128], need[128];
    full_name(c, name, sizeof(name));
    const char *regex = excluded_by(o, name);
    why[0] = '\0';
    if (regex != NULL) {
        snprintf(why, size, "excluded by --exclude '%s'", regex);
    } else if ((c->roles & p->roles) != c->roles) {
        roles_text(c->roles & ~p->roles, need, sizeof(need));
        snprintf(why, size, "plugin '%s' has no %s role", p->name, need);
    } else if ((c->caps & p->caps) != c->caps) {
        conf_caps_text(c->caps & ~p->caps, need, sizeof(need));
        conf_caps_text(p->caps, have, sizeof(have));
        snprintf(why, size, "needs capability %s; plugin '%s' declares: %s", need, p->name, have);
    } else if (c->scopes != 0 && (c->scopes & p->scopes) == 0) {
        any_of(c->scopes, need, sizeof(need));
        conf_scopes_text(p->scopes, have, sizeof(have));
        snprintf(why, size, "needs scope %s; plugin '%s' bridges: %s", need, p->name, have);
    } else if (needs_registration(c, p) && su->registration == NULL) {
        conf_format(why, size, "%s meet only through a registration transport: %s",
                    c->meet == CONF_MEET_PROCESSES ? "processes" : "two contexts",
                    su->registration_missing);
    }
}

static void run_case_body(const conf_env *env, const void *arg)
{
    const conf_case *c = arg;
    conf_step("starting");
    c->run(env);
}

static size_t select_cases(const options *o, const conf_case **out, size_t max, int *width)
{
    size_t n = 0;
    *width = 0;
    for (size_t s = 0; s < SUITE_COUNT; s++) {
        if (!suite_selected(o, suites[s].name))
            continue;
        for (const conf_case *c = suites[s].cases; c->name != NULL && n < max; c++) {
            out[n++] = c;
            int len = (int)(strlen(c->suite) + 1 + strlen(c->name));
            if (len > *width)
                *width = len;
        }
    }
    return n;
}

/* mcconf<pid>c<case>r<random>: unique per case, and the random part keeps runs in other
 * PID namespaces (containers sharing a network or /dev/shm) apart too. */
static void make_domain(char *buf, size_t size, size_t index)
{
    unsigned random = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(&random, sizeof(random), 1, f) != 1)
        random = (unsigned)conf_now_ms() ^ (unsigned)getpid() * 2654435761u;
    if (f != NULL)
        fclose(f);
    snprintf(buf, size, "mcconf%ldc%03ur%08x", (long)getpid(), (unsigned)(index % 1000), random);
}

static conf_verdict run_one(const options *o, const setup *su, conf_env *env, const conf_case *c,
                            size_t index, shared_area *shared, result *res)
{
    res->c = c;
    skip_reason(o, su, c, env->plugin, res->skip_reason, sizeof(res->skip_reason));
    if (res->skip_reason[0] != '\0')
        return res->verdict = CONF_SKIP;
    bool meet = needs_registration(c, env->plugin);
    env->two_contexts = needs_two_contexts(c, env->plugin);
    env->config_path = meet && su->separate_registration ? su->meet_config : su->base_config;
    make_domain(env->domain, sizeof(env->domain), index);
    report_reset(&shared->report);
    res->ran = true;
    int64_t start = conf_now_ms();
    child_outcome out = run_child(run_case_body, env, c, &shared->report, o);
    res->seconds = seconds_since(start);
    res->verdict = judge(&out, &shared->report, o->timeout_s);
    if (res->verdict == CONF_SKIP)
        snprintf(res->skip_reason, sizeof(res->skip_reason), "%s", shared->report.reason);
    return res->verdict;
}

static int run_all(const options *o, const setup *su, conf_env *env, shared_area *shared)
{
    const conf_case *cases[MAX_CASES];
    printer pr = {o, 0};
    size_t n = select_cases(o, cases, MAX_CASES, &pr.width);
    print_header(&pr, env->plugin, su, n);
    int counts[3] = {0, 0, 0}; /* pass, fail, skip */
    int64_t start = conf_now_ms();
    for (size_t i = 0; i < n && !interrupted; i++) {
        result res = {0};
        conf_verdict v = run_one(o, su, env, cases[i], i + 1, shared, &res);
        counts[v == CONF_PASS ? 0 : v == CONF_FAIL ? 1 : 2]++;
        print_result(&pr, i + 1, &res, &shared->report);
    }
    print_summary(&pr, counts, n, seconds_since(start));
    if (interrupted)
        return 128 + interrupted;
    if (counts[1] > 0)
        return EXIT_FAIL;
    return counts[0] > 0 ? EXIT_PASS : EXIT_NONE;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void install_interrupt_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Runs the preflight plan with config in a child; true when it passed, else the report
 * holds why. */
static bool preflight_passes(const options *o, conf_env *env, const char *config,
                             const preflight_plan *plan, shared_area *shared)
{
    env->config_path = config;
    report_reset(&shared->report);
    name_list *check_names = malloc(sizeof(*check_names));
    if (check_names != NULL)
        list_check_names(check_names);
    child_outcome out = run_child(preflight, env, plan, &shared->report, o);
    if (check_names != NULL)
        remove_new_check_names(check_names);
    free(check_names);
    if (judge(&out, &shared->report, o->timeout_s) != CONF_PASS)
        return false;
    if (o->verbose && shared->report.diag_len > 0)
        fprintf(stderr, "%s", shared->report.diag);
    return true;
}

/* A plugin without MC_ROLE_DATA cannot open a context alone: --data, or inproc. */
static bool choose_data(const options *o, shared_area *shared, setup *su, char *why, size_t size)
{
    if (shared->plugin.roles & MC_ROLE_DATA) {
        if (o->data != NULL)
            fprintf(stderr, "memcast-conformance: ignoring --data %s: plugin '%s' carries data\n",
                    o->data, shared->plugin.name);
        return true;
    }
    const char *name = o->data != NULL ? o->data : DEFAULT_DATA;
    if (!resolve_plugin(name, o->config, &shared->data, why, size)) {
        size_t used = strlen(why);
        conf_format(why + used, size - used,
                    " (plugin '%s' has no MC_ROLE_DATA, and a context needs a data transport: "
                    "pass --data PLUGIN)",
                    shared->plugin.name);
        return false;
    }
    su->data = &shared->data;
    return true;
}

/* Which registration transport joins contexts; sets su->registration_missing when none. */
static bool choose_registration(const options *o, shared_area *shared, setup *su, char *why,
                                size_t size)
{
    const conf_plugin *p = &shared->plugin;
    if (p->roles & MC_ROLE_REGISTRATION) {
        su->registration = p;
        if (o->registration != NULL)
            fprintf(stderr,
                    "memcast-conformance: ignoring --registration %s: plugin '%s' has "
                    "MC_ROLE_REGISTRATION and joins contexts itself\n",
                    o->registration, p->name);
        return true;
    }
    if (o->registration != NULL) {
        if (!resolve_plugin(o->registration, o->config, &shared->registration, why, size))
            return false;
    } else if (p->scopes & (MC_SCOPE_HOST | MC_SCOPE_NETWORK)) {
        char not_found[CONF_REASON_MAX];
        if (!resolve_plugin(DEFAULT_REGISTRATION, o->config, &shared->registration, not_found,
                            sizeof(not_found))) {
            conf_format(su->registration_missing, sizeof(su->registration_missing),
                        "plugin '%s' has no MC_ROLE_REGISTRATION, no --registration was given, "
                        "and the default: %s",
                        p->name, not_found);
            return true;
        }
    } else {
        conf_format(su->registration_missing, sizeof(su->registration_missing),
                    "plugin '%s' has no MC_ROLE_REGISTRATION and bridges scope process only "
                    "(--registration PLUGIN would add one)",
                    p->name);
        return true;
    }
    su->registration = &shared->registration;
    su->separate_registration = true;
    return true;
}

/* The default registration transport may fail to load: then the cases that need it are
 * skipped with its reason. One given with --registration must load (99 otherwise). */
static bool check_registration(const options *o, conf_env *env, setup *su, shared_area *shared)
{
    if (!su->separate_registration)
        return true;
    preflight_plan plan = {{&shared->registration, NULL}, true};
    if (preflight_passes(o, env, su->meet_config, &plan, shared)) {
        if (shared->registration.roles & MC_ROLE_REGISTRATION)
            return true;
        /* It loads, but joins nothing: every case across contexts would time out. */
        report_reset(&shared->report);
        conf_format(shared->report.reason, sizeof(shared->report.reason),
                    "--registration %s: plugin '%s' has no MC_ROLE_REGISTRATION", o->registration,
                    shared->registration.name);
        return false;
    }
    if (o->registration != NULL)
        return false;
    conf_format(su->registration_missing, sizeof(su->registration_missing),
                "plugin '%s' has no MC_ROLE_REGISTRATION, no --registration was given, and the "
                "default, %s (%s), does not load: %s",
                shared->plugin.name, DEFAULT_REGISTRATION, shared->registration.path,
                shared->report.reason);
    su->registration = NULL;
    su->separate_registration = false;
    return true;
}

static int prepare_and_run(const options *o, shared_area *shared, const char *tmpdir)
{
    char why[CONF_REASON_MAX + 256];
    setup su;
    memset(&su, 0, sizeof(su));
    snprintf(su.base_config, sizeof(su.base_config), "%s/conformance.ini", tmpdir);
    snprintf(su.meet_config, sizeof(su.meet_config), "%s/conformance-meet.ini", tmpdir);
    conf_env env = {.plugin = &shared->plugin,
                    .tmpdir = tmpdir,
                    .timeout_s = o->timeout_s,
                    .wait_ms = o->timeout_s * 1000 / 2};
    make_domain(env.domain, sizeof(env.domain), 0);

    /* What the descriptor declares decides which other transports the run needs. */
    preflight_plan probe = {{&shared->plugin, NULL}, false};
    if (!write_config(o, &shared->plugin, NULL, NULL, su.base_config, why, sizeof(why)))
        return unusable(o, o->plugin, NULL, why);
    if (!preflight_passes(o, &env, su.base_config, &probe, shared))
        return unusable(o, shared->plugin.path, &shared->report, shared->report.reason);
    if (!choose_data(o, shared, &su, why, sizeof(why)))
        return unusable(o, o->data != NULL ? o->data : DEFAULT_DATA, NULL, why);
    if (!choose_registration(o, shared, &su, why, sizeof(why)))
        return unusable(o, o->registration, NULL, why);

    const conf_plugin *reg = su.separate_registration ? su.registration : NULL;
    if (!write_config(o, &shared->plugin, su.data, NULL, su.base_config, why, sizeof(why)) ||
        (reg != NULL &&
         !write_config(o, &shared->plugin, su.data, reg, su.meet_config, why, sizeof(why))))
        return unusable(o, o->plugin, NULL, why);
    env.data = su.data;
    preflight_plan full = {{&shared->plugin, su.data ? &shared->data : NULL, NULL}, true};
    if (!preflight_passes(o, &env, su.base_config, &full, shared))
        return unusable(o, shared->plugin.path, &shared->report, shared->report.reason);
    if (!check_registration(o, &env, &su, shared))
        return unusable(o, shared->registration.path, &shared->report, shared->report.reason);
    env.registration = su.registration;
    return run_all(o, &su, &env, shared);
}

int main(int argc, char **argv)
{
    ensure_bind_now(argv);
    options o;
    parse_options(argc, argv, &o);
    if (o.list) {
        list_cases();
        return EXIT_PASS;
    }
    clean_environment();
    install_interrupt_handlers();

    shared_area *shared =
        mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        fprintf(stderr, "memcast-conformance: mmap: %s\n", strerror(errno));
        return EXIT_UNUSABLE;
    }
    char why[CONF_REASON_MAX];
    if (!resolve_plugin(o.plugin, o.config, &shared->plugin, why, sizeof(why)))
        return unusable(&o, o.plugin, NULL, why);
    if (o.config != NULL && access(o.config, R_OK) != 0)
        die_usage("--config %s: %s", o.config, strerror(errno));

    const char *base = getenv("TMPDIR");
    char tmpdir[CONF_PATH_MAX];
    snprintf(tmpdir, sizeof(tmpdir), "%s/memcast-conformance.XXXXXX",
             base && base[0] ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "memcast-conformance: cannot create %s: %s\n", tmpdir, strerror(errno));
        return EXIT_UNUSABLE;
    }
    int rc = prepare_and_run(&o, shared, tmpdir);
    remove_tmpdir(tmpdir);
    for (size_t i = 0; i < o.exclude_count; i++)
        regfree(&o.exclude[i]);
    munmap(shared, sizeof(*shared));
    return rc;
}
