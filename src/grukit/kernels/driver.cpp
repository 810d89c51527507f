// grukit's native recurrent layer: the driver. It runs the whole time loop,
// forward and backward, in C++ for every cell; a cell contributes only its
// fused passes (cells/gru.h: the GRU's gate passes; cells/layernorm.h: the
// norms of LayerNorm-GRU around the products), its workspace width (see
// CellArgs) and its extra parameters. Zoneout and recurrent dropout are part
// of the GRU passes (the masks are inputs of the op); input and weight dropout
// act outside the op (src/grukit/functional/layer.py).
//
// The readable twin is src/grukit/functional/; tests assert they agree.
// Shapes legend: T steps, B batch, I input, H hidden, D directions. Gates are
// stacked r | z | n.
//
// Per layer: the input projection of all T steps is one GEMM; each step is one
// recurrent product (register-tiled by hand from U^T packed once per sequence,
// matvec.h) and the cell's passes. Backward keeps only the dh recursion in its
// loop (its gate pass also sums db); dx and dW are single GEMMs over all T * B
// rows after it. The D directions and blocks of the batch are independent, so
// their time loops run on separate threads (see `pieces`) with no
// synchronisation inside the loop; a single sequence instead splits its hidden
// units between threads (see `run_team`). Whether threads are used either way
// is measured as the calls run (TeamChoice), since a busy core can make them
// slower than one thread. Small plain float stacks skip the
// tensor bookkeeping and run the same arithmetic on raw pointers (see
// `tiny_applies`).
//
// The forward returns the output (T, B, D*H) and h_n (D, B, H); the training
// op (gru_layer_train) also returns, for backward, per direction:
//   hs (T+1, B, H): every state, indexed by time: forward direction hs[0] = h0,
//       hs[t+1] = h after step t; reverse direction hs[T] = h0, hs[t] = h after
//       step t. So the state before step t is hs[t] or hs[t+1]. With lengths,
//       states carry over past a sequence's end, where the output is zero.
//       Without train, only two states are alive at a time: hs is (2, B, H)
//       and state i lives in hs[i % 2].
//   ws (T, B, W): r | z | n | hn (reset_after) or r | z | n | rh, in the
//       accumulation type; LayerNorm-GRU adds xhat of U h (3H), xhat of W x
//       (3H) and their two rstd: W = 4H, or with layer_norm 10H + 2 rounded up
//       to a multiple of 16 (rows start on a 64-byte line for float: W x is
//       written straight into its xhat slot, and a GEMM writing misaligned
//       rows costs 10-15% of a LayerNorm-GRU training step at H128).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <ATen/cpu/vec/functional.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "cells/gru.h"
#include "cells/layernorm.h"
#include "fresh.h"
#include "matvec.h"

namespace grukit {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Large temporaries (the input projection, dG_i, dG_h) are reused from call to
// call, per thread and per dtype (so that float32 and bfloat16 models used in
// turn do not evict each other's): freshly mapped memory costs page faults on
// first touch, several percent of a big layer's time. Only buffers that never
// leave the call come from here; up to kScratchBytes (fresh.h) each.

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


static bool given(const OptTensor& t) { return t.has_value() && t->defined(); }

// What one call computes beyond the plain GRU, read from the op's arguments,
// and the workspace width it needs per row and step.
struct CellArgs {
  bool reset_after;
  OptTensor norms;  // (D, 4, 3H): LayerNorm-GRU's gain_ih, bias_ih, gain_hh, bias_hh
  OptTensor zone;   // (D, T, B, H): zoneout's m_t (training)
  double zone_p;    // zoneout's p in eval (0: no zoneout)
  OptTensor mask;   // (D, B, H): recurrent dropout's m_h
  bool layer_norm() const { return given(norms); }
  int64_t ws_width(int64_t H) const { return layer_norm() ? (10 * H + 2 + 15) / 16 * 16 : 4 * H; }  // see the top
};

static std::string shape_str(const Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Every tensor the kernel will read, checked before it reads any: shapes
// against x, h0 and w_hh, one dtype, the CPU, contiguous lengths.
static void check_args(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                       const OptTensor& b_hh, const OptTensor& lengths, const CellArgs& c) {
  TORCH_CHECK(x.dim() == 3, "grukit: x must be (T, B, I), got ", x.sizes());
  TORCH_CHECK(w_hh.dim() == 3 && w_hh.size(1) == 3 * w_hh.size(2),
              "grukit: w_hh must be (D, 3H, H), got ", w_hh.sizes());
  const int64_t D = w_hh.size(0), T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(2);
  TORCH_CHECK(D == 1 || D == 2, "grukit: 1 or 2 directions, got w_hh ", w_hh.sizes());
  TORCH_CHECK(w_ih.dim() == 3 && w_ih.size(0) == D && w_ih.size(1) == 3 * H && w_ih.size(2) == I,
              "grukit: w_ih must be (D, 3H, I) = (", D, ", ", 3 * H, ", ", I, "), got ", w_ih.sizes());
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == D && h0.size(1) == B && h0.size(2) == H,
              "grukit: h0 must be (D, B, H) = (", D, ", ", B, ", ", H, "), got ", h0.sizes());
  TORCH_CHECK(given(b_ih) == given(b_hh), "grukit: b_ih and b_hh must be given together");
  const auto type = x.scalar_type();
  const auto same = [&](const Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == type, "grukit: ", name, " has dtype ", t.scalar_type(), " but x has ", type);
    TORCH_CHECK(t.device().is_cpu(), "grukit: ", name, " must be on the CPU, got ", t.device());
  };
  same(x, "x");
  same(h0, "h0");
  same(w_ih, "w_ih");
  same(w_hh, "w_hh");
  for (const auto& [b, name] : {std::make_pair(&b_ih, "b_ih"), std::make_pair(&b_hh, "b_hh")}) {
    if (!given(*b)) continue;
    TORCH_CHECK((*b)->dim() == 2 && (*b)->size(0) == D && (*b)->size(1) == 3 * H, "grukit: ", name,
                " must be (D, 3H) = (", D, ", ", 3 * H, "), got ", shape_str(**b));
    same(**b, name);
  }
  if (given(c.norms)) {
    TORCH_CHECK(c.reset_after, "grukit: layer norm needs reset_after=True");
    TORCH_CHECK(c.norms->dim() == 3 && c.norms->size(0) == D && c.norms->size(1) == 4 && c.norms->size(2) == 3 * H,
                "grukit: norms must be (D, 4, 3H) = (", D, ", 4, ", 3 * H, "), got ", c.norms->sizes());
    same(*c.norms, "norms");
  }
  if (given(c.zone)) {
    TORCH_CHECK(c.zone->dim() == 4 && c.zone->size(0) == D && c.zone->size(1) == T && c.zone->size(2) == B &&
                    c.zone->size(3) == H && c.zone->is_contiguous(),
                "grukit: the zoneout mask must be contiguous (D, T, B, H) = (", D, ", ", T, ", ", B, ", ", H, "), got ",
                c.zone->sizes());
    same(*c.zone, "the zoneout mask");
  }
  TORCH_CHECK(c.zone_p >= 0.0 && c.zone_p < 1.0, "grukit: zoneout p must be in [0, 1), got ", c.zone_p);
  if (given(c.mask)) {
    TORCH_CHECK(c.mask->dim() == 3 && c.mask->size(0) == D && c.mask->size(1) == B && c.mask->size(2) == H &&
                    c.mask->is_contiguous(),
                "grukit: the recurrent dropout mask must be contiguous (D, B, H) = (", D, ", ", B, ", ", H, "), got ",
                c.mask->sizes());
    same(*c.mask, "the recurrent dropout mask");
  }
  if (given(lengths)) {
    TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->numel() == B && lengths->is_contiguous(),
                "grukit: lengths must be a contiguous int64 tensor of B entries");
  }
}

// dst = src for two tensors of the same dtype and shape: a plain copy of the
// elements where both are contiguous (Tensor.copy_ builds a TensorIterator,
// about a microsecond, more than copying a small state), else copy_.
static void copy_small(Tensor dst, const Tensor& src) {
  if (dst.is_contiguous() && src.is_contiguous() && dst.scalar_type() == src.scalar_type() &&
      dst.sizes() == src.sizes()) {
    std::memcpy(dst.data_ptr(), src.const_data_ptr(), src.numel() * src.element_size());
  } else {
    dst.copy_(src);
  }
}

static Tensor bias_or_zeros(const OptTensor& b, int64_t n, const at::TensorOptions& acc) {
  if (given(b) && b->scalar_type() == acc.dtype() && b->is_contiguous()) return *b;  // (3H,) as given: no call
  if (given(b)) return b->to(acc).contiguous();
  return at::zeros({n}, acc);
}

// Rows [b0, b0 + n) of t along dim; t itself when that is all of it (a view
// costs a dispatch, and a single piece of work takes every row).
static Tensor block(const Tensor& t, int64_t dim, int64_t b0, int64_t n) {
  return b0 == 0 && n == t.size(dim) ? t : t.narrow(dim, b0, n);
}

static const int64_t* lengths_ptr(const OptTensor& lengths) {
  return lengths.has_value() && lengths->defined() ? lengths->data_ptr<int64_t>() : nullptr;
}

// The largest M * K * N of a float product computed by hand (project, mm_into).
constexpr int64_t kSmallProjection = int64_t(1) << 18;

// 0: by the CPU (own_gemm); 1: always grukit's gemm; 2: always torch's GEMM
// library (tests set it, set_gemm_policy)
std::atomic<int> gemm_policy{0};

void set_gemm_policy(int64_t policy) {
  TORCH_CHECK(policy >= 0 && policy <= 2, "grukit: gemm policy is 0 (by the CPU), 1 (own) or 2 (library), got ", policy);
  gemm_policy.store(static_cast<int>(policy), std::memory_order_relaxed);
}

// Whether large float products run on grukit's gemm rather than torch's GEMM
// library: on AMD CPUs with AVX2 or AVX-512 (see mm_into), never without
// vectors. The choice depends on the CPU only, so a machine always gets the
// same bits.
static bool own_gemm() {
#if (defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)) && defined(__GNUC__) && \
    (defined(__x86_64__) || defined(__i386__))
  static const bool amd = __builtin_cpu_is("amd");
#else
  static const bool amd = false;
#endif
  const int policy = gemm_policy.load(std::memory_order_relaxed);
  return policy == 1 || (policy == 0 && amd);
}

