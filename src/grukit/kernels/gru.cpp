// grukit's native GRU layer: the whole time loop, forward and backward, in C++.
//
// The readable twin is grukit.functional.gru_layer; tests assert they agree.
// Shapes legend: T steps, B batch, I input, H hidden, D directions. Gates are
// stacked r | z | n. The equations and their derivatives are written out in
// gates.h, beside the fused elementwise passes that compute them.
//
// Per layer: the input projection of all T steps is one GEMM; each step is one
// recurrent product (register-tiled by hand from U^T packed once per sequence,
// matvec.h) and one fused pass for the gates. Backward keeps only the dh
// recursion in its loop (its gate pass also sums db); dx and dW are single
// GEMMs over all T * B rows after it. The D directions and blocks of the batch
// are independent, so their time loops run on separate threads (see `pieces`)
// with no synchronisation inside the loop; a single sequence instead splits
// its hidden units between threads (see `run_team`).
//
// The forward returns the output (T, B, D*H) and h_n (D, B, H), and keeps for
// backward, per direction:
//   hs (T+1, B, H): every state, indexed by time: forward direction hs[0] = h0,
//       hs[t+1] = h after step t; reverse direction hs[T] = h0, hs[t] = h after
//       step t. So the state before step t is hs[t] or hs[t+1]. With lengths,
//       states carry over past a sequence's end, where the output is zero.
//       Without train, only two states are alive at a time: hs is (2, B, H)
//       and state i lives in hs[i % 2].
//   ws (T, B, 4H): r | z | n | hn (reset_after) or r | z | n | rh, in the
//       accumulation type; empty when train is false.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <ATen/cpu/vec/functional.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "gates.h"
#include "matvec.h"

namespace grukit {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// A new tensor for a large result (outputs, saved states, scratch). On Linux
// its memory is marked for transparent huge pages before anything touches it:
// the first touch of fresh memory faults once per 2 MiB instead of per 4 KiB,
// which halves the cost of the faults (measured: 26 MB in 2.9 ms, not 5.5 ms).
static Tensor fresh(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  Tensor t = at::empty(sizes, opts);
#ifdef __linux__
  constexpr uintptr_t huge = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr()), end = begin + t.nbytes();
  const uintptr_t a = (begin + huge - 1) & ~(huge - 1), b = end & ~(huge - 1);  // whole huge pages inside
  if (b >= a + 2 * huge) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);  // advice only: errors ignored
#endif
  return t;
}

// Large temporaries (the input projection, dG_i, dG_h) are reused from call to
// call, per thread and per dtype (so that float32 and bfloat16 models used in
// turn do not evict each other's): freshly mapped memory costs page faults on
// first touch, several percent of a big layer's time. Only buffers that never
// leave the call come from here; up to kScratchBytes each.
constexpr int64_t kScratchBytes = int64_t(1) << 28;

static Tensor scratch(int slot, at::IntArrayRef sizes, const at::TensorOptions& opts) {
  thread_local Tensor cache[3][3];  // [slot][float, double, bfloat16]
  const int64_t n = c10::multiply_integers(sizes);
  const int64_t bytes = n * static_cast<int64_t>(opts.dtype().itemsize());
  const auto type = opts.dtype().toScalarType();
  const int kind = type == at::kFloat ? 0 : type == at::kDouble ? 1 : 2;
  if (bytes > kScratchBytes) return fresh(sizes, opts);
  Tensor& c = cache[slot][kind];
  if (!c.defined() || c.dtype() != opts.dtype() || c.numel() < n) c = fresh({n}, opts);
  return c.narrow(0, 0, n).view(sizes);
}

static Tensor bias_or_zeros(const OptTensor& b, int64_t n, const at::TensorOptions& acc) {
  if (b.has_value() && b->defined()) return b->to(acc).contiguous();  // (3H,)
  return at::zeros({n}, acc);
}

