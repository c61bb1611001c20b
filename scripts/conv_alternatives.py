"""The alternatives to seed 002's convolutions that ATen offers, measured in
the libtorch vae-worker links (issue 21, docs/benchmarks.md): which can make
its conv VAE step faster on this CPU than PyTorch's own.

    python scripts/conv_alternatives.py [ROUNDS] [SECTION ...]

1. rate: GFLOPS of MKL's sgemm and of oneDNN's convolution on the same
   amount of work (seed 002's second convolution, batch 128): if the
   convolution runs at the GEMM's rate, rewriting it as GEMMs gains nothing.
2. fused: seed 002's encoder and decoder, one forward and backward (BCE on
   logits), four ways interleaved: NCHW eager (what vae-worker and PyTorch
   run), channels-last, and each with convolution+ReLU fused into one
   oneDNN primitive (mkldnn::_convolution_pointwise, the kernels Inductor
   uses; ReLU's backward as threshold_backward, weights and inputs by
   aten::convolution_backward). Speed-ups over NCHW eager, per round.
3. last: the decoder's last transposed convolution (32 -> 3 channels,
   32x32 -> 64x64), the slowest per FLOP in the ONEDNN_VERBOSE profile,
   forward and backward four ways: oneDNN's deconvolution (NCHW), the same
   channels-last, output channels zero-padded to 8, and as a 3x3
   convolution to 12 channels followed by pixel_shuffle(2) (sub-pixel).
   Milliseconds, median of the rounds.
4. blocked: the encoder's and the decoder's convolutions each as one stack
   on oneDNN's own (blocked) tensors, what vae-worker's shim runs
   (BlockedConvStack in worker/csrc/aten_shim.cpp, mirrored here as
   BlockedStack): the input reordered once, no NCHW between layers, forward
   and backward; against NCHW eager, for seed 002 and the FactorVAE's conv
   model, with the largest difference of the gradients.
Sections default to all four. Prints one line per measurement.
"""
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import conv_layout  # scripts/conv_layout.py: the same encoder and decoder

CL = torch.channels_last


def ms(f):
    """Milliseconds a call of `f`, after two warm-up calls (6 timed)."""
    return conv_layout.seconds(f, 6) * 1e3


def rate(rounds):
    a, b = torch.rand(32768, 512), torch.rand(512, 64)
    x, w = torch.rand(128, 32, 32, 32), torch.rand(64, 32, 4, 4)
    flop = 2 * 32768 * 512 * 64  # the same for both
    gemm = [flop / ms(lambda: a @ b) / 1e6 for _ in range(rounds)]
    conv = [flop / ms(lambda: F.conv2d(x, w, None, 2, 1)) / 1e6 for _ in range(rounds)]
    print(f"rate: sgemm 32768x512x64 {statistics.median(gemm):.0f} GFLOPS, "
          f"conv 32->64 4x4/2 on 128x32x32x32 {statistics.median(conv):.0f} GFLOPS (medians)")


class ConvRelu(torch.autograd.Function):
    """relu(conv(x)) (transposed or not, 4x4, stride 2, padding 1) as one primitive."""

    @staticmethod
    def forward(ctx, x, w, b, transposed):
        if transposed:
            y = torch.ops.mkldnn._convolution_transpose_pointwise(
                x, w, b, [1, 1], [0, 0], [2, 2], [1, 1], 1, "relu", [None], "")
        else:
            y = torch.ops.mkldnn._convolution_pointwise(
                x, w, b, [1, 1], [2, 2], [1, 1], 1, "relu", [None], "")
        ctx.save_for_backward(x, w, y)
        ctx.transposed = transposed
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, y = ctx.saved_tensors
        g = torch.ops.aten.threshold_backward(g, y, 0)
        out_ch = w.shape[1] if ctx.transposed else w.shape[0]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, w, [out_ch], [2, 2], [1, 1], [1, 1], ctx.transposed, [0, 0], 1,
            [ctx.needs_input_grad[0], True, True])
        return gx, gw, gb, None


