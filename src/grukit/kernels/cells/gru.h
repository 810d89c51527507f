// The GRU cell: its fused elementwise passes, forward and backward, for one
// time step. The driver (driver.cpp) runs the time loop and the products
// around them; LayerNorm-GRU (layernorm.h) adds its norms around the products
// and reuses these passes unchanged.
//
// Each pass handles the batch rows [b0, b1) of one step; gate-stacked rows are
// r | z | n, as torch.nn.GRU stores them. Types: see common.h.
//
// Forward, in the reference's symbols (src/grukit/functional/gru.py):
//     gi = W x + b_i  (B, 3H), hoisted: one GEMM for all T steps
//     gh = U h_in + b_h  (B, 3H), one product per step; h_in = h, or h * m_h
//          with recurrent dropout (functional/dropout.py)
//     r = sigmoid(gi_r + gh_r)        z = sigmoid(gi_z + gh_z)
//     reset_after=True:   hn = gh_n;  n = tanh(gi_n + r * hn)
//     reset_after=False:  rh = r * h_in; n = tanh(gi_n + U_n rh + b_hn)
//     h'' = (1 - z) * n + z * h
//     h' = k * h + (1 - k) * h''     zoneout (functional/zoneout.py): k = m_t in
//                                    training, p in eval; without zoneout h' = h''
//
// Backward (BPTT), given dh = dL/dh' (from the output at this step plus the
// next step's recurrence):
//     zoneout:  dL/dh'' = dh * (1 - k), and dh * k goes straight to dL/dh
//     (below, dh stands for dL/dh'')
//     dL/dn   = dh * (1 - z)             da_n = dL/dn * (1 - n^2)
//     dL/dz   = dh * (h - n)             da_z = dL/dz * z * (1 - z)
//     reset_after=True:
//       dL/dr = da_n * hn                da_r = dL/dr * r * (1 - r)
//       dL/dhn = da_n * r
//       dG_i = [da_r, da_z, da_n]        dG_h = [da_r, da_z, da_n * r]
//       dL/dh = dh * z + (dG_h @ U) * m_h
//     reset_after=False:
//       d(rh) = da_n @ U_n               dL/dr = d(rh) * h_in
//       dG_i = dG_h = [da_r, da_z, da_n]
//       dL/dh = dh * z + (d(rh) * r + [da_r, da_z] @ U_rz) * m_h
// where a_* are the gate pre-activations, dG_* the gradients of gi and gh,
// and m_h = 1 without recurrent dropout. Steps past a sequence's length
// (lengths given) carry the state: h' = h, so there dL/dh = dh and every gate
// gradient is zero.
#pragma once

#include "../common.h"

