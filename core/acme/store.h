/* core/acme/store.h — where ACME state lives: a small key/value interface, and its directory
 * backend. */
#pragma once

/*
 * ACME state (account keys, certificate keys, certificates, their metadata)
 * and the locks that keep two processes from ordering the same certificate
 * sit behind paf_acme_store_ops, so that a fleet can later keep them in an
 * existing distributed store (etcd) instead of a directory. The interface is
 * shaped to become public (include/paf/acme.h): opaque types, int returns
 * with a negative errno, a paf_error naming the key and the reason, a vtable
 * whose first member is its size and whose new members are appended.
 *
 * Keys are paths of 1 to 8 segments joined by '/', the same for every
 * backend. A segment is 1 to 255 characters of [a-z0-9._*-], does not start
 * with '.', and holds no "..". The directory backend hides its temporary
 * files behind the leading dot no key can have.
 *
 * Conventional keys (what core/acme writes; the directory backend puts them
 * at DIR/<key>, so a certificate is DIR/<name>/fullchain.pem as paf cert says):
 *   <name>/fullchain.pem                     certificate and chain (0644)
 *   <name>/key.pem                           certificate private key (0600)
 *   <name>/meta.json                         names, CA, order, renewal state
 *   _accounts/<directory-host>/account.json  account URL, contact (0644)
 *   _accounts/<directory-host>/account.key   account private key (0600)
 * and locks "_accounts/<directory-host>" and "<name>". "_accounts" is
 * neither a DNS name (no '_') nor an IPv6 address's form ('o' is no hex
 * digit), so accounts never collide with certificates.
 * <name> and <directory-host> come from paf_acme_store_name(): a DNS name
 * (lowercased; "*.example.com" for a wildcard), an IPv4 address, or an IPv6
 * address in canonical form with ':' written '_' ("2001_db8__1"). A
 * directory URL with a port gives "<host>_<port>" ("localhost_14000").
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <paf/error.h>

typedef struct paf_acme_store paf_acme_store;
typedef struct paf_acme_store_lock paf_acme_store_lock;

/* Flags of get(). */
enum {
        /* The value is a private key: refuse it if anyone but its owner may
         * read or write it (the directory backend: a file mode with group or
         * other bits, or another owner), as ssh does with its identities. */
        PAF_ACME_STORE_SECRET = 1u << 0,
};

/*
 * A backend. Keys and lock names reach it already validated. Every member
 * but destroy is required; each sets error (which may be NULL) on failure.
 */
typedef struct paf_acme_store_ops {
        size_t struct_size; /* sizeof(paf_acme_store_ops) */
        /* The value of key into *ret_data (malloc'ed, with a NUL after its
         * *ret_size bytes, so text can be used as a string). -ENOENT if there
         * is none. */
        int (*get)(void *userdata, const char *key, unsigned flags, void **ret_data,
                   size_t *ret_size, paf_error *error);
        /* Replace key's value atomically: a reader (in any process, after any
         * crash) sees the old value or the new one, never a part. mode is the
         * file mode the directory backend gives it (0600 for keys). */
        int (*put)(void *userdata, const char *key, const void *data, size_t size, unsigned mode,
                   paf_error *error);
        /* Remove key (a value, or an empty prefix). -ENOENT if absent. */
        int (*delete)(void *userdata, const char *key, paf_error *error);
        /* Take the exclusive lock called name, shared by every process using
         * the same store. timeout_usec 0: try once; otherwise wait up to that
         * long. -EWOULDBLOCK if another holder keeps it. *ret_handle is what
         * unlock() gets back. */
        int (*lock)(void *userdata, const char *name, uint64_t timeout_usec, void **ret_handle,
                    paf_error *error);
        void (*unlock)(void *userdata, void *handle);
        /* The names directly under prefix ("" for the top), sorted, as a
         * NULL-terminated malloc'ed array of malloc'ed strings. A prefix with
         * nothing under it gives an empty array. */
        int (*list)(void *userdata, const char *prefix, char ***ret, paf_error *error);
        /* Optional: release userdata when the store is freed. */
        void (*destroy)(void *userdata);
} paf_acme_store_ops;

