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
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
/* OpenMP's threads a parallel region may have, this thread's number and its team's size (1, 0, 1 without OpenMP):
   usable inside the macros that define kernels, where #if is not */
#if defined(_OPENMP)
static inline int max_threads(void) { return omp_get_max_threads(); }
static inline int thread_id(void) { return omp_get_thread_num(); }
static inline int team_size(void) { return omp_get_num_threads(); }
#else
static inline int max_threads(void) { return 1; }
static inline int thread_id(void) { return 0; }
static inline int team_size(void) { return 1; }
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
/* PACK[m]: the positions of the set bits of the 8-bit mask m, one a byte, lowest first (AVX2's left-pack) */
static uint64_t PACK[256];
__attribute__((constructor)) static void pack_table(void) {
    for (int m = 0; m < 256; m++) {
        uint64_t p = 0; int c = 0;
        for (int j = 0; j < 8; j++) if (m >> j & 1) p |= (uint64_t)j << (8 * c++);
        PACK[m] = p;
    }
}
#endif

/* ---- top-k of rows */

/* order-preserving int32 keys of fp32 bit patterns: a < b as floats iff key(a) < key(b) as int32 (NaN aside) */
static inline int32_t key_of(uint32_t u) { int32_t s = (int32_t)u; return s ^ ((s >> 31) & 0x7fffffff); }

static inline int32_t count_ge(const int32_t *keys, int32_t c, int32_t t) {
    int32_t cnt = 0;
    for (int32_t i = 0; i < c; i++) cnt += keys[i] >= t;
    return cnt;
}

/* the k-th largest (1 <= k <= c) of keys[0..c), all in [lo, hi), by bisection of [lo, hi), keeping count(>= lo) >= k
   and count(>= hi) < k: a count is a few compares over the keys, and it takes log2(hi - lo) of them. With AVX-512 and
   at most 128 keys (a row's group maxima and its candidates, in training), the keys stay in registers and a count is a
   compare and a population count a register, with no sum across lanes: on the pre-activations of an 8-member ensemble
   (1024 x 512, bf16, k 4 to 32) fast_topk took 1.32-1.39 ms a step for all eight against 1.51-1.67 counting in a loop
   (2-core AVX-512 EPYC, interleaved runs), 1024 x 512 top-32 0.148 against 0.158 ms, 4096 x 512 0.67 against 0.84 */
static int32_t kth_bisect(const int32_t *keys, int32_t c, int32_t k, int64_t lo, int64_t hi) {
#if defined(__AVX512F__)
    if (c <= 128) {
        __m512i a[8]; __mmask16 m[8]; int32_t nr = (c + 15) / 16;
        for (int32_t r = 0; r < nr; r++) {
            int32_t left = c - 16 * r;
            m[r] = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            a[r] = _mm512_maskz_loadu_epi32(m[r], keys + 16 * r);
        }
        while (hi - lo > 1) {
            int32_t mid = (int32_t)(lo + (hi - lo) / 2), cnt = 0; __m512i v = _mm512_set1_epi32(mid);
            for (int32_t r = 0; r < nr; r++) cnt += __builtin_popcount(_mm512_mask_cmpge_epi32_mask(m[r], a[r], v));
            if (cnt >= k) lo = mid; else hi = mid;
        }
        return (int32_t)lo;
    }
#endif
    while (hi - lo > 1) {
        int32_t mid = (int32_t)(lo + (hi - lo) / 2);
        if (count_ge(keys, c, mid) >= k) lo = mid; else hi = mid;
    }
    return (int32_t)lo;
}

/* the k-th largest (1 <= k <= c) of keys[0..c), all in [lo, hi). Keys spanning at most 2^16 values (bf16's, see
   BF16_KEY) and more than 16 of them: by bisection, at most 16 counts (fast_topk, bf16, on a 2-core AVX-512 EPYC:
   1024 x 512 top-16 0.196 ms, top-24 0.208, top-32 0.228, against 0.225, 0.293 and 0.359 ranking them; 4096 x 2048
   top-16 1.35 against 1.48, top-32 1.56 against 1.99; top-8 the same, and 7-11% slower bisecting from 9 keys on).
   Otherwise, up to 32 keys (64 with AVX-512), by ranking each key by counting (comparisons without data-dependent
   branches, which made a quickselect slower than this); with AVX-512 the keys sit in two or four registers and a
   key's rank is a few compares and population counts (top-16 1.3-1.7x, top-24 1.3-1.5x faster than counting one key
   at a time); more (from 33 keys on, counting took longer than this on an AVX2 CPU), by bisection. */
static int32_t kth_largest(const int32_t *keys, int32_t c, int32_t k, int64_t lo, int64_t hi) {
    if (c > 16 && hi - lo <= 65536) return kth_bisect(keys, c, k, lo, hi);
#if defined(__AVX512F__)
    if (c <= 32) {   /* two registers (masked loads read nothing past c); one masked four-register loop for every
                        c <= 64 was 1.3x slower at top-16 */
        __mmask16 m0 = c >= 16 ? 0xffff : (__mmask16)((1u << c) - 1);
        __mmask16 m1 = c > 16 ? (__mmask16)((1u << (c - 16)) - 1) : 0;
        __m512i a0 = _mm512_maskz_loadu_epi32(m0, keys), a1 = _mm512_maskz_loadu_epi32(m1, keys + 16);
        for (int32_t j = 0; j < c; j++) {
            __m512i v = _mm512_set1_epi32(keys[j]);
            int32_t gt = __builtin_popcount(_mm512_mask_cmpgt_epi32_mask(m0, a0, v))
                       + __builtin_popcount(_mm512_mask_cmpgt_epi32_mask(m1, a1, v));
            int32_t ge = __builtin_popcount(_mm512_mask_cmpge_epi32_mask(m0, a0, v))
                       + __builtin_popcount(_mm512_mask_cmpge_epi32_mask(m1, a1, v));
            if (gt < k && ge >= k) return keys[j];
        }
    }
    if (c <= 64) {   /* four registers */
        __mmask16 m2 = c >= 48 ? 0xffff : (__mmask16)((1u << (c - 32)) - 1);
        __mmask16 m3 = c > 48 ? (__mmask16)((1u << (c - 48)) - 1) : 0;
        __m512i a0 = _mm512_loadu_si512(keys), a1 = _mm512_loadu_si512(keys + 16);
        __m512i a2 = _mm512_maskz_loadu_epi32(m2, keys + 32), a3 = _mm512_maskz_loadu_epi32(m3, keys + 48);
        for (int32_t j = 0; j < c; j++) {
            __m512i v = _mm512_set1_epi32(keys[j]);
            int32_t gt = __builtin_popcount(_mm512_cmpgt_epi32_mask(a0, v))
                       + __builtin_popcount(_mm512_cmpgt_epi32_mask(a1, v))
                       + __builtin_popcount(_mm512_mask_cmpgt_epi32_mask(m2, a2, v))
                       + __builtin_popcount(_mm512_mask_cmpgt_epi32_mask(m3, a3, v));
            int32_t ge = __builtin_popcount(_mm512_cmpge_epi32_mask(a0, v))
                       + __builtin_popcount(_mm512_cmpge_epi32_mask(a1, v))
                       + __builtin_popcount(_mm512_mask_cmpge_epi32_mask(m2, a2, v))
                       + __builtin_popcount(_mm512_mask_cmpge_epi32_mask(m3, a3, v));
            if (gt < k && ge >= k) return keys[j];
        }
    }
#endif
    if (c <= 32)
        for (int32_t j = 0; j < c; j++) {
            int32_t gt = 0, ge = 0, v = keys[j];
            for (int32_t i = 0; i < c; i++) { gt += keys[i] > v; ge += keys[i] >= v; }
            if (gt < k && ge >= k) return v;
        }
    return kth_bisect(keys, c, k, lo, hi);
}

/* The k largest of c candidate keys ck (all of them if c <= k), all in [lo, mx], in their order: their ci to out;
   returns how many */
static int32_t take_top(const int32_t *ck, int32_t *ci, int32_t c, int32_t k, int32_t lo, int32_t mx, int64_t *out) {
    int32_t o = 0;
    if (c <= k) { for (int32_t j = 0; j < c; j++) out[j] = ci[j]; return c; }
    int32_t T = kth_largest(ck, c, k, lo, (int64_t)mx + 1), ties = k;
    for (int32_t j = 0; j < c; j++) ties -= ck[j] > T;
    /* one pass in column order, so the indices come out increasing: those above T, and the first ties at T; without
       a branch on the key, which real pre-activations make unpredictable (each candidate is stored at o, which moves
       on when it is kept): fast_topk 4-8% faster at 512 columns, topk_positive 14% */
    for (int32_t j = 0; j < c; j++) {   /* kept in place in the scratch ci (o <= j), then copied out */
        int32_t eq = ck[j] == T, take = (ck[j] > T) | (eq & (ties > 0));
        ties -= eq; ci[o] = ci[j]; o += take;
    }
    for (int32_t j = 0; j < o; j++) out[j] = ci[j];
    return o;
}

/* The keys of key[0..n) that are >= t and, where allow is given, whose column's bit is set in it (bit j % 8 of byte
   j / 8 for column j): their keys to ck and columns to ci, in column order; returns how many. AVX-512 collects them
   16 keys a step with its compress instruction, AVX2 8 with a left-pack table, both without a branch; otherwise the
   row is scanned BLK keys at a time, and only a chunk holding one stores any. ck and ci have room for n. */
#define BLK 16
#define ALLOWED(a, j) (!(a) || ((a)[(j) >> 3] >> ((j) & 7) & 1))
static inline __attribute__((always_inline))
int32_t collect_ge(const int32_t *key, int32_t n, int32_t t, const uint8_t *allow, int32_t *ck, int32_t *ci) {
    int32_t c = 0, i = 0;
#if defined(__AVX512F__)
    __m512i tv = _mm512_set1_epi32(t), io = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_loadu_si512(key + i);
        __mmask16 m = _mm512_cmpge_epi32_mask(v, tv);
        if (allow) { uint16_t a; memcpy(&a, allow + i / 8, 2); m &= a; }
        /* compress in a register, then a plain store: a compress to memory is slow on some CPUs (AMD Zen 4); c <= i,
           so the 16 stored keys stay inside ck[0..n) and ci[0..n). Stored whether or not any key passed: a branch on
           m mispredicts on real pre-activations (fast_topk 15-35% faster without it on a 2-core AVX-512 EPYC, from
           [1024, 512] to [4096, 2048] and k from 4 to 64; topk_positive at [4096, 512] 19%) */
        _mm512_storeu_si512(ck + c, _mm512_maskz_compress_epi32(m, v));
        _mm512_storeu_si512(ci + c, _mm512_maskz_compress_epi32(m, io));
        c += __builtin_popcount(m);
        io = _mm512_add_epi32(io, _mm512_set1_epi32(16));
    }
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
    __m256i tv = _mm256_set1_epi32(t);
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(key + i));
        int m = ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(tv, v))) & 0xff;   /* keys >= t */
        if (allow) m &= allow[i / 8];
        /* left-pack the candidates, without a branch (c <= i: the 8 stored keys stay inside ck[0..n), ci[0..n)) */
        __m256i p = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(PACK + m)));
        _mm256_storeu_si256((__m256i *)(ck + c), _mm256_permutevar8x32_epi32(v, p));
        _mm256_storeu_si256((__m256i *)(ci + c), _mm256_add_epi32(p, _mm256_set1_epi32(i)));
        c += __builtin_popcount(m);
    }
#endif
    for (; i + BLK <= n; i += BLK) {   /* without AVX-512 or AVX2 */
        int32_t any = 0;
        for (int32_t j = 0; j < BLK; j++) any |= key[i + j] >= t && ALLOWED(allow, i + j);
        if (any) for (int32_t j = i; j < i + BLK; j++) { ck[c] = key[j]; ci[c] = j; c += key[j] >= t && ALLOWED(allow, j); }
    }
    for (; i < n; i++) { ck[c] = key[i]; ci[c] = i; c += key[i] >= t && ALLOWED(allow, i); }
    return c;
}