static void check_args(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                       const OptTensor& lengths) {
  TORCH_CHECK(x.dim() == 3, "grukit: x must be (T, B, I), got ", x.sizes());
  const int64_t B = x.size(1), H = w_hh.size(1);
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == B && h0.size(1) == H, "grukit: h0 must be (B, H) = (", B, ", ", H,
              "), got ", h0.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == 3 * H && w_ih.size(1) == x.size(2), "grukit: w_ih must be (3H, I)");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 3 * H, "grukit: w_hh must be (3H, H)");
  TORCH_CHECK(x.scalar_type() == h0.scalar_type() && x.scalar_type() == w_ih.scalar_type() &&
                  x.scalar_type() == w_hh.scalar_type(), "grukit: all tensors must share one dtype");
  if (lengths.has_value() && lengths->defined()) {
    TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->numel() == B && lengths->is_contiguous(),
                "grukit: lengths must be a contiguous int64 tensor of B entries");
  }
}

static const int64_t* lengths_ptr(const OptTensor& lengths) {
  return lengths.has_value() && lengths->defined() ? lengths->data_ptr<int64_t>() : nullptr;
}

// A team of threads for one time loop, when there are fewer pieces of work
// than threads (batch 1, one direction): each thread runs f(j0, j1, true) for
// its slice of the hidden units, in whole 16-unit blocks, and the slices meet
// at team_barrier() inside f. Only with OpenMP (torch's own threads here).
template <typename F>
static void run_team(int64_t threads, int64_t H, const F& f) {
#ifdef _OPENMP
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t n = omp_get_num_threads(), i = omp_get_thread_num(), blocks = (H + 15) / 16;
    f(std::min(H, blocks * i / n * 16), std::min(H, blocks * (i + 1) / n * 16), n > 1);
  }
#else
  f(0, H, false);
#endif
}

