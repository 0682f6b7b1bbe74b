/*
 * memcast: the operator's command. Results go to stdout, diagnostics to stderr.
 *
 * Each subcommand is one entry of the `commands` table (name, help, run function);
 * adding one means writing its run function and a table row. Exit status: 0 success,
 * 1 the operation failed, 2 usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memcast/memcast.h>
#include <memcast/plugin.h>
#include <memcast/version.h>

/* Not "config.h": from tools/ that name finds configure's build/config.h first; context.h
 * brings framework/config.h and loader.h from its own directory. */
#include "context.h"

#include "cli.h"
#include "cmd.h"

/* ---- small helpers ------------------------------------------------------------------------ */

/* Out of memory in a short-lived command: say so and stop, there is nothing to recover. */
static void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL) {
        fputs("memcast: out of memory\n", stderr);
        exit(EXIT_FAILED);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    return memcpy(xrealloc(NULL, len), s, len);
}

/* An ordered list of distinct strings. */
typedef struct str_list {
    char **items;
    size_t count;
} str_list;

static bool str_list_has(const str_list *list, const char *s)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i], s) == 0)
            return true;
    return false;
}

static void str_list_add_unique(str_list *list, const char *s)
{
    if (str_list_has(list, s))
        return;
    list->items = xrealloc(list->items, (list->count + 1) * sizeof(*list->items));
    list->items[list->count++] = xstrdup(s);
}

static void str_list_free(str_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* Splits [framework] plugins ("a, b c") into names. */
static void split_names(const char *text, str_list *out)
{
    while (text != NULL && *text != '\0') {
        text += strspn(text, ", \t");
        size_t len = strcspn(text, ", \t");
        if (len == 0)
            break;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(len < 255 ? len : 255), text);
        str_list_add_unique(out, name);
        text += len;
    }
}

/* The directories searched for plugin `name` (NULL: the ones every plugin shares). */
static void search_dirs_of(const mc_config *cfg, const mc_config_section *framework,
                           const char *name, str_list *out)
{
    char(*storage)[4096] = xrealloc(NULL, MC_MAX_SEARCH_DIRS * sizeof(*storage));
    const char *dirs[MC_MAX_SEARCH_DIRS];
    size_t n = mc_plugin_search_dirs(cfg, framework, name, storage, dirs, MC_MAX_SEARCH_DIRS);
    for (size_t i = 0; i < n; i++)
        str_list_add_unique(out, dirs[i]);
    free(storage);
}

static void print_joined(FILE *f, const str_list *list, const char *sep)
{
    for (size_t i = 0; i < list->count; i++)
        fprintf(f, "%s%s", i ? sep : "", list->items[i]);
}

/* ---- JSON output -------------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void json_key(FILE *f, bool *first, const char *key)
{
    fputs(*first ? "" : ", ", f);
    *first = false;
    json_string(f, key);
    fputs(": ", f);
}

static void json_str_list(FILE *f, const str_list *list)
{
    fputc('[', f);
    for (size_t i = 0; i < list->count; i++) {
        fputs(i ? ", " : "", f);
        json_string(f, list->items[i]);
    }
    fputc(']', f);
}

/* ---- flag names --------------------------------------------------------------------------- */

typedef struct flag_name {
    uint32_t bit;
    const char *name;
} flag_name;

static const flag_name role_names[] = {
    {MC_ROLE_DATA, "data"}, {MC_ROLE_REGISTRATION, "registration"}, {0, NULL}};
static const flag_name scope_names[] = {{MC_SCOPE_PROCESS, "process"},
                                        {MC_SCOPE_HOST, "host"},
                                        {MC_SCOPE_NETWORK, "network"},
                                        {0, NULL}};
static const flag_name cap_names[] = {
    {MC_CAP_ORDERED, "ordered"},         {MC_CAP_RELIABLE, "reliable"},
    {MC_CAP_ZERO_COPY, "zero-copy"},     {MC_CAP_MULTI_PROCESS, "multi-process"},
    {MC_CAP_THREAD_SAFE, "thread-safe"}, {0, NULL}};

static void flags_to_list(uint32_t bits, const flag_name *names, str_list *out)
{
    for (const flag_name *n = names; n->name != NULL; n++)
        if (bits & n->bit)
            str_list_add_unique(out, n->name);
}

static void print_flags(FILE *f, uint32_t bits, const flag_name *names)
{
    str_list list = {0};
    flags_to_list(bits, names, &list);
    if (list.count == 0)
        fputs("none", f);
    print_joined(f, &list, ", ");
    str_list_free(&list);
}

static void json_flags(FILE *f, uint32_t bits, const flag_name *names)
{
    str_list list = {0};
    flags_to_list(bits, names, &list);
    json_str_list(f, &list);
    str_list_free(&list);
}

/* ---- command line parsing ----------------------------------------------------------------- */

/* One option of a subcommand: a flag (sets *flag) or one that takes a value (*value). */

static void print_command_help(FILE *f, const cli_command *cmd)
{
    fprintf(f, "usage: %s\n\n%s\n%s", cmd->usage, cmd->summary, cmd->help);
    if (cmd->help[0] == '\0')
        fputs("\nExit status: 0 success, 2 usage error.\n", f);
}

