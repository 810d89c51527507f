// The direct paths as plain Python functions. A stream of single steps
// (GRUCell under torch.no_grad) and grukit.GRU's forward (no-grad, and with
// autograd the C++ node of autograd.cpp) call them directly: through
// the dispatcher, a torch.ops call costs about 2.5 us, as much as the whole
// step at H = 128. The code is the ops' own (driver.cpp: gru_cell, and
// gru_layer, gru_layer_train and gru_layer_backward once per layer); only the
// way in differs. Also zoneout's mask filler (masks.cpp).
#include <torch/extension.h>

#include "fresh.h"

namespace grukit {
at::Tensor gru_cell(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh, bool reset_after);
std::tuple<at::Tensor, at::Tensor> gru_stack(const at::Tensor& x, const std::optional<at::Tensor>& h0,
                                             const std::vector<at::Tensor>& params, int64_t num_layers,
                                             bool bidirectional, bool bias, bool reset_after,
                                             const std::vector<at::Tensor>& norms, double zoneout_p,
                                             bool compute_bf16);
std::tuple<at::Tensor, at::Tensor> gru_stack_autograd(const at::Tensor& x, const std::optional<at::Tensor>& h0,
                                                      const std::vector<at::Tensor>& params, int64_t num_layers,
                                                      bool bidirectional, bool bias, bool reset_after,
                                                      const std::vector<at::Tensor>& norms, double zoneout_p,
                                                      const std::vector<at::Tensor>& zones,
                                                      const std::vector<at::Tensor>& h_masks);
void set_double_backward(pybind11::object f);
void set_team_policy(int64_t policy);
void set_gemm_policy(int64_t policy);
extern std::atomic<int64_t> tiny_runs;
extern std::atomic<int64_t> passes_alone;
extern std::atomic<int64_t> tile_loops;
bool tile_unit();
void bernoulli_mask_(const at::Tensor& out, int64_t seed, int64_t threshold);
}  // namespace grukit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_cell", &grukit::gru_cell, "x (B, I), h (B, H), w_ih, w_hh, b_ih, b_hh, reset_after -> h' (B, H); no autograd");
  m.def("gru_stack", &grukit::gru_stack,
        "x (T, B, I), h0 (L*D, B, H) or None, torch.nn.GRU's flat parameters, num_layers, bidirectional, bias, "
        "reset_after, layer-norm parameters (4 per layer and direction, or none), eval zoneout p, "
        "compute_bf16 (compute in bfloat16, return in x's dtype: compute_dtype) "
        "-> (out (T, B, D*H), h_n (L*D, B, H)); no autograd");
  m.def("bernoulli_mask_", &grukit::bernoulli_mask_,
        "out, seed, threshold (round(p * 2^32)): fills out with a 0/1 mask, 1 with probability p (masks.cpp)");
  m.def("gru_stack_autograd", &grukit::gru_stack_autograd,
        "gru_stack's arguments, zoneout's training masks (one (D, T, B, H) per layer, or none) and recurrent "
        "dropout's (one (D, B, H) per layer, or none) -> (out, h_n), "
        "differentiable: a C++ autograd node whose backward is gru_stack_backward (autograd.cpp)");
  m.def("set_double_backward", &grukit::set_double_backward,
        "the Python function gru_stack_autograd's backward calls under create_graph=True");
  m.def("pool_misses", [] { return grukit::pool_misses.load(); },
        "how many large buffers the pool (fresh.h, recycled) had to take fresh so far");
  m.def("tiny_runs", [] { return grukit::tiny_runs.load(); },
        "how many stack calls ran on raw pointers (driver.cpp: tiny_forward, tiny_forward_bf16, tiny_backward); "
        "for tests");
  m.def("passes_alone", [] { return grukit::passes_alone.load(); },
        "how many layer passes (forward or backward) that could use several threads ran on the calling thread "
        "alone by choice (driver.cpp, run_layer); for tests");
  m.def("tile_loops", [] { return grukit::tile_loops.load(); },
        "how many bfloat16 time loops (forward or backward) computed their per-step products on the CPU's AMX "
        "tile unit (matvec.h, small_mm_amx); for tests");
  m.def("tile_unit", &grukit::tile_unit, "whether this CPU has AMX's bfloat16 tile unit and the OS lets us use it");
  m.def("pool_capacity", [] { return static_cast<int64_t>(grukit::kPool); },
        "how many free buffers the pool keeps per thread and dtype");
  m.def("set_gemm_policy", &grukit::set_gemm_policy,
        "where float products too large for the small-product kernel run: 0 by the CPU (grukit's gemm on AMD), "
        "1 always grukit's gemm (matvec.h), 2 always torch's GEMM library; for tests");
  m.def("set_team_policy", &grukit::set_team_policy,
        "how a layer that may use several threads (a batch-1 team, or directions and batch blocks side by side) "
        "chooses: 0 measured, 1 together, 2 alone");
}
