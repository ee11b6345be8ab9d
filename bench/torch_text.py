#!/usr/bin/python3
"""PyTorch's side of the recurrent models' benchmark (bench/bench_text.c is
nn's), each configuration at every PyTorch setting (bench/torch_settings.py:
OpenBLAS build, threads, wait policy), each setting in its own process, the
best marked:

  charlstm  the recipe of `nn train --dataset tinyshakespeare`: Embedding(65,
            64), LSTM(64, 256) batch_first, Linear(256, 65); random windows of
            64 characters of the first 90% of the text, batch 32, Adam lr 2e-3,
            gradients clipped to norm 1; training tokens per second
  namesgru  `nn train --dataset names-by-language`: Embedding(V, 32), GRU(32,
            128) batch_first, each name's last real step, Linear(128, 18);
            85% of each language's names, shuffled every epoch, batches of 64
            padded to the batch's longest name, Adam lr 3e-3, clip 1; training
            names per second. Two forms, the faster one reported (form): the
            GRU over the padded batch and each name's last real step gathered,
            or over the batch packed (pack_padded_sequence, what nn's padded
            GRU computes: no step past a name's end) and the final state
  generate  the char-LSTM, freshly initialised, writing at batch 1 from a line
            break with temperature 1: each character's embedding through the
            LSTM with the state (h, c) carried from the step before, softmax,
            torch.multinomial, .item() (the character a program would print);
            characters per second
  gpt       nanoGPT's CPU recipe, written here in nanoGPT's form: token and
            position embeddings (128 wide, context 64), 4 pre-LayerNorm blocks
            (LayerNorm without bias, causal self-attention of 4 heads with one
            QKV Linear and an output Linear, an MLP 128-512-128 with exact
            GELU, no biases), a final LayerNorm and the head tied to the token
            embedding; random windows of 64 characters, batch 12, AdamW lr 1e-3
            betas (0.9, 0.99) weight decay 0.1 on the matrices, clip 1;
            training tokens per second
  gptgen    that GPT, freshly initialised, writing at batch 1 with
            temperature 1 as nanoGPT's generate does: the whole sequence so
            far through the model for every new character, softmax of the
            last position, multinomial; samples of a whole context each (a
            line break and the 63 characters after it), one after the other;
            characters per second

A warm-up (10 steps, 20 steps, 200 characters) is not timed; then --runs
runs of --steps / --names-steps steps or --gen-chars characters each; the
child reports the median run (per_sec) and the fastest (fastest_per_sec).

    /usr/bin/python3 bench/torch_text.py [--steps N] [--names-steps N]
        [--gen-chars N] [--runs R] [--rotate K]
        [charlstm|namesgru|generate|gpt|gptgen...]

defaults 100, 300, 2000, 2 runs, every configuration; --rotate K starts
at the K-th setting (scripts/bench.sh turns it each round)."""
import os
import random
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torch_settings import blas_kernels, blas_loaded, chosen_settings, run_settings  # noqa: E402

CONFIGS = {"charlstm": ("tokens", 10), "namesgru": ("names", 20), "generate": ("chars", 200),
           "gpt": ("tokens", 10), "gptgen": ("chars", 200)}  # unit, warm-up
LM_BATCH, CONTEXT, NAMES_BATCH = 32, 64, 64
GPT_BATCH, GPT_CONTEXT, GPT_WIDTH, GPT_LAYERS, GPT_HEADS = 12, 64, 128, 4, 4


class CharLSTM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, 256, batch_first=True)
        self.fc = nn.Linear(256, vocab)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.fc(out), state


class NamesGRU(nn.Module):
    def __init__(self, vocab, classes):
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.gru = nn.GRU(32, 128, batch_first=True)
        self.fc = nn.Linear(128, classes)

    def forward(self, x, lengths, packed=False):
        if packed:  # no step past a name's end; h_n is each name's last real step
            seq = nn.utils.rnn.pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
            return self.fc(self.gru(seq)[1][0])
        out = self.gru(self.embed(x))[0]  # [B, T, H]
        return self.fc(out[torch.arange(x.shape[0]), lengths - 1])


