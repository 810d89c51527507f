// The no-grad step as a plain Python function. A stream of single steps
// (GRUCell under torch.no_grad) calls it directly: through the dispatcher, a
// torch.ops call costs about 2.5 us, as much as the whole step at H = 128.
// The code is the gru_cell op's (driver.cpp); only the way in differs.
#include <torch/extension.h>

namespace grukit {
at::Tensor gru_cell(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const std::optional<at::Tensor>& b_ih, const std::optional<at::Tensor>& b_hh, bool reset_after);
}  // namespace grukit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_cell", &grukit::gru_cell, "x (B, I), h (B, H), w_ih, w_hh, b_ih, b_hh, reset_after -> h' (B, H); no autograd");
}
