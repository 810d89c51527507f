// LayerNorm-GRU's own passes: layer normalisation of one gate-stacked row
// (3H features), forward and backward. The driver runs them on W x (all
// steps at once, before the time loop) and on U h (at every step, right after
// the recurrent product); the GRU passes (gru.h) then run unchanged on the
// normalised rows. Equations and the paper: src/grukit/functional/layernorm.py.
//
// Forward, for a row v of N = 3H features (eps = 1e-5, as torch.nn.LayerNorm):
//     mu = mean(v)    rstd = 1 / sqrt(mean((v - mu)^2) + eps)
//     xhat = (v - mu) * rstd          y = g * xhat + c
// Backward, given dy = dL/dy:
//     dL/dg += dy * xhat              dL/dc += dy
//     q = dy * g
//     dL/dv = rstd * (q - mean(q) - xhat * mean(q * xhat))
// (the mean's and the variance's dependence on v give the two mean terms).
#pragma once

#include "../common.h"

namespace grukit {

constexpr double kLayerNormEps = 1e-5;

template <typename A>
inline A sum_all(const Vec<A>& v) {
  alignas(64) A tmp[Vec<A>::size()];
  v.store(tmp);
  A s = 0;
  for (int64_t i = 0; i < Vec<A>::size(); ++i) s += tmp[i];
  return s;
}

// One row, in place: v (N,) in T becomes y. If xhat is given, xhat (N,) and
// *rstd_out are saved (in A) for backward.
template <typename T, typename A>
void layer_norm_row(T* v, int64_t N, const A* gain, const A* bias, A* xhat, A* rstd_out) {
  const int64_t V = Vec<A>::size();
  Vec<A> acc(A(0));
  for (int64_t j = 0; j < N; j += V) acc = acc + load<A>(v + j, std::min(V, N - j));  // zero padded tails
  const A mu = sum_all(acc) / A(N);
  acc = Vec<A>(A(0));
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    const Vec<A> d = load<A>(v + j, m) - Vec<A>(mu);
    acc = acc + (m == V ? d * d : Vec<A>::set(Vec<A>(A(0)), d * d, m));
  }
  const A rstd = A(1) / std::sqrt(sum_all(acc) / A(N) + A(kLayerNormEps));
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    const Vec<A> xh = (load<A>(v + j, m) - Vec<A>(mu)) * Vec<A>(rstd);
    if (xhat) store<A>(xhat + j, xh, m);
    store<A>(v + j, xh * load<A>(gain + j, m) + load<A>(bias + j, m), m);
  }
  if (rstd_out) *rstd_out = rstd;
}

// Backward of one row, in place: dy (N,) in T becomes dL/dv; dL/dg and dL/dc
// are added to dgain and dbias (N,) in A.
template <typename T, typename A>
void layer_norm_row_backward(T* dy, int64_t N, const A* gain, const A* xhat, A rstd, A* dgain, A* dbias) {
  const int64_t V = Vec<A>::size();
  Vec<A> sq(A(0)), sqx(A(0));
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    const Vec<A> d = load<A>(dy + j, m), xh = load<A>(xhat + j, m);
    const Vec<A> q = d * load<A>(gain + j, m);  // zero in the padded tail: d is zero there
    sq = sq + q;
    sqx = sqx + q * xh;
    store<A>(dgain + j, load<A>(dgain + j, m) + d * xh, m);
    store<A>(dbias + j, load<A>(dbias + j, m) + d, m);
  }
  const A mq = sum_all(sq) / A(N), mqx = sum_all(sqx) / A(N);
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    const Vec<A> q = load<A>(dy + j, m) * load<A>(gain + j, m);
    store<A>(dy + j, Vec<A>(rstd) * (q - Vec<A>(mq) - load<A>(xhat + j, m) * Vec<A>(mqx)), m);
  }
}

}  // namespace grukit
