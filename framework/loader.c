/*
 * Plugin loader: libltdl opens the module (so that build-tree .la files work), a plain
 * dlopen(RTLD_NOW) probe makes unresolved symbols fail at load time with the real reason,
 * and every field of the descriptor is checked before the framework trusts it.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <ltdl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "loader.h"

#include <memcast/version.h>

#define PATH_SIZE   sizeof(((mc_loaded_plugin *)0)->path)
#define LABEL_SIZE  (PATH_SIZE + 64)
#define KNOWN_ROLES (MC_ROLE_DATA | MC_ROLE_REGISTRATION)
#define KNOWN_CAPS                                                                                 \
    (MC_CAP_ORDERED | MC_CAP_RELIABLE | MC_CAP_ZERO_COPY | MC_CAP_MULTI_PROCESS |                  \
     MC_CAP_THREAD_SAFE)
#define OPS_1_0_SIZE   offsetof(mc_plugin_ops, sub_connect)
#define LOAD_HINT      "(missing dependency? check with ldd; built against another memcast?)"
#define NOT_FOUND_HINT "set MEMCAST_PLUGIN_PATH or [%s] path"
#define PREFIX_LEN     (sizeof(MC_PLUGIN_FILE_PREFIX) - 1)

/* libltdl is not thread-safe: every lt_* call happens under this lock. */
static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;

/* A plugin file on disk and how to open it. */
typedef struct module_file {
    char file[PATH_SIZE];      /* the .la or .so that was found */
    char so[PATH_SIZE];        /* the shared object behind it */
    char open_name[PATH_SIZE]; /* what lt_dlopenadvise is given */
} module_file;

/* ---- names ------------------------------------------------------------------------------- */

static bool is_name_start(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '_';
}