static void suggest_option(const cli_command *cmd, const char *arg, const cli_option *opts,
                           size_t nopts)
{
    const char *names[16];
    size_t count = 0;
    names[count++] = "--help";
    for (size_t i = 0; i < nopts && count < 16; i++)
        names[count++] = opts[i].long_name;
    char word[64];
    snprintf(word, sizeof(word), "%.*s", (int)strcspn(arg, "="), arg);
    const char *close = mc_suggest(word, names, count);
    fprintf(stderr, "memcast %s: unknown option '%s'", cmd->name, arg);
    if (close != NULL)
        fprintf(stderr, " (did you mean '%s'?)", close);
    fprintf(stderr, "\nTry 'memcast %s --help'.\n", cmd->name);
}

static const cli_option *find_option(const char *arg, const cli_option *opts, size_t nopts,
                                     const char **inline_value)
{
    *inline_value = NULL;
    for (size_t i = 0; i < nopts; i++) {
        size_t len = strlen(opts[i].long_name);
        if (strncmp(arg, opts[i].long_name, len) == 0 && (arg[len] == '\0' || arg[len] == '=')) {
            if (arg[len] == '=')
                *inline_value = arg + len + 1;
            return &opts[i];
        }
        if (opts[i].short_name != 0 && arg[0] == '-' && arg[1] == opts[i].short_name) {
            if (arg[2] != '\0')
                *inline_value = arg + 2;
            return &opts[i];
        }
    }
    return NULL;
}

static parse_result take_option(const cli_command *cmd, const cli_option *opt, const char *arg,
                                const char *inline_value, int argc, char **argv, int *i)
{
    if (opt->flag != NULL) {
        if (inline_value != NULL) {
            fprintf(stderr, "memcast %s: option '%s' takes no value\n", cmd->name, arg);
            return PARSE_USAGE;
        }
        *opt->flag = true;
        return PARSE_OK;
    }
    if (inline_value == NULL) {
        if (*i + 1 >= argc) {
            fprintf(stderr, "memcast %s: option '%s' needs a value\n", cmd->name, arg);
            return PARSE_USAGE;
        }
        inline_value = argv[++*i];
    }
    *opt->value = inline_value;
    return PARSE_OK;
}

/* Parses the arguments after the subcommand name. Positional arguments are collected in
 * positional[] (at most max_positional; more is a usage error). */
parse_result cli_parse_options(const cli_command *cmd, int argc, char **argv,
                               const cli_option *opts, size_t nopts, const char **positional,
                               size_t max_positional, size_t *npositional)
{
    size_t count = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            print_command_help(stdout, cmd);
            return PARSE_HELP;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (count == max_positional) {
                fprintf(stderr, "memcast %s: unexpected argument '%s'\nTry 'memcast %s --help'.\n",
                        cmd->name, arg, cmd->name);
                return PARSE_USAGE;
            }
            positional[count++] = arg;
            continue;
        }
        const char *inline_value;
        const cli_option *opt = find_option(arg, opts, nopts, &inline_value);
        if (opt == NULL) {
            suggest_option(cmd, arg, opts, nopts);
            return PARSE_USAGE;
        }
        parse_result r = take_option(cmd, opt, arg, inline_value, argc, argv, &i);
        if (r != PARSE_OK)
            return r;
    }
    if (npositional != NULL)
        *npositional = count;
    return PARSE_OK;
}

bool cli_parse_size(const char *text, unsigned long long *out)
{
    static const char units[] = "KMG";
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-' || text[0] == '+' ||
        isspace((unsigned char)text[0]))
        return false;
    const char *unit = *end != '\0' ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (unit != NULL) {
        unsigned shift = 10u * (unsigned)(unit - units + 1);
        if (v > (ULLONG_MAX >> shift))
            return false;
        v <<= shift;
        end++;
    }
    if (*end != '\0')
        return false;
    *out = v;
    return true;
}

int cli_parse_exit_code(parse_result r)
{
    return r == PARSE_HELP ? EXIT_OK : EXIT_USAGE;
}

/* ---- configuration shared by subcommands -------------------------------------------------- */

typedef struct loaded_config {
    mc_config *cfg;
    mc_config_section *framework;
    str_list plugins; /* [framework] plugins, in order */
} loaded_config;

static int config_open(const cli_global *global, loaded_config *lc)
{
    memset(lc, 0, sizeof(*lc));
    if (mc_config_load(global->config_path, &lc->cfg) != 0 ||
        mc_config_section_bind(lc->cfg, "framework", mc_framework_schema, &lc->framework) != 0) {
        fprintf(stderr, "memcast: %s\n", mc_last_error());
        mc_config_free(lc->cfg);
        lc->cfg = NULL;
        return EXIT_FAILED;
    }
    split_names(mc_config_get_text(lc->framework, "plugins"), &lc->plugins);
    return EXIT_OK;
}

static void config_close(loaded_config *lc)
{
    str_list_free(&lc->plugins);
    mc_config_section_free(lc->framework);
    mc_config_free(lc->cfg);
}

/* `enabled = false` in a plugin's section turns it off without removing it from the list. */
static bool plugin_switched_off(const mc_config *cfg, const char *name)
{
    const char *text = mc_config_raw(cfg, name, "enabled");
    bool enabled = true;
    return text != NULL && mc_config_parse_bool(text, &enabled) == 0 && !enabled;
}

static bool plugin_wanted(const loaded_config *lc, const char *name)
{
    return str_list_has(&lc->plugins, name) && !plugin_switched_off(lc->cfg, name);
}

/* ---- memcast version ---------------------------------------------------------------------- */

