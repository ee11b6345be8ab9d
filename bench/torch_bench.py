"""The PyTorch side of `make bench` for the MLPs: the configurations of
bench/bench_train.c (784-1024-1024-10, batch 256, MNIST), timed the same way
(one warm-up epoch, then the median of EPOCHS epochs), at every setting a
user could pick (bench/torch_settings.py: the OpenBLAS build, threads, the
OpenMP wait policy, the OpenBLAS kernels), each in its own process.
TORCH_SETTINGS="name name ..." runs only those.

usage: torch_bench.py [--rotate N] EPOCHS [CONFIG...]    (CONFIG: basic, advanced)
Prints "torch.<config>.<setting>.<key> <value>" lines for every setting,
then "torch.<config>.best <setting>" and the best setting's values as
"torch.<config>.<key> <value>". --rotate N starts the settings at the N-th
(so that over rounds no setting always runs first). Needs python3-torch."""
import resource
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from torch_settings import blas_kernels, blas_loaded, chosen_settings, run_settings

BATCH = 256
KEYS = ("epoch_seconds", "images_per_sec", "fastest_images_per_sec", "eval_seconds", "peak_rss_mb", "kernels")


def model_for(config):
    if config == "basic":
        net = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
        return net, torch.optim.SGD(net.parameters(), lr=0.1)
    if config == "advanced":
        net = nn.Sequential(
            nn.Linear(784, 1024), nn.LayerNorm(1024), nn.GELU(), nn.Dropout(0.1),
            nn.Linear(1024, 1024), nn.LayerNorm(1024), nn.GELU(), nn.Dropout(0.1),
            nn.Linear(1024, 10))
        return net, torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    raise SystemExit(f"torch_bench.py: unknown configuration '{config}' (basic, advanced)")


def load_idx(path, offset):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def train_epoch(net, opt, x, y, generator):
    net.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x.shape[0], generator=generator)
    start = time.perf_counter()
    for i in range(0, x.shape[0], BATCH):
        idx = order[i : i + BATCH]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def child(config, threads, epochs):
    torch.set_num_threads(threads)
    images = load_idx("data/mnist/train-images-idx3-ubyte", 16).reshape(-1, 784)
    labels = load_idx("data/mnist/train-labels-idx1-ubyte", 8)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    mean, std = x.mean(), x.std()
    x = (x - mean) / std
    y = torch.from_numpy(labels.astype(np.int64))
    test = load_idx("data/mnist/t10k-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255.0
    test = (torch.from_numpy(test) - mean) / std
    torch.manual_seed(1)
    net, opt = model_for(config)
    g = torch.Generator().manual_seed(1)
    times = [train_epoch(net, opt, x, y, g) for _ in range(epochs + 1)][1:]
    seconds = statistics.median(times)
    net.eval()
    evals = []
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            for i in range(0, test.shape[0], 1000):  # nn evaluates in batches of 1000 too
                net(test[i : i + 1000]).argmax(1)
            evals.append(time.perf_counter() - t)
    print(f"epoch_seconds {seconds:.3f}")
    print(f"images_per_sec {x.shape[0] / seconds:.0f}")
    print(f"fastest_images_per_sec {x.shape[0] / min(times):.0f}")
    print(f"eval_seconds {statistics.median(evals):.4f}")
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"blas {blas_loaded()}")
    print(f"kernels {blas_kernels()}")


def driver(epochs, configs, rotate):
    print(f"torch.version {torch.__version__}")
    order = chosen_settings("torch_bench.py", rotate)
    for config in configs:
        model_for(config)  # an unknown name fails before the runs
        run_settings("torch_bench.py", __file__, config, [epochs], KEYS, order)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        child(args[1], int(args[2]), int(args[3]))
        return
    rotate = 0
    if args[:1] == ["--rotate"]:
        rotate, args = int(args[1]), args[2:]
    epochs = int(args[0]) if args else 3
    driver(epochs, args[1:] or ["basic", "advanced"], rotate)


if __name__ == "__main__":
    main()
