// The fused elementwise passes of one GRU step, forward and backward.
//
// Shapes legend (as everywhere in grukit): T steps, B batch, I input, H hidden.
// Each pass handles the batch rows [b0, b1) of one time step; gate-stacked rows
// are r | z | n, as torch.nn.GRU stores them. T is the storage type (float,
// double, BFloat16), A the accumulation type (float for float and BFloat16,
// double for double): every value is loaded into A, computed, stored back.
//
// Forward, in the reference's symbols (src/grukit/functional.py):
//     gi = W x + b_i  (B, 3H), hoisted: one GEMM for all T steps
//     gh = U h + b_h  (B, 3H), one GEMM per step
//     r = sigmoid(gi_r + gh_r)        z = sigmoid(gi_z + gh_z)
//     reset_after=True:   hn = gh_n;  n = tanh(gi_n + r * hn)
//     reset_after=False:  rh = r * h; n = tanh(gi_n + U_n rh + b_hn)
//     h' = (1 - z) * n + z * h
//
// Backward (BPTT), given dh = dL/dh' (from the output at this step plus the
// next step's recurrence):
//     dL/dn   = dh * (1 - z)             da_n = dL/dn * (1 - n^2)
//     dL/dz   = dh * (h - n)             da_z = dL/dz * z * (1 - z)
//     reset_after=True:
//       dL/dr = da_n * hn                da_r = dL/dr * r * (1 - r)
//       dL/dhn = da_n * r
//       dG_i = [da_r, da_z, da_n]        dG_h = [da_r, da_z, da_n * r]
//       dL/dh = dh * z + dG_h @ U
//     reset_after=False:
//       d(rh) = da_n @ U_n               dL/dr = d(rh) * h
//       dG_i = dG_h = [da_r, da_z, da_n]
//       dL/dh = dh * z + d(rh) * r + [da_r, da_z] @ U_rz
// where a_* are the gate pre-activations and dG_* the gradients of gi and gh.
// Steps past a sequence's length (lengths given) carry the state: h' = h, so
// there dL/dh = dh and every gate gradient is zero.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>
#include <type_traits>

namespace grukit {

template <typename A>
using Vec = at::vec::Vectorized<A>;

// Load n <= Vec::size() values of type T as a vector of A (zero padded).
template <typename A, typename T>
inline Vec<A> load(const T* p, int64_t n) {
  if constexpr (std::is_same_v<T, A>) {
    return n == Vec<A>::size() ? Vec<A>::loadu(p) : Vec<A>::loadu(p, n);
  } else {
    if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<A, float>) {
      if (n == Vec<A>::size()) {  // a full vector: one widening load
        Vec<A> out;
        at::vec::load_to_float<c10::BFloat16>(p, out);
        return out;
      }
    }
    alignas(64) A tmp[Vec<A>::size()] = {};
    for (int64_t i = 0; i < n; ++i) tmp[i] = static_cast<A>(p[i]);
    return Vec<A>::loadu(tmp);
  }
}

template <typename A, typename T>
inline void store(T* p, const Vec<A>& v, int64_t n) {
  if constexpr (std::is_same_v<T, A>) {
    v.store(p, n);
  } else if constexpr (std::is_same_v<T, c10::BFloat16> && std::is_same_v<A, float>) {
    at::vec::convert_from_float<c10::BFloat16>(v, v).store(p, n);  // round to nearest even
  } else {
    alignas(64) A tmp[Vec<A>::size()];
    v.store(tmp);
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(tmp[i]);
  }
}

// sigmoid and tanh. double (and CPUs without AVX-512) use ATen's SLEEF-backed
// exp and tanh (1 ulp). float on AVX-512 uses exp_ below, about 4x cheaper:
// Cephes' expf polynomial (Moshier, "Methods and Programs for Mathematical
// Functions", 1989; error about 1 ulp on [-87, 88]) with the power of two applied
// by vscalefps, so overflow and underflow come out as inf and 0; then
//     sigmoid(a) = 1 / (1 + exp(-a)),   tanh(a) = 2 * sigmoid(2a) - 1
// (absolute error of tanh near 0 about 1e-7, far inside float32's 1e-5 test).
template <typename A>
inline Vec<A> exp_(const Vec<A>& x) {
  return x.exp();
}

#if defined(CPU_CAPABILITY_AVX512)
template <>
inline Vec<float> exp_<float>(const Vec<float>& v) {
  // min/max with the constant first return the second operand for NaN: NaN stays NaN
  __m512 x = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(89.0f), __m512(v)));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  // round(x / ln 2)
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // r = x - n ln 2, in two parts
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));  // e^r
  return Vec<float>(_mm512_scalef_ps(p, n));  // e^r * 2^n
}
#endif