static int run_version(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    (void)global;
    parse_result r = cli_parse_options(cmd, argc, argv, NULL, 0, NULL, 0, NULL);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    printf("memcast %s\n", mc_version());
    printf("plugin ABI %d.%d\n", MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    printf("plugin directory %s\n", mc_loader_default_dir());
    return EXIT_OK;
}

/* ---- memcast plugins ---------------------------------------------------------------------- */

typedef enum plugin_status { PLUGIN_OK, PLUGIN_FAILED, PLUGIN_NOT_FOUND } plugin_status;

/* A file of a plugin and the search directory it was found in. */
typedef struct plugin_file {
    char *path;
    const char *dir;
} plugin_file;

typedef struct plugin_entry {
    char *name;
    plugin_file *files; /* every file of this name, the one the framework would load first */
    size_t file_count;
    plugin_status status;
    int rc;
    char *reason;
    mc_plugin_report report;
    bool listed;       /* in [framework] plugins */
    bool enabled;      /* listed and not switched off by `enabled = false` */
    str_list searched; /* not found: where we looked */
} plugin_entry;

typedef struct plugin_table {
    plugin_entry *items;
    size_t count;
} plugin_table;

typedef struct scan_state {
    plugin_table *table;
    const char *dir; /* being scanned */
} scan_state;

static plugin_entry *plugin_find(plugin_table *t, const char *name)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->items[i].name, name) == 0)
            return &t->items[i];
    return NULL;
}

static plugin_entry *plugin_add(plugin_table *t, const char *name)
{
    plugin_entry *e = plugin_find(t, name);
    if (e != NULL)
        return e;
    t->items = xrealloc(t->items, (t->count + 1) * sizeof(*t->items));
    e = &t->items[t->count++];
    memset(e, 0, sizeof(*e));
    e->name = xstrdup(name);
    return e;
}

static void plugin_table_free(plugin_table *t)
{
    for (size_t i = 0; i < t->count; i++) {
        free(t->items[i].name);
        free(t->items[i].reason);
        for (size_t j = 0; j < t->items[i].file_count; j++)
            free(t->items[i].files[j].path);
        free(t->items[i].files);
        str_list_free(&t->items[i].searched);
    }
    free(t->items);
}

static void on_scanned_file(void *user, const char *name, const char *path)
{
    scan_state *state = user;
    plugin_entry *e = plugin_add(state->table, name);
    e->files = xrealloc(e->files, (e->file_count + 1) * sizeof(*e->files));
    e->files[e->file_count++] = (plugin_file){xstrdup(path), state->dir};
}

/* Position of dir in order; directories the plugin is not looked up in come last. */
static size_t dir_rank(const char *dir, const str_list *order)
{
    for (size_t i = 0; i < order->count; i++)
        if (strcmp(dir, order->items[i]) == 0)
            return i;
    return order->count;
}

/* Puts the file the framework would load first: files are found in scan order, but plugin
 * `name` is looked up in its own order (its section's `path` first). */
static void order_files(const loaded_config *lc, plugin_entry *e)
{
    str_list order = {0};
    search_dirs_of(lc->cfg, lc->framework, e->name, &order);
    size_t best = 0;
    for (size_t i = 1; i < e->file_count; i++)
        if (dir_rank(e->files[i].dir, &order) < dir_rank(e->files[best].dir, &order))
            best = i;
    plugin_file first = e->files[best];
    memmove(&e->files[1], &e->files[0], best * sizeof(*e->files));
    e->files[0] = first;
    str_list_free(&order);
}

static void check_plugin(const loaded_config *lc, plugin_entry *e)
{
    if (e->file_count == 0) {
        e->status = PLUGIN_NOT_FOUND;
        e->rc = MC_ENOENT;
        search_dirs_of(lc->cfg, lc->framework, e->name, &e->searched);
        return;
    }
    order_files(lc, e);
    e->rc = mc_plugin_check_path(lc->cfg, e->files[0].path, &e->report);
    e->status = e->rc == 0 ? PLUGIN_OK : PLUGIN_FAILED;
    if (e->rc != 0)
        e->reason = xstrdup(mc_last_error());
}

/* Every directory any plugin could come from: each listed plugin's own order, then the
 * order shared by all. */
static void all_plugin_dirs(const loaded_config *lc, str_list *dirs)
{
    for (size_t i = 0; i < lc->plugins.count; i++)
        search_dirs_of(lc->cfg, lc->framework, lc->plugins.items[i], dirs);
    search_dirs_of(lc->cfg, lc->framework, NULL, dirs);
}

static void collect_plugins(const loaded_config *lc, plugin_table *table)
{
    /* Listed plugins first, in the order the operator wrote them. */
    for (size_t i = 0; i < lc->plugins.count; i++) {
        plugin_entry *e = plugin_add(table, lc->plugins.items[i]);
        e->listed = true;
        e->enabled = plugin_wanted(lc, e->name);
    }
    str_list dirs = {0};
    all_plugin_dirs(lc, &dirs);
    scan_state state = {table, NULL};
    for (size_t i = 0; i < dirs.count; i++) {
        state.dir = dirs.items[i];
        mc_loader_scan(dirs.items[i], on_scanned_file, &state);
    }
    for (size_t i = 0; i < table->count; i++)
        check_plugin(lc, &table->items[i]);
    str_list_free(&dirs); /* after the checks: files point at their directory */
}

static const char *status_name(plugin_status s)
{
    return s == PLUGIN_OK ? "ok" : s == PLUGIN_FAILED ? "failed" : "not found";
}

