/*
 * Shared-memory names and files of the shm transport: how they are built, created,
 * opened and reaped. Depends on libc only, so that the `memcast` command can link it for
 * `memcast clean` without the plugin.
 *
 * Names (doc/shm.md, "Names"):
 *   publisher segment  /mc-<domain>-<topic>-<pid>-<start>-<context>-<serial>-g<generation>
 *   subscriber bell    /mc-<domain>-<pid>-<start>-<context>-<instance>-bell
 * domain and context are 8 hex digits, topic is the topic with '/' turned into '+' and
 * cut short, pid and start identify the creating process so that a reaper can tell a
 * dead owner from a live one.
 */
#ifndef MEMCAST_SHM_SEGMENT_H
#define MEMCAST_SHM_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MC_SHM_DIR       "/dev/shm"
#define MC_SHM_NAME_MAX  255 /* NAME_MAX, with the leading '/' */
#define MC_SHM_TOPIC_MAX 40  /* characters of the topic kept in a name */

/* This process's start time in clock ticks since boot (/proc/self/stat field 22), read
 * once; 0 when /proc cannot tell. */
uint64_t mc_shm_self_start_time(void);

/* True unless pid is known dead (gone, or a zombie nobody waited for yet), or runs with
 * another start time (the pid was reused). start_time 0 skips the second check. */
bool mc_shm_owner_alive(pid_t pid, uint64_t start_time);

/* FNV-1a of a domain name: the 8 hex digits that scope every name. */
uint32_t mc_shm_domain_hash(const char *domain);

/* Builds the name of a publisher segment without its "-g<generation>" tail into out
 * (size >= MC_SHM_NAME_MAX + 1), keeping the whole gen-0 name within name_budget bytes
 * by shortening the topic. Returns the length, or -1 when it cannot fit. */
int mc_shm_segment_base(char *out, size_t size, size_t name_budget, uint32_t domain_hash,
                        const char *topic, pid_t pid, uint64_t start_time, uint32_t context,
                        uint64_t serial);

/* base + "-g" + generation. Returns the length, or -1 when it does not fit. */
int mc_shm_segment_name(char *out, size_t size, const char *base, uint32_t generation);

/* The doorbell name of a subscriber instance. */
int mc_shm_bell_name(char *out, size_t size, uint32_t domain_hash, pid_t pid, uint64_t start_time,
                     uint32_t context, uint32_t instance);

/* What a name says about its owner. */
typedef struct mc_shm_name_info {
    bool is_bell;
    uint32_t domain_hash;
    pid_t pid;
    uint64_t start_time;
    uint32_t context;
    uint64_t number;     /* serial (segment) or instance (bell) */
    uint32_t generation; /* segments only */
    size_t base_length;  /* segments: bytes before "-g<generation>" */
} mc_shm_name_info;

/* Parses a name with or without its leading '/'. False for anything that is not exactly
 * a name of this transport (other files in /dev/shm are never touched). */
bool mc_shm_name_parse(const char *name, mc_shm_name_info *info);

/* Creates name (O_EXCL) with exactly mode (fchmod, so the umask cannot change it), sized
 * size, after checking that /dev/shm has room; prealloc bytes from the start are
 * allocated now so that writing them can never raise SIGBUS. Maps it read-write. On
 * failure returns a negative mc_err, removes what it created and writes why into err. */
int mc_shm_segment_create(const char *name, uint64_t size, uint64_t prealloc, unsigned mode,
                          int *fd, void **map, char *err, size_t err_size);

/* Whose files a process accepts: its own effective user's always, plus these users, or
 * anyone. A file of another user could hold anything that user chose to write. */
#define MC_SHM_TRUSTED_MAX 16
typedef struct mc_shm_owners {
    bool anyone;
    size_t count;
    uid_t uids[MC_SHM_TRUSTED_MAX];
} mc_shm_owners;

/* Parses "" (nobody else), "*" (anyone) or a comma- or space-separated list of user names
 * and numeric uids. False, with a sentence in err, for an unknown user or too many. */
bool mc_shm_owners_parse(const char *text, mc_shm_owners *out, char *err, size_t err_size);

/* Opens an existing segment of this transport read-write, checks that its owner is one
 * owners accepts (NULL: anyone) and that the file is between min_size and max_size bytes,
 * maps it all and closes the descriptor. */
int mc_shm_segment_open(const char *name, const mc_shm_owners *owners, uint64_t min_size,
                        uint64_t max_size, void **map, uint64_t *size, char *err, size_t err_size);

/* Allocates [offset, offset+length) of fd's file now (tmpfs pages), so that a later write
 * fails here with ENOSPC rather than with SIGBUS. */
int mc_shm_segment_reserve(int fd, uint64_t offset, uint64_t length, char *err, size_t err_size);

/* Removes from /dev/shm every name of this transport whose owner is dead (its pid is gone
 * or runs with another start time). report, when not NULL, is called with each name
 * (without the leading '/'); dry_run reports without removing. Returns how many names
 * were (or would be) removed, or a negative mc_err when /dev/shm cannot be read. */
int mc_shm_reap(bool dry_run, void (*report)(const char *name, void *user), void *user);

#endif
