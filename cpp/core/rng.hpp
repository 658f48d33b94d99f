// The random stream of a training stream: xoshiro256** seeded through
// splitmix64. A fixed seed gives a fixed stream on every platform.
#pragma once

#include <cstdint>

namespace grurec {

struct Rng {
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    for (auto& x : s) {
      seed += 0x9E3779B97F4A7C15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      x = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
  double uniform() { return (next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

// Dropout mask m[n]: 0 with probability p, else 1 / (1 - p). Two draws from
// each 64-bit output, compared as integers against p * 2^32.
inline void draw_mask(Rng& rng, float p, float* m, int64_t n) {
  const float keep = 1.0f / (1.0f - p);
  const uint64_t thr = static_cast<uint64_t>(static_cast<double>(p) * 4294967296.0);
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const uint64_t r = rng.next();
    m[i] = (r & 0xFFFFFFFFull) < thr ? 0.0f : keep;
    m[i + 1] = (r >> 32) < thr ? 0.0f : keep;
  }
  if (i < n) m[i] = (rng.next() >> 32) < thr ? 0.0f : keep;
}

// out[i] = a[i] * b[i]; out may alias a or b.
inline void mul_into(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

}  // namespace grurec
