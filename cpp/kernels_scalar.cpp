// The scalar level of the kernel table (see kernels_impl.hpp).
#define GRUREC_LEVEL_SCALAR 1
#define GRUREC_NS grurec_scalar
#define GRUREC_LEVEL_NAME "scalar"
#define GRUREC_TABLE_FN kernels_scalar
#define GRUREC_MR 4  // micro-kernel rows
#define GRUREC_NV 4  // micro-kernel columns, in registers
#include "kernels_impl.hpp"