/* Top k of one row of n keys, indices into out (in increasing order). Column j falls in group j % G (any G >= k
   works); T0, the k-th largest group maximum, bounds the k-th largest key from below (k groups hold a key >= T0), so
   only keys >= T0 are candidates. For k <= 32, G is a constant (8, 16 or 32, and 64 for 16 < k <= 32 with AVX-512,
   whose kth_largest ranks 64 keys cheaply: top-24 and top-32 at 1024 x 512 1.2-1.4x faster than with 32 groups): the
   group maxima stay in registers, where a loop over G in memory waited on its own stores. Where G = k, T0 is the
   smallest group maximum and needs no selection. `collect_ge` lists the candidates. On a 2-core AVX2 EPYC, one
   thread, 1024 x 512: top-8 0.69 -> 0.35-0.41 ms, top-32 1.4-1.9 -> 0.95-1.06 ms (`benchmarks/bench_steps.py` times it
   in training). Scratch: gm (2k + 32 keys, at least 64 where G = 64), ck and ci (n each). */
#define GROUP_MAX(G) \
static void group_max_##G(const int32_t *key, int32_t R, int32_t *gm) { \
    int32_t m[G]; \
    for (int32_t g = 0; g < G; g++) m[g] = key[g]; \
    for (int32_t r = 1; r < R; r++) \
        for (int32_t g = 0; g < G; g++) m[g] = key[r * G + g] > m[g] ? key[r * G + g] : m[g]; \
    for (int32_t g = 0; g < G; g++) gm[g] = m[g]; \
}
GROUP_MAX(8) GROUP_MAX(16) GROUP_MAX(32) GROUP_MAX(64)

static void row_topk(const int32_t *key, int32_t n, int32_t k, int64_t *out, int32_t *gm, int32_t *ck, int32_t *ci) {
#if defined(__AVX512F__)
    int32_t G = k <= 4 ? 8 : k <= 8 ? 16 : k <= 16 ? 32 : k <= 32 ? 64 : 0;
#else
    int32_t G = k <= 4 ? 8 : k <= 8 ? 16 : k <= 32 ? 32 : 0;
#endif
    if (G && n < 2 * G) G = 0;
    if (!G) G = n >= 4 * k ? 2 * k : k;
    int32_t R = n / G;
    switch (G * (n >= 2 * G && k <= 32)) {
        case 8: group_max_8(key, R, gm); break;
        case 16: group_max_16(key, R, gm); break;
        case 32: group_max_32(key, R, gm); break;
        case 64: group_max_64(key, R, gm); break;
        default:
            for (int32_t g = 0; g < G; g++) gm[g] = key[g];
            for (int32_t r = 1; r < R; r++) {
                const int32_t *p = key + r * G;
                for (int32_t g = 0; g < G; g++) gm[g] = p[g] > gm[g] ? p[g] : gm[g];
            }
    }
    for (int32_t j = R * G; j < n; j++) gm[j - R * G] = key[j] > gm[j - R * G] ? key[j] : gm[j - R * G];
    int32_t mn = gm[0], mx = gm[0];
    for (int32_t g = 1; g < G; g++) { mn = gm[g] < mn ? gm[g] : mn; mx = gm[g] > mx ? gm[g] : mx; }
    int32_t T0 = G == k ? mn : kth_largest(gm, G, k, mn, (int64_t)mx + 1);
    take_top(ck, ci, collect_ge(key, n, T0, NULL, ck, ci), k, T0, mx, out);
}

