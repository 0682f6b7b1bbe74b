/* Subcommands that live in their own files (see the table in tools/memcast.c). */
#ifndef MEMCAST_TOOLS_CMD_H
#define MEMCAST_TOOLS_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"

int mc_cmd_pub(const cli_command *cmd, cli_global *global, int argc, char **argv);
int mc_cmd_sub(const cli_command *cmd, cli_global *global, int argc, char **argv);
int mc_cmd_bench(const cli_command *cmd, cli_global *global, int argc, char **argv);
int mc_cmd_clean(const cli_command *cmd, cli_global *global, int argc, char **argv);
int mc_cmd_ls(const cli_command *cmd, cli_global *global, int argc, char **argv);

#endif
