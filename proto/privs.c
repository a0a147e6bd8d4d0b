/* Refusing root and dropping to an unprivileged user (privs.h). */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mxc_err.h"

int privs_plan(const char *user, bool allow_root, struct privs *out, char *err, size_t errlen)
{
    struct passwd pw, *res = NULL;
    char buf[4096];

    memset(out, 0, sizeof *out);
    if (!user || !user[0]) {
        if (geteuid() == 0 && !allow_root) {
            snprintf(err, errlen, "refusing to run as root: set server.user (or --user) to an "
                     "unprivileged user, or server.allow_root (--allow-root) to run as root anyway");
            return MXC_EINVAL;
        }
        return MXC_OK;
    }
    if (getpwnam_r(user, &pw, buf, sizeof buf, &res) != 0 || !res) {
        snprintf(err, errlen, "server.user: no such user \"%s\"", user);
        return MXC_ENOENT;
    }
    if (res->pw_uid == 0 && !allow_root) {
        snprintf(err, errlen, "server.user \"%s\" is root: refusing to run as root unless "
                 "server.allow_root (--allow-root)", user);
        return MXC_EINVAL;
    }
    if (geteuid() != 0) {
        if (geteuid() != res->pw_uid) {
            snprintf(err, errlen, "server.user is \"%s\" but only root can become another user "
                     "(running as uid %u)", user, (unsigned)geteuid());
            return MXC_EINVAL;
        }
        return MXC_OK; /* already that user: nothing to drop */
    }
    out->drop = res->pw_uid != 0;
    out->uid = res->pw_uid;
    out->gid = res->pw_gid;
    snprintf(out->user, sizeof out->user, "%s", user);
    return MXC_OK;
}

int privs_drop(const struct privs *p, char *err, size_t errlen)
{
    if (!p->drop)
        return MXC_OK;
    /* Groups first: after setuid there is no right left to change them. */
    if (initgroups(p->user, p->gid) != 0 || setgid(p->gid) != 0 || setuid(p->uid) != 0) {
        snprintf(err, errlen, "cannot become user %s: %s", p->user, strerror(errno));
        return MXC_EIO;
    }
    if (setuid(0) == 0 || geteuid() != p->uid || getegid() != p->gid) {
        snprintf(err, errlen, "privileges of root still held after becoming %s", p->user);
        return MXC_EIO;
    }
    return MXC_OK;
}