// out (M, N) = a (M, K) @ b, or out += a @ b. Products this small cost more to
// set up in a GEMM library than to run: in float they run by hand (small_mm, a
// as rows or transposed, as dG^T in the weight gradients; at T20 B1 H64 each
// GEMM call cost several microseconds); in bfloat16 (oneDNN, 20 x 32 x 192:
// 21 us; the same products in float 1-2 us) they run in float and are rounded
// once, as the bfloat16 GEMM rounds its float sums. So do bfloat16 products of
// any size on CPUs without bf16 instructions (has_bf16_dot: AVX512_BF16), where
// torch's bfloat16 GEMM falls back to plain loops: on an AMD EPYC with AVX2,
// 1 GFLOP/s at 8192 x 512 x 3072 against 68 in float.
//
// Float products beyond that size run on grukit's own gemm (matvec.h) where
// own_gemm says so: on AMD CPUs, where torch's BLAS (MKL) runs well below that
// kernel. Measured on an AMD EPYC (Zen 3, AVX2) at one thread, interleaved:
// 128 x 1024 x 3072 at 83 GFLOP/s by hand against torch.mm's 60, 32 x 128 x 384
// 89 against 67.
static void mm_into(Tensor out, const Tensor& a, const Tensor& b, bool accumulate = false) {
  const auto f32 = at::kFloat;
  if (!accumulate && a.scalar_type() == f32 && b.scalar_type() == f32 && out.scalar_type() == f32 &&
      a.size(0) * a.size(1) * b.size(1) <= kSmallProjection && b.stride(1) == 1 && out.stride(1) == 1 &&
      (a.stride(1) == 1 || a.stride(0) == 1)) {
    const bool rows = a.stride(1) == 1;
    small_mm<float, float>(a.const_data_ptr<float>(), rows ? a.stride(0) : 1, a.size(0), a.size(1),
                           b.const_data_ptr<float>(), b.stride(0), b.size(1), out.data_ptr<float>(), out.stride(0),
                           rows ? 1 : a.stride(1));
    return;
  }
  if (a.scalar_type() == f32 && b.scalar_type() == f32 && out.scalar_type() == f32 && out.stride(1) == 1 &&
      own_gemm()) {
    gemm(a.const_data_ptr<float>(), a.stride(0), a.stride(1), a.size(0), a.size(1), b.const_data_ptr<float>(),
         b.stride(0), b.stride(1), b.size(1), out.data_ptr<float>(), out.stride(0), accumulate);
    return;
  }
  const bool small_bf16 = a.scalar_type() == at::kBFloat16 && a.size(0) * a.size(1) * b.size(1) <= kSmallProjection;
  if (small_bf16) {
    const Tensor prod = at::mm(a.to(at::kFloat), b.to(at::kFloat));
    accumulate ? out.add_(prod) : out.copy_(prod);
  } else if (a.scalar_type() == at::kBFloat16 && !has_bf16_dot()) {  // in float, rounded once (see above)
    Tensor prod = at::empty({a.size(0), b.size(1)}, a.options().dtype(f32));
    mm_into(prod, a.to(f32), b.to(f32));
    accumulate ? out.add_(prod) : out.copy_(prod);
  } else if (accumulate) {
    out.addmm_(a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

// bfloat16 on a CPU with AMX: the per-step products of batch pieces of
// kAmxRows rows or more run on the tile unit (small_mm_amx). Measured on a
// Xeon with AMX at one thread, alternating processes, against the hand-tiled
// dot-product kernel and, for large products, oneDNN's tile kernels through
// at::mm (which pays its setup every step): bf16 inference T100 B32 I32 H128
// 7.6-9.2 -> 2.6-3.8 ms, T512 B16 I64 H256 45-54 -> 23.5-24.5 ms (README,
// Performance).
std::atomic<int64_t> tile_loops{0};  // time loops (forward or backward) whose per-step products went to the tile unit
bool tile_unit() { return has_amx_tiles(); }

// A team of threads for one time loop, when there are fewer pieces of work
// than threads (batch 1, one direction): each thread runs f(j0, j1, true) for
// its slice of the hidden units, in whole 16-unit blocks, and the slices meet
// at team_barrier() inside f. Only with OpenMP (torch's own threads here).
//
// The team meets at its own barrier rather than OpenMP's: a thread that
// arrives first spins only briefly (kSpins pauses, a few microseconds, longer
// than a step's wait on a quiet machine) and then yields its core at every
// check. With another process busy on the other core, the thread it waits
// for may not be running at all; spinning on would hold the one core that
// thread could run on (measured before: a 20x slower step on a loaded machine).
struct TeamBarrier {
  std::atomic<int64_t> arrived{0};
  std::atomic<int64_t> phase{0};
  int64_t size = 1;
};
constexpr int kSpins = 2000;
thread_local TeamBarrier* team_now = nullptr;  // the team this thread is in, while it runs
thread_local int64_t team_phase = 0;           // the phase this thread waits to see passed

// The hidden units [j0, j1) of thread i of a team of n: whole 16-unit blocks.
inline void team_slice(int64_t H, int64_t i, int64_t n, int64_t& j0, int64_t& j1) {
  const int64_t blocks = (H + 15) / 16;
  j0 = std::min(H, blocks * i / n * 16);
  j1 = std::min(H, blocks * (i + 1) / n * 16);
}

template <typename F>
static void run_team(int64_t threads, int64_t H, const F& f) {
#ifdef _OPENMP
  TeamBarrier barrier;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
#pragma omp single
    barrier.size = n;  // (single ends with OpenMP's barrier: every thread sees the size)
    team_now = &barrier;
    team_phase = 0;
    int64_t j0, j1;
    team_slice(H, i, n, j0, j1);
    f(j0, j1, n > 1);
    team_now = nullptr;
  }
#else
  f(0, H, false);
#endif
}

// This thread's place in its team (0 outside one).
inline int64_t team_rank() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Every thread of the team waits here until all have arrived (see TeamBarrier).
inline void team_barrier() {
  TeamBarrier* b = team_now;
  if (b == nullptr || b->size < 2) return;
  const int64_t next = ++team_phase;
  if (b->arrived.fetch_add(1, std::memory_order_acq_rel) == b->size - 1) {  // the last to arrive opens it
    b->arrived.store(0, std::memory_order_relaxed);
    b->phase.store(next, std::memory_order_release);
    return;
  }
  for (int spin = 0; b->phase.load(std::memory_order_acquire) < next; ++spin) {
    if (spin < kSpins) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
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

// Whether a team that the sizes allow actually wins is measured, not assumed:
// with another process busy, the second core may not be free, and a team then
// waits for its partner at every step (measured: a batch-1 GRUCell step 3x
// slower at 2 threads than at 1 with one busy process beside). Each calling
// thread keeps, per kind of loop, the recent time per multiply-add of both
// ways (exponential averages) and takes the faster; every kExplore calls or
// more (see prefer_team) it runs the other way to see whether the load has
// changed. Both ways compute every hidden unit with the same arithmetic, so
// results are bit-identical whichever runs (LayerNorm-GRU's statistics
// included: a thread standing in for a team reduces them slice by slice, in
// the team's order; see forward_direction).
struct TeamChoice {
  double team = 0.0, solo = 0.0;  // seconds per multiply-add; 0: not measured yet
  int64_t calls = 0, next = 0;    // calls so far; the call that next tries the other way
  bool warm = false;              // the first call (which may start the thread pool, or touch new buffers) is not counted
  bool start_team = true;         // the way the first call goes
};
constexpr int64_t kExplore = 32;
thread_local TeamChoice cell_choice;
// 0: the measured choice; 1: always the team; 2: never (tests and benchmarks set it, set_team_policy)
std::atomic<int> team_policy{0};

void set_team_policy(int64_t policy) {
  TORCH_CHECK(policy >= 0 && policy <= 2, "grukit: team policy is 0 (measured), 1 (team) or 2 (alone), got ", policy);
  team_policy.store(static_cast<int>(policy), std::memory_order_relaxed);
}

static bool prefer_team(TeamChoice& c) {
  const int policy = team_policy.load(std::memory_order_relaxed);
  if (policy != 0) return policy == 1;
  if (c.team == 0.0 && c.solo == 0.0) return c.start_team;  // measure one way (the team unless told),
  if (c.team == 0.0) return true;                            // then the other,
  if (c.solo == 0.0) return false;
  const bool team_wins = c.team <= c.solo;
  // then the faster, and now and then the other: the slower it was, the rarer,
  // so that trying it costs a few percent at most (a team whose partner waits
  // for a busy core can take milliseconds for a step of microseconds)
  const double ratio = team_wins ? c.solo / c.team : c.team / c.solo;
  const int64_t wait = static_cast<int64_t>(kExplore * std::min(ratio, 1024.0));
  if (c.next == 0) c.next = wait;  // the first comparison: both ways just ran
  if (++c.calls < c.next) return team_wins;
  c.next = c.calls + wait;
  return !team_wins;
}

static void record_choice(TeamChoice& c, bool team, double seconds, double work) {
  if (!c.warm) {
    c.warm = true;
    return;
  }
  double& avg = team ? c.team : c.solo;
  const double per = seconds / std::max(work, 1.0);
  // A faster call is taken at once, a slower one into the average: one stalled
  // call (a partner thread woken late after the process idled) would otherwise
  // keep the team's average above the lone thread's for several explorations,
  // seconds of the slower way (measured: LayerNorm-GRU at T1000 B1 I64 H256
  // stuck near 10 ms for seconds after a pause, against 6.5 ms as a team).
  avg = avg == 0.0 || per < avg ? per : 0.75 * avg + 0.25 * per;
}

// Runs f as a team of `threads` (run_team) or alone, whichever prefer_team() says
// wins here now, timing it for the next choice.
template <typename F>
static void run_chosen(TeamChoice& choice, int64_t threads, int64_t H, double work, const F& f) {
  const bool team = prefer_team(choice);
  const auto t0 = std::chrono::steady_clock::now();
  if (team) {
    run_team(threads, H, f);
  } else {
    f(0, H, false);
  }
  record_choice(choice, team, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), work);
}

// Whether W x is computed straight into ws's slot for xhat of W x (LayerNorm-GRU
// training, float or double: ws is in the storage type there), which saves
// writing xhat a second time.
static bool xhat_in_gi(const CellArgs& c, bool train, at::ScalarType type) {
  return train && c.layer_norm() && at::toOpMathType(type) == type;
}

// out (M, 3H) = x (M, I) @ W^T, the input projection of every step. In float,
// a product this small runs by hand from W^T packed once (pack_rhs): a GEMM
// call costs more to set up than to run here (T20 B1 I32 H64: 20 x 32 x 192).
static void project(Tensor out, const Tensor& x, const Tensor& w) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  if (x.scalar_type() == at::kFloat && M * K * N <= kSmallProjection && w.scalar_type() == at::kFloat &&
      w.stride(1) == 1 && x.stride(1) == 1 && out.stride(1) == 1) {
    const Packed wt = pack_rhs(w, true);  // W^T (K, N)
    step_mm<float, float>(x.const_data_ptr<float>(), x.stride(0), M, K, wt, 0, N, out.data_ptr<float>(), out.stride(0));
  } else if (x.scalar_type() == at::kBFloat16 && M * K * N <= kSmallProjection) {
    // bfloat16: the same product in float, rounded once (see mm_into; tiny_forward_bf16 does the same)
    const Tensor xf = x.to(at::kFloat).contiguous();                // (M, K)
    const Packed wt = pack_rhs(w.to(at::kFloat).contiguous(), true);  // W^T (K, N)
    Tensor prod = at::empty({M, N}, xf.options());
    step_mm<float, float>(xf.const_data_ptr<float>(), K, M, K, wt, 0, N, prod.data_ptr<float>(), N);
    out.copy_(prod);
  } else {
    mm_into(out, x, w.t());
  }
}

// One direction of one layer for a block of B batch rows, forward: the time
// loop, given gi (T, B, 3H), the input projection W x of every step (without
// b_i; normalised here in place for LayerNorm-GRU). Fills hs (T+1, B, H), ws
// (T or 1, B, W) and out (T, B, H), a strided view of the layer's output. Each
// time slice of gi, hs, ws must be contiguous; the time stride may be larger
// (a block of a bigger batch; LayerNorm-GRU training in float or double: gi is
// ws's xhat slot, rows W apart). The cell's tensors for this block: norms (4, 3H)
// in the accumulation type, zone (T, B, H), mask (B, H), each undefined when
// off. With team > 1 the steps' hidden units are split between that many
// threads (see run_team), or with together false computed by this thread in
// the team's stead (the same bits; see run_layer).
static void forward_direction(const Tensor& gi, const Tensor& h0, const Tensor& w_hh, const OptTensor& b_ih,
                              const OptTensor& b_hh, const int64_t* len, const CellArgs& c, const Tensor& norms,
                              const Tensor& zone, const Tensor& mask, bool reverse, bool train, int64_t team,
                              bool together, Tensor hs, Tensor ws, Tensor out) {
  const bool reset_after = c.reset_after, ln = norms.defined();
  const int64_t T = gi.size(0), B = gi.size(1), H = w_hh.size(1);
  const int64_t hs_t = hs.stride(0), ws_t = ws.stride(0), gi_t = gi.stride(0), W = ws.stride(1);
  const auto opts = hs.options();
  const auto acc = opts.dtype(at::toOpMathType(hs.scalar_type()));
  const Tensor bi = bias_or_zeros(b_ih, 3 * H, acc);                   // (3H,)
  const Tensor bh = bias_or_zeros(b_hh, 3 * H, acc);                   // (3H,)
  Tensor h = at::empty({B, H}, acc);                                  // (B, H) running state
  copy_small(h, h0.scalar_type() == acc.dtype() ? h0 : h0.to(acc));
  const auto slot = [&](int64_t i) { return train ? i : i % 2; };    // where state i lives in hs
  copy_small(hs.select(0, slot(reverse ? T : 0)), h0);
  Tensor gh = at::empty({B, (reset_after ? 3 : 2) * H}, opts);        // (B, 3H) or (B, 2H)
  Tensor ghn = reset_after ? Tensor() : at::empty({B, H}, opts);       // (B, H) U_n rh
  Tensor rh = reset_after ? Tensor() : at::empty({B, H}, opts);        // (B, H) r * h_in
  Tensor hin = mask.defined() ? (h0 * mask).contiguous() : Tensor();  // (B, H) h * m_h, the products' input
  const Tensor u = (reset_after ? w_hh : w_hh.narrow(0, 0, 2 * H)).contiguous();  // (3H, H) or (2H, H)
  const Tensor u_n = reset_after ? Tensor() : w_hh.narrow(0, 2 * H, H).contiguous();  // (H, H)
  // U^T, packed once for all steps (a single step goes to a GEMM call instead)
  const int64_t gates = reset_after ? 3 : 2;  // blocks of U^T's columns, one per gate
  const Packed ut = T > 1 ? pack_rhs(u, true, gates) : Packed();   // U^T (H, 3H) or (H, 2H)
  if (on_tiles(ut, B)) tile_loops.fetch_add(1, std::memory_order_relaxed);
  const Packed u_nt = T > 1 && !reset_after ? pack_rhs(u_n, true) : Packed();  // U_n^T (H, H)

  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, hs.scalar_type(), "grukit_gru_layer", [&] {
    using A = at::opmath_type<scalar_t>;
    const A* g = ln ? norms.const_data_ptr<A>() : nullptr;  // gain_ih | bias_ih | gain_hh | bias_hh, 3H each
    // LN(W x) for every step and row, before the loop. In training (float,
    // double) gi is ws's xhat slot: normalised there in place, and each step's
    // gain and bias go into gy, read by the gate pass. Otherwise gi becomes
    // LN(W x) in place (xhat and rstd saved into ws for bfloat16 training).
    const bool in_ws = xhat_in_gi(c, train, hs.scalar_type());
    if (in_ws) {
      for (int64_t t = 0; t < T; ++t)
        for (int64_t b = 0; b < B; ++b) {
          A* w = ws.data_ptr<A>() + t * ws_t + b * W;
          w[10 * H + 1] = normalize_row<A>(w + 7 * H, 3 * H);
        }
    } else if (ln) {
      for (int64_t t = 0; t < T; ++t)
        for (int64_t b = 0; b < B; ++b) {
          A* w = train ? ws.data_ptr<A>() + t * ws_t + b * W : nullptr;
          layer_norm_row<scalar_t, A>(gi.data_ptr<scalar_t>() + t * gi_t + b * 3 * H, 3 * H, g, g + 3 * H,
                                      w ? w + 7 * H : nullptr, w ? w + 10 * H + 1 : nullptr);
        }
    }
    Tensor gy_t = in_ws ? at::empty({B, 3 * H}, opts) : Tensor();  // (B, 3H) this step's LN(W x)
    scalar_t* const gy = in_ws ? gy_t.data_ptr<scalar_t>() : nullptr;
    scalar_t* const gh_out = gh.data_ptr<scalar_t>();
    std::vector<A> stats(ln && team > 1 ? team * B * 3 : 0);  // a team's partial LN statistics: (thread, row, 3)
    Step<scalar_t, A> base{};
    base.H = H;
    base.gh = gh_out;
    base.ghn = reset_after ? nullptr : ghn.data_ptr<scalar_t>();
    base.rh = reset_after ? nullptr : rh.data_ptr<scalar_t>();
    base.bi = bi.data_ptr<A>();
    base.bh = bh.data_ptr<A>();
    base.h = h.data_ptr<A>();
    base.len = len;
    base.out_ld = out.stride(1);
    base.ws_ld = W;
    base.keep = train;
    base.mask = mask.defined() ? mask.const_data_ptr<scalar_t>() : nullptr;
    base.hin = mask.defined() ? hin.data_ptr<scalar_t>() : nullptr;
    base.zone_ld = zone.defined() ? zone.stride(1) : 0;
    base.zone_p = static_cast<A>(c.zone_p);
    // The time loop for the hidden units [j0, j1). In a team, each thread takes
    // a slice of the units, and the team meets at a barrier wherever the next
    // product reads all units (h' after each step; rh before U_n rh).
    const auto loop = [&](int64_t j0, int64_t j1, bool in_team) {
      Step<scalar_t, A> st = base;
      st.j0 = j0;
      st.j1 = j1;
      const bool all = j0 == 0 && j1 == H;
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = reverse ? T - 1 - s : s;
        const int64_t prev = reverse ? t + 1 : t, next = reverse ? t : t + 1;
        st.t = t;
        st.gi = in_ws ? gy : gi.const_data_ptr<scalar_t>() + t * gi_t;
        st.hout = hs.data_ptr<scalar_t>() + slot(next) * hs_t;
        st.out = out.data_ptr<scalar_t>() + t * out.stride(0);
        st.ws = ws.data_ptr<A>() + (train ? t : 0) * ws_t;
        st.zone = zone.defined() ? zone.const_data_ptr<scalar_t>() + t * zone.stride(0) : nullptr;
        if (all && ut.defined()) {  // (B, 3H) = h_in @ U^T: the one recurrent product, on raw pointers
          const scalar_t* hp = mask.defined() ? base.hin : hs.const_data_ptr<scalar_t>() + slot(prev) * hs_t;
          step_mm<scalar_t, A>(hp, mask.defined() ? H : hs.stride(1), B, H, ut, 0, gates * H, gh_out, gh.stride(0));
        } else if (all) {  // a single step: U is used once, unpacked
          const Tensor h_in = mask.defined() ? hin : hs.select(0, slot(prev));  // (B, H)
          recurrent<scalar_t, A>(gh, h_in, u, ut);
        } else {  // this slice's columns of r, z (and n); raw pointers: no tensors shared between the team
          const scalar_t* hp = mask.defined() ? base.hin : hs.const_data_ptr<scalar_t>() + slot(prev) * hs_t;
          const int64_t ld = mask.defined() ? H : hs.stride(1);
          for (int64_t k = 0; k < gates; ++k)
            step_mm<scalar_t, A>(hp, ld, B, H, ut, k * H + j0, j1 - j0, gh_out + k * H + j0, gh.stride(0));
        }
        if (ln && all && team == 1) {  // LN(U h_in), row by row
          for (int64_t b = 0; b < B; ++b)
            layer_norm_row<scalar_t, A>(gh_out + b * 3 * H, 3 * H, g + 6 * H, g + 9 * H,
                                        train ? st.ws + b * W + 4 * H : nullptr, train ? st.ws + b * W + 10 * H : nullptr);
        } else if (ln && all) {  // alone in a team's stead: the team's slices, partials and combination, in its order
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t i = 0; i < team; ++i) {
              int64_t k0, k1;
              team_slice(H, i, team, k0, k1);
              layer_norm_partial<scalar_t, A>(gh_out + b * 3 * H, H, k0, k1, stats.data() + (i * B + b) * 3);
            }
            A mu, rstd;
            layer_norm_combine<A>(stats.data() + b * 3, team, B * 3, mu, rstd);
            A* w = train ? st.ws + b * W : nullptr;
            for (int64_t i = 0; i < team; ++i) {
              int64_t k0, k1;
              team_slice(H, i, team, k0, k1);
              layer_norm_apply<scalar_t, A>(gh_out + b * 3 * H, H, k0, k1, mu, rstd, g + 6 * H, g + 9 * H,
                                            w ? w + 4 * H : nullptr);
            }
            if (w) w[10 * H] = rstd;
          }
        } else if (ln) {  // in a team: each thread's partial statistics, one meeting, then its own columns
          const int64_t rank = team_rank();
          for (int64_t b = 0; b < B; ++b)
            layer_norm_partial<scalar_t, A>(gh_out + b * 3 * H, H, j0, j1, stats.data() + (rank * B + b) * 3);
          team_barrier();
          for (int64_t b = 0; b < B; ++b) {
            A mu, rstd;
            layer_norm_combine<A>(stats.data() + b * 3, team, B * 3, mu, rstd);
            A* w = train ? st.ws + b * W : nullptr;
            layer_norm_apply<scalar_t, A>(gh_out + b * 3 * H, H, j0, j1, mu, rstd, g + 6 * H, g + 9 * H, w ? w + 4 * H : nullptr);
            if (w && rank == 0) w[10 * H] = rstd;
          }
        }
        if (in_ws) {  // this step's LN(W x): the columns this thread's gate pass reads
          const A* w = ws.const_data_ptr<A>() + t * ws_t;
          for (int64_t b = 0; b < B; ++b)
            layer_norm_affine<scalar_t, A>(w + b * W + 7 * H, gy + b * 3 * H, H, j0, j1, g, g + 3 * H);
        }
        if (reset_after) {
          forward_after(st, 0, B);
        } else {
          forward_before_rz(st, 0, B);
          if (in_team) team_barrier();
          if (all) {
            recurrent<scalar_t, A>(ghn, rh, u_n, u_nt);  // (B, H) = (r * h_in) @ U_n^T
          } else {
            step_mm<scalar_t, A>(st.rh, H, B, H, u_nt, j0, j1 - j0, ghn.data_ptr<scalar_t>() + j0, H);
          }
          forward_before_n(st, 0, B);
        }
        if (in_team) team_barrier();
      }
    };
    if (team > 1 && together) {
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

static std::vector<Piece> pieces(int64_t D, int64_t B, int64_t threads) {
  const int64_t blocks = D >= threads ? 1 : std::max<int64_t>(1, std::min(B, threads / D));
  std::vector<Piece> out;
  for (int64_t d = 0; d < D; ++d)
    for (int64_t c = 0; c < blocks; ++c) out.push_back({d, c * B / blocks, (c + 1) * B / blocks - c * B / blocks});
  return out;
}

// MKL's own thread count for the calling thread (0: back to the global one),
// where torch's BLAS is MKL. The Fortran-style name, which takes a pointer, is
// the one torch's library exports under every spelling; weak, so that a build
// against another BLAS loads.
extern "C" int mkl_set_num_threads_local_(const int*) __attribute__((weak));
static int mkl_threads_local(int n) { return mkl_set_num_threads_local_ ? mkl_set_num_threads_local_(&n) : 0; }

// Everything on the calling thread while it lives: torch's parallel regions
// (at::get_num_threads() reads this thread's OpenMP setting) and the GEMMs of
// MKL and oneDNN. Nothing parallel starts, so no idle worker of torch's
// thread pool spins on a core this thread needs (see run_layer).
struct OneThread {
#ifdef _OPENMP
  int omp = omp_get_max_threads();
#endif
  int mkl = mkl_threads_local(1);
  OneThread() {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
  }
  ~OneThread() {
#ifdef _OPENMP
    omp_set_num_threads(omp);
#endif
    mkl_threads_local(mkl);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;
};

// A layer pass that can use several threads (several pieces, a batch-1 team,
// or a product big enough for the GEMM library, which runs on all threads)
// runs either with them (the GEMMs on all threads, directions and batch blocks
// side by side, the team) or on the calling thread alone, whichever has been
// faster lately on this thread (TeamChoice, per kind of pass and shape). A
// pass whose only threads are a GEMM's needs the choice too: T1000 B1 I64 H256
// training, whose backward's weight-gradient products ran on two threads,
// took 90-100 ms for one call in four against 25 ms on one thread beside a
// busy process.
// Measured with another process busy on one of two cores: the threads' pieces
// meet only at the end of the layer, but a descheduled one holds up the join,
// and after each parallel region torch's idle OpenMP worker spins for
// milliseconds on a core the calling thread then shares: up to 3x the
// one-thread time (T100 B32 I64 H128 bidirectional inference). The pieces are
// the same either way (`pieces` is given the free threads; a lone thread
// computes a team's units in the team's order) and each computes its rows the
// same way. The GEMMs (MKL's) gave the same bits on one thread as on two for
// every shape tried (tests/test_native.py, and shapes up to T50 B256 I256 H512
// and T64 B16 I512 H1024); grukit's own gemm (AMD CPUs) does by construction,
// each sum in one order whatever the threads (tests/test_native.py). So the
// results do not depend on the choice.
//
// One choice per kind of pass ([inference, training forward, backward] x
// [plain, LayerNorm-GRU]) and shape: the times compared are of the same work. One choice shared by all
// shapes compared the time per multiply-add of different shapes, and a small
// shape is slower per multiply-add either way: after a noisy moment on a small
// shape a large one could run alone for the rest of a process, the other way
// tried only every few dozen calls (measured: T50 B256 I256 H512 inference at
// 289 ms alone against 148 ms with both threads, on a quiet machine, for a
// whole benchmark run). The number of steps is not part of the shape (a time
// per multiply-add compares lengths fairly, and bucketed batches vary it). A
// shape seen for the first time starts the way that last won for its kind of
// pass (not the way of an occasional try of the other), and tries the other
// way once it has a time for that way (its first call, which allocates the
// shape's buffers, is not counted).
struct LayerShape {
  int64_t kind, ln, type, D, B, I, H;
  bool operator<(const LayerShape& o) const {
    return std::tie(kind, ln, type, D, B, I, H) < std::tie(o.kind, o.ln, o.type, o.D, o.B, o.I, o.H);
  }
};
thread_local std::map<LayerShape, TeamChoice> layer_choices;
thread_local bool layer_last[3][2] = {{true, true}, {true, true}, {true, true}};  // each kind's last winner
std::atomic<int64_t> passes_alone{0};  // layer passes run on the calling thread by choice (for tests)

static TeamChoice& layer_choice(const LayerShape& shape) {
  if (layer_choices.size() > 256) layer_choices.clear();  // a bound for a process that sees many shapes
  const auto [it, fresh] = layer_choices.try_emplace(shape);
  if (fresh) it->second.start_team = layer_last[shape.kind][shape.ln];
  return it->second;
}

// A layer pass of this shape (kind 0 inference, 1 training forward, 2
// backward); where threads may apply, run the way its shape's choice prefers
// and time it. The choice is looked up only then: a pass on one thread pays no
// map lookup.
template <typename F>
static void run_layer(bool threads, const LayerShape& shape, double work, const F& pass) {
  if (!threads || free_threads() < 2) return pass(true);
  const int64_t kind = shape.kind, ln = shape.ln;
  TeamChoice& choice = layer_choice(shape);
  const bool together = prefer_team(choice);
  const int policy = team_policy.load(std::memory_order_relaxed);
  if (policy != 0) {
    layer_last[kind][ln] = policy == 1;  // a pinned way wins by definition
  } else if (choice.team != 0.0 && choice.solo != 0.0) {
    layer_last[kind][ln] = choice.team <= choice.solo;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (together) {
    pass(true);
  } else {
    ++passes_alone;
    OneThread one;
    pass(false);
  }
  record_choice(choice, together, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), work);
}

template <typename F>
static void run_pieces(const std::vector<Piece>& ps, bool together, const F& f) {
  if (ps.size() == 1 || !together) {
    for (const Piece& p : ps) f(p);
    return;
  }
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

static Tensor rows_of(const OptTensor& t, int64_t d, int64_t dim, int64_t b0, int64_t n) {
  return given(t) ? block(t->select(0, d), dim, b0, n) : Tensor();
}

// D directions of one layer. Weights are stacked per direction: w_ih (D, 3H, I),
// w_hh (D, 3H, H), b_* (D, 3H), h0 (D, B, H), and the cell's tensors (CellArgs).
// Direction 1 (or 0 when reverse) runs from the last step to the first.
// Returns out (T, B, D*H) (directions side by side, zero past each sequence's
// end), h_n (D, B, H), and for backward hs (D, T+1, B, H) and ws (D, T, B, W)
// (unless train: hs only the last two states (D, 2, B, H), ws empty).
static std::tuple<Tensor, Tensor, Tensor, Tensor> layer_forward(const Tensor& x_, const Tensor& h0, const Tensor& w_ih,
                                                                 const Tensor& w_hh, const OptTensor& b_ih,
                                                                 const OptTensor& b_hh, const OptTensor& lengths,
                                                                 const CellArgs& c, bool reverse, bool train) {
  // Nothing inside differentiates or is returned as a view: the many views and
  // temporaries below skip autograd's view tracking (a microsecond each).
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  check_args(x_, h0, w_ih, w_hh, b_ih, b_hh, lengths, c);
  const int64_t D = w_ih.size(0);
  TORCH_CHECK(D == 1 || !reverse, "grukit: reverse needs one direction");
  const Tensor x = x_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(2), W = c.ws_width(H);
  const auto acc = x.options().dtype(at::toOpMathType(x.scalar_type()));
  Tensor out = fresh({T, B, D * H}, x.options());                      // (T, B, D*H)
  Tensor hs = recycled({D, train ? T + 1 : 2, B, H}, x.options());     // (D, T+1, B, H), or (D, 2, B, H)
  Tensor ws = recycled({D, train ? T : 1, B, W}, acc);                 // (D, T, B, W) or scratch
  // The input projection of every step, for the whole batch: one GEMM per
  // direction on all threads, before the time loops split the batch.
  const int64_t I = x.size(2);
  // (D, T, B, 3H); LayerNorm-GRU training in float or double writes it into
  // ws, where its xhat is kept (see forward_direction)
  Tensor gi = xhat_in_gi(c, train, x.scalar_type()) ? ws.narrow(3, 7 * H, 3 * H)
                                                    : scratch(0, {D, T, B, 3 * H}, x.options());
  const Tensor norms = c.layer_norm() ? c.norms->to(acc).contiguous() : Tensor();  // (D, 4, 3H)
  const int64_t* len = lengths_ptr(lengths);
  const auto ps = pieces(D, B, free_threads());
  const int64_t team = team_size(ps.size(), T, B, H);
  const int64_t kind = train ? 1 : 0;
  run_layer(ps.size() > 1 || team > 1 || T * B * 3 * H * I > kSmallProjection,
            LayerShape{kind, c.layer_norm(), static_cast<int64_t>(x.scalar_type()), D, B, I, H},
            double(D) * T * B * 3 * H * (I + H), [&](bool together) {
    for (int64_t d = 0; d < D; ++d)
      project(gi.select(0, d).view({T * B, 3 * H}), x.view({T * B, I}), w_ih.select(0, d));
    run_pieces(ps, together, [&](const Piece& p) {
      forward_direction(block(gi.select(0, p.d), 1, p.b0, p.n), block(h0.select(0, p.d), 0, p.b0, p.n),
                        w_hh.select(0, p.d), pick(b_ih, p.d), pick(b_hh, p.d), len ? len + p.b0 : nullptr, c,
                        norms.defined() ? norms.select(0, p.d) : Tensor(), rows_of(c.zone, p.d, 1, p.b0, p.n),
                        rows_of(c.mask, p.d, 0, p.b0, p.n), reverse || p.d == 1, train, team, together,
                        block(hs.select(0, p.d), 1, p.b0, p.n), block(ws.select(0, p.d), 1, p.b0, p.n),
                        block(D == 1 ? out : out.narrow(2, p.d * H, H), 1, p.b0, p.n));
    });
  });
  Tensor h_n = at::empty({D, B, H}, x.options());                      // (D, B, H)
  for (int64_t d = 0; d < D; ++d) {
    const int64_t last = reverse || d == 1 ? 0 : T;  // the index of the final state
    copy_small(h_n.select(0, d), hs.select(0, d).select(0, train ? last : last % 2));
  }
  if (!train) ws = Tensor();  // nothing reads it (gru_layer returns out and h_n only)
  return {out, h_n, hs, ws};
}

// The op for inference: (out, h_n) only, nothing kept for backward.
std::tuple<Tensor, Tensor> gru_layer(const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                     const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& lengths,
                                     const OptTensor& norms, const OptTensor& zoneout, const OptTensor& h_mask,
                                     double zoneout_p, bool reset_after, bool reverse) {
  auto [out, h_n, hs, ws] = layer_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                                          CellArgs{reset_after, norms, zoneout, zoneout_p, h_mask}, reverse, false);
  return {out, h_n};
}

// The op for training: also the saved states hs and the workspace ws (see the top of this file).
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_layer_train(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                                                           const Tensor& w_hh, const OptTensor& b_ih,
                                                           const OptTensor& b_hh, const OptTensor& lengths,
                                                           const OptTensor& norms, const OptTensor& zoneout,
                                                           const OptTensor& h_mask, double zoneout_p, bool reset_after,
                                                           bool reverse) {
  return layer_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, CellArgs{reset_after, norms, zoneout, zoneout_p, h_mask},
                       reverse, true);
}

// One direction of one layer for a block of B batch rows, backward through
// time: only the dh recursion. Reads dout (T, B, H) (a strided view of dL/d
// output), dh_n (B, H), hs (T+1, B, H) and ws (T, B, W); writes dG_i, dG_h
// (T, B, 3H) (with layer norm: the gradients of the products before their
// norms) and dh0 (B, H), and adds to `sums` (6, 3H) in the accumulation type,
// if defined: the sums of dG_i and dG_h over rows and steps (the bias
// gradients; for reset_after=False only row 0, since there dG_h = dG_i), then
// with layer norm (which needs sums) dL/d of gain_ih, bias_ih, gain_hh, bias_hh. Time slices of hs,
// ws, dG_* contiguous. norms, zone, mask as in forward_direction.
static void backward_recursion(const Tensor& dout, const Tensor& dh_n, const Tensor& hs, const Tensor& ws,
                               const Tensor& w_hh, const int64_t* len, const CellArgs& c, const Tensor& norms,
                               const Tensor& zone, const Tensor& mask, bool reverse, Tensor dgi, Tensor dgh, Tensor dh0,
                               Tensor sums) {
  const bool reset_after = c.reset_after, ln = norms.defined();
  const int64_t T = ws.size(0), B = ws.size(1), H = w_hh.size(1), W = ws.stride(1);
  const auto opts = hs.options();
  const auto acc = opts.dtype(at::toOpMathType(hs.scalar_type()));
  Tensor dhz = dh_n.to(acc, false, /*copy=*/true).contiguous();       // (B, H) dL/dh carried back directly, first dL/dh_n
  Tensor mm = at::zeros({B, H}, opts);                                 // (B, H) dG_h @ U carried back: dL/dh_in
  Tensor drh = reset_after ? Tensor() : at::empty({B, H}, opts);       // (B, H) d(rh)
  const Tensor u = w_hh.contiguous();                                  // (3H, H)
  const Tensor u_rz = u.narrow(0, 0, 2 * H);                           // (2H, H)
  const Tensor u_n = u.narrow(0, 2 * H, H);                            // (H, H)
  // the right-hand sides of the per-step products, packed once (pack_rhs)
  const Packed up = reset_after ? pack_rhs(u, false) : Packed();
  const Packed up_rz = reset_after ? Packed() : pack_rhs(u_rz, false);
  const Packed up_n = reset_after ? Packed() : pack_rhs(u_n, false);
  if (on_tiles(reset_after ? up : up_n, B)) tile_loops.fetch_add(1, std::memory_order_relaxed);

  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, hs.scalar_type(), "grukit_gru_layer_backward", [&] {
    using A = at::opmath_type<scalar_t>;
    const A* g = ln ? norms.const_data_ptr<A>() : nullptr;  // gain_ih | bias_ih | gain_hh | bias_hh
    A* dn = ln ? sums.data_ptr<A>() + 6 * H : nullptr;      // dgain_ih | dbias_ih | dgain_hh | dbias_hh
    BackStep<scalar_t, A> st{};
    st.H = H;
    st.ws_ld = W;
    st.mm = mm.data_ptr<scalar_t>();
    st.dhz = dhz.data_ptr<A>();
    st.drh = reset_after ? nullptr : drh.data_ptr<scalar_t>();
    st.db = sums.defined() ? sums.data_ptr<A>() : nullptr;
    st.mask = mask.defined() ? mask.const_data_ptr<scalar_t>() : nullptr;
    st.zone_ld = zone.defined() ? zone.stride(1) : 0;
    st.zone_p = static_cast<A>(c.zone_p);
    st.len = len;
    st.dout_ld = dout.stride(1);
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = reverse ? T - 1 - s : s;
      const int64_t prev = reverse ? t + 1 : t;
      st.t = t;
      st.ws = ws.data_ptr<A>() + t * ws.stride(0);
      st.hprev = hs.data_ptr<scalar_t>() + prev * hs.stride(0);
      st.dout = dout.data_ptr<scalar_t>() + t * dout.stride(0);
      st.dgi = dgi.data_ptr<scalar_t>() + t * dgi.stride(0);
      st.dgh = dgh.data_ptr<scalar_t>() + t * dgh.stride(0);
      st.zone = zone.defined() ? zone.const_data_ptr<scalar_t>() + t * zone.stride(0) : nullptr;
      if (reset_after) {
        backward_after(st, 0, B);
        if (ln) {  // through LN(U h_in): dG_h becomes the product's gradient
          for (int64_t b = 0; b < B; ++b) {
            const A* w = st.ws + b * W;
            layer_norm_row_backward<scalar_t, A>(st.dgh + b * 3 * H, 3 * H, g + 6 * H, w + 4 * H, w[10 * H], dn + 6 * H,
                                                 dn + 9 * H);
            // through LN(W x), while this step's dG_i is still in cache (the bias sums saw it before)
            layer_norm_row_backward<scalar_t, A>(st.dgi + b * 3 * H, 3 * H, g, w + 7 * H, w[10 * H + 1], dn, dn + 3 * H);
          }
        }
        // (B, H) = dG_h @ U, on raw pointers (a tensor view per step costs about a microsecond)
        step_mm<scalar_t, A>(st.dgh, dgh.stride(1), B, 3 * H, up, 0, H, mm.data_ptr<scalar_t>(), H);
      } else {
        backward_before_nz(st, 0, B);
        step_mm<scalar_t, A>(st.dgi + 2 * H, dgi.stride(1), B, H, up_n, 0, H, drh.data_ptr<scalar_t>(), H);  // d(rh) = da_n @ U_n
        backward_before_r(st, 0, B);
        step_mm<scalar_t, A>(st.dgi, dgi.stride(1), B, 2 * H, up_rz, 0, H, mm.data_ptr<scalar_t>(), H);  // [da_r, da_z] @ U_rz
      }
    }
  });
  const Tensor dh_in = mask.defined() ? mm.to(acc) * mask : mm.to(acc);  // (B, H)
  dh0.copy_(dhz + dh_in);  // (B, H) dL/dh0: what is left of the recursion
}

