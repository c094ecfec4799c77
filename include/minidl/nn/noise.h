// Injected covariate shift (Santurkar et al. 2018, section 2.1, Algorithm 1), for `minidl study
// noisy`. Every call (training only) draws, per unit j (channel for [N, C, H, W]):
//   mu_j ~ U(-0.5, 0.5),  sigma_j ~ U(1, 1.25),
// and per sample i and unit j (for images every spatial position counts as a sample, as in BN):
//   m_ij ~ U(mu_j - 0.1, mu_j + 0.1),  s_ij ~ N(sigma_j, 0.1^2),
// and returns y_ij = s_ij * x_ij + m_ij. The noise is a constant of the op: the gradient is
// s_ij * dy_ij. Draws come from `gen`, so a seeded run is reproducible.
#pragma once

#include "minidl/random.h"
#include "minidl/tensor.h"

namespace minidl {

Tensor covariate_noise(const Tensor& x, Generator& gen);

}  // namespace minidl
