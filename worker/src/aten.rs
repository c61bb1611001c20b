//! The Rust side of the ATen shim (`worker/csrc/aten_shim.cpp`, built by
//! `build.rs` against the torch wheel's headers): the libtorch calls tch does
//! not expose. Each C function returns NULL or an error message, which
//! becomes an [`AtenError`] naming the call — one line, no C++ backtrace.
use std::ffi::{c_char, CStr};

use tch::Tensor;

/// A libtorch call that failed: which, and libtorch's first line about why.
#[derive(Debug, thiserror::Error)]
#[error("libtorch {call}: {message}")]
pub struct AtenError {
    pub call: &'static str,
    pub message: String,
}

mod ffi {
    use std::ffi::c_char;

    use torch_sys::C_tensor;

    extern "C" {
        pub fn vaedp_free_error(error: *mut c_char);
        #[allow(clippy::too_many_arguments)]
        pub fn vaedp_fused_adam(
            param: *mut C_tensor,
            grad: *mut C_tensor,
            exp_avg: *mut C_tensor,
            exp_avg_sq: *mut C_tensor,
            step: *mut C_tensor,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> *mut c_char;
        pub fn vaedp_conv_stack(
            x: *mut C_tensor,
            weights: *const *mut C_tensor,
            biases: *const *mut C_tensor,
            n: usize,
            stride: i64,
            padding: i64,
            transposed: bool,
            relu_last: bool,
            out: *mut *mut C_tensor,
        ) -> *mut c_char;
        pub fn vaedp_leaky_relu(
            x: *mut C_tensor,
            slope: f64,
            out: *mut *mut C_tensor,
        ) -> *mut c_char;
    }
}

/// `Ok` for a NULL result; the message's first line, freed, otherwise.
fn check(call: &'static str, result: *mut c_char) -> Result<(), AtenError> {
    if result.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL result is a NUL-terminated string the shim
    // allocated; it is read once and freed once, here.
    let text = unsafe { CStr::from_ptr(result) }
        .to_string_lossy()
        .into_owned();
    unsafe { ffi::vaedp_free_error(result) };
    let message = text.lines().next().unwrap_or("").trim().to_string();
    Err(AtenError { call, message })
}

/// Adam's hyper-parameters for one update.
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// One fused Adam update (`at::_fused_adam_`, PyTorch's `fused=True`
/// kernel): `param`, `exp_avg` and `exp_avg_sq` are updated in place in one
/// pass with `grad`; `step` (one float) holds this update's number, 1 for
/// the first. The kernel reads memory by `param`'s size without checking
/// the others', so they are checked here: the same size, kind and device,
/// contiguous.
pub fn fused_adam(
    param: &mut Tensor,
    grad: &Tensor,
    exp_avg: &mut Tensor,
    exp_avg_sq: &mut Tensor,
    step: &mut Tensor,
    h: &AdamStep,
) -> Result<(), AtenError> {
    let fail = |message: String| AtenError {
        call: "_fused_adam_",
        message,
    };
    let like = |name: &str, t: &Tensor| {
        let same = t.size() == param.size()
            && t.kind() == param.kind()
            && t.device() == param.device()
            && t.is_contiguous();
        match same {
            true => Ok(()),
            false => Err(fail(format!(
                "{name} is {:?} {:?} on {:?}, the parameters {:?} {:?} on {:?} (both contiguous)",
                t.size(),
                t.kind(),
                t.device(),
                param.size(),
                param.kind(),
                param.device()
            ))),
        }
    };
    like("the gradient", grad)?;
    like("the first moment", exp_avg)?;
    like("the second moment", exp_avg_sq)?;
    if !param.is_contiguous() || step.numel() != 1 || step.device() != param.device() {
        return Err(fail(
            "the parameters are not contiguous or the step count is not one number on their device"
                .into(),
        ));
    }
    // SAFETY: each pointer is a live tch tensor handle for the call; the
    // shim catches every C++ exception. `grad` is only read by the kernel.
    let result = unsafe {
        ffi::vaedp_fused_adam(
            param.as_mut_ptr(),
            grad.as_ptr() as *mut _,
            exp_avg.as_mut_ptr(),
            exp_avg_sq.as_mut_ptr(),
            step.as_mut_ptr(),
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
        )
    };
    check("_fused_adam_", result)
}

/// LeakyReLU with negative slope `slope` (`at::leaky_relu`, recorded by
/// autograd): one kernel forward and one backward, where `maximum(x, s·x)`
/// takes three and two.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor, AtenError> {
    // SAFETY: `x` is a live tch handle, only read.
    returned("leaky_relu", |out| unsafe {
        ffi::vaedp_leaky_relu(x.as_ptr() as *mut _, slope, out)
    })
}