class BlockedStack(torch.autograd.Function):
    """The shim's BlockedConvStack: 4x4 stride-2 convolutions (transposed or
    not) with ReLU between (after the last too if relu_last), on mkldnn
    tensors from input to output."""

    @staticmethod
    def forward(ctx, x, transposed, relu_last, *params):
        acts = [x.contiguous().to_mkldnn()]
        h = acts[0]
        n = len(params) // 2
        for i in range(n):
            h = torch.ops.aten.convolution(h, params[2 * i], params[2 * i + 1], [2, 2], [1, 1],
                                           [1, 1], transposed, [0, 0], 1)
            if i + 1 < n or relu_last:
                h = torch.relu_(h)
                acts.append(h)
        ctx.acts, ctx.transposed, ctx.relu_last = acts, transposed, relu_last
        ctx.save_for_backward(*params)
        return h.to_dense()

    @staticmethod
    def backward(ctx, g):
        params, acts, t = ctx.saved_tensors, ctx.acts, ctx.transposed
        n, grads = len(params) // 2, [None] * len(params)
        g = g.contiguous().to_mkldnn()
        for i in reversed(range(n)):
            if i + 1 < n or ctx.relu_last:
                g = torch.ops.aten.threshold_backward(g, acts[i + 1], 0)
            w = params[2 * i]
            gi, grads[2 * i], grads[2 * i + 1] = torch.ops.aten.convolution_backward(
                g, acts[i], w, [w.shape[1] if t else w.shape[0]], [2, 2], [1, 1], [1, 1], t,
                [0, 0], 1, [i > 0 or ctx.needs_input_grad[0], True, True])
            g = gi
        gx = g.to_dense() if ctx.needs_input_grad[0] else None
        return (gx, None, None, *grads)


def stack_step(chs, cin, batch, blocked):
    """One forward and backward of a conv encoder and decoder (BCE on
    logits), eager or as two BlockedStacks; returns (step, parameters)."""
    torch.manual_seed(0)
    e, d = conv_layout.enc_dec(chs, cin)
    enc = [m for m in e if not isinstance(m, nn.ReLU)]
    dec = [m for m in d if not isinstance(m, nn.ReLU)]
    x = torch.rand(batch, cin, 64, 64)
    flat = lambda ms_: [p for m in ms_ for p in (m.weight, m.bias)]  # noqa: E731

    def step():
        if blocked:
            h = BlockedStack.apply(x, False, True, *flat(enc))
            h = h.flatten(1).view(h.shape).requires_grad_()
            y = BlockedStack.apply(h, True, False, *flat(dec))
        else:
            h = e(x)
            h = h.flatten(1).view(h.shape)
            y = d(h)
        F.binary_cross_entropy_with_logits(y, x, reduction="sum").backward()
    return step, flat(enc) + flat(dec)


def blocked(rounds):
    for name, chs, cin, b in [("seed 002 conv VAE", [32, 64, 128], 3, 128),
                              ("FactorVAE conv", [32, 32, 64, 64], 1, 64)]:
        (eager, pe), (stack, pb) = (stack_step(chs, cin, b, w) for w in (False, True))
        for f, ps in ((eager, pe), (stack, pb)):
            for p in ps:
                p.grad = None
            f()
        diff = max(((a.grad - b_.grad).abs().max() / a.grad.abs().max()).item()
                   for a, b_ in zip(pe, pb))
        r = sorted(ms(eager) / ms(stack) for _ in range(rounds))
        print(f"blocked: {name} forward+backward, blocked stacks / NCHW eager: median "
              f"{statistics.median(r):.2f} ({' '.join(f'{v:.2f}' for v in r)}); "
              f"largest gradient difference {diff:.1e} of the largest gradient")