/* [a-z][a-z0-9_]{0,30} over exactly len bytes of text. */
static bool name_span_valid(const char *text, size_t len)
{
    if (len == 0 || len > MC_PLUGIN_NAME_MAX || !is_name_start(text[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_name_char(text[i]))
            return false;
    return true;
}

static bool plugin_name_valid(const char *name)
{
    return name != NULL && name_span_valid(name, strnlen(name, MC_PLUGIN_NAME_MAX + 1));
}

/* Splits a file name of the form mc_NAME.la or mc_NAME.so; name gets NAME. */
static bool plugin_file_name(const char *base, char name[MC_PLUGIN_NAME_MAX + 1], bool *is_la)
{
    size_t len = strlen(base);
    if (len < PREFIX_LEN + 4 || strncmp(base, MC_PLUGIN_FILE_PREFIX, PREFIX_LEN) != 0)
        return false;
    const char *ext = base + len - 3;
    if (strcmp(ext, ".la") != 0 && strcmp(ext, ".so") != 0)
        return false;
    size_t name_len = len - PREFIX_LEN - 3;
    if (!name_span_valid(base + PREFIX_LEN, name_len))
        return false;
    memcpy(name, base + PREFIX_LEN, name_len);
    name[name_len] = '\0';
    if (is_la != NULL)
        *is_la = ext[1] == 'l';
    return true;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "plugin 'x'" or "plugin 'x' (/where)", the start of every message. */
static void make_label(char *label, size_t size, const char *name, const char *where)
{
    if (where != NULL)
        snprintf(label, size, "plugin '%s' (%s)", name, where);
    else
        snprintf(label, size, "plugin '%s'", name);
}

/* ---- descriptor validation ----------------------------------------------------------------- */

static int check_header(const mc_plugin_descriptor *d, const char *label)
{
    if (d->magic != MC_PLUGIN_MAGIC)
        return mc_error_set(MC_EABI,
                            "%s: descriptor magic is 0x%08x, expected 0x%08x: not a memcast "
                            "plugin descriptor",
                            label, (unsigned)d->magic, (unsigned)MC_PLUGIN_MAGIC);
    if (d->abi_major != MC_PLUGIN_ABI_MAJOR)
        return mc_error_set(MC_EABI,
                            "%s: built for plugin ABI %u.%u, this memcast speaks %u.%u: rebuild "
                            "the plugin against this memcast",
                            label, (unsigned)d->abi_major, (unsigned)d->abi_minor,
                            (unsigned)MC_PLUGIN_ABI_MAJOR, (unsigned)MC_PLUGIN_ABI_MINOR);
    if (d->struct_size < sizeof(mc_plugin_descriptor))
        return mc_error_set(MC_EABI,
                            "%s: descriptor struct_size is %u, expected at least %zu "
                            "(sizeof(mc_plugin_descriptor))",
                            label, (unsigned)d->struct_size, sizeof(mc_plugin_descriptor));
    if (d->config_key_size < sizeof(mc_config_key))
        return mc_error_set(MC_EABI,
                            "%s: descriptor config_key_size is %u, expected at least %zu "
                            "(sizeof(mc_config_key))",
                            label, (unsigned)d->config_key_size, sizeof(mc_config_key));
    return 0;
}

static int check_name(const mc_plugin_descriptor *d, const char *expected, const char *label)
{
    if (d->name == NULL)
        return mc_error_set(MC_EABI, "%s: descriptor name is NULL", label);
    if (!plugin_name_valid(d->name))
        return mc_error_set(MC_EABI,
                            "%s: descriptor name '%.64s' is invalid: expected [a-z][a-z0-9_]*, "
                            "at most %d characters",
                            label, d->name, MC_PLUGIN_NAME_MAX);
    if (expected != NULL && strcmp(d->name, expected) != 0)
        return mc_error_set(MC_EABI,
                            "%s: descriptor name is '%s', expected '%s' (the file is "
                            "mc_%s): rename the file or fix the descriptor",
                            label, d->name, expected, expected);
    return 0;
}

static int check_strings(const mc_plugin_descriptor *d, const char *label)
{
    if (d->version == NULL)
        return mc_error_set(MC_EABI, "%s: descriptor version is NULL, expected a string", label);
    if (d->description == NULL)
        return mc_error_set(MC_EABI, "%s: descriptor description is NULL, expected a string",
                            label);
    return 0;
}

static int check_bits(const mc_plugin_descriptor *d, const char *label)
{
    if (d->roles == 0)
        return mc_error_set(MC_EABI,
                            "%s: descriptor roles is 0, expected MC_ROLE_DATA and/or "
                            "MC_ROLE_REGISTRATION",
                            label);
    if (d->roles & ~KNOWN_ROLES)
        return mc_error_set(
            MC_EABI, "%s: descriptor roles 0x%x has unknown bits 0x%x (known: 0x%x)", label,
            (unsigned)d->roles, (unsigned)(d->roles & ~KNOWN_ROLES), (unsigned)KNOWN_ROLES);
    if ((d->roles & MC_ROLE_DATA) && d->scopes == 0)
        return mc_error_set(MC_EABI,
                            "%s: descriptor scopes is 0, expected at least one MC_SCOPE_* bit "
                            "for a data transport",
                            label);
    /* A plugin built for a newer minor may know bits this memcast does not: ignore them.
     * From the same or an older minor they are garbage. */
    if (d->abi_minor > MC_PLUGIN_ABI_MINOR)
        return 0;
    const uint32_t known_scopes = MC_SCOPE_PROCESS | MC_SCOPE_HOST | MC_SCOPE_NETWORK;
    if (d->scopes & ~known_scopes)
        return mc_error_set(
            MC_EABI, "%s: descriptor scopes 0x%x has unknown bits 0x%x (known: 0x%x)", label,
            (unsigned)d->scopes, (unsigned)(d->scopes & ~known_scopes), (unsigned)known_scopes);
    if (d->caps & ~KNOWN_CAPS)
        return mc_error_set(MC_EABI, "%s: descriptor caps 0x%x has unknown bits 0x%x (known: 0x%x)",
                            label, (unsigned)d->caps, (unsigned)(d->caps & ~KNOWN_CAPS),
                            (unsigned)KNOWN_CAPS);
    return 0;
}

/* Registration ops sit past the 1.0 data part of the table, so they are probed by size. */
static int check_registration_ops(const mc_plugin_descriptor *d, const char *label)
{
    if (!(d->roles & MC_ROLE_REGISTRATION))
        return 0;
    if (!MC_HAS(d->ops, mc_plugin_ops, reg_announce))
        return mc_error_set(MC_EABI,
                            "%s: ops->reg_announce is missing, expected a function (required "
                            "for MC_ROLE_REGISTRATION)",
                            label);
    if (!MC_HAS(d->ops, mc_plugin_ops, reg_withdraw))
        return mc_error_set(MC_EABI,
                            "%s: ops->reg_withdraw is missing, expected a function (required "
                            "for MC_ROLE_REGISTRATION)",
                            label);
    return 0;
}

static int check_required_ops(const mc_plugin_descriptor *d, const char *label)
{
    const mc_plugin_ops *o = d->ops;
    const struct {
        const char *name;
        bool present;
        bool data_only;
    } required[] = {
        {"init", o->init != NULL, false},
        {"fini", o->fini != NULL, false},
        {"limits", o->limits != NULL, false},
        {"pub_open", o->pub_open != NULL, true},
        {"pub_close", o->pub_close != NULL, true},
        {"sub_open", o->sub_open != NULL, true},
        {"sub_close", o->sub_close != NULL, true},
        {"pub_connect", o->pub_connect != NULL, true},
        {"pub_disconnect", o->pub_disconnect != NULL, true},
        {"send", o->send != NULL, true},
    };
    bool data_role = (d->roles & MC_ROLE_DATA) != 0;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (required[i].present || (required[i].data_only && !data_role))
            continue;
        return mc_error_set(
            MC_EABI, "%s: ops->%s is NULL, expected a function (%s)", label, required[i].name,
            required[i].data_only ? "required for MC_ROLE_DATA" : "required of every plugin");
    }
    return check_registration_ops(d, label);
}

static const char *set_or_null(bool present)
{
    return present ? "set" : "NULL";
}

static int check_zero_copy(const mc_plugin_descriptor *d, const char *label)
{
    bool loan = MC_HAS(d->ops, mc_plugin_ops, loan);
    bool commit = MC_HAS(d->ops, mc_plugin_ops, commit);
    bool discard = MC_HAS(d->ops, mc_plugin_ops, loan_discard);
    int count = loan + commit + discard;

    if (count != 0 && count != 3)
        return mc_error_set(MC_EABI,
                            "%s: ops loan, commit and loan_discard must be all set or all NULL; "
                            "found loan=%s, commit=%s, loan_discard=%s",
                            label, set_or_null(loan), set_or_null(commit), set_or_null(discard));
    if ((d->caps & MC_CAP_ZERO_COPY) && count == 0)
        return mc_error_set(MC_EABI,
                            "%s: caps has MC_CAP_ZERO_COPY but ops loan, commit and loan_discard "
                            "are NULL (or beyond ops struct_size %u)",
                            label, (unsigned)d->ops->struct_size);
    return 0;
}

static int check_ops(const mc_plugin_descriptor *d, const char *label)
{
    if (d->ops == NULL)
        return mc_error_set(MC_EABI, "%s: descriptor ops is NULL, expected an mc_plugin_ops table",
                            label);
    if (d->ops->struct_size < OPS_1_0_SIZE)
        return mc_error_set(MC_EABI,
                            "%s: ops struct_size is %u, expected at least %zu (the ABI 1.0 ops "
                            "init .. send)",
                            label, (unsigned)d->ops->struct_size, OPS_1_0_SIZE);
    int rc = check_required_ops(d, label);
    return rc != 0 ? rc : check_zero_copy(d, label);
}

static int check_schema(const mc_plugin_descriptor *d, const char *label)
{
    if (d->config == NULL)
        return 0;
    if (mc_config_schema_check(d->config, d->config_key_size) == 0)
        return 0;
    /* Keep config.c's detail (it names the key) and say whose schema it is. */
    char detail[512];
    snprintf(detail, sizeof(detail), "%s", mc_last_error());
    bool named = strncmp(detail, "config schema", 13) == 0;
    return mc_error_set(MC_EABI, "%s: %s%s", label, named ? "" : "config schema: ", detail);
}

/* where is the file the descriptor came from, or NULL. */
static int validate_descriptor(const mc_plugin_descriptor *d, const char *expected,
                               const char *where)
{
    char label[LABEL_SIZE];
    int rc;

    make_label(label, sizeof(label), expected != NULL ? expected : "?", where);
    if (d == NULL)
        return mc_error_set(MC_EABI, "%s: descriptor is NULL", label);
    if ((rc = check_header(d, label)) != 0 || (rc = check_name(d, expected, label)) != 0)
        return rc;
    make_label(label, sizeof(label), d->name, where);
    if ((rc = check_strings(d, label)) != 0 || (rc = check_bits(d, label)) != 0 ||
        (rc = check_ops(d, label)) != 0)
        return rc;
    return check_schema(d, label);
}

int mc_descriptor_validate(const mc_plugin_descriptor *desc, const char *expected_name)
{
    return validate_descriptor(desc, expected_name, NULL);
}

/* ---- finding the shared object ---------------------------------------------------------- */

static int copy_path(char *dst, const char *src, const char *name)
{
    size_t len = strlen(src);
    if (len >= PATH_SIZE)
        return mc_error_set(MC_EINVAL, "plugin '%s': path is longer than %zu bytes: %.64s...", name,
                            PATH_SIZE - 1, src);
    memcpy(dst, src, len + 1);
    return 0;
}

static int join_path(char *dst, const char *dir, const char *file, const char *name)
{
    int n = snprintf(dst, PATH_SIZE, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= PATH_SIZE)
        return mc_error_set(MC_EINVAL, "plugin '%s': path is longer than %zu bytes: %.64s/%s", name,
                            PATH_SIZE - 1, dir, file);
    return 0;
}

/* Reads the dlname='...' field of a libtool .la file into dlname ("" when the library was
 * built static-only). Returns false when the file has no such field. */
static bool read_la_dlname(const char *la_path, char *dlname, size_t size)
{
    FILE *f = fopen(la_path, "r");
    if (f == NULL)
        return false;
    char line[PATH_SIZE];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "dlname='", 8) != 0)
            continue;
        char *end = strchr(line + 8, '\'');
        if (end == NULL)
            break;
        size_t len = (size_t)(end - (line + 8));
        if (len >= size)
            break;
        memcpy(dlname, line + 8, len);
        dlname[len] = '\0';
        found = true;
    }
    fclose(f);
    return found;
}

