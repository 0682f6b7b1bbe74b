/*
 * Configuration: the file is read with the system libinih through a reader that counts
 * lines, because Debian's build gives handlers no line numbers, reads indented lines as
 * continuations of the previous key and cuts lines longer than it can hold. The reader
 * rejects the last two before inih sees them, so every line inih parses is one line of the
 * file and the counter is the line the handler is looking at.
 *
 * Sections stay text until a schema arrives (mc_config_section_bind); only [framework] is
 * bound at load, so that its mistakes stop the context from opening at all.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "error.h"

/* A schema longer than this is taken to be missing its {NULL} entry. */
#define SCHEMA_MAX_KEYS 256
#define ENUM_MAX_VALUES 256
/* Keys are short; longer words are not worth a suggestion. */
#define SUGGEST_MAX_LEN 127
#define DOMAIN_MAX_LEN  32
#define WHERE_MAX       4352
#define PROBLEM_MAX     640

#define FRAMEWORK_SECTION "framework"
#define ENV_PREFIX        "MEMCAST_"

/* ---- schemas ------------------------------------------------------------------------------ */

/* Same order as mc_log_level, so that the enum index is the level. */
static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};

const mc_config_key mc_framework_schema[] = {
    {.name = "plugins",
     .type = MC_CFG_STRING,
     .default_value = "inproc, shm, udp",
     .doc = "comma- or space-separated plugins to load, in order of preference"},
    {.name = "plugin_path",
     .type = MC_CFG_STRING,
     .default_value = "",
     .doc = "colon-separated directories searched after MEMCAST_PLUGIN_PATH and before the "
            "installed directory"},
    {.name = "log_level",
     .type = MC_CFG_ENUM,
     .default_value = "warn",
     .doc = "least severe messages logged: error, warn, info or debug",
     .enum_values = log_level_names},
    {.name = "domain",
     .type = MC_CFG_STRING,
     .default_value = "default",
     .doc = "only endpoints of the same domain meet; [A-Za-z0-9_-], 1 to 32 characters"},
    {.name = NULL},
};

const mc_config_key mc_plugin_reserved_schema[] = {
    {.name = "path",
     .type = MC_CFG_STRING,
     .default_value = "",
     .doc = "directory searched first for this plugin"},
    {.name = "enabled",
     .type = MC_CFG_BOOL,
     .default_value = "true",
     .doc = "false skips the plugin without error"},
    {.name = NULL},
};

/* Variables that belong to no section even though they look like MEMCAST_<SECTION>_<KEY>. */
static const char *const global_variables[] = {
    "MEMCAST_CONFIG",
    "MEMCAST_PLUGIN_PATH",
    "MEMCAST_LOG_LEVEL",
    "MEMCAST_NO_DLCLOSE",
};

/* ---- storage ------------------------------------------------------------------------------ */

typedef struct text_entry {
    char *key;
    char *value;
    int line;
} text_entry;

typedef struct text_section {
    char *name;
    text_entry *entries;
    size_t count;
    size_t capacity;
} text_section;

struct mc_config {
    char *file;
    text_section *sections;
    size_t count;
    size_t capacity;
};

typedef union typed_value {
    bool b;
    int64_t i;  /* INT, DURATION (ms), ENUM (index) */
    uint64_t u; /* SIZE */
} typed_value;

typedef struct bound_value {
    char *name;
    mc_config_type type;
    char *text;
    mc_config_source source;
    char *origin; /* the file, or the environment variable */
    int line;
    typed_value value;
} bound_value;

struct mc_config_section {
    char *name;
    bound_value *values;
    size_t count;
};

/* Returns a larger copy of items for at least needed entries, or NULL (items untouched). */
static void *grow_array(void *items, size_t *capacity, size_t needed, size_t item_size)
{
    if (needed <= *capacity)
        return items;
    size_t capacity_wanted = *capacity ? *capacity * 2 : 8;
    while (capacity_wanted < needed)
        capacity_wanted *= 2;
    void *grown = realloc(items, capacity_wanted * item_size);
    if (grown != NULL)
        *capacity = capacity_wanted;
    return grown;
}

static const mc_config_key *key_at(const mc_config_key *schema, size_t key_size, size_t index)
{
    return (const mc_config_key *)(const void *)((const char *)schema + index * key_size);
}

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
    return "unknown type";
}

static bool is_valid_name(const char *name)
{
    if (!islower((unsigned char)name[0]))
        return false;
    for (const char *p = name + 1; *p != '\0'; p++) {
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_')
            return false;
    }
    return true;
}

static bool is_reserved_name(const char *name)
{
    for (const mc_config_key *key = mc_plugin_reserved_schema; key->name != NULL; key++) {
        if (strcmp(key->name, name) == 0)
            return true;
    }
    return false;
}

/* ---- parsers ------------------------------------------------------------------------------ */

/* Finds the text between leading and trailing white space: environment values arrive
 * untrimmed, file values already trimmed by inih. */
static const char *trim(const char *text, size_t *length)
{
    while (isspace((unsigned char)*text))
        text++;
    size_t n = strlen(text);
    while (n > 0 && isspace((unsigned char)text[n - 1]))
        n--;
    *length = n;
    return text;
}

static bool equals_ignoring_case(const char *text, size_t length, const char *word)
{
    return strlen(word) == length && strncasecmp(text, word, length) == 0;
}