def seed002_step(channels_last, fuse):
    e, d = conv_layout.enc_dec([32, 64, 128], 3)
    enc = [m for m in e if not isinstance(m, nn.ReLU)]
    dec = [m for m in d if not isinstance(m, nn.ReLU)]
    x = torch.rand(128, 3, 64, 64)
    if channels_last:
        x = x.contiguous(memory_format=CL)
        enc = [m.to(memory_format=CL) for m in enc]
        dec = [m.to(memory_format=CL) for m in dec]

    def layer(m, h, transposed, relu):
        if fuse and relu:
            return ConvRelu.apply(h, m.weight, m.bias, transposed)
        h = m(h)
        return F.relu(h) if relu else h

    def step():
        h = x
        for m in enc:
            h = layer(m, h, False, True)
        h = h.flatten(1).view(h.shape)  # the dense layers' round trip
        if channels_last:
            h = h.contiguous(memory_format=CL)
        for i, m in enumerate(dec):
            h = layer(m, h, True, i < len(dec) - 1)
        F.binary_cross_entropy_with_logits(h, x, reduction="sum").backward()
    return step


def fused(rounds):
    ways = [(False, False), (True, False), (False, True), (True, True)]
    steps = [seed002_step(*w) for w in ways]
    ratios = [[] for _ in ways]
    for _ in range(rounds):
        t = [ms(s) for s in steps]
        for i in range(len(ways)):
            ratios[i].append(t[0] / t[i])
    for (cl, fu), r in zip(ways[1:], ratios[1:]):
        print(f"fused: seed 002 forward+backward, {'channels-last' if cl else 'NCHW'}"
              f"{', conv+ReLU fused' if fu else ''} / NCHW eager: median "
              f"{statistics.median(r):.2f} ({' '.join(f'{v:.2f}' for v in sorted(r))})")


def last(rounds):
    b_ = 128
    x = torch.rand(b_, 32, 32, 32, requires_grad=True)
    xcl = x.detach().contiguous(memory_format=CL).requires_grad_()
    w = torch.rand(32, 3, 4, 4, requires_grad=True)
    b = torch.rand(3, requires_grad=True)
    g = torch.rand(b_, 3, 64, 64)
    # sub-pixel: output phase (a, c) of channel o is a 3x3 convolution over
    # x padded by 1; taps[a][d] is the 4x4 kernel row (or column) at offset d.
    taps = {0: [3, 1, -1], 1: [-1, 2, 0]}
    idx, mask = torch.zeros(12, 9, dtype=torch.long), torch.zeros(12, 9)
    for o in range(3):
        for a in range(2):
            for c in range(2):
                for dy in range(3):
                    for dx in range(3):
                        ky, kx = taps[a][dy], taps[c][dx]
                        if ky >= 0 and kx >= 0:
                            idx[o * 4 + a * 2 + c, dy * 3 + dx] = o * 16 + ky * 4 + kx
                            mask[o * 4 + a * 2 + c, dy * 3 + dx] = 1

    def sub():
        k = w.permute(1, 2, 3, 0).reshape(48, 32)[idx.view(-1)] * mask.view(-1, 1)
        k = k.view(12, 3, 3, 32).permute(0, 3, 1, 2)
        return F.pixel_shuffle(F.conv2d(x, k, b.repeat_interleave(4), 1, 1), 2)

    ways = {
        "oneDNN NCHW": lambda: F.conv_transpose2d(x, w, b, 2, 1),
        "channels-last": lambda: F.conv_transpose2d(xcl, w, b, 2, 1),
        "padded to 8": lambda: F.conv_transpose2d(
            x, F.pad(w, (0, 0, 0, 0, 0, 5)), F.pad(b, (0, 5)), 2, 1)[:, :3],
        "sub-pixel": sub,
    }
    ref = ways["oneDNN NCHW"]()
    for name, f in ways.items():
        err = (f() - ref).abs().max().item()
        fwd = statistics.median(ms(f) for _ in range(rounds))
        both = statistics.median(ms(lambda: f().backward(g)) for _ in range(rounds))
        print(f"last: transposed conv 32->3, {name}: forward {fwd:.1f} ms, "
              f"forward+backward {both:.1f} ms (max |diff| {err:.1e})")


def main():
    torch.set_num_threads(2)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sections = {"rate": rate, "fused": fused, "last": last, "blocked": blocked}
    for name in sys.argv[2:] or sections:
        if name not in sections:
            sys.exit(f"unknown section {name!r}: one of {', '.join(sections)}")
        sections[name](rounds)


if __name__ == "__main__":
    main()