template <typename A>
inline Vec<A> sigmoid(const Vec<A>& a) {
  const Vec<A> one(A(1));
  return one / (one + exp_<A>(a.neg()));
}

template <typename A>
inline Vec<A> tanh_(const Vec<A>& a) {
  if constexpr (std::is_same_v<A, float>) {
#if defined(CPU_CAPABILITY_AVX512)
    const Vec<A> one(A(1)), two(A(2));
    return two / (one + exp_<A>(a * Vec<A>(A(-2)))) - one;
#endif
  }
  return a.tanh();
}

// Pointers into one time step. Row b of a (B, kH) buffer starts at b * kH.
template <typename T, typename A>
struct Step {
  int64_t H;
  const T* gi;          // (B, 3H) input projection W x (without b_i)
  const T* gh;          // (B, 3H) reset_after, else (B, 2H): U h (without b_h)
  const T* ghn;         // (B, H) U_n (r * h), reset_after=False only
  const A* bi;          // (3H,) b_i (zeros without bias)
  const A* bh;          // (3H,) b_h
  A* h;                 // (B, H) running state in A: read h, write h'
  T* hout;              // (B, H) h' in T, the state saved in hs
  T* out;               // (B, H) rows out_ld apart: the output, zero past a sequence's end
  int64_t out_ld;
  T* rh;                // (B, H) r * h in T, the next GEMM's input (reset_after=False)
  A* ws;                // (B, 4H) saved for backward: r | z | n | hn (or rh)
  bool keep;            // train: fill ws (reset_after=True skips it otherwise; False uses it in between)
  const int64_t* len;   // (B,) lengths or nullptr
  int64_t t;            // time index of this step
  int64_t j0, j1;       // the hidden units [j0, j1) this pass computes (all: 0, H)
  bool valid(int64_t b) const { return len == nullptr || t < len[b]; }
};

// reset_after=True: the whole step in one pass.
template <typename T, typename A>
void forward_after(const Step<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1));
  for (int64_t b = b0; b < b1; ++b) {
    const T* gi = s.gi + b * 3 * H;
    const T* gh = s.gh + b * 3 * H;
    A* h = s.h + b * H;
    T* hout = s.hout + b * H;
    T* out = s.out + b * s.out_ld;
    A* ws = s.ws + b * 4 * H;
    const bool ok = s.valid(b);
    for (int64_t j = s.j0; j < s.j1; j += V) {
      const int64_t m = std::min(V, s.j1 - j);
      const Vec<A> hp = load<A>(h + j, m);
      if (!ok) {  // padded step: the state carries over, the output is zero
        store<A>(hout + j, hp, m);
        store<A>(out + j, Vec<A>(A(0)), m);
        if (s.keep)
          for (int k = 0; k < 4; ++k) store<A>(ws + k * H + j, Vec<A>(A(0)), m);
        continue;
      }
      const Vec<A> r = sigmoid(load<A>(gi + j, m) + load<A>(s.bi + j, m) + load<A>(gh + j, m) + load<A>(s.bh + j, m));
      const Vec<A> z = sigmoid(load<A>(gi + H + j, m) + load<A>(s.bi + H + j, m) + load<A>(gh + H + j, m) +
                               load<A>(s.bh + H + j, m));
      const Vec<A> hn = load<A>(gh + 2 * H + j, m) + load<A>(s.bh + 2 * H + j, m);
      const Vec<A> n = tanh_<A>(load<A>(gi + 2 * H + j, m) + load<A>(s.bi + 2 * H + j, m) + r * hn);
      const Vec<A> hnew = (one - z) * n + z * hp;
      store<A>(h + j, hnew, m);
      store<A>(hout + j, hnew, m);
      store<A>(out + j, hnew, m);
      if (s.keep) {
        store<A>(ws + j, r, m);
        store<A>(ws + H + j, z, m);
        store<A>(ws + 2 * H + j, n, m);
        store<A>(ws + 3 * H + j, hn, m);
      }
    }
  }
}