/* each row of x [N, n] (row stride ld): indices to out_i [N, k], values to out_v; 0 on success */
#define TOPK_ROWS(NAME, T, KEY) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t n, int64_t k, int64_t *out_i, T *out_v) { \
    int failed = 0; \
    _Pragma("omp parallel if (N * n >= 65536)") \
    { \
        int32_t *key = malloc(sizeof(int32_t) * (3 * n + 2 * k + 32)); \
        if (!key) failed = 1; \
        else { \
            int32_t *ck = key + n, *ci = ck + n, *gm = ci + n; \
            _Pragma("omp for schedule(static)") \
            for (int64_t r = 0; r < N; r++) { \
                const T *row = x + r * ld; \
                for (int64_t i = 0; i < n; i++) key[i] = KEY(row[i]); \
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
/* keys of fp32 values, and of bf16 values in 16 bits (their fp32 key's upper half, an arithmetic shift: the lower half
   is all zeros or all ones), so that a bf16 row's keys span at most 2^16 values (kth_largest bisects them) */
#define F32_KEY(v) key_of(v)
#define BF16_KEY(v) (key_of(BF16_BITS(v)) >> 16)
TOPK_ROWS(topk_f32, uint32_t, F32_KEY)
TOPK_ROWS(topk_bf16, uint16_t, BF16_KEY)


/* each row of x [N, S] (row stride ld), among its columns cols[0..nc) (distinct, in any order): the k largest positive
   values (all of them where fewer are positive), listed row by row and in increasing column order within a row: rows
   to out_r, columns to out_c, values to out_v (room for N k each), how many to *total. Each row is read whole, in
   order, as keys (a positive value's key is its bit pattern), and `collect_ge` lists its positive keys in those
   columns (a bit mask): reading only the columns, one by one, took 0.85-1.1 ms for 4096 rows and 280 of 512 columns
   on a 2-core AVX-512 EPYC (topk_blocks, below, takes a TopK step's selection and AuxK's in one pass over x). Where
   the columns are few (nc * FEW_COLS <= S: few dead latents), only they are read, in increasing order.
   benchmarks/bench_auxk_columns.py times the two ways: on 2 AVX-512 EPYC cores, bf16 rows of 4096 x 2048 with 1 (64,
   256) columns, 2.01 (1.66, 1.92) -> 0.095 (0.50, 1.43) ms, with the top 32 too (topk_blocks) 2.39 (2.49, 3.00) ->
   1.56 (1.98, 2.82) ms, whole rows faster from S / 4 (512 columns); at 4096 x 512 the two cost the same at S / 8 (64
   columns) and whole rows were faster from 96, so they stay above S / 8. */
#ifndef FEW_COLS
#define FEW_COLS 8
#endif
/* the columns cols[0..nc) of a row of S as a bit mask (allow: S / 8 + 2 bytes, zeroed) and, where they are few
   (nc * FEW_COLS <= S), as a list in increasing order (few, room for nc; its length to *m), else *m = -1 */
static void column_set(const int64_t *cols, int64_t nc, int64_t S, uint8_t *allow, int32_t *few, int32_t *m) {
    for (int64_t j = 0; j < nc; j++) allow[cols[j] >> 3] |= (uint8_t)(1u << (cols[j] & 7));
    *m = -1;
    if (nc * FEW_COLS > S) return;
    *m = 0;
    for (int32_t j = 0; j < S; j++) if (ALLOWED(allow, j)) few[(*m)++] = j;   /* distinct and increasing */
}
/* the k largest positive keys of a row's key[0..S) in the columns of allow (or of few[0..m), m >= 0, where only those
   keys need be set), their columns to out in increasing order; returns how many. Scratch ck and ci (S each). */
static int32_t row_positive(const int32_t *key, int32_t S, const uint8_t *allow, const int32_t *few, int32_t m,
                            int32_t k, int32_t *ck, int32_t *ci, int64_t *out) {
    int32_t c = 0, mx = 1, mn = INT32_MAX;
    if (m < 0) c = collect_ge(key, S, 1, allow, ck, ci);
    else for (int32_t j = 0; j < m; j++) { int32_t v = key[few[j]]; ck[c] = v; ci[c] = few[j]; c += v >= 1; }
    for (int32_t j = 0; j < c; j++) { mx = ck[j] > mx ? ck[j] : mx; mn = ck[j] < mn ? ck[j] : mn; }
    return take_top(ck, ci, c, k, c ? mn : 1, mx, out);   /* bisects [mn, mx] */
}
/* rows' entries listed in order: row r's cnt[r + 1] columns (at pos[r k ..]) and values; rows come in blocks of per,
   row r of block b = r / per being row b B + r % per of x, its columns plus base[b] (base NULL: 0). Rows to out_r,
   columns to out_c; cnt (cnt[0] = 0) becomes the offsets. Called by every thread of a team (barriers inside). */
#define LIST_ROWS(T) \
static void list_rows_##T(const T *x, int64_t ld, int64_t N, int64_t k, const int64_t *pos, int64_t *cnt, int64_t per, \
                          int64_t B, const int64_t *base, int64_t *out_r, int64_t *out_c, T *out_v) { \
    _Pragma("omp single") \
    for (int64_t r = 0; r < N; r++) cnt[r + 1] += cnt[r]; \
    _Pragma("omp for schedule(static)") \
    for (int64_t r = 0; r < N; r++) { \
        int64_t b = r / per, xr = b * B + r - b * per, cb = base ? base[b] : 0; \
        for (int64_t e = cnt[r]; e < cnt[r + 1]; e++) { \
            int64_t c = pos[r * k + e - cnt[r]]; \
            out_r[e] = xr; out_c[e] = c + cb; out_v[e] = x[xr * ld + c]; \
        } \
    } \
}
LIST_ROWS(uint32_t) LIST_ROWS(uint16_t)
#define TOPK_POSITIVE(NAME, T, KEY) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t S, const int64_t *cols, int64_t nc, int64_t k, int64_t *out_r, \
         int64_t *out_c, T *out_v, int64_t *total) { \
    int64_t *pos = malloc(sizeof(int64_t) * (N * k + N + 1)), *off = pos ? pos + N * k : NULL; \
    uint8_t *allow = calloc(S / 8 + 2, 1); \
    int32_t *few = malloc(sizeof(int32_t) * (nc + 1)), m = -1; \
    int failed = !pos || !allow || !few; \
    if (!failed) { off[0] = 0; column_set(cols, nc, S, allow, few, &m); } \
    _Pragma("omp parallel if (N * S >= 65536)") \
    { \
        /* every thread meets every worksharing loop, with or without its scratch memory */ \
        int32_t *key = failed ? NULL : malloc(sizeof(int32_t) * (3 * S + 1)), *ck = key ? key + S : NULL, \
                *ci = ck ? ck + S : NULL; \
        if (!key) failed = 1; \
        _Pragma("omp for schedule(static)") \
        for (int64_t r = 0; r < N; r++) { \
            if (!key) continue; \
            const T *row = x + r * ld; \
            if (m < 0) for (int64_t j = 0; j < S; j++) key[j] = KEY(row[j]); \
            else for (int32_t j = 0; j < m; j++) key[few[j]] = KEY(row[few[j]]); \
            off[r + 1] = row_positive(key, (int32_t)S, allow, few, m, (int32_t)k, ck, ci, pos + r * k); \
        } \
        free(key); \
        if (!failed) list_rows_##T(x, ld, N, k, pos, off, N, N, NULL, out_r, out_c, out_v); \
    } \
    if (!failed) *total = off[N]; \
    free(pos); free(allow); free(few); \
    return failed; \
}
TOPK_POSITIVE(topk_positive_f32, uint32_t, F32_KEY)
TOPK_POSITIVE(topk_positive_bf16, uint16_t, BF16_KEY)

/* topk_rows over M blocks of B rows of n (block b: rows b B to (b + 1) B of x, row stride ld), each block with its own
   k = ks[b] (0: the block is left out), in one parallel region: block b's indices, plus base[b], to out_i and its
   values to out_v, [B, ks[b]] from entry at[b] on. An ensemble's members' selections in one call, where a call a
   member (and an OpenMP region each) cost more than its work at 1024 x 512. Rows go to threads 16 at a time as they
   free up: the blocks' k differ, and so does a row's cost (fixed halves of the rows, or chunks of 32 in turn, were
   slower). With acols (not NULL), also AuxK's entries of each block's first arows rows, as topk_positive gives them
   from the same keys: the ak[b] largest positive values among block b's columns acols[aoff[b]..aoff[b + 1]) (ak[b] =
   0: none), listed block by block and row by row, rows to a_r (as b B + row), columns plus base[b] to a_c, values to
   a_v (room for arows times the sum of ak), each block's count to a_cnt[b]: an ensemble's AuxK selections in the same
   pass. */
#define TOPK_BLOCKS(NAME, T, KEY) \
int NAME(const T *x, int64_t ld, int64_t M, int64_t B, int64_t n, const int64_t *ks, const int64_t *at, \
         const int64_t *base, int64_t *out_i, T *out_v, const int64_t *acols, const int64_t *aoff, const int64_t *ak, \
         int64_t arows, int64_t *a_r, int64_t *a_c, T *a_v, int64_t *a_cnt) { \
    int failed = 0; \
    int64_t kmax = 0, work = 0, akmax = 0, nr = acols ? M * arows : 0; \
    for (int64_t b = 0; b < M; b++) { kmax = ks[b] > kmax ? ks[b] : kmax; work += ks[b] ? B * n : 0; } \
    for (int64_t b = 0; acols && b < M; b++) akmax = ak[b] > akmax ? ak[b] : akmax; \
    uint8_t *allow = acols ? calloc((size_t)M * (n / 8 + 2), 1) : NULL;   /* block b's AuxK columns: mask, list */ \
    int32_t *few = acols ? malloc(sizeof(int32_t) * (aoff[M] + 1)) : NULL; \
    int32_t *fm = acols ? malloc(sizeof(int32_t) * M) : NULL; \
    int64_t *pos = acols ? malloc(sizeof(int64_t) * (nr * akmax + nr + 1)) : NULL; \
    int64_t *off = pos ? pos + nr * akmax : NULL; \
    if (acols && (!allow || !few || !fm || !pos)) failed = 1; \
    for (int64_t b = 0; acols && !failed && b < M; b++) \
        column_set(acols + aoff[b], aoff[b + 1] - aoff[b], n, allow + b * (n / 8 + 2), few + aoff[b], fm + b); \
    if (off) off[0] = 0; \
    _Pragma("omp parallel if (work >= 65536)") \
    { \
        int32_t *key = failed ? NULL : malloc(sizeof(int32_t) * (3 * n + 2 * kmax + 65)); \
        if (!key) failed = 1; \
        int32_t *ck = key ? key + n : NULL, *ci = ck ? ck + n : NULL, *gm = ci ? ci + n : NULL; \
        _Pragma("omp for schedule(dynamic, 16)") \
        for (int64_t r = 0; r < M * B; r++) { \
            int64_t b = r / B, k = ks[b], t = r - b * B, ar = b * arows + t;   /* ar: its AuxK row, t < arows */ \
            if (!key) continue; \
            if (!k && !(acols && t < arows && ak[b])) { if (acols && t < arows) off[ar + 1] = 0; continue; } \
            const T *row = x + r * ld; \
            int64_t *oi = out_i + at[b] + t * k; \
            T *ov = out_v + at[b] + t * k; \
            for (int64_t i = 0; i < n; i++) key[i] = KEY(row[i]); \
            if (k) { \
                row_topk(key, (int32_t)n, (int32_t)k, oi, gm, ck, ci); \
                for (int64_t j = 0; j < k; j++) { ov[j] = row[oi[j]]; oi[j] += base[b]; } \
            } \
            if (acols && t < arows) \
                off[ar + 1] = !ak[b] ? 0 : row_positive(key, (int32_t)n, allow + b * (n / 8 + 2), few + aoff[b], \
                                                        fm[b], (int32_t)ak[b], ck, ci, pos + ar * akmax); \
        } \
        free(key); \
        if (acols && !failed) list_rows_##T(x, ld, nr, akmax, pos, off, arows, B, base, a_r, a_c, a_v); \
    } \
    for (int64_t b = 0; acols && !failed && b < M; b++) a_cnt[b] = off[(b + 1) * arows] - off[b * arows]; \
    free(allow); free(few); free(fm); free(pos); \
    return failed; \
}
TOPK_BLOCKS(topk_blocks_f32, uint32_t, F32_KEY)
TOPK_BLOCKS(topk_blocks_bf16, uint16_t, BF16_KEY)

/* ---- thresholded entries (JumpReLU): where each row of x [N, S] (row stride ld) is above its column's threshold
   th[j] (the codes that fire), and where it lies strictly between lo[j] and hi[j] (the window of the thresholds'
   straight-through gradient). Compared in fp32, bf16 values widened exactly, so the entries are those PyTorch's
   `z > th` and `(z > lo) & (z < hi)` give. threshold_count writes each row's two counts to cnt [N, 2];
   threshold_fill lists the entries row by row, in increasing column order within a row, from off [N + 1, 2] (the
   counts' exclusive prefix sums): rows to a_r, n_r, columns to a_c, n_c. Every value is written at its row's list's
   end while the row has room there, and kept only if it belongs: a branch on the value, mispredicted as often as not
   in the window, took 10.5 ms for 4096 x 2048 bf16 (236 window entries a token) against 8.4-9.6 ms. */
static inline float f32_of(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
#define THRESHOLD_COUNT(NAME, T, BITS) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t S, const float *th, const float *lo, const float *hi, \
         int64_t *cnt) { \
    _Pragma("omp parallel for schedule(static) if (N * S >= 65536)") \
    for (int64_t r = 0; r < N; r++) { \
        const T *row = x + r * ld; \
        int64_t a = 0, n = 0; \
        for (int64_t j = 0; j < S; j++) { \
            float v = f32_of(BITS(row[j])); \
            a += v > th[j]; n += (v > lo[j]) & (v < hi[j]); \
        } \
        cnt[2 * r] = a; cnt[2 * r + 1] = n; \
    } \
    return 0; \
}
#if defined(__AVX512F__) && defined(__AVX512BW__)
/* With AVX-512, 16 columns a step and without a branch: the passing columns compressed in a register and stored to
   the thread's scratch row (sc), then copied out with their row (4096 x 2048 bf16 on a 2-core AVX-512 EPYC: 7.4 ->
   2.3-2.7 ms at ReLU's 31-205 entries a token, 8.8 -> 2.9 ms with JumpReLU's window). Masked stores straight into the
   lists took 57 ms for ReLU's, probably because a masked store that writes nothing still needs a slow assist on AMD's
   Zen 4 where its address lies past the end of the (there empty) window list. */
static inline __m512 load16_f32(const uint32_t *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, (const float *)p); }
static inline __m512 load16_bf16(const uint16_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
#define FILL_SCRATCH(S) (2 * ((S) + 16))   /* each thread's scratch row: columns that pass, then the window's */
#define FILL_ROW(BITS, LOAD) \
        int32_t *sa = sc, *sn = sc + S + 16; \
        int64_t ca = 0, cn = 0; \
        __m512i io = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
        for (int64_t j = 0; j < S; j += 16) { \
            __mmask16 m = S - j >= 16 ? 0xffff : (__mmask16)((1u << (S - j)) - 1); \
            __m512 v = LOAD(row + j, m); \
            __mmask16 ma = _mm512_mask_cmp_ps_mask(m, v, _mm512_maskz_loadu_ps(m, th + j), _CMP_GT_OQ); \
            __mmask16 mn = _mm512_mask_cmp_ps_mask(m, v, _mm512_maskz_loadu_ps(m, lo + j), _CMP_GT_OQ) \
                         & _mm512_mask_cmp_ps_mask(m, v, _mm512_maskz_loadu_ps(m, hi + j), _CMP_LT_OQ); \
            __m512i cols = _mm512_add_epi32(io, _mm512_set1_epi32((int32_t)j)); \
            _mm512_storeu_si512(sa + ca, _mm512_maskz_compress_epi32(ma, cols)); ca += __builtin_popcount(ma); \
            _mm512_storeu_si512(sn + cn, _mm512_maskz_compress_epi32(mn, cols)); cn += __builtin_popcount(mn); \
        } \
        for (int64_t e = 0; e < ca; e++) { a_r[a + e] = r; a_c[a + e] = sa[e]; } \
        for (int64_t e = 0; e < cn; e++) { n_r[n + e] = r; n_c[n + e] = sn[e]; }
#else
#define FILL_SCRATCH(S) 1
#define FILL_ROW(BITS, LOAD) \
        for (int64_t j = 0; j < S; j++) { \
            float v = f32_of(BITS(row[j])); \
            if (a < a_end) { a_r[a] = r; a_c[a] = j; }   /* written always, kept if it passes */ \
            if (n < n_end) { n_r[n] = r; n_c[n] = j; } \
            a += v > th[j]; n += (v > lo[j]) & (v < hi[j]); \
        }
#endif
#define THRESHOLD_FILL(NAME, T, BITS, LOAD) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t S, const float *th, const float *lo, const float *hi, \
         const int64_t *off, int64_t *a_r, int64_t *a_c, int64_t *n_r, int64_t *n_c) { \
    int nt = 1; \
    if (N * S >= 65536) nt = max_threads(); \
    int32_t *scr = malloc(sizeof(int32_t) * nt * FILL_SCRATCH(S)); \
    if (!scr) return 1; \
    _Pragma("omp parallel num_threads(nt)") \
    { \
        int32_t *sc = scr + thread_id() * FILL_SCRATCH(S); (void)sc; \
        _Pragma("omp for schedule(static)") \
        for (int64_t r = 0; r < N; r++) { \
            const T *row = x + r * ld; \
            int64_t a = off[2 * r], n = off[2 * r + 1], a_end = off[2 * r + 2], n_end = off[2 * r + 3]; \
            (void)a_end; (void)n_end; \
            FILL_ROW(BITS, LOAD) \
        } \
    } \
    free(scr); \
    return 0; \
}
THRESHOLD_COUNT(threshold_count_f32, uint32_t, F32_BITS)
THRESHOLD_COUNT(threshold_count_bf16, uint16_t, BF16_BITS)
THRESHOLD_FILL(threshold_fill_f32, uint32_t, F32_BITS, load16_f32)
THRESHOLD_FILL(threshold_fill_bf16, uint16_t, BF16_BITS, load16_bf16)

/* ---- batch top-k */

/* the k-th largest (1 <= k <= c) of c keys, by two passes of 16-bit histograms (hist: 65536 counters of scratch); one
   where no key has low bits (bf16's keys), whose second pass, over a histogram of zeros, scanned all 65536 counters */
static int32_t kth_largest_radix(const int32_t *keys, int64_t c, int64_t k, int64_t *hist) {
    int64_t need = k, b;
    uint32_t low = 0;
    memset(hist, 0, sizeof(int64_t) * 65536);
    for (int64_t i = 0; i < c; i++) { uint32_t u = (uint32_t)keys[i] ^ 0x80000000u; hist[u >> 16]++; low |= u; }
    for (b = 65535; b > 0 && hist[b] < need; b--) need -= hist[b];
    uint32_t hi = (uint32_t)b;
    if (!(low & 0xffff)) return (int32_t)((hi << 16) ^ 0x80000000u);
    memset(hist, 0, sizeof(int64_t) * 65536);
    for (int64_t i = 0; i < c; i++) { uint32_t u = (uint32_t)keys[i] ^ 0x80000000u; if (u >> 16 == hi) hist[u & 0xffff]++; }
    for (b = 65535; b > 0 && hist[b] < need; b--) need -= hist[b];
    return (int32_t)(((hi << 16) | (uint32_t)b) ^ 0x80000000u);
}

/* The n largest positive entries of x [N, S] (row stride ld) over the whole batch, listed token by token: tok, idx and
   vals (room for n each), their number in *count. Each row's top m are its candidates; T0, the n-th largest candidate
   (at least the smallest positive key), bounds the batch's n-th largest from below. A row whose m candidates all reach
   T0 may have more entries that do, so that row alone is scanned whole (its keys, then `collect_ge`'s vectorised
   listing). The pool (every entry >= T0) is cut at T, its n-th largest; ties at T are taken in token order. Each
   token's entries come out in increasing latent order. Rows are counted and pooled in parallel; with a large pool
   (64k entries or more) they are written out in parallel too, each row's place and share of the ties from a pass
   over the rows' counts (below that the extra pass cost more than it saved). On BatchTopK's training batches
   (4096 x 512, bf16 pre-activations of the speed benchmark's step 80, whose rows often reach T0 with all 16
   candidates) a call takes 1.70-1.71 ms at k = 8 and 2.90-2.92 at k = 32, against 1.80-1.84 and 3.58-3.63 with a
   scalar, branching scan of such rows and a serial writing out (0.5 and 0.23 ms of the first); with many ties (rounded
   values) 2.02-2.14 against 2.85-2.87; on normal rows without such scans it is 2-3% slower (medians of 10
   interleaved calls, 2-core AVX-512 EPYC). */
