/* privs - who a daemon runs as. Both daemons refuse to run as root unless told to, and a daemon
 * started as root with a user to run as binds its sockets first and then drops to that user for
 * good (supplementary groups, group, user, in that order), before it touches its data.
 *
 * Owns nothing; never logs; errors come back as text. */
#ifndef MXC_PRIVS_H
#define MXC_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privs {
    bool drop;        /* started as root with a user to become */
    uid_t uid;
    gid_t gid;
    char user[64];
};

/* privs_plan - decides, before anything is bound, what privs_drop will do: user "" and running
 * as root is refused unless allow_root; a user while not root must be the user already running
 * (else a clear error: only root can switch). Returns 0 or MXC_EINVAL/MXC_ENOENT with err. */
int privs_plan(const char *user, bool allow_root, struct privs *out, char *err, size_t errlen);

/* privs_drop - becomes the planned user for good (nothing to do when !p->drop) and checks that
 * root cannot be regained. Returns 0 or MXC_EIO with err; the caller must then exit. */
int privs_drop(const struct privs *p, char *err, size_t errlen);

#endif
