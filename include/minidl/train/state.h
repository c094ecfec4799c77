// Resumable training: a checkpoint directory holds
//   trainer.safetensors  everything a resume reads: the model's state dict (names prefixed
//                        "model."), the optimizer's buffers, and in __metadata__ the step, the
//                        epoch, the position in the epoch and the data-order generator's state
//                        at the epoch's start (so the epoch's order is drawn again identically)
//   model.safetensors    the model's state dict alone, for eval, predict and PyTorch, with the
//                        step in its metadata
// Each file is written atomically, trainer state first. A process killed between the two
// renames leaves a model.safetensors one checkpoint behind, never a torn resume: the resume
// state is one file. (Checkpoints from before this layout have no "model." tensors; their
// resume reads model.safetensors.)
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
