/*
 * Names, creation, opening and reaping of the shm transport's files in /dev/shm.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <memcast/memcast.h>

#include "segment.h"

/* ---- process identity ------------------------------------------------------------------- */

/* Field 3 (state) and field 22 (start time) of /proc/PID/stat. The command name (field
 * 2) may hold spaces and ')', so counting starts after the last ')'. False when the file
 * cannot be read. */
static bool read_stat(const char *path, char *state, uint64_t *start_time)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ')
        return false;
    p += 2;
    *state = *p;
    /* skip fields 3 to 21 */
    for (int field = 3; field < 22; field++) {
        while (*p != ' ' && *p != '\0')
            p++;
        while (*p == ' ')
            p++;
    }
    *start_time = strtoull(p, NULL, 10);
    return true;
}

static uint64_t start_time_from_stat(const char *path)
{
    char state;
    uint64_t start_time = 0;
    return read_stat(path, &state, &start_time) ? start_time : 0;
}

uint64_t mc_shm_self_start_time(void)
{
    /* per thread, and asked again in a forked child, whose start time differs */
    static _Thread_local pid_t cached_pid;
    static _Thread_local uint64_t cached_value;
    pid_t me = getpid();
    if (cached_pid != me) {
        cached_value = start_time_from_stat("/proc/self/stat");
        cached_pid = me;
    }
    return cached_value;
}

bool mc_shm_owner_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return false;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char state = '?';
    uint64_t now = 0;
    if (!read_stat(path, &state, &now))
        return true; /* /proc does not tell (hidepid): do not call it dead on that */
    if (state == 'Z' || state == 'X')
        return false; /* killed, not yet waited for by its parent */
    return start_time == 0 || now == start_time;
}

/* ---- names -------------------------------------------------------------------------------- */

uint32_t mc_shm_domain_hash(const char *domain)
{
    uint32_t h = 0x811c9dc5u;
    for (const unsigned char *p = (const unsigned char *)(domain ? domain : ""); *p; p++) {
        h ^= *p;
        h *= 0x01000193u;
    }
    return h;
}

/* Topics are [A-Za-z0-9_.-/]; '/' becomes '+' so that a name never holds a second '/'.
 * Anything else (never produced by the framework) becomes '_' all the same. */
static void topic_sanitise(char *out, size_t keep, const char *topic)
{
    size_t i = 0;
    for (; i < keep && topic[i] != '\0'; i++) {
        char c = topic[i];
        bool plain = isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
        out[i] = c == '/' ? '+' : plain ? c : '_';
    }
    out[i] = '\0';
}

int mc_shm_segment_base(char *out, size_t size, size_t name_budget, uint32_t domain_hash,
                        const char *topic, pid_t pid, uint64_t start_time, uint32_t context,
                        uint64_t serial)
{
    char tail[96];
    int tail_len = snprintf(tail, sizeof(tail), "-%d-%" PRIu64 "-%08x-%" PRIu64, (int)pid,
                            start_time, context, serial);
    /* "/mc-" + 8 hex + "-" + topic + tail + "-g0" must fit the budget */
    size_t fixed = 4 + 8 + 1 + (size_t)tail_len + 3;
    if (fixed + 1 > name_budget || name_budget > size)
        return -1;
    size_t keep = name_budget - fixed;
    if (keep > MC_SHM_TOPIC_MAX)
        keep = MC_SHM_TOPIC_MAX;
    char topic_part[MC_SHM_TOPIC_MAX + 1];
    topic_sanitise(topic_part, keep, topic ? topic : "");
    if (topic_part[0] == '\0')
        snprintf(topic_part, sizeof(topic_part), "_");
    int n = snprintf(out, size, "/mc-%08x-%s%s", domain_hash, topic_part, tail);
    return n > 0 && (size_t)n < size ? n : -1;
}

int mc_shm_segment_name(char *out, size_t size, const char *base, uint32_t generation)
{
    int n = snprintf(out, size, "%s-g%u", base, generation);
    return n > 0 && (size_t)n < size && n <= MC_SHM_NAME_MAX ? n : -1;
}

int mc_shm_bell_name(char *out, size_t size, uint32_t domain_hash, pid_t pid, uint64_t start_time,
                     uint32_t context, uint32_t instance)
{
    int n = snprintf(out, size, "/mc-%08x-%d-%" PRIu64 "-%08x-%u-bell", domain_hash, (int)pid,
                     start_time, context, instance);
    return n > 0 && (size_t)n < size ? n : -1;
}

static bool all_digits(const char *s, size_t len)
{
    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool all_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

static bool name_chars_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == '+'))
            return false;
    }
    return true;
}

/* Splits off the last '-'-separated field of s[0, *len): points *field at it, sets
 * *field_len and shortens *len to what precedes the '-'. */
static bool take_last_field(const char *s, size_t *len, const char **field, size_t *field_len)
{
    size_t i = *len;
    while (i > 0 && s[i - 1] != '-')
        i--;
    if (i == 0)
        return false;
    *field = s + i;
    *field_len = *len - i;
    *len = i - 1;
    return true;
}

