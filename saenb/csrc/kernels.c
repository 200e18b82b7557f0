/* saenb's CPU kernels for the TopK family of SAEs (see nbs/06a_kernels.ipynb, which wraps each of them).
   Built on first use by saenb.kernels.compile_c with the machine's C compiler and loaded with ctypes; every exported
   function is `int f(...)` (0 on success, 1 when scratch memory cannot be allocated), and its ctypes argument types are
   read from the prototype: pointers become c_void_p, everything else c_int64. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* ---- top-k of rows */

/* order-preserving int32 keys of fp32 bit patterns: a < b as floats iff key(a) < key(b) as int32 (NaN aside) */
static inline int32_t key_of(uint32_t u) { int32_t s = (int32_t)u; return s ^ ((s >> 31) & 0x7fffffff); }

static inline int32_t count_ge(const int32_t *keys, int32_t c, int32_t t) {
    int32_t cnt = 0;
    for (int32_t i = 0; i < c; i++) cnt += keys[i] >= t;
    return cnt;
}

/* the k-th largest of keys[0..c) by bisection, keeping count(>= lo) >= k and count(>= hi) < k */
static int32_t kth_largest(const int32_t *keys, int32_t c, int32_t k, int64_t lo, int64_t hi) {
    while (hi - lo > 1) {
        int32_t mid = (int32_t)(lo + (hi - lo) / 2);
        if (count_ge(keys, c, mid) >= k) lo = mid; else hi = mid;
    }
    return (int32_t)lo;
}

/* Top k of one row of n keys, indices into out (unordered). Column j falls in group j % G; T0, the k-th largest group
   maximum, bounds the k-th largest key from below (k groups hold a key >= T0), so only keys >= T0 are candidates.
   Scratch: gm (2k keys), ck and ci (n each). */
static void row_topk(const int32_t *key, int32_t n, int32_t k, int64_t *out, int32_t *gm, int32_t *ck, int32_t *ci) {
    int32_t G = n >= 4 * k ? 2 * k : k, R = n / G;
    for (int32_t g = 0; g < G; g++) gm[g] = key[g];
    for (int32_t r = 1; r < R; r++) { const int32_t *p = key + r * G; for (int32_t g = 0; g < G; g++) gm[g] = p[g] > gm[g] ? p[g] : gm[g]; }
    for (int32_t j = R * G; j < n; j++) gm[j - R * G] = key[j] > gm[j - R * G] ? key[j] : gm[j - R * G];
    int32_t mn = gm[0], mx = gm[0];
    for (int32_t g = 1; g < G; g++) { mn = gm[g] < mn ? gm[g] : mn; mx = gm[g] > mx ? gm[g] : mx; }
    int32_t T0 = G == k ? mn : kth_largest(gm, G, k, mn, (int64_t)mx + 1);
    int32_t c = 0, i = 0;
#if defined(__AVX512F__)
    __m512i t = _mm512_set1_epi32(T0), io = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), step = _mm512_set1_epi32(16);
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_loadu_si512(key + i);
        __mmask16 m = _mm512_cmpge_epi32_mask(v, t);
        _mm512_mask_compressstoreu_epi32(ck + c, m, v);
        _mm512_mask_compressstoreu_epi32(ci + c, m, io);
        c += __builtin_popcount(m); io = _mm512_add_epi32(io, step);
    }
#endif
    for (; i < n; i++) { ck[c] = key[i]; ci[c] = i; c += key[i] >= T0; }
    int32_t T = c == k ? T0 : kth_largest(ck, c, k, T0, (int64_t)mx + 1), o = 0;
    for (int32_t j = 0; j < c; j++) if (ck[j] > T) out[o++] = ci[j];
    for (int32_t j = 0; j < c && o < k; j++) if (ck[j] == T) out[o++] = ci[j];
}