// The hoisted products of one direction, after the recursion: one GEMM each
// over all T * B rows. Writes dx (T, B, I) (if defined; added to if accumulate),
// dw_ih (3H, I), dw_hh (3H, H). (The bias gradients are summed in the recursion.)
// mask: recurrent dropout's (B, H), or undefined: the products saw h * mask.
static void weight_grads(const Tensor& x, const Tensor& hs, const Tensor& ws, const Tensor& dgi, const Tensor& dgh,
                         const Tensor& w_ih, const Tensor& mask, bool reset_after, bool reverse, bool accumulate,
                         Tensor dx, Tensor dw_ih, Tensor dw_hh) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = hs.size(2);
  const Tensor dgi2 = dgi.view({T * B, 3 * H});                              // (T*B, 3H)
  const Tensor dgh2 = dgh.view({T * B, 3 * H});                              // (T*B, 3H)
  Tensor hprev = hs.narrow(0, reverse ? 1 : 0, T);                          // (T, B, H)
  if (mask.defined()) hprev = hprev * mask;                                  // h_in = h * m_h
  hprev = hprev.reshape({T * B, H});                                         // (T*B, H)
  if (dx.defined()) {
    Tensor dx2 = dx.view({T * B, I});
    mm_into(dx2, dgi2, w_ih, accumulate);  // (T*B, I) (+)= dG_i @ W
  }
  mm_into(dw_ih, dgi2.t(), x.view({T * B, I}));  // (3H, I) = dG_i^T @ X
  if (reset_after) {
    mm_into(dw_hh, dgh2.t(), hprev);  // (3H, H) = sum_t dG_h[t]^T @ h_in[t-1]
  } else {  // the n rows multiply rh, not h_in
    Tensor rows_rz = dw_hh.narrow(0, 0, 2 * H), rows_n = dw_hh.narrow(0, 2 * H, H);
    mm_into(rows_rz, dgi2.narrow(1, 0, 2 * H).t(), hprev);
    const Tensor rh = ws.narrow(2, 3 * H, H).to(x.scalar_type()).reshape({T * B, H});  // (T*B, H)
    mm_into(rows_n, dgi2.narrow(1, 2 * H, H).t(), rh);
  }
}