#define BATCH_TOPK(NAME, T, BITS, ROWS) \
int NAME(const T *x, int64_t ld, int64_t N, int64_t S, int64_t m, int64_t n, int64_t *tok, int64_t *idx, T *vals, int64_t *count) { \
    int failed = 0; \
    int64_t *cand = malloc(sizeof(int64_t) * N * m), *off = malloc(sizeof(int64_t) * (N + 1)); \
    int64_t *hist = malloc(sizeof(int64_t) * 65536), *pool_i = NULL, *gt = malloc(sizeof(int64_t) * 2 * (N + 1)); \
    int32_t *ckey = malloc(sizeof(int32_t) * N * m), *pool_k = NULL; \
    T *cval = malloc(sizeof(T) * N * m); \
    if (!cand || !off || !hist || !ckey || !cval || !gt) { failed = 1; goto done; } \
    int64_t *take = gt + N + 1; /* per row: its entries above T, and its entries (with ties) taken */ \
    if (ROWS(x, ld, N, S, m, cand, cval)) { failed = 1; goto done; } /* each row's top m: the candidates */ \
    for (int64_t e = 0; e < N * m; e++) ckey[e] = key_of(BITS(cval[e])); \
    int32_t T0 = kth_largest_radix(ckey, N * m, n, hist); \
    if (T0 < 1) T0 = 1; /* positive entries only: +0 has key 0, the smallest positive value key 1 or more */ \
    int64_t P = 0; \
    _Pragma("omp parallel if (N * m >= 65536)") \
    { \
        /* every thread meets every worksharing loop and barrier, with or without its scratch memory */ \
        int32_t *kr = malloc(sizeof(int32_t) * 3 * S), *ck = kr ? kr + S : NULL, *ci = ck ? ck + S : NULL; \
        if (!kr) { _Pragma("omp atomic write") failed = 1; } \
        _Pragma("omp for schedule(static)") \
        for (int64_t r = 0; r < N; r++) { \
            int64_t a = 0; \
            for (int64_t j = 0; j < m; j++) a += ckey[r * m + j] >= T0; \
            if (a == m && m < S && kr) { \
                const T *row = x + r * ld; \
                for (int64_t i = 0; i < S; i++) kr[i] = key_of(BITS(row[i])); \
                a = count_ge(kr, (int32_t)S, T0); \
            } \
            off[r + 1] = a; \
        } \
        _Pragma("omp single") \
        { \
            off[0] = 0; \
            for (int64_t r = 0; r < N; r++) off[r + 1] += off[r]; \
            P = off[N]; \
            if (!failed) { \
                pool_k = malloc(sizeof(int32_t) * (P ? P : 1)); pool_i = malloc(sizeof(int64_t) * (P ? P : 1)); \
                if (!pool_k || !pool_i) failed = 1; \
            } \
        } \
        _Pragma("omp for schedule(static)") \
        for (int64_t r = 0; r < N; r++) { \
            if (failed) continue; \
            int64_t o = off[r], all = m < S; \
            for (int64_t j = 0; j < m; j++) all &= ckey[r * m + j] >= T0; \
            if (all) { /* the row scanned whole, as counted */ \
                const T *row = x + r * ld; \
                for (int64_t i = 0; i < S; i++) kr[i] = key_of(BITS(row[i])); \
                int32_t c = collect_ge(kr, (int32_t)S, T0, NULL, ck, ci); \
                for (int32_t j = 0; j < c; j++) { pool_k[o + j] = ck[j]; pool_i[o + j] = ci[j]; } \
            } else { \
                for (int64_t j = 0; j < m; j++) \
                    if (ckey[r * m + j] >= T0) { pool_k[o] = ckey[r * m + j]; pool_i[o++] = cand[r * m + j]; } \
            } \
        } \
        free(kr); \
    } \
    if (failed) goto done; \
    int32_t Tc = P > n ? kth_largest_radix(pool_k, P, n, hist) : T0; \
    if (P < 65536) { /* one pass, the ties at Tc to the first rows that have them (the three passes below, on one \
                        thread, took 4-5% longer at k = 8: 1.33 against 1.27 ms) */ \
        int64_t ties = n, o = 0; \
        for (int64_t i = 0; i < P; i++) ties -= pool_k[i] > Tc; \
        for (int64_t r = 0; r < N; r++) \
            for (int64_t e = off[r]; e < off[r + 1]; e++) \
                if (pool_k[e] > Tc || (pool_k[e] == Tc && ties-- > 0)) { \
                    tok[o] = r; idx[o] = pool_i[e]; vals[o] = x[r * ld + pool_i[e]]; o++; \
                } \
        gt[N] = o; \
    } else _Pragma("omp parallel") \
    { /* in parallel: each row's entries above Tc and at it, then its place and share of the ties, then its entries */ \
        _Pragma("omp for schedule(static)") \
        for (int64_t r = 0; r < N; r++) { \
            int64_t g = 0, q = 0; \
            for (int64_t e = off[r]; e < off[r + 1]; e++) { g += pool_k[e] > Tc; q += pool_k[e] == Tc; } \
            gt[r] = g; take[r] = q; \
        } \
        _Pragma("omp single") \
        { \
            int64_t ties = n, o = 0; \
            for (int64_t r = 0; r < N; r++) ties -= gt[r]; \
            for (int64_t r = 0; r < N; r++) { \
                int64_t q = take[r] < ties ? take[r] : ties, g = gt[r]; \
                ties -= q; take[r] = q; gt[r] = o; o += g + q; \
            } \
            gt[N] = o; \
        } \
        _Pragma("omp for schedule(static)") \
        for (int64_t r = 0; r < N; r++) { \
            int64_t o = gt[r], q = take[r]; \
            for (int64_t e = off[r]; e < off[r + 1]; e++) \
                if (pool_k[e] > Tc || (pool_k[e] == Tc && q-- > 0)) { \
                    tok[o] = r; idx[o] = pool_i[e]; vals[o] = x[r * ld + pool_i[e]]; o++; \
                } \
        } \
    } \
    *count = gt[N]; \
done: \
    free(cand); free(off); free(hist); free(ckey); free(cval); free(pool_k); free(pool_i); free(gt); \
    return failed; \
}
BATCH_TOPK(batch_topk_f32, uint32_t, F32_BITS, topk_f32)
BATCH_TOPK(batch_topk_bf16, uint16_t, BF16_BITS, topk_bf16)

/* ---- entries listed token by token (tok non-decreasing, in [0, N)), packed `width` to a row: each token's entries
   fill ceil(c / width) rows of its own, in order, the last one zero after its last entry; a token with none takes no
   row. Row r's token to out_r, how many rows to *nrows (out_* have room for c / width + min(N, c) + 1 rows, which
   holds for such tokens; a token out of order or out of range stops the pass with *nrows = -1). Values are copied as
   bits (4- or 2-byte types). One pass: 0.08 ms a call for 32,768 entries, where PyTorch's bincount, cumulative sums
   and index copies took 0.68 ms (BatchTopK's packing at 4096 x 512, k = 8, 2-core AVX-512 EPYC) */
#define PACK_TOKENS(NAME, T) \
int NAME(const int64_t *tok, const int64_t *idx, const T *vals, int64_t c, int64_t N, int64_t width, int64_t *out_i, \
         T *out_v, int64_t *out_r, int64_t *nrows) { \
    int64_t r = -1, p = width; \
    for (int64_t e = 0; e < c; e++) { \
        if (tok[e] < (r >= 0 ? out_r[r] : 0) || tok[e] >= N) { *nrows = -1; return 0; } \
        if (p == width || tok[e] != out_r[r]) { /* a new row: the token's first, or its last is full */ \
            for (; r >= 0 && p < width; p++) { out_i[r * width + p] = 0; out_v[r * width + p] = 0; } \
            out_r[++r] = tok[e]; p = 0; \
        } \
        out_i[r * width + p] = idx[e]; out_v[r * width + p] = vals[e]; p++; \
    } \
    for (; r >= 0 && p < width; p++) { out_i[r * width + p] = 0; out_v[r * width + p] = 0; } \
    *nrows = r + 1; \
    return 0; \
}
PACK_TOKENS(pack_tokens_32, uint32_t)
PACK_TOKENS(pack_tokens_16, uint16_t)

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

/* ---- ReLU's codes in place, with each column's sum and count: x [N, S] (row stride ld) becomes relu(x), NaN kept as
   torch's relu keeps it; sum[j] is the fp32 sum of column j's codes and cnt[j] its nonzero codes (as nonzeros_*). One
   pass where PyTorch's relu, sum(0) and the counts take three. Each thread sums blocks of RELU_ROWS rows, adds each
   block's sums to a row of its own, and the rows are added in thread order: fp32 sums as close as PyTorch's pairwise
   ones, and the same each run. */
#define RELU_ROWS 64
#define RELU_COLUMNS(NAME, T, MAG, INF, BITS) \
int NAME(T *x, int64_t ld, int64_t N, int64_t S, float *sum, int64_t *cnt) { \
    int nt = max_threads(); \
    float *ps = calloc((size_t)2 * nt * S, sizeof(float)); \
    int32_t *pc = calloc((size_t)nt * S, sizeof(int32_t)); \
    if (!ps || !pc) { free(ps); free(pc); return 1; } \
    _Pragma("omp parallel if (N * S >= 65536)") \
    { \
        float *s = ps + (size_t)2 * thread_id() * S, *bs = s + S; \
        int32_t *c = pc + (size_t)thread_id() * S; \
        _Pragma("omp for schedule(static)") \
        for (int64_t b = 0; b < N; b += RELU_ROWS) { \
            for (int64_t i = b; i < b + RELU_ROWS && i < N; i++) { \
                T *row = x + i * ld; \
                for (int64_t j = 0; j < S; j++) { \
                    T u = row[j], a = u & MAG; \
                    u = u != a && a <= INF ? 0 : u;   /* negative (not NaN): 0 */ \
                    row[j] = u; \
                    bs[j] += f32_of(BITS(u)); \
                    c[j] += (u & MAG) != 0;   \
                } \
            } \
            for (int64_t j = 0; j < S; j++) { s[j] += bs[j]; bs[j] = 0; } \
        } \
    } \
    for (int64_t j = 0; j < S; j++) { sum[j] = 0; cnt[j] = 0; } \
    for (int t = 0; t < nt; t++) \
        for (int64_t j = 0; j < S; j++) { sum[j] += ps[(size_t)2 * t * S + j]; cnt[j] += pc[(size_t)t * S + j]; } \
    free(ps); free(pc); \
    return 0; \
}
RELU_COLUMNS(relu_columns_f32, uint32_t, 0x7fffffffu, 0x7f800000u, F32_BITS)
RELU_COLUMNS(relu_columns_bf16, uint16_t, 0x7fff, 0x7f80, BF16_BITS)

