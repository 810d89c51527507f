// grukit.GRU's training stack as an autograd node written in C++: the forward
// is gru_stack_train, the backward gru_stack_backward (driver.cpp), and the
// node between them is torch's own C++ custom function. The same node in
// Python (a torch.autograd.Function) cost 30 us more per training step at
// T20 B1 I32 H64 (0.2325 against 0.2030 ms: its apply, and the backward's
// round trip through the interpreter), more than that step's arithmetic.
//
// Double backward (create_graph=True) recomputes the stack through the
// differentiable per-layer ops, in Python: the callback kernels/ops.py
// registers (set_double_backward), called with the GIL taken. Batched
// gradients (the legacy vmap of is_grads_batched) go the same way.
#include <ATen/LegacyBatchedTensorImpl.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace grukit {
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> gru_stack_train(
    const at::Tensor& x, const std::optional<at::Tensor>& h0, const std::vector<at::Tensor>& params,
    int64_t num_layers, bool bidirectional, bool bias, bool reset_after, const std::vector<at::Tensor>& norms,
    double zoneout_p, const std::vector<at::Tensor>& zones, const std::vector<at::Tensor>& h_masks);
std::vector<at::Tensor> gru_stack_backward(const std::optional<at::Tensor>& dout, const std::optional<at::Tensor>& dh_n,
                                           const at::Tensor& x, const std::optional<at::Tensor>& h0,
                                           const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& norms,
                                           const std::vector<at::Tensor>& saved, int64_t num_layers,
                                           bool bidirectional, bool bias, bool reset_after, double zoneout_p,
                                           const std::vector<at::Tensor>& zones, const std::vector<at::Tensor>& h_masks,
                                           bool need_dx, bool need_bias);

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<at::Tensor>;

// The Python function that differentiates the stack through the per-layer ops
// (ops._stack_double_backward). Never destroyed: it may outlive the interpreter.
pybind11::object* double_backward = nullptr;

