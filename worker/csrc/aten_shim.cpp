// The ATen calls tch does not expose, for vae-worker (`worker/src/aten.rs`
// is their Rust side). Compiled by worker/build.rs with the `cc` crate
// against the torch wheel's own headers, as torch-sys compiles its libtch.
// Tensors arrive as tch's handles (`at::Tensor*`). Every function returns
// NULL on success or an error message (malloc'd; freed by
// vaedp_free_error): no C++ exception crosses into Rust.
#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace {

char* message(const char* text) {
  return strdup(text == nullptr ? "unknown error" : text);
}

// Runs `f`, turning any exception into an error message.
template <typename F>
char* guarded(F f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return message(e.what());
  } catch (...) {
    return message("a non-standard C++ exception");
  }
}

}  // namespace

extern "C" {

void vaedp_free_error(char* error) { free(error); }

// One Adam update of `param` with gradient `grad` in one pass
// (at::_fused_adam_, torch.optim.Adam(fused=True)'s kernel): the moments
// `exp_avg` and `exp_avg_sq` are updated in place; `step` is a one-element
// float tensor holding this update's number (1 for the first; the kernel
// reads it, as torch.optim.Adam increments it before the call). L2 weight
// decay is added to the gradient, as torch.optim.Adam does. The kernel
// checks no sizes: the caller does.
char* vaedp_fused_adam(at::Tensor* param, at::Tensor* grad, at::Tensor* exp_avg,
                       at::Tensor* exp_avg_sq, at::Tensor* step, double lr,
                       double beta1, double beta2, double weight_decay,
                       double eps) {
  return guarded([&] {
    at::_fused_adam_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step},
                     lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                     /*maximize=*/false);
  });
}

// LeakyReLU with slope `slope` (at::leaky_relu: one kernel forward, one
// backward; tch's leaky_relu has PyTorch's default slope 0.01 fixed). On
// success `*out` is a new tensor handle the caller owns (tch frees it).
char* vaedp_leaky_relu(at::Tensor* x, double slope, at::Tensor** out) {
  return guarded([&] { *out = new at::Tensor(at::leaky_relu(*x, slope)); });
}

}  // extern "C"
