/* Texts for the shared MXC_E* error codes (see mxc_err.h). */
#include "mxc_err.h"

const char *mxc_strerror(int code)
{
    switch (code) {
    case MXC_OK: return "success";
    case MXC_ENOMEM: return "out of memory";
    case MXC_EINVAL: return "invalid argument";
    case MXC_ENOENT: return "not found";
    case MXC_ETIMEDOUT: return "timed out";
    case MXC_EPROTO: return "protocol error";
    case MXC_ESTORE: return "store error";
    case MXC_EIO: return "I/O error";
    case MXC_ESERVER: return "error reply from the service";
    case MXC_ETOOBIG: return "too large";
    case MXC_ECLOSED: return "closed";
    case MXC_ECONFIG: return "configuration error";
    case MXC_EAGAIN: return "limit reached, try again later";
    default: return "unknown error";
    }
}
