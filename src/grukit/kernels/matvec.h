// The products inside the time loop, written by hand. A library GEMM call per
// step pays for dispatch and packs U again every time; here U^T is packed once
// per sequence and a register-tiled loop (12 or 16 accumulators) runs near the
// machine's peak once a few rows share each load of U (a batch of one is bound
// by cache bandwidth instead). Shapes legend as in driver.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/vec/functional.h>

#include <cstring>
#include <vector>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common.h"

namespace grukit {

using at::Tensor;

// y (rows,) = W (rows, cols) @ v (cols,): dot products, four rows at a time so
// that eight independent sums are in flight (one row alone waits on the latency
// of its own additions). For a single step, where W is used once.
template <typename A, typename T, typename Y>
inline void matvec(const T* W, int64_t rows, int64_t cols, const T* v, Y* y) {
  constexpr int64_t V = Vec<A>::size();
  const auto sum = [](Vec<A>& a, Vec<A>& b) { return a + b; };
  int64_t k = 0;
  for (; k + 4 <= rows; k += 4) {
    Vec<A> s[4][2];
    for (auto& row : s) row[0] = row[1] = Vec<A>(A(0));
    int64_t i = 0;
    for (; i + 2 * V <= cols; i += 2 * V) {
      const Vec<A> v0 = load<A>(v + i, V), v1 = load<A>(v + i + V, V);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        s[q][0] = at::vec::fmadd(load<A>(W + (k + q) * cols + i, V), v0, s[q][0]);
        s[q][1] = at::vec::fmadd(load<A>(W + (k + q) * cols + i + V, V), v1, s[q][1]);
      }
    }
    for (; i < cols; i += V) {
      const int64_t m = std::min(V, cols - i);
      const Vec<A> v0 = load<A>(v + i, m);
      for (int q = 0; q < 4; ++q) s[q][0] = at::vec::fmadd(load<A>(W + (k + q) * cols + i, m), v0, s[q][0]);
    }
    for (int q = 0; q < 4; ++q) y[k + q] = static_cast<Y>(at::vec::vec_reduce_all<A>(sum, s[q][0] + s[q][1]));
  }
  for (; k < rows; ++k) {
    Vec<A> s(A(0));
    for (int64_t i = 0; i < cols; i += V) {
      const int64_t m = std::min(V, cols - i);
      s = at::vec::fmadd(load<A>(W + k * cols + i, m), load<A>(v + i, m), s);
    }
    y[k] = static_cast<Y>(at::vec::vec_reduce_all<A>(sum, s));
  }
}

// One register tile of c = a @ b: R rows of a (R, K) times the first n columns
// (at most C vectors) of b, accumulated in A. Per k: C loads of b, R
// broadcasts of a, R * C fused multiply-adds, all in registers. a[r, k] is at
// a + r * lda + k * ka (ka = 1: rows; lda = 1: a transposed view, e.g. dG^T).
// Vector q of b's row k is at b + k * ldb + q * qb: qb = V for a matrix in
// rows (K, ldb), qb = K * V for panels (pack_rhs).
template <int R, int C, typename T, typename A, typename Tc>
inline void mm_tile(const T* a, int64_t lda, int64_t K, const T* b, int64_t ldb, Tc* c, int64_t ldc, int64_t n,
                    int64_t ka, int64_t qb, bool add = false) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t last = n - (C - 1) * V;  // width of the last vector, 1..V
  Vec<A> acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) acc[r][q] = add ? load<A>(c + r * ldc + q * V, q == C - 1 ? last : V) : Vec<A>(A(0));
  for (int64_t k = 0; k < K; ++k) {
    Vec<A> bv[C];
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) bv[q] = load<A>(b + k * ldb + q * qb, q == C - 1 ? last : V);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec<A> ar(static_cast<A>(a[r * lda + k * ka]));
#pragma GCC unroll 8
      for (int q = 0; q < C; ++q) acc[r][q] = at::vec::fmadd(ar, bv[q], acc[r][q]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) store<A>(c + r * ldc + q * V, acc[r][q], q == C - 1 ? last : V);
}

// The register tile of small_mm and gemm: kTileRows rows by kTileCols vectors of
// accumulators, plus one vector of b per column and a broadcast of a. With
// AVX-512's 32 registers, 4 x 4 (16 + 4 + 1). AVX2 has 16: 4 x 4 spilled
// accumulators to the stack, so 4 x 3 (12 + 3 + 1). Measured on an AMD EPYC
// (Zen 3, AVX2) at one thread, 128 x 1024 x 3072 per-step product: 52-54
// GFLOP/s at 4 x 4, 85-89 at 4 x 3 (torch.mm on the same shape: 64).
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kTileCols = 4;
#else
constexpr int kTileCols = 3;
#endif
constexpr int kTileRows = 4;

