#include "minidl/distributed.h"

#include "minidl/autograd.h"
#include "minidl/nn/batch_norm.h"
#include "minidl/ops.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#ifdef MINIDL_HAVE_MPI
#include <mpi.h>
#endif

namespace minidl::dist {

namespace {
[[maybe_unused]] bool g_initialised_here = false;
int g_rank = 0, g_size = 1;
double g_comm_seconds = 0.0;

struct CommTimer {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~CommTimer() { g_comm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

#ifdef MINIDL_HAVE_MPI
void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(detail::concat("MPI: ", what, " failed: ", std::string(text, static_cast<size_t>(len))));
}
#endif
}  // namespace

bool compiled_with_mpi() {
#ifdef MINIDL_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

void init(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
#ifdef MINIDL_HAVE_MPI
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    int provided = 0;
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_initialised_here = true;
  }
  // Errors come back as return codes (turned into exceptions), not as MPI's default abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#else
  (void)argc;
  (void)argv;
  throw Error("started by an MPI launcher, but this minidl was built without MPI (install libopenmpi-dev and rebuild)");
#endif
}

void finalize() {
#ifdef MINIDL_HAVE_MPI
  if (g_initialised_here) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    g_initialised_here = false;
  }
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }

void abort_all(int status) {
#ifdef MINIDL_HAVE_MPI
  if (g_size > 1) MPI_Abort(MPI_COMM_WORLD, status);
#endif
  std::exit(status);
}

double comm_seconds() { return g_comm_seconds; }
void reset_comm_seconds() { g_comm_seconds = 0.0; }

namespace {
template <class T>
void allgather_values(const T* send, int64_t n, T* recv) {
  if (g_size == 1) {
    std::memcpy(recv, send, static_cast<size_t>(n) * sizeof(T));
    return;
  }
#ifdef MINIDL_HAVE_MPI
  CommTimer t;
  const MPI_Datatype type = std::is_same<T, double>::value ? MPI_DOUBLE : MPI_UINT64_T;
  check_mpi(MPI_Allgather(send, static_cast<int>(n), type, recv, static_cast<int>(n), type, MPI_COMM_WORLD), "MPI_Allgather");
#endif
}
}  // namespace

void allgather(const double* send, int64_t n, double* recv) { allgather_values(send, n, recv); }
void allgather(const uint64_t* send, int64_t n, uint64_t* recv) { allgather_values(send, n, recv); }

void sum_in_rank_order(double* data, int64_t n) {
  if (g_size == 1 || n == 0) return;
  std::vector<double> all(static_cast<size_t>(n) * static_cast<size_t>(g_size));
  allgather(data, n, all.data());
  for (int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int r = 0; r < g_size; ++r) s += all[static_cast<size_t>(r) * static_cast<size_t>(n) + static_cast<size_t>(i)];
    data[i] = s;
  }
}

#ifdef MINIDL_HAVE_MPI
namespace {
int64_t reduce_int64(int64_t value, MPI_Op op) {
  int64_t out = value;
  CommTimer t;
  check_mpi(MPI_Allreduce(&value, &out, 1, MPI_INT64_T, op, MPI_COMM_WORLD), "MPI_Allreduce");
  return out;
}
}  // namespace
#endif

int64_t sum(int64_t value) {
#ifdef MINIDL_HAVE_MPI
  if (g_size > 1) return reduce_int64(value, MPI_SUM);
#endif
  return value;
}

int64_t min(int64_t value) {
#ifdef MINIDL_HAVE_MPI
  if (g_size > 1) return reduce_int64(value, MPI_MIN);
#endif
  return value;
}

void allreduce_sum(float* data, int64_t n) {
  if (g_size == 1 || n == 0) return;
#ifdef MINIDL_HAVE_MPI
  CommTimer t;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
#else
  (void)data;
#endif
}

void broadcast(float* data, int64_t n, int root) {
  if (g_size == 1 || n == 0) return;
#ifdef MINIDL_HAVE_MPI
  CommTimer t;
  check_mpi(MPI_Bcast(data, static_cast<int>(n), MPI_FLOAT, root, MPI_COMM_WORLD), "MPI_Bcast");
#else
  (void)data;
  (void)root;
#endif
}

Share share_of(int64_t global, int rank, int size) {
  const int64_t base = global / size, extra = global % size;
  Share s;
  s.count = base + (rank < extra ? 1 : 0);
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  return s;
}