/// A stack of square convolutions with stride `stride` and padding
/// `padding` (no dilation or output padding), transposed or not, one per
/// `(weight, bias)` in `layers`, with a ReLU after each but the last
/// (and after the last too if `relu_last`), recorded by autograd as one
/// node. oneDNN computes it on its own blocked tensors from the input to
/// the output, where eager ATen reorders to and from NCHW around every
/// primitive: the same primitives and numbers, without those passes.
/// float32 on the CPU only; anything else is an error. Shapes: `x`
/// `[B, C, H, W]` → `[B, C', H', W']` as the layers make them.
pub fn conv_stack(
    x: &Tensor,
    layers: &[(&Tensor, &Tensor)],
    stride: i64,
    padding: i64,
    transposed: bool,
    relu_last: bool,
) -> Result<Tensor, AtenError> {
    let weights: Vec<_> = layers.iter().map(|(w, _)| w.as_ptr() as *mut _).collect();
    let biases: Vec<_> = layers.iter().map(|(_, b)| b.as_ptr() as *mut _).collect();
    // SAFETY: every pointer is a live tch handle borrowed for the call and
    // only read; the two arrays hold `layers.len()` handles each.
    returned("conv_stack", |out| unsafe {
        ffi::vaedp_conv_stack(
            x.as_ptr() as *mut _,
            weights.as_ptr(),
            biases.as_ptr(),
            layers.len(),
            stride,
            padding,
            transposed,
            relu_last,
            out,
        )
    })
}

