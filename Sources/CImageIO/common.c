#include <stdlib.h>

#include "cimageio.h"

void cimageio_free(void * p) {
    free(p);
}