class LayerNormNoBias(nn.Module):
    """torch 1.13's nn.LayerNorm always has a bias; nanoGPT's bias=False has none."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return nn.functional.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = LayerNormNoBias(d), LayerNormNoBias(d)
        self.c_attn = nn.Linear(d, 3 * d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc_proj = nn.Linear(4 * d, d, bias=False)

    def attention(self, x):
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (D // self.heads) ** 0.5)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(B, T, D))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.fc_proj(nn.functional.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.wte = nn.Embedding(vocab, GPT_WIDTH)
        self.wpe = nn.Embedding(GPT_CONTEXT, GPT_WIDTH)
        self.blocks = nn.ModuleList(Block(GPT_WIDTH, GPT_HEADS) for _ in range(GPT_LAYERS))
        self.ln_f = LayerNormNoBias(GPT_WIDTH)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()  # the tied head


def gpt_optimizer(net):
    """AdamW with decay on the matrices (embeddings included) only, as nanoGPT."""
    params = list(net.parameters())
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))


def shakespeare():
    text = open("data/tinyshakespeare/input.txt", encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    return chars, torch.tensor([index[c] for c in text[: len(text) * 9 // 10]], dtype=torch.long)


def timed(step, warmup, per_run, runs):
    """Items per second of each timed run; step(k) does the k-th unit of work
    and returns the items it handled."""
    for k in range(warmup):
        step(k)
    rates, k = [], warmup
    for _ in range(runs):
        items, start = 0, time.perf_counter()
        for _ in range(per_run):
            items += step(k)
            k += 1
        rates.append(items / (time.perf_counter() - start))
    return rates


def charlstm(per_run, runs):
    chars, ids = shakespeare()
    net = CharLSTM(len(chars))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    net.train()

    def step(_):
        starts = torch.randint(0, ids.numel() - CONTEXT - 1, (LM_BATCH,), generator=g)
        x = torch.stack([ids[s : s + CONTEXT] for s in starts])
        y = torch.stack([ids[s + 1 : s + CONTEXT + 1] for s in starts])
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x)[0].reshape(-1, len(chars)), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return LM_BATCH * CONTEXT

    return timed(step, CONFIGS["charlstm"][1], per_run, runs)


def names_by_language():
    """(train names as lists of ids, their labels, vocabulary size, classes):
    a seeded 85/15 split within each language, id 0 the padding."""
    folder = "data/names-by-language"
    files = sorted(f for f in os.listdir(folder) if f.endswith(".txt"))
    lines = [open(os.path.join(folder, f), encoding="utf-8").read().replace("\r", "").splitlines() for f in files]
    chars = sorted({c for names in lines for name in names for c in name})
    index = {c: i + 1 for i, c in enumerate(chars)}
    rng = random.Random(1)
    train, labels = [], []
    for label, names in enumerate(lines):
        names = [n for n in names if n]
        val = set(rng.sample(range(len(names)), len(names) * 15 // 100))
        for i, name in enumerate(names):
            if i not in val:
                train.append([index[c] for c in name])
                labels.append(label)
    return train, labels, len(chars) + 1, len(files)


def namesgru(per_run, runs):
    """Both forms, each from the same start; the faster (by median run) reported."""
    results = {form: namesgru_form(per_run, runs, form == "packed") for form in ("padded", "packed")}
    form = max(results, key=lambda f: statistics.median(results[f]))
    print(f"form {form}")
    for f, rates in results.items():
        print(f"{f}_per_sec {statistics.median(rates):.0f}")
    return results[form]


def namesgru_form(per_run, runs, packed):
    torch.manual_seed(1)
    train, labels, vocab, classes = names_by_language()
    net = NamesGRU(vocab, classes)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = random.Random(1)
    order, pos = [], 0
    net.train()

    def step(_):
        nonlocal order, pos
        if pos >= len(order):  # a new epoch
            order, pos = list(range(len(train))), 0
            rng.shuffle(order)
        batch = order[pos : pos + NAMES_BATCH]
        pos += NAMES_BATCH
        lengths = torch.tensor([len(train[i]) for i in batch])
        x = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
        for row, i in enumerate(batch):
            x[row, : len(train[i])] = torch.tensor(train[i])
        y = torch.tensor([labels[i] for i in batch])
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x, lengths, packed), y)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return len(batch)

    return timed(step, CONFIGS["namesgru"][1], per_run, runs)


def generate(per_run, runs):
    chars, _ = shakespeare()
    net = CharLSTM(len(chars)).eval()
    g = torch.Generator().manual_seed(1)
    x, state = torch.tensor([[chars.index("\n")]]), None

    def step(_):
        nonlocal x, state
        logits, state = net(x, state)
        nxt = torch.multinomial(torch.softmax(logits[0, -1], -1), 1, generator=g).item()
        x = torch.tensor([[nxt]])
        return 1

    with torch.no_grad():
        return timed(step, CONFIGS["generate"][1], per_run, runs)


def gpt(per_run, runs):
    chars, ids = shakespeare()
    net = GPT(len(chars))
    opt = gpt_optimizer(net)
    g = torch.Generator().manual_seed(1)
    net.train()

    def step(_):
        starts = torch.randint(0, ids.numel() - GPT_CONTEXT - 1, (GPT_BATCH,), generator=g)
        x = torch.stack([ids[s : s + GPT_CONTEXT] for s in starts])
        y = torch.stack([ids[s + 1 : s + GPT_CONTEXT + 1] for s in starts])
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x).reshape(-1, len(chars)), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return GPT_BATCH * GPT_CONTEXT

    return timed(step, CONFIGS["gpt"][1], per_run, runs)


def gptgen(per_run, runs):
    chars, _ = shakespeare()
    net = GPT(len(chars)).eval()
    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([[chars.index("\n")]])

    def step(_):
        nonlocal idx
        if idx.shape[1] == GPT_CONTEXT:  # the next sample
            idx = idx[:, :1]
        logits = net(idx)
        nxt = torch.multinomial(torch.softmax(logits[0, -1], -1), 1, generator=g)
        idx = torch.cat([idx, nxt.view(1, 1)], dim=1)
        return 1

    with torch.no_grad():
        return timed(step, CONFIGS["gptgen"][1], per_run, runs)


def child(config, threads, per_run, runs):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    rates = {"charlstm": charlstm, "namesgru": namesgru, "generate": generate, "gpt": gpt,
             "gptgen": gptgen}[config](per_run, runs)
    print(f"per_sec {statistics.median(rates):.0f}")
    print(f"fastest_per_sec {max(rates):.0f}")
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"blas {blas_loaded()}")
    print(f"kernels {blas_kernels()}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        child(args[1], int(args[2]), int(args[3]), int(args[4]))
        return
    opts = {"--steps": 100, "--names-steps": 300, "--gen-chars": 2000, "--runs": 2, "--rotate": 0}
    while args and args[0] in opts:
        opts[args[0]], args = int(args[1]), args[2:]
    unknown = [c for c in args if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"torch_text.py: unknown configurations {unknown}; known: {list(CONFIGS)}")
    per_run = {"charlstm": opts["--steps"], "namesgru": opts["--names-steps"], "generate": opts["--gen-chars"],
               "gpt": opts["--steps"], "gptgen": opts["--gen-chars"]}
    print(f"torch.version {torch.__version__}")
    for config in args or list(CONFIGS):
        print(f"torch.{config}.unit {CONFIGS[config][0]}")
        forms = ("form", "padded_per_sec", "packed_per_sec") if config == "namesgru" else ()
        run_settings("torch_text.py", __file__, config, [per_run[config], opts["--runs"]],
                     ("per_sec", "fastest_per_sec", "peak_rss_mb", "kernels") + forms,
                     chosen_settings("torch_text.py", opts["--rotate"]), rate="per_sec")


if __name__ == "__main__":
    main()