// Backward of gru_layer_train, stacked per direction like its inputs. Returns
// dx (T, B, I) (summed over directions), dh0 (D, B, H), dw_ih (D, 3H, I),
// dw_hh (D, 3H, H), db_ih and db_hh (D, 3H) (empty where not needed), and
// dnorms (D, 4, 3H) (empty without layer norm).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_layer_backward(
    const Tensor& dout_, const Tensor& dh_n, const Tensor& x_, const Tensor& hs, const Tensor& ws, const Tensor& w_ih,
    const Tensor& w_hh, const OptTensor& lengths, const OptTensor& norms_, const OptTensor& zoneout,
    const OptTensor& h_mask, double zoneout_p, bool reset_after, bool reverse, bool need_dx, bool need_bias) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // as in layer_forward
  const CellArgs c{reset_after, norms_, zoneout, zoneout_p, h_mask};
  check_args(x_, hs.select(1, 0), w_ih, w_hh, std::nullopt, std::nullopt, lengths, c);
  const int64_t D = w_ih.size(0);
  const Tensor x = x_.contiguous();
  const Tensor dout = dout_.contiguous();  // (T, B, D*H) dL/doutput
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(2);
  TORCH_CHECK(ws.dim() == 4 && ws.size(1) == T && ws.size(3) == c.ws_width(H),
              "grukit: backward needs the workspace of gru_layer_train");
  const auto opts = x.options();
  const auto acc = opts.dtype(at::toOpMathType(x.scalar_type()));
  const bool ln = c.layer_norm();
  Tensor dgi = scratch(1, {D, T, B, 3 * H}, opts);                     // (D, T, B, 3H) dG_i
  Tensor dgh = reset_after ? scratch(2, {D, T, B, 3 * H}, opts) : dgi;  // (D, T, B, 3H) dG_h
  Tensor dx = need_dx ? fresh({T, B, I}, opts) : at::empty({0}, opts);  // (T, B, I)
  Tensor dh0 = at::empty({D, B, H}, opts);                             // (D, B, H)
  Tensor dw_ih = at::empty({D, 3 * H, I}, opts);                       // (D, 3H, I)
  Tensor dw_hh = at::empty({D, 3 * H, H}, opts);                       // (D, 3H, H)
  Tensor db_ih = need_bias ? at::empty({D, 3 * H}, opts) : at::empty({0}, opts);  // (D, 3H)
  Tensor db_hh = need_bias ? at::empty({D, 3 * H}, opts) : at::empty({0}, opts);
  Tensor dnorms = ln ? at::empty({D, 4, 3 * H}, opts) : at::empty({0}, opts);  // (D, 4, 3H)
  const Tensor norms = ln ? norms_->to(acc).contiguous() : Tensor();  // (D, 4, 3H)
  const int64_t* len = lengths_ptr(lengths);
  const auto ps = pieces(D, B, free_threads());
  // each piece sums its own rows' parameter gradients (in the accumulation type), added up below:
  // db_i, db_h, then layer norm's dgain_ih, dbias_ih, dgain_hh, dbias_hh
  const bool sums = need_bias || ln;
  const int64_t rows = ln ? 6 : 2;  // db_i, db_h (+ the norms' four)
  Tensor parts = sums ? at::zeros({static_cast<int64_t>(ps.size()), rows, 3 * H}, acc) : Tensor();
  // dL/dU h's products, 3H x H, and dx, dW_ih, dW_hh's: 3H x (3H + 2I) multiply-adds per row and step
  run_layer(ps.size() > 1 || T * B * 3 * H * std::max(I, H) > kSmallProjection,
            LayerShape{2, ln, static_cast<int64_t>(x.scalar_type()), D, B, I, H},
            double(D) * T * B * 3 * H * (3 * H + 2 * I), [&](bool together) {
    run_pieces(ps, together, [&](const Piece& p) {
      auto rows = [&](const Tensor& t) { return t.select(0, p.d).narrow(1, p.b0, p.n); };  // (T, n, ...)
      const int64_t i = &p - ps.data();
      backward_recursion(dout.narrow(2, p.d * H, H).narrow(1, p.b0, p.n), dh_n.select(0, p.d).narrow(0, p.b0, p.n),
                         rows(hs), rows(ws), w_hh.select(0, p.d), len ? len + p.b0 : nullptr, c,
                         ln ? norms.select(0, p.d) : Tensor(), rows_of(zoneout, p.d, 1, p.b0, p.n),
                         rows_of(h_mask, p.d, 0, p.b0, p.n), reverse || p.d == 1, rows(dgi), rows(dgh),
                         dh0.select(0, p.d).narrow(0, p.b0, p.n), sums ? parts.select(0, i) : Tensor());
    });
    for (int64_t d = 0; d < D && sums; ++d) {
      Tensor sum = at::zeros({rows, 3 * H}, acc);
      for (size_t i = 0; i < ps.size(); ++i)
        if (ps[i].d == d) sum += parts.select(0, static_cast<int64_t>(i));
      if (need_bias) {
        if (!reset_after) sum.select(0, 1).copy_(sum.select(0, 0));  // dG_h = dG_i
        if (reset_after) sum.select(0, 1).narrow(0, 0, 2 * H).copy_(sum.select(0, 0).narrow(0, 0, 2 * H));  // r, z: dG_h = dG_i
        db_ih.select(0, d).copy_(sum.select(0, 0));
        db_hh.select(0, d).copy_(sum.select(0, 1));
      }
      if (ln) dnorms.select(0, d).copy_(sum.narrow(0, 2, 4));
    }
    for (int64_t d = 0; d < D; ++d) {
      weight_grads(x, hs.select(0, d), ws.select(0, d), dgi.select(0, d), dgh.select(0, d), w_ih.select(0, d),
                   given(h_mask) ? h_mask->select(0, d) : Tensor(), reset_after, reverse || d == 1, d > 0,
                   need_dx ? dx : Tensor(), dw_ih.select(0, d), dw_hh.select(0, d));
    }
  });
  return {dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dnorms};
}