inline void team_barrier() {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

// A team pays a barrier per step (about a microsecond): worth it when a step
// has at least this many multiply-adds (B * 3H * H; H = 128 at batch 1).
constexpr int64_t kTeamWork = 3 * 128 * 128;

static int64_t free_threads() {
#ifdef _OPENMP
  return at::in_parallel_region() ? 1 : at::get_num_threads();
#else
  return 1;
#endif
}

static int64_t team_size(size_t pieces, int64_t T, int64_t B, int64_t H) {
  const int64_t threads = free_threads();
  return pieces == 1 && threads > 1 && T > 1 && B * 3 * H * H >= kTeamWork ? threads : 1;
}

// The same for a single step of GRUCell at batch 1, where the step has no
// time loop to amortise the start of a parallel region: 3H * (I + H)
// multiply-adds at least (I = 64, H = 256 qualifies; H = 128 does not).
constexpr int64_t kCellTeamWork = 160 * 1024;

// One direction of one layer for a block of B batch rows, forward: the time
// loop, given gi (T, B, 3H), the input projection W x of every step (without
// b_i). Fills hs (T+1, B, H), ws (T or 1, B, 4H) and out (T, B, H), a strided
// view of the layer's output. Each time slice of gi, hs, ws must be contiguous;
// the time stride may be larger (a block of a bigger batch). With team > 1 the
// steps' hidden units are split between that many threads (see run_team).
static void forward_direction(const Tensor& gi, const Tensor& h0, const Tensor& w_hh, const OptTensor& b_ih,
                              const OptTensor& b_hh, const int64_t* len, bool reset_after, bool reverse, bool train,
                              int64_t team, Tensor hs, Tensor ws, Tensor out) {
  const int64_t T = gi.size(0), B = gi.size(1), H = w_hh.size(1);
  const int64_t hs_t = hs.stride(0), ws_t = ws.stride(0), gi_t = gi.stride(0);
  const auto opts = hs.options();
  const auto acc = opts.dtype(at::toOpMathType(hs.scalar_type()));
  const Tensor bi = bias_or_zeros(b_ih, 3 * H, acc);                   // (3H,)
  const Tensor bh = bias_or_zeros(b_hh, 3 * H, acc);                   // (3H,)
  Tensor h = h0.to(acc, /*non_blocking=*/false, /*copy=*/true).contiguous();  // (B, H) running state
  const auto slot = [&](int64_t i) { return train ? i : i % 2; };    // where state i lives in hs
  hs.select(0, slot(reverse ? T : 0)).copy_(h0);
  Tensor gh = at::empty({B, (reset_after ? 3 : 2) * H}, opts);        // (B, 3H) or (B, 2H)
  Tensor ghn = reset_after ? Tensor() : at::empty({B, H}, opts);       // (B, H) U_n rh
  Tensor rh = reset_after ? Tensor() : at::empty({B, H}, opts);        // (B, H) r * h
  const Tensor u = (reset_after ? w_hh : w_hh.narrow(0, 0, 2 * H)).contiguous();  // (3H, H) or (2H, H)
  const Tensor u_n = reset_after ? Tensor() : w_hh.narrow(0, 2 * H, H).contiguous();  // (H, H)
  // U^T, packed once for all steps (a single step goes to a GEMM call instead)
  const Tensor ut = T > 1 ? pack_rhs(u, true) : Tensor();                       // U^T (H, 3H) or (H, 2H)
  const Tensor u_nt = T > 1 && !reset_after ? pack_rhs(u_n, true) : Tensor();   // U_n^T (H, H)

  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, hs.scalar_type(), "grukit_gru_layer", [&] {
    using A = at::opmath_type<scalar_t>;
    Step<scalar_t, A> base{};
    base.H = H;
    base.gh = gh.data_ptr<scalar_t>();
    base.ghn = reset_after ? nullptr : ghn.data_ptr<scalar_t>();
    base.rh = reset_after ? nullptr : rh.data_ptr<scalar_t>();
    base.bi = bi.data_ptr<A>();
    base.bh = bh.data_ptr<A>();
    base.h = h.data_ptr<A>();
    base.len = len;
    base.out_ld = out.stride(1);
    base.keep = train;
    // The time loop for the hidden units [j0, j1). In a team, each thread takes
    // a slice of the units, and the team meets at a barrier wherever the next
    // product reads all units (h' after each step; rh before U_n rh).
    const auto loop = [&](int64_t j0, int64_t j1, bool in_team) {
      Step<scalar_t, A> st = base;
      st.j0 = j0;
      st.j1 = j1;
      const bool all = j0 == 0 && j1 == H;
      const int64_t gates = reset_after ? 3 : 2;  // column blocks of gh
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = reverse ? T - 1 - s : s;
        const int64_t prev = reverse ? t + 1 : t, next = reverse ? t : t + 1;
        st.t = t;
        st.gi = gi.const_data_ptr<scalar_t>() + t * gi_t;
        st.hout = hs.data_ptr<scalar_t>() + slot(next) * hs_t;
        st.out = out.data_ptr<scalar_t>() + t * out.stride(0);
        st.ws = ws.data_ptr<A>() + (train ? t : 0) * ws_t;
        if (all) {
          recurrent<scalar_t, A>(gh, hs.select(0, slot(prev)), u, ut);  // (B, 3H) = h @ U^T: the one recurrent product
        } else {  // this slice's columns of r, z (and n)
          const scalar_t* hp = hs.const_data_ptr<scalar_t>() + slot(prev) * hs_t;
          for (int64_t k = 0; k < gates; ++k)
            step_mm<scalar_t, A>(hp, hs.stride(1), B, H, ut, k * H + j0, j1 - j0, gh.data_ptr<scalar_t>() + k * H + j0, gh.stride(0));
        }
        if (reset_after) {
          forward_after(st, 0, B);
        } else {
          forward_before_rz(st, 0, B);
          if (in_team) team_barrier();
          if (all) {
            recurrent<scalar_t, A>(ghn, rh, u_n, u_nt);  // (B, H) = (r * h) @ U_n^T
          } else {
            step_mm<scalar_t, A>(st.rh, H, B, H, u_nt, j0, j1 - j0, ghn.data_ptr<scalar_t>() + j0, H);
          }
          forward_before_n(st, 0, B);
        }
        if (in_team) team_barrier();
      }
    };
    if (team > 1) {
      run_team(team, H, loop);
    } else {
      loop(0, H, false);
    }
  });
}

// The independent pieces of work in one layer: each direction, and within a
// direction each block of batch rows (sequences never interact). With N threads
// the layer is cut into about N pieces that run the whole time loop each, on one
// thread each, with no synchronisation per step; with one piece the GEMMs use
// all threads instead.
struct Piece {
  int64_t d, b0, n;  // direction, first batch row, rows
};

static std::vector<Piece> pieces(int64_t D, int64_t B) {
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t blocks = D >= threads ? 1 : std::max<int64_t>(1, std::min(B, threads / D));
  std::vector<Piece> out;
  for (int64_t d = 0; d < D; ++d)
    for (int64_t c = 0; c < blocks; ++c) out.push_back({d, c * B / blocks, (c + 1) * B / blocks - c * B / blocks});
  return out;
}