/* The .so behind a .la: DIR/.libs/DLNAME in a build tree, DIR/DLNAME once installed. */
static int so_behind_la(const char *la_path, const char *name, char so[PATH_SIZE])
{
    char dlname[256];
    if (!read_la_dlname(la_path, dlname, sizeof(dlname)))
        return mc_error_set(MC_EPLUGIN,
                            "plugin '%s': %s is not a readable libtool library file (no "
                            "dlname field)",
                            name, la_path);
    if (dlname[0] == '\0' || strchr(dlname, '/') != NULL)
        return mc_error_set(MC_EPLUGIN,
                            "plugin '%s': %s names no shared object (dlname='%s'): rebuild the "
                            "plugin with shared libraries enabled",
                            name, la_path, dlname);

    char dir[PATH_SIZE];
    snprintf(dir, sizeof(dir), "%s", la_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");

    char libs_dir[PATH_SIZE];
    int rc = join_path(libs_dir, dir, ".libs", name);
    if (rc == 0)
        rc = join_path(so, libs_dir, dlname, name);
    if (rc == 0 && !file_exists(so))
        rc = join_path(so, dir, dlname, name);
    return rc;
}

static int describe_file(const char *file, const char *open_name, bool is_la, const char *name,
                         module_file *mf)
{
    int rc = copy_path(mf->file, file, name);
    if (rc == 0)
        rc = copy_path(mf->open_name, open_name, name);
    if (rc == 0)
        rc = is_la ? so_behind_la(file, name, mf->so) : copy_path(mf->so, file, name);
    return rc;
}

/* ---- opening (loader_lock held) ------------------------------------------------------------ */

/* The probe binds every symbol now: libltdl binds lazily, so a plugin calling a function
 * that exists nowhere would load fine and kill the process at the first call. It also
 * yields the real dlerror() where libltdl only says "file not found". */
static int probe_module(const module_file *mf, const char *name, void **probe)
{
    dlerror();
    *probe = dlopen(mf->so, RTLD_NOW | RTLD_LOCAL);
    if (*probe != NULL)
        return 0;
    const char *reason = dlerror();
    if (reason == NULL)
        reason = "unknown dlopen failure";
    /* dlerror() repeats the file name that the message already gives. */
    size_t so_len = strlen(mf->so);
    if (strncmp(reason, mf->so, so_len) == 0 && strncmp(reason + so_len, ": ", 2) == 0)
        reason += so_len + 2;
    return mc_error_set(MC_EPLUGIN, "plugin '%s': cannot load %s: %s " LOAD_HINT, name, mf->so,
                        reason);
}

static int ltdl_open(const module_file *mf, const char *name, lt_dlhandle *handle)
{
    lt_dladvise advise;
    if (lt_dladvise_init(&advise) != 0)
        return mc_error_set(MC_EPLUGIN, "plugin '%s': libltdl: %s", name, lt_dlerror());
    if (lt_dladvise_ext(&advise) == 0 && lt_dladvise_local(&advise) == 0)
        *handle = lt_dlopenadvise(mf->open_name, advise);
    else
        *handle = NULL;
    const char *reason = *handle == NULL ? lt_dlerror() : NULL;
    lt_dladvise_destroy(&advise);
    if (*handle != NULL)
        return 0;
    return mc_error_set(MC_EPLUGIN, "plugin '%s': cannot load %s: libltdl: %s " LOAD_HINT, name,
                        mf->file, reason != NULL ? reason : "unknown failure");
}

static int call_entry(lt_dlhandle handle, const char *name, const char *file,
                      const mc_plugin_descriptor **desc)
{
    void *sym = lt_dlsym(handle, MC_PLUGIN_ENTRY_NAME);
    if (sym == NULL)
        return mc_error_set(MC_EPLUGIN,
                            "plugin '%s' (%s): no entry symbol '" MC_PLUGIN_ENTRY_NAME
                            "': not a memcast plugin, or built without MC_PLUGIN_DEFINE",
                            name, file);
    mc_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry)); /* ISO C has no object-to-function pointer cast */
    *desc = entry(MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    if (*desc == NULL)
        return mc_error_set(MC_EABI,
                            "plugin '%s' (%s): " MC_PLUGIN_ENTRY_NAME "(%u, %u) returned NULL: "
                            "the plugin cannot serve this memcast's plugin ABI; rebuild it "
                            "against this memcast",
                            name, file, (unsigned)MC_PLUGIN_ABI_MAJOR,
                            (unsigned)MC_PLUGIN_ABI_MINOR);
    return validate_descriptor(*desc, name, file);
}

