// Internal: the polynomial behind exp() in the SIMD kernels (Cephes expf).
// Only constants live here, so SIMD translation units can share them without
// sharing any compiled code.
#pragma once

namespace ferry::cpu::simd_exp {

inline constexpr float kLog2e = 1.44269504088896341f;
// ln 2 split in two so that n·ln2 is exact for the integer n used here.
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
// e^r ≈ 1 + r + r²·P(r) on |r| <= ln2/2, relative error about 1e-7.
inline constexpr float kP0 = 1.9875691500e-4f;
inline constexpr float kP1 = 1.3981999507e-3f;
inline constexpr float kP2 = 8.3334519073e-3f;
inline constexpr float kP3 = 4.1665795894e-2f;
inline constexpr float kP4 = 1.6666665459e-1f;
inline constexpr float kP5 = 5.0000001201e-1f;
// Below this e^x is under the smallest normal float; the kernels return 0.
inline constexpr float kMinInput = -87.33654f;
// Above this 2^n leaves the float exponent range; inputs are clamped here.
inline constexpr float kMaxInput = 88.37626f;

}  // namespace ferry::cpu::simd_exp