/* each row of x [N, n] (row stride ld): indices to out_i [N, k], values to out_v; 0 on success */
#define TOPK_ROWS(NAME, T, BITS) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t n, int64_t k, int64_t *out_i, T *out_v) { \
    int failed = 0; \
    _Pragma("omp parallel if (N * n >= 65536)") \
    { \
        int32_t *key = malloc(sizeof(int32_t) * (3 * n + 2 * k)); \
        if (!key) failed = 1; \
        else { \
            int32_t *ck = key + n, *ci = ck + n, *gm = ci + n; \
            _Pragma("omp for schedule(static)") \
            for (int64_t r = 0; r < N; r++) { \
                const T *row = x + r * ld; \
                for (int64_t i = 0; i < n; i++) key[i] = key_of(BITS(row[i])); \
                row_topk(key, (int32_t)n, (int32_t)k, out_i + r * k, gm, ck, ci); \
                for (int64_t j = 0; j < k; j++) out_v[r * k + j] = row[out_i[r * k + j]]; \
            } \
            free(key); \
        } \
    } \
    return failed; \
}
#define F32_BITS(v) (v)
#define BF16_BITS(v) ((uint32_t)(v) << 16)
TOPK_ROWS(topk_f32, uint32_t, F32_BITS)
TOPK_ROWS(topk_bf16, uint16_t, BF16_BITS)

/* ---- nonzeros per column: cnt[j] = the rows i of x [N, S] (row stride ld) with x[i, j] != 0 (-0 counts as 0) */
#define COL_NONZEROS(NAME, T, MASK) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t S, int64_t *cnt) { \
    int failed = 0; \
    memset(cnt, 0, sizeof(int64_t) * S); \
    _Pragma("omp parallel if (N * S >= 65536)") \
    { \
        int32_t *c = calloc(S, sizeof(int32_t)); \
        if (!c) failed = 1; \
        else { \
            _Pragma("omp for schedule(static) nowait") \
            for (int64_t i = 0; i < N; i++) { const T *row = x + i * ld; for (int64_t j = 0; j < S; j++) c[j] += (row[j] & MASK) != 0; } \
            _Pragma("omp critical") \
            for (int64_t j = 0; j < S; j++) cnt[j] += c[j]; \
            free(c); \
        } \
    } \
    return failed; \
}
COL_NONZEROS(nonzeros_f32, uint32_t, 0x7fffffffu)
COL_NONZEROS(nonzeros_bf16, uint16_t, 0x7fff)

/* ---- sparse products (fp32; W rows of D floats) */

/* out[t, j] = A[t] . W[idx[t, j]] for the N tokens t */
int gather_dot(const float *A, const float *W, const int64_t *idx, int64_t N, int64_t k, int64_t D, float *out) {
    _Pragma("omp parallel for schedule(static) if (N * k * D >= 65536)")
    for (int64_t t = 0; t < N; t++) {
        const float *a = A + t * D;
        for (int64_t j = 0; j < k; j++) {
            const float *w = W + idx[t * k + j] * D; float s = 0;
            _Pragma("omp simd reduction(+:s)") for (int64_t d = 0; d < D; d++) s += a[d] * w[d];
            out[t * k + j] = s;
        }
    }
    return 0;
}

/* out[r] = sum over (t, j) with idx[t, j] = r of vals[t, j] * M[t], for the R output rows; each thread owns a block of
   output rows and scans every (t, j) for its own */
int scatter_rows(const int64_t *idx, const float *vals, const float *M, int64_t N, int64_t k, int64_t D, float *out, int64_t R) {
    _Pragma("omp parallel if (N * k * D >= 65536)")
    {
        int64_t nt = 1, id = 0;
#if defined(_OPENMP)
        nt = omp_get_num_threads(); id = omp_get_thread_num();
#endif
        int64_t r0 = R * id / nt, r1 = R * (id + 1) / nt;
        memset(out + r0 * D, 0, sizeof(float) * (r1 - r0) * D);
        for (int64_t t = 0; t < N; t++) {
            const float *m = M + t * D;
            for (int64_t j = 0; j < k; j++) {
                int64_t r = idx[t * k + j];
                if (r < r0 || r >= r1) continue;
                float *o = out + r * D; float v = vals[t * k + j];
                _Pragma("omp simd") for (int64_t d = 0; d < D; d++) o[d] += v * m[d];
            }
        }
    }
    return 0;
}