static int load_locked(const module_file *mf, const char *name, mc_loaded_plugin *out)
{
    void *probe;
    int rc = probe_module(mf, name, &probe);
    if (rc != 0)
        return rc;
    if (lt_dlinit() != 0) {
        dlclose(probe);
        return mc_error_set(MC_EPLUGIN, "plugin '%s': libltdl initialisation failed: %s", name,
                            lt_dlerror());
    }

    lt_dlhandle handle = NULL;
    const mc_plugin_descriptor *desc = NULL;
    rc = ltdl_open(mf, name, &handle);
    dlclose(probe); /* libltdl holds its own reference now */
    if (rc == 0)
        rc = call_entry(handle, name, mf->file, &desc);
    if (rc != 0) {
        if (handle != NULL)
            lt_dlclose(handle);
        lt_dlexit();
        return rc;
    }

    snprintf(out->name, sizeof(out->name), "%s", name);
    memcpy(out->path, mf->file, PATH_SIZE);
    out->desc = desc;
    out->handle = handle;
    return 0;
}

static int load_module(const module_file *mf, const char *name, mc_loaded_plugin *out)
{
    pthread_mutex_lock(&loader_lock);
    int rc = load_locked(mf, name, out);
    pthread_mutex_unlock(&loader_lock);
    return rc;
}