// What the three stack functions share: the arguments checked, h0 (zeros if
// absent), and each layer's parameters stacked per direction as the ops take them.
struct StackArgs {
  int64_t D, per, H;
  const std::vector<Tensor>& params;
  const std::vector<Tensor>& norms;
  bool has_bias;
  Tensor h;  // (L*D, B, H)
  at::ScalarType type;
  StackArgs(const Tensor& x, const OptTensor& h0, const std::vector<Tensor>& params_, int64_t num_layers,
            bool bidirectional, bool bias_, const std::vector<Tensor>& norms_)
      : D(bidirectional ? 2 : 1), per(bias_ ? 4 : 2), H(0), params(params_), norms(norms_), has_bias(bias_),
        type(x.scalar_type()) {
    TORCH_CHECK(num_layers >= 1 && static_cast<int64_t>(params.size()) == num_layers * D * per,
                "grukit: expected ", num_layers * D * per, " parameters, got ", params.size());
    TORCH_CHECK(norms.empty() || static_cast<int64_t>(norms.size()) == num_layers * D * 4, "grukit: expected ",
                num_layers * D * 4, " layer-norm parameters, got ", norms.size());
    TORCH_CHECK(x.dim() == 3, "grukit: x must be (T, B, I), got ", x.sizes());
    TORCH_CHECK(params[1].dim() == 2, "grukit: weight_hh must be (3H, H), got ", params[1].sizes());
    H = params[1].size(1);
    if (given(h0)) {
      h = *h0;
    } else {  // zeros by memset: at::zeros fills with a parallel region from 32k elements on (see stacked)
      h = at::empty({num_layers * D, x.size(1), H}, x.options());
      std::memset(h.data_ptr(), 0, h.numel() * h.element_size());
    }
    TORCH_CHECK(h.dim() == 3 && h.size(0) == num_layers * D, "grukit: h0 must be (L*D, B, H), got ", h.sizes());
  }
  Tensor stacked(int64_t layer, int64_t k) const {  // parameter k of both directions: (D, ...)
    const Tensor& p = params[layer * D * per + k];
    if (D == 1) return p.unsqueeze(0);
    const Tensor& q = params[(layer * D + 1) * per + k];
    if (!(p.is_contiguous() && q.is_contiguous() && p.scalar_type() == q.scalar_type() && p.sizes() == q.sizes()))
      return at::stack({p, q});  // (which also names a mismatch)
    // two plain copies: at::stack's copy starts a parallel region from 32k elements on (H128's
    // weights), which wakes torch's idle thread pool even where the layer then runs on one thread
    Tensor both = at::empty({2, p.numel()}, p.options());
    copy_small(both.select(0, 0), p.view(-1));
    copy_small(both.select(0, 1), q.view(-1));
    std::vector<int64_t> shape{2};
    shape.insert(shape.end(), p.sizes().begin(), p.sizes().end());
    return both.view(shape);
  }
  OptTensor bias(int64_t layer, int64_t k) const { return has_bias ? OptTensor(stacked(layer, k)) : std::nullopt; }
  OptTensor layer_norms(int64_t layer) const {  // (D, 4, 3H), as the op takes them
    if (norms.empty()) return std::nullopt;
    const std::vector<Tensor> own(norms.begin() + layer * D * 4, norms.begin() + (layer + 1) * D * 4);
    for (const Tensor& t : own) {  // stacking would promote a stray dtype instead of refusing it
      TORCH_CHECK(t.scalar_type() == type, "grukit: a layer-norm parameter has dtype ", t.scalar_type(), " but x has ",
                  type);
    }
    return at::stack(own).view({D, 4, -1});
  }
};