// reset_after=False, first half: r, z and rh = r * h (the input of U_n).
template <typename T, typename A>
void forward_before_rz(const Step<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  for (int64_t b = b0; b < b1; ++b) {
    const T* gi = s.gi + b * 3 * H;
    const T* gh = s.gh + b * 2 * H;
    const A* h = s.h + b * H;
    A* ws = s.ws + b * 4 * H;
    const bool ok = s.valid(b);
    for (int64_t j = s.j0; j < s.j1; j += V) {
      const int64_t m = std::min(V, s.j1 - j);
      Vec<A> r(A(0)), z(A(0)), rh(A(0));
      if (ok) {
        r = sigmoid(load<A>(gi + j, m) + load<A>(s.bi + j, m) + load<A>(gh + j, m) + load<A>(s.bh + j, m));
        z = sigmoid(load<A>(gi + H + j, m) + load<A>(s.bi + H + j, m) + load<A>(gh + H + j, m) +
                    load<A>(s.bh + H + j, m));
        rh = r * load<A>(h + j, m);
      }
      store<A>(ws + j, r, m);
      store<A>(ws + H + j, z, m);
      store<A>(ws + 3 * H + j, rh, m);
      store<A>(s.rh + b * H + j, rh, m);
    }
  }
}

// reset_after=False, second half: n from U_n rh, then h'.
template <typename T, typename A>
void forward_before_n(const Step<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1));
  for (int64_t b = b0; b < b1; ++b) {
    const T* gi = s.gi + b * 3 * H;
    const T* ghn = s.ghn + b * H;
    A* h = s.h + b * H;
    T* hout = s.hout + b * H;
    T* out = s.out + b * s.out_ld;
    A* ws = s.ws + b * 4 * H;
    const bool ok = s.valid(b);
    for (int64_t j = s.j0; j < s.j1; j += V) {
      const int64_t m = std::min(V, s.j1 - j);
      const Vec<A> hp = load<A>(h + j, m);
      if (!ok) {
        store<A>(hout + j, hp, m);
        store<A>(out + j, Vec<A>(A(0)), m);
        store<A>(ws + 2 * H + j, Vec<A>(A(0)), m);
        continue;
      }
      const Vec<A> z = load<A>(ws + H + j, m);
      const Vec<A> n = tanh_<A>(load<A>(gi + 2 * H + j, m) + load<A>(s.bi + 2 * H + j, m) + load<A>(ghn + j, m) +
                                load<A>(s.bh + 2 * H + j, m));
      const Vec<A> hnew = (one - z) * n + z * hp;
      store<A>(h + j, hnew, m);
      store<A>(hout + j, hnew, m);
      store<A>(out + j, hnew, m);
      store<A>(ws + 2 * H + j, n, m);
    }
  }
}

// Pointers into one backward step.
template <typename T, typename A>
struct BackStep {
  int64_t H;
  const A* ws;          // (B, 4H) r | z | n | hn (or rh), saved by the forward
  const T* hprev;       // (B, H) h, the state before this step
  const T* dout;        // (B, H) rows dout_ld apart: dL/dh' straight from the output
  int64_t dout_ld;
  const T* mm;          // (B, H) the recurrent GEMM's share of dL/dh'
  A* dhz;               // (B, H) in: the rest of dL/dh'; out: dh * z (+ d(rh) * r)
  T* dgi;               // (B, 3H) dG_i at this step
  T* dgh;               // (B, 3H) dG_h at this step (reset_after=True)
  const T* drh;         // (B, H) d(rh) = da_n @ U_n (reset_after=False)
  A* db;                // (2, 3H) or nullptr: running sums of dG_i and dG_h over rows and steps (db_i, db_h)
  const int64_t* len;
  int64_t t;
  bool valid(int64_t b) const { return len == nullptr || t < len[b]; }
};

// db[k] += v for the n <= Vec::size() entries at db (the bias gradients).
template <typename A>
inline void accumulate(A* db, const Vec<A>& v, int64_t n) {
  store<A>(db, load<A>(db, n) + v, n);
}

// dL/dh' for units [j, j + m) of row b: the carried dh * z, the recurrent
// product's share, and on a valid step the output's gradient (padded steps'
// outputs are constant zero).
template <typename T, typename A>
inline Vec<A> incoming_dh(const BackStep<T, A>& s, int64_t b, int64_t j, int64_t m, bool ok) {
  const Vec<A> dh = load<A>(s.dhz + b * s.H + j, m) + load<A>(s.mm + b * s.H + j, m);
  return ok ? dh + load<A>(s.dout + b * s.dout_ld + j, m) : dh;
}

// da_n = dL/dn * (1 - n^2) and da_z = dL/dz * z (1 - z), the same in both
// conventions, from dh, z, n and the previous state hp.
template <typename A>
inline void grads_nz(const Vec<A>& dh, const Vec<A>& z, const Vec<A>& n, const Vec<A>& hp, Vec<A>& da_n, Vec<A>& da_z) {
  const Vec<A> one(A(1));
  da_n = dh * (one - z) * (one - n * n);
  da_z = dh * (hp - n) * z * (one - z);
}