/* ---- public -------------------------------------------------------------------------------- */

/* Looks for mc_NAME.la, then mc_NAME.so, in dir. 0, MC_ENOENT (nothing there) or an error. */
static int find_in_dir(const char *dir, const char *name, module_file *mf)
{
    static const char *const exts[] = {".la", ".so"};
    char base[PATH_SIZE];
    int n = snprintf(base, sizeof(base), "%s/" MC_PLUGIN_FILE_PREFIX "%s", dir, name);
    if (n < 0 || (size_t)n + 3 >= sizeof(base))
        return mc_error_set(MC_EINVAL, "plugin '%s': directory name too long: %.64s...", name, dir);
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        char file[PATH_SIZE];
        int m = snprintf(file, sizeof(file), "%s%s", base, exts[i]);
        if (m > 0 && (size_t)m < sizeof(file) && file_exists(file))
            return describe_file(file, base, i == 0, name, mf);
    }
    return MC_ENOENT;
}

static int not_found(const char *name, const char *const *dirs, size_t ndirs)
{
    char list[2048] = "";
    size_t used = 0;
    for (size_t i = 0; dirs != NULL && i < ndirs && used < sizeof(list); i++) {
        if (dirs[i] == NULL || dirs[i][0] == '\0')
            continue;
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", dirs[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return mc_error_set(MC_ENOENT, "plugin '%s' not found; looked in: %s (" NOT_FOUND_HINT ")",
                        name, used ? list : "(no directory)", name);
}