/* ---- ReLU's gradient: out [N, S] (row stride ldo) = g + add[j] where the code x > 0, else 0, rounded to T as PyTorch
   rounds g + add (NaN to the quiet NaN), and gsum[j] the fp32 sum of column j of out, summed as above */
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline uint16_t bf16_round(float f) {
    uint32_t u = f32_bits(f);
    return (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc0 : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
#define RELU_GRAD(NAME, T, BITS, ROUND) \
int NAME(const T *g, int64_t ldg, const T *x, int64_t ldx, int64_t N, int64_t S, const float *add, T *out, \
         int64_t ldo, float *gsum) { \
    int nt = max_threads(); \
    float *ps = calloc((size_t)2 * nt * S, sizeof(float)); \
    if (!ps) return 1; \
    _Pragma("omp parallel if (N * S >= 65536)") \
    { \
        float *s = ps + (size_t)2 * thread_id() * S, *bs = s + S; \
        _Pragma("omp for schedule(static)") \
        for (int64_t b = 0; b < N; b += RELU_ROWS) { \
            for (int64_t i = b; i < b + RELU_ROWS && i < N; i++) { \
                const T *gr = g + i * ldg, *xr = x + i * ldx; \
                T *o = out + i * ldo; \
                for (int64_t j = 0; j < S; j++) { \
                    T v = f32_of(BITS(xr[j])) > 0.f ? ROUND(f32_of(BITS(gr[j])) + add[j]) : 0; \
                    o[j] = v; \
                    bs[j] += f32_of(BITS(v)); \
                } \
            } \
            for (int64_t j = 0; j < S; j++) { s[j] += bs[j]; bs[j] = 0; } \
        } \
    } \
    for (int64_t j = 0; j < S; j++) gsum[j] = 0; \
    for (int t = 0; t < nt; t++) for (int64_t j = 0; j < S; j++) gsum[j] += ps[(size_t)2 * t * S + j]; \
    free(ps); \
    return 0; \
}
RELU_GRAD(relu_grad_f32, uint32_t, F32_BITS, f32_bits)
RELU_GRAD(relu_grad_bf16, uint16_t, BF16_BITS, bf16_round)

/* ---- sparse products (fp32; W rows of D floats) */

#if defined(__AVX512F__)
/* AVX-512: fused multiply-adds, the tail masked, and four sums reduced together (at 64 columns the four separate
   horizontal sums cost as much as the products) */
static inline __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1); }
static inline float dot_f(const float *a, const float *b, int64_t D) {
    __m512 s = _mm512_setzero_ps(); int64_t d = 0;
    for (; d + 16 <= D; d += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), s);
    if (d < D) {
        __mmask16 m = tail_mask(D - d);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), s);
    }
    return _mm512_reduce_add_ps(s);
}
static inline __m256 halves(__m512 v) {   /* the sum of v's two 256-bit halves */
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
/* out[i] = a_i . w_i, four dot products at once (where some a_i are one row, the compiler loads it once) */
static inline void dot4x_f(const float *a0, const float *a1, const float *a2, const float *a3, const float *w0,
                           const float *w1, const float *w2, const float *w3, int64_t D, float *out) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a0 + d), _mm512_loadu_ps(w0 + d), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a1 + d), _mm512_loadu_ps(w1 + d), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a2 + d), _mm512_loadu_ps(w2 + d), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a3 + d), _mm512_loadu_ps(w3 + d), s3);
    }
    if (d < D) {
        __mmask16 m = tail_mask(D - d);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a0 + d), _mm512_maskz_loadu_ps(m, w0 + d), s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a1 + d), _mm512_maskz_loadu_ps(m, w1 + d), s1);
        s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a2 + d), _mm512_maskz_loadu_ps(m, w2 + d), s2);
        s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a3 + d), _mm512_maskz_loadu_ps(m, w3 + d), s3);
    }
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(halves(s0), halves(s1)), _mm256_hadd_ps(halves(s2), halves(s3)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
/* y += a x + b x2, y read and written once */
static inline void axpy2_f(float *y, float a, const float *x, float b, const float *x2, int64_t D) {
    __m512 s = _mm512_set1_ps(a), t = _mm512_set1_ps(b); int64_t d = 0;
    for (; d + 16 <= D; d += 16)
        _mm512_storeu_ps(y + d, _mm512_fmadd_ps(t, _mm512_loadu_ps(x2 + d),
                                                _mm512_fmadd_ps(s, _mm512_loadu_ps(x + d), _mm512_loadu_ps(y + d))));
    if (d < D) {
        __mmask16 m = tail_mask(D - d);
        __m512 r = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m, x + d), _mm512_maskz_loadu_ps(m, y + d));
        _mm512_mask_storeu_ps(y + d, m, _mm512_fmadd_ps(t, _mm512_maskz_loadu_ps(m, x2 + d), r));
    }
}
static inline void axpy_f(float *y, float a, const float *x, int64_t D) {
    __m512 s = _mm512_set1_ps(a); int64_t d = 0;
    for (; d + 16 <= D; d += 16)
        _mm512_storeu_ps(y + d, _mm512_fmadd_ps(s, _mm512_loadu_ps(x + d), _mm512_loadu_ps(y + d)));
    if (d < D) {
        __mmask16 m = tail_mask(D - d);
        __m512 r = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m, x + d), _mm512_maskz_loadu_ps(m, y + d));
        _mm512_mask_storeu_ps(y + d, m, r);
    }
}
#else
static inline float dot_f(const float *a, const float *b, int64_t D) {
    float s = 0;
    _Pragma("omp simd reduction(+:s)") for (int64_t d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}
/* four dot products at once: four independent chains of additions, not one latency-bound chain */
static inline void dot4x_f(const float *a0, const float *a1, const float *a2, const float *a3, const float *w0,
                           const float *w1, const float *w2, const float *w3, int64_t D, float *out) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    _Pragma("omp simd reduction(+:s0,s1,s2,s3)")
    for (int64_t d = 0; d < D; d++) {
        s0 += a0[d] * w0[d]; s1 += a1[d] * w1[d]; s2 += a2[d] * w2[d]; s3 += a3[d] * w3[d];
    }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}
static inline void axpy2_f(float *y, float a, const float *x, float b, const float *x2, int64_t D) {
    _Pragma("omp simd") for (int64_t d = 0; d < D; d++) y[d] += a * x[d] + b * x2[d];
}
static inline void axpy_f(float *y, float a, const float *x, int64_t D) {
    _Pragma("omp simd") for (int64_t d = 0; d < D; d++) y[d] += a * x[d];
}
#endif
/* four dot products against one vector */
static inline void dot4_f(const float *a, const float *w0, const float *w1, const float *w2, const float *w3, int64_t D,
                          float *out) { dot4x_f(a, a, a, a, w0, w1, w2, w3, D, out); }

/* out[t, j] = A[tok[t]] . W[idx[t, j]] for the N rows t (tok NULL: A[t]), over the N k entries in blocks of 64. Four
   entries that read the same A row go at once, in four chains of additions rather than one latency-bound chain (1.7x
   at k = 64 on an AVX2 CPU); with tok, consecutive rows of one token count as one row (AuxK's entries, one a row) */
#define SAME_A(e0, e1) (tok ? tok[(e0) / k] == tok[(e1) / k] : (e0) / k == (e1) / k)
int gather_dot(const float *A, const float *W, const int64_t *idx, const int64_t *tok, int64_t N, int64_t k, int64_t D, float *out) {
    int64_t E = N * k;
    _Pragma("omp parallel for schedule(static) if (E * D >= 65536)")
    for (int64_t blk = 0; blk < (E + 63) / 64; blk++) {
        int64_t e = blk * 64, end = e + 64 < E ? e + 64 : E;
        while (e < end) {
            const float *a = A + (tok ? tok[e / k] : e / k) * D;
            if (e + 4 <= end && SAME_A(e, e + 3)) {
                dot4_f(a, W + idx[e] * D, W + idx[e + 1] * D, W + idx[e + 2] * D, W + idx[e + 3] * D, D, out + e);
                e += 4;
            } else { out[e] = dot_f(a, W + idx[e] * D, D); e++; }
        }
    }
    return 0;
}
#undef SAME_A

/* out[r] = sum over (t, j) with idx[t, j] = r of vals[t, j] * M[tok[t]] (tok NULL: M[t]), for the R output rows; each
   thread owns a block of output rows and scans every (t, j) for its own */
int scatter_rows(const int64_t *idx, const float *vals, const float *M, const int64_t *tok, int64_t N, int64_t k, int64_t D, float *out, int64_t R) {
    _Pragma("omp parallel if (N * k * D >= 65536)")
    {
        int64_t nt = team_size(), id = thread_id();
        int64_t r0 = R * id / nt, r1 = R * (id + 1) / nt;
        memset(out + r0 * D, 0, sizeof(float) * (r1 - r0) * D);
        for (int64_t t = 0; t < N; t++) {
            const float *m = M + (tok ? tok[t] : t) * D;
            for (int64_t j = 0; j < k; j++) {
                int64_t r = idx[t * k + j];
                if (r < r0 || r >= r1) continue;
                axpy_f(out + r * D, vals[t * k + j], m, D);
            }
        }
    }
    return 0;
}

/* ---- a sparse reconstruction's squared error, with its gradients, in one pass */

/* the group of latent l: the first g with l < bounds[g] (nested dictionary prefixes; one group: bounds = {S}) */
static inline int64_t group_of(const int64_t *bounds, int64_t G, int64_t l) {
    int64_t g = 0; while (g < G - 1 && l >= bounds[g]) g++; return g;
}
/* p = sum over the c entries with latents in [lo, hi) of v[j] Wd[idx[j]], 64 columns at a time in registers (not c
   read-modify-writes of p in memory, which ran 2x slower than PyTorch's embedding_bag) */
static void decode_block(float *p, const float *Wd, const int64_t *idx, const float *v, int64_t c, int64_t Do,
                         int64_t lo, int64_t hi) {
    int64_t d0 = 0;
#if defined(__AVX512F__)
    for (; d0 + 64 <= Do; d0 += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t j = 0; j < c; j++) {
            if (v[j] == 0 || idx[j] < lo || idx[j] >= hi) continue;
            const float *w = Wd + idx[j] * Do + d0; __m512 s = _mm512_set1_ps(v[j]);
            a0 = _mm512_fmadd_ps(s, _mm512_loadu_ps(w), a0); a1 = _mm512_fmadd_ps(s, _mm512_loadu_ps(w + 16), a1);
            a2 = _mm512_fmadd_ps(s, _mm512_loadu_ps(w + 32), a2); a3 = _mm512_fmadd_ps(s, _mm512_loadu_ps(w + 48), a3);
        }
        _mm512_storeu_ps(p + d0, a0); _mm512_storeu_ps(p + d0 + 16, a1);
        _mm512_storeu_ps(p + d0 + 32, a2); _mm512_storeu_ps(p + d0 + 48, a3);
    }
#endif
    for (; d0 < Do; d0 += 64) {
        int64_t m = Do - d0 < 64 ? Do - d0 : 64;
        float acc[64] = {0};
        for (int64_t j = 0; j < c; j++) {
            if (v[j] == 0 || idx[j] < lo || idx[j] >= hi) continue;
            const float *w = Wd + idx[j] * Do + d0; float a = v[j];
            if (m == 64) { _Pragma("omp simd") for (int64_t d = 0; d < 64; d++) acc[d] += a * w[d]; }
            else { _Pragma("omp simd") for (int64_t d = 0; d < m; d++) acc[d] += a * w[d]; }
        }
        memcpy(p + d0, acc, sizeof(float) * m);
    }
}
/* decode_block's two decodes of the same latents at once (p: values v, p2: values v2), each row read once */
static void decode2_block(float *p, float *p2, const float *Wd, const int64_t *idx, const float *v, const float *v2,
                          int64_t c, int64_t Do) {
    int64_t d0 = 0;
#if defined(__AVX512F__)
    for (; d0 + 64 <= Do; d0 += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps(), b3 = _mm512_setzero_ps();
        for (int64_t j = 0; j < c; j++) {
            const float *w = Wd + idx[j] * Do + d0;
            __m512 s = _mm512_set1_ps(v[j]), t = _mm512_set1_ps(v2[j]), w0 = _mm512_loadu_ps(w),
                   w1 = _mm512_loadu_ps(w + 16), w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48);
            a0 = _mm512_fmadd_ps(s, w0, a0); a1 = _mm512_fmadd_ps(s, w1, a1);
            a2 = _mm512_fmadd_ps(s, w2, a2); a3 = _mm512_fmadd_ps(s, w3, a3);
            b0 = _mm512_fmadd_ps(t, w0, b0); b1 = _mm512_fmadd_ps(t, w1, b1);
            b2 = _mm512_fmadd_ps(t, w2, b2); b3 = _mm512_fmadd_ps(t, w3, b3);
        }
        _mm512_storeu_ps(p + d0, a0); _mm512_storeu_ps(p + d0 + 16, a1);
        _mm512_storeu_ps(p + d0 + 32, a2); _mm512_storeu_ps(p + d0 + 48, a3);
        _mm512_storeu_ps(p2 + d0, b0); _mm512_storeu_ps(p2 + d0 + 16, b1);
        _mm512_storeu_ps(p2 + d0 + 32, b2); _mm512_storeu_ps(p2 + d0 + 48, b3);
    }