// How many stack calls ran on raw pointers (tiny_forward, tiny_backward; tests
// check that they run where meant).
std::atomic<int64_t> tiny_runs{0};

// Small plain stacks run on raw pointers: float, one direction, reset_after, no
// cell options or masks, T > 1, no team or pieces to share a layer, and every
// product of forward and backward small enough for small_mm (mm_into's bound).
// There the general path's thirty-odd tensor views and temporaries per layer
// and call (0.2-1 us each) cost as much as the arithmetic (T20 B1 I32 H64).
// The tiny passes run the general path's arithmetic in the same order
// (project's product, U^T packed once, the same step products, gate passes and
// weight-gradient products) and fill the same saved states, so the bits are
// the same (tests/test_native.py) and either backward reads either forward's
// states. Where they do not apply, the general path runs and checks everything.
static bool tiny_applies(const Tensor& x, const OptTensor& h0, const std::vector<Tensor>& params, int64_t L,
                         bool bidirectional, bool bias, bool reset_after, const std::vector<Tensor>& norms,
                         double zoneout_p) {
  const int64_t per = bias ? 4 : 2;
  if (bidirectional || !reset_after || !norms.empty() || zoneout_p != 0.0 || L < 1 || x.dim() != 3 ||
      static_cast<int64_t>(params.size()) != L * per || x.scalar_type() != at::kFloat || !x.is_cpu() ||
      !x.is_contiguous() || params[1].dim() != 2)
    return false;
  const int64_t T = x.size(0), B = x.size(1), H = params[1].size(1);
  if (T < 2 || B < 1 || H < 1 || pieces(1, B, free_threads()).size() != 1 || team_size(1, T, B, H) != 1) return false;
  if (given(h0) && !(h0->scalar_type() == at::kFloat && h0->is_cpu() && h0->is_contiguous() && h0->dim() == 3 &&
                     h0->size(0) == L && h0->size(1) == B && h0->size(2) == H))
    return false;
  int64_t I = x.size(2);
  for (int64_t l = 0; l < L; ++l, I = H) {
    for (int64_t k = 0; k < per; ++k) {
      const Tensor& p = params[l * per + k];
      const bool shape = k == 0 ? p.dim() == 2 && p.size(0) == 3 * H && p.size(1) == I
                         : k == 1 ? p.dim() == 2 && p.size(0) == 3 * H && p.size(1) == H
                                  : p.dim() == 1 && p.size(0) == 3 * H;
      if (!shape || p.scalar_type() != at::kFloat || !p.is_cpu() || !p.is_contiguous()) return false;
    }
    if (T * B * 3 * H * std::max(I, H) > kSmallProjection) return false;
  }
  return true;
}

// A thread's scratch for the tiny passes (floats; grows, never shrinks).
static float* tiny_arena(int64_t n) {
  thread_local std::vector<float> arena;
  if (static_cast<int64_t>(arena.size()) < n) arena.resize(n);
  return arena.data();
}

// The forward of a stack tiny_applies to. train: hs (1, T+1, B, H) and ws
// (1, T, B, 4H) of every layer go to `saved` as gru_stack_train keeps them.
static void tiny_forward(const Tensor& x, const OptTensor& h0, const std::vector<Tensor>& params, int64_t L, bool bias,
                         bool train, Tensor& out, Tensor& h_n, std::vector<Tensor>* saved) {
  const int64_t T = x.size(0), B = x.size(1), H = params[1].size(1), G = 3 * H, per = bias ? 4 : 2;
  const int64_t most = std::max(x.size(2), H), between = !train && L > 1 ? 2 * T * B * H : 0;
  // W^T (I, 3H), U^T (H, 3H), gi (T, B, 3H), gh (B, 3H), h (B, H), zero biases (3H), two outputs between layers
  float* const wt = tiny_arena((most + H + T * B + B) * G + B * H + G + between);
  float* const ut = wt + most * G;
  float* const gi = ut + H * G;
  float* const gh = gi + T * B * G;
  float* const h = gh + B * G;
  float* const zero = h + B * H;
  float* const mid = zero + G;
  std::fill(zero, zero + G, 0.0f);
  h_n = at::empty({L, B, H}, x.options());
  const float* in = x.const_data_ptr<float>();
  int64_t I = x.size(2);
  for (int64_t l = 0; l < L; ++l, I = H) {
    const Tensor* p = params.data() + l * per;
    Tensor layer_out = train || l == L - 1 ? fresh({T, B, H}, x.options()) : Tensor();  // (T, B, H)
    float* const dst = layer_out.defined() ? layer_out.data_ptr<float>() : mid + (l % 2) * T * B * H;
    Tensor hs = train ? recycled({1, T + 1, B, H}, x.options()) : Tensor();  // (1, T+1, B, H)
    Tensor ws = train ? recycled({1, T, B, 4 * H}, x.options()) : Tensor();  // (1, T, B, 4H)
    transpose_f32(p[0].const_data_ptr<float>(), I, wt, G, G, I);  // W^T, as pack_rhs
    small_mm<float, float>(in, I, T * B, I, wt, G, G, gi, G);                   // gi = x W^T, as project
    transpose_f32(p[1].const_data_ptr<float>(), H, ut, G, G, H);  // U^T
    if (given(h0)) {
      std::memcpy(h, h0->const_data_ptr<float>() + l * B * H, B * H * sizeof(float));
    } else {
      std::fill(h, h + B * H, 0.0f);
    }
    float* const hsp = train ? hs.data_ptr<float>() : nullptr;
    if (train) std::memcpy(hsp, h, B * H * sizeof(float));
    Step<float, float> st{};
    st.H = H;
    st.gh = gh;
    st.bi = bias ? p[2].const_data_ptr<float>() : zero;
    st.bh = bias ? p[3].const_data_ptr<float>() : zero;
    st.h = h;
    st.out_ld = H;
    st.ws_ld = train ? 4 * H : 0;
    st.keep = train;
    st.j0 = 0;
    st.j1 = H;
    for (int64_t t = 0; t < T; ++t) {
      small_mm<float, float>(h, H, B, H, ut, G, G, gh, G);  // gh = h U^T, as step_mm
      st.t = t;
      st.gi = gi + t * B * G;
      st.out = dst + t * B * H;
      st.hout = train ? hsp + (t + 1) * B * H : h;  // (inference: the same values the general path keeps in hs)
      st.ws = train ? ws.data_ptr<float>() + t * B * 4 * H : gh;  // (inference: not written)
      forward_after(st, 0, B);
    }
    std::memcpy(h_n.data_ptr<float>() + l * B * H, h, B * H * sizeof(float));
    if (train) {
      if (l > 0) saved->push_back(out);  // this layer's input: the previous layer's output
      saved->push_back(hs);
      saved->push_back(ws);
    }
    if (layer_out.defined()) out = layer_out;
    in = dst;
  }
  ++tiny_runs;
}

