/* keyfile - CURVE key files of mxcache: making a key pair (mxcachectl keygen), reading a secret
 * key file (a daemon's or a client's own pair) and a public key given as a file or as the Z85
 * text itself (the service's key in a client's config, the client keys in the service's).
 *
 * A key file is a libconfig file, so that an operator can read it and our loaders can point at
 * the line of a mistake:
 *     name = "mx1";
 *     public_key = "<40 Z85 characters>";
 *     secret_key = "<40 Z85 characters>";   (only in NAME.key, never in NAME.pub)
 *
 * Security: a secret key file must not be readable by others (mode 0600, or 0640 with the
 * daemon's group); keyfile_read refuses one that is, like ssh does. A file's public key must be
 * the one its secret key makes, so a pair edited by hand cannot silently mismatch. Owns nothing;
 * never logs; errors come back as text that names the file (and line for syntax errors). */
#ifndef MXC_KEYFILE_H
#define MXC_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#define KEYFILE_Z85_LEN 40   /* a 32-byte CURVE key in Z85 */
#define KEYFILE_NAME_MAX 64  /* a key's name: letters, digits, '.', '-', '_' */

struct keyfile {
    char name[KEYFILE_NAME_MAX + 1];
    char public_key[KEYFILE_Z85_LEN + 1];
    char secret_key[KEYFILE_Z85_LEN + 1]; /* "" when the file has none */
};

/* keyfile_valid_z85 - whether s is exactly one Z85-encoded 32-byte key. */
bool keyfile_valid_z85(const char *s);

/* keyfile_valid_name - whether s is a usable key name (1..KEYFILE_NAME_MAX of [A-Za-z0-9._-]). */
bool keyfile_valid_name(const char *s);

/* keyfile_read - reads the key file at path into out. need_secret: the file must hold a secret
 * key (and must not be readable by others). Returns 0, or MXC_EIO (cannot read), MXC_ECONFIG
 * (syntax or content; err says which line or field), MXC_EINVAL (mode too open). */
int keyfile_read(const char *path, bool need_secret, struct keyfile *out, char *err, size_t errlen);

/* keyfile_public - a public key given as the Z85 text itself or as the path of a key file
 * (NAME.pub or NAME.key). Fills key (KEYFILE_Z85_LEN + 1 bytes) and, when name is not NULL,
 * the key's name (a Z85 text's name is its first 8 characters). Returns 0 or an MXC_E* code
 * with err filled. */
int keyfile_public(const char *spec, char *key, char *name, size_t namelen, char *err, size_t errlen);

/* keyfile_generate - makes a new key pair called name and writes DIR/NAME.key (mode 0600) and
 * DIR/NAME.pub (mode 0644). Existing files are replaced only when force is set, each through a
 * temporary file renamed into place. On success fills out (may be NULL). Returns 0 or an
 * MXC_E* code with err filled. */
int keyfile_generate(const char *dir, const char *name, bool force, struct keyfile *out, char *err,
                     size_t errlen);

#endif
