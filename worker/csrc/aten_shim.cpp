// The ATen calls tch does not expose, for vae-worker (`worker/src/aten.rs`
// is their Rust side). Compiled by worker/build.rs with the `cc` crate
// against the torch wheel's own headers, as torch-sys compiles its libtch.
// Tensors arrive as tch's handles (`at::Tensor*`). Every function returns
// NULL on success or an error message (malloc'd; freed by
// vaedp_free_error): no C++ exception crosses into Rust.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

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

// A stack of square convolutions of one stride and padding (transposed or
// not; no dilation, no output padding, one group) with ReLU after each (after the last only if `relu_last`), computed on
// oneDNN's own (blocked) tensors: the input is reordered once, every layer
// reads the previous layer's output in the layout oneDNN chose for it, and
// only the stack's output goes back to a dense NCHW tensor. Eager ATen
// reorders NCHW <-> blocked around every primitive, forward and backward
// (docs/benchmarks.md). The primitives are the ones at::conv2d /
// at::conv_transpose2d call, so the numbers are theirs. `params` is
// [w0, b0, w1, b1, ...], dense. Backward: ReLU's mask from the saved
// (blocked) outputs, then at::convolution_backward on blocked tensors.
struct BlockedConvStack : public torch::autograd::Function<BlockedConvStack> {
  static std::vector<int64_t> pair(int64_t v) { return {v, v}; }

  static bool relu_after(size_t layer, size_t layers, bool relu_last) {
    return layer + 1 < layers || relu_last;
  }

  static at::Tensor forward(torch::autograd::AutogradContext* ctx,
                            const at::Tensor& x, at::TensorList params,
                            int64_t stride, int64_t padding, bool transposed,
                            bool relu_last) {
    size_t layers = params.size() / 2;
    std::vector<at::Tensor> acts{x.contiguous().to_mkldnn()};
    at::Tensor h = acts[0];
    for (size_t i = 0; i < layers; ++i) {
      h = at::convolution(h, params[2 * i], params[2 * i + 1], pair(stride),
                          pair(padding), pair(1), transposed, pair(0), 1);
      if (relu_after(i, layers, relu_last)) {
        h = at::relu_(h);
        acts.push_back(h);
      }
    }
    at::Tensor y = h.to_dense();
    ctx->save_for_backward(params.vec());
    ctx->saved_data["acts"] = acts;
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["transposed"] = transposed;
    ctx->saved_data["relu_last"] = relu_last;
    return y;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grads) {
    auto params = ctx->get_saved_variables();
    auto acts = ctx->saved_data["acts"].toTensorVector();
    int64_t stride = ctx->saved_data["stride"].toInt();
    int64_t padding = ctx->saved_data["padding"].toInt();
    bool transposed = ctx->saved_data["transposed"].toBool();
    bool relu_last = ctx->saved_data["relu_last"].toBool();
    size_t layers = params.size() / 2;
    // One gradient per forward argument: x, the parameters, then the four
    // non-tensor ones (undefined).
    torch::autograd::variable_list out(params.size() + 5);
    if (!grads[0].defined()) return out;
    at::Tensor g = grads[0].contiguous().to_mkldnn();
    for (size_t i = layers; i-- > 0;) {
      if (relu_after(i, layers, relu_last)) {
        g = at::threshold_backward(g, acts[i + 1], 0);
      }
      const at::Tensor& w = params[2 * i];
      bool input = i > 0 || ctx->needs_input_grad(0);
      auto [gi, gw, gb] = at::convolution_backward(
          g, acts[i], w, std::vector<int64_t>{w.size(transposed ? 1 : 0)},
          pair(stride), pair(padding), pair(1), transposed, pair(0), 1,
          {input, true, true});
      out[1 + 2 * i] = gw;
      out[2 + 2 * i] = gb;
      g = gi;
    }
    if (ctx->needs_input_grad(0)) out[0] = g.to_dense();
    return out;
  }
};

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

// The convolution stack above (BlockedConvStack) on `x` with the `n`
// weight/bias pairs `weights[i]`, `biases[i]`, recorded by autograd. Needs
// float32 CPU tensors and a libtorch built with oneDNN; anything else is an
// error (the caller runs the layers one by one instead). On success `*out`
// is a new tensor handle the caller owns.
char* vaedp_conv_stack(at::Tensor* x, at::Tensor** weights,
                       at::Tensor** biases, size_t n, int64_t stride,
                       int64_t padding, bool transposed, bool relu_last,
                       at::Tensor** out) {
  return guarded([&] {
    TORCH_CHECK(at::hasMKLDNN(), "this libtorch has no oneDNN");
    TORCH_CHECK(n > 0, "no layers");
    std::vector<at::Tensor> params;
    for (size_t i = 0; i < n; ++i) {
      params.push_back(*weights[i]);
      params.push_back(*biases[i]);
    }
    for (const at::Tensor& t : params) {
      TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat,
                  "the layers are ", t.scalar_type(), " on ", t.device(),
                  ", oneDNN's stack takes float32 on the CPU");
    }
    TORCH_CHECK(x->device().is_cpu() && x->scalar_type() == at::kFloat,
                "the input is ", x->scalar_type(), " on ", x->device(),
                ", oneDNN's stack takes float32 on the CPU");
    *out = new at::Tensor(
        BlockedConvStack::apply(*x, at::TensorList(params), stride, padding,
                                transposed, relu_last));
  });
}

}  // extern "C"