// The no-grad forward of a float stack tiny_applies to, computed in bfloat16
// (grukit.GRU's compute_dtype=torch.bfloat16): x, h0, the weights and biases
// rounded to bfloat16 as the casts around the general path would round them,
// the same products and gate pass as the general bfloat16 path (project's
// float product rounded once, the step product from U^T packed by pack_rhs,
// states kept in bfloat16 between steps), and the results widened back to
// float. Without the casts' and the general path's tensors, a small model's
// bfloat16 call costs about what its float call does.
static void tiny_forward_bf16(const Tensor& x, const OptTensor& h0, const std::vector<Tensor>& params, int64_t L,
                              bool bias, Tensor& out, Tensor& h_n) {
  using bf16 = c10::BFloat16;
  const auto round = [](float v) { return static_cast<float>(static_cast<bf16>(v)); };
  const int64_t T = x.size(0), B = x.size(1), H = params[1].size(1), G = 3 * H, per = bias ? 4 : 2;
  const int64_t most = std::max(x.size(2), H);
  // float: the input (T, B, I), W^T (I, 3H), gi (T, B, 3H), h (B, H), biases (2, 3H)
  float* const xf = tiny_arena(T * B * most + most * G + T * B * G + B * H + 2 * G);
  float* const wt = xf + T * B * most;
  float* const gif = wt + most * G;
  float* const h = gif + T * B * G;
  float* const bi = h + B * H;
  float* const bh = bi + G;
  // bfloat16: gi (T, B, 3H), gh (B, 3H), two states (2, B, H), two layer outputs (2, T, B, H)
  thread_local std::vector<bf16> arena16;
  arena16.resize(std::max<size_t>(arena16.size(), T * B * G + B * G + 2 * B * H + 2 * T * B * H));
  bf16* const gi = arena16.data();
  bf16* const gh = gi + T * B * G;
  bf16* const hs = gh + B * G;
  bf16* const outs = hs + 2 * B * H;
  out = at::empty({T, B, H}, x.options());
  h_n = at::empty({L, B, H}, x.options());
  int64_t I = x.size(2);
  const float* xp = x.const_data_ptr<float>();
  for (int64_t i = 0; i < T * B * I; ++i) xf[i] = round(xp[i]);
  for (int64_t l = 0; l < L; ++l, I = H) {
    const Tensor* p = params.data() + l * per;
    bf16* const dst = outs + (l % 2) * T * B * H;  // (T, B, H)
    transpose_f32(p[0].const_data_ptr<float>(), I, wt, G, G, I);  // W^T
    for (int64_t i = 0; i < I * G; ++i) wt[i] = round(wt[i]);
    small_mm<float, float>(xf, I, T * B, I, wt, G, G, gif, G);  // as project: in float,
    for (int64_t i = 0; i < T * B * G; ++i) gi[i] = static_cast<bf16>(gif[i]);  // rounded once
    const Packed ut = pack_rhs(p[1].to(at::kBFloat16), true, 3);  // U^T, as forward_direction packs it
    for (int64_t j = 0; j < G; ++j) {
      bi[j] = bias ? round(p[2].const_data_ptr<float>()[j]) : 0.0f;
      bh[j] = bias ? round(p[3].const_data_ptr<float>()[j]) : 0.0f;
    }
    for (int64_t i = 0; i < B * H; ++i) {
      const bf16 v = static_cast<bf16>(given(h0) ? h0->const_data_ptr<float>()[l * B * H + i] : 0.0f);
      hs[i] = v;
      h[i] = static_cast<float>(v);
    }
    Step<bf16, float> st{};
    st.H = H;
    st.gh = gh;
    st.bi = bi;
    st.bh = bh;
    st.h = h;
    st.out_ld = H;
    st.ws = h;  // (not written: keep is false)
    st.j0 = 0;
    st.j1 = H;
    for (int64_t t = 0; t < T; ++t) {
      step_mm<bf16, float>(hs + (t % 2) * B * H, H, B, H, ut, 0, G, gh, G);  // gh = h U^T
      st.t = t;
      st.gi = gi + t * B * G;
      st.hout = hs + ((t + 1) % 2) * B * H;
      st.out = dst + t * B * H;
      forward_after(st, 0, B);
    }
    float* const hn = h_n.data_ptr<float>() + l * B * H;
    for (int64_t i = 0; i < B * H; ++i) hn[i] = static_cast<float>(hs[(T % 2) * B * H + i]);
    for (int64_t i = 0; i < T * B * H; ++i) xf[i] = static_cast<float>(dst[i]);  // the next layer's input
  }
  std::memcpy(out.data_ptr<float>(), xf, T * B * H * sizeof(float));  // the last layer's output, widened
  ++tiny_runs;
}

// The backward of a stack tiny_applies to, from the states of either forward
// (gru_stack_backward's arguments and results). False, having done nothing,
// where the saved states or the incoming gradients are not as expected.
static bool tiny_backward(const OptTensor& dout_, const OptTensor& dh_n_, const Tensor& x, const OptTensor& h0,
                          const std::vector<Tensor>& params, const std::vector<Tensor>& saved, int64_t L, bool bias,
                          bool need_dx, bool need_bias, std::vector<Tensor>& grads) {
  const int64_t T = x.size(0), B = x.size(1), H = params[1].size(1), G = 3 * H, per = bias ? 4 : 2;
  const auto state_ok = [&](const Tensor& t, int64_t a, int64_t w) {
    return t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == 4 && t.size(0) == 1 && t.size(1) == a &&
           t.size(2) == B && t.size(3) == w;
  };
  if (static_cast<int64_t>(saved.size()) != 3 * L - 1) return false;
  for (int64_t l = 0; l < L; ++l) {
    const Tensor &hs = saved[l == 0 ? 0 : 3 * l], &ws = saved[l == 0 ? 1 : 3 * l + 1];
    if (!state_ok(hs, T + 1, H) || !state_ok(ws, T, 4 * H)) return false;
    if (l > 0 && !(saved[3 * l - 1].is_contiguous() && saved[3 * l - 1].sizes() == at::IntArrayRef({T, B, H})))
      return false;
  }
  if (given(dout_) && !(dout_->scalar_type() == at::kFloat && dout_->sizes() == at::IntArrayRef({T, B, H})))
    return false;
  if (given(dh_n_) && !(dh_n_->scalar_type() == at::kFloat && dh_n_->sizes() == at::IntArrayRef({L, B, H})))
    return false;
  const auto opts = x.options();
  Tensor g_out = given(dout_) ? dout_->contiguous() : at::zeros({T, B, H}, opts);  // (T, B, H) dL/doutput
  const Tensor dh_n = given(dh_n_) ? dh_n_->contiguous() : Tensor();                // (L, B, H)
  // dG_i, dG_h (T, B, 3H), dhz, mm (B, H), the bias sums (2, 3H)
  float* const dgi = tiny_arena(2 * T * B * G + 2 * B * H + 2 * G);
  float* const dgh = dgi + T * B * G;
  float* const dhz = dgh + T * B * G;
  float* const mm = dhz + B * H;
  float* const db = mm + B * H;
  Tensor dh0 = at::empty({L, B, H}, opts);  // (L, B, H)
  for (int64_t l = L - 1; l >= 0; --l) {
    const Tensor* p = params.data() + l * per;
    const Tensor &hs = saved[l == 0 ? 0 : 3 * l], &ws = saved[l == 0 ? 1 : 3 * l + 1];
    const Tensor& in = l == 0 ? x : saved[3 * l - 1];
    const int64_t I = in.size(2);
    const float* const hsp = hs.const_data_ptr<float>();
    if (dh_n.defined()) {
      std::memcpy(dhz, dh_n.const_data_ptr<float>() + l * B * H, B * H * sizeof(float));
    } else {
      std::fill(dhz, dhz + B * H, 0.0f);
    }
    std::fill(mm, mm + B * H, 0.0f);
    std::fill(db, db + 2 * G, 0.0f);
    BackStep<float, float> st{};
    st.H = H;
    st.ws_ld = 4 * H;
    st.mm = mm;
    st.dhz = dhz;
    st.db = bias && need_bias ? db : nullptr;
    st.dout_ld = H;
    for (int64_t t = T - 1; t >= 0; --t) {
      st.t = t;
      st.ws = ws.const_data_ptr<float>() + t * B * 4 * H;
      st.hprev = hsp + t * B * H;
      st.dout = g_out.const_data_ptr<float>() + t * B * H;
      st.dgi = dgi + t * B * G;
      st.dgh = dgh + t * B * G;
      backward_after(st, 0, B);
      small_mm<float, float>(st.dgh, G, B, G, p[1].const_data_ptr<float>(), H, H, mm, H);  // dG_h @ U, as step_mm
    }
    float* const dh = dh0.data_ptr<float>() + l * B * H;
    for (int64_t i = 0; i < B * H; ++i) dh[i] = dhz[i] + mm[i];
    Tensor dw_ih = at::empty({G, I}, opts), dw_hh = at::empty({G, H}, opts);
    // dW_ih = dG_i^T X, dW_hh = dG_h^T h_in, dX = dG_i W: mm_into's hand-written products
    small_mm<float, float>(dgi, 1, G, T * B, in.const_data_ptr<float>(), I, I, dw_ih.data_ptr<float>(), I, G);
    small_mm<float, float>(dgh, 1, G, T * B, hsp, H, H, dw_hh.data_ptr<float>(), H, G);
    grads[2 + l * per] = dw_ih;
    grads[2 + l * per + 1] = dw_hh;
    if (bias && need_bias) {
      Tensor db_ih = at::empty({G}, opts), db_hh = at::empty({G}, opts);
      std::memcpy(db_ih.data_ptr<float>(), db, G * sizeof(float));
      std::memcpy(db_hh.data_ptr<float>(), db, 2 * H * sizeof(float));  // r, z: dG_h = dG_i
      std::memcpy(db_hh.data_ptr<float>() + 2 * H, db + 5 * H, H * sizeof(float));
      grads[2 + l * per + 2] = db_ih;
      grads[2 + l * per + 3] = db_hh;
    }
    if (l > 0 || need_dx) {
      Tensor dx = fresh({T, B, I}, opts);
      small_mm<float, float>(dgi, G, T * B, G, p[0].const_data_ptr<float>(), I, I, dx.data_ptr<float>(), I);
      g_out = dx;
    }
  }
  if (need_dx) grads[0] = g_out;
  grads[1] = dh0;
  ++tiny_runs;
  return true;
}