template <int R, typename T, typename A, typename Tc>
inline void mm_tile_cols(int cols, const T* a, int64_t lda, int64_t K, const T* b, int64_t ldb, Tc* c, int64_t ldc,
                         int64_t n, int64_t ka, int64_t qb, bool add = false) {
  switch (cols) {
    case 1: return mm_tile<R, 1, T, A, Tc>(a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
    case 2: return mm_tile<R, 2, T, A, Tc>(a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
    case 3: if constexpr (kTileCols > 3) return mm_tile<R, 3, T, A, Tc>(a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
    [[fallthrough]];
    default: return mm_tile<R, kTileCols, T, A, Tc>(a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
  }
}

// The tile for rows (1 to kTileRows) by cols vectors, as mm_tile_cols.
template <typename T, typename A, typename Tc>
inline void mm_tile_rows(int64_t rows, int cols, const T* a, int64_t lda, int64_t K, const T* b, int64_t ldb, Tc* c,
                         int64_t ldc, int64_t n, int64_t ka, int64_t qb, bool add = false) {
  switch (rows) {
    case 1: return mm_tile_cols<1, T, A, Tc>(cols, a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
    case 2: return mm_tile_cols<2, T, A, Tc>(cols, a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
    case 3: return mm_tile_cols<3, T, A, Tc>(cols, a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
    default: return mm_tile_cols<4, T, A, Tc>(cols, a, lda, K, b, ldb, c, ldc, n, ka, qb, add);
  }
}

// c (M, N) = a (M, K) @ b (K, N); rows of a, b, c lda, ldb, ldc apart (a's k
// stride ka, b's vector stride qb, see mm_tile). Column strips of kTileCols
// vectors, kTileRows rows at a time, so that each strip of b is read from cache
// once per kTileRows rows.
//
// Fewer rows than a tile (batch 1 to 3 in the per-step products) take wider
// strips, so that more sums are in flight: with one row and kTileCols vectors,
// each k waits on the latency of the previous k's additions. M = 2 and 3 keep
// kTileRows * kTileCols sums; M = 1 takes 2 * kTileCols vectors rather than
// all: b's panels lie K * V floats apart, 4 KB multiples at H128, H256, ...,
// and 12 of them at once overran the L1 cache's 8 ways (M = 1, H512: 2x slower).
// Measured on Zen 3, one thread, b = U^T (H, 3H) hot in cache, H32-H512, each
// product alone: M = 1 1.1-1.5x faster in rows (the tiny passes' layout), 1.0-1.2x
// in panels; M = 2 1.1-1.4x; M = 3 1.0-1.2x. Each sum still runs over k in order,
// so the bits are the same.
template <int R, int C, typename T, typename A, typename Tc>
inline int64_t wide_strips(const T* a, int64_t lda, int64_t K, const T* b, int64_t ldb, int64_t N, Tc* c, int64_t ldc,
                           int64_t ka, int64_t qb) {
  static_assert(C <= 8, "mm_tile unrolls 8 deep: a wider tile keeps its sums on the stack");
  constexpr int64_t V = Vec<A>::size();
  int64_t j = 0;
  for (; j + C * V <= N; j += C * V) mm_tile<R, C, T, A, Tc>(a, lda, K, b + j / V * qb, ldb, c + j, ldc, C * V, ka, qb);
  return j;
}

template <typename T, typename A, typename Tc = T>
void small_mm(const T* a, int64_t lda, int64_t M, int64_t K, const T* b, int64_t ldb, int64_t N, Tc* c, int64_t ldc,
              int64_t ka = 1, int64_t qb = Vec<A>::size()) {
  constexpr int64_t V = Vec<A>::size();
  constexpr int kSums = kTileRows * kTileCols;  // sums in flight in a full tile
  int64_t j0 = 0;  // the columns the wide strips leave, in the usual strips
  if (M == 1) j0 = wide_strips<1, 2 * kTileCols, T, A, Tc>(a, lda, K, b, ldb, N, c, ldc, ka, qb);
  if (M == 2) j0 = wide_strips<2, kSums / 2, T, A, Tc>(a, lda, K, b, ldb, N, c, ldc, ka, qb);
  if (M == 3) j0 = wide_strips<3, kSums / 3, T, A, Tc>(a, lda, K, b, ldb, N, c, ldc, ka, qb);
  for (int64_t j = j0; j < N; j += kTileCols * V) {
    const int64_t n = std::min(kTileCols * V, N - j);
    const int cols = static_cast<int>((n + V - 1) / V);
    const T* bj = b + j / V * qb;  // the strip's first vector
    for (int64_t i = 0; i < M; i += kTileRows) {
      const T* ai = a + i * lda;
      Tc* ci = c + i * ldc + j;
      mm_tile_rows<T, A, Tc>(std::min<int64_t>(kTileRows, M - i), cols, ai, lda, K, bj, ldb, ci, ldc, n, ka, qb);
    }
  }
}

// dst (N x M, leading dimension ld_dst) = src (M x N, leading dimension
// ld_src) transposed: the packing of W^T and U^T (pack_rhs, gemm_block, the
// tiny passes). ATen's transpose_mxn<float> is vectorised in AVX-512 builds
// only; elsewhere it is a scalar loop whose every store lands on another cache
// line (W^T and U^T at T20 B1 I32 H64, 192 x 32 and 192 x 64: 30% of the
// native inference call on Zen 3 in a profile, 3x what the blocks below take).
// Here, in AVX2 builds, 8 x 8 blocks go through registers; the values move bit
// for bit either way.
inline void transpose_f32(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, int64_t M, int64_t N) {
#if defined(CPU_CAPABILITY_AVX2)
  int64_t i = 0;
  for (; i + 8 <= M; i += 8) {
    int64_t j = 0;
    for (; j + 8 <= N; j += 8) {
      const float* s = src + i * ld_src + j;
      __m256 r[8], t[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(s + k * ld_src);
      for (int k = 0; k < 8; k += 2) {  // pairs of rows interleaved
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
      }
      for (int k = 0; k < 8; k += 4) {  // then quads: each 128-bit lane holds one column of 4 rows
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
      }
      float* d = dst + j * ld_dst + i;
      for (int k = 0; k < 4; ++k) {  // rows 0-3's lanes with rows 4-7's: whole columns
        _mm256_storeu_ps(d + k * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
        _mm256_storeu_ps(d + (k + 4) * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
      }
    }
    for (; j < N; ++j)
      for (int64_t k = 0; k < 8; ++k) dst[j * ld_dst + i + k] = src[(i + k) * ld_src + j];
  }
  for (; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) dst[j * ld_dst + i] = src[i * ld_src + j];
#else
  at::vec::transpose_mxn<float>(src, ld_src, dst, ld_dst, static_cast<int>(M), static_cast<int>(N));
#endif
}

// c (M, N) = a (M, K) @ b (K, N), or c += a @ b, in float: the hoisted
// products (input projection, weight gradients, dx) on CPUs where torch's GEMM
// library runs below this kernel (own_gemm in driver.cpp). Blocked as GEMM
// libraries block: the depth in slices of kGemmDepth, each slice of b packed in
// panels (V columns, k-major, as pack_rhs) that stay in cache while a's rows
// go by, kGemmRows at a time. a is read where it lies, as small_mm reads it:
// its rows or its transposed view (dG^T) give the register tile R values per
// k from one or R nearby lines, and copying it cost more than the arithmetic
// where N is small (dW_ih at T512 B16 I64 H256: 768 x 8192 x 64). The threads
// share the rows (or, where N > M, the column strips) in whole tiles, each
// packing its own b. Every sum runs over k in the same order (slice by slice,
// c holding the partial sums) whatever the threads, so the bits do not
// depend on them.
// a[i, k] is at a + i * sa + k * ka, b[k, j] at b + k * sb + j * sj (rows or
// transposed views), c's rows ldc apart.
constexpr int64_t kGemmDepth = 256, kGemmRows = 96, kPackColumns = 128;

// Rows [i0, i1) and columns [j0, j1) of c (see gemm).
inline void gemm_block(const float* a, int64_t sa, int64_t ka, int64_t i0, int64_t i1, int64_t K, const float* b,
                       int64_t sb, int64_t sj, int64_t j0, int64_t j1, float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t V = Vec<float>::size(), S = kTileCols * V;  // S: a strip's columns
  const int64_t n = j1 - j0, panels = (n + V - 1) / V;
  // a transposed (dG^T in the weight gradients) is copied per block, k-major per
  // tile, where there are columns enough to pay for the copy (see above)
  const bool pack_a = ka != 1 && n >= kPackColumns;
  thread_local std::vector<float> bp, ap;
  bp.resize(panels * kGemmDepth * V);
  if (pack_a) ap.resize(kGemmRows * kGemmDepth);
  for (int64_t p0 = 0; p0 < K; p0 += kGemmDepth) {
    const int64_t kc = std::min(kGemmDepth, K - p0);
    for (int64_t q = 0; q < panels; ++q) {  // b's slice in panels (kc, V); columns past j1 never read
      float* panel = bp.data() + q * kc * V;
      const int64_t w = std::min(V, n - q * V);
      const float* src = b + p0 * sb + (j0 + q * V) * sj;
      if (sj == 1) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(panel + k * V, src + k * sb, w * sizeof(float));
      } else if (sb == 1) {  // b transposed (W^T): each column of b is a row in memory
        transpose_f32(src, sj, panel, V, w, kc);
      } else {
        for (int64_t v = 0; v < w; ++v)
          for (int64_t k = 0; k < kc; ++k) panel[k * V + v] = src[v * sj + k * sb];
      }
    }
    const bool add = accumulate || p0 > 0;
    for (int64_t ib = i0; ib < i1; ib += kGemmRows) {
      const int64_t ie = std::min(i1, ib + kGemmRows);
      for (int64_t i = ib; pack_a && i < ie; i += kTileRows) {
        const int64_t R = std::min<int64_t>(kTileRows, ie - i);
        float* dst = ap.data() + (i - ib) * kc;
        const float* src = a + i * sa + p0 * ka;
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t r = 0; r < R; ++r) dst[k * R + r] = src[r * sa + k * ka];
      }
      for (int64_t s = 0; s < n; s += S) {
        const int64_t w = std::min(S, n - s);
        const int cols = static_cast<int>((w + V - 1) / V);
        const float* bs = bp.data() + s / V * kc * V;
        for (int64_t i = ib; i < ie; i += kTileRows) {
          const int64_t R = std::min<int64_t>(kTileRows, ie - i);
          const float* ai = pack_a ? ap.data() + (i - ib) * kc : a + i * sa + p0 * ka;
          const int64_t lda = pack_a ? 1 : sa, kstep = pack_a ? R : ka;
          float* ci = c + i * ldc + j0 + s;
          mm_tile_rows<float, float, float>(R, cols, ai, lda, kc, bs, V, ci, ldc, w, kstep, kc * V, add);
        }
      }
    }
  }
}

inline void gemm(const float* a, int64_t sa, int64_t ka, int64_t M, int64_t K, const float* b, int64_t sb, int64_t sj,
                 int64_t N, float* c, int64_t ldc, bool accumulate) {
  constexpr int64_t S = kTileCols * Vec<float>::size();
  if (K == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.f);
    return;
  }
  const bool by_rows = M >= N;  // what the threads share: row tiles, or column strips
  const int64_t units = by_rows ? (M + kTileRows - 1) / kTileRows : (N + S - 1) / S;
  const int64_t unit_work = by_rows ? kTileRows * K * N : M * K * S;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 20) / unit_work);  // 1M multiply-adds or more each
  at::parallel_for(0, units, grain, [&](int64_t u0, int64_t u1) {
    if (by_rows) {
      gemm_block(a, sa, ka, u0 * kTileRows, std::min(M, u1 * kTileRows), K, b, sb, sj, 0, N, c, ldc, accumulate);
    } else {
      gemm_block(a, sa, ka, 0, M, K, b, sb, sj, u0 * S, std::min(N, u1 * S), c, ldc, accumulate);
    }
  });
}

#if defined(CPU_CAPABILITY_AVX512)
// bfloat16 products with the CPU's bf16 dot-product instruction (AVX512_BF16),
// where it has one: vdpbf16ps multiplies two pairs of bf16 per fp32 lane and
// adds both products, twice the multiply-adds of an fp32 FMA. The right-hand
// side b (K, N) is packed in pairs along k (pack_rhs), so that one 64-byte
// load holds 16 columns x 2 values of k; a pair of a is broadcast. Pair row p
// of b is at bp + p * rs, its vector q (16 columns) at + q * qs (in bf16
// elements).
inline bool has_bf16_dot() {
  static const bool yes = __builtin_cpu_supports("avx512bf16");
  return yes;
}

template <int R, int C>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void mm_tile_bf16(
    const c10::BFloat16* a_, int64_t lda, int64_t K, const c10::BFloat16* bp, int64_t rs, int64_t qs,
    c10::BFloat16* c, int64_t ldc, int64_t n) {
  const uint16_t* a = reinterpret_cast<const uint16_t*>(a_);
  const int64_t last = n - (C - 1) * 16;  // columns in the last vector, 1..16
  const __mmask16 mask = static_cast<__mmask16>((1u << last) - 1);
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t p = 0; 2 * p < K; ++p) {
    const uint16_t* b = reinterpret_cast<const uint16_t*>(bp) + p * rs;
    __m512i bv[C];
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q)
      bv[q] = q == C - 1 ? _mm512_maskz_loadu_epi32(mask, b + q * qs) : _mm512_loadu_si512(b + q * qs);
    const bool pair = 2 * p + 1 < K;  // else the last k alone, paired with a zero
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint32_t lo = a[r * lda + 2 * p], hi = pair ? a[r * lda + 2 * p + 1] : 0;
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(lo | (hi << 16)));
#pragma GCC unroll 8
      for (int q = 0; q < C; ++q) acc[r][q] = _mm512_dpbf16_ps(acc[r][q], av, (__m512bh)bv[q]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) {  // round to nearest even, as everywhere else
      const __m256i out = (__m256i)_mm512_cvtneps_pbh(acc[r][q]);
      _mm256_mask_storeu_epi16(c + r * ldc + 16 * q, q == C - 1 ? mask : static_cast<__mmask16>(0xFFFF), out);
    }
}

template <int R>
inline void mm_tile_bf16_cols(int cols, const c10::BFloat16* a, int64_t lda, int64_t K, const c10::BFloat16* bp,
                              int64_t rs, int64_t qs, c10::BFloat16* c, int64_t ldc, int64_t n) {
  switch (cols) {
    case 1: return mm_tile_bf16<R, 1>(a, lda, K, bp, rs, qs, c, ldc, n);
    case 2: return mm_tile_bf16<R, 2>(a, lda, K, bp, rs, qs, c, ldc, n);
    case 3: return mm_tile_bf16<R, 3>(a, lda, K, bp, rs, qs, c, ldc, n);
    default: return mm_tile_bf16<R, 4>(a, lda, K, bp, rs, qs, c, ldc, n);
  }
}

// c (M, N) = a (M, K) @ b, with b given packed in pairs (see above).
inline void small_mm_bf16(const c10::BFloat16* a, int64_t lda, int64_t M, int64_t K, const c10::BFloat16* bp,
                          int64_t rs, int64_t qs, int64_t N, c10::BFloat16* c, int64_t ldc) {
  for (int64_t j = 0; j < N; j += 64) {
    const int64_t n = std::min<int64_t>(64, N - j);
    const int cols = static_cast<int>((n + 15) / 16);
    const c10::BFloat16* b = bp + j / 16 * qs;  // the strip's first vector
    for (int64_t i = 0; i < M; i += 4) {
      const c10::BFloat16* ai = a + i * lda;
      c10::BFloat16* ci = c + i * ldc + j;
      switch (std::min<int64_t>(4, M - i)) {
        case 1: mm_tile_bf16_cols<1>(cols, ai, lda, K, b, rs, qs, ci, ldc, n); break;
        case 2: mm_tile_bf16_cols<2>(cols, ai, lda, K, b, rs, qs, ci, ldc, n); break;
        case 3: mm_tile_bf16_cols<3>(cols, ai, lda, K, b, rs, qs, ci, ldc, n); break;
        default: mm_tile_bf16_cols<4>(cols, ai, lda, K, b, rs, qs, ci, ldc, n); break;
      }
    }
  }
}

#else
inline bool has_bf16_dot() { return false; }
inline void small_mm_bf16(const c10::BFloat16*, int64_t, int64_t, int64_t, const c10::BFloat16*, int64_t, int64_t,
                          int64_t, c10::BFloat16*, int64_t) {
  TORCH_CHECK(false, "grukit: bf16 dot products need AVX512_BF16");
}
#endif

// bfloat16 products on the AMX tile unit (Sapphire Rapids and later), where the
// CPU has one and the OS lets this process use it. One TDPBF16PS multiplies a
// tile of 16 rows x 32 values of a by 32 x 16 of b (in pairs along k: the
// panels pack_rhs makes, their depth padded with zeros to whole tiles) into
// 16 x 16 float sums: 8192 multiply-adds, 32 times one vdpbf16ps. Columns go
// in groups of up to four panels (four accumulator tiles), rows in blocks of
// 16 inside them, so that a group's panels stay in cache across the row
// blocks. Each column's sum runs over k in the same order whatever the rows or
// the column slice, so a team's slices and a lone thread give the same bits.
#if defined(CPU_CAPABILITY_AVX512) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
inline bool has_amx_tiles() {
  static const bool yes = [] {
    if (!__builtin_cpu_supports("amx-bf16") || !__builtin_cpu_supports("amx-tile")) return false;
    // Linux hands out the tile registers' state on request only (ARCH_REQ_XCOMP_PERM, XTILEDATA)
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  }();
  return yes;
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// One group of C panels (n columns, C = ceil(n / 16)) for all M rows: a (M,
// K) with K a multiple of 32 and M of 16, rows lda apart.
template <int C>
__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16"))) inline void amx_group(
    const uint16_t* a, int64_t lda, int64_t M, int64_t K, const uint16_t* bp, int64_t qs, int64_t n,
    int64_t rows_out, c10::BFloat16* c, int64_t ldc, float* sums) {
  for (int64_t i = 0; i < M; i += 16) {
    const uint16_t* ai = a + i * lda;
    _tile_zero(0);
    if (C > 1) _tile_zero(1);
    if (C > 2) _tile_zero(2);
    if (C > 3) _tile_zero(3);
    for (int64_t k = 0; k < K; k += 32) {
      const uint16_t* b = bp + k * 16;  // pair row k / 2 of the first panel
      _tile_loadd(4, ai + k, lda * 2);
      _tile_loadd(5, b, 64);
      _tile_dpbf16ps(0, 4, 5);
      if (C > 1) {
        _tile_loadd(6, b + qs, 64);
        _tile_dpbf16ps(1, 4, 6);
      }
      if (C > 2) {
        _tile_loadd(7, b + 2 * qs, 64);
        _tile_dpbf16ps(2, 4, 7);
      }
      if (C > 3) {
        _tile_loadd(5, b + 3 * qs, 64);
        _tile_dpbf16ps(3, 4, 5);
      }
    }
    _tile_stored(0, sums, 64 * 4);
    if (C > 1) _tile_stored(1, sums + 16, 64 * 4);
    if (C > 2) _tile_stored(2, sums + 32, 64 * 4);
    if (C > 3) _tile_stored(3, sums + 48, 64 * 4);
    const int64_t rows = std::min<int64_t>(16, rows_out - i);
    for (int64_t r = 0; r < rows; ++r)
      for (int q = 0; q < C; ++q) {  // round to nearest even, as the dot-product kernel does
        const int64_t m = std::min<int64_t>(16, n - 16 * q);
        const __m256i out = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(sums + r * 64 + 16 * q));
        _mm256_mask_storeu_epi16(c + (i + r) * ldc + 16 * q, static_cast<__mmask16>((1u << m) - 1), out);
      }
  }
}

// c (M, N) = a (M, K) @ b on the tile unit; b's panels as for small_mm_bf16
// (pair rows 64 bytes apart, panels qs elements apart, each at least
// ceil(K / 32) * 16 pair rows deep: pack_rhs pads them so when `tiles`).
// Where M or K is not whole tiles, a is copied into a zero-padded buffer.
__attribute__((target("amx-tile,amx-bf16"))) inline void small_mm_amx(const c10::BFloat16* a_, int64_t lda,
                                                                      int64_t M, int64_t K,
                                                                      const c10::BFloat16* bp_, int64_t qs,
                                                                      int64_t N, c10::BFloat16* c, int64_t ldc) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  const uint16_t* a = reinterpret_cast<const uint16_t*>(a_);
  const int64_t Mp = (M + 15) / 16 * 16, Kp = (K + 31) / 32 * 32;
  thread_local std::vector<uint16_t> pad;
  if (Mp != M || Kp != K) {
    if (static_cast<int64_t>(pad.size()) < Mp * Kp) pad.resize(Mp * Kp);
    for (int64_t r = 0; r < M; ++r) {
      std::memcpy(pad.data() + r * Kp, a + r * lda, K * sizeof(uint16_t));
      std::memset(pad.data() + r * Kp + K, 0, (Kp - K) * sizeof(uint16_t));
    }
    std::memset(pad.data() + M * Kp, 0, (Mp - M) * Kp * sizeof(uint16_t));
    a = pad.data();
    lda = Kp;
  }
  alignas(64) float sums[16 * 64];
  const uint16_t* bp = reinterpret_cast<const uint16_t*>(bp_);
  _tile_loadconfig(&cfg);
  for (int64_t j = 0; j < N; j += 64) {
    const int64_t n = std::min<int64_t>(64, N - j);
    const uint16_t* b = bp + j / 16 * qs;
    switch ((n + 15) / 16) {
      case 1: amx_group<1>(a, lda, Mp, Kp, b, qs, n, M, c + j, ldc, sums); break;
      case 2: amx_group<2>(a, lda, Mp, Kp, b, qs, n, M, c + j, ldc, sums); break;
      case 3: amx_group<3>(a, lda, Mp, Kp, b, qs, n, M, c + j, ldc, sums); break;
      default: amx_group<4>(a, lda, Mp, Kp, b, qs, n, M, c + j, ldc, sums); break;
    }
  }
  _tile_release();
}
#else
inline bool has_amx_tiles() { return false; }
inline void small_mm_amx(const c10::BFloat16*, int64_t, int64_t, int64_t, const c10::BFloat16*, int64_t, int64_t,
                         c10::BFloat16*, int64_t) {
  TORCH_CHECK(false, "grukit: the tile unit needs an AVX-512 build with GCC on Linux");
}
#endif

// The right-hand side b (K, N) of the per-step products, packed once per
// sequence: b = m^T (transpose, e.g. U^T from U) or m itself.
//
// In panels of V columns (V = the vector width of the accumulation type), each
// panel (K, V) contiguous: a tile's column strip then reads a few sequential
// streams rather than one row of b per k, each row a page or more apart at
// large H. At T64 B128 I512 H1024 (128 x 1024 x 3072 per step) this ran the
// product at 111 GFLOP/s on one thread against 101 from rows. b's columns are
// in `blocks` equal blocks (the gates r, z, n), each padded with zeros to whole
// panels, so that every block starts a panel: a team's slice of each gate
// starts on a 16-unit boundary, hence on a panel.
//
// bfloat16 on CPUs with the bf16 dot product: panels of 16 columns in pairs
// along k, (ceil(K/2), 16, 2) each (see small_mm_bf16); on CPUs with AMX the
// pairs padded with zeros to a multiple of 16, whole tiles (small_mm_amx).
// Elsewhere in float (exact), so that the kernel loads b without widening it
// (see step_mm).
struct Packed {
  Tensor data;         // (blocks, panels per block, K, V), or in pairs (blocks, panels, pair rows, 16, 2)
  int64_t width = 0;   // columns per block
  bool pairs = false;  // bf16 pairs
  bool tiles = false;  // pairs in whole AMX tiles
  bool defined() const { return data.defined(); }
};

inline Packed pack_rhs(const Tensor& m, bool transpose, int64_t blocks = 1) {
  if (m.scalar_type() == at::kBFloat16 && !has_bf16_dot()) return pack_rhs(m.to(at::kFloat), transpose, blocks);
  const int64_t K = transpose ? m.size(1) : m.size(0), N = transpose ? m.size(0) : m.size(1);
  TORCH_CHECK(N % blocks == 0, "grukit: pack_rhs: ", N, " columns in ", blocks, " blocks");
  const bool pairs = m.scalar_type() == at::kBFloat16 && has_bf16_dot(), tiles = pairs && has_amx_tiles();
  const int64_t V = pairs || m.scalar_type() != at::kDouble ? Vec<float>::size() : Vec<double>::size();
  const int64_t width = N / blocks, per = (width + V - 1) / V, P = tiles ? (K + 31) / 32 * 16 : (K + 1) / 2;
  const auto panels = [&](auto alloc) {
    return pairs ? alloc(std::vector<int64_t>{blocks, per, P, 16, 2}) : alloc(std::vector<int64_t>{blocks, per, K, V});
  };
  Tensor out = width % V || (pairs && 2 * P != K) ? panels([&](const std::vector<int64_t>& s) { return at::zeros(s, m.options()); })
                         : panels([&](const std::vector<int64_t>& s) { return at::empty(s, m.options()); });
  // Fast paths, with a vectorised block transpose (transpose_f32; U^T at H64,
  // 192 x 64: about a microsecond on AVX-512): each panel is a transpose of V rows of m. In pairs,
  // the pairs of m^T along k are pairs of adjacent elements of m's rows: as
  // 32-bit words, a panel is a transpose of 16 rows of m (N, K/2), moved bit
  // for bit.
  const bool words = pairs && K % 2 == 0 && m.stride(0) % 2 == 0;
  if (transpose && m.stride(1) == 1 && (m.scalar_type() == at::kFloat || words)) {
    const int64_t cols = pairs ? K / 2 : K, ld = pairs ? m.stride(0) / 2 : m.stride(0);
    const float* src = pairs ? reinterpret_cast<const float*>(m.const_data_ptr<c10::BFloat16>()) : m.const_data_ptr<float>();
    float* dst = pairs ? reinterpret_cast<float*>(out.data_ptr<c10::BFloat16>()) : out.data_ptr<float>();
    for (int64_t g = 0; g < blocks; ++g)
      for (int64_t p = 0; p < per; ++p) {
        const int64_t j = g * width + p * V, n = std::min(V, width - p * V);
        transpose_f32(src + j * ld, ld, dst + (g * per + p) * (pairs ? P : K) * V, V, n, cols);
      }
    return {out, width, pairs, tiles};
  }
  // b = m itself, in float or double: each panel row is a piece of a row of m (the backward's U, 3H x H)
  if (!transpose && m.stride(1) == 1 && (m.scalar_type() == at::kFloat || m.scalar_type() == at::kDouble)) {
    AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "grukit_pack_rhs", [&] {
      const scalar_t* src = m.const_data_ptr<scalar_t>();
      scalar_t* dst = out.data_ptr<scalar_t>();
      for (int64_t g = 0; g < blocks; ++g)
        for (int64_t p = 0; p < per; ++p) {
          const int64_t j = g * width + p * V, n = std::min(V, width - p * V);
          scalar_t* panel = dst + (g * per + p) * K * V;
          for (int64_t k = 0; k < K; ++k) std::memcpy(panel + k * V, src + k * m.stride(0) + j, n * sizeof(scalar_t));
        }
    });
    return {out, width, pairs, tiles};
  }
  const Tensor b = (transpose ? m.t() : m).reshape({K, blocks, width});  // (K, N) by blocks
  if (pairs) {  // out[g, p, q, v, e] = b[2q + e, g, 16p + v], zeros past K and width
    Tensor full = at::zeros({2 * P, blocks, per * V}, m.options());
    full.narrow(0, 0, K).narrow(2, 0, width).copy_(b);
    out.copy_(full.view({P, 2, blocks, per, V}).permute({2, 3, 0, 4, 1}));
  } else {  // out[g, p, k, v] = b[k, g, Vp + v]
    Tensor full = width % V ? at::zeros({K, blocks, per * V}, m.options()) : Tensor();
    if (full.defined()) full.narrow(2, 0, width).copy_(b);
    out.copy_((full.defined() ? full : b).view({K, blocks, per, V}).permute({1, 2, 0, 3}));
  }
  return {out, width, pairs, tiles};
}

