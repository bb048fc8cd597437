#ifndef NECO_COPENBLAS_SHIM_H
#define NECO_COPENBLAS_SHIM_H
#include <cblas.h>
#include <stddef.h>

/* LAPACK: OpenBLAS ships the Fortran routines (Debian's build has no LAPACKE C layer), so the one
 * libneco uses is declared here with Fortran's calling convention: every argument by pointer,
 * 32-bit INTEGERs, and the hidden lengths of the CHARACTER arguments appended (gfortran).
 * dsyevr: eigenvalues and eigenvectors of a real symmetric matrix (MRRR). */
void dsyevr_(const char * jobz, const char * range, const char * uplo, const int * n, double * a, const int * lda,
             const double * vl, const double * vu, const int * il, const int * iu, const double * abstol, int * m,
             double * w, double * z, const int * ldz, int * isuppz, double * work, const int * lwork, int * iwork,
             const int * liwork, int * info, size_t jobz_len, size_t range_len, size_t uplo_len);
#endif
