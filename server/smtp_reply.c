/* smtp_reply - see smtp_reply.h. (Being written.) */
#include "smtp_reply.h"