uint64_t hash_tensors(const std::vector<Tensor>& tensors) {
  uint64_t h = 1469598103934665603ULL;
  for (const Tensor& t : tensors) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(t.data());
    const size_t n = static_cast<size_t>(t.numel()) * sizeof(float);
    for (size_t i = 0; i < n; ++i) {
      h ^= bytes[i];
      h *= 1099511628211ULL;
    }
  }
  return h;
}

void check_replicas(const std::vector<Tensor>& parameters, int64_t step) {
  if (g_size == 1) return;
  const uint64_t mine = hash_tensors(parameters);
  std::vector<uint64_t> all(static_cast<size_t>(g_size));
  allgather(&mine, 1, all.data());
  for (int r = 1; r < g_size; ++r)
    if (all[static_cast<size_t>(r)] != all[0])
      throw Error(detail::concat("--check-replicas: after step ", step, " the parameters of rank ", r,
                                 " differ from rank 0's (hash ", all[static_cast<size_t>(r)], " vs ", all[0], ")"));
}

GradientReducer::GradientReducer(std::vector<Tensor> parameters, int64_t bucket_bytes)
    : parameters_(std::move(parameters)) {
  const size_t limit = static_cast<size_t>(bucket_bytes) / sizeof(float);
  size_t in_bucket = 0, largest = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const size_t n = static_cast<size_t>(parameters_[i].numel());
    if (buckets_.empty() || (in_bucket > 0 && in_bucket + n > limit)) {
      buckets_.emplace_back();
      in_bucket = 0;
    }
    buckets_.back().push_back(i);
    in_bucket += n;
    largest = std::max(largest, in_bucket);
  }
  buffer_.resize(largest);
}

void GradientReducer::reduce() {
  if (g_size == 1) return;
  for (const auto& bucket : buckets_) {
    size_t at = 0;
    for (size_t i : bucket) {
      const Tensor& p = parameters_[i];
      const size_t n = static_cast<size_t>(p.numel());
      const Tensor& g = p.grad();
      if (g.defined()) std::memcpy(buffer_.data() + at, g.data(), n * sizeof(float));
      else std::memset(buffer_.data() + at, 0, n * sizeof(float));
      at += n;
    }
    allreduce_sum(buffer_.data(), static_cast<int64_t>(at));
    at = 0;
    for (size_t i : bucket) {
      Tensor p = parameters_[i];
      const size_t n = static_cast<size_t>(p.numel());
      if (!p.grad().defined()) p.set_grad(Tensor::zeros(p.shape()));
      std::memcpy(p.grad().data(), buffer_.data() + at, n * sizeof(float));
      at += n;
    }
  }
}

namespace {
Tensor summed_over_ranks(const Tensor& x) {
  std::vector<double> v(static_cast<size_t>(x.numel()));
  const Tensor& c = x;
  for (size_t i = 0; i < v.size(); ++i) v[i] = c.data()[i];
  sum_in_rank_order(v.data(), static_cast<int64_t>(v.size()));
  Tensor out = Tensor::empty(x.shape());
  for (size_t i = 0; i < v.size(); ++i) out.data()[i] = static_cast<float>(v[i]);
  return out;
}
}  // namespace

Tensor all_reduce_sum(const Tensor& x) {
  if (g_size == 1) return x;
  Tensor out = summed_over_ranks(x);
  return record(out, "all_reduce_sum", {x}, [](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{summed_over_ranks(g)};
  });
}

void broadcast_buffers(const Module& module) {
  if (g_size == 1) return;
  for (const NamedTensor& b : module.named_buffers()) {
    Tensor t = b.tensor;
    broadcast(t.data(), t.numel(), 0);
  }
}

DataParallel::DataParallel(Module& model, bool sync_bn)
    : model_(model),
      local_bn_(set_sync_batch_norm(model, sync_bn) > 0 && !sync_bn && g_size > 1),
      reducer_(model.parameters()) {}

void DataParallel::before_forward() {
  if (local_bn_) broadcast_buffers(model_);
}

void DataParallel::backward(const Tensor& loss, int64_t local_count, int64_t global_count) {
  if (g_size == 1) {
    loss.backward();
    return;
  }
  mul(loss, static_cast<float>(local_count) / static_cast<float>(global_count)).backward();
  reducer_.reduce();
}

}  // namespace minidl::dist