OptTensor opt(const at::Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

// Inputs, in the order autograd numbers them: x, h0 (undefined when absent),
// each of params, each of norms, each of zones and h_masks (the training
// masks of zoneout and recurrent dropout: constants, no gradient), then the
// five settings (not tensors).
struct StackFunction : public torch::autograd::Function<StackFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const OptTensor& h0, at::TensorList params,
                               at::TensorList norms, at::TensorList zones, at::TensorList h_masks,
                               int64_t num_layers, bool bidirectional, bool bias, bool reset_after, double zoneout_p) {
    auto [out, h_n, saved] = gru_stack_train(x, h0, params.vec(), num_layers, bidirectional, bias, reset_after,
                                             norms.vec(), zoneout_p, zones.vec(), h_masks.vec());
    ctx->set_materialize_grads(false);  // an output without a gradient arrives undefined: zero, not a zeros tensor
    variable_list keep{x, h0.value_or(at::Tensor())};
    keep.insert(keep.end(), params.begin(), params.end());
    keep.insert(keep.end(), norms.begin(), norms.end());
    keep.insert(keep.end(), zones.begin(), zones.end());
    keep.insert(keep.end(), h_masks.begin(), h_masks.end());
    keep.insert(keep.end(), saved.begin(), saved.end());
    ctx->save_for_backward(keep);
    ctx->saved_data["layers"] = num_layers;
    ctx->saved_data["bidirectional"] = bidirectional;
    ctx->saved_data["bias"] = bias;
    ctx->saved_data["reset_after"] = reset_after;
    ctx->saved_data["zoneout_p"] = zoneout_p;
    ctx->saved_data["params"] = static_cast<int64_t>(params.size());
    ctx->saved_data["norms"] = static_cast<int64_t>(norms.size());
    ctx->saved_data["zones"] = static_cast<int64_t>(zones.size());
    ctx->saved_data["h_masks"] = static_cast<int64_t>(h_masks.size());
    return {out, h_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int64_t layers = ctx->saved_data["layers"].toInt(), n = ctx->saved_data["params"].toInt(),
                  m = ctx->saved_data["norms"].toInt(), z = ctx->saved_data["zones"].toInt(),
                  r = ctx->saved_data["h_masks"].toInt();
    const bool bidirectional = ctx->saved_data["bidirectional"].toBool(), bias = ctx->saved_data["bias"].toBool(),
               reset_after = ctx->saved_data["reset_after"].toBool();
    const double zoneout_p = ctx->saved_data["zoneout_p"].toDouble();
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const OptTensor h0 = opt(saved[1]);
    const std::vector<at::Tensor> params(saved.begin() + 2, saved.begin() + 2 + n);
    const std::vector<at::Tensor> norms(saved.begin() + 2 + n, saved.begin() + 2 + n + m);
    const auto masks = saved.begin() + 2 + n + m;
    const std::vector<at::Tensor> zones(masks, masks + z), h_masks(masks + z, masks + z + r);
    const std::vector<at::Tensor> states(masks + z + r, saved.end());
    const int64_t inputs = 2 + n + m + z + r;  // (the masks need no gradient: need is false for them)
    // need[i] for input i; autograd numbers only the tensors given (h0 may be absent)
    std::vector<bool> need(inputs, false);
    for (int64_t i = 0, edge = 0; i < inputs; ++i)
      if (i != 1 || h0) need[i] = ctx->needs_input_grad(edge++);
    variable_list out(inputs + 5);  // the settings get no gradient
    // Batched gradients (torch.autograd.grad's is_grads_batched, jacobian's vectorize: torch's
    // legacy vmap) have no storage for the kernels to read: they take the same way as
    // create_graph=True, whose reference ops have batching rules.
    const bool batched = std::any_of(grads.begin(), grads.end(), [](const at::Tensor& g) { return at::isBatchedTensor(g); });
    if (at::GradMode::is_enabled() || batched) {  // create_graph=True: a graph of differentiable ops
      TORCH_CHECK(double_backward != nullptr, "grukit: the double backward of the training stack is not registered");
      pybind11::gil_scoped_acquire gil;
      std::vector<at::Tensor> both(params);
      both.insert(both.end(), norms.begin(), norms.end());
      const std::vector<bool> need_params(need.begin(), need.begin() + 2 + n + m);
      const auto res = (*double_backward)(layers, bidirectional, bias, reset_after, zoneout_p, n, opt(grads[0]),
                                          opt(grads[1]), need_params, x, h0, both, zones, h_masks)
                           .cast<std::vector<OptTensor>>();
      for (int64_t i = 0; i < 2 + n + m; ++i) out[i] = res[i].value_or(at::Tensor());
      return out;
    }
    bool need_bias = false;
    for (int64_t i = 0; i < n; ++i) need_bias = need_bias || (bias && i % 4 >= 2 && need[2 + i]);
    const auto g = gru_stack_backward(opt(grads[0]), opt(grads[1]), x, h0, params, norms, states, layers,
                                      bidirectional, bias, reset_after, zoneout_p, zones, h_masks, need[0], need_bias);
    for (int64_t i = 0; i < 2 + n + m; ++i)
      if (need[i]) out[i] = g[i];
    return out;
  }
};
}  // namespace

// grukit.GRU's forward when autograd records: (out, h_n) with the node above
// as their grad_fn. Arguments as gru_stack, then the training masks of zoneout
// and recurrent dropout (see gru_stack_train).
std::tuple<at::Tensor, at::Tensor> gru_stack_autograd(const at::Tensor& x, const OptTensor& h0,
                                                      const std::vector<at::Tensor>& params, int64_t num_layers,
                                                      bool bidirectional, bool bias, bool reset_after,
                                                      const std::vector<at::Tensor>& norms, double zoneout_p,
                                                      const std::vector<at::Tensor>& zones,
                                                      const std::vector<at::Tensor>& h_masks) {
  auto res = StackFunction::apply(x, h0, at::TensorList(params), at::TensorList(norms), at::TensorList(zones),
                                  at::TensorList(h_masks), num_layers, bidirectional, bias, reset_after, zoneout_p);
  return {res[0], res[1]};
}

void set_double_backward(pybind11::object f) {
  if (double_backward == nullptr) double_backward = new pybind11::object();
  *double_backward = std::move(f);
}
}  // namespace grukit