namespace grukit {

// Pointers into one time step. Row b of a (B, kH) buffer starts at b * kH.
template <typename T, typename A>
struct Step {
  int64_t H;
  const T* gi;          // (B, 3H) input projection W x (without b_i)
  const T* gh;          // (B, 3H) reset_after, else (B, 2H): U h_in (without b_h)
  const T* ghn;         // (B, H) U_n (r * h_in), reset_after=False only
  const A* bi;          // (3H,) b_i (zeros without bias)
  const A* bh;          // (3H,) b_h
  A* h;                 // (B, H) running state in A: read h, write h'
  T* hout;              // (B, H) h' in T, the state saved in hs
  T* out;               // (B, H) rows out_ld apart: the output, zero past a sequence's end
  int64_t out_ld;
  T* rh;                // (B, H) r * h_in in T, the next product's input (reset_after=False)
  A* ws;                // (B, ws_ld) saved for backward: r | z | n | hn (or rh) | the cell's own
  int64_t ws_ld;
  bool keep;            // train: fill ws (reset_after=True skips it otherwise; False uses it in between)
  const T* mask;        // (B, H) recurrent dropout's m_h, or nullptr
  T* hin;               // (B, H) h' * m_h, the next step's product input (with mask)
  const T* zone;        // (B, H) rows zone_ld apart: zoneout's m_t at this step, or nullptr
  int64_t zone_ld;
  A zone_p;             // zoneout in eval (zone == nullptr): k = zone_p; 0 = no zoneout
  const int64_t* len;   // (B,) lengths or nullptr
  int64_t t;            // time index of this step
  int64_t j0, j1;       // the hidden units [j0, j1) this pass computes (all: 0, H)
  bool valid(int64_t b) const { return len == nullptr || t < len[b]; }
  // zoneout's k for units [j, j + m) of row b (0 without zoneout)
  Vec<A> k(int64_t b, int64_t j, int64_t m) const {
    return zone ? load<A>(zone + b * zone_ld + j, m) : Vec<A>(zone_p);
  }
  // h_in for units [j, j + m) of row b, from the state hp
  Vec<A> h_in(int64_t b, int64_t j, int64_t m, const Vec<A>& hp) const {
    return mask ? hp * load<A>(mask + b * H + j, m) : hp;
  }
  // write the new state: running state, saved state, output, next product input
  void emit(int64_t b, int64_t j, int64_t m, const Vec<A>& hp, Vec<A> hnew) const {
    if (zone || zone_p != A(0)) {
      const Vec<A> kk = k(b, j, m);
      hnew = kk * hp + (Vec<A>(A(1)) - kk) * hnew;
    }
    store<A>(h + b * H + j, hnew, m);
    store<A>(hout + b * H + j, hnew, m);
    store<A>(out + b * out_ld + j, hnew, m);
    if (mask) store<A>(hin + b * H + j, hnew * load<A>(mask + b * H + j, m), m);
  }
  // row b's pointers, for the passes' loops over whole vectors (gh is (B, 3H) or (B, 2H))
  struct Row {
    const T* gi;
    const T* gh;
    const T* ghn;
    const A* bi;
    const A* bh;
    A* h;
    T* hout;
    T* out;
    A* ws;
    T* rh;
    // the new state of units [j, j + V): running state, saved state, output
    void put(int64_t j, const Vec<A>& hnew) const {
      constexpr int64_t V = Vec<A>::size();
      store<A>(h + j, hnew, V);
      store<A>(hout + j, hnew, V);
      store<A>(out + j, hnew, V);
    }
  };
  Row row(int64_t b, int64_t gh_blocks) const {
    return {gi + b * 3 * H, gh + b * gh_blocks * H, ghn ? ghn + b * H : nullptr, bi, bh, h + b * H, hout + b * H,
            out + b * out_ld, ws + b * ws_ld, rh ? rh + b * H : nullptr};
  }
  // a padded step: the state carries over, the output is zero
  void carry(int64_t b, int64_t j, int64_t m, const Vec<A>& hp) const {
    store<A>(hout + b * H + j, hp, m);
    store<A>(out + b * out_ld + j, Vec<A>(A(0)), m);
    if (mask) store<A>(hin + b * H + j, hp * load<A>(mask + b * H + j, m), m);
  }
};

// Calls f(j) for each whole vector [j, j + V) of the units [j0, j1); returns
// the first unit left (a part vector, or j1) for a pass's general loop.
template <typename A, typename F>
inline int64_t whole_vectors(int64_t j0, int64_t j1, const F& f) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t end = j0 + (j1 - j0) / V * V;
  int64_t j = j0;
  for (; j < end; j += V) f(j);
  return j;
}

// r and z for units [j, j + m) of one row: sigmoid(W x + b_i + U h_in + b_h)
// over the first two gate blocks of gi and gh (both conventions).
template <typename T, typename A>
inline void gates_rz(const T* gi, const T* gh, const A* bi, const A* bh, int64_t H, int64_t j, int64_t m, Vec<A>& r,
                     Vec<A>& z) {
  r = sigmoid(load<A>(gi + j, m) + load<A>(bi + j, m) + load<A>(gh + j, m) + load<A>(bh + j, m));
  z = sigmoid(load<A>(gi + H + j, m) + load<A>(bi + H + j, m) + load<A>(gh + H + j, m) + load<A>(bh + H + j, m));
}

