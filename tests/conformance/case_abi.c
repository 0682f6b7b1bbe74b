/*
 * abi: what the plugin file itself promises, checked without a context: the descriptor
 * the loader validates, the sizes of its tables, the one exported symbol and an entry
 * point without side effects.
 */
#include <dlfcn.h>
#include <ltdl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"
#include "loader.h"

/* Ops tables may grow, but a plugin cannot need more than this. */
#define OPS_SIZE_SANE (64u * 1024u)
#define OPS_1_0_SIZE  offsetof(mc_plugin_ops, sub_connect)

static int open_plugin(const conf_env *env, mc_loaded_plugin *loaded)
{
    conf_step("loading %s", env->plugin->path);
    return mc_loader_open_path(env->plugin->path, NULL, loaded);
}

static void abi_descriptor(const conf_env *env)
{
    mc_loaded_plugin loaded = {0};
    CONF_CALL(open_plugin(env, &loaded));
    const mc_plugin_descriptor *d = loaded.desc;
    conf_step("validating the descriptor");
    CONF_CALL(mc_descriptor_validate(d, env->plugin->name));
    CONF_EXPECT(d->magic == MC_PLUGIN_MAGIC, "magic is 0x%08x, expected 0x%08x", (unsigned)d->magic,
                (unsigned)MC_PLUGIN_MAGIC);
    CONF_EXPECT(d->abi_major == MC_PLUGIN_ABI_MAJOR, "ABI major %u, this memcast speaks %d",
                (unsigned)d->abi_major, MC_PLUGIN_ABI_MAJOR);
    CONF_EXPECT(strcmp(d->name, env->plugin->name) == 0, "descriptor name '%s', the file is mc_%s",
                d->name, env->plugin->name);
    CONF_EXPECT(d->version[0] != '\0', "descriptor version is empty");
    CONF_EXPECT(d->description[0] != '\0', "descriptor description is empty");
    CONF_EXPECT(d->reserved == 0, "descriptor reserved is 0x%x, expected 0", (unsigned)d->reserved);
    CONF_EXPECT(d->ops->reserved == 0, "ops reserved is 0x%x, expected 0",
                (unsigned)d->ops->reserved);
    CONF_EXPECT(d->roles & (MC_ROLE_DATA | MC_ROLE_REGISTRATION),
                "roles 0x%x are neither MC_ROLE_DATA nor MC_ROLE_REGISTRATION", (unsigned)d->roles);
out:
    mc_loader_close(&loaded);
}

/* A plugin built against this very ABI minor has exactly this build's sizes; an older or
 * newer minor may differ, but never below what ABI 1.0 had. */
