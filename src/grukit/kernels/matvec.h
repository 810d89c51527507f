// The products inside the time loop, written by hand. A library GEMM call per
// step pays for dispatch and packs U again every time; here U^T is packed once
// per sequence and a register-tiled loop (16 accumulators) runs near the
// machine's peak once a few rows share each load of U (a batch of one is bound
// by cache bandwidth instead). Shapes legend as in driver.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/vec/functional.h>

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
// (at most C vectors) of b (K, ldb), accumulated in A. Per k: C loads of b, R
// broadcasts of a, R * C fused multiply-adds, all in registers. a[r, k] is at
// a + r * lda + k * ka (ka = 1: rows; lda = 1: a transposed view, e.g. dG^T).
template <int R, int C, typename T, typename A>
inline void mm_tile(const T* a, int64_t lda, int64_t K, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t n,
                    int64_t ka = 1) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t last = n - (C - 1) * V;  // width of the last vector, 1..V
  Vec<A> acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) acc[r][q] = Vec<A>(A(0));
  for (int64_t k = 0; k < K; ++k) {
    Vec<A> bv[C];
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) bv[q] = load<A>(b + k * ldb + q * V, q == C - 1 ? last : V);
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

template <int R, typename T, typename A>
inline void mm_tile_cols(int cols, const T* a, int64_t lda, int64_t K, const T* b, int64_t ldb, T* c, int64_t ldc,
                         int64_t n, int64_t ka) {
  switch (cols) {
    case 1: return mm_tile<R, 1, T, A>(a, lda, K, b, ldb, c, ldc, n, ka);
    case 2: return mm_tile<R, 2, T, A>(a, lda, K, b, ldb, c, ldc, n, ka);
    case 3: return mm_tile<R, 3, T, A>(a, lda, K, b, ldb, c, ldc, n, ka);
    default: return mm_tile<R, 4, T, A>(a, lda, K, b, ldb, c, ldc, n, ka);
  }
}