// A whole stack without autograd and without the dispatcher: grukit.GRU's
// forward under torch.no_grad calls this directly (a torch.ops call per layer
// costs microseconds of dispatch, more than the arithmetic of a small layer).
// params: torch.nn.GRU's flat parameter list (per layer and direction: w_ih,
// w_hh, and b_ih, b_hh with bias); x (T, B, I); h0 (L*D, B, H) or none (zeros).
// The cells that need no random masks come too: norms, empty or the
// LayerNorm-GRU's (gain_ih, bias_ih, gain_hh, bias_hh) per layer and direction
// (each (3H,)), and zoneout_p, zoneout in eval (the expectation; 0 = off).
// Every layer goes through gru_layer and its checks.
std::tuple<Tensor, Tensor> gru_stack(const Tensor& x, const OptTensor& h0, const std::vector<Tensor>& params,
                                     int64_t num_layers, bool bidirectional, bool bias, bool reset_after,
                                     const std::vector<Tensor>& norms, double zoneout_p, bool compute_bf16) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (tiny_applies(x, h0, params, num_layers, bidirectional, bias, reset_after, norms, zoneout_p)) {
    Tensor out, h_n;
    if (compute_bf16) {
      tiny_forward_bf16(x, h0, params, num_layers, bias, out, h_n);
    } else {
      tiny_forward(x, h0, params, num_layers, bias, false, out, h_n, nullptr);
    }
    return {out, h_n};
  }
  if (compute_bf16 && x.scalar_type() != at::kBFloat16) {  // the casts compute_dtype means, around the stack
    const auto low = [](const Tensor& t) { return t.to(at::kBFloat16); };
    std::vector<Tensor> p16, n16;
    for (const Tensor& t : params) p16.push_back(low(t));
    for (const Tensor& t : norms) n16.push_back(low(t));
    auto [out, h_n] = gru_stack(low(x), given(h0) ? OptTensor(low(*h0)) : std::nullopt, p16, num_layers,
                                bidirectional, bias, reset_after, n16, zoneout_p, false);
    return {out.to(x.scalar_type()), h_n.to(x.scalar_type())};
  }
  const StackArgs a(x, h0, params, num_layers, bidirectional, bias, norms);
  Tensor in = x;
  std::vector<Tensor> h_n;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    auto [out, hl] = gru_layer(in, a.h.narrow(0, layer * a.D, a.D), a.stacked(layer, 0), a.stacked(layer, 1),
                               a.bias(layer, 2), a.bias(layer, 3), std::nullopt, a.layer_norms(layer), std::nullopt,
                               std::nullopt, zoneout_p, reset_after, false);
    in = out;  // (T, B, D*H)
    h_n.push_back(hl);  // (D, B, H)
  }
  return {in, num_layers == 1 ? h_n[0] : at::cat(h_n)};
}

// The same stack with autograd: grukit.GRU's forward, when autograd records,
// calls gru_stack_train once and its backward calls gru_stack_backward once
// (the C++ autograd node of autograd.cpp), so a small model's step pays for
// two native calls instead of a dispatcher op, a Python autograd wrapper and
// several views per layer. Arguments as gru_stack, plus the training masks
// drawn before the call: zoneout's, none or one (D, T, B, H) per layer (then
// zoneout_p is 0), and recurrent dropout's, none or one (D, B, H) per layer.
// Returns out, h_n and what backward reads, per layer: its input (layers >= 1:
// the previous layer's output), hs and ws (see layer_forward).
std::tuple<Tensor, Tensor, std::vector<Tensor>> gru_stack_train(const Tensor& x, const OptTensor& h0,
                                                                const std::vector<Tensor>& params, int64_t num_layers,
                                                                bool bidirectional, bool bias, bool reset_after,
                                                                const std::vector<Tensor>& norms, double zoneout_p,
                                                                const std::vector<Tensor>& zones,
                                                                const std::vector<Tensor>& h_masks) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (zones.empty() && h_masks.empty() &&
      tiny_applies(x, h0, params, num_layers, bidirectional, bias, reset_after, norms, zoneout_p)) {
    Tensor out, h_n;
    std::vector<Tensor> saved;
    tiny_forward(x, h0, params, num_layers, bias, true, out, h_n, &saved);
    return {out, h_n, saved};
  }
  const StackArgs a(x, h0, params, num_layers, bidirectional, bias, norms);
  TORCH_CHECK(zones.empty() || static_cast<int64_t>(zones.size()) == num_layers, "grukit: expected ", num_layers,
              " zoneout masks (one per layer) or none, got ", zones.size());
  TORCH_CHECK(h_masks.empty() || static_cast<int64_t>(h_masks.size()) == num_layers, "grukit: expected ", num_layers,
              " recurrent dropout masks (one per layer) or none, got ", h_masks.size());
  const auto zone = [&](int64_t layer) { return zones.empty() ? OptTensor() : OptTensor(zones[layer]); };
  const auto h_mask = [&](int64_t layer) { return h_masks.empty() ? OptTensor() : OptTensor(h_masks[layer]); };
  Tensor in = x;
  std::vector<Tensor> h_n, saved;
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    auto [out, hl, hs, ws] =
        gru_layer_train(in, a.h.narrow(0, layer * a.D, a.D), a.stacked(layer, 0), a.stacked(layer, 1), a.bias(layer, 2),
                        a.bias(layer, 3), std::nullopt, a.layer_norms(layer), zone(layer), h_mask(layer), zoneout_p,
                        reset_after, false);
    if (layer > 0) saved.push_back(in);
    saved.push_back(hs);
    saved.push_back(ws);
    in = out;
    h_n.push_back(hl);
  }
  return {in, num_layers == 1 ? h_n[0] : at::cat(h_n), saved};
}

// Backward of gru_stack_train, the last layer first. dout (T, B, D*H) and
// dh_n (L*D, B, H) may be absent (zero); zones and h_masks as the forward had them.
// Returns dx (undefined unless need_dx), dh0 (L*D, B, H), then the gradients
// of params and of norms in their order (biases undefined unless need_bias).
std::vector<Tensor> gru_stack_backward(const OptTensor& dout, const OptTensor& dh_n, const Tensor& x,
                                       const OptTensor& h0, const std::vector<Tensor>& params,
                                       const std::vector<Tensor>& norms, const std::vector<Tensor>& saved,
                                       int64_t num_layers, bool bidirectional, bool bias, bool reset_after,
                                       double zoneout_p, const std::vector<Tensor>& zones,
                                       const std::vector<Tensor>& h_masks, bool need_dx, bool need_bias) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (zones.empty() && h_masks.empty() &&
      tiny_applies(x, h0, params, num_layers, bidirectional, bias, reset_after, norms, zoneout_p)) {
    std::vector<Tensor> grads(2 + params.size());
    if (tiny_backward(dout, dh_n, x, h0, params, saved, num_layers, bias, need_dx, need_bias, grads)) return grads;
  }
  const StackArgs a(x, h0, params, num_layers, bidirectional, bias, norms);
  TORCH_CHECK((zones.empty() || static_cast<int64_t>(zones.size()) == num_layers) &&
                  (h_masks.empty() || static_cast<int64_t>(h_masks.size()) == num_layers),
              "grukit: backward needs the forward's masks");
  const int64_t D = a.D, L = num_layers, T = x.size(0), B = x.size(1), H = a.H;
  TORCH_CHECK(static_cast<int64_t>(saved.size()) == 3 * L - 1, "grukit: backward needs what gru_stack_train saved");
  Tensor g_out = given(dout) ? *dout : at::zeros({T, B, D * H}, x.options());  // (T, B, D*H)
  const Tensor g_hn = given(dh_n) ? *dh_n : at::zeros({L * D, B, H}, x.options());  // (L*D, B, H)
  std::vector<Tensor> grads(2 + params.size() + norms.size()), dh0(L);
  const int64_t per = bias ? 4 : 2;
  for (int64_t layer = L - 1; layer >= 0; --layer) {
    const Tensor& in = layer == 0 ? x : saved[3 * layer - 1];
    const Tensor &hs = saved[layer == 0 ? 0 : 3 * layer], &ws = saved[layer == 0 ? 1 : 3 * layer + 1];
    auto [dx, dh, dw_ih, dw_hh, db_ih, db_hh, dn] = gru_layer_backward(
        g_out, g_hn.narrow(0, layer * D, D), in, hs, ws, a.stacked(layer, 0), a.stacked(layer, 1), std::nullopt,
        a.layer_norms(layer), zones.empty() ? OptTensor() : OptTensor(zones[layer]),
        h_masks.empty() ? OptTensor() : OptTensor(h_masks[layer]), zoneout_p, reset_after, false, layer > 0 || need_dx,
        bias && need_bias);
    for (int64_t d = 0; d < D; ++d) {
      const size_t at = 2 + (layer * D + d) * per;
      grads[at] = dw_ih.select(0, d);
      grads[at + 1] = dw_hh.select(0, d);
      if (bias && need_bias) {
        grads[at + 2] = db_ih.select(0, d);
        grads[at + 3] = db_hh.select(0, d);
      }
      if (!norms.empty()) {
        for (int64_t k = 0; k < 4; ++k) grads[2 + params.size() + (layer * D + d) * 4 + k] = dn.select(0, d).select(0, k);
      }
    }
    dh0[layer] = dh;
    g_out = dx;
  }
  if (need_dx) grads[0] = g_out;
  grads[1] = L == 1 ? dh0[0] : at::cat(dh0);
  return grads;
}

// One step without autograd (GRUCell inference): x (B, I), h (B, H) -> h' (B, H).
// Small batches run the matrix-vector products and the gates in one call with
// no intermediate tensors; larger ones take the layer path with T = 1.
Tensor gru_cell(const Tensor& x, const Tensor& h, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                const OptTensor& b_hh, bool reset_after) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // as in layer_forward
  const bool bias = b_ih.has_value() && b_ih->defined();
  const bool small = x.dim() == 2 && x.size(0) <= 4 && x.is_contiguous() && h.is_contiguous() && w_ih.is_contiguous() &&
                     w_hh.is_contiguous() && (!bias || (b_ih->is_contiguous() && b_hh->is_contiguous()));
  if (!small) {
    auto one = [](const OptTensor& b) { return b.has_value() && b->defined() ? OptTensor(b->unsqueeze(0)) : std::nullopt; };
    auto [out, h_n] = gru_layer(x.unsqueeze(0), h.unsqueeze(0), w_ih.unsqueeze(0), w_hh.unsqueeze(0), one(b_ih),
                                one(b_hh), std::nullopt, std::nullopt, std::nullopt, std::nullopt, 0.0, reset_after, false);
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
        for (int64_t j = j0; j < j1; j += V) {  // the equations of cells/gru.h; r goes into gi_r's place
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
      run_chosen(cell_choice, team, H, double(B) * 3 * H * (I + H), slice);
    } else {
      slice(0, H, false);
    }
  });
  return out;
}

}  // namespace grukit

// The schemas: the cell is chosen by its arguments (norms: LayerNorm-GRU;
// zoneout / zoneout_p: zoneout; h_mask: recurrent dropout; reset_after).
// gru_layer is the inference op (what export and compile see without
// autograd); gru_layer_train also returns what its backward needs.
#define GRUKIT_LAYER_ARGS                                                                              \
  "Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "       \
  "Tensor? norms, Tensor? zoneout, Tensor? h_mask, float zoneout_p, bool reset_after, bool reverse"

TORCH_LIBRARY(grukit, m) {
  m.def("gru_layer(" GRUKIT_LAYER_ARGS ") -> (Tensor, Tensor)");
  m.def("gru_layer_train(" GRUKIT_LAYER_ARGS ") -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_layer_backward(Tensor dout, Tensor dh_n, Tensor x, Tensor hs, Tensor ws, Tensor w_ih, Tensor w_hh, "
        "Tensor? lengths, Tensor? norms, Tensor? zoneout, Tensor? h_mask, float zoneout_p, bool reset_after, "
        "bool reverse, bool need_dx, bool need_bias) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gru_cell(Tensor x, Tensor h, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, bool reset_after) -> Tensor");
}

TORCH_LIBRARY_IMPL(grukit, CPU, m) {
  m.impl("gru_layer", &grukit::gru_layer);
  m.impl("gru_layer_train", &grukit::gru_layer_train);
  m.impl("gru_layer_backward", &grukit::gru_layer_backward);
  m.impl("gru_cell", &grukit::gru_cell);
}
