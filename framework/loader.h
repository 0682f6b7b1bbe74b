/*
 * Plugin loader: finds mc_<name>.{la,so} along a search path with libltdl (behind one
 * lock), calls the entry symbol and validates the descriptor at run time. Every failure
 * says which plugin, where, why (the real dlerror() reason) and what to do.
 */
#ifndef MEMCAST_FRAMEWORK_LOADER_H
#define MEMCAST_FRAMEWORK_LOADER_H

#include <stddef.h>

#include <memcast/plugin.h>

typedef struct mc_loaded_plugin {
    char name[MC_PLUGIN_NAME_MAX + 1];
    char path[4096];                  /* the file that was opened */
    const mc_plugin_descriptor *desc; /* validated */
    void *handle;                     /* lt_dlhandle */
} mc_loaded_plugin;

/* Loads plugin `name` ([a-z][a-z0-9_]*), trying each of dirs in order (NULL entries and
 * empty strings are skipped): DIR/mc_NAME.la, then DIR/mc_NAME.so. Returns 0, MC_ENOENT
 * (found in no directory: the detail lists where it looked), MC_EPLUGIN (a file exists but
 * will not load: the detail has the dlerror() reason) or MC_EABI (the descriptor is
 * invalid: the detail says which field and what was expected). */
int mc_loader_open(const char *name, const char *const *dirs, size_t ndirs, mc_loaded_plugin *out);

/* Loads the plugin in file path (.la or .so). expected_name, when not NULL, must be the
 * descriptor's name; otherwise the name is taken from the file name mc_NAME. */
int mc_loader_open_path(const char *path, const char *expected_name, mc_loaded_plugin *out);

/* Unloads; safe on a zeroed struct. Honours MEMCAST_NO_DLCLOSE=1 (keeps the module mapped
 * so sanitizers can name its frames). */
void mc_loader_close(mc_loaded_plugin *plugin);

/* Validates a descriptor returned by an entry point: magic, ABI major, struct sizes,
 * name (against expected_name when not NULL), roles, scopes, required ops for its roles,
 * ops table size and the config schema. 0 or MC_EABI with a detail set. */
int mc_descriptor_validate(const mc_plugin_descriptor *desc, const char *expected_name);

/* Calls fn for every candidate plugin file in dir: names matching ^mc_[a-z][a-z0-9_]*$
 * with a .la or .so suffix, each plugin name once (the .la wins). */
typedef void (*mc_loader_scan_fn)(void *user, const char *name, const char *path);
void mc_loader_scan(const char *dir, mc_loader_scan_fn fn, void *user);

/* The installed plugin directory, $(pkglibdir). */
const char *mc_loader_default_dir(void);

#endif