// The fewest rows a bf16 per-step product takes to the tile unit: below, the
// dot-product kernel, whose cost is reading b either way.
constexpr int64_t kAmxRows = 4;

// Whether products of M rows with this packed b run on the tile unit (small_mm_amx).
inline bool on_tiles(const Packed& b, int64_t M) { return b.tiles && M >= kAmxRows; }

// a (M, K), rows lda apart, widened to float in a buffer of this thread (rows
// K apart): bfloat16 products on CPUs without bf16 instructions run on float
// a and b, exact copies, so the sums and their bits are those of widening each
// value in the kernel, which costs several instructions per broadcast of a and
// load of b: on an AMD EPYC (AVX2), 128 x 1024 x 3072 at 38-40 GFLOP/s that
// way, against 70 in float.
inline const float* widened(const c10::BFloat16* a, int64_t lda, int64_t M, int64_t K) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < M * K) buf.resize(M * K);
  constexpr int64_t V = Vec<float>::size();
  for (int64_t r = 0; r < M; ++r)
    for (int64_t k = 0; k < K; k += V) {
      const int64_t m = std::min(V, K - k);
      load<float>(a + r * lda + k, m).store(buf.data() + r * K + k, m);
    }
  return buf.data();
}

// c (M, N) = a (M, K) @ b for a packed b (pack_rhs): rows of a and c strided.
// Columns [j0, j0 + N) of b go to c's N columns; where they span several
// blocks, one product per block. Within a block, j0 starts a panel.
template <typename T, typename A>
inline void step_mm(const T* a, int64_t lda, int64_t M, int64_t K, const Packed& b, int64_t j0, int64_t N, T* c,
                    int64_t ldc) {
  constexpr int64_t V = Vec<A>::size();  // 16 for bf16 in pairs too
  const int64_t per = b.data.size(1), panel = b.data.stride(1);
  for (int64_t j = j0; j < j0 + N;) {
    // a block of whole panels ends where the next begins: the rest of the columns in one call
    const int64_t g = j / b.width, in = j - g * b.width;
    const int64_t n = (b.width % V == 0 ? j0 + N : std::min(j0 + N, (g + 1) * b.width)) - j;
    TORCH_INTERNAL_ASSERT_DEBUG_ONLY(in % V == 0, "grukit: step_mm: column ", j, " does not start a panel");
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      if (b.data.scalar_type() == at::kFloat) {  // see below
        small_mm<float, A, T>(widened(a, lda, M, K), K, M, K, b.data.const_data_ptr<float>() + (g * per + in / V) * panel,
                              V, n, c + (j - j0), ldc, 1, panel);
        j += n;
        continue;
      }
    }
    const T* first = b.data.const_data_ptr<T>() + (g * per + in / V) * panel;
    if constexpr (std::is_same_v<T, c10::BFloat16>) {
      if (on_tiles(b, M)) {
        small_mm_amx(a, lda, M, K, first, panel, n, c + (j - j0), ldc);
        j += n;
        continue;
      }
      if (b.pairs) {
        small_mm_bf16(a, lda, M, K, first, 2 * V, panel, n, c + (j - j0), ldc);
        j += n;
        continue;
      }
    }
    small_mm<T, A>(a, lda, M, K, first, V, n, c + (j - j0), ldc, 1, panel);
    j += n;
  }
}

