// A new tensor for a large result (outputs, saved states, scratch). On Linux
// its memory is marked for transparent huge pages before anything touches it:
// the first touch of fresh memory faults once per 2 MiB instead of per 4 KiB,
// which halves the cost of the faults (measured: 26 MB in 2.9 ms, not 5.5 ms).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

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

}  // namespace grukit
