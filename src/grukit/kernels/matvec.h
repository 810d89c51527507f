// Matrix-vector products for batch 1 and 2, where a GEMM call costs more in
// dispatch and packing than the arithmetic. Shapes legend as in gru.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/vec/functional.h>

#include <vector>

#include "gates.h"

namespace grukit {

using at::Tensor;

// y (rows,) = W (rows, cols) @ v (cols,), one dot product per row: for batch 1
// a hand-written matrix-vector product beats a GEMM call (no dispatch, no packing).
template <typename A, typename T, typename Y>
inline void matvec(const T* W, int64_t rows, int64_t cols, const T* v, Y* y) {
  const int64_t V = Vec<A>::size();
  for (int64_t k = 0; k < rows; ++k) {
    const T* w = W + k * cols;
    Vec<A> s0(A(0)), s1(A(0));
    int64_t i = 0;
    for (; i + 2 * V <= cols; i += 2 * V) {
      s0 = at::vec::fmadd(load<A>(w + i, V), load<A>(v + i, V), s0);
      s1 = at::vec::fmadd(load<A>(w + i + V, V), load<A>(v + i + V, V), s1);
    }
    for (; i < cols; i += V) {
      const int64_t m = std::min(V, cols - i);
      s0 = at::vec::fmadd(load<A>(w + i, m), load<A>(v + i, m), s0);
    }
    y[k] = static_cast<Y>(at::vec::vec_reduce_all<A>([](Vec<A>& a, Vec<A>& b) { return a + b; }, s0 + s1));
  }
}

// h @ U^T for one step: (B, rows) = (B, H) @ (rows, H)^T. Batch 1 and 2 use the
// hand-written matvec (no GEMM dispatch); larger batches a GEMM into `out`.
template <typename T, typename A>
static void recurrent(Tensor& out, const Tensor& h, const Tensor& u) {
  const int64_t B = h.size(0), rows = u.size(0), H = u.size(1);
  if (B <= 2 && u.is_contiguous() && h.is_contiguous() && out.is_contiguous()) {
    for (int64_t b = 0; b < B; ++b)
      matvec<A>(u.const_data_ptr<T>(), rows, H, h.const_data_ptr<T>() + b * H, out.data_ptr<T>() + b * rows);
  } else {
    at::mm_out(out, h, u.t());
  }
}

// g @ U for one backward step: (B, H) = (B, rows) @ (rows, H), rows of g may be
// strided. Batch 1 and 2: y = sum_k g[k] * U[k, :] by hand; else a GEMM.
template <typename T, typename A>
static void recurrent_t(Tensor& out, const Tensor& g, const Tensor& u) {
  const int64_t B = g.size(0), rows = u.size(0), H = u.size(1), V = Vec<A>::size();
  if (B <= 2 && u.is_contiguous() && g.stride(1) == 1 && out.is_contiguous()) {
    std::vector<A> y(H);
    const T* U = u.const_data_ptr<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T* gb = g.const_data_ptr<T>() + b * g.stride(0);
      std::fill(y.begin(), y.end(), A(0));
      for (int64_t k = 0; k < rows; ++k) {
        const Vec<A> c(static_cast<A>(gb[k]));
        for (int64_t j = 0; j < H; j += V) {
          const int64_t m = std::min(V, H - j);
          store<A>(y.data() + j, at::vec::fmadd(c, load<A>(U + k * H + j, m), load<A>(y.data() + j, m)), m);
        }
      }
      T* ob = out.data_ptr<T>() + b * H;
      for (int64_t j = 0; j < H; ++j) ob[j] = static_cast<T>(y[j]);
    }
  } else {
    at::mm_out(out, g, u);
  }
}

}  // namespace grukit
