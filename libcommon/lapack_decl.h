/* lapack_decl.h - Fortran prototypes of the few LAPACK routines the toolkit calls (OpenBLAS ships
 * LAPACK; Debian's libopenblas-dev has no LAPACKE by default, so we declare them here).
 * Column-major, 32-bit integers (Debian's OpenBLAS is LP64).  The trailing size_t arguments are
 * the hidden lengths of the CHARACTER arguments that gfortran-compiled LAPACK expects.
 * Complex arrays are interleaved (re, im) doubles. */
#ifndef SSM_LAPACK_DECL_H
#define SSM_LAPACK_DECL_H

#include <stddef.h>

void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b,
            const int *ldb, int *info);
void zgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b,
            const int *ldb, int *info);
void zheev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
            double *work, const int *lwork, double *rwork, int *info, size_t, size_t);
void zheevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, double *rwork, const int *lrwork, int *iwork,
             const int *liwork, int *info, size_t, size_t);
void dgeev_(const char *jobvl, const char *jobvr, const int *n, double *a, const int *lda,
            double *wr, double *wi, double *vl, const int *ldvl, double *vr, const int *ldvr,
            double *work, const int *lwork, int *info, size_t, size_t);
void zgeev_(const char *jobvl, const char *jobvr, const int *n, double *a, const int *lda,
            double *w, double *vl, const int *ldvl, double *vr, const int *ldvr, double *work,
            const int *lwork, double *rwork, int *info, size_t, size_t);
void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t, size_t);
void zgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, double *rwork, int *info, size_t, size_t);
void dgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
            const double *alpha, const double *a, const int *lda, const double *b, const int *ldb,
            const double *beta, double *c, const int *ldc, size_t, size_t);

#endif
