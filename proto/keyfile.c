/* CURVE key files: generation, reading, and public keys given inline or by file (keyfile.h). */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "mxc_err.h"

bool keyfile_valid_z85(const char *s)
{
    uint8_t raw[32];

    if (!s || strlen(s) != KEYFILE_Z85_LEN)
        return false;
    return zmq_z85_decode(raw, s) != NULL;
}

bool keyfile_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > KEYFILE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* key_string - the setting name of cf as a string field of at most cap - 1 bytes. */
static int key_string(config_t *cf, const char *path, const char *name, char *out, size_t cap,
                      bool required, char *err, size_t errlen)
{
    config_setting_t *s = config_lookup(cf, name);
    const char *v;

    out[0] = '\0';
    if (!s) {
        if (!required)
            return MXC_OK;
        snprintf(err, errlen, "%s: %s is missing", path, name);
        return MXC_ECONFIG;
    }
    v = config_setting_get_string(s);
    if (!v) {
        snprintf(err, errlen, "%s:%d: %s must be a string", path, config_setting_source_line(s), name);
        return MXC_ECONFIG;
    }
    if (strlen(v) >= cap) {
        snprintf(err, errlen, "%s:%d: %s is too long", path, config_setting_source_line(s), name);
        return MXC_ECONFIG;
    }
    memcpy(out, v, strlen(v) + 1);
    return MXC_OK;
}

