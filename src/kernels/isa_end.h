// The last line of every variant source: closes the target region isa.h opened (clang wants
// its attribute push popped in the file that pushed it; GCC's pragma simply ends with the file).
#if defined(__clang__) && MINIDL_KERNEL_ISA != 0
#pragma clang attribute pop
#endif