/// Runs a shim function that hands back a new tensor through `out`.
fn returned(
    call: &'static str,
    f: impl FnOnce(*mut *mut torch_sys::C_tensor) -> *mut c_char,
) -> Result<Tensor, AtenError> {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    check(call, f(&mut out))?;
    if out.is_null() {
        return Err(AtenError {
            call,
            message: "no tensor came back".into(),
        });
    }
    // SAFETY: on success the shim stored a new `at::Tensor*` in `out`,
    // owned by no one else; the returned `Tensor` frees it (tch's drop).
    Ok(unsafe { Tensor::from_ptr(out) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn adam() -> AdamStep {
        AdamStep {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: 1e-8,
        }
    }

    #[test]
    fn tensors_that_do_not_match_are_one_line_naming_them() {
        let mut p = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let (mut m, mut v) = (p.zeros_like(), p.zeros_like());
        let mut step = Tensor::ones([1], (Kind::Float, Device::Cpu));
        for g in [
            Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            Tensor::zeros([4], (Kind::Double, Device::Cpu)),
        ] {
            let e = fused_adam(&mut p, &g, &mut m, &mut v, &mut step, &adam()).unwrap_err();
            let line = e.to_string();
            assert!(
                line.starts_with("libtorch _fused_adam_: the gradient is"),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn leaky_relu_has_the_slope_it_is_given_and_its_gradient() {
        let x = Tensor::from_slice(&[-2.0f32, -0.5, 1.0, 3.0]).set_requires_grad(true);
        let y = leaky_relu(&x, 0.2).unwrap();
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), [-0.4, -0.1, 1.0, 3.0]);
        let g = Tensor::f_run_backward(&[y.sum(Kind::Float)], &[&x], false, false).unwrap();
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), [0.2, 0.2, 1.0, 1.0]);
        let e = leaky_relu(&Tensor::from_slice(&[1i64, -1]), 0.2).unwrap_err();
        let line = e.to_string();
        assert!(line.starts_with("libtorch leaky_relu: "), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    /// Random weights and biases of a 4×4 stride-2 stack: `(in, out)` per
    /// layer, in the layout of `conv2d` (`[out, in, 4, 4]`) or of
    /// `conv_transpose2d` (`[in, out, 4, 4]`), with gradients.
    fn layers(channels: &[(i64, i64)], transposed: bool) -> Vec<(Tensor, Tensor)> {
        let opts = (Kind::Float, Device::Cpu);
        channels
            .iter()
            .map(|&(i, o)| {
                let shape = if transposed {
                    [i, o, 4, 4]
                } else {
                    [o, i, 4, 4]
                };
                let w = (Tensor::randn(shape, opts) * 0.1).set_requires_grad(true);
                let b = (Tensor::randn([o], opts) * 0.1).set_requires_grad(true);
                (w, b)
            })
            .collect()
    }

    /// The same stack as eager ATen ops, layer by layer.
    fn eager(x: &Tensor, layers: &[(Tensor, Tensor)], transposed: bool, relu_last: bool) -> Tensor {
        let mut t = x.shallow_clone();
        for (i, (w, b)) in layers.iter().enumerate() {
            t = match transposed {
                true => t.conv_transpose2d(w, Some(b), [2, 2], [1, 1], [0, 0], 1, [1, 1]),
                false => t.conv2d(w, Some(b), [2, 2], [1, 1], [1, 1], 1),
            };
            if i + 1 < layers.len() || relu_last {
                t = t.relu();
            }
        }
        t
    }

    #[test]
    fn the_blocked_stack_gives_the_eager_layers_values_and_gradients() {
        tch::manual_seed(11);
        // Seed 002's encoder and decoder (3→32→64→128 and back), batch 8.
        let cases = [
            (
                vec![(3, 32), (32, 64), (64, 128)],
                false,
                true,
                [8, 3, 64, 64],
            ),
            (
                vec![(128, 64), (64, 32), (32, 3)],
                true,
                false,
                [8, 128, 8, 8],
            ),
        ];
        for (channels, transposed, relu_last, input) in cases {
            let ps = layers(&channels, transposed);
            let x = Tensor::randn(input, (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let pairs: Vec<_> = ps.iter().map(|(w, b)| (w, b)).collect();
            let ours = conv_stack(&x, &pairs, 2, 1, transposed, relu_last).unwrap();
            let theirs = eager(&x, &ps, transposed, relu_last);
            assert_eq!(ours.size(), theirs.size());
            // A downstream loss that weighs every output differently.
            let weights = Tensor::randn(ours.size(), (Kind::Float, Device::Cpu));
            let mut vars: Vec<&Tensor> = vec![&x];
            vars.extend(ps.iter().flat_map(|(w, b)| [w, b]));
            let grads = |y: &Tensor| {
                Tensor::f_run_backward(&[(y * &weights).sum(Kind::Float)], &vars, true, false)
                    .unwrap()
            };
            let (g_ours, g_theirs) = (grads(&ours), grads(&theirs));
            let mut pairs = vec![(&ours, &theirs)];
            pairs.extend(g_ours.iter().zip(&g_theirs));
            for (i, (a, b)) in pairs.into_iter().enumerate() {
                let scale = f64::try_from(b.abs().max()).unwrap();
                let diff = f64::try_from((a - b).abs().max()).unwrap();
                assert!(scale > 0.0, "tensor {i} is all zeros");
                assert!(
                    diff <= 1e-6 * scale,
                    "tensor {i}: {diff} off (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn the_blocked_stack_refuses_float64_and_wrong_shapes_in_one_line() {
        let x = Tensor::zeros([1, 3, 8, 8], (Kind::Double, Device::Cpu));
        let w = Tensor::zeros([4, 3, 4, 4], (Kind::Double, Device::Cpu));
        let b = Tensor::zeros([4], (Kind::Double, Device::Cpu));
        let line = conv_stack(&x, &[(&w, &b)], 2, 1, false, true)
            .unwrap_err()
            .to_string();
        assert!(
            line.starts_with("libtorch conv_stack: the layers are Double on cpu"),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
        // Five channels into a layer made for three: libtorch's own check.
        let x = Tensor::zeros([1, 5, 8, 8], (Kind::Float, Device::Cpu));
        let (w, b) = (w.to_kind(Kind::Float), b.to_kind(Kind::Float));
        let line = conv_stack(&x, &[(&w, &b)], 2, 1, false, true)
            .unwrap_err()
            .to_string();
        assert!(line.starts_with("libtorch conv_stack: "), "{line}");
        assert!(
            !line.contains('\n') && !line.contains("Exception raised from"),
            "{line}"
        );
    }

    #[test]
    fn an_error_inside_libtorch_is_one_line_without_its_backtrace() {
        // Integer parameters: the kernel has no integer version and throws.
        let mut p = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let g = p.zeros_like();
        let (mut m, mut v) = (p.zeros_like(), p.zeros_like());
        let mut step = Tensor::ones([1], (Kind::Float, Device::Cpu));
        let e = fused_adam(&mut p, &g, &mut m, &mut v, &mut step, &adam()).unwrap_err();
        let line = e.to_string();
        assert!(line.starts_with("libtorch _fused_adam_: "), "{line}");
        assert!(
            !line.contains('\n') && !line.contains("Exception raised from"),
            "{line}"
        );
    }
}