// h @ U^T for one step: out (B, rows) = h (B, H) @ U^T, by hand from `ut`, U^T
// packed once per sequence (pack_rhs; at every batch size measured, 1 to 128
// rows per thread and H up to 512, this beat a GEMM call per step). Without
// `ut` (a sequence of one step), dot products for a few rows, else a GEMM.
template <typename T, typename A>
static void recurrent(Tensor& out, const Tensor& h, const Tensor& u, const Packed& ut) {
  const int64_t B = h.size(0), rows = u.size(0), H = u.size(1);
  if (ut.defined() && h.stride(1) == 1 && out.stride(1) == 1) {
    step_mm<T, A>(h.const_data_ptr<T>(), h.stride(0), B, H, ut, 0, rows, out.data_ptr<T>(), out.stride(0));
  } else if (B <= 4 && u.is_contiguous() && h.stride(1) == 1 && out.stride(1) == 1) {  // a single step, unpacked
    for (int64_t b = 0; b < B; ++b)
      matvec<A>(u.const_data_ptr<T>(), rows, H, h.const_data_ptr<T>() + b * h.stride(0), out.data_ptr<T>() + b * out.stride(0));
  } else if (h.scalar_type() == at::kBFloat16 && !has_bf16_dot()) {  // in float, rounded once (mm_into)
    out.copy_(at::mm(h.to(at::kFloat), u.t().to(at::kFloat)));
  } else {
    at::mm_out(out, h, u.t());
  }
}

}  // namespace grukit