// forward_after's whole vectors of one valid row without recurrent dropout or
// zoneout: the same arithmetic in the same order as the general loop (so the
// same bits), with the row's pointers in registers and no per-vector branches.
// On an AMD EPYC (Zen 3, AVX2) the general loop reloaded pointers and spilled:
// this took the pass from 3.8 to 2.7 ns per unit at B32 H128 (4.1 to 2.8 at
// B16 H256), whole inference calls 1.03-1.16x faster. Returns the first unit it
// left, for the general loop (the tail, padded rows, masks and zoneout).
template <bool Keep, typename T, typename A>
int64_t forward_after_row(const Step<T, A>& s, int64_t b) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t H = s.H;
  const auto p = s.row(b, 3);
  return whole_vectors<A>(s.j0, s.j1, [&](int64_t j) {
    const Vec<A> hp = load<A>(p.h + j, V);
    Vec<A> r, z;
    gates_rz<T, A>(p.gi, p.gh, p.bi, p.bh, H, j, V, r, z);
    const Vec<A> hn = load<A>(p.gh + 2 * H + j, V) + load<A>(p.bh + 2 * H + j, V);
    const Vec<A> n = tanh_<A>(load<A>(p.gi + 2 * H + j, V) + load<A>(p.bi + 2 * H + j, V) + r * hn);
    p.put(j, (Vec<A>(A(1)) - z) * n + z * hp);
    if constexpr (Keep) {
      store<A>(p.ws + j, r, V);
      store<A>(p.ws + H + j, z, V);
      store<A>(p.ws + 2 * H + j, n, V);
      store<A>(p.ws + 3 * H + j, hn, V);
    }
  });
}

// reset_after=True: the whole step in one pass.
template <typename T, typename A>
void forward_after(const Step<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1));
  const bool plain = s.mask == nullptr && s.zone == nullptr && s.zone_p == A(0);
  for (int64_t b = b0; b < b1; ++b) {
    const T* gi = s.gi + b * 3 * H;
    const T* gh = s.gh + b * 3 * H;
    A* ws = s.ws + b * s.ws_ld;
    const bool ok = s.valid(b);
    const int64_t j0 = !(ok && plain) ? s.j0 : s.keep ? forward_after_row<true>(s, b) : forward_after_row<false>(s, b);
    for (int64_t j = j0; j < s.j1; j += V) {
      const int64_t m = std::min(V, s.j1 - j);
      const Vec<A> hp = load<A>(s.h + b * H + j, m);
      if (!ok) {
        s.carry(b, j, m, hp);
        if (s.keep)
          for (int k = 0; k < 4; ++k) store<A>(ws + k * H + j, Vec<A>(A(0)), m);
        continue;
      }
      Vec<A> r, z;
      gates_rz<T, A>(gi, gh, s.bi, s.bh, H, j, m, r, z);
      const Vec<A> hn = load<A>(gh + 2 * H + j, m) + load<A>(s.bh + 2 * H + j, m);
      const Vec<A> n = tanh_<A>(load<A>(gi + 2 * H + j, m) + load<A>(s.bi + 2 * H + j, m) + r * hn);
      s.emit(b, j, m, hp, (one - z) * n + z * hp);
      if (s.keep) {
        store<A>(ws + j, r, m);
        store<A>(ws + H + j, z, m);
        store<A>(ws + 2 * H + j, n, m);
        store<A>(ws + 3 * H + j, hn, m);
      }
    }
  }
}

// forward_before_rz's whole vectors of one valid row without recurrent
// dropout, as forward_after_row: the same arithmetic, no per-vector branches.
template <typename T, typename A>
int64_t forward_before_rz_row(const Step<T, A>& s, int64_t b) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t H = s.H;
  const auto p = s.row(b, 2);
  return whole_vectors<A>(s.j0, s.j1, [&](int64_t j) {
    Vec<A> r, z;
    gates_rz<T, A>(p.gi, p.gh, p.bi, p.bh, H, j, V, r, z);
    const Vec<A> rh = r * load<A>(p.h + j, V);
    store<A>(p.ws + j, r, V);
    store<A>(p.ws + H + j, z, V);
    store<A>(p.ws + 3 * H + j, rh, V);
    store<A>(p.rh + j, rh, V);
  });
}

// reset_after=False, first half: r, z and rh = r * h_in (the input of U_n).
template <typename T, typename A>
void forward_before_rz(const Step<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  for (int64_t b = b0; b < b1; ++b) {
    const T* gi = s.gi + b * 3 * H;
    const T* gh = s.gh + b * 2 * H;
    A* ws = s.ws + b * s.ws_ld;
    const bool ok = s.valid(b);
    const int64_t j0 = ok && s.mask == nullptr ? forward_before_rz_row(s, b) : s.j0;
    for (int64_t j = j0; j < s.j1; j += V) {
      const int64_t m = std::min(V, s.j1 - j);
      Vec<A> r(A(0)), z(A(0)), rh(A(0));
      if (ok) {
        gates_rz<T, A>(gi, gh, s.bi, s.bh, H, j, m, r, z);
        rh = r * s.h_in(b, j, m, load<A>(s.h + b * H + j, m));
      }
      store<A>(ws + j, r, m);
      store<A>(ws + H + j, z, m);
      store<A>(ws + 3 * H + j, rh, m);
      store<A>(s.rh + b * H + j, rh, m);
    }
  }
}

