// A new tensor for a large result (outputs, saved states, scratch). On Linux
// its memory is marked for transparent huge pages before anything touches it:
// the first touch of fresh memory faults once per 2 MiB instead of per 4 KiB,
// which halves the cost of the faults (measured: 26 MB in 2.9 ms, not 5.5 ms).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace grukit {

inline at::Tensor fresh(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  at::Tensor t = at::empty(sizes, opts);
#ifdef __linux__
  constexpr uintptr_t huge = uintptr_t(1) << 21;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr()), end = begin + t.nbytes();
  const uintptr_t a = (begin + huge - 1) & ~(huge - 1), b = end & ~(huge - 1);  // whole huge pages inside
  if (b >= a + 2 * huge) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);  // advice only: errors ignored
#endif
  return t;
}

// The largest buffer the pools below keep (larger ones are always fresh).
constexpr int64_t kScratchBytes = int64_t(1) << 28;

// Results that leave a call but come back free soon (a training call's saved
// states, which autograd drops after backward; a gradient the next op consumes;
// an output a loop drops before its next step). Their memory is taken back from a small
// pool per thread and dtype once nothing else holds it (the storage's only
// owner is the pool), so a training loop writes into memory it has already
// touched instead of faulting fresh pages in every step (at T100 B32 H128 a
// LayerNorm-GRU's workspace is 20 MB a call).
inline at::Tensor recycled(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  constexpr size_t kPool = 4;
  thread_local std::vector<at::Tensor> pool[3];  // [float, double, bfloat16]
  const int64_t n = c10::multiply_integers(sizes);
  const auto type = opts.dtype().toScalarType();
  if (n * static_cast<int64_t>(opts.dtype().itemsize()) > kScratchBytes || n == 0) return fresh(sizes, opts);
  auto& p = pool[type == at::kFloat ? 0 : type == at::kDouble ? 1 : 2];
  at::Tensor* spare = nullptr;  // a free entry too small or too large to use
  for (auto& c : p) {
    if (c.storage().use_count() != 1) continue;  // still held: by autograd, a caller, a view
    if (c.numel() >= n && c.numel() <= 2 * n) return c.narrow(0, 0, n).view(sizes);
    spare = &c;
  }
  at::Tensor t = fresh({n}, opts);
  if (p.size() < kPool) {
    p.push_back(t);
  } else if (spare) {
    *spare = t;
  }
  return t.narrow(0, 0, n).view(sizes);
}

}  // namespace grukit
