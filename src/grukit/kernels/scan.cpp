// minGRU's scan over time, forward and backward, fused with its gates.
//
// The readable twin is grukit.functional.mingru_sequential (a loop of
// mingru_step); tests assert they agree on outputs and every gradient.
// Shapes legend: T steps, B batch, H hidden. proj (T, B, 2H) holds the input
// projections of every step, rows [k | c] (k = Lin_z x, c = h~ = Lin_h x);
// the products themselves (and dW, dx) are GEMMs in Python, outside this op.
//
// Forward (Feng et al. 2024, section 3.1 and the log-space appendix's g):
//     z_t = sigmoid(k_t)            a_t = 1 - z_t = sigmoid(-k_t)
//     g(c) = c + 0.5 if c >= 0 else sigmoid(c)
//     h_t = a_t * h_{t-1} + b_t,    b_t = z_t * g(c_t)       (a linear recurrence)
//
// Backward, with G_t = dL/dh_t in total (the output's gradient at t plus what
// flows back from step t + 1):
//     G_t      = dout_t + a_{t+1} * G_{t+1}       (G_{T-1} = dout_{T-1} + dh_n)
//     dL/da_t  = G_t * h_{t-1}        dL/db_t = G_t        dL/dh_{t-1} += a_t * G_t
// and through the gates (a = 1 - z, so h_t = h_{t-1} + z_t (g(c_t) - h_{t-1})):
//     dL/dz_t  = G_t * (g(c_t) - h_{t-1})     dL/dk_t = dL/dz_t * z_t * (1 - z_t)
//     dL/dc_t  = G_t * z_t * g'(c_t),         g'(c) = 1 if c >= 0 else sigmoid(c) (1 - sigmoid(c))
//     dL/dh0   = a_0 * G_0
//
// lengths: steps t >= lengths[b] keep the state (z = 0): their output is zero,
// their dproj is zero, and dL/dh_n enters at the sequence's last valid step.
// The states are the outputs themselves (h_{t-1} = out[t-1] for every valid t),
// so backward needs only proj, out and h0.
//
// Work is split over the B * H independent lanes (contiguous ranges, one per
// thread); each thread runs the whole time loop on its lanes, vectorised.
// Forward reads proj and writes out once, backward reads dout, proj and out
// and writes dproj once; the gates use common.h's exp_ (float on AVX-512).
// At T4096 B8 H256 on one thread, prefetching the next step's lanes (ahead)
// took the scan's forward from 13.7 to 9.8 ms; the fast exp saves about 1%
// of a training step.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include "common.h"
#include "fresh.h"

#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace grukit {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

template <typename A>
using V = at::vec::Vectorized<A>;

// Large results (out, dproj) come from `recycled` (fresh.h): memory a previous
// call's result left free once the caller dropped it, else fresh huge pages.
// Fresh memory is cleared by the kernel on first touch, which at these sizes
// costs as much as a large part of the scan (measured: a 64 MB clone 94 ms at
// 4 KiB pages, a copy into existing memory 19 ms).

// The gates of one vector of lanes, without cancellation or overflow:
// e = exp(-|k|) <= 1, so sigmoid(|k|) = 1 / (1 + e), sigmoid(-|k|) = e / (1 + e).
template <typename A>
struct Gates {
  V<A> z, a, g, dg;  // z, 1 - z, g(c), g'(c)
  Gates(const V<A>& k, const V<A>& c) {
    const V<A> one(A(1)), zero(A(0));
    const V<A> e = exp_<A>(k.abs().neg()), s = one / (one + e), es = e * s;
    const V<A> k_pos = k >= zero;
    z = V<A>::blendv(es, s, k_pos);
    a = V<A>::blendv(s, es, k_pos);
    const V<A> ec = exp_<A>(at::vec::minimum(c, zero)), sc = one / (one + ec), sg = ec * sc;  // sigmoid(c) for c < 0
    const V<A> c_pos = c >= zero;
    g = V<A>::blendv(sg, c + V<A>(A(0.5)), c_pos);
    dg = V<A>::blendv(sg * sc, one, c_pos);
  }
};

template <typename A>
inline V<A> load(const A* p, int64_t n) {
  return n == V<A>::size() ? V<A>::loadu(p) : V<A>::loadu(p, n);
}

