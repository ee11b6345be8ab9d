"""The PyTorch side of `make bench` for the MLPs: the configurations of
bench/bench_train.c (784-1024-1024-10, batch 256, MNIST), timed the same way
(one warm-up epoch, then the median of EPOCHS epochs), at every setting a
user could pick, each in its own process (the BLAS build and the OpenMP wait
policy are fixed when a process starts):

  - Debian's two OpenBLAS builds, chosen for this process alone with
    LD_LIBRARY_PATH (PyTorch's linear layers call BLAS sgemm; the OpenMP
    build follows torch.set_num_threads, the pthread build always runs its
    own threads on every core) and checked in /proc/self/maps,
  - torch.set_num_threads 1 and 2,
  - with 2 threads, OMP_WAIT_POLICY active and passive (libgomp's spinning
    or sleeping threads: PyTorch's own pool, and the OpenMP OpenBLAS's;
    with 1 thread no OpenMP team ever runs, so the policy does not apply),
  - OpenBLAS's kernels: the ones it picks for this CPU (OPENBLAS_CORETYPE
    removed from the environment), and, when the environment sets
    OPENBLAS_CORETYPE, the ones it names (e.g. Haswell: AVX2 only).

Settings are named like bench/torch_cnn.py's, BLAS_tTHREADS[_WAIT][_CORETYPE]:
openmp_t1, pthread_t2_passive, openmp_t2_active_haswell, ...
TORCH_SETTINGS="name name ..." runs only those.

usage: torch_bench.py [--rotate N] EPOCHS [CONFIG...]    (CONFIG: basic, advanced)
Prints "torch.<config>.<setting>.<key> <value>" lines for every setting,
then "torch.<config>.best <setting>" and the best setting's values as
"torch.<config>.<key> <value>". --rotate N starts the settings at the N-th
(so that over rounds no setting always runs first). Needs python3-torch."""
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

BATCH = 256
BLAS_DIRS = {
    "openmp": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
    "pthread": "/usr/lib/x86_64-linux-gnu/openblas-pthread",
}
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


def blas_loaded():
    """Which OpenBLAS build this process really mapped."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    return ",".join(name for name, path in BLAS_DIRS.items() if path in maps) or "none"


def blas_kernels():
    """The kernels OpenBLAS chose (or was told to use), e.g. Haswell."""
    import ctypes
    lib = ctypes.CDLL("libopenblas.so.0")  # the copy already loaded
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


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


def settings():
    """(name, environment, threads) of every setting."""
    forced = os.environ.get("OPENBLAS_CORETYPE", "")
    for kernels in ("", forced) if forced else ("",):
        for blas, path in BLAS_DIRS.items():
            for threads, wait in ((1, None), (2, "active"), (2, "passive")):
                env = {"LD_LIBRARY_PATH": path}
                if wait:
                    env["OMP_WAIT_POLICY"] = wait.upper()
                if kernels:
                    env["OPENBLAS_CORETYPE"] = kernels
                name = f"{blas}_t{threads}" + (f"_{wait}" if wait else "") + (f"_{kernels.lower()}" if kernels else "")
                yield name, env, threads


def driver(epochs, configs, rotate):
    print(f"torch.version {torch.__version__}")
    order = list(settings())
    if os.environ.get("TORCH_SETTINGS"):
        wanted = os.environ["TORCH_SETTINGS"].split()
        unknown = set(wanted) - {name for name, _, _ in order}
        if unknown:
            raise SystemExit(f"torch_bench.py: unknown settings {sorted(unknown)}; known: {[n for n, _, _ in order]}")
        order = [s for s in order if s[0] in wanted]
    order = order[rotate % len(order):] + order[: rotate % len(order)]
    for config in configs:
        model_for(config)  # an unknown name fails before the runs
        results = {}
        for name, setting_env, threads in order:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_CORETYPE")}
            env.update(setting_env)  # OPENBLAS_CORETYPE only where the setting names it
            blas = name.split("_")[0]
            out = subprocess.run([sys.executable, __file__, "--child", config, str(threads), str(epochs)],
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"torch_bench.py: {config} at {name} failed:\n{out.stderr}")
            r = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
            if r["blas"] != blas:
                raise SystemExit(f"torch_bench.py: {name} loaded OpenBLAS {r['blas']}, not {blas}")
            if setting_env.get("OPENBLAS_CORETYPE", r["kernels"]) != r["kernels"]:
                raise SystemExit(f"torch_bench.py: {name} runs OpenBLAS's {r['kernels']} kernels")
            results[name] = r
            for key in KEYS:
                print(f"torch.{config}.{name}.{key} {r[key]}")
            sys.stdout.flush()
        best = max(results, key=lambda n: float(results[n]["images_per_sec"]))
        print(f"torch.{config}.best {best}")
        for key in KEYS:
            print(f"torch.{config}.{key} {results[best][key]}")
        sys.stdout.flush()


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