/* What the operator can do about a failure. */
static void advice(const plugin_entry *e, const loaded_config *lc, char *buf, size_t size)
{
    const char *file = mc_config_file(lc->cfg);
    if (e->status == PLUGIN_NOT_FOUND)
        snprintf(buf, size,
                 "install mc_%s.so into %s, or add the directory that holds it to "
                 "MEMCAST_PLUGIN_PATH, [framework] plugin_path or [%s] path; or remove '%s' "
                 "from [framework] plugins",
                 e->name, mc_loader_default_dir(), e->name, e->name);
    else if (e->rc == MC_EABI)
        snprintf(buf, size,
                 "rebuild the plugin against memcast %s (plugin ABI %d.%d, see "
                 "'pkg-config --cflags memcast-plugin')",
                 mc_version(), MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    else if (e->rc == MC_ECONFIG)
        snprintf(buf, size,
                 "fix the [%s] section of %s or the MEMCAST_* variables that override it; "
                 "'memcast config' shows the effective values",
                 e->name, file ? file : "the configuration");
    else if (!e->report.loaded)
        snprintf(buf, size,
                 "install what the plugin depends on (ldd on its .so lists them) or rebuild it "
                 "against memcast %s with MC_PLUGIN_DEFINE; or remove %s",
                 mc_version(), e->files[0].path);
    else
        snprintf(buf, size,
                 "the plugin loaded but did not start: check the [%s] section and what the "
                 "transport needs (permissions, /dev/shm, network); MEMCAST_LOG_LEVEL=debug "
                 "shows more",
                 e->name);
}

static void print_size(FILE *f, uint64_t bytes)
{
    static const char units[] = "KMGT";
    int unit = -1;
    uint64_t value = bytes;
    while (value >= 1024 && value % 1024 == 0 && unit < 3) {
        value /= 1024;
        unit++;
    }
    if (unit < 0)
        fprintf(f, "%" PRIu64 " bytes", bytes);
    else
        fprintf(f, "%" PRIu64 "%c (%" PRIu64 " bytes)", value, units[unit], bytes);
}

static const char *enabled_text(const plugin_entry *e)
{
    if (e->enabled)
        return "yes";
    return e->listed ? "no (enabled = false in its section)" : "no (not in [framework] plugins)";
}

static void print_loaded_facts(const plugin_entry *e)
{
    const mc_plugin_report *r = &e->report;
    printf("  version:      %s\n", r->version);
    if (r->description[0] != '\0')
        printf("  description:  %s\n", r->description);
    printf("  ABI:          %u.%u\n", r->abi_major, r->abi_minor);
    printf("  roles:        ");
    print_flags(stdout, r->roles, role_names);
    printf("\n  scopes:       ");
    print_flags(stdout, r->scopes, scope_names);
    printf("\n  capabilities: ");
    print_flags(stdout, r->caps, cap_names);
    printf("\n");
    if (r->initialised) {
        printf("  max message:  ");
        print_size(stdout, r->max_message_size);
        printf("\n");
    }
}

static void print_plugin_text(const plugin_entry *e, const loaded_config *lc)
{
    printf("%s  %s\n", e->name, status_name(e->status));
    if (e->file_count > 0)
        printf("  file:         %s\n", e->files[0].path);
    if (e->report.loaded)
        print_loaded_facts(e);
    printf("  enabled:      %s\n", enabled_text(e));
    for (size_t i = 1; i < e->file_count; i++)
        printf("  shadowed:     %s (ignored: the file above comes first)\n", e->files[i].path);
    if (e->status == PLUGIN_NOT_FOUND) {
        printf("  searched:     ");
        print_joined(stdout, &e->searched, ", ");
        printf("\n");
    }
    if (e->status != PLUGIN_OK) {
        char todo[1024];
        advice(e, lc, todo, sizeof(todo));
        if (e->reason != NULL)
            printf("  reason:       %s\n", e->reason);
        printf("  to do:        %s\n", todo);
    }
}

static void json_loaded_facts(FILE *f, const plugin_entry *e, bool *first)
{
    const mc_plugin_report *r = &e->report;
    char abi[32];
    snprintf(abi, sizeof(abi), "%u.%u", r->abi_major, r->abi_minor);
    json_key(f, first, "version");
    json_string(f, r->version);
    json_key(f, first, "description");
    json_string(f, r->description);
    json_key(f, first, "abi");
    json_string(f, abi);
    json_key(f, first, "roles");
    json_flags(f, r->roles, role_names);
    json_key(f, first, "scopes");
    json_flags(f, r->scopes, scope_names);
    json_key(f, first, "capabilities");
    json_flags(f, r->caps, cap_names);
    if (r->initialised) {
        json_key(f, first, "max_message_size");
        fprintf(f, "%" PRIu64, r->max_message_size);
    }
}

static void json_plugin(FILE *f, const plugin_entry *e, const loaded_config *lc)
{
    bool first = true;
    fputc('{', f);
    json_key(f, &first, "name");
    json_string(f, e->name);
    json_key(f, &first, "status");
    json_string(f, status_name(e->status));
    json_key(f, &first, "file");
    json_string(f, e->file_count ? e->files[0].path : NULL);
    if (e->report.loaded)
        json_loaded_facts(f, e, &first);
    json_key(f, &first, "enabled");
    fputs(e->enabled ? "true" : "false", f);
    json_key(f, &first, "shadowed");
    fputc('[', f);
    for (size_t i = 1; i < e->file_count; i++) {
        fputs(i > 1 ? ", " : "", f);
        json_string(f, e->files[i].path);
    }
    fputc(']', f);
    if (e->status == PLUGIN_NOT_FOUND) {
        json_key(f, &first, "searched");
        json_str_list(f, &e->searched);
    }
    if (e->status != PLUGIN_OK) {
        char todo[1024];
        advice(e, lc, todo, sizeof(todo));
        json_key(f, &first, "reason");
        json_string(f, e->reason);
        json_key(f, &first, "to_do");
        json_string(f, todo);
    }
    fputc('}', f);
}

static int run_plugins(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bool json = false;
    const cli_option opts[] = {{"--json", 0, &json, NULL},
                               {"--config", 'c', NULL, &global->config_path}};
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 2, NULL, 0, NULL);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    loaded_config lc;
    if (config_open(global, &lc) != EXIT_OK)
        return EXIT_FAILED;
    plugin_table table = {0};
    collect_plugins(&lc, &table);
    int status = EXIT_OK;
    if (json)
        fputc('[', stdout);
    for (size_t i = 0; i < table.count; i++) {
        const plugin_entry *e = &table.items[i];
        if (e->enabled && e->status != PLUGIN_OK)
            status = EXIT_FAILED;
        if (json) {
            fputs(i ? ",\n " : "", stdout);
            json_plugin(stdout, e, &lc);
        } else {
            printf("%s", i ? "\n" : "");
            print_plugin_text(e, &lc);
        }
    }
    if (json)
        fputs("]\n", stdout);
    else if (table.count == 0)
        printf("no plugins found\n");
    plugin_table_free(&table);
    config_close(&lc);
    return status;
}