int mc_loader_open(const char *name, const char *const *dirs, size_t ndirs, mc_loaded_plugin *out)
{
    if (out == NULL)
        return mc_error_set(MC_EINVAL, "mc_loader_open: out is NULL");
    memset(out, 0, sizeof(*out));
    if (!plugin_name_valid(name))
        return mc_error_set(MC_EINVAL,
                            "plugin name '%.64s' is invalid: expected [a-z][a-z0-9_]*, at most "
                            "%d characters",
                            name != NULL ? name : "(null)", MC_PLUGIN_NAME_MAX);
    for (size_t i = 0; dirs != NULL && i < ndirs; i++) {
        if (dirs[i] == NULL || dirs[i][0] == '\0')
            continue;
        module_file *mf = malloc(sizeof(*mf));
        if (mf == NULL)
            return mc_error_set(MC_ENOMEM, "plugin '%s': out of memory", name);
        int rc = find_in_dir(dirs[i], name, mf);
        if (rc == 0)
            rc = load_module(mf, name, out);
        free(mf);
        if (rc != MC_ENOENT)
            return rc; /* the first directory that has the plugin decides */
    }
    return not_found(name, dirs, ndirs);
}

int mc_loader_open_path(const char *path, const char *expected_name, mc_loaded_plugin *out)
{
    if (out == NULL || path == NULL)
        return mc_error_set(MC_EINVAL, "mc_loader_open_path: %s is NULL",
                            out == NULL ? "out" : "path");
    memset(out, 0, sizeof(*out));
    if (expected_name != NULL && !plugin_name_valid(expected_name))
        return mc_error_set(MC_EINVAL,
                            "plugin name '%.64s' is invalid: expected [a-z][a-z0-9_]*, at most "
                            "%d characters",
                            expected_name, MC_PLUGIN_NAME_MAX);

    /* Without a slash dlopen would search the library path instead of opening this file. */
    char local[PATH_SIZE];
    if (strchr(path, '/') == NULL) {
        int n = snprintf(local, sizeof(local), "./%s", path);
        if (n < 0 || (size_t)n >= sizeof(local))
            return mc_error_set(MC_EINVAL, "plugin file name too long: %.64s...", path);
        path = local;
    }

    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    char name[MC_PLUGIN_NAME_MAX + 1];
    bool is_la = false;
    bool named = plugin_file_name(base, name, &is_la);
    size_t len = strlen(base);
    if (!named && len > 3)
        is_la = strcmp(base + len - 3, ".la") == 0;

    if (expected_name != NULL)
        snprintf(name, sizeof(name), "%s", expected_name);
    if (expected_name == NULL && !named)
        return mc_error_set(MC_EINVAL,
                            "%s: cannot tell the plugin name from the file name: expected "
                            "mc_NAME.so or mc_NAME.la",
                            path);
    if (!file_exists(path))
        return mc_error_set(MC_ENOENT, "plugin '%s': %s does not exist", name, path);

    module_file *mf = malloc(sizeof(*mf));
    if (mf == NULL)
        return mc_error_set(MC_ENOMEM, "plugin '%s': out of memory", name);
    int rc = describe_file(path, path, is_la, name, mf);
    if (rc == 0)
        rc = load_module(mf, name, out);
    free(mf);
    return rc;
}

