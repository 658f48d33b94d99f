// The avx512 level of the kernel table (see kernels_impl.hpp).
#define GRUREC_LEVEL_AVX512 1
#define GRUREC_NS grurec_avx512
#define GRUREC_LEVEL_NAME "avx512"
#define GRUREC_TABLE_FN kernels_avx512
#define GRUREC_MR 8  // micro-kernel rows
#define GRUREC_NV 3  // micro-kernel columns, in registers
#define GRUREC_KC 128  // packed depth: a 128 x 48 B micro-panel (24 KB) stays in L1 (48 KB); 256 spilled (dR W 110 -> 133 GFLOP/s)
#include "kernels_impl.hpp"