template <typename F>
static void run_pieces(const std::vector<Piece>& ps, const F& f) {
  if (ps.size() == 1) return f(ps[0]);
  at::parallel_for(0, static_cast<int64_t>(ps.size()), 1, [&](int64_t i0, int64_t i1) {
    // A worker thread starts with autograd on (its thread-local default); the
    // calling thread is already below autograd here, and so must the workers be.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t i = i0; i < i1; ++i) f(ps[i]);
  });
}

static OptTensor pick(const OptTensor& t, int64_t d) {
  return t.has_value() && t->defined() ? OptTensor(t->select(0, d)) : std::nullopt;
}

// D directions of one layer. Weights are stacked per direction: w_ih (D, 3H, I),
// w_hh (D, 3H, H), b_* (D, 3H), h0 (D, B, H). Direction 1 (or 0 when reverse)
// runs from the last step to the first.
// Returns out (T, B, D*H) (directions side by side, zero past each sequence's
// end), h_n (D, B, H), and for backward hs (D, T+1, B, H) and ws (D, T, B, 4H)
// (unless train: hs only the last two states (D, 2, B, H), ws empty).
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_layer(const Tensor& x_, const Tensor& h0, const Tensor& w_ih,
                                                     const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                                                     const OptTensor& lengths, bool reset_after, bool reverse,
                                                     bool train) {
  TORCH_CHECK(w_ih.dim() == 3 && w_hh.dim() == 3 && h0.dim() == 3, "grukit: weights and h0 need a direction dimension");
  const int64_t D = w_ih.size(0);
  TORCH_CHECK(D == 1 || (D == 2 && !reverse), "grukit: D must be 1, or 2 without reverse");
  for (int64_t d = 0; d < D; ++d) check_args(x_, h0.select(0, d), w_ih.select(0, d), w_hh.select(0, d), lengths);
  const Tensor x = x_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(2);
  const auto acc = x.options().dtype(at::toOpMathType(x.scalar_type()));
  Tensor out = fresh({T, B, D * H}, x.options());                      // (T, B, D*H)
  Tensor hs = fresh({D, train ? T + 1 : 2, B, H}, x.options());        // (D, T+1, B, H), or (D, 2, B, H)
  Tensor ws = fresh({D, train ? T : 1, B, 4 * H}, acc);                // (D, T, B, 4H) or scratch
  // The input projection of every step, for the whole batch: one GEMM per
  // direction on all threads, before the time loops split the batch.
  const int64_t I = x.size(2);
  Tensor gi = scratch(0, {D, T, B, 3 * H}, x.options());              // (D, T, B, 3H)
  for (int64_t d = 0; d < D; ++d) {
    Tensor gi_d = gi.select(0, d).view({T * B, 3 * H});
    at::mm_out(gi_d, x.view({T * B, I}), w_ih.select(0, d).t());
  }
  const int64_t* len = lengths_ptr(lengths);
  const auto ps = pieces(D, B);
  const int64_t team = team_size(ps.size(), T, B, H);
  run_pieces(ps, [&](const Piece& p) {
    forward_direction(gi.select(0, p.d).narrow(1, p.b0, p.n), h0.select(0, p.d).narrow(0, p.b0, p.n),
                      w_hh.select(0, p.d), pick(b_ih, p.d), pick(b_hh, p.d), len ? len + p.b0 : nullptr, reset_after,
                      reverse || p.d == 1, train, team, hs.select(0, p.d).narrow(1, p.b0, p.n),
                      ws.select(0, p.d).narrow(1, p.b0, p.n), out.narrow(2, p.d * H, H).narrow(1, p.b0, p.n));
  });
  Tensor h_n = at::empty({D, B, H}, x.options());                      // (D, B, H)
  for (int64_t d = 0; d < D; ++d) {
    const int64_t last = reverse || d == 1 ? 0 : T;  // the index of the final state
    h_n.select(0, d).copy_(hs.select(0, d).select(0, train ? last : last % 2));
  }
  if (!train) ws = at::empty({0}, acc);
  return {out, h_n, hs, ws};
}

