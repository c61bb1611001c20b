"""The reference: pytorch/examples vae/main.py (its VAE class and loss,
verbatim in substance), run on the project's MNIST files.

  train  DATA EPOCHS [--threads N] [--steps N] : trains as the example does
         (Adam 1e-3, batch 128, seed 1, shuffled, last partial batch kept) and
         prints JSON {test_loss, train_loss, samples_per_sec}
  eval   DATA WEIGHTS.safetensors SEED          : loads exported weights with
         load_state_dict and prints the test loss computed with the same
         reparameterisation noise vae-worker's evaluation uses
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import noise  # noqa: E402
import vaedata  # noqa: E402


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def tensors(root, split):
    x, _ = vaedata.load_split(root, split)
    return torch.from_numpy(x.astype(np.float32) / 255.0).view(-1, 784)


def evaluate(model, test):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(test), 128):
            data = test[i : i + 128]
            recon, mu, logvar = model(data)
            total += loss_function(recon, data, mu, logvar).item()
    return total / len(test)


def train(root, epochs, threads, steps):
    torch.manual_seed(1)
    if threads:
        torch.set_num_threads(threads)
    train_x, test_x = tensors(root, "train"), tensors(root, "test")
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    done, t0, seen, train_total = 0, time.perf_counter(), 0, 0.0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(train_x))
        for i in range(0, len(train_x), 128):
            data = train_x[perm[i : i + 128]]
            opt.zero_grad()
            recon, mu, logvar = model(data)
            loss = loss_function(recon, data, mu, logvar)
            loss.backward()
            train_total += loss.item()
            opt.step()
            seen += len(data)
            done += 1
            if steps and done >= steps:
                break
        if steps and done >= steps:
            break
    sps = seen / (time.perf_counter() - t0)
    out = {"train_loss": train_total / seen, "samples_per_sec": sps}
    if not steps:
        out["test_loss"] = evaluate(model, test_x)
    print(json.dumps(out))


def eval_weights(root, weights, seed):
    from safetensors.torch import load_file

    model = VAE()
    model.load_state_dict(load_file(weights))
    test = tensors(root, "test")
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(test), 1000):
            data = test[i : i + 1000]
            mu, logvar = model.encode(data)
            eps = torch.from_numpy(noise.normals(seed, "eval", 0, range(i, i + len(data)), 20))
            recon = model.decode(mu + eps * torch.exp(0.5 * logvar))
            total += loss_function(recon, data, mu, logvar).double().item()
    print(json.dumps({"test_loss": total / len(test)}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "train":
        args = sys.argv[2:]
        threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 0
        steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 0
        train(args[0], int(args[1]), threads, steps)
    elif cmd == "eval":
        eval_weights(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd}")
