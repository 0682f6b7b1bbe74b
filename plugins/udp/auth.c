/*
 * Shared-key authentication of udp datagrams (auth.h). The rules on the key file are the
 * ones ssh applies to a private key: a secret others could read or replace is no secret,
 * so such a file is refused rather than used with a warning.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <memcast/memcast.h>

#include "auth.h"

/* Changing it changes every key: contexts of different versions then do not verify. */
static const char key_context[] = "memcast udp auth key v1";

static int refuse(char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(char *why, size_t why_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
    return MC_ECONFIG;
}

/* Refuses what someone else could read or replace, and what is not a plain file (a FIFO
 * or a device would not hold a fixed secret). Checked on the open descriptor, so the file
 * checked is the file read. */
static int check_file(int fd, const char *path, char *why, size_t why_size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return refuse(why, why_size, "key file '%s': cannot stat it: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return refuse(why, why_size, "key file '%s': not a regular file", path);
    if (st.st_uid != geteuid())
        return refuse(why, why_size,
                      "key file '%s': owned by uid %u, not by this process's uid %u (chown it)",
                      path, (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 077) != 0)
        return refuse(why, why_size,
                      "key file '%s': mode %04o gives group or others access (chmod 600 it)", path,
                      (unsigned)(st.st_mode & 07777));
    return 0;
}

/* Feeds the whole file to the hash; returns 0 or the errno of a failed read. */
static int hash_secret(int fd, crypto_generichash_state *state, size_t *total)
{
    unsigned char chunk[4096];
    int err = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : 0;
            break;
        }
        crypto_generichash_update(state, chunk, (unsigned long long)n);
        *total += (size_t)n;
    }
    sodium_memzero(chunk, sizeof(chunk));
    return err;
}

/* The domain goes in with its length first, so that no domain and secret pair can be
 * read as another. */
static void hash_context(crypto_generichash_state *state, const char *domain)
{
    size_t len = strlen(domain);
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (unsigned char)((uint64_t)len >> (8 * i));
    crypto_generichash_init(state, NULL, 0, MC_UDP_AUTH_KEY_SIZE);
    crypto_generichash_update(state, (const unsigned char *)key_context, sizeof(key_context));
    crypto_generichash_update(state, len_le, sizeof(len_le));
    crypto_generichash_update(state, (const unsigned char *)domain, len);
}

static int derive_key(mc_udp_auth *auth, int fd, const char *path, const char *domain, char *why,
                      size_t why_size)
{
    crypto_generichash_state state;
    size_t total = 0;
    hash_context(&state, domain);
    int err = hash_secret(fd, &state, &total);
    crypto_generichash_final(&state, auth->key, sizeof(auth->key));
    sodium_memzero(&state, sizeof(state));
    if (err != 0)
        return refuse(why, why_size, "key file '%s': cannot read it: %s", path, strerror(err));
    if (total < MC_UDP_AUTH_SECRET_MIN)
        return refuse(why, why_size,
                      "key file '%s': holds %zu bytes, at least %d expected (make one with: "
                      "head -c 32 /dev/urandom > FILE; chmod 600 FILE)",
                      path, total, MC_UDP_AUTH_SECRET_MIN);
    return 0;
}

int mc_udp_auth_load(mc_udp_auth *auth, const char *path, const char *domain, char *why,
                     size_t why_size)
{
    memset(auth, 0, sizeof(*auth));
    if (path == NULL || path[0] == '\0')
        return 0;
    if (sodium_init() < 0) {
        snprintf(why, why_size, "libsodium failed to initialise");
        return MC_ETRANSPORT;
    }
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused as not a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return refuse(why, why_size, "key file '%s': cannot open it: %s", path, strerror(errno));
    int rc = check_file(fd, path, why, why_size);
    if (rc == 0)
        rc = derive_key(auth, fd, path, domain != NULL ? domain : "", why, why_size);
    close(fd);
    if (rc != 0)
        mc_udp_auth_clear(auth);
    else
        auth->on = true;
    return rc;
}

void mc_udp_auth_clear(mc_udp_auth *auth)
{
    sodium_memzero(auth->key, sizeof(auth->key));
    auth->on = false;
}

size_t mc_udp_auth_trailer(const mc_udp_auth *auth)
{
    return auth->on ? MC_UDP_AUTH_TAG_SIZE : 0;
}

void mc_udp_auth_tag(const mc_udp_auth *auth, const void *head, size_t head_len, const void *body,
                     size_t body_len, uint8_t tag[MC_UDP_AUTH_TAG_SIZE])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, auth->key, sizeof(auth->key), MC_UDP_AUTH_TAG_SIZE);
    if (head_len > 0)
        crypto_generichash_update(&state, head, head_len);
    if (body_len > 0)
        crypto_generichash_update(&state, body, body_len);
    crypto_generichash_final(&state, tag, MC_UDP_AUTH_TAG_SIZE);
}

bool mc_udp_auth_verify(const mc_udp_auth *auth, const void *datagram, size_t len)
{
    if (len < MC_UDP_AUTH_TAG_SIZE)
        return false;
    size_t covered = len - MC_UDP_AUTH_TAG_SIZE;
    uint8_t expected[MC_UDP_AUTH_TAG_SIZE];
    mc_udp_auth_tag(auth, datagram, covered, NULL, 0, expected);
    return crypto_verify_16(expected, (const uint8_t *)datagram + covered) == 0;
}
