"""The PyTorch side of `make bench`: the same two configurations as
bench/bench_train.c (MLP 784-1024-1024-10, batch 256, MNIST), timed the same
way (one warm-up epoch, then the median of EPOCHS epochs), at PyTorch's best
thread count on this machine (chosen on a short trial of 1 and 2 threads).

usage: torch_bench.py EPOCHS [CONFIG...]      (needs Debian's python3-torch)
Prints "torch.<config>.<key> <value>" lines."""
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch
from torch import nn


def load_idx(path, offset):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def model_for(config):
    if config == "basic":
        net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
        return net, torch.optim.SGD(net.parameters(), lr=0.1)
    net = nn.Sequential(
        nn.Linear(784, 1024), nn.LayerNorm(1024), nn.GELU(), nn.Dropout(0.1),
        nn.Linear(1024, 1024), nn.LayerNorm(1024), nn.GELU(), nn.Dropout(0.1),
        nn.Linear(1024, 10))
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)


def train_epoch(net, opt, x, y, batch, generator, max_steps=None):
    net.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x.shape[0], generator=generator)
    start = time.perf_counter()
    for step, i in enumerate(range(0, x.shape[0], batch)):
        if max_steps is not None and step >= max_steps:
            break
        idx = order[i : i + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    configs = sys.argv[2:] or ["basic", "advanced"]
    images = load_idx("data/mnist/train-images-idx3-ubyte", 16).reshape(-1, 784)
    labels = load_idx("data/mnist/train-labels-idx1-ubyte", 8)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(labels.astype(np.int64))
    test = torch.from_numpy(load_idx("data/mnist/t10k-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255.0)
    print(f"torch.version {torch.__version__}")
    for config in configs:
        trial = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(1)
            net, opt = model_for(config)
            g = torch.Generator().manual_seed(1)
            train_epoch(net, opt, x, y, 256, g, max_steps=10)
            trial[threads] = train_epoch(net, opt, x, y, 256, g, max_steps=40)
        threads = min(trial, key=trial.get)
        torch.set_num_threads(threads)
        torch.manual_seed(1)
        net, opt = model_for(config)
        g = torch.Generator().manual_seed(1)
        times = [train_epoch(net, opt, x, y, 256, g) for _ in range(epochs + 1)][1:]
        seconds = statistics.median(times)
        net.eval()
        evals = []
        with torch.no_grad():
            for _ in range(5):
                t = time.perf_counter()
                net(test).argmax(1)
                evals.append(time.perf_counter() - t)
        print(f"torch.{config}.threads {threads}")
        print(f"torch.{config}.epoch_seconds {seconds:.3f}")
        print(f"torch.{config}.images_per_sec {x.shape[0] / seconds:.0f}")
        print(f"torch.{config}.eval_seconds {statistics.median(evals):.4f}")
        sys.stdout.flush()
    print(f"torch.peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
