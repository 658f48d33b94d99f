// The avx2 level of the kernel table (see kernels_impl.hpp).
#define GRUREC_LEVEL_AVX2 1
#define GRUREC_NS grurec_avx2
#define GRUREC_LEVEL_NAME "avx2"
#define GRUREC_TABLE_FN kernels_avx2
#define GRUREC_MR 6  // micro-kernel rows
#define GRUREC_NV 2  // micro-kernel columns, in registers
#include "kernels_impl.hpp"