// forward_before_n's whole vectors of one valid row without recurrent dropout
// or zoneout, as forward_after_row.
template <typename T, typename A>
int64_t forward_before_n_row(const Step<T, A>& s, int64_t b) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t H = s.H;
  const auto p = s.row(b, 2);
  return whole_vectors<A>(s.j0, s.j1, [&](int64_t j) {
    const Vec<A> hp = load<A>(p.h + j, V);
    const Vec<A> z = load<A>(p.ws + H + j, V);
    const Vec<A> n = tanh_<A>(load<A>(p.gi + 2 * H + j, V) + load<A>(p.bi + 2 * H + j, V) + load<A>(p.ghn + j, V) +
                              load<A>(p.bh + 2 * H + j, V));
    p.put(j, (Vec<A>(A(1)) - z) * n + z * hp);
    store<A>(p.ws + 2 * H + j, n, V);
  });
}

// reset_after=False, second half: n from U_n rh, then h'.
template <typename T, typename A>
void forward_before_n(const Step<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1));
  const bool plain = s.mask == nullptr && s.zone == nullptr && s.zone_p == A(0);
  for (int64_t b = b0; b < b1; ++b) {
    const T* gi = s.gi + b * 3 * H;
    const T* ghn = s.ghn + b * H;
    A* ws = s.ws + b * s.ws_ld;
    const bool ok = s.valid(b);
    const int64_t j0 = ok && plain ? forward_before_n_row(s, b) : s.j0;
    for (int64_t j = j0; j < s.j1; j += V) {
      const int64_t m = std::min(V, s.j1 - j);
      const Vec<A> hp = load<A>(s.h + b * H + j, m);
      if (!ok) {
        s.carry(b, j, m, hp);
        store<A>(ws + 2 * H + j, Vec<A>(A(0)), m);
        continue;
      }
      const Vec<A> z = load<A>(ws + H + j, m);
      const Vec<A> n = tanh_<A>(load<A>(gi + 2 * H + j, m) + load<A>(s.bi + 2 * H + j, m) + load<A>(ghn + j, m) +
                                load<A>(s.bh + 2 * H + j, m));
      s.emit(b, j, m, hp, (one - z) * n + z * hp);
      store<A>(ws + 2 * H + j, n, m);
    }
  }
}

// Pointers into one backward step.
template <typename T, typename A>
struct BackStep {
  int64_t H;
  const A* ws;          // (B, ws_ld) r | z | n | hn (or rh) | ..., saved by the forward
  int64_t ws_ld;
  const T* hprev;       // (B, H) h, the state before this step
  const T* dout;        // (B, H) rows dout_ld apart: dL/dh' straight from the output
  int64_t dout_ld;
  const T* mm;          // (B, H) the recurrent product's share of dL/dh_in
  A* dhz;               // (B, H) in: the rest of dL/dh'; out: what goes to dL/dh directly
  T* dgi;               // (B, 3H) dG_i at this step
  T* dgh;               // (B, 3H) dG_h at this step (reset_after=True)
  const T* drh;         // (B, H) d(rh) = da_n @ U_n (reset_after=False)
  A* db;                // (2, 3H) or nullptr: running sums of dG_i and dG_h over rows and steps (db_i, db_h)
  const T* mask;        // (B, H) m_h or nullptr
  const T* zone;        // (B, H) rows zone_ld apart: m_t, or nullptr
  int64_t zone_ld;
  A zone_p;
  const int64_t* len;
  int64_t t;
  bool valid(int64_t b) const { return len == nullptr || t < len[b]; }
  Vec<A> k(int64_t b, int64_t j, int64_t m) const {
    return zone ? load<A>(zone + b * zone_ld + j, m) : Vec<A>(zone_p);
  }
  bool zoned() const { return zone || zone_p != A(0); }
  // d(h_in) -> its share of dL/dh
  Vec<A> through_mask(int64_t b, int64_t j, int64_t m, const Vec<A>& v) const {
    return mask ? v * load<A>(mask + b * H + j, m) : v;
  }
};

// db[k] += v for the n <= Vec::size() entries at db (the bias gradients).
template <typename A>
inline void accumulate(A* db, const Vec<A>& v, int64_t n) {
  store<A>(db, load<A>(db, n) + v, n);
}