// One direction of one layer for a block of B batch rows, backward through
// time: only the dh recursion. Reads dout (T, B, H) (a strided view of dL/d
// output), dh_n (B, H), hs (T+1, B, H) and ws (T, B, 4H); writes dG_i, dG_h
// (T, B, 3H) and dh0 (B, H), and adds the sums of dG_i and dG_h over rows and
// steps to db (2, 3H) in the accumulation type, if defined (the bias gradients;
// for reset_after=False only db[0], since there dG_h = dG_i). Time slices of
// hs, ws, dG_* contiguous.
static void backward_recursion(const Tensor& dout, const Tensor& dh_n, const Tensor& hs, const Tensor& ws, const Tensor& w_hh,
                               const int64_t* len, bool reset_after, bool reverse, Tensor dgi, Tensor dgh, Tensor dh0,
                               Tensor db) {
  const int64_t T = ws.size(0), B = ws.size(1), H = w_hh.size(1);
  const auto opts = hs.options();
  const auto acc = opts.dtype(at::toOpMathType(hs.scalar_type()));
  Tensor dhz = dh_n.to(acc, false, /*copy=*/true).contiguous();       // (B, H) dh * z carried back, first dL/dh_n
  Tensor mm = at::zeros({B, H}, opts);                                 // (B, H) dG_h @ U carried back
  Tensor drh = reset_after ? Tensor() : at::empty({B, H}, opts);       // (B, H) d(rh)
  const Tensor u = w_hh.contiguous();                                  // (3H, H)
  const Tensor u_rz = u.narrow(0, 0, 2 * H);                           // (2H, H)
  const Tensor u_n = u.narrow(0, 2 * H, H);                            // (H, H)
  // the right-hand sides of the per-step products, packed once (pack_rhs)
  const Tensor up = reset_after ? pack_rhs(u, false) : Tensor();
  const Tensor up_rz = reset_after ? Tensor() : pack_rhs(u_rz, false);
  const Tensor up_n = reset_after ? Tensor() : pack_rhs(u_n, false);

  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, hs.scalar_type(), "grukit_gru_layer_backward", [&] {
    using A = at::opmath_type<scalar_t>;
    BackStep<scalar_t, A> st{};
    st.H = H;
    st.mm = mm.data_ptr<scalar_t>();
    st.dhz = dhz.data_ptr<A>();
    st.drh = reset_after ? nullptr : drh.data_ptr<scalar_t>();
    st.db = db.defined() ? db.data_ptr<A>() : nullptr;
    st.len = len;
    st.dout_ld = dout.stride(1);
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = reverse ? T - 1 - s : s;
      const int64_t prev = reverse ? t + 1 : t, next = reverse ? t : t + 1;
      st.t = t;
      st.ws = ws.data_ptr<A>() + t * ws.stride(0);
      st.hprev = hs.data_ptr<scalar_t>() + prev * hs.stride(0);
      st.dout = dout.data_ptr<scalar_t>() + t * dout.stride(0);
      st.dgi = dgi.data_ptr<scalar_t>() + t * dgi.stride(0);
      st.dgh = dgh.data_ptr<scalar_t>() + t * dgh.stride(0);
      if (reset_after) {
        backward_after(st, 0, B);
        recurrent_t<scalar_t, A>(mm, dgh.select(0, t), u, up);  // (B, H) = dG_h @ U
      } else {
        const Tensor dg = dgi.select(0, t);  // (B, 3H)
        backward_before_nz(st, 0, B);
        recurrent_t<scalar_t, A>(drh, dg.narrow(1, 2 * H, H), u_n, up_n);  // (B, H) d(rh) = da_n @ U_n
        backward_before_r(st, 0, B);
        recurrent_t<scalar_t, A>(mm, dg.narrow(1, 0, 2 * H), u_rz, up_rz);  // (B, H) = [da_r, da_z] @ U_rz
      }
    }
  });
  dh0.copy_(dhz + mm.to(acc));  // (B, H) dL/dh0: what is left of the recursion
}

