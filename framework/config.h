/*
 * Configuration: one INI file read with the system libinih, plus MEMCAST_<SECTION>_<KEY>
 * environment overrides, validated against schemas (the framework's own and each
 * plugin's). Every error names file, line and key.
 */
#ifndef MEMCAST_FRAMEWORK_CONFIG_H
#define MEMCAST_FRAMEWORK_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <memcast/plugin.h>

typedef enum mc_config_source {
    MC_SRC_DEFAULT = 0, /* the schema's default */
    MC_SRC_FILE = 1,    /* the configuration file */
    MC_SRC_ENV = 2,     /* a MEMCAST_<SECTION>_<KEY> variable */
} mc_config_source;

typedef struct mc_config mc_config;
typedef struct mc_config_section mc_config_section;

/* The [framework] schema: plugins, plugin_path, log_level, domain. */
extern const mc_config_key mc_framework_schema[];

/* Keys every plugin section may hold besides its schema, handled by the framework. */
extern const mc_config_key mc_plugin_reserved_schema[];

/* Reads path; NULL means $MEMCAST_CONFIG, and with that unset no file at all. Rejects
 * (MC_ECONFIG, detail "file:line: ...") unknown or duplicate keys in [framework], bad
 * values, indented lines (Debian's inih would silently take them as continuations), lines
 * longer than inih can read, and syntax errors. A missing file is MC_ENOENT. Plugin
 * sections are kept as text until mc_config_section_bind. */
int mc_config_load(const char *path, mc_config **out);
void mc_config_free(mc_config *cfg);

/* The file that was read, or NULL when none was. */
const char *mc_config_file(const mc_config *cfg);

/* Sections present in the file, in file order. */
size_t mc_config_section_count(const mc_config *cfg);
const char *mc_config_section_name(const mc_config *cfg, size_t index);

/* Validates section against schema (plus mc_plugin_reserved_schema when it is not
 * "framework") and returns a typed view of it: file values, then environment overrides,
 * then schema defaults. An unknown key is MC_ECONFIG naming file:line, the section and the
 * key, with a did-you-mean suggestion when a schema key is close. Environment variables
 * for keys the schema lacks are errors too. schema may be NULL (no keys). */
int mc_config_section_bind(const mc_config *cfg, const char *section, const mc_config_key *schema,
                           mc_config_section **out);
void mc_config_section_free(mc_config_section *sec);

/* Typed getters: 0, MC_ENOENT when key is not in the bound schema, MC_EINVAL when key is
 * of another type. Strings live as long as the section. */
int mc_config_get_bool(const mc_config_section *sec, const char *key, bool *out);
int mc_config_get_int(const mc_config_section *sec, const char *key, int64_t *out);
int mc_config_get_size(const mc_config_section *sec, const char *key, uint64_t *out);
int mc_config_get_duration_ms(const mc_config_section *sec, const char *key, int64_t *out);
int mc_config_get_enum(const mc_config_section *sec, const char *key, int *index);
int mc_config_get_string(const mc_config_section *sec, const char *key, const char **out);

/* Where the effective value of key came from; file and line are set for MC_SRC_FILE,
 * the variable name in *file for MC_SRC_ENV. Returns MC_ENOENT for unknown keys. */
int mc_config_get_source(const mc_config_section *sec, const char *key, mc_config_source *src,
                         const char **file, int *line);

/* The effective text of key (after overrides and defaults), or NULL if not in the schema. */
const char *mc_config_get_text(const mc_config_section *sec, const char *key);

/* The raw text of key in section before any schema is known: the environment override
 * MEMCAST_<SECTION>_<KEY> if set, else the file's value, else NULL. The framework reads a
 * plugin's reserved keys (path, enabled) with it before the plugin is loaded. */
const char *mc_config_raw(const mc_config *cfg, const char *section, const char *key);

/* Parsers shared by files, environment and defaults. 0 or MC_EINVAL (no detail set). */
int mc_config_parse_bool(const char *text, bool *out);
int mc_config_parse_int(const char *text, int64_t *out);
int mc_config_parse_size(const char *text, uint64_t *out);
int mc_config_parse_duration_ms(const char *text, int64_t *out);

/* Checks a schema itself (names, types, defaults parse, bounds): 0, or MC_EINVAL with a
 * detail naming the key. Used to validate plugin descriptors. key_size is the size of one
 * entry as the plugin was compiled (descriptor->config_key_size). */
int mc_config_schema_check(const mc_config_key *schema, size_t key_size);

/* The closest of candidates to word within a small edit distance, or NULL. */
const char *mc_suggest(const char *word, const char *const *candidates, size_t count);

#endif
