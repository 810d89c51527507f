// What every cell's fused passes share: vectors of the accumulation type,
// loads and stores that widen and round, sigmoid and tanh.
//
// T is the storage type (float, double, BFloat16), A the accumulation type
// (float for float and BFloat16, double for double): every value is loaded
// into A, computed, stored back.
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

// sigmoid and tanh. double (and builds without AVX2) use ATen's SLEEF-backed
// exp and tanh (1 ulp). float on AVX-512 and AVX2 uses exp_ below, about 4x
// cheaper: Cephes' expf polynomial (Moshier, "Methods and Programs for
// Mathematical Functions", 1989; error about 1 ulp on [-87, 88]) with the power
// of two applied so that overflow and underflow come out as inf and 0; then
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
#elif defined(CPU_CAPABILITY_AVX2)
template <>
inline Vec<float> exp_<float>(const Vec<float>& v) {
  __m256 x = _mm256_max_ps(_mm256_set1_ps(-104.0f), _mm256_min_ps(_mm256_set1_ps(89.0f), __m256(v)));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  // round(x / ln 2)
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // r = x - n ln 2, in two parts
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));  // e^r
  // No vscalefps: 2^n (n in [-150, 128]) as 2^(n/2) * 2^(n - n/2), both normal floats made from
  // their exponent bits, so that e^r * 2^n overflows to inf and underflows to 0 as one scaling would
  const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return Vec<float>(_mm256_mul_ps(_mm256_mul_ps(p, s1), s2));
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
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
    const Vec<A> one(A(1)), two(A(2));
    return two / (one + exp_<A>(a * Vec<A>(A(-2)))) - one;
#endif
  }
  return a.tanh();
}

}  // namespace grukit