/* ---- memcast config ----------------------------------------------------------------------- */

static const char *type_name(mc_config_type type)
{
    switch (type) {
    case MC_CFG_BOOL:
        return "bool";
    case MC_CFG_INT:
        return "int";
    case MC_CFG_SIZE:
        return "size";
    case MC_CFG_DURATION:
        return "duration";
    case MC_CFG_ENUM:
        return "enum";
    case MC_CFG_STRING:
        return "string";
    }
    return "unknown";
}

static void source_text(const mc_config_section *sec, const char *key, char *buf, size_t size)
{
    mc_config_source src = MC_SRC_DEFAULT;
    const char *file = NULL;
    int line = 0;
    if (mc_config_get_source(sec, key, &src, &file, &line) != 0)
        snprintf(buf, size, "unknown");
    else if (src == MC_SRC_FILE)
        snprintf(buf, size, "%s:%d", file ? file : "?", line);
    else if (src == MC_SRC_ENV)
        snprintf(buf, size, "env %s", file ? file : "?");
    else
        snprintf(buf, size, "default");
}

/* One section of the effective configuration as the command shows it. */
typedef struct shown_section {
    const char *name;
    const mc_config_section *sec; /* NULL when the plugin did not load */
    const mc_config_key *schemas[2];
    const char *loaded_from; /* the plugin file */
    const char *error;       /* why it has no keys */
} shown_section;

/* Column widths of names and values, so that the sources line up; a long value only
 * pushes its own source out. */
static void column_widths(const shown_section *s, int *key_width, int *value_width)
{
    size_t keys = 0, values = 0;
    for (size_t i = 0; i < 2; i++) {
        for (const mc_config_key *k = s->schemas[i]; k != NULL && k->name != NULL; k++) {
            const char *value = mc_config_get_text(s->sec, k->name);
            size_t len = value ? strlen(value) : 0;
            keys = strlen(k->name) > keys ? strlen(k->name) : keys;
            values = len > values && len <= 24 ? len : values;
        }
    }
    *key_width = (int)keys;
    *value_width = (int)values;
}

static void print_section_text(const shown_section *s)
{
    printf("[%s]\n", s->name);
    if (s->loaded_from != NULL)
        printf("; plugin %s\n", s->loaded_from);
    if (s->sec == NULL) {
        printf("; keys omitted: %s\n", s->error);
        return;
    }
    int key_width, value_width;
    column_widths(s, &key_width, &value_width);
    for (size_t i = 0; i < 2; i++) {
        for (const mc_config_key *k = s->schemas[i]; k != NULL && k->name != NULL; k++) {
            char source[4200];
            source_text(s->sec, k->name, source, sizeof(source));
            const char *value = mc_config_get_text(s->sec, k->name);
            printf("%-*s = %-*s  ; %s\n", key_width, k->name, value_width, value ? value : "",
                   source);
        }
    }
}

static void json_section(FILE *f, const shown_section *s)
{
    bool first = true;
    fputc('{', f);
    json_key(f, &first, "section");
    json_string(f, s->name);
    json_key(f, &first, "status");
    json_string(f, s->sec ? "ok" : "failed");
    if (s->loaded_from != NULL) {
        json_key(f, &first, "plugin_file");
        json_string(f, s->loaded_from);
    }
    if (s->sec == NULL) {
        json_key(f, &first, "reason");
        json_string(f, s->error);
        fputc('}', f);
        return;
    }
    json_key(f, &first, "keys");
    fputc('[', f);
    bool first_key = true;
    for (size_t i = 0; i < 2; i++) {
        for (const mc_config_key *k = s->schemas[i]; k != NULL && k->name != NULL; k++) {
            char source[4200];
            source_text(s->sec, k->name, source, sizeof(source));
            bool first_field = true;
            fputs(first_key ? "{" : ", {", f);
            first_key = false;
            json_key(f, &first_field, "key");
            json_string(f, k->name);
            json_key(f, &first_field, "type");
            json_string(f, type_name(k->type));
            json_key(f, &first_field, "value");
            json_string(f, mc_config_get_text(s->sec, k->name));
            json_key(f, &first_field, "source");
            json_string(f, source);
            fputc('}', f);
        }
    }
    fputs("]}", f);
}