static uint64_t parse_u64(const char *s, size_t len, int base)
{
    char buf[24];
    memcpy(buf, s, len);
    buf[len] = '\0';
    return strtoull(buf, NULL, base);
}

/* The fields common to both kinds: ...-<pid>-<start>-<context>-<number>, read from the
 * right; *len is left at what precedes them. */
static bool parse_owner_fields(const char *s, size_t *len, mc_shm_name_info *info)
{
    const char *f;
    size_t fl;
    if (!take_last_field(s, len, &f, &fl) || !all_digits(f, fl))
        return false;
    info->number = parse_u64(f, fl, 10);
    if (!take_last_field(s, len, &f, &fl) || fl != 8 || !all_hex(f, fl))
        return false;
    info->context = (uint32_t)parse_u64(f, fl, 16);
    if (!take_last_field(s, len, &f, &fl) || !all_digits(f, fl))
        return false;
    info->start_time = parse_u64(f, fl, 10);
    if (!take_last_field(s, len, &f, &fl) || !all_digits(f, fl) || fl > 10)
        return false;
    uint64_t pid = parse_u64(f, fl, 10);
    if (pid == 0 || pid > INT32_MAX)
        return false;
    info->pid = (pid_t)pid;
    return true;
}

bool mc_shm_name_parse(const char *name, mc_shm_name_info *info)
{
    memset(info, 0, sizeof(*info));
    const char *s = name[0] == '/' ? name + 1 : name;
    size_t len = strnlen(s, MC_SHM_NAME_MAX + 1);
    if (len > MC_SHM_NAME_MAX - 1 || len < 16 || strncmp(s, "mc-", 3) != 0 ||
        !name_chars_ok(s, len) || !all_hex(s + 3, 8))
        return false;
    info->domain_hash = (uint32_t)parse_u64(s + 3, 8, 16);
    size_t rest = len;
    const char *tail;
    size_t tail_len;
    if (!take_last_field(s, &rest, &tail, &tail_len))
        return false;
    if (tail_len == 4 && memcmp(tail, "bell", 4) == 0) {
        info->is_bell = true;
    } else if (tail_len >= 2 && tail[0] == 'g' && all_digits(tail + 1, tail_len - 1) &&
               tail_len <= 11) {
        uint64_t gen = parse_u64(tail + 1, tail_len - 1, 10);
        if (gen > UINT32_MAX)
            return false;
        info->generation = (uint32_t)gen;
        info->base_length = rest + (name[0] == '/' ? 1 : 0);
    } else {
        return false;
    }
    if (!parse_owner_fields(s, &rest, info))
        return false;
    /* what is left: "mc-XXXXXXXX" for a bell, "mc-XXXXXXXX-<topic>" for a segment */
    if (info->is_bell)
        return rest == 11;
    return rest > 12 && s[11] == '-';
}

/* ---- files -------------------------------------------------------------------------------- */

static int fail(int code, char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int code, char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return code;
}

static int room_check(const char *name, uint64_t size, char *err, size_t err_size)
{
    struct statvfs vfs;
    if (statvfs(MC_SHM_DIR, &vfs) != 0)
        return fail(MC_ETRANSPORT, err, err_size, "statvfs %s: %s", MC_SHM_DIR, strerror(errno));
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (size > free_bytes)
        return fail(MC_ENOSPC, err, err_size,
                    "shared memory segment %s needs %" PRIu64 " bytes but %s has only %" PRIu64
                    " bytes free (a container's /dev/shm is often 64 MiB: raise it with "
                    "--shm-size, or lower [shm] slots, min_size or max_message_size)",
                    name, size, MC_SHM_DIR, free_bytes);
    return 0;
}

int mc_shm_segment_reserve(int fd, uint64_t offset, uint64_t length, char *err, size_t err_size)
{
    if (length == 0)
        return 0;
    int rc = posix_fallocate(fd, (off_t)offset, (off_t)length);
    if (rc == ENOSPC)
        return fail(MC_ENOSPC, err, err_size,
                    "%s is full: cannot allocate %" PRIu64 " bytes of shared memory", MC_SHM_DIR,
                    length);
    if (rc != 0)
        return fail(MC_ETRANSPORT, err, err_size, "allocating %" PRIu64 " bytes: %s", length,
                    strerror(rc));
    return 0;
}

