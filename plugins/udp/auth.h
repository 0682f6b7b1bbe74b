/*
 * Optional shared-key authentication of the udp plugin's datagrams ([udp] auth_key_file,
 * doc/security.md). Every registration and data datagram then ends in a 16-byte tag:
 * keyed BLAKE2b (libsodium's crypto_generichash) of everything before it. A receiver
 * checks the tag before it parses a single byte and drops what does not verify.
 *
 * The MAC key is not the file's content but a BLAKE2b hash of a fixed context string, the
 * domain and the file's content: a secret of any length gives a full-strength key, and
 * contexts of another domain do not verify each other even when they share the file.
 *
 * Pure code (no sockets, no host table), so the unit test calls what the plugin calls.
 * A loaded mc_udp_auth is read-only, so any number of threads may tag and verify at once.
 */
#ifndef MEMCAST_UDP_AUTH_H
#define MEMCAST_UDP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_UDP_AUTH_TAG_SIZE   16 /* the trailer of every datagram when auth is on */
#define MC_UDP_AUTH_KEY_SIZE   32
#define MC_UDP_AUTH_SECRET_MIN 32 /* bytes the key file must hold at least */

typedef struct mc_udp_auth {
    bool on;
    uint8_t key[MC_UDP_AUTH_KEY_SIZE];
} mc_udp_auth;

/* path NULL or "": auth off. Otherwise reads the secret from path, which must be a regular
 * file owned by this process's effective uid, with no permission for group or others, and
 * hold at least MC_UDP_AUTH_SECRET_MIN bytes; derives the key bound to domain. Returns 0,
 * or MC_ECONFIG for a file that is missing, unreadable or fails those rules, MC_ETRANSPORT
 * when libsodium cannot start; why then says what was wrong (the caller names the key). */
int mc_udp_auth_load(mc_udp_auth *auth, const char *path, const char *domain, char *why,
                     size_t why_size);
/* Wipes the key. */
void mc_udp_auth_clear(mc_udp_auth *auth);

/* Bytes auth adds to every datagram: MC_UDP_AUTH_TAG_SIZE when on, else 0. */
size_t mc_udp_auth_trailer(const mc_udp_auth *auth);

/* The tag of a datagram made of head then body (body may be NULL when body_len is 0). */
void mc_udp_auth_tag(const mc_udp_auth *auth, const void *head, size_t head_len, const void *body,
                     size_t body_len, uint8_t tag[MC_UDP_AUTH_TAG_SIZE]);

/* True when the last MC_UDP_AUTH_TAG_SIZE bytes of the len bytes at datagram are the tag
 * of the bytes before them (compared in constant time); false for anything shorter. */
bool mc_udp_auth_verify(const mc_udp_auth *auth, const void *datagram, size_t len);

#endif /* MEMCAST_UDP_AUTH_H */