static bool size_ok(const char *what, size_t size, size_t expected, size_t minimum, bool same_minor)
{
    if (same_minor && size != expected) {
        conf_fail("%s is %zu, expected %zu: a plugin of ABI %d.%d has exactly this build's size",
                  what, size, expected, MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
        return false;
    }
    if (size < minimum) {
        conf_fail("%s is %zu, expected at least %zu", what, size, minimum);
        return false;
    }
    return true;
}

static void abi_sizes(const conf_env *env)
{
    mc_loaded_plugin loaded = {0};
    CONF_CALL(open_plugin(env, &loaded));
    const mc_plugin_descriptor *d = loaded.desc;
    bool same = d->abi_minor == MC_PLUGIN_ABI_MINOR;
    conf_step("comparing table sizes with ABI %d.%d", MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    bool ok = size_ok("descriptor struct_size", d->struct_size, sizeof(mc_plugin_descriptor),
                      sizeof(mc_plugin_descriptor), same);
    ok &= size_ok("descriptor config_key_size", d->config_key_size, sizeof(mc_config_key),
                  sizeof(mc_config_key), same);
    ok &=
        size_ok("ops struct_size", d->ops->struct_size, sizeof(mc_plugin_ops), OPS_1_0_SIZE, same);
    CONF_CHECK(ok);
    CONF_EXPECT(d->ops->struct_size <= OPS_SIZE_SANE,
                "ops struct_size is %u: not a size any ABI 1.x ops table can have",
                (unsigned)d->ops->struct_size);
    CONF_EXPECT(d->ops->struct_size % sizeof(void *) == 0,
                "ops struct_size %u is not a whole number of pointers",
                (unsigned)d->ops->struct_size);
out:
    mc_loader_close(&loaded);
}

typedef struct export_list {
    size_t count;
    bool has_entry;
    char extra[512];
} export_list;

static void collect_export(void *user, const char *name)
{
    export_list *list = user;
    list->count++;
    if (strcmp(name, MC_PLUGIN_ENTRY_NAME) == 0) {
        list->has_entry = true;
        return;
    }
    size_t used = strlen(list->extra);
    snprintf(list->extra + used, sizeof(list->extra) - used, "%s%s", used ? ", " : "", name);
}

static void abi_exports(const conf_env *env)
{
    mc_loaded_plugin loaded = {0};
    CONF_CALL(open_plugin(env, &loaded));
    Dl_info info;
    CONF_EXPECT(dladdr(loaded.desc, &info) != 0 && info.dli_fname != NULL,
                "cannot tell which shared object holds the descriptor");
    conf_step("reading the dynamic symbol table of %s", info.dli_fname);
    export_list list = {0};
    char why[512];
    CONF_EXPECT(conf_elf_exports(info.dli_fname, collect_export, &list, why, sizeof(why)) == 0,
                "%s", why);
    CONF_EXPECT(list.has_entry, "%s does not export " MC_PLUGIN_ENTRY_NAME, info.dli_fname);
    CONF_EXPECT(list.count == 1,
                "%s exports %zu symbols, expected only " MC_PLUGIN_ENTRY_NAME
                "; also: %s (build with -fvisibility=hidden and -export-symbols-regex "
                "'^memcast_plugin_entry$')",
                info.dli_fname, list.count, list.extra);
out:
    mc_loader_close(&loaded);
}

static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

static void abi_entry_pure(const conf_env *env)
{
    mc_loaded_plugin loaded = {0};
    CONF_CALL(open_plugin(env, &loaded));
    void *sym = lt_dlsym((lt_dlhandle)loaded.handle, MC_PLUGIN_ENTRY_NAME);
    CONF_EXPECT(sym != NULL, "lt_dlsym(" MC_PLUGIN_ENTRY_NAME ") failed after the loader found it");
    mc_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof(entry));

    conf_resources before, after;
    conf_resources_count(env, &before);
    size_t heap = heap_in_use();
    conf_step("calling " MC_PLUGIN_ENTRY_NAME "(%d, %d) twice", MC_PLUGIN_ABI_MAJOR,
              MC_PLUGIN_ABI_MINOR);
    const mc_plugin_descriptor *first = entry(MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    const mc_plugin_descriptor *second = entry(MC_PLUGIN_ABI_MAJOR, MC_PLUGIN_ABI_MINOR);
    conf_step("calling " MC_PLUGIN_ENTRY_NAME " with ABI majors it may refuse");
    entry(MC_PLUGIN_ABI_MAJOR + 1, 0);
    entry(0, 0);
    conf_resources_count(env, &after);
    size_t heap_after = heap_in_use();

    CONF_EXPECT(first == loaded.desc && second == loaded.desc,
                "the entry returned %p and %p, the loader got %p: it must return the same "
                "constant descriptor every time",
                (const void *)first, (const void *)second, (const void *)loaded.desc);
    CONF_CHECK(conf_resources_same(env, &before, &after, "4 calls of the entry point"));
    CONF_EXPECT(heap_after <= heap, "the heap grew by %zu bytes across 4 calls of the entry point",
                heap_after - heap);
out:
    mc_loader_close(&loaded);
}

const conf_case conf_cases_abi[] = {
    {"abi", "descriptor",
     "the descriptor passes the loader's checks; its name is the file's; strings set; reserved 0",
     0, 0, 0, CONF_MEET_NONE, abi_descriptor},
    {"abi", "sizes", "descriptor, config key and ops table sizes match this ABI", 0, 0, 0,
     CONF_MEET_NONE, abi_sizes},
    {"abi", "exports", "the .so exports exactly " MC_PLUGIN_ENTRY_NAME " (read from its .dynsym)",
     0, 0, 0, CONF_MEET_NONE, abi_exports},
    {"abi", "entry_pure",
     "the entry returns the same pointer every time; no fd, thread or heap growth", 0, 0, 0,
     CONF_MEET_NONE, abi_entry_pure},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
