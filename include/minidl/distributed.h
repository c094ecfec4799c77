// Data-parallel training on MPI (OpenMPI through CMake's MPI::MPI_CXX).
//
// The world is MPI_COMM_WORLD when the process was started by mpirun/mpiexec (detected from the
// launcher's environment), and a world of one otherwise: a plain `minidl train` never
// initialises MPI, prints nothing more and behaves exactly as a build without MPI.
//
// Every collective here gives bit-identical results on every rank (sums that must be identical
// are gathered and added in rank order), so replicas never drift apart. A world of one makes
// every collective a copy or a no-op.
//
// Data parallelism follows PyTorch DDP: each rank runs the whole model on its share of the
// global batch; each rank's loss is scaled by its share (local count / global count) before the
// backward, so summing the gradients over ranks gives the gradient of the global batch's mean
// loss, also when ranks hold unequal counts (the last partial batch) or none.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "minidl/nn/module.h"

namespace minidl::dist {

// Whether this build has MPI.
bool compiled_with_mpi();
// Whether the environment says an MPI launcher started this process (OMPI_COMM_WORLD_SIZE,
// PMIX_RANK, PMI_SIZE).
bool launched_by_mpi();
// Initialises MPI when launched_by_mpi() (idempotent); otherwise the world stays one process.
// Throws Error when launched by mpirun but built without MPI.
void init(int* argc, char*** argv);
// MPI_Finalize when init() initialised MPI.
void finalize();
int rank();
int size();
inline bool is_root() { return rank() == 0; }
// Ends every rank of the job with this exit status (MPI_Abort); in a world of one, std::exit.
[[noreturn]] void abort_all(int status);

// Seconds spent in this module's collectives since the start (or the last reset).
double comm_seconds();
void reset_comm_seconds();

// Elementwise sum over ranks, every rank getting the same bits: the values of every rank are
// gathered and added in rank order (small arrays: BN statistics, counts, losses).
void sum_in_rank_order(double* data, int64_t n);
int64_t sum(int64_t value);
// Sum over ranks with MPI_Allreduce (large arrays: gradients). OpenMPI's reductions return the
// same result to every rank; `--check-replicas` verifies it when in doubt.
void allreduce_sum(float* data, int64_t n);
// recv gets n values from each rank, rank 0's first.
void allgather(const double* send, int64_t n, double* recv);
void allgather(const uint64_t* send, int64_t n, uint64_t* recv);
void broadcast(float* data, int64_t n, int root = 0);
// The lowest value any rank holds (for decisions every rank must take together).
int64_t min(int64_t value);

// The rows [begin, begin + count) of a global batch of `global` examples that `rank` of `size`
// takes: a full global batch (global == size * per_rank) gives rank r rows [r*B, (r+1)*B); a
// shorter one is split as evenly as possible (the first global % size ranks get one more, a
// rank may get none).
struct Share {
  int64_t begin = 0, count = 0;
};
Share share_of(int64_t global, int rank, int size);

// A 64-bit hash of the bytes of every tensor (FNV-1a), for comparing replicas.
uint64_t hash_tensors(const std::vector<Tensor>& tensors);
// Throws Error naming the first rank whose parameters differ from rank 0's (after `step`).
void check_replicas(const std::vector<Tensor>& parameters, int64_t step);

// Averages the gradients of a model's parameters over ranks after each rank's backward (of its
// loss scaled by its share): flattened into buckets of at most bucket_bytes, in parameter order
// (the same on every rank), each summed with allreduce_sum.
class GradientReducer {
 public:
  explicit GradientReducer(std::vector<Tensor> parameters, int64_t bucket_bytes = 4 << 20);
  void reduce();

 private:
  std::vector<Tensor> parameters_;
  std::vector<std::vector<size_t>> buckets_;
  std::vector<float> buffer_;
};

// One data-parallel training step's pieces, shared by the trainer and `minidl bench`: sets the
// model's BatchNorms to synchronized or local, broadcasts rank 0's BN buffers before a forward
// when BN is local on several ranks (DDP's broadcast_buffers), and runs the backward of this
// rank's loss weighted by its share (local_count / global_count) followed by the gradient
// reduction, so the sum over ranks is the global batch's mean-loss gradient also for unequal
// shares. In a world of one: loss.backward(), nothing else.
class DataParallel {
 public:
  DataParallel(Module& model, bool sync_bn);
  // Whether each rank normalizes its own examples (BN present, not synchronized, several ranks).
  bool local_batch_norm() const { return local_bn_; }
  void before_forward();
  void backward(const Tensor& loss, int64_t local_count, int64_t global_count);

 private:
  Module& model_;
  bool local_bn_;
  GradientReducer reducer_;
};

// A differentiable all-reduce: forward, the elementwise sum of x over ranks (in rank order, in
// double, identical on every rank); backward, the sum over ranks of the incoming gradients
// (the output on every rank depends on x on this rank). Every rank must call it in the same
// order with the same shape. In a world of one, the identity.
Tensor all_reduce_sum(const Tensor& x);

// Rank 0's buffers (BN running statistics) copied to every rank, as PyTorch DDP does before
// each forward (broadcast_buffers=True) when BN is not synchronized.
void broadcast_buffers(const Module& module);

}  // namespace minidl::dist