// dL/dh' for units [j, j + m) of row b: the carried part, the recurrent
// product's share (through the mask), and on a valid step the output's
// gradient (padded steps' outputs are constant zero).
template <typename T, typename A>
inline Vec<A> incoming_dh(const BackStep<T, A>& s, int64_t b, int64_t j, int64_t m, bool ok) {
  const Vec<A> dh = load<A>(s.dhz + b * s.H + j, m) + s.through_mask(b, j, m, load<A>(s.mm + b * s.H + j, m));
  return ok ? dh + load<A>(s.dout + b * s.dout_ld + j, m) : dh;
}

// Zoneout splits dh = dL/dh' into the cell's part dL/dh'' (returned) and the
// part that goes straight to dL/dh (in `direct`).
template <typename T, typename A>
inline Vec<A> split_zoneout(const BackStep<T, A>& s, int64_t b, int64_t j, int64_t m, const Vec<A>& dh, Vec<A>& direct) {
  if (!s.zoned()) {
    direct = Vec<A>(A(0));
    return dh;
  }
  const Vec<A> kk = s.k(b, j, m);
  direct = dh * kk;
  return dh - direct;
}

// da_n = dL/dn * (1 - n^2) and da_z = dL/dz * z (1 - z), the same in both
// conventions, from dh, z, n and the previous state hp.
template <typename A>
inline void grads_nz(const Vec<A>& dh, const Vec<A>& z, const Vec<A>& n, const Vec<A>& hp, Vec<A>& da_n, Vec<A>& da_z) {
  const Vec<A> one(A(1));
  da_n = dh * (one - z) * (one - n * n);
  da_z = dh * (hp - n) * z * (one - z);
}

// reset_after=True, units [j, j + m) of a valid row: dG_i, dG_h and dL/dh's
// direct part (dh * z + direct) from dh = dL/dh'', the saved r | z | n | hn
// (ws) and the previous state; their sums go into db when given.
template <typename T, typename A>
inline void after_gate_grads(const A* ws, const T* hprev, T* dgi, T* dgh, A* dhz, A* db, int64_t H, int64_t j,
                             int64_t m, const Vec<A>& dh, const Vec<A>& direct) {
  const Vec<A> one(A(1));
  const Vec<A> r = load<A>(ws + j, m), z = load<A>(ws + H + j, m);
  const Vec<A> n = load<A>(ws + 2 * H + j, m), hn = load<A>(ws + 3 * H + j, m);
  Vec<A> da_n, da_z;
  grads_nz(dh, z, n, load<A>(hprev + j, m), da_n, da_z);
  const Vec<A> da_r = da_n * hn * r * (one - r);
  store<A>(dgi + j, da_r, m);
  store<A>(dgi + H + j, da_z, m);
  store<A>(dgi + 2 * H + j, da_n, m);
  store<A>(dgh + j, da_r, m);
  store<A>(dgh + H + j, da_z, m);
  store<A>(dgh + 2 * H + j, da_n * r, m);
  store<A>(dhz + j, dh * z + direct, m);
  if (db) {  // db_h differs from db_i only in the n block
    accumulate<A>(db + j, da_r, m);
    accumulate<A>(db + H + j, da_z, m);
    accumulate<A>(db + 2 * H + j, da_n, m);
    accumulate<A>(db + 5 * H + j, da_n * r, m);
  }
}

// backward_after's whole vectors of one valid row without recurrent dropout or
// zoneout, as forward_after_row: the same arithmetic as the general loop.
// Returns the first unit it left.
template <bool Db, typename T, typename A>
int64_t backward_after_row(const BackStep<T, A>& s, int64_t b) {
  constexpr int64_t V = Vec<A>::size();
  const int64_t H = s.H;
  const A* const ws = s.ws + b * s.ws_ld;
  const T* const hprev = s.hprev + b * H;
  const T* const dout = s.dout + b * s.dout_ld;
  const T* const mm = s.mm + b * H;
  T* const dgi = s.dgi + b * 3 * H;
  T* const dgh = s.dgh + b * 3 * H;
  A* const dhz = s.dhz + b * H;
  A* const db = s.db;
  const Vec<A> zero(A(0));
  return whole_vectors<A>(0, H, [&](int64_t j) {
    const Vec<A> dh = load<A>(dhz + j, V) + load<A>(mm + j, V) + load<A>(dout + j, V);
    after_gate_grads<T, A>(ws, hprev, dgi, dgh, dhz, Db ? db : nullptr, H, j, V, dh, zero);
  });
}

