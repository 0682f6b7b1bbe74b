/*
 * memcast clean: removes the shared-memory files that processes which died without closing
 * left in /dev/shm (the same reaping every shm context does when it starts).
 */
#include <stdbool.h>
#include <stdio.h>

#include <memcast/memcast.h>

#include "../plugins/shm/segment.h"
#include "cli.h"
#include "cmd.h"

static void print_name(const char *name, void *user)
{
    const bool *dry_run = user;
    printf("%s /dev/shm/%s\n", *dry_run ? "would remove" : "removed", name);
}

int mc_cmd_clean(const cli_command *cmd, cli_global *global, int argc, char **argv)
{
    bool dry_run = false;
    const cli_option opts[] = {{"--dry-run", 'n', &dry_run, NULL}};
    parse_result r = cli_parse_options(cmd, argc, argv, opts, 1, NULL, 0, NULL);
    if (r != PARSE_OK)
        return cli_parse_exit_code(r);
    int count = mc_shm_reap(dry_run, print_name, &dry_run);
    if (count < 0) {
        fprintf(stderr, "memcast clean: cannot read /dev/shm: %s\n", mc_strerror(count));
        return EXIT_FAILED;
    }
    printf("%d file%s of dead processes %s\n", count, count == 1 ? "" : "s",
           dry_run ? "would be removed" : "removed");
    return EXIT_OK;
}
