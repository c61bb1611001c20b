"""Seed 002's convolutional VAE, as the seed writes it (the reference that
configs/celeba_conv_vae.toml reproduces): an Encoder of three 4x4 stride-2
convolutions 3->32->64->128 with ReLU and two linear heads from 128*8*8 to
the latent size, and a Decoder of a linear layer back to 128*8*8 (no
activation after it), transposed convolutions 128->64->32->3 with ReLU
between, and a sigmoid.

    python seed002.py check EXPORT.safetensors RUN/config.toml DATASET_DIR

loads a vae-worker export into these classes (renaming its tensors) and
into python/vaedp_models.py's ConvVAE, runs both on the dataset's test
images, and prints the largest differences as JSON.
"""
import json
import sys
import tomllib

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, latent_dim=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 4, stride=2, padding=1)
        self.fc_mu = nn.Linear(128 * 8 * 8, latent_dim)
        self.fc_logvar = nn.Linear(128 * 8 * 8, latent_dim)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        h = h.view(h.size(0), -1)
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim=64):
        super().__init__()
        self.fc = nn.Linear(latent_dim, 128 * 8 * 8)
        self.deconv1 = nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        self.deconv3 = nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1)

    def forward(self, z):
        h = self.fc(z).view(-1, 128, 8, 8)
        h = F.relu(self.deconv1(h))
        h = F.relu(self.deconv2(h))
        return torch.sigmoid(self.deconv3(h))


# vae-worker's state_dict names -> seed 002's.
ENCODER = {"encoder.0": "conv1", "encoder.1": "conv2", "encoder.2": "conv3",
           "fc_mu": "fc_mu", "fc_logvar": "fc_logvar"}
DECODER = {"fc_z": "fc", "decoder.0": "deconv1", "decoder.1": "deconv2", "decoder.2": "deconv3"}


def renamed(state, names):
    out = {}
    for k, v in state.items():
        layer, param = k.rsplit(".", 1)
        if layer in names:
            out[f"{names[layer]}.{param}"] = v
    return out


def check(export, config, dataset):
    from safetensors.torch import load_file
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "python"))
    import vaedata
    import vaedp_models

    state = load_file(export)
    cfg = tomllib.load(open(config, "rb"))
    latent = cfg["model"]["latent_dim"]
    enc, dec = Encoder(latent).double(), Decoder(latent).double()
    enc.load_state_dict(renamed(state, ENCODER), strict=True)
    dec.load_state_dict(renamed(state, DECODER), strict=True)
    ours = vaedp_models.from_config(cfg, (3, 64, 64)).double()
    ours.load_state_dict(state, strict=True)
    images, _ = vaedata.load_split(dataset, "test")
    x = torch.from_numpy(images).double() / 255
    with torch.no_grad():
        mu, logvar = enc(x)
        mu2, logvar2 = ours.encode(x)
        recon = dec(mu)
        recon2 = torch.sigmoid(ours.decode(mu))
    print(json.dumps({
        "images": len(x),
        "mu": (mu - mu2).abs().max().item(),
        "logvar": (logvar - logvar2).abs().max().item(),
        "recon": (recon - recon2).abs().max().item(),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "check":
        check(*sys.argv[2:5])
