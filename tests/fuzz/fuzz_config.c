/*
 * libFuzzer target for the configuration reader (framework/config.c over the system inih).
 * Each input is written to a file and loaded as a configuration; every section is then
 * bound to a schema holding one key of each type and every value is read. The same input,
 * as text, goes through each value parser. Properties:
 *  - no read outside any buffer, no undefined behaviour, no leak (ASan, UBSan);
 *  - a refused file or section always comes with a detail (mc_last_error) that is not empty;
 *  - every key of a bound section has an effective text, and a typed read of it succeeds.
 * A broken property traps, which libFuzzer reports as a finding.
 *
 * Built with -DMC_FUZZ_WRITE_SEEDS instead, it is a program that writes configurations
 * (valid ones and near misses) into the directory given as its argument.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "config.h"

#ifndef MC_FUZZ_WRITE_SEEDS

static const char *const colours[] = {"red", "green", "blue", NULL};

static const mc_config_key schema[] = {
    {"flag", MC_CFG_BOOL, "false", "a bool", 0, 0, NULL},
    {"count", MC_CFG_INT, "8", "an int", 2, 1024, NULL},
    {"room", MC_CFG_SIZE, "64K", "a size", 64, INT64_C(1) << 40, NULL},
    {"wait", MC_CFG_DURATION, "1s", "a duration", 0, 3600000, NULL},
    {"colour", MC_CFG_ENUM, "red", "an enum", 0, 0, colours},
    {"name", MC_CFG_STRING, "", "a string", 0, 0, NULL},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static void must(int ok)
{
    if (!ok)
        __builtin_trap();
}

static void refused_with_detail(int rc)
{
    must(rc < 0);
    const char *detail = mc_last_error();
    must(detail != NULL && detail[0] != '\0');
}

static void read_every_key(const mc_config_section *sec)
{
    bool b;
    int64_t i;
    uint64_t u;
    int e;
    const char *s;
    for (const mc_config_key *k = schema; k->name != NULL; k++)
        must(mc_config_get_text(sec, k->name) != NULL);
    must(mc_config_get_bool(sec, "flag", &b) == 0);
    must(mc_config_get_int(sec, "count", &i) == 0 && i >= 2 && i <= 1024);
    must(mc_config_get_size(sec, "room", &u) == 0 && u >= 64);
    must(mc_config_get_duration_ms(sec, "wait", &i) == 0 && i >= 0 && i <= 3600000);
    must(mc_config_get_enum(sec, "colour", &e) == 0 && e >= 0 && e < 3);
    must(mc_config_get_string(sec, "name", &s) == 0 && s != NULL);
}

static void bind_sections(const mc_config *cfg)
{
    for (size_t n = 0; n < mc_config_section_count(cfg); n++) {
        const char *name = mc_config_section_name(cfg, n);
        must(name != NULL);
        if (strcmp(name, "framework") == 0)
            continue;
        mc_config_section *sec = NULL;
        int rc = mc_config_section_bind(cfg, name, schema, &sec);
        if (rc != 0) {
            refused_with_detail(rc);
            continue;
        }
        read_every_key(sec);
        mc_config_section_free(sec);
    }
}

static void parse_as_values(const uint8_t *data, size_t size)
{
    char *text = strndup((const char *)data, size);
    if (text == NULL)
        return;
    bool b;
    int64_t i;
    uint64_t u;
    (void)mc_config_parse_bool(text, &b);
    (void)mc_config_parse_int(text, &i);
    (void)mc_config_parse_size(text, &u);
    if (mc_config_parse_duration_ms(text, &i) == 0)
        must(i >= 0);
    free(text);
}

static char path[64];
static FILE *file;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (file == NULL) {
        snprintf(path, sizeof(path), "/tmp/mc_fuzz_config.%d.ini", (int)getpid());
        file = fopen(path, "w+");
        if (file == NULL)
            return 0;
    }
    if (ftruncate(fileno(file), 0) != 0 || fseek(file, 0, SEEK_SET) != 0 ||
        fwrite(data, 1, size, file) != size || fflush(file) != 0)
        return 0;
    parse_as_values(data, size);
    mc_config *cfg = NULL;
    int rc = mc_config_load(path, &cfg);
    if (rc != 0) {
        refused_with_detail(rc);
        return 0;
    }
    bind_sections(cfg);
    mc_config_free(cfg);
    return 0;
}

#else /* the seed writer */

static const char *const seeds[][2] = {
    {"valid", "[framework]\nplugins = inproc, shm\nlog_level = info\ndomain = lab\n\n"
              "[test]\nflag = yes\ncount = 16\nroom = 1M\nwait = 250ms\ncolour = blue\n"
              "name = camera front\n"},
    {"comments", "; a comment\n# another\n[test]\ncount = 4 ; trailing\n\n[other]\n"},
    {"misspelt", "[test]\ncuont = 4\n"},
    {"duplicate", "[test]\ncount = 4\ncount = 5\n"},
    {"indented", "[test]\ncount = 4\n  room = 2K\n"},
    {"bad_values", "[test]\nflag = maybe\ncount = 1e3\nroom = 12Q\nwait = -1s\ncolour = pink\n"},
    {"no_section", "count = 4\n"},
    {"broken_header", "[test\ncount = 4\n"},
    {"unknown_framework", "[framework]\nplugin = inproc\n"},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        char name[4096];
        snprintf(name, sizeof(name), "%s/%s", argv[1], seeds[i][0]);
        FILE *f = fopen(name, "w");
        if (f == NULL || fputs(seeds[i][1], f) < 0 || fclose(f) != 0) {
            perror(name);
            return 1;
        }
    }
    return 0;
}

#endif
