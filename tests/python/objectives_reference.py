"""Reference objectives, written from the papers and their reference code,
on a fixed small batch, with their gradients; tests/cli.rs compares
vae-worker's objectives (worker/src/loss.rs) with them.

  objectives_reference.py OUT.safetensors

Inputs (float64, seeded): x [B, 1, 2, 2] in [0, 1]; the encoder's mu,
logvar [B, L]; noise eps [B, L]; the decoder's logits [B, 1, 2, 2]; a linear
discriminator disc_w [2, L], disc_b [2]. z = mu + exp(logvar / 2) * eps.
For each objective, its batch loss (mean over the batch) and the gradients
with respect to mu, logvar and logits:
- vae: pytorch/examples vae/main.py (BCE summed over pixels + beta * KLD).
- capacity: Burgess et al. 2018 as in 1Konny/Beta-VAE (recon / B +
  gamma * |KL summed over dims, mean over the batch - C|).
- factor: Kim & Mnih 2018 as in 1Konny/FactorVAE (recon + KL + gamma *
  mean(D(z)_0 - D(z)_1)).
- btcvae: Chen et al. 2018 as in rtqichen/beta-tcvae (minibatch-weighted
  sampling: recon + MI + beta * TC + dimension-wise KL, dataset size N).
- dip_i, dip_ii: Kumar et al. 2018 as disentanglement_lib's DIPVAE writes
  it (vae.py: compute_covariance_z_mean, regularize_diag_off_diag_dip;
  reconstruction and KL as batch means), transcribed from TensorFlow.
"""
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

B, L = 6, 3
BETA, CAP_C, CAP_GAMMA, FACTOR_GAMMA, TC_BETA, N = 4.0, 2.5, 7.0, 3.0, 6.0, 100
DIP_LAMBDA_OD = 5.0


def inputs():
    g = torch.Generator().manual_seed(7)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return {
        "x": torch.rand(B, 1, 2, 2, generator=g, dtype=torch.float64),
        "mu": r(B, L),
        "logvar": 0.5 * r(B, L),
        "eps": r(B, L),
        "logits": r(B, 1, 2, 2),
        "disc_w": r(2, L),
        "disc_b": r(2),
    }


def kl_per_sample(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def recon_sum(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum")


def vae(t, z):
    return (recon_sum(t["logits"], t["x"]) + BETA * kl_per_sample(t["mu"], t["logvar"]).sum()) / B


def capacity(t, z):
    recon_loss = recon_sum(t["logits"], t["x"]) / B
    total_kld = kl_per_sample(t["mu"], t["logvar"]).mean()
    return recon_loss + CAP_GAMMA * (total_kld - CAP_C).abs()


def factor(t, z):
    d_z = z @ t["disc_w"].T + t["disc_b"]
    vae_tc_loss = (d_z[:, :1] - d_z[:, 1:]).mean()
    vae_recon_loss = recon_sum(t["logits"], t["x"]) / B
    vae_kld = kl_per_sample(t["mu"], t["logvar"]).mean()
    return vae_recon_loss + vae_kld + FACTOR_GAMMA * vae_tc_loss


def log_density(sample, mu, logvar):
    c = math.log(2 * math.pi)
    inv_sigma = torch.exp(-logvar)
    return -0.5 * ((sample - mu) ** 2 * inv_sigma + logvar + c)


def btcvae(t, z):
    mu, logvar = t["mu"], t["logvar"]
    logpx = -F.binary_cross_entropy_with_logits(t["logits"], t["x"], reduction="none").flatten(1).sum(1)
    logpz = log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    logqz_condx = log_density(z, mu, logvar).sum(1)
    _logqz = log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
    logqz_prodmarginals = (torch.logsumexp(_logqz, dim=1) - math.log(B * N)).sum(1)
    logqz = torch.logsumexp(_logqz.sum(2), dim=1) - math.log(B * N)
    elbo = logpx - (logqz_condx - logqz) - TC_BETA * (logqz - logqz_prodmarginals) - (logqz_prodmarginals - logpz)
    return -elbo.mean()


def compute_covariance_z_mean(z_mean):
    """disentanglement_lib.methods.unsupervised.vae.compute_covariance_z_mean."""
    expectation_z_mean_z_mean_t = torch.mean(z_mean.unsqueeze(2) * z_mean.unsqueeze(1), dim=0)
    expectation_z_mean = torch.mean(z_mean, dim=0)
    return expectation_z_mean_z_mean_t - expectation_z_mean.unsqueeze(1) * expectation_z_mean.unsqueeze(0)


def regularize_diag_off_diag_dip(covariance_matrix, lambda_od, lambda_d):
    """disentanglement_lib.methods.unsupervised.vae.regularize_diag_off_diag_dip."""
    covariance_matrix_diagonal = torch.diagonal(covariance_matrix)
    covariance_matrix_off_diagonal = covariance_matrix - torch.diag(covariance_matrix_diagonal)
    return (lambda_od * torch.sum(covariance_matrix_off_diagonal ** 2)
            + lambda_d * torch.sum((covariance_matrix_diagonal - 1) ** 2))


def dip(dip_type, lambda_d_factor):
    def loss(t, z):
        reconstruction_loss = recon_sum(t["logits"], t["x"]) / B
        kl_loss = kl_per_sample(t["mu"], t["logvar"]).mean()
        cov_z_mean = compute_covariance_z_mean(t["mu"])
        lambda_d = lambda_d_factor * DIP_LAMBDA_OD
        if dip_type == "i":
            cov = cov_z_mean
        else:
            cov_enc = torch.diag_embed(torch.exp(t["logvar"]))
            cov = torch.mean(cov_enc, dim=0) + cov_z_mean
        return reconstruction_loss + kl_loss + regularize_diag_off_diag_dip(cov, DIP_LAMBDA_OD, lambda_d)
    return loss


def main(out):
    base = inputs()
    tensors = dict(base)
    for name, fn in [("vae", vae), ("capacity", capacity), ("factor", factor), ("btcvae", btcvae),
                     ("dip_i", dip("i", 10.0)), ("dip_ii", dip("ii", 1.0))]:
        t = {k: v.clone().requires_grad_(k in ("mu", "logvar", "logits")) for k, v in base.items()}
        z = t["mu"] + torch.exp(0.5 * t["logvar"]) * t["eps"]
        loss = fn(t, z)
        gm, gl, go = torch.autograd.grad(loss, [t["mu"], t["logvar"], t["logits"]])
        tensors[f"{name}.loss"] = loss.detach().reshape(1)
        tensors[f"{name}.grad_mu"] = gm
        tensors[f"{name}.grad_logvar"] = gl
        tensors[f"{name}.grad_logits"] = go
    save_file({k: v.contiguous() for k, v in tensors.items()}, out)


if __name__ == "__main__":
    main(sys.argv[1])
