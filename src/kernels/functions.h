// The kernel entry points that have a variant per ISA (not installed): each is declared in a
// public header of include/minidl/kernels, defined once per variant (isa.h) and forwarded by
// dispatch.cpp. A new kernel is one line here, plus its forwarding function there.
#pragma once

#define MINIDL_KERNEL_FUNCTIONS(X)                                                                   \
  X(batch_norm_forward_train) X(batch_norm_normalize) X(batch_norm_backward) X(batch_norm_moments)  \
  X(batch_norm_merge_moments) X(batch_norm_sample_moments) X(batch_norm_merge_sample_moments)       \
  X(batch_norm_backward_sums) X(batch_norm_backward_dx) X(group_norm_forward) X(group_norm_backward) X(layer_norm_forward) X(layer_norm_backward)          \
  X(activate_inplace) X(bn_pool_act_forward) X(pool_act_forward_sample) X(bn_pool_act_backward_sums) \
  X(bn_pool_act_backward_dz) X(bn_pool_act_backward_dz_sample) X(bn_act_backward_sums)               \
  X(bn_act_backward_dz_sample)                                                                       \
  X(conv2d_workspace_size) X(conv2d_forward) X(conv2d_backward) X(conv2d_pool_act_workspace_size)    \
  X(conv2d_pool_act_forward) X(conv2d_paths) X(grouped_conv2d_forward) X(grouped_conv2d_backward) X(im2col)          \
  X(col2im_add)                                                                                      \
  X(add) X(add_inplace) X(all_finite) X(sigmoid) X(tanh) X(exp_vectorised) X(activation_forward)     \
  X(activation_backward)                                                                             \
  X(gemm) X(gemm_tiles) X(gemm_tiles_native)                                                         \
  X(max_pool2d_forward) X(max_pool2d_backward)