typedef struct config_printer {
    bool json;
    size_t shown;
} config_printer;

static void show_section(config_printer *p, const shown_section *s)
{
    if (p->json) {
        fputs(p->shown ? ",\n  " : "", stdout);
        json_section(stdout, s);
    } else {
        printf("%s", p->shown ? "\n" : "");
        print_section_text(s);
    }
    p->shown++;
}

/* Loads plugin `name` to learn its schema, then shows its section. Returns EXIT_FAILED
 * when it did not load or its section is invalid. */
static int show_plugin_section(config_printer *p, const loaded_config *lc, const char *name)
{
    str_list dirs = {0};
    search_dirs_of(lc->cfg, lc->framework, name, &dirs);
    mc_loaded_plugin plugin;
    memset(&plugin, 0, sizeof(plugin));
    shown_section s = {.name = name};
    mc_config_section *sec = NULL;
    int rc = mc_loader_open(name, (const char *const *)dirs.items, dirs.count, &plugin);
    if (rc == 0) {
        s.loaded_from = plugin.path;
        rc = mc_config_section_bind(lc->cfg, name, plugin.desc->config, &sec);
        if (rc != 0)
            fprintf(stderr, "memcast: %s\n", mc_last_error());
    }
    char *error = rc ? xstrdup(mc_last_error()) : NULL;
    s.sec = sec;
    s.schemas[0] = rc ? NULL : plugin.desc->config;
    s.schemas[1] = mc_plugin_reserved_schema;
    s.error = error;
    show_section(p, &s);
    free(error);
    mc_config_section_free(sec);
    mc_loader_close(&plugin);
    str_list_free(&dirs);
    return rc ? EXIT_FAILED : EXIT_OK;
}

static void list_unused_sections(const loaded_config *lc, bool json)
{
    str_list unused = {0};
    for (size_t i = 0; i < mc_config_section_count(lc->cfg); i++) {
        const char *name = mc_config_section_name(lc->cfg, i);
        if (strcmp(name, "framework") != 0 && !plugin_wanted(lc, name))
            str_list_add_unique(&unused, name);
    }
    if (json) {
        fputs("],\n \"unused_sections\": ", stdout);
        json_str_list(stdout, &unused);
    }
    for (size_t i = 0; i < unused.count && !json; i++) {
        const char *name = unused.items[i];
        if (str_list_has(&lc->plugins, name))
            printf("\n; [%s] is ignored: the plugin is switched off (enabled = false)\n", name);
        else
            printf("\n; [%s] is ignored: '%s' is not in [framework] plugins\n", name, name);
    }
    str_list_free(&unused);
}

static int show_config(const loaded_config *lc, bool json)
{
    const char *file = mc_config_file(lc->cfg);
    config_printer p = {json, 0};
    if (json) {
        fputs("{\"file\": ", stdout);
        json_string(stdout, file);
        fputs(",\n \"sections\": [", stdout);
    } else {
        printf("; effective configuration, file: %s\n", file ? file : "none (built-in defaults)");
    }
    shown_section fw = {
        .name = "framework", .sec = lc->framework, .schemas = {mc_framework_schema}};
    show_section(&p, &fw);
    int status = EXIT_OK;
    for (size_t i = 0; i < lc->plugins.count; i++)
        if (plugin_wanted(lc, lc->plugins.items[i]) &&
            show_plugin_section(&p, lc, lc->plugins.items[i]) != EXIT_OK)
            status = EXIT_FAILED;
    list_unused_sections(lc, json);
    if (json)
        fputs("}\n", stdout);
    return status;
}

static int run_config(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bool json = false;
    const cli_option opts[] = {{"--json", 0, &json, NULL},
                               {"--config", 'c', NULL, &global->config_path}};
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 2, NULL, 0, NULL);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    loaded_config lc;
    if (config_open(global, &lc) != EXIT_OK)
        return EXIT_FAILED;
    int status = show_config(&lc, json);
    config_close(&lc);
    return status;
}

/* ---- memcast help ------------------------------------------------------------------------- */

static int run_help(const cli_command *cmd, cli_global *global, int argc, char **argv);

