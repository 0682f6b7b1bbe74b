/*
 * config: the plugin's schema is usable as written. Every default parses as its type and
 * lies within its bounds, the plugin initialises with no section at all, and with each
 * key written out explicitly at its default. These run without the user's --config and
 * without MEMCAST_<NAME>_* variables: they judge the defaults.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conformance.h"
#include "../../framework/config.h"

static const char *type_name(mc_config_type type)
{
    switch (type) {
    case MC_CFG_BOOL:
        return "BOOL";
    case MC_CFG_INT:
        return "INT";
    case MC_CFG_SIZE:
        return "SIZE";
    case MC_CFG_DURATION:
        return "DURATION";
    case MC_CFG_ENUM:
        return "ENUM";
    case MC_CFG_STRING:
        return "STRING";
    }
    return "unknown";
}

static bool in_bounds(const mc_config_key *k, int64_t value)
{
    return (k->min == 0 && k->max == 0) || (value >= k->min && value <= k->max);
}

static bool enum_default_listed(const mc_config_key *k)
{
    for (size_t i = 0; k->enum_values != NULL && k->enum_values[i] != NULL; i++)
        if (strcasecmp(k->enum_values[i], k->default_value) == 0)
            return true;
    return false;
}

/* True when the default parses as its type and lies within [min, max]. */
static bool default_ok(const mc_config_key *k)
{
    const char *text = k->default_value;
    bool b;
    int64_t i;
    uint64_t u;
    switch (k->type) {
    case MC_CFG_BOOL:
        return mc_config_parse_bool(text, &b) == 0;
    case MC_CFG_INT:
        return mc_config_parse_int(text, &i) == 0 && in_bounds(k, i);
    case MC_CFG_SIZE:
        return mc_config_parse_size(text, &u) == 0 && u <= INT64_MAX && in_bounds(k, (int64_t)u);
    case MC_CFG_DURATION:
        return mc_config_parse_duration_ms(text, &i) == 0 && in_bounds(k, i);
    case MC_CFG_ENUM:
        return enum_default_listed(k);
    case MC_CFG_STRING:
        return true;
    }
    return false;
}

static bool check_key(const mc_config_key *k)
{
    if ((int)k->type < MC_CFG_BOOL || (int)k->type > MC_CFG_STRING) {
        conf_fail("key '%s': type %d is not an mc_config_type", k->name, (int)k->type);
        return false;
    }
    if (k->default_value == NULL) {
        conf_fail("key '%s' (%s) has no default value", k->name, type_name(k->type));
        return false;
    }
    if (!default_ok(k)) {
        conf_fail("key '%s': default '%s' is not a valid %s%s", k->name, k->default_value,
                  type_name(k->type),
                  k->min || k->max         ? " within [min, max]"
                  : k->type == MC_CFG_ENUM ? " value"
                                           : "");
        return false;
    }
    return true;
}

static void config_defaults_parse(const conf_env *env)
{
    conf_schema schema = {0};
    conf_step("reading the schema");
    CONF_CALL(conf_schema_load(env, &schema));
    if (schema.count == 0) {
        conf_note("the plugin has no configuration keys");
        goto out;
    }
    bool ok = true;
    for (size_t i = 0; i < schema.count; i++) {
        conf_step("checking the default of '%s'", schema.keys[i].name);
        ok &= check_key(&schema.keys[i]);
    }
    CONF_EXPECT(ok, "defaults do not parse");
    conf_step("checking the schema as the loader does");
    CONF_CALL(mc_config_schema_check(schema.keys, sizeof(mc_config_key)));
    conf_note("%zu keys, every default valid", schema.count);
out:
    conf_schema_free(&schema);
}

static void config_empty_section(const conf_env *env)
{
    mc_context *ctx = NULL;
    char path[CONF_PATH_MAX];
    FILE *f = NULL;
    conf_clear_plugin_env(env);
    /* No [NAME] section at all: the plugin is found through the variable instead (so is
     * the data transport that a plugin without MC_ROLE_DATA is loaded with). */
    char dirs[2 * CONF_PATH_MAX + 2];
    conf_format(dirs, sizeof(dirs), "%s%s%s", env->plugin->dir, env->data ? ":" : "",
                env->data ? env->data->dir : "");
    setenv("MEMCAST_PLUGIN_PATH", dirs, 1);
    snprintf(path, sizeof(path), "%s/empty-%ld.ini", env->tmpdir, (long)getpid());
    CONF_EXPECT((f = fopen(path, "w")) != NULL, "cannot write %s", path);
    fprintf(f, "[framework]\nplugins = %s%s%s\n", env->plugin->name, env->data ? ", " : "",
            env->data ? env->data->name : "");
    CONF_EXPECT(fclose(f) == 0, "cannot write %s", path);
    conf_step("opening a context whose configuration has no [%s] section", env->plugin->name);
    CONF_CALL(conf_context_open_file(env, path, &ctx));
    conf_step("closing it");
    CONF_CALL(mc_context_close(ctx));
    ctx = NULL;
out:
    mc_context_close(ctx);
}

/* Opens and closes a context whose [NAME] section holds lines. */
static bool opens_with(const conf_env *env, const char *tag, const char *lines)
{
    char path[CONF_PATH_MAX];
    mc_context *ctx = NULL;
    if (conf_write_config(env, tag, lines, path, sizeof(path)) != 0 ||
        conf_context_open_file(env, path, &ctx) != 0)
        return false;
    return mc_context_close(ctx) == 0;
}

static void config_explicit_defaults(const conf_env *env)
{
    conf_schema schema = {0};
    char *all = NULL;
    conf_clear_plugin_env(env);
    conf_step("reading the schema");
    CONF_CALL(conf_schema_load(env, &schema));
    if (schema.count == 0) {
        conf_skip("the plugin has no configuration keys");
        goto out;
    }
    size_t size = 1;
    for (size_t i = 0; i < schema.count; i++)
        size += strlen(schema.keys[i].name) + strlen(schema.keys[i].default_value) + 4;
    CONF_EXPECT((all = calloc(1, size)) != NULL, "out of memory");
    for (size_t i = 0; i < schema.count; i++) {
        const mc_config_key *k = &schema.keys[i];
        char line[1024];
        snprintf(line, sizeof(line), "%s = %s", k->name, k->default_value);
        conf_step("opening a context with only '%s' in [%s]", line, env->plugin->name);
        CONF_EXPECT(opens_with(env, "key", line), "with only '%s' in [%s]: %s", line,
                    env->plugin->name, mc_last_error());
        strcat(strcat(all, line), "\n");
    }
    conf_step("opening a context with every key at its default");
    CONF_EXPECT(opens_with(env, "all", all), "with every key set to its default: %s",
                mc_last_error());
    conf_note("%zu keys, each set to its default, one at a time and all together", schema.count);
out:
    free(all);
    conf_schema_free(&schema);
}

const conf_case conf_cases_config[] = {
    {"config", "defaults_parse",
     "every schema default parses as its type, within min/max, ENUM defaults are listed", 0, 0, 0,
     CONF_MEET_NONE, config_defaults_parse},
    {"config", "empty_section", "the plugin initialises with no section of its own at all", 0, 0, 0,
     CONF_MEET_NONE, config_empty_section},
    {"config", "explicit_defaults",
     "each key written out at its default, alone and all together, still initialises", 0, 0, 0,
     CONF_MEET_NONE, config_explicit_defaults},
    {NULL, NULL, NULL, 0, 0, 0, CONF_MEET_NONE, NULL},
};