int mc_shm_segment_create(const char *name, uint64_t size, uint64_t prealloc, unsigned mode,
                          int *fd_out, void **map_out, char *err, size_t err_size)
{
    int rc = room_check(name, size, err, err_size);
    if (rc != 0)
        return rc;
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return fail(errno == EEXIST ? MC_EEXIST : MC_ETRANSPORT, err, err_size, "shm_open %s: %s",
                    name, strerror(errno));
    void *map = MAP_FAILED;
    if (fchmod(fd, (mode_t)mode) != 0)
        rc = fail(MC_ETRANSPORT, err, err_size, "fchmod %s to %04o: %s", name, mode,
                  strerror(errno));
    else if (ftruncate(fd, (off_t)size) != 0)
        rc = fail(errno == ENOSPC ? MC_ENOSPC : MC_ETRANSPORT, err, err_size,
                  "ftruncate %s to %" PRIu64 " bytes: %s", name, size, strerror(errno));
    else
        rc = mc_shm_segment_reserve(fd, 0, prealloc, err, err_size);
    if (rc == 0) {
        map = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            rc = fail(MC_ENOMEM, err, err_size, "mmap %s (%" PRIu64 " bytes): %s", name, size,
                      strerror(errno));
    }
    if (rc != 0) {
        close(fd);
        shm_unlink(name);
        return rc;
    }
    *fd_out = fd;
    *map_out = map;
    return 0;
}

/* ---- owners ------------------------------------------------------------------------------- */

static bool uid_of(const char *user, uid_t *uid)
{
    char *end;
    unsigned long n = strtoul(user, &end, 10);
    if (*user != '\0' && *end == '\0' && n <= (uid_t)-2) {
        *uid = (uid_t)n;
        return true;
    }
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof(buf), &found) != 0 || found == NULL)
        return false;
    *uid = found->pw_uid;
    return true;
}

bool mc_shm_owners_parse(const char *text, mc_shm_owners *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    char user[256];
    for (const char *p = text ? text : ""; *p != '\0';) {
        size_t skip = strspn(p, ", \t"), len = strcspn(p + skip, ", \t");
        p += skip;
        if (len == 0)
            break;
        snprintf(user, sizeof(user), "%.*s", (int)len, p);
        p += len;
        if (strcmp(user, "*") == 0) {
            out->anyone = true;
        } else if (out->count == MC_SHM_TRUSTED_MAX) {
            fail(0, err, err_size, "more than %d users", MC_SHM_TRUSTED_MAX);
            return false;
        } else if (!uid_of(user, &out->uids[out->count++])) {
            fail(0, err, err_size, "no user '%s' on this host", user);
            return false;
        }
    }
    return true;
}

static bool owner_accepted(const mc_shm_owners *owners, uid_t uid)
{
    if (owners == NULL || owners->anyone || uid == geteuid())
        return true;
    for (size_t i = 0; i < owners->count; i++)
        if (owners->uids[i] == uid)
            return true;
    return false;
}

int mc_shm_segment_open(const char *name, const mc_shm_owners *owners, uint64_t min_size,
                        uint64_t max_size, void **map_out, uint64_t *size_out, char *err,
                        size_t err_size)
{
    mc_shm_name_info info;
    if (!mc_shm_name_parse(name, &info) || name[0] != '/')
        return fail(MC_EINVAL, err, err_size, "'%.100s' is not a shm transport name", name);
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return fail(errno == ENOENT ? MC_ENOENT : MC_ETRANSPORT, err, err_size, "shm_open %s: %s",
                    name, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = fail(MC_ETRANSPORT, err, err_size, "fstat %s: %s", name, strerror(errno));
    else if (!owner_accepted(owners, st.st_uid))
        rc = fail(MC_ETRANSPORT, err, err_size,
                  "%s belongs to uid %u, not to this user (uid %u) nor to one [shm] "
                  "trusted_owners names: not opened",
                  name, (unsigned)st.st_uid, (unsigned)geteuid());
    else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < min_size ||
             (uint64_t)st.st_size > max_size)
        rc = fail(MC_EINVAL, err, err_size,
                  "%s is %lld bytes, outside the %" PRIu64 "..%" PRIu64 " a segment may have", name,
                  (long long)st.st_size, min_size, max_size);
    void *map = MAP_FAILED;
    if (rc == 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            rc = fail(MC_ENOMEM, err, err_size, "mmap %s: %s", name, strerror(errno));
    }
    close(fd);
    if (rc != 0)
        return rc;
    *map_out = map;
    *size_out = (uint64_t)st.st_size;
    return 0;
}

/* ---- reaping ------------------------------------------------------------------------------ */

int mc_shm_reap(bool dry_run, void (*report)(const char *name, void *user), void *user)
{
    DIR *dir = opendir(MC_SHM_DIR);
    if (dir == NULL)
        return MC_ETRANSPORT;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        mc_shm_name_info info;
        if (!mc_shm_name_parse(de->d_name, &info))
            continue;
        if (mc_shm_owner_alive(info.pid, info.start_time))
            continue;
        char path[MC_SHM_NAME_MAX + 2];
        snprintf(path, sizeof(path), "/%s", de->d_name);
        if (!dry_run && shm_unlink(path) != 0 && errno != ENOENT)
            continue; /* someone else's file (EPERM): not ours to remove */
        removed++;
        if (report != NULL)
            report(de->d_name, user);
    }
    closedir(dir);
    return removed;
}