#else
    decode_block(p, Wd, idx, v, c, Do, 0, INT64_MAX); decode_block(p2, Wd, idx, v2, c, Do, 0, INT64_MAX); d0 = Do;
#endif
    for (; d0 < Do; d0++) {   /* AVX-512: the last Do % 64 columns, one at a time */
        float a = 0, b = 0;
        for (int64_t j = 0; j < c; j++) { float w = Wd[idx[j] * Do + d0]; a += v[j] * w; b += v2[j] * w; }
        p[d0] = a; p2[d0] = b;
    }
}
/* first row r of the R rows with tok[r] >= n (tok non-decreasing) */
static int64_t first_row(const int64_t *tok, int64_t R, int64_t n) {
    int64_t lo = 0, hi = R;
    while (lo < hi) { int64_t m = (lo + hi) / 2; if (tok[m] < n) lo = m + 1; else hi = m; }
    return lo;
}

/* Where thread i of n_th starts, so that each gets about as much work: in pass 1 the tokens split where the cost
   E(n) + TOKEN_COST * G * n of the tokens before n (E(n): their entries, rows of k; G groups of each token's error and
   q) splits evenly (tok: each row's token; without it, row n is token n), in pass 2 the latents split where the entries
   with work (nonzero codes, counted per latent by each of nt threads in hist [nt, S]; NULL: an even split) do. An even
   split of tokens and latents gave one thread 2.6x the other's entries in an ensemble of members with k from 4 to 32
   (members' tokens and latents side by side, those of small k first). A token's own work (its error, q, AuxK's error
   and their rows written) costs about what 24 entries do: fitted to the two threads' pass-1 times in an 8-member
   ensemble (64 dimensions, 1,024 tokens a member, timed inside the kernel), 155 ns a token against 6.6 ns an entry.
   With 6 (the cost in a separate AuxK pass, where a token had little else to do) the threads took 1.27 / 0.98 ms, with
   24 1.10 / 1.01 ms; steps 0.08 ms faster in that ensemble and 0.05-0.16 ms in the small-dictionary TopK (128 x 512,
   k 8, batches of 4,096; old and new on alternate steps). */
#define TOKEN_COST 24
#define PRIV_BYTES (1 << 20)
static int64_t token_split(const int64_t *tok, int64_t R, int64_t N, int64_t k, int64_t G, const int64_t *atok,
                           int64_t aR, int64_t ak, int64_t i, int64_t n_th) {
    if (i <= 0) return 0;
    if (i >= n_th) return N;
    if (!tok && !atok) return N * i / n_th;   /* (atok: a second list of entries, AuxK's, walked beside tok's) */
    int64_t c = TOKEN_COST * G, target = (R * k + aR * ak + c * N) * i / n_th, lo = 0, hi = N;   /* first n at it */
    while (lo < hi) {
        int64_t m = (lo + hi) / 2;
        int64_t e = (tok ? first_row(tok, R, m) : m) * k + (aR ? (atok ? first_row(atok, aR, m) : m) * ak : 0);
        if (e + c * m < target) lo = m + 1; else hi = m;
    }
    return lo;
}
static int64_t latent_split(const int32_t *hist, const int32_t *hist2, int64_t nt, int64_t S, int64_t i,
                            int64_t n_th) {
    if (i <= 0) return 0;
    if (i >= n_th) return S;
    if (!hist) return S * i / n_th;   /* (hist2, AuxK's counts, only beside hist) */
    int64_t E = 0, c = 0;
    for (int64_t j = 0; j < nt * S; j++) E += hist[j] + (hist2 ? hist2[j] : 0);
    int64_t target = E * i / n_th;
    for (int64_t l = 0; l < S; l++) {
        if (c >= target) return l;
        for (int64_t t = 0; t < nt; t++) c += hist[t * S + l] + (hist2 ? hist2[t * S + l] : 0);
    }
    return S;
}

/* sparse_sq_error's AuxK part of token n (of block b) in pass 1: its rows from *ra on (advanced past them), codes AV
   (aV with ReLU), r_a = r (the main error) + their decode into pa, |r_a|^2 into *acc; with grad, q_a = 2 r_a and each
   entry's dL/dv (GVa), ha counting entries per latent. Returns 2 for a latent outside [0, S), 4 for one of another
   block than b (aof: each latent's block, where not NULL). */
static int aux_token(int64_t n, int64_t b, int64_t *ra, const float *Wd, const int64_t *aidx, const int64_t *atok,
                     const float *aV, int64_t aR, int64_t ak, const int64_t *aof, int64_t S, int64_t Di, int64_t Do,
                     const float *r, float *pa, float *AV, float *GVa, float *Qa, int32_t *ha, int grad, double *acc) {
    int64_t r0 = *ra, r1 = r0, bad = 0, other = 0;
    while (r1 < aR && (atok ? atok[r1] == n : r1 == n)) r1++;
    int64_t e0 = r0 * ak, e1 = r1 * ak;
    for (int64_t e = e0; e < e1; e++) { bad |= (uint64_t)aidx[e] >= (uint64_t)S; AV[e] = aV[e] > 0 ? aV[e] : 0; }
    if (bad) return 2;
    for (int64_t e = e0; aof && e < e1; e++) other |= aof[aidx[e]] != b;
    if (other) return 4;
    decode_block(pa, Wd, aidx + e0, AV + e0, e1 - e0, Do, 0, S);
    float s = 0;
    _Pragma("omp simd reduction(+:s)")
    for (int64_t d = 0; d < Do; d++) { pa[d] += r[d]; s += pa[d] * pa[d]; }
    *acc += s;
    if (grad && e1 > e0) {
        float *q = Qa + n * Do; int64_t e = e0;
        _Pragma("omp simd")
        for (int64_t d = 0; d < Do; d++) q[d] = 2 * pa[d];
        for (; e + 4 <= e1; e += 4)
            dot4_f(q, Wd + aidx[e] * Do, Wd + aidx[e + 1] * Do, Wd + aidx[e + 2] * Do, Wd + aidx[e + 3] * Do, Do,
                   GVa + e);
        for (; e < e1; e++) GVa[e] = dot_f(q, Wd + aidx[e] * Do, Do);
        for (e = e0; e < e1; e++) { if (AV[e] == 0) GVa[e] = 0; else if (ha) ha[aidx[e]]++; }
    }
    *ra = r1;
    return 0;
}
/* sparse_sq_error's pass 2: the rows of latents [s0, s1) of the gradients gWeT, gbe, gWd, from every entry e (row r
   of k entries, token tok[r]; tok NULL: r) with a code V[e] or a code gradient GV[e]: gWd[l] += V[e] q, q the row of
   Q of the token and of l's group (G groups ending at bounds), gWeT[l] += GV[e] X[n], gbe[l] += GV[e]. The main
   pass's entries and AuxK's (one group) each go through it into their own gradients. */
static void rows_grad(int64_t s0, int64_t s1, const float *X, const int64_t *idx, const int64_t *tok, int64_t R,
                      int64_t k, int64_t Di, int64_t Do, const float *V, const float *GV, const float *Q,
                      const int64_t *bounds, int64_t G, float *gWeT, float *gbe, float *gWd) {
    memset(gWeT + s0 * Di, 0, sizeof(float) * (s1 - s0) * Di);
    memset(gWd + s0 * Do, 0, sizeof(float) * (s1 - s0) * Do);
    memset(gbe + s0, 0, sizeof(float) * (s1 - s0));
    for (int64_t rr = 0; rr < R; rr++) {
        int64_t n = tok ? tok[rr] : rr;
        for (int64_t e = rr * k; e < (rr + 1) * k; e++) {
            int64_t l = idx[e];
            if (l < s0 || l >= s1 || (GV[e] == 0 && V[e] == 0)) continue;
            axpy_f(gWd + l * Do, V[e], Q + (n * G + group_of(bounds, G, l)) * Do, Do);
            axpy_f(gWeT + l * Di, GV[e], X + n * Di, Di);
            gbe[l] += GV[e];
        }
    }
}

/* Token n's entries e (rows of k entries; row r belongs to token tok[r], non-decreasing; tok NULL: row n to token n)
   have codes v_e = X[n] . WeT[l] + be[l] for latent l = idx[e] (be may be NULL), or v_e = Vin[e] where the caller has
   them (Vin not NULL: the pre-activations the entries were chosen by, TopK's and AuxK's), set to 0 where
   sel[e] == 0 (sel may be NULL) and, with relu, where negative. Group g's error r_g = sum over entries of groups <= g
   of v_e Wd[l] - T[n] (+ T[n] with tneg: AuxK's target is the main pass's error negated, read as it is, not copied);
   cnt (not NULL) gets each latent's nonzero codes (fired latents and L0 with no pass over the entries of their own).
   The tokens form nb equal blocks (an ensemble's members; nb = 1 for one SAE), b = n / (N / nb): sq[b, g] = sum over
   block b's tokens of |r_g|^2, Rout[n] = r_{G-1} (the whole error), V = the codes. With gWeT (not NULL) also the
   gradients of L = sum_{b,g} w[b, g] sq[b, g]: gWeT [S, Di], gbe [S], gWd [S, Do], and gT [nb, Do] = dL/d(a bias added
   to every prefix's reconstruction of block b) = sum_n q_0(n), where q_h = sum_{g >= h} 2 w[b, g] r_g is what an entry
   of group h sees. With l1w (not NULL), L also has the term sum_b l1w[b] (sum of block b's codes), an L1 penalty on
   them: each kept code's dL/dv gains l1w[b], so the penalty's gradients cost nothing beyond the error's.
   Two passes: threads take blocks of tokens (codes, errors, each token's q and each entry's gradient dL/dv_e), then
   blocks of latents, each thread scanning every entry for its own latents' rows of the weight gradients (as in
   scatter_rows: no thread writes another's rows, and no private copies of the gradients to sum); with nested groups
   and small weights, one pass into private copies (priv, below).
   With aidx (not NULL), AuxK's pass rides along (Gao et al. 2024: dead latents reconstruct the residual y - y_hat =
   -r_{G-1}): entries aidx [aR, ak] (row r of token atok[r], non-decreasing; atok NULL: row n of token n) with codes
   aV (the pre-activations they were chosen by, ReLU applied) give token n's AuxK error r_a = r_{G-1} + sum_e aV[e]
   Wd[aidx[e]] from the main error still in registers, asq[b] = sum over block b's tokens of |r_a|^2, and with agWeT
   the gradients of sum_b asq[b] (unit weights: the caller scales them by AuxK's weights, which need sq; r_{G-1} is
   detached, as the residual is) into agWeT, agbe, agWd. With nb > 1, aof (each latent's block) says whose entries
   are whose: a latent of another block than its token's is an error, so that block b's weight scales the rows of
   block b's latents. AuxK covers the first aseg tokens of each block (AuxKConfig's aux_tokens; aseg = N / nb: all):
   the others add nothing to asq and must have no AuxK entries (else 3). Its own call read T and wrote an error and q
   for every token, and cost 0.5-0.65 ms a step with no entries at all, of a 9 ms small-dictionary step.
   Returns 1 out of memory, 2 a latent outside [0, S), 3 rows out of order or out of [0, N) (checked as pass 1 walks
   them, where the caller's checks took 0.05-0.07 ms a call: pass 2 runs only on rows all walked once), 4 an AuxK
   latent of another block than its token's. */
