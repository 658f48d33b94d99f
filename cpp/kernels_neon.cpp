// The neon level of the kernel table (see kernels_impl.hpp): AArch64 only.
#define GRUREC_LEVEL_NEON 1
#define GRUREC_NS grurec_neon
#define GRUREC_LEVEL_NAME "neon"
#define GRUREC_TABLE_FN kernels_neon
#define GRUREC_MR 8  // micro-kernel rows
#define GRUREC_NV 3  // micro-kernel columns, in registers: 24 of the 32 accumulate
#include "kernels_impl.hpp"