static const cli_command commands[] = {
    {"version", "Show the library version, the plugin ABI and the installed plugin directory.",
     "memcast version", "", run_version},
    {"plugins", "List the plugins found, whether each loads and starts, and why not.",
     "memcast [-c FILE] plugins [--json]",
     "\nThe directories searched, in order: each plugin's own [NAME] path, MEMCAST_PLUGIN_PATH,\n"
     "[framework] plugin_path, the installed directory. A plugin found in an earlier directory\n"
     "shadows files of the same name in later ones.\n"
     "\nOptions:\n"
     "  --json             print a JSON array, one object per plugin\n"
     "  -c, --config FILE  read FILE instead of $MEMCAST_CONFIG\n"
     "\nExit status: 0 when every plugin in [framework] plugins is ok, 1 otherwise (or when the\n"
     "configuration is invalid), 2 usage error.\n",
     run_plugins},
    {"clean", "Remove the shared-memory files that dead processes left in /dev/shm.",
     "memcast clean [--dry-run]",
     "\nA file is removed when its owner process (pid and start time, both in the name) no\n"
     "longer runs; files of live processes and files that are not memcast's are never\n"
     "touched. Every shm context does the same when it starts ([shm] reap).\n"
     "\nOptions:\n"
     "  -n, --dry-run      list what would be removed, remove nothing\n"
     "\nExit status: 0 success, 1 /dev/shm cannot be read, 2 usage error.\n",
     mc_cmd_clean},
    {"config", "Show the effective configuration and where each value comes from.",
     "memcast [-c FILE] config [--json]",
     "\nEvery key of [framework] and of each enabled plugin, with its value and its source:\n"
     "default, FILE:LINE or env MEMCAST_SECTION_KEY. A plugin's keys come from its schema, so\n"
     "it is loaded to show them.\n"
     "\nOptions:\n"
     "  --json             print a JSON object\n"
     "  -c, --config FILE  read FILE instead of $MEMCAST_CONFIG\n"
     "\nExit status: 0 success, 1 the configuration is invalid or an enabled plugin did not\n"
     "load (its keys are then omitted), 2 usage error.\n",
     run_config},
    {"ls", "List the live topics other processes announce, with endpoints, transports and rates.",
     "memcast [-c FILE] ls [--json] [--watch] [--wait MS] [--interval MS]",
     "\nNeeds a registration plugin (udp) in [framework] plugins. Every peer is asked to\n"
     "announce itself; after --wait (default 200) ms a first snapshot is taken, a second one\n"
     "--interval (default 1000) ms later, and rates are the publishers' message counts\n"
     "between the two. For each topic: type, encoding, publishers and subscribers (host, pid,\n"
     "messages, drops, transports offered) and the transports a publisher and a subscriber\n"
     "share.\n"
     "\nOptions:\n"
     "  --json             print a JSON array, one object per topic\n"
     "  -w, --watch        refresh in place every interval until interrupted\n"
     "  -c, --config FILE  read FILE instead of $MEMCAST_CONFIG\n"
     "\nExit status: 0 success, 1 no registration plugin or the context did not open, 2 usage.\n",
     mc_cmd_ls},
    {"pub", "Publish text (arguments or stdin lines) or generated payloads on a topic.",
     "memcast [-c FILE] pub TOPIC [TEXT...] [--size BYTES] [--rate HZ] [--count N] [--wait N]",
     "\nWith TEXT, publishes it once; with neither TEXT nor --size/--rate/--count, publishes\n"
     "each line of stdin. --size, --rate or --count publish generated payloads whose every\n"
     "byte derives from the sequence number (memcast sub --verify checks them): --count N\n"
     "messages (default 1, or endless with --rate) of --size bytes (or with K, M, G) at\n"
     "--rate per second (default as fast as possible). Waits first until --wait subscribers\n"
     "(default 1) are matched, at most 10 s; --wait 0 does not wait.\n"
     "\nExit status: 0 success, 1 a publish failed or no subscriber came, 2 usage error.\n",
     mc_cmd_pub},
    {"sub", "Print (or verify) what arrives on a topic.",
     "memcast [-c FILE] sub TOPIC [--count N] [--verify] [--quiet]",
     "\nPrints each message: printable text as is, anything else as size, sequence, transport\n"
     "and the first bytes. Ends after --count messages, or on Ctrl-C, and prints what arrived,\n"
     "what was lost (sequence gaps), overrun and corrupt on stderr.\n"
     "\nOptions:\n"
     "  -n, --count N      exit 0 after N messages\n"
     "  --verify           check every byte of payloads made by memcast pub --size\n"
     "  -q, --quiet        do not print messages\n"
     "\nExit status: 0 success, 1 corrupt payloads or fewer than --count messages, 2 usage.\n",
     mc_cmd_sub},
    {"bench", "Measure: discovery, the machine's floor, latency and throughput.",
     "memcast [-c FILE] bench discovery [--tries N]\n"
     "       memcast [-c FILE] bench floor|latency|throughput [OPTIONS]",
     "\ndiscovery: starts a first process, then a second, --tries times (default 20) for each\n"
     "start order, and reports median, p90 and max of the time from the second process's start\n"
     "to the publisher matched, the subscriber matched and the first sample received. Use a\n"
     "configuration whose plugins reach between processes (registration and a data transport).\n"
     "\nfloor: this machine's limits, two processes pinned to two cores: one cache line\n"
     "ping-pong (futex and spinning), copy (memcpy in and out) and zero-copy (write and read in\n"
     "place) per size, and one core's memcpy bandwidth. One-way = round trip / 2.\n"
     "latency: ping-pong between two processes over memcast, every byte written and checked;\n"
     "one-way p50/p90/p99/p99.9/max and a histogram, beside the floor of the same run.\n"
     "throughput: one publisher sends --count messages as fast as it can to --subscribers\n"
     "processes that check every byte: msg/s, MB/s, lost, corrupt, publisher CPU per message.\n"
     "Each run uses its own domain, udp registration in local mode (network mode with --netns)\n"
     "and the data transport --transport (environment overrides on top of -c FILE).\n"
     "\nOptions (floor, latency, throughput):\n"
     "  -s, --size LIST    sizes, K/M suffixes, 16 bytes to 1G (default 64,4K,1M,8M)\n"
     "  -n, --count N      round trips or messages per size (default by size)\n"
     "  --warmup N         round trips not counted before each size (default by size)\n"
     "  --cpus A,B         cores of the two processes (default 0,1); a failed pin is reported\n"
     "  -t, --transport P  data plugin (default shm)\n"
     "  --netns PUB,SUB    latency/throughput: the pinger/publisher runs in network namespace\n"
     "                     PUB, the ponger/subscribers in SUB (/var/run/netns/NAME, made by\n"
     "                     'ip netns add'; root); needs -t udp; [udp] group, interface and\n"
     "                     send_rate from -c FILE or MEMCAST_UDP_* variables\n"
     "  --zero-copy        publish through mc_loan/mc_commit, read in place\n"
     "  --fill-uncached    with --zero-copy (and in floor's zero-copy rows): write payloads of\n"
     "                     64 bytes and more with non-temporal stores, as an application may\n"
     "                     for large loans (doc/shm.md, Costs)\n"
     "  --reliable         [shm] ack_timeout = 10s: nothing overwritten before it is read\n"
     "  --wait block|spin  subscribers sleep on the doorbell, or spin ([shm] spin_us)\n"
     "  --subscribers N    throughput: 1..8 subscriber processes (default 1)\n"
     "  --rate N           throughput: the publisher sends N messages per second (default:\n"
     "                     as fast as it can); 'publish ns/msg' is the time spent inside\n"
     "                     the memcast calls, without the pacing (unpaced: sampled\n"
     "                     on every 7th message)\n"
     "  --no-floor         latency/throughput: skip the floor measurement\n"
     "  --json             one JSON object on stdout\n"
     "\nExit status: 0 success, 1 a try or measurement failed (no answer, corrupt payload, a\n"
     "loss in reliable mode), 2 usage error.\n",
     mc_cmd_bench},
    {"help", "Show help for memcast or for one subcommand.", "memcast help [SUBCOMMAND]", "",
     run_help},
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static const char global_help[] =
    "\nOptions:\n"
    "  -c, --config FILE  read FILE instead of $MEMCAST_CONFIG (unset: built-in defaults)\n"
    "  -h, --help         show this help\n"
    "\nExit status:\n"
    "  0  success\n"
    "  1  the operation failed (invalid configuration, a plugin that does not load)\n"
    "  2  usage error (unknown subcommand or option)\n"
    "\nEnvironment:\n"
    "  MEMCAST_CONFIG           configuration file used when -c is not given\n"
    "  MEMCAST_PLUGIN_PATH      colon-separated directories searched after each plugin's own "
    "[NAME] path\n"
    "  MEMCAST_<SECTION>_<KEY>  overrides one key, e.g. MEMCAST_FRAMEWORK_LOG_LEVEL=debug\n"
    "\n'memcast SUBCOMMAND --help' shows the options of a subcommand.\n";

static void print_global_help(FILE *f)
{
    fprintf(f, "usage: memcast [-c FILE | --config FILE] SUBCOMMAND [ARGS]\n"
               "       memcast help SUBCOMMAND\n\nSubcommands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fputs(global_help, f);
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    const char *names[COMMAND_COUNT];
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        names[i] = commands[i].name;
    const char *close = mc_suggest(name, names, COMMAND_COUNT);
    fprintf(stderr, "memcast: unknown subcommand '%s'", name);
    if (close != NULL)
        fprintf(stderr, " (did you mean '%s'?)", close);
    fputs("\nTry 'memcast --help'.\n", stderr);
    return EXIT_USAGE;
}

static int run_help(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    (void)global;
    const char *topic = NULL;
    size_t count = 0;
    parse_result r = cli_parse_options(cmd, argc, argv, NULL, 0, &topic, 1, &count);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    if (count == 0) {
        print_global_help(stdout);
        return EXIT_OK;
    }
    const cli_command *about = find_command(topic);
    if (about == NULL)
        return unknown_command(topic);
    print_command_help(stdout, about);
    return EXIT_OK;
}

/* ---- main --------------------------------------------------------------------------------- */

/* Consumes the options before the subcommand. Returns the index of the subcommand, 0 after
 * --help was shown, or -1 on a usage error (reported). */
static int parse_global(int argc, char **argv, cli_global *global)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_global_help(stdout);
            return 0;
        }
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "memcast: option '%s' needs a FILE\n", arg);
                return -1;
            }
            global->config_path = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            global->config_path = arg + 9;
        } else if (strncmp(arg, "-c", 2) == 0) {
            global->config_path = arg + 2;
        } else {
            fprintf(stderr, "memcast: unknown option '%s'\nTry 'memcast --help'.\n", arg);
            return -1;
        }
    }
    if (i >= argc) {
        fputs("memcast: no subcommand given\n", stderr);
        print_global_help(stderr);
        return -1;
    }
    return i;
}

int main(int argc, char **argv)
{
    cli_global global = {NULL};
    int first = parse_global(argc, argv, &global);
    if (first <= 0)
        return first == 0 ? EXIT_OK : EXIT_USAGE;
    const cli_command *cmd = find_command(argv[first]);
    if (cmd == NULL)
        return unknown_command(argv[first]);
    int status = cmd->run(cmd, &global, argc - first, argv + first);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("memcast: writing the output");
        return EXIT_FAILED;
    }
    return status;
}