// c (M, N) = a (M, K) @ b (K, N); rows of a, b, c lda, ldb, ldc apart (a's k
// stride ka, see mm_tile). Column strips of 4 vectors, 4 rows at a time: 16
// accumulators, and each strip of b is read from cache once per 4 rows.
template <typename T, typename A>
void small_mm(const T* a, int64_t lda, int64_t M, int64_t K, const T* b, int64_t ldb, int64_t N, T* c, int64_t ldc,
              int64_t ka = 1) {
  constexpr int64_t V = Vec<A>::size();
  for (int64_t j = 0; j < N; j += 4 * V) {
    const int64_t n = std::min(4 * V, N - j);
    const int cols = static_cast<int>((n + V - 1) / V);
    for (int64_t i = 0; i < M; i += 4) {
      const T* ai = a + i * lda;
      T* ci = c + i * ldc + j;
      switch (std::min<int64_t>(4, M - i)) {
        case 1: mm_tile_cols<1, T, A>(cols, ai, lda, K, b + j, ldb, ci, ldc, n, ka); break;
        case 2: mm_tile_cols<2, T, A>(cols, ai, lda, K, b + j, ldb, ci, ldc, n, ka); break;
        case 3: mm_tile_cols<3, T, A>(cols, ai, lda, K, b + j, ldb, ci, ldc, n, ka); break;
        default: mm_tile_cols<4, T, A>(cols, ai, lda, K, b + j, ldb, ci, ldc, n, ka); break;
      }
    }
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// bfloat16 products with the CPU's bf16 dot-product instruction (AVX512_BF16),
// where it has one: vdpbf16ps multiplies two pairs of bf16 per fp32 lane and
// adds both products, twice the multiply-adds of an fp32 FMA. The right-hand
// side b (K, N) is packed in pairs along k, bp (ceil(K/2), N, 2), so that one
// 64-byte load holds 16 columns x 2 values of k; a pair of a is broadcast.
inline bool has_bf16_dot() {
  static const bool yes = __builtin_cpu_supports("avx512bf16");
  return yes;
}

template <int R, int C>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void mm_tile_bf16(
    const c10::BFloat16* a_, int64_t lda, int64_t K, const c10::BFloat16* bp, int64_t ldb, c10::BFloat16* c,
    int64_t ldc, int64_t n) {
  const uint16_t* a = reinterpret_cast<const uint16_t*>(a_);
  const int64_t last = n - (C - 1) * 16;  // columns in the last vector, 1..16
  const __mmask16 mask = static_cast<__mmask16>((1u << last) - 1);
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t p = 0; 2 * p < K; ++p) {
    const uint16_t* b = reinterpret_cast<const uint16_t*>(bp) + 2 * (p * ldb);
    __m512i bv[C];
#pragma GCC unroll 8
    for (int q = 0; q < C; ++q)
      bv[q] = q == C - 1 ? _mm512_maskz_loadu_epi32(mask, b + 32 * q) : _mm512_loadu_si512(b + 32 * q);
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
                              int64_t ldb, c10::BFloat16* c, int64_t ldc, int64_t n) {
  switch (cols) {
    case 1: return mm_tile_bf16<R, 1>(a, lda, K, bp, ldb, c, ldc, n);
    case 2: return mm_tile_bf16<R, 2>(a, lda, K, bp, ldb, c, ldc, n);
    case 3: return mm_tile_bf16<R, 3>(a, lda, K, bp, ldb, c, ldc, n);
    default: return mm_tile_bf16<R, 4>(a, lda, K, bp, ldb, c, ldc, n);
  }
}

// c (M, N) = a (M, K) @ b, with b given packed in pairs (see above), ldb
// columns to a pair row.
inline void small_mm_bf16(const c10::BFloat16* a, int64_t lda, int64_t M, int64_t K, const c10::BFloat16* bp,
                          int64_t ldb, int64_t N, c10::BFloat16* c, int64_t ldc) {
  for (int64_t j = 0; j < N; j += 64) {
    const int64_t n = std::min<int64_t>(64, N - j);
    const int cols = static_cast<int>((n + 15) / 16);
    const c10::BFloat16* b = bp + 2 * j;  // column j of every pair row
    for (int64_t i = 0; i < M; i += 4) {
      const c10::BFloat16* ai = a + i * lda;
      c10::BFloat16* ci = c + i * ldc + j;
      switch (std::min<int64_t>(4, M - i)) {
        case 1: mm_tile_bf16_cols<1>(cols, ai, lda, K, b, ldb, ci, ldc, n); break;
        case 2: mm_tile_bf16_cols<2>(cols, ai, lda, K, b, ldb, ci, ldc, n); break;
        case 3: mm_tile_bf16_cols<3>(cols, ai, lda, K, b, ldb, ci, ldc, n); break;
        default: mm_tile_bf16_cols<4>(cols, ai, lda, K, b, ldb, ci, ldc, n); break;
      }
    }
  }
}
#else
inline bool has_bf16_dot() { return false; }
inline void small_mm_bf16(const c10::BFloat16*, int64_t, int64_t, int64_t, const c10::BFloat16*, int64_t, int64_t,
                          c10::BFloat16*, int64_t) {
  TORCH_CHECK(false, "grukit: bf16 dot products need AVX512_BF16");
}
#endif

// The right-hand side b (K, N) of the per-step products, packed once per
// sequence: b = m^T (transpose, e.g. U^T from U) or m itself. bfloat16 on CPUs
// with the bf16 dot product: pairs along k, (ceil(K/2), N, 2); otherwise
// plain (K, N), contiguous.
inline Tensor pack_rhs(const Tensor& m, bool transpose) {
  if (transpose && m.scalar_type() == at::kFloat && m.dim() == 2 && m.stride(1) == 1) {
    // ATen's vectorised 16 x 16 block transpose: U^T at H64 (192 x 64) in about
    // a microsecond, against several for Tensor.t().contiguous()'s element loop
    const int64_t N = m.size(0), K = m.size(1);
    Tensor b = at::empty({K, N}, m.options());  // (K, N) = m^T
    at::vec::transpose_mxn<float>(m.const_data_ptr<float>(), m.stride(0), b.data_ptr<float>(), N, N, K);
    return b;
  }
  if (transpose && m.scalar_type() == at::kBFloat16 && has_bf16_dot() && m.dim() == 2 && m.stride(1) == 1 &&
      m.size(1) % 2 == 0 && m.stride(0) % 2 == 0) {
    // The pairs of m^T along k are pairs of adjacent elements of m's rows: as
    // 32-bit words, packing is a transpose of m (N, K/2), moved bit for bit by
    // the same block transpose
    const int64_t N = m.size(0), P = m.size(1) / 2;
    Tensor b = at::empty({P, N, 2}, m.options());  // (P, N, 2)
    at::vec::transpose_mxn<float>(reinterpret_cast<const float*>(m.const_data_ptr<c10::BFloat16>()), m.stride(0) / 2,
                                  reinterpret_cast<float*>(b.data_ptr<c10::BFloat16>()), N, N, P);
    return b;
  }
  const Tensor b = transpose ? m.t() : m;  // (K, N), any strides
  if (b.scalar_type() != at::kBFloat16 || !has_bf16_dot()) return b.contiguous();
  const int64_t K = b.size(0), N = b.size(1), P = (K + 1) / 2;
  Tensor padded = at::zeros({2 * P, N}, b.options());
  padded.narrow(0, 0, K).copy_(b);
  return padded.view({P, 2, N}).transpose(1, 2).contiguous();  // (P, N, 2): [p, j] = (b[2p, j], b[2p+1, j])
}

// c (M, N) = a (M, K) @ b for a packed b (pack_rhs): rows of a and c strided.
// Columns [j0, j0 + N) of b (whose full width is ldb) go to c's N columns.
template <typename T, typename A>
inline void step_mm(const T* a, int64_t lda, int64_t M, int64_t K, const Tensor& packed, int64_t j0, int64_t N,
                    T* c, int64_t ldc) {
  const int64_t ldb = packed.size(1);
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    if (packed.dim() == 3) return small_mm_bf16(a, lda, M, K, packed.const_data_ptr<T>() + 2 * j0, ldb, N, c, ldc);
  }
  small_mm<T, A>(a, lda, M, K, packed.const_data_ptr<T>() + j0, ldb, N, c, ldc);
}

// h @ U^T for one step: out (B, rows) = h (B, H) @ U^T, by hand from `ut`, U^T
// packed once per sequence (pack_rhs; at every batch size measured, 1 to 128
// rows per thread and H up to 512, this beat a GEMM call per step). Without
// `ut` (a sequence of one step), dot products for a few rows, else a GEMM.
template <typename T, typename A>
static void recurrent(Tensor& out, const Tensor& h, const Tensor& u, const Tensor& ut) {
  const int64_t B = h.size(0), rows = u.size(0), H = u.size(1);
  if (ut.defined() && h.stride(1) == 1 && out.stride(1) == 1) {
    step_mm<T, A>(h.const_data_ptr<T>(), h.stride(0), B, H, ut, 0, rows, out.data_ptr<T>(), out.stride(0));
  } else if (B <= 4 && u.is_contiguous() && h.stride(1) == 1 && out.stride(1) == 1) {  // a single step, unpacked
    for (int64_t b = 0; b < B; ++b)
      matvec<A>(u.const_data_ptr<T>(), rows, H, h.const_data_ptr<T>() + b * h.stride(0), out.data_ptr<T>() + b * out.stride(0));
  } else {
    at::mm_out(out, h, u.t());
  }
}

}  // namespace grukit