// reset_after=True: dG_i, dG_h and dh * z in one pass (and their sums in db).
template <typename T, typename A>
void backward_after(const BackStep<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1)), zero(A(0));
  for (int64_t b = b0; b < b1; ++b) {
    const A* ws = s.ws + b * 4 * H;
    T* dgi = s.dgi + b * 3 * H;
    T* dgh = s.dgh + b * 3 * H;
    A* dhz = s.dhz + b * H;
    const bool ok = s.valid(b);
    for (int64_t j = 0; j < H; j += V) {
      const int64_t m = std::min(V, H - j);
      const Vec<A> dh = incoming_dh(s, b, j, m, ok);
      if (!ok) {  // the state carried over: dh passes through, no gate gradients
        store<A>(dhz + j, dh, m);
        for (int k = 0; k < 3; ++k) {
          store<A>(dgi + k * H + j, zero, m);
          store<A>(dgh + k * H + j, zero, m);
        }
        continue;
      }
      const Vec<A> r = load<A>(ws + j, m), z = load<A>(ws + H + j, m);
      const Vec<A> n = load<A>(ws + 2 * H + j, m), hn = load<A>(ws + 3 * H + j, m);
      Vec<A> da_n, da_z;
      grads_nz(dh, z, n, load<A>(s.hprev + b * H + j, m), da_n, da_z);
      const Vec<A> da_r = da_n * hn * r * (one - r);
      store<A>(dgi + j, da_r, m);
      store<A>(dgi + H + j, da_z, m);
      store<A>(dgi + 2 * H + j, da_n, m);
      store<A>(dgh + j, da_r, m);
      store<A>(dgh + H + j, da_z, m);
      store<A>(dgh + 2 * H + j, da_n * r, m);
      store<A>(dhz + j, dh * z, m);
      if (s.db) {  // db_h differs from db_i only in the n block
        accumulate<A>(s.db + j, da_r, m);
        accumulate<A>(s.db + H + j, da_z, m);
        accumulate<A>(s.db + 2 * H + j, da_n, m);
        accumulate<A>(s.db + 5 * H + j, da_n * r, m);
      }
    }
  }
}

// reset_after=False, first half: da_n and da_z (d(rh) needs da_n @ U_n next).
template <typename T, typename A>
void backward_before_nz(const BackStep<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> zero(A(0));
  for (int64_t b = b0; b < b1; ++b) {
    const A* ws = s.ws + b * 4 * H;
    T* dg = s.dgi + b * 3 * H;
    A* dhz = s.dhz + b * H;
    const bool ok = s.valid(b);
    for (int64_t j = 0; j < H; j += V) {
      const int64_t m = std::min(V, H - j);
      const Vec<A> dh = incoming_dh(s, b, j, m, ok);
      if (!ok) {  // the state carried over: dh passes through, no gate gradients
        store<A>(dhz + j, dh, m);
        for (int k = 0; k < 3; ++k) store<A>(dg + k * H + j, zero, m);
        continue;
      }
      const Vec<A> z = load<A>(ws + H + j, m), n = load<A>(ws + 2 * H + j, m);
      Vec<A> da_n, da_z;
      grads_nz(dh, z, n, load<A>(s.hprev + b * H + j, m), da_n, da_z);
      store<A>(dg + H + j, da_z, m);
      store<A>(dg + 2 * H + j, da_n, m);
      if (s.db) {  // dG_i = dG_h here: one sum serves both
        accumulate<A>(s.db + H + j, da_z, m);
        accumulate<A>(s.db + 2 * H + j, da_n, m);
      }
      store<A>(dhz + j, dh * z, m);
    }
  }
}

// reset_after=False, second half: da_r from d(rh), and d(rh) * r into dh.
template <typename T, typename A>
void backward_before_r(const BackStep<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1));
  for (int64_t b = b0; b < b1; ++b) {
    const A* ws = s.ws + b * 4 * H;
    A* dhz = s.dhz + b * H;
    for (int64_t j = 0; j < H; j += V) {  // padded rows: r = 0 and d(rh) = 0, so nothing changes
      const int64_t m = std::min(V, H - j);
      const Vec<A> r = load<A>(ws + j, m);
      const Vec<A> drh = load<A>(s.drh + b * H + j, m);
      const Vec<A> dr = drh * load<A>(s.hprev + b * H + j, m);
      const Vec<A> da_r = dr * r * (one - r);
      store<A>(s.dgi + b * 3 * H + j, da_r, m);
      if (s.db) accumulate<A>(s.db + j, da_r, m);
      store<A>(dhz + j, load<A>(dhz + j, m) + drh * r, m);
    }
  }
}

}  // namespace grukit
