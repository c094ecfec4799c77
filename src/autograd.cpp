#include "minidl/autograd.h"

#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include <cassert>

#include "minidl/kernels/elementwise.h"
#include "minidl/profiler.h"

namespace minidl {

namespace {
thread_local bool t_grad_enabled = true;
std::atomic<int64_t> g_live_nodes{0};
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

Node::Node(const char* name, std::vector<Edge> edges, BackwardFn fn, Shape output_shape)
    : name_(name),
      profile_name_(LayerScope::current() ? LayerScope::current() : name),
      edges_(std::move(edges)),
      fn_(std::move(fn)),
      output_shape_(std::move(output_shape)) {
  ++g_live_nodes;
}
Node::~Node() {
  --g_live_nodes;
  // Tear down long chains iteratively: the default recursive destruction of a 100k-op graph
  // that was never back-propagated would overflow the stack.
  std::vector<std::shared_ptr<Node>> stack;
  for (auto& e : edges_)
    if (e.node) stack.push_back(std::move(e.node));
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1)
      for (auto& e : n->edges_)
        if (e.node) stack.push_back(std::move(e.node));
  }
}
int64_t Node::live_count() { return g_live_nodes.load(); }

std::vector<Tensor> Node::apply(const Tensor& grad_out) {
  std::vector<bool> needs(edges_.size());
  for (size_t i = 0; i < edges_.size(); ++i) needs[i] = edges_[i].active();
  std::vector<Tensor> grads = fn_(grad_out, needs);
  assert(grads.size() == edges_.size());
  return grads;
}

void Node::release() {
  edges_.clear();
  fn_ = nullptr;
  released_ = true;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(Tensor out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!needs_grad(inputs)) return out;
  std::vector<Node::Edge> edges(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& in = inputs[i];
    if (!in.defined() || !in.requires_grad()) continue;
    if (in.impl()->grad_fn)
      edges[i].node = in.impl()->grad_fn;
    else
      edges[i].leaf = in.impl_ptr();
  }
  out.impl()->grad_fn = std::make_shared<Node>(name, std::move(edges), std::move(fn), out.shape());
  out.impl()->requires_grad = true;
  return out;
}

// Adds g into slot. An empty slot takes g itself. Otherwise the sum goes to a new buffer:
// backward functions may return a gradient that shares storage with another one (add passes
// grad_out through to both inputs), so neither may be written in place.
static void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
    return;
  }
  Tensor sum = Tensor::empty(slot.shape());
  kernels::add(slot.data(), g.data(), sum.data(), slot.numel());
  slot = sum;
}

// True when g is the only tensor on its storage and nothing else holds g: a leaf can keep it as
// its .grad without a copy (fc1's 800 KB weight gradient was copied every step).
static bool sole_owner(const Tensor& g) {
  const auto& impl = g.impl_ptr();
  return impl.use_count() == 1 && impl->storage.use_count() == 1 && impl->offset == 0 && !impl->grad_fn &&
         !impl->requires_grad && !impl->grad;
}

static void run_backward(const Tensor& root, const Tensor& seed) {
  MINIDL_CHECK(root.defined(), "backward: tensor is undefined");
  MINIDL_CHECK(root.requires_grad(), "backward: tensor does not require grad (nothing recorded it)");
  MINIDL_CHECK(seed.shape() == root.shape(), "backward: seed gradient has shape ", shape_to_string(seed.shape()),
               ", expected the output's shape ", shape_to_string(root.shape()));
  NoGradGuard no_grad;
  std::shared_ptr<Node> root_node = root.impl()->grad_fn;
  if (!root_node) {  // backward on a leaf: its gradient is the seed
    Tensor slot(root.impl()->grad);
    accumulate(slot, seed.clone());
    root.impl()->grad = slot.impl_ptr();
    return;
  }
  MINIDL_CHECK(!root_node->released(), "backward: the graph of this tensor was already released by an "
               "earlier backward(); run the forward pass again");

  // Iterative post-order DFS gives a topological order (producers after consumers when
  // reversed).
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack{{root_node.get(), 0}};
  seen.insert(root_node.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->edges().size()) {
      Node* child = node->edges()[next++].node.get();
      if (child && !child->released() && seen.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[root_node.get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    auto found = pending.find(node);
    if (found == pending.end()) continue;  // no gradient reached this node
    Tensor grad_out = std::move(found->second);
    pending.erase(found);  // intermediate gradients are freed once consumed
    std::vector<Tensor> grads;
    {
      ProfileScope scope(node->profile_name(), true);
      grads = node->apply(grad_out);
    }
    const auto& edges = node->edges();
    for (size_t i = 0; i < edges.size(); ++i) {
      if (!edges[i].active() || !grads[i].defined()) continue;
      if (edges[i].node) {
        accumulate(pending[edges[i].node.get()], grads[i]);
      } else {
        TensorImpl* leaf = edges[i].leaf.get();
        if (leaf->grad) {  // a leaf owns its .grad, so gradients accumulate in place
          kernels::add_inplace(leaf->grad->storage->data() + leaf->grad->offset, grads[i].data(), grads[i].numel());
        } else if (sole_owner(grads[i])) {  // nothing else can see it: the leaf takes it as it is
          leaf->grad = grads[i].impl_ptr();
        } else {  // the gradient may share storage with another one: the leaf gets a copy
          leaf->grad = grads[i].clone().impl_ptr();
        }
      }
    }
  }
  for (Node* node : order) node->release();
}

void Tensor::backward() const {
  MINIDL_CHECK(defined() && numel() == 1, "backward: a gradient seed is needed for a non-scalar output of shape ",
               defined() ? shape_to_string(shape()) : std::string("(undefined)"),
               "; call backward(seed) with a tensor of that shape");
  run_backward(*this, Tensor::ones(shape()));
}

void Tensor::backward(const Tensor& seed) const { run_backward(*this, seed); }

}  // namespace minidl