int sparse_sq_error(const float *X, const float *WeT, const float *be, const float *Wd, const float *T,
                    const int64_t *idx, const int64_t *tok, const float *sel, const float *Vin, const int64_t *bounds,
                    const float *w, const float *l1w, int64_t N, int64_t R, int64_t k, int64_t Di, int64_t Do,
                    int64_t S, int64_t G, int64_t nb, int64_t relu, int64_t tneg, float *Rout, float *V, float *sq,
                    int32_t *cnt, float *gWeT, float *gbe, float *gWd, float *gT, const int64_t *aidx,
                    const int64_t *atok, const float *aV, int64_t aR, int64_t ak, const int64_t *aof, float *asq,
                    float *agWeT, float *agbe, float *agWd, int64_t aseg) {
    int grad = gWeT != NULL, nt = 1, fail = 0, ag = aidx && agWeT;   /* ag: AuxK's gradients */
    int64_t E = R * k, Ea = aidx ? aR * ak : 0, W1 = S * (Di + Do + 1);   /* W1: floats of a copy of the gradients */
    if ((E + Ea + N) * (Di + Do) >= 65536) nt = max_threads();
    /* priv (nested groups, G > 1): each thread adds its entries' gradients to a copy of its own as it goes (thread
       0's: the outputs), the copies summed at the end, where they fit in L2 (PRIV_BYTES); else pass 2 (threads own
       latents, q of every token and group kept for it). Pass 2 reads G rows of q a token, which pass 1 wrote: at 4,096
       tokens, 128 dimensions, 512 latents, k = 8 and G = 4, the copies took a Matryoshka call from 1.88 to 1.48 ms
       (3.0 to 2.0 ms on a slower hour); with one group they cost more than they save (k = 8: 0.85 against 0.96 ms,
       k = 32: 2.7 against 3.4), and copies of 4 MB (256 dimensions, 2,048 latents) gave G = 4 nothing (5.9 ms). */
    int priv = grad && G > 1 && W1 * (int64_t)sizeof(float) <= PRIV_BYTES;
    float *Qs = NULL, *GV = NULL, *gTs = NULL, *Gp = NULL;   /* q of every (token, group) (priv: of each thread's
                                                                token), dL/dv of every entry, per-thread gT, copies */
    int32_t *hist = NULL;   /* each thread's nonzero codes per latent: cnt, and where pass 2 splits the latents */
    int64_t *span = NULL;   /* the rows [span[2i], span[2i + 1]) thread i walked: all R, in turn, if tok is in order */
    float *AV = NULL, *GVa = NULL, *Qa = NULL;   /* AuxK's codes, their dL/dv, each token's q_a = 2 r_a */
    int32_t *hista = NULL;   /* AuxK's entries per latent and thread: where pass 2 splits the latents, with hist */
    int64_t *aspan = NULL;   /* AuxK's rows walked by each thread, as span */
    if ((aidx && (!(AV = malloc(sizeof(float) * (Ea ? Ea : 1))) || !(aspan = malloc(sizeof(int64_t) * 2 * nt))
                  || (ag && (!(GVa = malloc(sizeof(float) * (Ea ? Ea : 1)))
                             || !(Qa = malloc(sizeof(float) * (N ? N : 1) * Do))
                             || (nt > 1 && !(hista = calloc((size_t)nt * S, sizeof(int32_t))))))))
        || !(span = malloc(sizeof(int64_t) * 2 * nt))
        || (grad && (!(Qs = malloc(sizeof(float) * (priv ? nt : N ? N : 1) * G * Do))
                     || !(GV = malloc(sizeof(float) * (E ? E : 1)))
                     || !(gTs = calloc((size_t)nt * nb * Do, sizeof(float)))
                     || (priv && nt > 1 && !(Gp = calloc((size_t)(nt - 1) * W1, sizeof(float))))
                     || (nt > 1 && !(hist = calloc((size_t)nt * S, sizeof(int32_t))))))
        || (cnt && !hist && !(hist = calloc((size_t)nt * S, sizeof(int32_t))))) {
        free(span); free(Qs); free(GV); free(gTs); free(Gp); free(hist);
        free(AV); free(GVa); free(Qa); free(hista); free(aspan); return 1;
    }
    memset(sq, 0, sizeof(float) * nb * G);
    if (aidx) memset(asq, 0, sizeof(float) * nb);
    int64_t seg = N / nb;   /* tokens a block */
    _Pragma("omp parallel num_threads(nt)")
    {
        int64_t id = thread_id(), n_th = team_size();
        float *P = malloc(sizeof(float) * (G + (aidx != NULL)) * Do);   /* each group's error, then AuxK's */
        double *acc = calloc(nb * (G + 1), sizeof(double)), *acc_a = acc + nb * G;   /* (AuxK's: the last nb) */
        if (!P || !acc) {
            _Pragma("omp atomic write") fail = 1;
        } else {
            int64_t n0 = token_split(tok, R, N, k, G, atok, Ea ? aR : 0, ak, id, n_th);
            int64_t n1 = token_split(tok, R, N, k, G, atok, Ea ? aR : 0, ak, id + 1, n_th);
            int64_t r = tok ? first_row(tok, R, n0) : n0, ra = !aidx ? 0 : atok ? first_row(atok, aR, n0) : n0;
            int32_t *h = hist ? hist + id * S : NULL, *ha = hista ? hista + id * S : NULL;
            if (aidx) aspan[2 * id] = ra < aR ? ra : aR;
            float *gE = id ? Gp + (id - 1) * W1 : gWeT, *gD = id ? gE + S * Di : gWd, *gB = id ? gD + S * Do : gbe;
            if (priv && !id) { memset(gWeT, 0, sizeof(float) * S * Di); memset(gWd, 0, sizeof(float) * S * Do);
                               memset(gbe, 0, sizeof(float) * S); }
            span[2 * id] = r < R ? r : R;   /* (without tok, or with none: row n0 may lie past the last) */
            for (int64_t n = n0; n < n1; n++) {
                int64_t re = r;
                while (re < R && (tok ? tok[re] == n : re == n)) re++;
                const float *x = X + n * Di, *t = T + n * Do, *wb = w + n / seg * G;
                int64_t e = r * k, e1 = re * k, bad = 0;
                for (int64_t j = e; j < e1; j++) bad |= (uint64_t)idx[j] >= (uint64_t)S;   /* a latent outside [0, S) */
                if (bad) { _Pragma("omp atomic write") fail = 2; break; }
                /* entries left out at the end of a token's rows (the padding of `pack_tokens`' last row): no work */
                if (sel) while (e1 > e && sel[e1 - 1] == 0) { e1--; V[e1] = 0; if (grad) GV[e1] = 0; }
                if (Vin) memcpy(V + e, Vin + e, sizeof(float) * (e1 - e));   /* the codes given: not recomputed */
                else {
                    for (; e + 4 <= e1; e += 4)
                        dot4_f(x, WeT + idx[e] * Di, WeT + idx[e + 1] * Di, WeT + idx[e + 2] * Di,
                               WeT + idx[e + 3] * Di, Di, V + e);
                    for (; e < e1; e++) V[e] = dot_f(x, WeT + idx[e] * Di, Di);
                }
                for (e = r * k; e < e1; e++) {
                    int64_t l = idx[e]; float v = V[e] + (be && !Vin ? be[l] : 0);
                    if ((sel && sel[e] == 0) || (relu && v < 0)) v = 0;
                    V[e] = v;
                    if (h) h[l] += v != 0;
                }
                for (int64_t g = 0; g < G; g++)   /* group g: latents [bounds[g - 1], bounds[g]), the last to S */
                    decode_block(P + g * Do, Wd, idx + r * k, V + r * k, e1 - r * k, Do, g ? bounds[g - 1] : 0,
                                 g < G - 1 ? bounds[g] : S);
                for (int64_t g = 0; g < G; g++) {   /* P[g] becomes r_g */
                    float *p = P + g * Do, s = 0;
                    const float *prev = g ? P + (g - 1) * Do : t, sign = g || tneg ? 1 : -1;
                    _Pragma("omp simd reduction(+:s)")
                    for (int64_t d = 0; d < Do; d++) { p[d] += sign * prev[d]; s += p[d] * p[d]; }
                    acc[n / seg * G + g] += s;
                }
                memcpy(Rout + n * Do, P + (G - 1) * Do, sizeof(float) * Do);
                if (grad) {
                    float *Q = Qs + (priv ? id : n) * G * Do;
                    for (int64_t g = G - 1; g >= 0; g--) {
                        float *q = Q + g * Do, c = 2 * wb[g]; const float *p = P + g * Do;
                        const float *nx = q + Do;   /* q_{g+1} */
                        if (g < G - 1) { _Pragma("omp simd") for (int64_t d = 0; d < Do; d++) q[d] = c * p[d] + nx[d]; }
                        else { _Pragma("omp simd") for (int64_t d = 0; d < Do; d++) q[d] = c * p[d]; }
                    }
                    axpy_f(gTs + (id * nb + n / seg) * Do, 1, Q, Do);
                    for (e = r * k; e < e1; e++) {   /* dL/dv, four entries of one group at once where they can */
                        int64_t h = group_of(bounds, G, idx[e]); const float *q = Q + h * Do;
                        if (e + 4 <= e1 && (G == 1 || (group_of(bounds, G, idx[e + 1]) == h
                                                       && group_of(bounds, G, idx[e + 2]) == h
                                                       && group_of(bounds, G, idx[e + 3]) == h))) {
                            dot4_f(q, Wd + idx[e] * Do, Wd + idx[e + 1] * Do, Wd + idx[e + 2] * Do,
                                   Wd + idx[e + 3] * Do, Do, GV + e);
                            e += 3;
                        } else GV[e] = dot_f(q, Wd + idx[e] * Do, Do);
                    }
                    float l1 = l1w ? l1w[n / seg] : 0;
                    for (e = r * k; e < e1; e++)
                        GV[e] = (sel && sel[e] == 0) || (relu && V[e] <= 0) ? 0 : GV[e] + l1;
                    if (priv)
                        for (e = r * k; e < e1; e++) {
                            int64_t l = idx[e];
                            if (GV[e] == 0 && V[e] == 0) continue;
                            axpy_f(gD + l * Do, V[e], Q + group_of(bounds, G, l) * Do, Do);
                            axpy_f(gE + l * Di, GV[e], x, Di);
                            gB[l] += GV[e];
                        }
                }
                r = re;
                int covered = aidx && n % seg < aseg;   /* AuxK's tokens: each block's first aseg */
                int bad_aux = !covered ? 0 : aux_token(n, n / seg, &ra, Wd, aidx, atok, aV, aR, ak, aof, S, Di, Do,
                                                       P + (G - 1) * Do, P + G * Do, AV, GVa, Qa, ha, ag,
                                                       acc_a + n / seg);
                if (bad_aux) {
                    _Pragma("omp atomic write") fail = bad_aux;
                    break;
                }
            }
            span[2 * id + 1] = r < R ? r : R;
            if (aidx) aspan[2 * id + 1] = ra < aR ? ra : aR;
            for (int64_t g = 0; g < nb * G; g++) { float a = (float)acc[g]; _Pragma("omp atomic") sq[g] += a; }
            for (int64_t b = 0; aidx && b < nb; b++) { float a = (float)acc_a[b]; _Pragma("omp atomic") asq[b] += a; }
        }
        free(P); free(acc);
        _Pragma("omp barrier")
        _Pragma("omp single")
        if (!fail) {   /* every row walked once, token by token: else tok was out of order or out of [0, N) */
            int64_t at = 0;
            for (int64_t i = 0; i < n_th && at >= 0; i++) at = span[2 * i] == at ? span[2 * i + 1] : -1;
            if (at != R) fail = 3;
            at = 0;
            for (int64_t i = 0; aidx && i < n_th && at >= 0; i++) at = aspan[2 * i] == at ? aspan[2 * i + 1] : -1;
            if (aidx && at != aR) fail = 3;
        }
        int64_t s0 = latent_split(hist, hista, nt, S, id, n_th), s1 = latent_split(hist, hista, nt, S, id + 1, n_th);
        if (cnt && !fail)
            for (int64_t l = s0; l < s1; l++) {
                int32_t c = 0;
                for (int64_t t = 0; t < n_th; t++) c += hist[t * S + l];
                cnt[l] = c;
            }
        if (priv && !fail)   /* the copies of threads 1.. added to thread 0's, each thread some latents' rows */
            for (int64_t t = 1; t < n_th; t++) {
                const float *cE = Gp + (t - 1) * W1, *cD = cE + S * Di, *cB = cD + S * Do;
                axpy_f(gWeT + s0 * Di, 1, cE + s0 * Di, (s1 - s0) * Di);
                axpy_f(gWd + s0 * Do, 1, cD + s0 * Do, (s1 - s0) * Do);
                axpy_f(gbe + s0, 1, cB + s0, s1 - s0);
            }
        else if (grad && !fail) rows_grad(s0, s1, X, idx, tok, R, k, Di, Do, V, GV, Qs, bounds, G, gWeT, gbe, gWd);
        if (ag && !fail) rows_grad(s0, s1, X, aidx, atok, aR, ak, Di, Do, AV, GVa, Qa, bounds, 1, agWeT, agbe, agWd);
    }
    if (grad) {
        memset(gT, 0, sizeof(float) * nb * Do);
        for (int64_t th = 0; th < nt; th++) axpy_f(gT, 1, gTs + th * nb * Do, nb * Do);
    }
    free(span); free(Qs); free(GV); free(gTs); free(Gp); free(hist);
    free(AV); free(GVa); free(Qa); free(hista); free(aspan);
    return fail;
}

