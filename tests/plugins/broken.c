/*
 * Deliberately broken plugins for the loader tests. One source, one fixture per flag: each
 * BROKEN_* flag (see tests/Makefile.inc) introduces exactly one defect into an otherwise
 * minimal but valid data plugin, so a test that sees the expected error knows which check
 * caught it.
 */
#include <stddef.h>

#include <memcast/plugin.h>

/* Defaults: a valid descriptor. Each fixture overrides what it breaks. */
#define FIXTURE_MAGIC       MC_PLUGIN_MAGIC
#define FIXTURE_ABI_MAJOR   MC_PLUGIN_ABI_MAJOR
#define FIXTURE_STRUCT_SIZE sizeof(mc_plugin_descriptor)
#define FIXTURE_SEND        fixture_send
#define FIXTURE_CONFIG      NULL
#define FIXTURE_INIT_FAILS  0

#if defined(BROKEN_BAD_MAGIC)
#define FIXTURE_NAME "bad_magic"
#undef FIXTURE_MAGIC
#define FIXTURE_MAGIC 0xdeadbeefu
#elif defined(BROKEN_BAD_ABI)
#define FIXTURE_NAME "bad_abi"
#undef FIXTURE_ABI_MAJOR
#define FIXTURE_ABI_MAJOR 99
#elif defined(BROKEN_SHORT_STRUCT)
#define FIXTURE_NAME "short_struct"
#undef FIXTURE_STRUCT_SIZE
#define FIXTURE_STRUCT_SIZE 8
#elif defined(BROKEN_MISSING_OP)
#define FIXTURE_NAME "missing_op"
#undef FIXTURE_SEND
#define FIXTURE_SEND NULL
#elif defined(BROKEN_UNDEFINED_SYMBOL)
#define FIXTURE_NAME "undefined_symbol"
#elif defined(BROKEN_INIT_FAILS)
#define FIXTURE_NAME "init_fails"
#undef FIXTURE_INIT_FAILS
#define FIXTURE_INIT_FAILS 1
#elif defined(BROKEN_NAME_MISMATCH)
#define FIXTURE_NAME "someone_else" /* the file is mc_name_mismatch */
#elif defined(BROKEN_NO_ENTRY)
#define FIXTURE_NAME "no_entry"
#elif defined(BROKEN_ENTRY_NULL)
#define FIXTURE_NAME "entry_null"
#elif defined(BROKEN_BAD_SCHEMA)
#define FIXTURE_NAME "bad_schema"
#undef FIXTURE_CONFIG
#define FIXTURE_CONFIG fixture_schema
#else
#error "define one BROKEN_* flag"
#endif

#if defined(BROKEN_UNDEFINED_SYMBOL)
/* Exists in no library: the module keeps an undefined symbol that lazy binding would only
 * trip over at the first call. */
extern int mc_fixture_function_that_exists_nowhere(void);
#endif

#if defined(BROKEN_BAD_SCHEMA)
/* "lots" is not an integer: the loader must reject the schema before init ever runs. */
static const mc_config_key fixture_schema[] = {
    {.name = "retry_count", .type = MC_CFG_INT, .default_value = "lots", .doc = "retries"},
    {.name = NULL},
};
#endif

struct mc_plugin {
    const mc_host *host;
};

static struct mc_plugin fixture_instance;

static int fixture_init(const mc_host *host, mc_plugin **out)
{
#if defined(BROKEN_UNDEFINED_SYMBOL)
    if (mc_fixture_function_that_exists_nowhere() != 0)
        return MC_EINTERNAL;
#endif
    if (FIXTURE_INIT_FAILS) {
        host->set_error(host->ctx, "this fixture always fails to initialise");
        return MC_ETRANSPORT;
    }
    fixture_instance.host = host;
    *out = &fixture_instance;
    return 0;
}

static void fixture_fini(mc_plugin *plugin)
{
    plugin->host = NULL;
}

static int fixture_limits(mc_plugin *plugin, mc_plugin_limits *out)
{
    out->max_message_size = 0;
    return 0;
}

static int fixture_pub_open(mc_plugin *plugin, const mc_endpoint_info *info, void *cookie,
                            mc_plugin_pub **out)
{
    return MC_ENOSYS;
}

static void fixture_pub_close(mc_plugin_pub *pub)
{
}

static int fixture_sub_open(mc_plugin *plugin, const mc_endpoint_info *info, void *cookie,
                            mc_plugin_sub **out)
{
    return MC_ENOSYS;
}

static void fixture_sub_close(mc_plugin_sub *sub)
{
}

static int fixture_pub_connect(mc_plugin_pub *pub, const mc_peer *sub)
{
    return MC_ENOSYS;
}

static void fixture_pub_disconnect(mc_plugin_pub *pub, const mc_endpoint_id *sub)
{
}

#if !defined(BROKEN_MISSING_OP)
static int fixture_send(mc_plugin_pub *pub, const mc_sample *sample)
{
    return MC_ENOSYS;
}
#endif

static const mc_plugin_ops fixture_ops = {
    .struct_size = sizeof(mc_plugin_ops),
    .init = fixture_init,
    .fini = fixture_fini,
    .limits = fixture_limits,
    .pub_open = fixture_pub_open,
    .pub_close = fixture_pub_close,
    .sub_open = fixture_sub_open,
    .sub_close = fixture_sub_close,
    .pub_connect = fixture_pub_connect,
    .pub_disconnect = fixture_pub_disconnect,
    .send = FIXTURE_SEND,
};

static const mc_plugin_descriptor fixture_descriptor = {
    .magic = FIXTURE_MAGIC,
    .abi_major = FIXTURE_ABI_MAJOR,
    .abi_minor = MC_PLUGIN_ABI_MINOR,
    .struct_size = FIXTURE_STRUCT_SIZE,
    .config_key_size = sizeof(mc_config_key),
    .name = FIXTURE_NAME,
    .version = "0.0.1",
    .description = "loader test fixture: " FIXTURE_NAME,
    .roles = MC_ROLE_DATA,
    .scopes = MC_SCOPE_PROCESS,
    .caps = 0,
    .config = FIXTURE_CONFIG,
    .ops = &fixture_ops,
};

#if defined(BROKEN_NO_ENTRY)
/* A plugin that forgot MC_PLUGIN_DEFINE but exports something else. */
MC_PLUGIN_EXPORT const mc_plugin_descriptor *memcast_plugin_entry_misspelt(void);
MC_PLUGIN_EXPORT const mc_plugin_descriptor *memcast_plugin_entry_misspelt(void)
{
    return &fixture_descriptor;
}
#elif defined(BROKEN_ENTRY_NULL)
/* A plugin that serves only an ABI major this framework does not speak. */
MC_PLUGIN_EXPORT const mc_plugin_descriptor *MC_PLUGIN_ENTRY(uint32_t host_abi_major,
                                                             uint32_t host_abi_minor);
MC_PLUGIN_EXPORT const mc_plugin_descriptor *MC_PLUGIN_ENTRY(uint32_t host_abi_major,
                                                             uint32_t host_abi_minor)
{
    return host_abi_major == 0 ? &fixture_descriptor : NULL;
}
#else
MC_PLUGIN_DEFINE(fixture_descriptor)
#endif