/* Reads the digits at *cursor; MC_EINVAL when there are none or they overflow. */
static int parse_digits(const char **cursor, const char *end, uint64_t *out)
{
    const char *p = *cursor;
    uint64_t value = 0;
    if (p == end || !isdigit((unsigned char)*p))
        return MC_EINVAL;
    for (; p < end && isdigit((unsigned char)*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return MC_EINVAL;
        value = value * 10 + digit;
    }
    *cursor = p;
    *out = value;
    return 0;
}

static const char *skip_spaces(const char *p, const char *end)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    return p;
}

int mc_config_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    if (text == NULL || out == NULL)
        return MC_EINVAL;
    size_t length;
    const char *start = trim(text, &length);
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (equals_ignoring_case(start, length, yes[i])) {
            *out = true;
            return 0;
        }
        if (equals_ignoring_case(start, length, no[i])) {
            *out = false;
            return 0;
        }
    }
    return MC_EINVAL;
}

int mc_config_parse_int(const char *text, int64_t *out)
{
    if (text == NULL || out == NULL)
        return MC_EINVAL;
    size_t length;
    const char *p = trim(text, &length);
    const char *end = p + length;
    bool negative = p < end && *p == '-';
    if (p < end && (*p == '-' || *p == '+'))
        p++;
    uint64_t magnitude;
    if (parse_digits(&p, end, &magnitude) != 0 || p != end)
        return MC_EINVAL;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (magnitude > limit)
        return MC_EINVAL;
    if (negative)
        *out = magnitude == limit ? INT64_MIN : -(int64_t)magnitude;
    else
        *out = (int64_t)magnitude;
    return 0;
}

/* Accepts "", K, M, G in either case, each optionally followed by "iB". */
static int size_multiplier(const char *suffix, const char *end, uint64_t *out)
{
    size_t length = (size_t)(end - suffix);
    if (length == 0) {
        *out = 1;
        return 0;
    }
    if (length != 1 && !(length == 3 && strncasecmp(suffix + 1, "ib", 2) == 0))
        return MC_EINVAL;
    switch (tolower((unsigned char)suffix[0])) {
    case 'k':
        *out = UINT64_C(1) << 10;
        return 0;
    case 'm':
        *out = UINT64_C(1) << 20;
        return 0;
    case 'g':
        *out = UINT64_C(1) << 30;
        return 0;
    }
    return MC_EINVAL;
}

int mc_config_parse_size(const char *text, uint64_t *out)
{
    if (text == NULL || out == NULL)
        return MC_EINVAL;
    size_t length;
    const char *p = trim(text, &length);
    const char *end = p + length;
    uint64_t number, multiplier;
    if (parse_digits(&p, end, &number) != 0)
        return MC_EINVAL;
    if (size_multiplier(skip_spaces(p, end), end, &multiplier) != 0)
        return MC_EINVAL;
    if (number > UINT64_MAX / multiplier)
        return MC_EINVAL;
    *out = number * multiplier;
    return 0;
}

int mc_config_parse_duration_ms(const char *text, int64_t *out)
{
    if (text == NULL || out == NULL)
        return MC_EINVAL;
    size_t length;
    const char *p = trim(text, &length);
    const char *end = p + length;
    uint64_t number, multiplier;
    if (parse_digits(&p, end, &number) != 0)
        return MC_EINVAL;
    const char *suffix = skip_spaces(p, end);
    size_t suffix_length = (size_t)(end - suffix);
    if (suffix_length == 0 || equals_ignoring_case(suffix, suffix_length, "ms"))
        multiplier = 1;
    else if (equals_ignoring_case(suffix, suffix_length, "s"))
        multiplier = 1000;
    else
        return MC_EINVAL;
    if (number > (uint64_t)INT64_MAX / multiplier)
        return MC_EINVAL;
    *out = (int64_t)(number * multiplier);
    return 0;
}

static int parse_enum(const char *text, const char *const *values, int *index)
{
    size_t length;
    const char *start = trim(text, &length);
    for (int i = 0; i < ENUM_MAX_VALUES && values[i] != NULL; i++) {
        if (equals_ignoring_case(start, length, values[i])) {
            *index = i;
            return 0;
        }
    }
    return MC_EINVAL;
}

/* ---- typed values and their error messages ------------------------------------------------ */

typedef enum value_problem {
    VALUE_OK,
    VALUE_SYNTAX,
    VALUE_RANGE,
} value_problem;

static bool has_bounds(const mc_config_key *key)
{
    return key->min != 0 || key->max != 0;
}

static bool size_in_bounds(const mc_config_key *key, uint64_t value)
{
    if (key->max < 0)
        return false;
    return (key->min <= 0 || value >= (uint64_t)key->min) && value <= (uint64_t)key->max;
}

static value_problem parse_typed(const mc_config_key *key, const char *text, typed_value *out)
{
    int index;
    switch (key->type) {
    case MC_CFG_BOOL:
        return mc_config_parse_bool(text, &out->b) == 0 ? VALUE_OK : VALUE_SYNTAX;
    case MC_CFG_INT:
    case MC_CFG_DURATION: {
        int rc = key->type == MC_CFG_INT ? mc_config_parse_int(text, &out->i)
                                         : mc_config_parse_duration_ms(text, &out->i);
        if (rc != 0)
            return VALUE_SYNTAX;
        bool inside = !has_bounds(key) || (out->i >= key->min && out->i <= key->max);
        return inside ? VALUE_OK : VALUE_RANGE;
    }
    case MC_CFG_SIZE:
        if (mc_config_parse_size(text, &out->u) != 0)
            return VALUE_SYNTAX;
        return !has_bounds(key) || size_in_bounds(key, out->u) ? VALUE_OK : VALUE_RANGE;
    case MC_CFG_ENUM:
        if (parse_enum(text, key->enum_values, &index) != 0)
            return VALUE_SYNTAX;
        out->i = index;
        return VALUE_OK;
    case MC_CFG_STRING:
        return VALUE_OK;
    }
    return VALUE_SYNTAX;
}