// The hoisted products of one direction, after the recursion: one GEMM each
// over all T * B rows. Writes dx (T, B, I) (if defined; added to if accumulate),
// dw_ih (3H, I), dw_hh (3H, H). (The bias gradients are summed in the recursion.)
static void weight_grads(const Tensor& x, const Tensor& hs, const Tensor& ws, const Tensor& dgi, const Tensor& dgh,
                         const Tensor& w_ih, bool reset_after, bool reverse, bool accumulate, Tensor dx, Tensor dw_ih,
                         Tensor dw_hh) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = hs.size(2);
  const Tensor dgi2 = dgi.view({T * B, 3 * H});                              // (T*B, 3H)
  const Tensor dgh2 = dgh.view({T * B, 3 * H});                              // (T*B, 3H)
  const Tensor hprev = hs.narrow(0, reverse ? 1 : 0, T).reshape({T * B, H});  // (T*B, H)
  if (dx.defined()) {
    Tensor dx2 = dx.view({T * B, I});
    if (accumulate) {
      dx2.addmm_(dgi2, w_ih);  // (T*B, I) += dG_i @ W
    } else {
      at::mm_out(dx2, dgi2, w_ih);  // (T*B, I) = dG_i @ W
    }
  }
  at::mm_out(dw_ih, dgi2.t(), x.view({T * B, I}));  // (3H, I) = dG_i^T @ X
  if (reset_after) {
    at::mm_out(dw_hh, dgh2.t(), hprev);  // (3H, H) = sum_t dG_h[t]^T @ h[t-1]
  } else {  // the n rows multiply rh, not h
    Tensor rows_rz = dw_hh.narrow(0, 0, 2 * H), rows_n = dw_hh.narrow(0, 2 * H, H);
    at::mm_out(rows_rz, dgi2.narrow(1, 0, 2 * H).t(), hprev);
    const Tensor rh = ws.narrow(2, 3 * H, H).to(x.scalar_type()).reshape({T * B, H});  // (T*B, H)
    at::mm_out(rows_n, dgi2.narrow(1, 2 * H, H).t(), rh);
  }
}

// Backward of gru_layer, stacked per direction like its inputs. Returns dx
// (T, B, I) (summed over directions), dh0 (D, B, H), dw_ih (D, 3H, I),
// dw_hh (D, 3H, H), db_ih and db_hh (D, 3H) (empty where not needed).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_layer_backward(
    const Tensor& dout_, const Tensor& dh_n, const Tensor& x_, const Tensor& hs, const Tensor& ws, const Tensor& w_ih,
    const Tensor& w_hh,
    const OptTensor& lengths, bool reset_after, bool reverse, bool need_dx, bool need_bias) {
  const int64_t D = w_ih.size(0);
  for (int64_t d = 0; d < D; ++d)
    check_args(x_, hs.select(0, d).select(0, 0), w_ih.select(0, d), w_hh.select(0, d), lengths);
  const Tensor x = x_.contiguous();
  const Tensor dout = dout_.contiguous();  // (T, B, D*H) dL/doutput
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(2);
  TORCH_CHECK(ws.dim() == 4 && ws.size(1) == T, "grukit: backward needs the forward's workspace (train=True)");
  const auto opts = x.options();
  Tensor dgi = scratch(1, {D, T, B, 3 * H}, opts);                     // (D, T, B, 3H) dG_i
  Tensor dgh = reset_after ? scratch(2, {D, T, B, 3 * H}, opts) : dgi;  // (D, T, B, 3H) dG_h
  Tensor dx = need_dx ? fresh({T, B, I}, opts) : at::empty({0}, opts);  // (T, B, I)
  Tensor dh0 = at::empty({D, B, H}, opts);                             // (D, B, H)
  Tensor dw_ih = at::empty({D, 3 * H, I}, opts);                       // (D, 3H, I)
  Tensor dw_hh = at::empty({D, 3 * H, H}, opts);                       // (D, 3H, H)
  Tensor db_ih = need_bias ? at::empty({D, 3 * H}, opts) : at::empty({0}, opts);  // (D, 3H)
  Tensor db_hh = need_bias ? at::empty({D, 3 * H}, opts) : at::empty({0}, opts);
  const int64_t* len = lengths_ptr(lengths);
  const auto ps = pieces(D, B);
  // each piece sums its own rows' bias gradients (in the accumulation type), added up below
  Tensor db_parts = need_bias ? at::zeros({static_cast<int64_t>(ps.size()), 2, 3 * H}, opts.dtype(at::toOpMathType(x.scalar_type())))
                              : Tensor();
  run_pieces(ps, [&](const Piece& p) {
    auto rows = [&](const Tensor& t) { return t.select(0, p.d).narrow(1, p.b0, p.n); };  // (T, n, ...)
    const int64_t i = &p - ps.data();
    backward_recursion(dout.narrow(2, p.d * H, H).narrow(1, p.b0, p.n), dh_n.select(0, p.d).narrow(0, p.b0, p.n), rows(hs), rows(ws), w_hh.select(0, p.d), len ? len + p.b0 : nullptr, reset_after,
                       reverse || p.d == 1, rows(dgi), rows(dgh), dh0.select(0, p.d).narrow(0, p.b0, p.n),
                       need_bias ? db_parts.select(0, i) : Tensor());
  });
  if (need_bias) {
    if (!reset_after) db_parts.select(1, 1).copy_(db_parts.select(1, 0));  // dG_h = dG_i
    for (int64_t d = 0; d < D; ++d) {
      Tensor sum = at::zeros({2, 3 * H}, db_parts.options());
      for (size_t i = 0; i < ps.size(); ++i)
        if (ps[i].d == d) sum += db_parts.select(0, static_cast<int64_t>(i));
      if (reset_after) sum.select(0, 1).narrow(0, 0, 2 * H).copy_(sum.select(0, 0).narrow(0, 0, 2 * H));  // r, z: dG_h = dG_i
      db_ih.select(0, d).copy_(sum.select(0, 0));
      db_hh.select(0, d).copy_(sum.select(0, 1));
    }
  }
  for (int64_t d = 0; d < D; ++d) {
    weight_grads(x, hs.select(0, d), ws.select(0, d), dgi.select(0, d), dgh.select(0, d), w_ih.select(0, d), reset_after,
                 reverse || d == 1, d > 0, need_dx ? dx : Tensor(), dw_ih.select(0, d), dw_hh.select(0, d));
  }
  return {dx, dh0, dw_ih, dw_hh, db_ih, db_hh};
}

