"""PyTorch DDP baseline for the data-parallel benchmark: pytorch/examples'
VAE trained with DistributedDataParallel (gloo) under torchrun, each rank
taking its contiguous slice of every global batch, data preloaded as tensors.

  torchrun --nproc-per-node N ddp_vae.py DATA GLOBAL_BATCH STEPS THREADS
prints JSON {samples_per_sec} (global samples per second) from rank 0."""
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(__file__))
from pytorch_vae import VAE, loss_function, tensors  # noqa: E402


def main(root, global_batch, steps, threads):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    train_x = tensors(root, "train")
    model = DDP(VAE())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    local = global_batch // world
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(len(train_x), generator=g)
    per_epoch = len(train_x) // global_batch
    dist.barrier()
    t0 = time.perf_counter()
    for step in range(steps):
        b = step % per_epoch
        idx = perm[b * global_batch + rank * local : b * global_batch + (rank + 1) * local]
        data = train_x[idx]
        opt.zero_grad()
        recon, mu, logvar = model(data)
        loss = loss_function(recon, data, mu, logvar) / local
        loss.backward()
        opt.step()
    dist.barrier()
    sps = steps * global_batch / (time.perf_counter() - t0)
    if rank == 0:
        print(json.dumps({"samples_per_sec": sps}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
