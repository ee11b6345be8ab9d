#!/usr/bin/python3
"""PyTorch's side of the char-LSTM benchmark: the recipe of `nn train
--dataset tinyshakespeare` (Embedding(65, 64), LSTM(64, 256) batch_first,
Linear(256, 65); random windows of 64 characters, batch 32, Adam lr 2e-3,
gradients clipped to norm 1), timed in training tokens per second at every
PyTorch setting (bench/torch_settings.py: OpenBLAS build, threads, wait
policy), the best marked.

    /usr/bin/python3 bench/torch_text.py [--steps N] [--runs R]

nn's side: build/nn train --dataset tinyshakespeare --steps N --eval-every N
--eval-windows 20 --threads T prints tokens/s of the training alone."""
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torch_settings import blas_kernels, blas_loaded, chosen_settings, run_settings  # noqa: E402

BATCH, CONTEXT, WARMUP_STEPS = 32, 64, 10


class CharLSTM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, 256, batch_first=True)
        self.fc = nn.Linear(256, vocab)

    def forward(self, x):
        return self.fc(self.lstm(self.embed(x))[0])


def child(config, threads, steps, runs):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    text = open("datasets/tinyshakespeare/input.txt", encoding="utf-8").read()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text[: len(text) * 9 // 10]], dtype=torch.long)
    net = CharLSTM(len(chars))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)

    def step():
        starts = torch.randint(0, ids.numel() - CONTEXT - 1, (BATCH,), generator=g)
        x = torch.stack([ids[s : s + CONTEXT] for s in starts])
        y = torch.stack([ids[s + 1 : s + CONTEXT + 1] for s in starts])
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x).reshape(-1, len(chars)), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    net.train()
    for _ in range(WARMUP_STEPS):
        step()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * BATCH * CONTEXT / (time.perf_counter() - start))
    print(f"images_per_sec {statistics.median(rates):.0f}")  # tokens per second here
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"blas {blas_loaded()}")
    print(f"kernels {blas_kernels()}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        child(args[1], int(args[2]), int(args[3]), int(args[4]))
        return
    opts = {"--steps": 100, "--runs": 2}
    while args and args[0] in opts:
        opts[args[0]], args = int(args[1]), args[2:]
    print(f"torch.version {torch.__version__}")
    run_settings("torch_text.py", __file__, "charlstm", [opts["--steps"], opts["--runs"]],
                 ("images_per_sec", "peak_rss_mb", "kernels"), chosen_settings("torch_text.py", 0))


if __name__ == "__main__":
    main()
