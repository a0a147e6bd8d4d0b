/* Error codes shared by every mxcache component and by libmxcache's public API.
 *
 * Functions that return int return 0 (MXC_OK) on success or one of these negative codes. The codes
 * are part of the installed client API: never renumber one, only add. */
#ifndef MXC_ERR_H
#define MXC_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

#ifndef MXC_API
#define MXC_API __attribute__((visibility("default")))
#endif

enum mxc_err {
    MXC_OK = 0,
    MXC_ENOMEM = -1,    /* out of memory */
    MXC_EINVAL = -2,    /* invalid argument (caller's mistake) */
    MXC_ENOENT = -3,    /* no such entry (or it has expired) */
    MXC_ETIMEDOUT = -4, /* no answer within the deadline */
    MXC_EPROTO = -5,    /* peer sent something that is not our protocol */
    MXC_ESTORE = -6,    /* the store failed */
    MXC_EIO = -7,       /* socket or file error */
    MXC_ESERVER = -8,   /* the service answered with an error reply */
    MXC_ETOOBIG = -9,   /* a message or value exceeds its limit */
    MXC_ECLOSED = -10,  /* the handle is shutting down */
    MXC_ECONFIG = -11,  /* configuration error */
    MXC_EAGAIN = -12,   /* a limit is reached for now (too many requests in flight); try later */
};

/* mxc_strerror - short English text for an MXC_E* code; never NULL, static storage. */
MXC_API const char *mxc_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
