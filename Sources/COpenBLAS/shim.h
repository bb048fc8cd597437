#ifndef NECO_COPENBLAS_SHIM_H
#define NECO_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
