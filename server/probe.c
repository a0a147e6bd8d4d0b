/* probe - see probe.h. (Being written.) */
#include "probe.h"