// One step without autograd (GRUCell inference): x (B, I), h (B, H) -> h' (B, H).
// Small batches run the matrix-vector products and the gates in one call with
// no intermediate tensors; larger ones take the layer path with T = 1.
Tensor gru_cell(const Tensor& x, const Tensor& h, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                const OptTensor& b_hh, bool reset_after) {
  const bool bias = b_ih.has_value() && b_ih->defined();
  const bool small = x.dim() == 2 && x.size(0) <= 4 && x.is_contiguous() && h.is_contiguous() && w_ih.is_contiguous() &&
                     w_hh.is_contiguous() && (!bias || (b_ih->is_contiguous() && b_hh->is_contiguous()));
  if (!small) {
    auto one = [](const OptTensor& b) { return b.has_value() && b->defined() ? OptTensor(b->unsqueeze(0)) : std::nullopt; };
    auto [out, h_n, hs, ws] = gru_layer(x.unsqueeze(0), h.unsqueeze(0), w_ih.unsqueeze(0), w_hh.unsqueeze(0), one(b_ih),
                                        one(b_hh), std::nullopt, reset_after, false, false);
    return out.select(0, 0);
  }
  const int64_t B = x.size(0), I = x.size(1), H = w_hh.size(1);
  TORCH_CHECK(h.dim() == 2 && h.size(0) == B && h.size(1) == H, "grukit: h must be (B, H) = (", B, ", ", H, "), got ",
              h.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == 3 * H && w_ih.size(1) == I, "grukit: w_ih must be (3H, I)");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 3 * H, "grukit: w_hh must be (3H, H)");
  TORCH_CHECK(x.scalar_type() == h.scalar_type() && x.scalar_type() == w_ih.scalar_type() &&
                  x.scalar_type() == w_hh.scalar_type() && (!bias || (b_ih->scalar_type() == x.scalar_type() &&
                  b_hh->scalar_type() == x.scalar_type() && b_ih->numel() == 3 * H && b_hh->numel() == 3 * H)),
              "grukit: all tensors must share one dtype, biases (3H,)");
  Tensor out = at::empty({B, H}, h.options());  // (B, H)
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "grukit_gru_cell", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* wi = w_ih.const_data_ptr<scalar_t>();
    const scalar_t* wh = w_hh.const_data_ptr<scalar_t>();
    const scalar_t* bi = bias ? b_ih->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* bh = bias ? b_hh->const_data_ptr<scalar_t>() : nullptr;
    thread_local std::vector<A> buf_a;         // kept between steps: no allocation per call
    thread_local std::vector<scalar_t> buf_t;
    buf_a.resize(6 * H);
    buf_t.resize(H);
    A* gi = buf_a.data();                      // (3H,) W x
    A* gh = gi + 3 * H;                        // (3H,) U h (U_n rh in the n rows for reset_after=False)
    scalar_t* rh = buf_t.data();               // (H,) r * h
    // The step for the hidden units [j0, j1) of every row. At batch 1 with a
    // large enough step, a team of threads takes a slice of units each (see
    // run_team): the rows of W and U for the slice then stay in that core's
    // cache. reset_after=False meets once before U_n rh, which reads all of rh.
    const auto slice = [&](int64_t j0, int64_t j1, bool in_team) {
      const int64_t V = Vec<A>::size(), n = j1 - j0;
      auto ld = [&](const scalar_t* p, int64_t k, int64_t m) { return p ? load<A>(p + k, m) : Vec<A>(A(0)); };
      const Vec<A> one(A(1));
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* xb = x.const_data_ptr<scalar_t>() + b * I;
        const scalar_t* hb = h.const_data_ptr<scalar_t>() + b * H;
        scalar_t* ob = out.data_ptr<scalar_t>() + b * H;
        for (int64_t k = 0; k < 3; ++k) matvec<A>(wi + (k * H + j0) * I, n, I, xb, gi + k * H + j0);
        for (int64_t k = 0; k < (reset_after ? 3 : 2); ++k) matvec<A>(wh + (k * H + j0) * H, n, H, hb, gh + k * H + j0);
        for (int64_t j = j0; j < j1; j += V) {  // the equations of gates.h; r goes into gi_r's place
          const int64_t m = std::min(V, j1 - j);
          const Vec<A> r = sigmoid(load<A>(gi + j, m) + ld(bi, j, m) + load<A>(gh + j, m) + ld(bh, j, m));
          store<A>(gi + j, r, m);
          if (!reset_after) store<A>(rh + j, r * load<A>(hb + j, m), m);
        }
        if (!reset_after) {
          if (in_team) team_barrier();
          matvec<A>(wh + (2 * H + j0) * H, n, H, rh, gh + 2 * H + j0);  // U_n (r * h)
        }
        for (int64_t j = j0; j < j1; j += V) {
          const int64_t m = std::min(V, j1 - j);
          const Vec<A> r = load<A>(gi + j, m);
          const Vec<A> z = sigmoid(load<A>(gi + H + j, m) + ld(bi, H + j, m) + load<A>(gh + H + j, m) +
                                   ld(bh, H + j, m));
          const Vec<A> hn = load<A>(gh + 2 * H + j, m) + ld(bh, 2 * H + j, m);
          const Vec<A> in = load<A>(gi + 2 * H + j, m) + ld(bi, 2 * H + j, m);
          const Vec<A> nn = tanh_<A>(reset_after ? in + r * hn : in + hn);
          store<A>(ob + j, (one - z) * nn + z * load<A>(hb + j, m), m);
        }
      }
    };
    const int64_t team = B == 1 ? free_threads() : 1;
    if (team > 1 && 3 * H * (I + H) >= kCellTeamWork) {
      run_team(team, H, slice);
    } else {
      slice(0, H, false);
    }
  });
  return out;
}

}  // namespace grukit

TORCH_LIBRARY(grukit, m) {
  m.def("gru_layer(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
        "bool reset_after, bool reverse, bool train) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_layer_backward(Tensor dout, Tensor dh_n, Tensor x, Tensor hs, Tensor ws, Tensor w_ih, Tensor w_hh, Tensor? lengths, "
        "bool reset_after, bool reverse, bool need_dx, bool need_bias) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cell(Tensor x, Tensor h, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, bool reset_after) -> Tensor");
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("gru_layer", &grukit::gru_layer);
  m.impl("gru_layer_backward", &grukit::gru_layer_backward);
  m.impl("gru_cell", &grukit::gru_cell);
}