static const char *expected_syntax(mc_config_type type)
{
    switch (type) {
    case MC_CFG_BOOL:
        return "expected true/false, yes/no, on/off or 1/0";
    case MC_CFG_INT:
        return "expected a decimal integer with an optional sign, e.g. -12";
    case MC_CFG_SIZE:
        return "expected a number with an optional K, M or G suffix, e.g. 16M";
    case MC_CFG_DURATION:
        return "expected a number with an optional ms or s suffix, e.g. 250ms or 2s; a bare "
               "number is ms";
    case MC_CFG_ENUM:
    case MC_CFG_STRING:
        break;
    }
    return "expected a valid value";
}

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

static void append_enum_values(char *buf, size_t size, const char *const *values)
{
    for (int i = 0; i < ENUM_MAX_VALUES && values[i] != NULL; i++)
        append(buf, size, "%s%s", i == 0 ? "" : ", ", values[i]);
}

static void append_bounds(char *buf, size_t size, const mc_config_key *key)
{
    const char *unit = key->type == MC_CFG_DURATION ? "ms"
                       : key->type == MC_CFG_SIZE   ? " bytes"
                                                    : "";
    append(buf, size, "expected %lld%s to %lld%s", (long long)key->min, unit, (long long)key->max,
           unit);
}

/* Writes "key 'K': 'TEXT' is not ..." for a problem found by parse_typed. */
static void describe_problem(char *buf, size_t size, const mc_config_key *key, const char *text,
                             value_problem problem)
{
    buf[0] = '\0';
    append(buf, size, "key '%s': '%s' ", key->name, text);
    if (problem == VALUE_RANGE) {
        append(buf, size, "is out of range (");
        append_bounds(buf, size, key);
    } else if (key->type == MC_CFG_ENUM) {
        append(buf, size, "is not a valid ENUM (expected one of: ");
        append_enum_values(buf, size, key->enum_values);
    } else {
        append(buf, size, "is not a valid %s (%s", type_name(key->type),
               expected_syntax(key->type));
    }
    append(buf, size, ")");
}

/* ---- suggestions -------------------------------------------------------------------------- */

/* Optimal string alignment distance, case-insensitive: a swapped pair of letters is one
 * edit, which is what typing mistakes mostly are. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t rows[3][SUGGEST_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        rows[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t *cur = rows[i % 3], *prev = rows[(i - 1) % 3], *prev2 = rows[(i + 1) % 3];
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + (ca != cb);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
    }
    return rows[la % 3][lb];
}

const char *mc_suggest(const char *word, const char *const *candidates, size_t count)
{
    if (word == NULL || candidates == NULL)
        return NULL;
    size_t length = strlen(word);
    if (length == 0 || length > SUGGEST_MAX_LEN)
        return NULL;
    size_t limit = length / 3 > 2 ? length / 3 : 2;
    const char *best = NULL;
    size_t best_distance = limit + 1;
    for (size_t i = 0; i < count; i++) {
        if (candidates[i] == NULL || strlen(candidates[i]) > SUGGEST_MAX_LEN)
            continue;
        size_t distance = edit_distance(word, length, candidates[i], strlen(candidates[i]));
        /* A distance as long as the word means nothing of it survived. */
        if (distance < best_distance && distance < length) {
            best = candidates[i];
            best_distance = distance;
        }
    }
    return best;
}

/* ---- schema check ------------------------------------------------------------------------- */

static int check_enum_values(const mc_config_key *key)
{
    if (key->enum_values == NULL || key->enum_values[0] == NULL)
        return mc_error_set(MC_EINVAL, "config schema key '%s': ENUM without values", key->name);
    for (int i = 0; key->enum_values[i] != NULL; i++) {
        if (i == ENUM_MAX_VALUES)
            return mc_error_set(MC_EINVAL,
                                "config schema key '%s': more than %d enum values (missing "
                                "NULL at the end?)",
                                key->name, ENUM_MAX_VALUES);
        if (key->enum_values[i][0] == '\0')
            return mc_error_set(MC_EINVAL, "config schema key '%s': empty enum value", key->name);
    }
    return 0;
}

static int check_default(const mc_config_key *key)
{
    if (key->default_value == NULL)
        return mc_error_set(MC_EINVAL, "config schema key '%s': no default value", key->name);
    if (key->min > key->max)
        return mc_error_set(MC_EINVAL, "config schema key '%s': min %lld is above max %lld",
                            key->name, (long long)key->min, (long long)key->max);
    typed_value value;
    value_problem problem = parse_typed(key, key->default_value, &value);
    if (problem == VALUE_OK)
        return 0;
    char text[PROBLEM_MAX];
    describe_problem(text, sizeof(text), key, key->default_value, problem);
    return mc_error_set(MC_EINVAL, "config schema: default of %s", text);
}