int keyfile_read(const char *path, bool need_secret, struct keyfile *out, char *err, size_t errlen)
{
    config_t cf;
    struct stat sb;
    int rc;

    memset(out, 0, sizeof *out);
    if (stat(path, &sb) != 0) {
        snprintf(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        return MXC_EIO;
    }
    config_init(&cf);
    if (!config_read_file(&cf, path)) {
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        else
            snprintf(err, errlen, "%s:%d: %s", path, config_error_line(&cf), config_error_text(&cf));
        rc = config_error_type(&cf) == CONFIG_ERR_FILE_IO ? MXC_EIO : MXC_ECONFIG;
        config_destroy(&cf);
        return rc;
    }
    rc = key_string(&cf, path, "name", out->name, sizeof out->name, false, err, errlen);
    if (rc == MXC_OK)
        rc = key_string(&cf, path, "public_key", out->public_key, sizeof out->public_key, true, err, errlen);
    if (rc == MXC_OK)
        rc = key_string(&cf, path, "secret_key", out->secret_key, sizeof out->secret_key, need_secret,
                        err, errlen);
    config_destroy(&cf);
    if (rc != MXC_OK)
        return rc;
    if (out->name[0] && !keyfile_valid_name(out->name)) {
        snprintf(err, errlen, "%s: name \"%s\" may only have letters, digits, '.', '-' and '_'", path,
                 out->name);
        return MXC_ECONFIG;
    }
    if (!keyfile_valid_z85(out->public_key)) {
        snprintf(err, errlen, "%s: public_key is not a Z85 CURVE key (40 characters)", path);
        return MXC_ECONFIG;
    }
    if (out->secret_key[0]) {
        char derived[KEYFILE_Z85_LEN + 1];
        if (!keyfile_valid_z85(out->secret_key)) {
            snprintf(err, errlen, "%s: secret_key is not a Z85 CURVE key (40 characters)", path);
            return MXC_ECONFIG;
        }
        /* Security: a secret key others can read is no secret; say so before it is used. */
        if (sb.st_mode & (S_IROTH | S_IWOTH)) {
            snprintf(err, errlen, "key file %s holds a secret key and is readable by others (mode %04o): "
                     "chmod 600 (or 640 with the daemon's group)", path, (unsigned)(sb.st_mode & 07777));
            memset(out->secret_key, 0, sizeof out->secret_key);
            return MXC_EINVAL;
        }
        if (zmq_curve_public(derived, out->secret_key) != 0 || strcmp(derived, out->public_key) != 0) {
            snprintf(err, errlen, "%s: public_key is not the public key of secret_key", path);
            memset(out->secret_key, 0, sizeof out->secret_key);
            return MXC_ECONFIG;
        }
    }
    if (!out->name[0]) {
        memcpy(out->name, out->public_key, 8);
        out->name[8] = '\0';
    }
    return MXC_OK;
}

int keyfile_public(const char *spec, char *key, char *name, size_t namelen, char *err, size_t errlen)
{
    struct keyfile kf;
    int rc;

    if (keyfile_valid_z85(spec)) {
        memcpy(key, spec, KEYFILE_Z85_LEN + 1);
        if (name)
            snprintf(name, namelen, "%.8s", spec);
        return MXC_OK;
    }
    if (!spec[0] || strlen(spec) == KEYFILE_Z85_LEN) {
        snprintf(err, errlen, "\"%s\" is neither a Z85 CURVE key nor a key file", spec);
        return MXC_ECONFIG;
    }
    /* A NAME.key given where a public key is wanted still has its permissions checked: a
     * secret key readable by others is refused wherever it turns up. */
    rc = keyfile_read(spec, false, &kf, err, errlen);
    if (rc != MXC_OK)
        return rc;
    memcpy(key, kf.public_key, KEYFILE_Z85_LEN + 1);
    if (name)
        snprintf(name, namelen, "%s", kf.name);
    memset(&kf, 0, sizeof kf);
    return MXC_OK;
}

/* write_key - writes text to path through a temporary file with mode, renamed into place; an
 * existing path is kept unless force. */
static int write_key(const char *path, const char *text, mode_t mode, bool force, char *err, size_t errlen)
{
    char tmp[4096];
    size_t len = strlen(text);
    int fd;

    if (!force && access(path, F_OK) == 0) {
        snprintf(err, errlen, "%s exists (use --force to replace it)", path);
        return MXC_EINVAL;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= sizeof tmp) {
        snprintf(err, errlen, "path too long: %s", path);
        return MXC_EINVAL;
    }
    /* Security: created with its final mode, never briefly readable by others. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return MXC_EIO;
    }
    if (fchmod(fd, mode) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return MXC_EIO;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return MXC_EIO;
    }
    return MXC_OK;
}

int keyfile_generate(const char *dir, const char *name, bool force, struct keyfile *out, char *err,
                     size_t errlen)
{
    struct keyfile kf;
    char path[4096], text[512];
    int rc;

    if (!keyfile_valid_name(name)) {
        snprintf(err, errlen, "key name \"%s\": 1 to %d letters, digits, '.', '-' or '_'", name,
                 KEYFILE_NAME_MAX);
        return MXC_EINVAL;
    }
    /* Neither half is written when either exists: a pair is replaced whole or not at all. */
    for (int i = 0; i < 2 && !force; i++) {
        snprintf(path, sizeof path, "%s/%s.%s", dir, name, i ? "pub" : "key");
        if (access(path, F_OK) == 0) {
            snprintf(err, errlen, "%s exists (use --force to replace it)", path);
            return MXC_EINVAL;
        }
    }
    memset(&kf, 0, sizeof kf);
    snprintf(kf.name, sizeof kf.name, "%s", name);
    if (zmq_curve_keypair(kf.public_key, kf.secret_key) != 0) {
        snprintf(err, errlen, "cannot make a CURVE key pair: %s (libzmq without libsodium?)",
                 zmq_strerror(errno));
        return MXC_EIO;
    }
    snprintf(text, sizeof text,
             "# mxcache CURVE key pair \"%s\" (mxcachectl keygen). SECRET: keep it mode 0600 (or\n"
             "# 0640 with the daemon's group) on the one host that uses it; share only %s.pub.\n"
             "name = \"%s\";\npublic_key = \"%s\";\nsecret_key = \"%s\";\n",
             name, name, name, kf.public_key, kf.secret_key);
    if ((size_t)snprintf(path, sizeof path, "%s/%s.key", dir, name) >= sizeof path) {
        snprintf(err, errlen, "path too long: %s", dir);
        rc = MXC_EINVAL;
        goto out;
    }
    rc = write_key(path, text, 0600, force, err, errlen);
    if (rc != MXC_OK)
        goto out;
    snprintf(text, sizeof text,
             "# mxcache CURVE public key \"%s\" (mxcachectl keygen): list it in the service's\n"
             "# security.client_keys or security.admin_keys, or give it to clients as the server key.\n"
             "name = \"%s\";\npublic_key = \"%s\";\n",
             name, name, kf.public_key);
    snprintf(path, sizeof path, "%s/%s.pub", dir, name);
    rc = write_key(path, text, 0644, force, err, errlen);
    if (rc == MXC_OK && out)
        *out = kf;
out:
    memset(&kf, 0, sizeof kf);
    memset(text, 0, sizeof text);
    return rc;
}
