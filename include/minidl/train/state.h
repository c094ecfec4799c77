// Resumable training: a checkpoint directory holds
//   model.safetensors    the model's state dict (loads in PyTorch like any other checkpoint)
//   trainer.safetensors  the optimizer's buffers, and in __metadata__ the step, the epoch, the
//                        position in the epoch and the data-order generator's state at the
//                        epoch's start (so the epoch's order is drawn again identically)
// Both are written atomically, trainer state last; a resume loads both.
#pragma once

#include <string>

#include "minidl/nn/models.h"
#include "minidl/optim.h"

namespace minidl {

struct TrainingPosition {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;
  uint64_t epoch_rng_state = 0;
  int world_size = 1;  // processes of the run (a resume needs the same number)
};

void save_training_state(const std::string& dir, const Net& net, const Optimizer& optimizer,
                         const TrainingPosition& position);
// Loads into net and optimizer (which must have the same architecture and parameters).
TrainingPosition load_training_state(const std::string& dir, Net& net, Optimizer& optimizer);

}  // namespace minidl