/* A store on a backend; ops must outlive it. */
int paf_acme_store_new(const paf_acme_store_ops *ops, void *userdata, paf_acme_store **ret);
paf_acme_store *paf_acme_store_ref(paf_acme_store *s);
paf_acme_store *paf_acme_store_unref(paf_acme_store *s);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_store *, paf_acme_store_unref);

/*
 * The directory backend. path is created (mode 0700) if missing; an existing
 * one must be a directory owned by the effective user and writable by nobody
 * else, group-readable at most (-EPERM otherwise, the message naming path
 * and the reason): whoever
 * may write there may swap our keys. Layout: DIR/<key> for each key (its
 * directories 0700), DIR/.locks/<name> for each lock (an flock(2)ed file
 * of mode 0600, never removed: removing it would let a second process lock
 * a new file while a first still holds the old one).
 *
 * Every put writes DIR/<dir>/.<base>.<random>.tmp with the value, fsyncs it,
 * renames it over DIR/<dir>/<base> and fsyncs the directory: after a crash
 * the key holds the old or the new value. A process killed mid-write leaves
 * its hidden .tmp file; nothing reads it, and the next put of the same key
 * removes those older than an hour (paf_acme_store_dir_new() does not, as
 * another process may be writing).
 *
 * Locks are flock(2) locks, so they belong to the open file: two lock()s of
 * one name conflict even within one process, a lock dies with its process
 * (no stale lock after a crash), and a child forked while a lock is held
 * holds it too until it exits or execs (the lock files are O_CLOEXEC).
 * flock has no timeout: a lock() with a
 * timeout retries every few milliseconds and blocks its thread meanwhile.
 * Code on an event loop passes 0 and, on -EWOULDBLOCK, retries from a timer.
 */
int paf_acme_store_dir_new(const char *path, paf_acme_store **ret, paf_error *error);

/* Validate key (see above): 0, or -EINVAL with the reason in error. */
int paf_acme_store_key_check(const char *key, paf_error *error);

/* The key segment for an ACME identifier (a DNS name, "*.name", an IPv4 or
 * IPv6 address), into *ret (malloc'ed). -EINVAL, with the reason, for
 * anything else. Injective: no DNS name maps onto an IPv6 address's form. */
int paf_acme_store_name(const char *identifier, char **ret, paf_error *error);

/* The operations, keys and names checked first (-EINVAL). */
int paf_acme_store_get(paf_acme_store *s, const char *key, unsigned flags, void **ret_data,
                       size_t *ret_size, paf_error *error);
int paf_acme_store_put(paf_acme_store *s, const char *key, const void *data, size_t size,
                       unsigned mode, paf_error *error);
int paf_acme_store_delete(paf_acme_store *s, const char *key, paf_error *error);
int paf_acme_store_list(paf_acme_store *s, const char *prefix, char ***ret, paf_error *error);
void paf_acme_store_strv_free(char **l);

/* The lock holds a reference on its store. unlock(NULL) is safe; both
 * return NULL. */
int paf_acme_store_lock_take(paf_acme_store *s, const char *name, uint64_t timeout_usec,
                             paf_acme_store_lock **ret, paf_error *error);
paf_acme_store_lock *paf_acme_store_unlock(paf_acme_store_lock *l);
PAF_DEFINE_TRIVIAL_CLEANUP_FUNC(paf_acme_store_lock *, paf_acme_store_unlock);

/* Test hook (tests/acme/test-store.c): called by the directory backend
 * before each write(2) of a put's temporary file with the bytes written so
 * far; a negative errno fails the put there as that write error would. */
extern int (*paf_acme_store_dir_write_hook)(size_t written, size_t total);