/* ---- Gated's losses on its open gates, in one pass */

/* Gated SAEs (Rajamanoharan et al. 2024) on entries: entry e (token tok[e], non-decreasing; latent l = idx[e]) has
   h = X[tok[e]] . WeT[l], the gate's code A[e] = max(h + bg[l], 0) and the magnitude's M[e] = max(er[l] h + bm[l], 0)
   (er = exp(r_mag)). Token n's reconstructions, through the same decoder values, err r = sum_e M[e] Wd[l] - T[n] and
   ra = sum_e A[e] Wd[l] - T[n]; L = c[0] sum_n |r|^2 + c[1] sum_n |ra|^2 + c[2] sum_e A[e], and sq = {sum_n |r|^2,
   sum_n |ra|^2, sum_e A[e]}. The gradients of L: gWeT [S, Di] (through h: dL/dM er + dL/dA), gbg, gbm, gr (of r_mag),
   gh (each latent's summed dL/dh: the centring's), gWd [S, Do] (from r, and with aux_dec from ra too), and gT, gTa [Do]
   (of a bias added to every reconstruction r, ra). Each entry's encoder and decoder rows are read in one pass for both
   reconstructions and each gradient row is updated once, where two sparse_sq_error passes (and the magnitude encoder
   W_enc exp(r_mag) built apart) moved each twice. Two passes, as in sparse_sq_error: blocks of tokens, then of latents. */
int gated_sq_error(const float *X, const float *WeT, const float *bg, const float *bm, const float *er,
                   const float *Wd, const float *T, const int64_t *idx, const int64_t *tok, const float *c,
                   int64_t N, int64_t E, int64_t Di, int64_t Do, int64_t S, int64_t aux_dec,
                   float *M, float *A, float *sq, float *gWeT, float *gbg, float *gbm, float *gr, float *gh,
                   float *gWd, float *gT, float *gTa) {
    int nt = 1, fail = 0;
    if ((E + N) * (Di + Do) >= 65536) nt = max_threads();
    float *Q = malloc(sizeof(float) * (N ? N : 1) * 2 * Do);   /* each token's 2 c[0] r, then 2 c[1] ra */
    float *GM = malloc(sizeof(float) * (E ? E : 1) * 3), *GA = GM + E, *H = GA + E;   /* dL/dM, dL/dA and h a entry */
    float *gTs = calloc((size_t)nt * 2 * Do, sizeof(float));
    if (!Q || !GM || !gTs) { free(Q); free(GM); free(gTs); return 1; }
    memset(sq, 0, sizeof(float) * 3);
    _Pragma("omp parallel num_threads(nt)")
    {
        int64_t id = thread_id(), n_th = team_size();
        float *P = malloc(sizeof(float) * 2 * Do); double acc[3] = {0, 0, 0};
        if (!P) {
            _Pragma("omp atomic write") fail = 1;
        } else {
            int64_t n0 = N * id / n_th, n1 = N * (id + 1) / n_th, e0 = first_row(tok, E, n0);
            float *gt = gTs + id * 2 * Do;
            for (int64_t n = n0; n < n1; n++) {
                int64_t e1 = e0, e;
                while (e1 < E && tok[e1] == n) e1++;
                const float *x = X + n * Di, *t = T + n * Do;
                for (e = e0; e + 4 <= e1; e += 4)
                    dot4_f(x, WeT + idx[e] * Di, WeT + idx[e + 1] * Di, WeT + idx[e + 2] * Di, WeT + idx[e + 3] * Di,
                           Di, H + e);
                for (; e < e1; e++) H[e] = dot_f(x, WeT + idx[e] * Di, Di);
                for (e = e0; e < e1; e++) {
                    int64_t l = idx[e]; float a = H[e] + bg[l], m = er[l] * H[e] + bm[l];
                    A[e] = a > 0 ? a : 0; M[e] = m > 0 ? m : 0; acc[2] += A[e];
                }
                decode2_block(P, P + Do, Wd, idx + e0, M + e0, A + e0, e1 - e0, Do);
                float *q = Q + n * 2 * Do, *qa = q + Do, sm = 0, sa = 0, cm = 2 * c[0], ca = 2 * c[1];
                _Pragma("omp simd reduction(+:sm,sa)")
                for (int64_t d = 0; d < Do; d++) {
                    float r = P[d] - t[d], ra = P[Do + d] - t[d];
                    sm += r * r; sa += ra * ra; q[d] = cm * r; qa[d] = ca * ra;
                }
                acc[0] += sm; acc[1] += sa;
                axpy_f(gt, 1, q, 2 * Do);   /* q and qa side by side */
                for (e = e0; e < e1; e += 2) {   /* both errors' dot products with each row, two rows at once */
                    const float *w = Wd + idx[e] * Do, *w1 = e + 1 < e1 ? Wd + idx[e + 1] * Do : w;
                    float g[4];
                    dot4x_f(q, qa, q, qa, w, w, w1, w1, Do, g);
                    for (int64_t i = 0; i < 2 && e + i < e1; i++) {
                        GM[e + i] = M[e + i] > 0 ? g[2 * i] : 0;
                        GA[e + i] = A[e + i] > 0 ? g[2 * i + 1] + c[2] : 0;
                    }
                }
                e0 = e1;
            }
            for (int g = 0; g < 3; g++) { float a = (float)acc[g]; _Pragma("omp atomic") sq[g] += a; }
        }
        free(P);
        _Pragma("omp barrier")
        if (!fail) {
            int64_t s0 = S * id / n_th, s1 = S * (id + 1) / n_th;
            memset(gWeT + s0 * Di, 0, sizeof(float) * (s1 - s0) * Di);
            memset(gWd + s0 * Do, 0, sizeof(float) * (s1 - s0) * Do);
            for (int64_t l = s0; l < s1; l++) gbg[l] = gbm[l] = gr[l] = gh[l] = 0;
            for (int64_t e = 0; e < E; e++) {
                int64_t l = idx[e];
                if (l < s0 || l >= s1) continue;
                const float *q = Q + tok[e] * 2 * Do;
                float gm = GM[e], ga = GA[e], dh = gm * er[l] + ga;
                if (aux_dec) axpy2_f(gWd + l * Do, M[e], q, A[e], q + Do, Do);   /* both reconstructions' */
                else if (M[e] != 0) axpy_f(gWd + l * Do, M[e], q, Do);
                if (dh != 0) axpy_f(gWeT + l * Di, dh, X + tok[e] * Di, Di);
                gbm[l] += gm; gbg[l] += ga; gh[l] += dh; gr[l] += gm * er[l] * H[e];
            }
        }
    }
    memset(gT, 0, sizeof(float) * Do); memset(gTa, 0, sizeof(float) * Do);
    for (int64_t th = 0; th < nt; th++) {
        axpy_f(gT, 1, gTs + th * 2 * Do, Do); axpy_f(gTa, 1, gTs + th * 2 * Do + Do, Do);
    }
    free(Q); free(GM); free(gTs);
    return fail;
}

/* ---- gradient clipping */

/* the square root of x >= 0 in double without libm: Newton's method from x's exponent halved (0, inf, NaN: x) */
static double sqrt_d(double x) {
    if (!(x > 0) || x > 1.7976931348623157e308) return x;
    union { double d; uint64_t u; } v = {x};
    v.u = (v.u >> 1) + ((uint64_t)1023 << 51);   /* within 6% of the root: six steps reach double precision */
    double r = v.d;
    for (int i = 0; i < 6; i++) r = 0.5 * (r + x / r);
    return r;
}

/* SAE.before_step and clip_grad_norm_ in one call: `nt` fp32 gradients, tensor t at address g[t] with len[t] rows of
   wid[t] values; row r of tensor t belongs to group rg[t][r] where rg[t] is not 0, else to group grp[t] (of G).
   Tensor `dec` (-1: none) is a unit-norm decoder's gradient, rows of W: each row first loses its part along its W row,
   g - (g.w) w / max(|w|^2, 1e-12). norms[0] holds max_norm on entry; then norms[j] = the norm of group j's gradient,
   and where max_norm > 0 each group is scaled by min(1, max_norm / (norms[j] + 1e-6)) (NaN where that is: as torch
   clamps it). Returns 1: no memory. */
int clip_grads(int64_t nt, const int64_t *g, const int64_t *len, const int64_t *wid, const int64_t *grp,
               const int64_t *rg, int64_t G, const float *W, int64_t dec, float *norms) {
    const float mx = norms[0];
    double *tot = calloc(G, sizeof(double)); float *coef = malloc(sizeof(float) * G);
    int fail = !tot || !coef; int64_t work = 0;
    for (int64_t t = 0; t < nt; t++) work += len[t] * wid[t];
    _Pragma("omp parallel if (work >= 32768 && !fail)")
    {
        double *acc = fail ? NULL : calloc(G, sizeof(double));   /* this thread's sums of squares */
        if (!acc) { _Pragma("omp atomic write") fail = 1; }
        for (int64_t t = 0; t < nt; t++) {
            float *gt = (float *)g[t]; const int64_t *rt = (const int64_t *)rg[t]; int64_t w = wid[t];
            _Pragma("omp for schedule(static) nowait")
            for (int64_t r = 0; r < len[t]; r++) {
                if (!acc) continue;
                float *row = gt + r * w;
                if (t == dec) {
                    const float *wr = W + r * w; float n2 = dot_f(wr, wr, w);
                    axpy_f(row, -dot_f(row, wr, w) / (n2 > 1e-12f ? n2 : 1e-12f), wr, w);
                }
                acc[rt ? rt[r] : grp[t]] += dot_f(row, row, w);
            }
        }
        if (acc) {
            _Pragma("omp critical")
            for (int64_t j = 0; j < G; j++) tot[j] += acc[j];
        }
        free(acc);
        _Pragma("omp barrier")
        _Pragma("omp single")
        for (int64_t j = 0; j < G && !fail; j++) {
            norms[j] = (float)sqrt_d(tot[j]);
            float c = mx / (norms[j] + 1e-6f);
            coef[j] = mx > 0 && !(c >= 1) ? c : 1;   /* c NaN: NaN, as torch's clamp(max=1) keeps it */
        }
        for (int64_t t = 0; t < nt && !fail; t++) {
            float *gt = (float *)g[t]; const int64_t *rt = (const int64_t *)rg[t]; int64_t w = wid[t];
            _Pragma("omp for schedule(static) nowait")
            for (int64_t r = 0; r < len[t]; r++) {
                float c = coef[rt ? rt[r] : grp[t]], *row = gt + r * w;
                if (c != 1) { _Pragma("omp simd") for (int64_t i = 0; i < w; i++) row[i] *= c; }
            }
        }
    }
    free(tot); free(coef);
    return fail;
}