// Ask for the line at p ahead of use: the next step's lanes (a whole step of
// the batch further on in memory, forward; one step back, backward), which
// the hardware prefetchers, stopping at page ends, bring too late (the
// scan's loads otherwise wait on memory for about half its time).
inline void ahead(const void* p) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#endif
}

// Calls f(b, j0, j1) for the pieces of lanes [n0, n1) inside each batch row b.
template <typename F>
inline void rows(int64_t n0, int64_t n1, int64_t H, const F& f) {
  for (int64_t b = n0 / H; b * H < n1; ++b) f(b, std::max(n0 - b * H, int64_t(0)), std::min(n1 - b * H, H));
}

inline int64_t length(const int64_t* len, int64_t b, int64_t T) { return len ? len[b] : T; }

void check(const Tensor& proj, const Tensor& h0, const OptTensor& lengths) {
  TORCH_CHECK(proj.dim() == 3 && proj.size(2) % 2 == 0, "mingru_scan: proj must be (T, B, 2H), got ", proj.sizes());
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == proj.size(1) && 2 * h0.size(1) == proj.size(2),
              "mingru_scan: h0 must be (B, H) = (", proj.size(1), ", ", proj.size(2) / 2, "), got ", h0.sizes());
  TORCH_CHECK(proj.scalar_type() == at::kFloat || proj.scalar_type() == at::kDouble,
              "mingru_scan: float32 or float64 only (bfloat16 is scanned in float32), got ", proj.scalar_type());
  TORCH_CHECK(h0.scalar_type() == proj.scalar_type(), "mingru_scan: h0 dtype ", h0.scalar_type(), " != proj dtype ", proj.scalar_type());
  if (lengths) {
    TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->dim() == 1 && lengths->size(0) == proj.size(1),
                "mingru_scan: lengths must be int64 of shape (B,)");
  }
}

std::tuple<Tensor, Tensor> mingru_scan(const Tensor& proj_, const Tensor& h0_, const OptTensor& lengths_) {
  check(proj_, h0_, lengths_);
  const Tensor proj = proj_.contiguous(), h0 = h0_.contiguous();
  const Tensor lengths = lengths_ ? lengths_->contiguous() : Tensor();
  const int64_t T = proj.size(0), B = proj.size(1), H = h0.size(1);
  Tensor out = recycled({T, B, H}, proj.options()), h_n = at::empty({B, H}, proj.options());
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "mingru_scan", [&] {
    using A = scalar_t;
    const A *P = proj.const_data_ptr<A>(), *H0 = h0.const_data_ptr<A>();
    const int64_t* len = lengths.defined() ? lengths.const_data_ptr<int64_t>() : nullptr;
    A *O = out.data_ptr<A>(), *HN = h_n.data_ptr<A>();
    at::parallel_for(0, B * H, 256, [&](int64_t n0, int64_t n1) {
      // this thread's lanes of the running state (h_{t-1})
      std::vector<A> state(H0 + n0, H0 + n1);
      for (int64_t t = 0; t < T; ++t) {
        rows(n0, n1, H, [&](int64_t b, int64_t j0, int64_t j1) {
          A* o = O + (t * B + b) * H;
          if (t >= length(len, b, T)) {  // past the end: output zero, state kept
            std::fill(o + j0, o + j1, A(0));
            return;
          }
          const A* k = P + (t * B + b) * 2 * H;
          const A* c = k + H;
          A* hp = state.data() + (b * H - n0);  // h_{t-1}, then h_t
          const int64_t next = t + 1 < T ? B * 2 * H : 0;  // proj of step t + 1
          for (int64_t j = j0; j < j1; j += V<A>::size()) {
            const int64_t n = std::min<int64_t>(V<A>::size(), j1 - j);
            ahead(k + next + j);
            ahead(c + next + j);
            const Gates<A> q(load(k + j, n), load(c + j, n));
            const V<A> h = q.a * load(hp + j, n) + q.z * q.g;  // h_t = a_t h_{t-1} + z_t g(c_t)
            h.store(hp + j, n);
            h.store(o + j, n);
          }
        });
      }
      std::copy(state.begin(), state.end(), HN + n0);  // h_n: the last valid state (kept past the end)
    });
  });
  return {out, h_n};
}

