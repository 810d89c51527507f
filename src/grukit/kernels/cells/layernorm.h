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

#include <functional>

#include "../common.h"

namespace grukit {

constexpr double kLayerNormEps = 1e-5;

// The sum of a vector's lanes (a shuffle tree for float where ATen has one).
template <typename A>
inline A sum_all(const Vec<A>& v) {
  return at::vec::vec_reduce_all<A>(std::plus<Vec<A>>(), v);
}

// The mean and 1 / std of one row v (N,) in T.
template <typename T, typename A>
void row_stats(const T* v, int64_t N, A& mu, A& rstd) {
  const int64_t V = Vec<A>::size();
  Vec<A> acc(A(0));
  for (int64_t j = 0; j < N; j += V) acc = acc + load<A>(v + j, std::min(V, N - j));  // zero padded tails
  mu = sum_all(acc) / A(N);
  acc = Vec<A>(A(0));
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    const Vec<A> d = load<A>(v + j, m) - Vec<A>(mu);
    acc = acc + (m == V ? d * d : Vec<A>::set(Vec<A>(A(0)), d * d, m));
  }
  rstd = A(1) / std::sqrt(sum_all(acc) / A(N) + A(kLayerNormEps));
}

// One row, in place: v (N,) in T becomes y. If xhat is given, xhat (N,) and
// *rstd_out are saved (in A) for backward.
template <typename T, typename A>
void layer_norm_row(T* v, int64_t N, const A* gain, const A* bias, A* xhat, A* rstd_out) {
  const int64_t V = Vec<A>::size();
  A mu, rstd;
  row_stats<T, A>(v, N, mu, rstd);
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    const Vec<A> xh = (load<A>(v + j, m) - Vec<A>(mu)) * Vec<A>(rstd);
    if (xhat) store<A>(xhat + j, xh, m);
    store<A>(v + j, xh * load<A>(gain + j, m) + load<A>(bias + j, m), m);
  }
  if (rstd_out) *rstd_out = rstd;
}

// One row in A, in place: v (N,) becomes xhat; returns rstd. The training path
// keeps xhat of W x where W x was (driver.cpp) and applies the gain and bias
// step by step (layer_norm_affine), so that xhat is written once, not twice.
template <typename A>
A normalize_row(A* v, int64_t N) {
  const int64_t V = Vec<A>::size();
  A mu, rstd;
  row_stats<A, A>(v, N, mu, rstd);
  for (int64_t j = 0; j < N; j += V) {
    const int64_t m = std::min(V, N - j);
    store<A>(v + j, (load<A>(v + j, m) - Vec<A>(mu)) * Vec<A>(rstd), m);
  }
  return rstd;
}

// y = gain * xhat + bias on the columns [j0, j1) of each gate block of one
// gate-stacked row (3H,).
template <typename T, typename A>
void layer_norm_affine(const A* xhat, T* y, int64_t H, int64_t j0, int64_t j1, const A* gain, const A* bias) {
  const int64_t V = Vec<A>::size();
  for (int k = 0; k < 3; ++k)
    for (int64_t j = k * H + j0; j < k * H + j1; j += V) {
      const int64_t m = std::min(V, k * H + j1 - j);
      store<A>(y + j, load<A>(xhat + j, m) * load<A>(gain + j, m) + load<A>(bias + j, m), m);
    }
}

// The same forward for a team of threads that each own the units [j0, j1) of
// every gate block (driver.cpp, run_team): each thread reduces its columns of
// the row to (count, mean, M2), the team meets, and every thread combines all
// partials (Chan, Golub & LeVeque 1979: exact up to rounding, no cancellation
// from E[v^2] - mu^2) and normalises its own columns.
template <typename T, typename A>
void layer_norm_partial(const T* v, int64_t H, int64_t j0, int64_t j1, A* part) {
  A sum = 0, m2 = 0;
  const int64_t n = 3 * (j1 - j0);
  for (int k = 0; k < 3; ++k)
    for (int64_t j = j0; j < j1; ++j) sum += static_cast<A>(v[k * H + j]);
  const A mu = n ? sum / A(n) : A(0);
  for (int k = 0; k < 3; ++k)
    for (int64_t j = j0; j < j1; ++j) {
      const A d = static_cast<A>(v[k * H + j]) - mu;
      m2 += d * d;
    }
  part[0] = A(n);
  part[1] = mu;
  part[2] = m2;
}

// Combine `count` partials (3 values each, `stride` apart) into mu and rstd.
template <typename A>
void layer_norm_combine(const A* parts, int64_t count, int64_t stride, A& mu, A& rstd) {
  A n = 0, mean = 0, m2 = 0;
  for (int64_t i = 0; i < count; ++i) {
    const A* p = parts + i * stride;
    if (p[0] == A(0)) continue;
    const A tot = n + p[0], delta = p[1] - mean;
    mean += delta * p[0] / tot;
    m2 += p[2] + delta * delta * n * p[0] / tot;
    n = tot;
  }
  mu = mean;
  rstd = A(1) / std::sqrt(m2 / n + A(kLayerNormEps));
}

// Normalise the columns [j0, j1) of every gate block of v (3H,), in place;
// xhat (3H,) saved there too if given.
template <typename T, typename A>
void layer_norm_apply(T* v, int64_t H, int64_t j0, int64_t j1, A mu, A rstd, const A* gain, const A* bias, A* xhat) {
  const int64_t V = Vec<A>::size();
  for (int k = 0; k < 3; ++k)
    for (int64_t j = k * H + j0; j < k * H + j1; j += V) {
      const int64_t m = std::min(V, k * H + j1 - j);
      const Vec<A> xh = (load<A>(v + j, m) - Vec<A>(mu)) * Vec<A>(rstd);
      if (xhat) store<A>(xhat + j, xh, m);
      store<A>(v + j, xh * load<A>(gain + j, m) + load<A>(bias + j, m), m);
    }
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
