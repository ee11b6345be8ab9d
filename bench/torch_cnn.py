"""The PyTorch side of the CNN benchmark (bench/bench_conv.c is nn's side):
the same networks, batch 128, Adam lr 1e-3, MNIST as normalised float
tensors in memory, timed the same way: a warm-up, then RUNS runs of STEPS
training steps each (the median run and the fastest are reported), and the
evaluation of the 10,000 test images (batches of 1000, as nn evaluates).

PyTorch runs at every setting a user could pick (bench/torch_settings.py:
the OpenBLAS build, threads, the OpenMP wait policy, the OpenBLAS kernels;
convolutions go to oneDNN, the linear layers to BLAS), each in its own
process. The best setting is marked. --rotate K starts at the K-th setting,
so that rounds spread the machine's drift; TORCH_SETTINGS="name ..." runs
only those.

usage: torch_cnn.py [--steps N] [--runs R] [--rotate K] CONFIG...   (keras, examples, preset)
Prints "torch.<config>.<setting>.<key> <value>" per setting, then
"torch.<config>.best <setting>" and that setting's "torch.<config>.<key>"."""
import resource
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from torch_settings import blas_kernels, blas_loaded, chosen_settings, run_settings

BATCH = 128
WARMUP_STEPS = 50


def conv_block(c_in, c_out, bn):
    return [nn.Conv2d(c_in, c_out, 3)] + ([nn.BatchNorm2d(c_out)] if bn else []) + [nn.ReLU()]


def network(config):
    """The layer stacks of bench/bench_conv.c, layer for layer."""
    if config == "keras":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    if config == "examples":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    if config == "preset":  # nn train --preset cnn's layers
        return nn.Sequential(
            *conv_block(1, 32, True), *conv_block(32, 32, True), nn.MaxPool2d(2),
            *conv_block(32, 64, True), *conv_block(64, 64, True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1024, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
    raise SystemExit(f"torch_cnn.py: unknown configuration '{config}' (keras, examples, preset)")


def load_idx(path, offset, shape):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset).reshape(shape)


def child(config, threads, steps, runs):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    train = load_idx("data/mnist/train-images-idx3-ubyte", 16, (-1, 1, 28, 28)).astype(np.float32) / 255.0
    mean, std = float(train.mean()), float(train.std())
    x = torch.from_numpy((train - mean) / std)
    y = torch.from_numpy(load_idx("data/mnist/train-labels-idx1-ubyte", 8, (-1,)).astype(np.int64))
    test = load_idx("data/mnist/t10k-images-idx3-ubyte", 16, (-1, 1, 28, 28)).astype(np.float32) / 255.0
    test = torch.from_numpy((test - mean) / std)
    net = network(config)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    order, at = torch.randperm(x.shape[0], generator=g), 0

    def step():
        nonlocal order, at
        if at + BATCH > x.shape[0]:
            order, at = torch.randperm(x.shape[0], generator=g), 0
        idx = order[at : at + BATCH]
        at += BATCH
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        opt.step()

    net.train()
    for _ in range(WARMUP_STEPS):
        step()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * BATCH / (time.perf_counter() - start))
    net.eval()
    evals = []
    with torch.no_grad():
        for _ in range(3):
            t = time.perf_counter()
            for i in range(0, test.shape[0], 1000):
                net(test[i : i + 1000]).argmax(1)
            evals.append(time.perf_counter() - t)
    print(f"images_per_sec {statistics.median(rates):.0f}")
    print(f"fastest_images_per_sec {max(rates):.0f}")
    print(f"eval_seconds {statistics.median(evals):.4f}")
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"blas {blas_loaded()}")
    print(f"kernels {blas_kernels()}")


KEYS = ("images_per_sec", "fastest_images_per_sec", "eval_seconds", "peak_rss_mb", "kernels")


def driver(configs, steps, runs, rotate):
    print(f"torch.version {torch.__version__}")
    order = chosen_settings("torch_cnn.py", rotate)
    for config in configs:
        network(config)  # an unknown name fails before the runs
        run_settings("torch_cnn.py", __file__, config, [steps, runs], KEYS, order)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        child(args[1], int(args[2]), int(args[3]), int(args[4]))
        return
    opts = {"--steps": 200, "--runs": 2, "--rotate": 0}
    while args and args[0] in opts:
        opts[args[0]], args = int(args[1]), args[2:]
    driver(args or ["keras", "examples"], opts["--steps"], opts["--runs"], opts["--rotate"])


if __name__ == "__main__":
    main()