/* Marks the module's object RTLD_NODELETE so that it stays mapped after the libltdl
 * handle is closed. Skipping lt_dlclose alone would not do: the final lt_dlexit unloads
 * every non-resident module, and a resident handle is leaked by libltdl. */
static void pin_module(lt_dlhandle handle)
{
    const lt_dlinfo *info = lt_dlgetinfo(handle);
    if (info == NULL || info->filename == NULL)
        return;
    void *pin = dlopen(info->filename, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (pin != NULL)
        dlclose(pin);
}

static bool keep_modules_mapped(void)
{
    const char *env = getenv("MEMCAST_NO_DLCLOSE");
    return env != NULL && strcmp(env, "1") == 0;
}

void mc_loader_close(mc_loaded_plugin *plugin)
{
    if (plugin == NULL)
        return;
    if (plugin->handle != NULL) {
        pthread_mutex_lock(&loader_lock);
        if (keep_modules_mapped())
            pin_module(plugin->handle);
        lt_dlclose(plugin->handle);
        lt_dlexit();
        pthread_mutex_unlock(&loader_lock);
    }
    memset(plugin, 0, sizeof(*plugin));
}

/* ---- scanning ---------------------------------------------------------------------------- */

typedef struct scan_entry {
    char name[MC_PLUGIN_NAME_MAX + 1];
    bool has_la;
} scan_entry;

typedef struct scan_list {
    scan_entry *items;
    size_t count;
    size_t capacity;
} scan_list;

static bool scan_add(scan_list *list, const char *name, bool is_la)
{
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->items[i].name, name) == 0) {
            list->items[i].has_la |= is_la;
            return true;
        }
    }
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        scan_entry *items = realloc(list->items, capacity * sizeof(*items));
        if (items == NULL)
            return false;
        list->items = items;
        list->capacity = capacity;
    }
    snprintf(list->items[list->count].name, sizeof(list->items[0].name), "%s", name);
    list->items[list->count].has_la = is_la;
    list->count++;
    return true;
}

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const scan_entry *)a)->name, ((const scan_entry *)b)->name);
}

void mc_loader_scan(const char *dir, mc_loader_scan_fn fn, void *user)
{
    if (dir == NULL || fn == NULL)
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    scan_list list = {0};
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        char name[MC_PLUGIN_NAME_MAX + 1];
        bool is_la;
        if (plugin_file_name(ent->d_name, name, &is_la) && !scan_add(&list, name, is_la))
            break;
    }
    closedir(d);

    if (list.count > 1)
        qsort(list.items, list.count, sizeof(*list.items), compare_entries);
    for (size_t i = 0; i < list.count; i++) {
        char path[PATH_SIZE];
        int n = snprintf(path, sizeof(path), "%s/" MC_PLUGIN_FILE_PREFIX "%s.%s", dir,
                         list.items[i].name, list.items[i].has_la ? "la" : "so");
        if (n > 0 && (size_t)n < sizeof(path))
            fn(user, list.items[i].name, path);
    }
    free(list.items);
}

const char *mc_loader_default_dir(void)
{
    return MC_PKGLIBDIR;
}