// reset_after=True: dG_i, dG_h and the direct dL/dh in one pass (and their sums in db).
template <typename T, typename A>
void backward_after(const BackStep<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> zero(A(0));
  const bool plain = s.mask == nullptr && !s.zoned();
  for (int64_t b = b0; b < b1; ++b) {
    const A* ws = s.ws + b * s.ws_ld;
    T* dgi = s.dgi + b * 3 * H;
    T* dgh = s.dgh + b * 3 * H;
    A* dhz = s.dhz + b * H;
    const bool ok = s.valid(b);
    const int64_t j0 = !(ok && plain) ? 0 : s.db ? backward_after_row<true>(s, b) : backward_after_row<false>(s, b);
    for (int64_t j = j0; j < H; j += V) {
      const int64_t m = std::min(V, H - j);
      const Vec<A> din = incoming_dh(s, b, j, m, ok);
      if (!ok) {  // the state carried over: dh passes through, no gate gradients
        store<A>(dhz + j, din, m);
        for (int k = 0; k < 3; ++k) {
          store<A>(dgi + k * H + j, zero, m);
          store<A>(dgh + k * H + j, zero, m);
        }
        continue;
      }
      Vec<A> direct;
      const Vec<A> dh = split_zoneout(s, b, j, m, din, direct);
      after_gate_grads<T, A>(ws, s.hprev + b * H, dgi, dgh, dhz, s.db, H, j, m, dh, direct);
    }
  }
}

// reset_after=False, first half: da_n and da_z (d(rh) needs da_n @ U_n next).
template <typename T, typename A>
void backward_before_nz(const BackStep<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> zero(A(0));
  for (int64_t b = b0; b < b1; ++b) {
    const A* ws = s.ws + b * s.ws_ld;
    T* dg = s.dgi + b * 3 * H;
    A* dhz = s.dhz + b * H;
    const bool ok = s.valid(b);
    for (int64_t j = 0; j < H; j += V) {
      const int64_t m = std::min(V, H - j);
      const Vec<A> din = incoming_dh(s, b, j, m, ok);
      if (!ok) {  // the state carried over: dh passes through, no gate gradients
        store<A>(dhz + j, din, m);
        for (int k = 0; k < 3; ++k) store<A>(dg + k * H + j, zero, m);
        continue;
      }
      Vec<A> direct;
      const Vec<A> dh = split_zoneout(s, b, j, m, din, direct);
      const Vec<A> z = load<A>(ws + H + j, m), n = load<A>(ws + 2 * H + j, m);
      Vec<A> da_n, da_z;
      grads_nz(dh, z, n, load<A>(s.hprev + b * H + j, m), da_n, da_z);
      store<A>(dg + H + j, da_z, m);
      store<A>(dg + 2 * H + j, da_n, m);
      if (s.db) {  // dG_i = dG_h here: one sum serves both
        accumulate<A>(s.db + H + j, da_z, m);
        accumulate<A>(s.db + 2 * H + j, da_n, m);
      }
      store<A>(dhz + j, dh * z + direct, m);
    }
  }
}

// reset_after=False, second half: da_r from d(rh), and d(rh) * r (through the mask) into dh.
template <typename T, typename A>
void backward_before_r(const BackStep<T, A>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.H, V = Vec<A>::size();
  const Vec<A> one(A(1));
  for (int64_t b = b0; b < b1; ++b) {
    const A* ws = s.ws + b * s.ws_ld;
    A* dhz = s.dhz + b * H;
    for (int64_t j = 0; j < H; j += V) {  // padded rows: r = 0 and d(rh) = 0, so nothing changes
      const int64_t m = std::min(V, H - j);
      const Vec<A> r = load<A>(ws + j, m);
      const Vec<A> drh = load<A>(s.drh + b * H + j, m);
      const Vec<A> hp = load<A>(s.hprev + b * H + j, m);
      const Vec<A> dr = drh * s.through_mask(b, j, m, hp);  // dL/dr = d(rh) * h_in
      const Vec<A> da_r = dr * r * (one - r);
      store<A>(s.dgi + b * 3 * H + j, da_r, m);
      if (s.db) accumulate<A>(s.db + j, da_r, m);
      store<A>(dhz + j, load<A>(dhz + j, m) + s.through_mask(b, j, m, drh * r), m);
    }
  }
}

}  // namespace grukit