std::tuple<Tensor, Tensor> mingru_scan_backward(const Tensor& dout_, const Tensor& dh_n_, const Tensor& proj_, const Tensor& out_,
                                                const Tensor& h0_, const OptTensor& lengths_) {
  check(proj_, h0_, lengths_);
  TORCH_CHECK(dout_.sizes() == out_.sizes() && out_.size(0) == proj_.size(0) && dh_n_.sizes() == h0_.sizes(),
              "mingru_scan_backward: dout/out must be (T, B, H) and dh_n (B, H)");
  const Tensor dout = dout_.contiguous(), dh_n = dh_n_.contiguous(), proj = proj_.contiguous(), out = out_.contiguous(), h0 = h0_.contiguous();
  const Tensor lengths = lengths_ ? lengths_->contiguous() : Tensor();
  const int64_t T = proj.size(0), B = proj.size(1), H = h0.size(1);
  Tensor dproj = recycled(proj.sizes(), proj.options()), dh0 = at::empty_like(h0);
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "mingru_scan_backward", [&] {
    using A = scalar_t;
    const A *P = proj.const_data_ptr<A>(), *O = out.const_data_ptr<A>(), *H0 = h0.const_data_ptr<A>();
    const A *DO = dout.const_data_ptr<A>(), *DHN = dh_n.const_data_ptr<A>();
    const int64_t* len = lengths.defined() ? lengths.const_data_ptr<int64_t>() : nullptr;
    A *DP = dproj.data_ptr<A>(), *DH0 = dh0.data_ptr<A>();
    at::parallel_for(0, B * H, 256, [&](int64_t n0, int64_t n1) {
      // carry = a_{t+1} * G_{t+1}: what flows into h_t from later steps; dL/dh_n at the last valid step
      std::vector<A> carry(n1 - n0);
      rows(n0, n1, H, [&](int64_t b, int64_t j0, int64_t j1) { std::copy(DHN + b * H + j0, DHN + b * H + j1, carry.data() + (b * H + j0 - n0)); });
      for (int64_t t = T - 1; t >= 0; --t) {
        rows(n0, n1, H, [&](int64_t b, int64_t j0, int64_t j1) {
          A* dk = DP + (t * B + b) * 2 * H;
          A* dc = dk + H;
          if (t >= length(len, b, T)) {  // past the end: no gradient to the gates, carry unchanged
            std::fill(dk + j0, dk + j1, A(0));
            std::fill(dc + j0, dc + j1, A(0));
            return;
          }
          const A* k = P + (t * B + b) * 2 * H;
          const A* c = k + H;
          const A* hp = t == 0 ? H0 + b * H : O + ((t - 1) * B + b) * H;  // h_{t-1}
          const A* dy = DO + (t * B + b) * H;
          A* cy = carry.data() + (b * H - n0);
          const int64_t back = t > 1 ? B * H : 0;  // step t - 1: proj rows 2H long, out and dout rows H
          for (int64_t j = j0; j < j1; j += V<A>::size()) {
            const int64_t n = std::min<int64_t>(V<A>::size(), j1 - j);
            ahead(k - 2 * back + j);
            ahead(c - 2 * back + j);
            ahead(hp - back + j);
            ahead(dy - back + j);
            const Gates<A> q(load(k + j, n), load(c + j, n));
            const V<A> G = load(dy + j, n) + load(cy + j, n);  // G_t
            const V<A> Gz = G * q.z;
            (G * (q.g - load(hp + j, n)) * q.z * q.a).store(dk + j, n);  // dL/dk_t
            (Gz * q.dg).store(dc + j, n);                                // dL/dc_t
            (q.a * G).store(cy + j, n);                                  // into h_{t-1}
          }
        });
      }
      std::copy(carry.begin(), carry.end(), DH0 + n0);  // dL/dh0 = a_0 G_0
    });
  });
  return {dproj, dh0};
}

}  // namespace
}  // namespace grukit

TORCH_LIBRARY_FRAGMENT(grukit, m) {
  m.def("mingru_scan(Tensor proj, Tensor h0, Tensor? lengths) -> (Tensor, Tensor)");
  m.def("mingru_scan_backward(Tensor dout, Tensor dh_n, Tensor proj, Tensor out, Tensor h0, Tensor? lengths) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("mingru_scan", &grukit::mingru_scan);
  m.impl("mingru_scan_backward", &grukit::mingru_scan_backward);
}
