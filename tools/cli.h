/* Shared by the memcast command's subcommands (tools/memcast.c and tools/cmd_*.c). */
#ifndef MEMCAST_TOOLS_CLI_H
#define MEMCAST_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

typedef struct cli_global {
    const char *config_path; /* -c FILE, or NULL for $MEMCAST_CONFIG / built-in defaults */
} cli_global;

typedef struct cli_command {
    const char *name;
    const char *summary;
    const char *usage;
    const char *help; /* options and details, printed after the usage line */
    int (*run)(const struct cli_command *cmd, cli_global *global, int argc, char **argv);
} cli_command;

/* One option of a subcommand: a flag (sets *flag) or one that takes a value (*value). */
typedef struct cli_option {
    const char *long_name; /* "--json" */
    char short_name;       /* 'c', or 0 */
    bool *flag;
    const char **value;
} cli_option;

typedef enum parse_result { PARSE_OK, PARSE_HELP, PARSE_USAGE } parse_result;

/* Parses the arguments after the subcommand name; --help prints the command's help.
 * Positional arguments land in positional[] (at most max_positional). */
parse_result cli_parse_options(const cli_command *cmd, int argc, char **argv,
                               const cli_option *opts, size_t nopts, const char **positional,
                               size_t max_positional, size_t *npositional);

/* A byte count: digits, optionally followed by K, M or G (KiB, MiB, GiB; either case). */
bool cli_parse_size(const char *text, unsigned long long *out);

/* The exit status for a parse result other than PARSE_OK. */
int cli_parse_exit_code(parse_result r);

#endif