static int check_schema_key(const mc_config_key *schema, size_t key_size, size_t index)
{
    const mc_config_key *key = key_at(schema, key_size, index);
    if (!is_valid_name(key->name))
        return mc_error_set(MC_EINVAL,
                            "config schema entry %zu: name '%s' is not valid ([a-z][a-z0-9_]*)",
                            index, key->name);
    if (is_reserved_name(key->name))
        return mc_error_set(
            MC_EINVAL, "config schema key '%s': the name is reserved for the framework", key->name);
    for (size_t i = 0; i < index; i++) {
        if (strcmp(key_at(schema, key_size, i)->name, key->name) == 0)
            return mc_error_set(MC_EINVAL,
                                "config schema key '%s': declared twice (entries %zu "
                                "and %zu)",
                                key->name, i, index);
    }
    if (key->type < MC_CFG_BOOL || key->type > MC_CFG_STRING)
        return mc_error_set(MC_EINVAL, "config schema key '%s': unknown type %d", key->name,
                            (int)key->type);
    if (key->type == MC_CFG_ENUM && check_enum_values(key) != 0)
        return MC_EINVAL;
    return check_default(key);
}

int mc_config_schema_check(const mc_config_key *schema, size_t key_size)
{
    if (key_size < sizeof(mc_config_key))
        return mc_error_set(MC_EINVAL,
                            "config key size %zu is smaller than the ABI 1.0 layout (%zu bytes)",
                            key_size, sizeof(mc_config_key));
    if (key_size % _Alignof(mc_config_key) != 0)
        return mc_error_set(MC_EINVAL, "config key size %zu is not a multiple of %zu", key_size,
                            _Alignof(mc_config_key));
    if (schema == NULL)
        return 0;
    for (size_t i = 0; key_at(schema, key_size, i)->name != NULL; i++) {
        if (i == SCHEMA_MAX_KEYS)
            return mc_error_set(MC_EINVAL,
                                "config schema has more than %d keys (missing {NULL} entry at "
                                "the end?)",
                                SCHEMA_MAX_KEYS);
        int rc = check_schema_key(schema, key_size, i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- text store --------------------------------------------------------------------------- */

static text_section *find_text_section(const mc_config *cfg, const char *name)
{
    for (size_t i = 0; cfg != NULL && i < cfg->count; i++) {
        if (strcmp(cfg->sections[i].name, name) == 0)
            return &cfg->sections[i];
    }
    return NULL;
}

static text_section *find_or_add_section(mc_config *cfg, const char *name)
{
    text_section *found = find_text_section(cfg, name);
    if (found != NULL)
        return found;
    text_section *grown =
        grow_array(cfg->sections, &cfg->capacity, cfg->count + 1, sizeof(*cfg->sections));
    if (grown == NULL)
        return NULL;
    cfg->sections = grown;
    text_section *section = &cfg->sections[cfg->count];
    *section = (text_section){.name = strdup(name)};
    if (section->name == NULL)
        return NULL;
    cfg->count++;
    return section;
}

static const text_entry *find_entry(const text_section *section, const char *key)
{
    for (size_t i = 0; section != NULL && i < section->count; i++) {
        if (strcmp(section->entries[i].key, key) == 0)
            return &section->entries[i];
    }
    return NULL;
}

static text_entry *add_entry(text_section *section, const char *key, const char *value, int line)
{
    text_entry *grown = grow_array(section->entries, &section->capacity, section->count + 1,
                                   sizeof(*section->entries));
    if (grown == NULL)
        return NULL;
    section->entries = grown;
    text_entry *entry = &section->entries[section->count];
    *entry = (text_entry){.key = strdup(key), .value = strdup(value), .line = line};
    if (entry->key == NULL || entry->value == NULL) {
        free(entry->key);
        free(entry->value);
        return NULL;
    }
    section->count++;
    return entry;
}

void mc_config_free(mc_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->count; i++) {
        text_section *section = &cfg->sections[i];
        for (size_t j = 0; j < section->count; j++) {
            free(section->entries[j].key);
            free(section->entries[j].value);
        }
        free(section->entries);
        free(section->name);
    }
    free(cfg->sections);
    free(cfg->file);
    free(cfg);
}

const char *mc_config_file(const mc_config *cfg)
{
    return cfg != NULL ? cfg->file : NULL;
}

size_t mc_config_section_count(const mc_config *cfg)
{
    return cfg != NULL ? cfg->count : 0;
}

const char *mc_config_section_name(const mc_config *cfg, size_t index)
{
    return cfg != NULL && index < cfg->count ? cfg->sections[index].name : NULL;
}

/* ---- reading the file --------------------------------------------------------------------- */

typedef struct parse_state {
    mc_config *cfg;
    FILE *fp;
    char *buf;
    size_t buf_size;
    int line;
    char *leads; /* first visible character of each line, to explain syntax errors */
    size_t leads_capacity;
    const char *last_key; /* what inih would continue with an indented line */
    int err;              /* the first error found by the reader or the handler */
    int err_line;
} parse_state;

static int parse_fail(parse_state *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps the first error only: the reader stops after it, inih may not. */
static int parse_fail(parse_state *st, int code, const char *fmt, ...)
{
    if (st->err != 0)
        return st->err;
    char message[PROBLEM_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    st->err = code;
    st->err_line = st->line;
    return mc_error_set(code, "%s:%d: %s", st->cfg->file, st->line, message);
}

static int record_lead(parse_state *st, char lead)
{
    char *grown = grow_array(st->leads, &st->leads_capacity, (size_t)st->line, 1);
    if (grown == NULL)
        return parse_fail(st, MC_ENOMEM, "out of memory");
    st->leads = grown;
    st->leads[st->line - 1] = lead;
    return 0;
}

static int enter_section(parse_state *st, const char *header)
{
    const char *close = strchr(header + 1, ']');
    if (close == NULL)
        return 0; /* inih reports it as a syntax error */
    char *name = strndup(header + 1, (size_t)(close - header - 1));
    if (name == NULL)
        return parse_fail(st, MC_ENOMEM, "out of memory");
    int rc = 0;
    if (!is_valid_name(name))
        rc = parse_fail(st, MC_ECONFIG,
                        "section name '%s' is not valid: use a-z, 0-9 and '_', starting with "
                        "a letter",
                        name);
    else if (find_or_add_section(st->cfg, name) == NULL)
        rc = parse_fail(st, MC_ENOMEM, "out of memory");
    free(name);
    st->last_key = NULL;
    return rc;
}

static int indented_line(parse_state *st)
{
    if (st->last_key == NULL)
        return parse_fail(st, MC_ECONFIG, "indented line: remove the leading white space");
    return parse_fail(st, MC_ECONFIG,
                      "indented line: remove the leading white space (inih would read it as a "
                      "continuation of '%s')",
                      st->last_key);
}

/* Rejects what Debian's inih would silently misread; num is inih's line buffer size. */
static int check_line(parse_state *st, size_t length, int num)
{
    const char *text = st->buf;
    if (memchr(text, '\0', length) != NULL)
        return parse_fail(st, MC_ECONFIG, "line holds a NUL byte");
    /* inih needs room for the newline and the terminating NUL. */
    if (length + 2 > (size_t)num)
        return parse_fail(st, MC_ECONFIG,
                          "line is too long (%zu characters; inih reads at most %d per line)",
                          length, num - 2);
    if (st->line == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
        text += 3;
    const char *visible = text;
    while (*visible == ' ' || *visible == '\t' || *visible == '\f' || *visible == '\v')
        visible++;
    if (record_lead(st, *visible) != 0)
        return st->err;
    bool comment_or_blank = *visible == '\0' || *visible == ';' || *visible == '#';
    if (visible != text && !comment_or_blank)
        return indented_line(st);
    return *visible == '[' ? enter_section(st, visible) : 0;
}

/* The ini_reader: hands inih exactly one checked line of the file per call. */
static char *read_line(char *str, int num, void *stream)
{
    parse_state *st = stream;
    if (st->err != 0)
        return NULL;
    errno = 0;
    ssize_t n = getline(&st->buf, &st->buf_size, st->fp);
    if (n < 0) {
        int error = errno;
        if (!feof(st->fp)) {
            st->err = MC_ENOENT;
            st->err_line = st->line + 1;
            mc_error_set(MC_ENOENT, "cannot read config '%s': %s", st->cfg->file, strerror(error));
        }
        return NULL;
    }
    st->line++;
    size_t length = (size_t)n;
    while (length > 0 && (st->buf[length - 1] == '\n' || st->buf[length - 1] == '\r'))
        length--;
    if (check_line(st, length, num) != 0)
        return NULL;
    memcpy(str, st->buf, length);
    str[length] = '\n';
    str[length + 1] = '\0';
    return str;
}

/* The ini_handler: stores one key of one section. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
    parse_state *st = user;
    if (section[0] == '\0') {
        parse_fail(st, MC_ECONFIG, "key '%s' is outside any section: put a [section] line above it",
                   name);
        return 0;
    }
    if (name[0] == '\0') {
        parse_fail(st, MC_ECONFIG, "[%s] a key name is missing before '='", section);
        return 0;
    }
    text_section *sec = find_or_add_section(st->cfg, section);
    if (sec == NULL) {
        parse_fail(st, MC_ENOMEM, "out of memory");
        return 0;
    }
    const text_entry *previous = find_entry(sec, name);
    if (previous != NULL) {
        parse_fail(st, MC_ECONFIG, "[%s] key '%s' is set twice (lines %d and %d)", section, name,
                   previous->line, st->line);
        return 0;
    }
    text_entry *entry = add_entry(sec, name, value != NULL ? value : "", st->line);
    if (entry == NULL) {
        parse_fail(st, MC_ENOMEM, "out of memory");
        return 0;
    }
    st->last_key = entry->key;
    return 1;
}

static int syntax_error(const parse_state *st, int line)
{
    bool header = line <= st->line && st->leads != NULL && st->leads[line - 1] == '[';
    return mc_error_set(MC_ECONFIG, "%s:%d: syntax error: %s", st->cfg->file, line,
                        header ? "section header without a closing ']'"
                               : "expected 'key = value', '[section]' or a comment");
}

/* Reports the earliest problem: inih's syntax errors or the reader's and handler's own. */
static int finish_parse(const parse_state *st, int rc)
{
    if (rc == -2)
        return mc_error_set(MC_ENOMEM, "out of memory reading config '%s'", st->cfg->file);
    if (rc < 0)
        return mc_error_set(MC_EINTERNAL, "inih failed on '%s' (%d)", st->cfg->file, rc);
    if (rc > 0 && (st->err == 0 || rc < st->err_line))
        return syntax_error(st, rc);
    return st->err;
}

static int parse_file(mc_config *cfg, FILE *fp)
{
    parse_state st = {.cfg = cfg, .fp = fp};
    int rc = ini_parse_stream(read_line, &st, on_key, &st);
    rc = finish_parse(&st, rc);
    free(st.buf);
    free(st.leads);
    return rc;
}

static int read_file(mc_config *cfg, const char *path)
{
    cfg->file = strdup(path);
    if (cfg->file == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory");
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return mc_error_set(MC_ENOENT, "cannot open config '%s': %s", path, strerror(errno));
    int rc = parse_file(cfg, fp);
    fclose(fp);
    return rc;
}

int mc_config_load(const char *path, mc_config **out)
{
    if (out == NULL)
        return mc_error_set(MC_EINVAL, "mc_config_load: out is NULL");
    *out = NULL;
    if (path == NULL)
        path = getenv("MEMCAST_CONFIG");
    if (path != NULL && path[0] == '\0')
        path = NULL;
    mc_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory");
    int rc = path != NULL ? read_file(cfg, path) : 0;
    if (rc == 0) {
        /* Bound now so that a misspelt framework key stops the load itself. */
        mc_config_section *framework = NULL;
        rc = mc_config_section_bind(cfg, FRAMEWORK_SECTION, mc_framework_schema, &framework);
        mc_config_section_free(framework);
    }
    if (rc != 0) {
        mc_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

/* ---- binding ------------------------------------------------------------------------------ */

typedef struct bind_ctx {
    const mc_config *cfg;
    const char *section;
    const text_section *text; /* NULL when the file has no such section */
    const mc_config_key *keys[SCHEMA_MAX_KEYS + 2];
    const char *names[SCHEMA_MAX_KEYS + 2];
    size_t count;
} bind_ctx;

static void add_key(bind_ctx *ctx, const mc_config_key *key)
{
    for (size_t i = 0; i < ctx->count; i++) {
        if (strcmp(ctx->names[i], key->name) == 0)
            return;
    }
    ctx->keys[ctx->count] = key;
    ctx->names[ctx->count] = key->name;
    ctx->count++;
}

static void collect_keys(bind_ctx *ctx, const mc_config_key *schema)
{
    for (size_t i = 0; schema != NULL && schema[i].name != NULL; i++)
        add_key(ctx, &schema[i]);
    if (strcmp(ctx->section, FRAMEWORK_SECTION) == 0)
        return;
    for (const mc_config_key *key = mc_plugin_reserved_schema; key->name != NULL; key++)
        add_key(ctx, key);
}

static const mc_config_key *find_key(const bind_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->count; i++) {
        if (strcmp(ctx->names[i], name) == 0)
            return ctx->keys[i];
    }
    return NULL;
}

static int unknown_key(const bind_ctx *ctx, const char *where, const char *key)
{
    const char *suggestion = mc_suggest(key, ctx->names, ctx->count);
    if (suggestion != NULL)
        return mc_error_set(MC_ECONFIG, "%s: [%s] unknown key '%s' (did you mean '%s'?)", where,
                            ctx->section, key, suggestion);
    return mc_error_set(MC_ECONFIG, "%s: [%s] unknown key '%s'", where, ctx->section, key);
}

static int check_file_keys(const bind_ctx *ctx)
{
    for (size_t i = 0; ctx->text != NULL && i < ctx->text->count; i++) {
        const text_entry *entry = &ctx->text->entries[i];
        if (find_key(ctx, entry->key) != NULL)
            continue;
        char where[WHERE_MAX];
        snprintf(where, sizeof(where), "%s:%d", ctx->cfg->file, entry->line);
        return unknown_key(ctx, where, entry->key);
    }
    return 0;
}

/* "MEMCAST_" + upper(section) + "_" + upper(key); key may be NULL for the prefix alone. */
static char *env_name(const char *section, const char *key)
{
    size_t length = strlen(ENV_PREFIX) + strlen(section) + 1 + (key ? strlen(key) : 0);
    char *name = malloc(length + 1);
    if (name == NULL)
        return NULL;
    snprintf(name, length + 1, "%s%s_%s", ENV_PREFIX, section, key ? key : "");
    for (char *p = name + strlen(ENV_PREFIX); *p != '\0'; p++)
        *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    return name;
}

static bool is_global_variable(const char *name, size_t length)
{
    for (size_t i = 0; i < sizeof(global_variables) / sizeof(global_variables[0]); i++) {
        if (strlen(global_variables[i]) == length &&
            strncmp(global_variables[i], name, length) == 0)
            return true;
    }
    return false;
}

/* MEMCAST_FOO_BAR_X belongs to [foo_bar], not to [foo], when the file has both. */
static bool belongs_to_longer_section(const bind_ctx *ctx, const char *variable, size_t length)
{
    size_t own = strlen(ctx->section);
    for (size_t i = 0; ctx->cfg != NULL && i < ctx->cfg->count; i++) {
        const char *other = ctx->cfg->sections[i].name;
        if (strlen(other) <= own || strncmp(other, ctx->section, own) != 0)
            continue;
        char *prefix = env_name(other, NULL);
        bool match = prefix != NULL && strlen(prefix) < length &&
                     strncmp(variable, prefix, strlen(prefix)) == 0;
        free(prefix);
        if (match)
            return true;
    }
    return false;
}

static bool is_claimed_variable(const bind_ctx *ctx, const char *variable, size_t length,
                                size_t prefix_length)
{
    if (is_global_variable(variable, length) || belongs_to_longer_section(ctx, variable, length))
        return true;
    for (size_t i = 0; i < ctx->count; i++) {
        const char *key = ctx->names[i];
        if (strlen(key) != length - prefix_length)
            continue;
        size_t j = 0;
        while (j < strlen(key) && toupper((unsigned char)key[j]) == variable[prefix_length + j])
            j++;
        if (j == strlen(key))
            return true;
    }
    return false;
}

static int unknown_variable(const bind_ctx *ctx, const char *variable, size_t length,
                            size_t prefix_length)
{
    char where[WHERE_MAX];
    char key[SUGGEST_MAX_LEN + 1];
    snprintf(where, sizeof(where), "environment %.*s", (int)length, variable);
    size_t key_length = length - prefix_length;
    if (key_length > SUGGEST_MAX_LEN)
        key_length = SUGGEST_MAX_LEN;
    for (size_t i = 0; i < key_length; i++)
        key[i] = (char)tolower((unsigned char)variable[prefix_length + i]);
    key[key_length] = '\0';
    return unknown_key(ctx, where, key);
}

static int check_env_keys(const bind_ctx *ctx)
{
    char *prefix = env_name(ctx->section, NULL);
    if (prefix == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory");
    size_t prefix_length = strlen(prefix);
    int rc = 0;
    for (char **env = environ; rc == 0 && env != NULL && *env != NULL; env++) {
        const char *equals = strchr(*env, '=');
        if (equals == NULL || strncmp(*env, prefix, prefix_length) != 0)
            continue;
        size_t length = (size_t)(equals - *env);
        if (!is_claimed_variable(ctx, *env, length, prefix_length))
            rc = unknown_variable(ctx, *env, length, prefix_length);
    }
    free(prefix);
    return rc;
}

static void format_where(const bound_value *value, char *buf, size_t size)
{
    switch (value->source) {
    case MC_SRC_FILE:
        snprintf(buf, size, "%s:%d", value->origin, value->line);
        return;
    case MC_SRC_ENV:
        snprintf(buf, size, "environment %s", value->origin);
        return;
    case MC_SRC_DEFAULT:
        break;
    }
    snprintf(buf, size, "default");
}

/* Picks the effective text of key: environment, then file, then default. */
static int choose_text(const bind_ctx *ctx, const mc_config_key *key, bound_value *value)
{
    char *variable = env_name(ctx->section, key->name);
    if (variable == NULL)
        return MC_ENOMEM;
    const char *env = is_global_variable(variable, strlen(variable)) ? NULL : getenv(variable);
    const text_entry *entry = find_entry(ctx->text, key->name);
    if (env != NULL) {
        size_t length;
        const char *start = trim(env, &length);
        value->text = strndup(start, length);
        value->source = MC_SRC_ENV;
        value->origin = variable;
        variable = NULL;
    } else if (entry != NULL) {
        value->text = strdup(entry->value);
        value->source = MC_SRC_FILE;
        value->origin = strdup(ctx->cfg->file);
        value->line = entry->line;
    } else {
        value->text = strdup(key->default_value);
        value->source = MC_SRC_DEFAULT;
    }
    free(variable);
    bool origin_missing = value->source != MC_SRC_DEFAULT && value->origin == NULL;
    return value->text == NULL || origin_missing ? MC_ENOMEM : 0;
}

static int bind_value(const bind_ctx *ctx, const mc_config_key *key, bound_value *value)
{
    value->name = strdup(key->name);
    value->type = key->type;
    if (value->name == NULL || choose_text(ctx, key, value) != 0)
        return mc_error_set(MC_ENOMEM, "out of memory");
    value_problem problem = parse_typed(key, value->text, &value->value);
    if (problem != VALUE_OK) {
        char where[WHERE_MAX], text[PROBLEM_MAX];
        format_where(value, where, sizeof(where));
        describe_problem(text, sizeof(text), key, value->text, problem);
        return mc_error_set(MC_ECONFIG, "%s: [%s] %s", where, ctx->section, text);
    }
    if (key->type == MC_CFG_ENUM) { /* matched ignoring case: keep the schema's spelling */
        free(value->text);
        value->text = strdup(key->enum_values[value->value.i]);
        if (value->text == NULL)
            return mc_error_set(MC_ENOMEM, "out of memory");
    }
    return 0;
}

static const bound_value *find_value(const mc_config_section *sec, const char *key)
{
    for (size_t i = 0; sec != NULL && key != NULL && i < sec->count; i++) {
        if (strcmp(sec->values[i].name, key) == 0)
            return &sec->values[i];
    }
    return NULL;
}

static bool is_valid_domain(const char *domain)
{
    size_t length = strlen(domain);
    if (length == 0 || length > DOMAIN_MAX_LEN)
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)domain[i];
        if (!isalnum(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

static int check_domain(const mc_config_section *sec)
{
    const bound_value *domain = find_value(sec, "domain");
    if (domain == NULL || domain->type != MC_CFG_STRING || is_valid_domain(domain->text))
        return 0;
    char where[WHERE_MAX];
    format_where(domain, where, sizeof(where));
    return mc_error_set(MC_ECONFIG,
                        "%s: [%s] key 'domain': '%s' is not a valid domain (expected 1 to %d "
                        "characters from A-Z, a-z, 0-9, '_' and '-')",
                        where, sec->name, domain->text, DOMAIN_MAX_LEN);
}

static int bind_values(const bind_ctx *ctx, mc_config_section *sec)
{
    sec->values = calloc(ctx->count ? ctx->count : 1, sizeof(*sec->values));
    if (sec->values == NULL)
        return mc_error_set(MC_ENOMEM, "out of memory");
    for (size_t i = 0; i < ctx->count; i++) {
        sec->count = i + 1; /* so that a failure frees what this value got */
        int rc = bind_value(ctx, ctx->keys[i], &sec->values[i]);
        if (rc != 0)
            return rc;
    }
    return strcmp(sec->name, FRAMEWORK_SECTION) == 0 ? check_domain(sec) : 0;
}

int mc_config_section_bind(const mc_config *cfg, const char *section, const mc_config_key *schema,
                           mc_config_section **out)
{
    if (out == NULL || section == NULL)
        return mc_error_set(MC_EINVAL, "mc_config_section_bind: section or out is NULL");
    *out = NULL;
    int rc = mc_config_schema_check(schema, sizeof(mc_config_key));
    if (rc != 0)
        return rc;
    bind_ctx ctx = {.cfg = cfg, .section = section, .text = find_text_section(cfg, section)};
    collect_keys(&ctx, schema);
    rc = check_file_keys(&ctx);
    if (rc == 0)
        rc = check_env_keys(&ctx);
    if (rc != 0)
        return rc;
    mc_config_section *sec = calloc(1, sizeof(*sec));
    if (sec == NULL || (sec->name = strdup(section)) == NULL) {
        free(sec);
        return mc_error_set(MC_ENOMEM, "out of memory");
    }
    rc = bind_values(&ctx, sec);
    if (rc != 0) {
        mc_config_section_free(sec);
        return rc;
    }
    *out = sec;
    return 0;
}

void mc_config_section_free(mc_config_section *sec)
{
    if (sec == NULL)
        return;
    for (size_t i = 0; i < sec->count; i++) {
        free(sec->values[i].name);
        free(sec->values[i].text);
        free(sec->values[i].origin);
    }
    free(sec->values);
    free(sec->name);
    free(sec);
}

const char *mc_config_raw(const mc_config *cfg, const char *section, const char *key)
{
    if (section == NULL || key == NULL)
        return NULL;
    char *variable = env_name(section, key);
    const char *env = NULL;
    if (variable != NULL && !is_global_variable(variable, strlen(variable)))
        env = getenv(variable);
    free(variable);
    if (env != NULL)
        return env;
    const text_entry *entry = find_entry(find_text_section(cfg, section), key);
    return entry != NULL ? entry->value : NULL;
}

/* ---- getters ------------------------------------------------------------------------------ */

static int find_typed(const mc_config_section *sec, const char *key, mc_config_type type,
                      const bound_value **out)
{
    if (sec == NULL || key == NULL)
        return mc_error_set(MC_EINVAL, "config getter: section or key is NULL");
    const bound_value *value = find_value(sec, key);
    if (value == NULL)
        return mc_error_set(MC_ENOENT, "[%s] has no key '%s'", sec->name, key);
    if (value->type != type)
        return mc_error_set(MC_EINVAL, "[%s] key '%s' is of type %s, not %s", sec->name, key,
                            type_name(value->type), type_name(type));
    *out = value;
    return 0;
}

int mc_config_get_bool(const mc_config_section *sec, const char *key, bool *out)
{
    const bound_value *value = NULL;
    int rc = find_typed(sec, key, MC_CFG_BOOL, &value);
    if (rc == 0 && out != NULL)
        *out = value->value.b;
    return rc;
}

int mc_config_get_int(const mc_config_section *sec, const char *key, int64_t *out)
{
    const bound_value *value = NULL;
    int rc = find_typed(sec, key, MC_CFG_INT, &value);
    if (rc == 0 && out != NULL)
        *out = value->value.i;
    return rc;
}

int mc_config_get_size(const mc_config_section *sec, const char *key, uint64_t *out)
{
    const bound_value *value = NULL;
    int rc = find_typed(sec, key, MC_CFG_SIZE, &value);
    if (rc == 0 && out != NULL)
        *out = value->value.u;
    return rc;
}

int mc_config_get_duration_ms(const mc_config_section *sec, const char *key, int64_t *out)
{
    const bound_value *value = NULL;
    int rc = find_typed(sec, key, MC_CFG_DURATION, &value);
    if (rc == 0 && out != NULL)
        *out = value->value.i;
    return rc;
}

int mc_config_get_enum(const mc_config_section *sec, const char *key, int *index)
{
    const bound_value *value = NULL;
    int rc = find_typed(sec, key, MC_CFG_ENUM, &value);
    if (rc == 0 && index != NULL)
        *index = (int)value->value.i;
    return rc;
}

int mc_config_get_string(const mc_config_section *sec, const char *key, const char **out)
{
    const bound_value *value = NULL;
    int rc = find_typed(sec, key, MC_CFG_STRING, &value);
    if (rc == 0 && out != NULL)
        *out = value->text;
    return rc;
}

int mc_config_get_source(const mc_config_section *sec, const char *key, mc_config_source *src,
                         const char **file, int *line)
{
    const bound_value *value = find_value(sec, key);
    if (value == NULL)
        return mc_error_set(MC_ENOENT, "[%s] has no key '%s'", sec ? sec->name : "?",
                            key ? key : "(null)");
    if (src != NULL)
        *src = value->source;
    if (file != NULL)
        *file = value->origin;
    if (line != NULL)
        *line = value->line;
    return 0;
}

const char *mc_config_get_text(const mc_config_section *sec, const char *key)
{
    const bound_value *value = find_value(sec, key);
    return value != NULL ? value->text : NULL;
}
