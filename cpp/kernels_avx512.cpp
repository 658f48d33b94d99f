// The avx512 level of the kernel table (see kernels_impl.hpp).
#define GRUREC_LEVEL_AVX512 1
#define GRUREC_NS grurec_avx512
#define GRUREC_LEVEL_NAME "avx512"
#define GRUREC_TABLE_FN kernels_avx512
#define GRUREC_MR 8  // micro-kernel rows
#define GRUREC_NV 3  // micro-kernel columns, in registers
#include "kernels_impl.hpp"
