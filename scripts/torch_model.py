#!/usr/bin/python3
"""Rebuilds a model trained by nn as a PyTorch module and runs it.

An nn checkpoint is a safetensors file whose metadata describes the model
(`nn.spec`, a layer stack such as "conv(32,3) batchnorm relu maxpool(2)
flatten linear(10)", and `nn.input_shape`, e.g. "1,28,28", or "tokens(V)"
for a text model over token ids in [0, V); files of earlier releases give
`nn.layers`, `nn.act`, `nn.norm` and `nn.dropout` instead; "tokens(V,T)" for a
text model with learned positions, which takes at most T tokens) and whose tensors
carry PyTorch's names and layouts (fc1.weight, conv1.weight,
bn1.running_mean, ln1.bias, embed1.weight, lstm1.weight_ih_l0, ...). This
module turns the metadata alone into an equivalent torch.nn.Module and loads
the weights with strict=True.

The layers and the PyTorch modules they become (children named as nn names
the tensors, numbered per kind along the network):

    linear(OUT)        fcN    nn.Linear (on the last dimension, so per step of [N, T, F] too);
                              linear(OUT,bias=0): nn.Linear(..., bias=False)
    conv(OUT,K,...)    convN  nn.Conv2d
    maxpool, avgpool          nn.MaxPool2d, nn.AvgPool2d
    batchnorm          bnN    nn.BatchNorm1d after a linear, nn.BatchNorm2d after a conv
    layernorm          lnN    nn.LayerNorm over the last dimension
    relu, leakyrelu, gelu, sigmoid, tanh, dropout, flatten: nn.ReLU, ...
    embed(D)           embedN nn.Embedding(V, D): token ids [N, T] -> [N, T, D]
    rnn(H)             rnnN   torch_model.RNN:  nn.RNN(D, H, nonlinearity="tanh", batch_first=True)
    lstm(H)            lstmN  torch_model.LSTM: nn.LSTM(D, H, batch_first=True)
    gru(H)             gruN   torch_model.GRU:  nn.GRU(D, H, batch_first=True)
    posembed           posN   torch_model.PosEmbed: nn.Embedding(T, D) of positions, its first T rows added
    attention(H,...)   attnN  torch_model.Attention: nn.MultiheadAttention(D, H, bias=..., batch_first=True)
                              of x with itself, the causal mask unless causal=0, padding hidden by lengths
                              (attn1.in_proj_weight [3D, D], attn1.in_proj_bias, attn1.out_proj.weight, ...)
    unembed                   torch_model.Unembed: h E^T with E the embed layer's weight (tied: no tensor of
                              its own, as nanoGPT's lm_head.weight = wte.weight)
    last               lastN  torch_model.Last: [N, T, H] -> [N, H], each sequence's step at length - 1
    mean               meanN  torch_model.Mean: [N, T, H] -> [N, H], the mean of each sequence's real steps
    residual(LAYERS)   resN   torch_model.Residual: x + f(x), a Sequential of its LAYERS named as above,
                              numbered along the whole network (res1.conv2.weight, res1.bn1.running_mean)
    repeat(N, LAYERS)         its LAYERS N times in a row, written out (each copy its own modules)

RNN, LSTM and GRU subclass PyTorch's modules, one layer each, and return
only the output (every step's hidden state [N, T, H], not the final state),
so they fit in a Sequential and their tensors keep PyTorch's names
(lstm1.weight_ih_l0, lstm1.weight_hh_l0, lstm1.bias_ih_l0, lstm1.bias_hh_l0).

From Python (with this folder on sys.path):

    import torch
    from torch_model import load_model, load_idx_split

    model = load_model("model.safetensors")     # a torch.nn.Sequential, in eval mode
    print(model.spec, model.input_shape)        # what the checkpoint describes
    images, labels = load_idx_split("data/mnist", "t10k")   # uint8 [N, H, W], [N]
    with torch.no_grad():
        logits = model(model.normalize(images))  # [N, classes]

model.normalize(pixels) applies the checkpoint's input normalisation,
(pixel / 255 - nn.input_mean) / nn.input_std, and shapes the batch as
[N, C, H, W]. build_model(metadata) gives the untrained module for a
metadata dict; read_safetensors(path) gives (tensors, metadata).

A text model (model.vocab = V > 0, model.input_shape = Tokens(V)) takes
token ids, int64 [N, T] with no normalisation, and the real length of each
sequence when the batch is padded (last, mean and attention use them; None: all T):

    model = load_model("names.safetensors")     # embed(16) gru(32) last linear(18)
    ids = torch.tensor([[5, 12, 9, 0], [7, 3, 0, 0]])   # padded after each sequence's end
    with torch.no_grad():
        logits = model(ids, lengths=[3, 2])     # [2, 18]: one score per class
    lm = load_model("shakespeare.safetensors")  # embed(64) lstm(256) linear(65)
    scores = lm(ids)                            # [2, 4, 65]: the next token's scores at every position

The other direction, a model trained in PyTorch to an nn checkpoint:

    from torch_model import save_model
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
    ...                                         # train it
    save_model(net, "model.safetensors", (1, 28, 28), input_mean=0.1307, input_std=0.3081)

save_model writes a torch.nn.Sequential of the layers nn knows (Linear,
Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d/2d, LayerNorm, ReLU, LeakyReLU,
GELU, Sigmoid, Tanh, Dropout, Flatten; for text Embedding, RNN, LSTM and GRU
with one layer, bias and batch_first=True, and torch_model's Last, Mean,
PosEmbed, Attention and Unembed (tied to the Sequential's first layer, its
nn.Embedding); a torch_model.Residual of them as residual(...); nested Sequentials are
flattened) with its state_dict's tensors as they are
(num_batches_tracked stays int64) under nn's names, and the metadata nn
needs; `nn eval`, `nn predict` and `nn serve` then take the file. A module
nn cannot express is refused with a CheckpointError naming it. A text model:

    from torch_model import GRU, LSTM, Last, Tokens, save_model
    net = nn.Sequential(nn.Embedding(65, 64), LSTM(64, 256), nn.Linear(256, 65))          # a language model
    save_model(net, "lm.safetensors", Tokens(65))
    net = nn.Sequential(nn.Embedding(60, 16), GRU(16, 32), Last(), nn.Linear(32, 18))     # a classifier
    save_model(net, "names.safetensors", Tokens(60))
    emb = nn.Embedding(65, 128)                                                            # a GPT, context 64
    net = nn.Sequential(emb, PosEmbed(64, 128), Residual(nn.LayerNorm(128), Attention(128, 4, bias=False)),
                        Residual(nn.LayerNorm(128), nn.Linear(128, 512), nn.GELU(), nn.Linear(512, 128)),
                        nn.LayerNorm(128), Unembed(emb))
    save_model(net, "gpt.safetensors", Tokens(65, 64))

From the command line, the test accuracy computed by PyTorch in eval mode
(image models; a text model is refused, use it from Python):

    /usr/bin/python3 scripts/torch_model.py model.safetensors --data data/mnist

Needs PyTorch and NumPy only; the file is read with json and struct.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CheckpointError", "NNModel", "Tokens", "RNN", "LSTM", "GRU", "Last", "Mean", "PosEmbed", "Attention",
           "Unembed", "Residual", "read_safetensors", "write_safetensors", "parse_spec", "model_spec",
           "build_model", "load_model", "save_model", "module_spec", "load_idx_split"]

BATCH_NORM_EPS = 1e-5
BATCH_NORM_MOMENTUM = 0.1
LAYER_NORM_EPS = 1e-5
MAX_VOCAB = 1 << 21  # NN_MAX_VOCAB
MAX_CONTEXT = 65536  # NN_MAX_CONTEXT


class CheckpointError(Exception):
    """A file that is not an nn checkpoint, or one this module cannot rebuild
    (str() is a one-line message naming the file)."""


# ---- safetensors, with json and struct ----

_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<i2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path):
    """(tensors, metadata): every tensor as a torch tensor by name, except the
    training state named train.*, and the __metadata__ strings."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: {e.strerror or e}") from None
    if len(blob) < 8:
        raise CheckpointError(f"{path}: not a safetensors file (only {len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n < 2 or 8 + n > len(blob):
        raise CheckpointError(f"{path}: not a safetensors file (header length {n} in a file of {len(blob)} bytes)")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file (bad JSON header: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (the header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: __metadata__ is not a map of strings")
    data = memoryview(blob)[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name.startswith("train."):  # optimiser state for resuming training, not the model
            continue
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor '{name}': bad or unsupported header entry {info!r}") from None
        count = math.prod(shape)
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(data) or end - begin != count * dtype.itemsize:
            raise CheckpointError(f"{path}: tensor '{name}': its data_offsets do not fit shape {shape} or the file")
        arr = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        tensors[name] = torch.from_numpy(arr.copy())
        if info["dtype"] == "BF16":  # NumPy has no bfloat16: read as its 16 bits
            tensors[name] = tensors[name].view(torch.bfloat16)
    return tensors, meta


# ---- the layer spec ----

# name -> arguments in positional order: (key, is_int, required, default, lo, hi); a stride
# default of None means "the kernel size". Mirrors src/nn/spec.c.
_KINDS = {
    "linear": [("out", True, True, None, 1, 65536), ("bias", True, False, 1, 0, 1)],
    "conv": [("out", True, True, None, 1, 4096), ("kernel", True, True, None, 1, 32),
             ("stride", True, False, 1, 1, 32), ("padding", True, False, 0, 0, 32)],
    "maxpool": [("kernel", True, True, None, 1, 32), ("stride", True, False, None, 1, 32)],
    "avgpool": [("kernel", True, True, None, 1, 32), ("stride", True, False, None, 1, 32)],
    "batchnorm": [],
    "layernorm": [],
    "relu": [],
    "leakyrelu": [("slope", False, False, 0.01, 0.0, 1.0)],
    "gelu": [],
    "sigmoid": [],
    "tanh": [],
    "dropout": [("p", False, True, None, 0.0, 0.95)],
    "flatten": [],
    "embed": [("dim", True, True, None, 1, 65536)],
    "posembed": [],
    "unembed": [],
    "attention": [("heads", True, True, None, 1, 1024), ("causal", True, False, 1, 0, 1), ("bias", True, False, 1, 0, 1)],
    "rnn": [("hidden", True, True, None, 1, 65536)],
    "lstm": [("hidden", True, True, None, 1, 65536)],
    "gru": [("hidden", True, True, None, 1, 65536)],
    "last": [],
    "mean": [],
    "residual": [],
    "repeat": [("times", True, True, None, 1, 1024)],
}


def _split_layers(spec):
    """Layers run to the next space outside parentheses."""
    layers, depth, start = [], 0, None
    for i, ch in enumerate(spec + " "):
        if start is None:
            if ch.isspace():
                continue
            start = i
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"'{spec[start:i + 1]}': ')' without '('")
        elif ch.isspace() and depth == 0:
            layers.append(spec[start:i])
            start = None
    if depth:
        raise ValueError(f"'{spec[start:start + 40]}': '(' without ')'")
    return layers


# Blocks: kinds that hold layers, written name(LAYERS) or name(ARGS, LAYERS). Mirrors src/layers/block.c.
_BLOCKS = {"residual": "residual(linear(64) relu linear(64))", "repeat": "repeat(2, linear(64) relu)"}
_MAX_DEPTH = 32  # blocks inside blocks, as nn allows


def _parse_args(text, name, defs, items):
    """The argument texts items ("8", "stride=2") of layer text -> {key: value}, defaults filled in."""
    values, seen_key = {}, False
    if items and not defs:
        raise ValueError(f"{text}: {name} takes no arguments")
    for pos, item in enumerate(items):
        key, eq, value = item.partition("=")
        if eq:
            seen_key, key = True, key.strip()
            if key not in [d[0] for d in defs]:
                raise ValueError(f"{text}: {name} has no argument '{key}'")
        else:
            if seen_key:
                raise ValueError(f"{text}: a positional argument after key=value")
            if pos >= len(defs):
                raise ValueError(f"{text}: too many arguments ({name} takes {len(defs)})")
            key, value = defs[pos][0], key
        if key in values:
            raise ValueError(f"{text}: {key} given twice")
        d = next(d for d in defs if d[0] == key)
        try:
            v = float(value.strip())
        except ValueError:
            raise ValueError(f"{text}: {key} '{value.strip()}' is not a number") from None
        if not math.isfinite(v) or (d[1] and v != math.floor(v)) or not d[4] <= v <= d[5]:
            raise ValueError(f"{text}: {key} {value.strip()} is not {'an integer' if d[1] else 'a number'} "
                             f"in [{d[4]:g}, {d[5]:g}]")
        values[key] = int(v) if d[1] else v
    for key, _, required, default, _, _ in defs:
        if key not in values:
            if required:
                raise ValueError(f"{text}: missing argument '{key}'")
            values[key] = values["kernel"] if default is None else default
    return values


def _parse_block(text, name, defs, body, depth):
    """A block's arguments (the first len(defs) items, split at commas outside
    parentheses) and its layers (the rest of body, parsed)."""
    if depth >= _MAX_DEPTH:
        raise ValueError(f"{text}: blocks nested more than {_MAX_DEPTH} deep")
    items, level, start = [], 0, 0
    for i, ch in enumerate(body):
        if len(items) == len(defs):
            break
        level += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and level == 0:
            items.append(body[start:i])
            start = i + 1
    if len(items) < len(defs):
        raise ValueError(f"{text}: expected its arguments, ',' and its layers, e.g. {_BLOCKS[name]}")
    values = _parse_args(text, name, defs, items)
    values["layers"] = _parse_layers(body[start:], depth + 1)
    if not values["layers"]:
        raise ValueError(f"{text}: holds no layers, e.g. {_BLOCKS[name]}")
    return values


def _parse_layers(spec, depth):
    layers = []
    for text in _split_layers(spec):
        name, paren, rest = text.partition("(")
        if name not in _KINDS:
            raise ValueError(f"unknown layer '{name}' (torch_model.py knows {', '.join(_KINDS)})")
        defs = _KINDS[name]
        if name in _BLOCKS:
            if not paren or not rest.endswith(")"):
                raise ValueError(f"{text}: holds layers, written inside its parentheses, e.g. {_BLOCKS[name]}")
            layers.append((name, _parse_block(text, name, defs, rest[:-1], depth)))
            continue
        items = []
        if paren:
            if not rest.endswith(")") or "(" in rest:
                raise ValueError(f"{text}: expected one '(...)' at the end")
            items = rest[:-1].split(",") if rest[:-1].strip() else []
        layers.append((name, _parse_args(text, name, defs, items)))
    return layers


def parse_spec(spec):
    """"conv(8,3,padding=1) relu flatten linear(10)" -> [("conv", {"out": 8, "kernel": 3,
    "stride": 1, "padding": 0}), ("relu", {}), ...]; a block's dict holds its
    layers, parsed: "repeat(2, residual(linear(8) relu))" -> [("repeat", {"times": 2,
    "layers": [("residual", {"layers": [("linear", {"out": 8}), ("relu", {})]})]})].
    ValueError on a bad spec."""
    layers = _parse_layers(spec, 0)
    if not layers:
        raise ValueError("the spec has no layers")
    return layers


def _kinds(layers):
    """The kinds of parsed layers in the order nn's stack holds them: a block,
    then its layers (a repeat's copies written out)."""
    for kind, a in layers:
        yield kind
        for _ in range(a.get("times", 1) if kind in _BLOCKS else 0):
            yield from _kinds(a["layers"])


def _legacy_spec(meta):
    """An earlier release's MLP metadata as (spec, input_shape): flatten
    [dropout(input_dropout)], per hidden width linear(W) [layernorm] act
    [dropout(p)], then linear(classes); a square image when the input width is
    a square (784 = 28 x 28)."""
    arch = meta["nn.arch"]
    if arch not in ("mlp", "linear"):
        raise ValueError(f"unsupported architecture '{arch}' without 'nn.spec'")
    try:
        sizes = [int(s) for s in meta["nn.layers"].split(",")]
    except ValueError:
        raise ValueError(f"metadata 'nn.layers' = '{meta['nn.layers']}' is not a list of widths") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"metadata 'nn.layers' = '{meta['nn.layers']}' needs at least two positive widths")
    act, norm = meta["nn.act"], meta["nn.norm"]
    if act not in ("relu", "gelu", "sigmoid", "tanh"):
        raise ValueError(f"unknown activation '{act}' in metadata")
    if norm not in ("none", "layer"):
        raise ValueError(f"unknown normalisation '{norm}' in metadata")
    dropout, input_dropout = float(meta["nn.dropout"]), float(meta.get("nn.input_dropout", "0"))
    spec = ["flatten"]
    if input_dropout > 0:
        spec.append(f"dropout({input_dropout:g})")
    for width in sizes[1:-1]:
        spec.append(f"linear({width})")
        if norm == "layer":
            spec.append("layernorm")
        spec.append(act)
        if dropout > 0:
            spec.append(f"dropout({dropout:g})")
    spec.append(f"linear({sizes[-1]})")
    side = math.isqrt(sizes[0])
    shape = (1, side, side) if side * side == sizes[0] else (1, 1, sizes[0])
    return " ".join(spec), shape


def _count(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


class Tokens(tuple):
    """The input of a text model: sequences of token ids in [0, vocab) of any
    length (nn.input_shape "tokens(V)"), or of at most context tokens for a
    model with learned positions, posembed ("tokens(V,T)"). Tokens(65).vocab
    == 65; Tokens(65, 64).context == 64 (None without one)."""

    def __new__(cls, vocab, context=None):
        if not _count(vocab, 1, MAX_VOCAB):
            raise ValueError(f"a vocabulary of {vocab!r} tokens (1 to {MAX_VOCAB})")
        if context is not None and not _count(context, 1, MAX_CONTEXT):
            raise ValueError(f"a context of {context!r} tokens (1 to {MAX_CONTEXT})")
        return super().__new__(cls, (vocab,) if context is None else (vocab, context))

    @property
    def vocab(self):
        return self[0]

    @property
    def context(self):
        return self[1] if len(self) > 1 else None

    def __repr__(self):
        return f"Tokens(vocab={self[0]})" if len(self) == 1 else f"Tokens(vocab={self[0]}, context={self[1]})"

    def __str__(self):
        return f"tokens({','.join(map(str, self))})"


def _parse_tokens(text):
    """Tokens(V) from "tokens(V)", Tokens(V, T) from "tokens(V,T)", or None
    when text is not of that form."""
    if not text.startswith("tokens("):
        return None
    parts = text[7:-1].split(",") if text.endswith(")") else []
    numbers = [int(p) for p in parts if p.isdigit()]
    if len(numbers) not in (1, 2) or len(numbers) != len(parts) or not 1 <= numbers[0] <= MAX_VOCAB or \
            (len(numbers) == 2 and not 1 <= numbers[1] <= MAX_CONTEXT):
        raise ValueError(f"metadata 'nn.input_shape' = '{text}' is not tokens(V) or tokens(V,T) with V in "
                         f"1..{MAX_VOCAB} and T in 1..{MAX_CONTEXT}")
    return Tokens(*numbers)


def model_spec(meta):
    """(spec, input) from a checkpoint's metadata, new or legacy form: input
    is (C, H, W) for an image model, Tokens(V) for a text model."""
    if "nn.spec" in meta:
        text = meta.get("nn.input_shape")
        if text is None:
            raise ValueError("missing metadata 'nn.input_shape'")
        tokens = _parse_tokens(text)
        if tokens is not None:
            return meta["nn.spec"], tokens
        try:
            shape = tuple(int(s) for s in text.split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"metadata 'nn.input_shape' = '{text}' is not C,H,W")
        return meta["nn.spec"], shape
    missing = [k for k in ("nn.arch", "nn.layers", "nn.act", "nn.norm", "nn.dropout") if k not in meta]
    if missing:
        raise ValueError(f"missing metadata '{'nn.spec' if 'nn.arch' in missing else missing[0]}' "
                         "(not a checkpoint written by nn?)")
    return _legacy_spec(meta)


# ---- the model ----

def _dims(shape):
    """A shape of one example as nn writes it, T for a sequence's any length."""
    return "[" + ", ".join("T" if d is None else str(d) for d in shape) + "]"


class _OutputOnly:
    """forward(x) -> every step's hidden state [N, T, H], without the final
    state PyTorch's recurrent modules also return, so that the layer fits in a
    Sequential. A subclass of the PyTorch module, not a wrapper around it: the
    state_dict names stay weight_ih_l0, ... with no extra level."""

    def forward(self, x, hx=None):
        return super().forward(x, hx)[0]


class RNN(_OutputOnly, nn.RNN):
    """nn's rnn(H): torch.nn.RNN(D, H, nonlinearity='tanh', batch_first=True)
    returning the output only."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=True)


class LSTM(_OutputOnly, nn.LSTM):
    """nn's lstm(H): torch.nn.LSTM(D, H, batch_first=True) returning the output only."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, num_layers=1, bias=True, batch_first=True)


class GRU(_OutputOnly, nn.GRU):
    """nn's gru(H): torch.nn.GRU(D, H, batch_first=True) returning the output only."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, num_layers=1, bias=True, batch_first=True)


class Last(nn.Module):
    """nn's last: [N, T, H] -> [N, H], each sequence's step at lengths[i] - 1
    (lengths: ints in [1, T], one per sequence), or the last step when
    lengths is None."""

    def forward(self, x, lengths=None):
        if lengths is None:
            return x[:, -1]
        lengths = _lengths(lengths, x)
        return x[torch.arange(x.shape[0], device=x.device), lengths - 1]


class Mean(nn.Module):
    """nn's mean: [N, T, F] -> [N, F], the average of each sequence's first
    lengths[i] steps (its real ones; None: all T)."""

    def forward(self, x, lengths=None):
        if lengths is None:
            return x.mean(1)
        lengths = _lengths(lengths, x)
        real = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return (x * real[..., None].to(x.dtype)).sum(1) / lengths[:, None].to(x.dtype)


def _lengths(lengths, x):
    """lengths as int64 [N], checked to be in [1, T] for x [N, T, ...]."""
    lengths = torch.as_tensor(lengths, dtype=torch.int64, device=x.device)
    if lengths.shape != (x.shape[0],) or bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
        raise ValueError(f"lengths must be {x.shape[0]} ints in [1, {x.shape[1]}]")
    return lengths


class PosEmbed(nn.Embedding):
    """nn's posembed: learned positions, nn.Embedding(context, D), whose
    first T rows are added to x [N, T, D] (T at most the context). Its
    tensor is posN.weight."""

    def forward(self, x):
        if x.shape[1] > self.num_embeddings:
            raise ValueError(f"a sequence of {x.shape[1]} tokens, but the model has learned positions for at most "
                             f"{self.num_embeddings} (its context)")
        return x + self.weight[: x.shape[1]]


class Attention(nn.MultiheadAttention):
    """nn's attention(HEADS[,causal=0][,bias=0]): torch.nn.MultiheadAttention
    (batch_first) of x [N, T, D] with itself, returning the output only; with
    causal=True position i attends to positions 0..i only. lengths (ints in
    [1, T], None: all T) hide the padding keys (key_padding_mask). Its
    tensors are PyTorch's: in_proj_weight [3D, D] (q, k, v stacked),
    in_proj_bias, out_proj.weight, out_proj.bias."""

    def __init__(self, embed_dim, num_heads, causal=True, bias=True):
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True)
        self.causal = bool(causal)

    def forward(self, x, lengths=None):
        T = x.shape[1]
        # Always a mask, all False when not causal: that keeps MultiheadAttention
        # off its inference fast path, which drops the padding positions' rows.
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1) if self.causal else \
            torch.zeros(T, T, dtype=torch.bool, device=x.device)
        pad = None
        if lengths is not None:
            pad = torch.arange(T, device=x.device)[None, :] >= _lengths(lengths, x)[:, None]
        return super().forward(x, x, x, attn_mask=mask, key_padding_mask=pad, need_weights=False)[0]

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"


class Unembed(nn.Module):
    """nn's unembed: scores h E^T over the vocabulary with E the weight of
    the model's nn.Embedding (tied, as nanoGPT's lm_head.weight = wte.weight).
    The embedding is held outside the module tree, so the state_dict has the
    matrix once, as the embedding's (embed1.weight), and its gradient sums
    both uses."""

    def __init__(self, embedding):
        super().__init__()
        self._tied = (embedding,)  # a tuple: not registered as a child

    @property
    def embedding(self):
        return self._tied[0]

    def forward(self, x):
        return F.linear(x, self._tied[0].weight)


# The layers whose forward takes the batch's lengths besides x.
_TAKES_LENGTHS = (Last, Mean, Attention)


def _run(modules, x, lengths):
    """x through modules in order, the lengths given to those that take them."""
    for m in modules:
        x = m(x, lengths) if isinstance(m, _TAKES_LENGTHS) or isinstance(m, Residual) else m(x)
    return x


def _child_name(kind, counts):
    """nn's name of the next layer of kind: fc1, conv2, bn1, ln1, res1, relu3, ...
    numbered per kind along the whole network, blocks' layers included."""
    prefix = {"linear": "fc", "batchnorm": "bn", "layernorm": "ln", "residual": "res", "attention": "attn",
              "posembed": "pos"}.get(kind, kind)
    counts[prefix] = counts.get(prefix, 0) + 1
    return f"{prefix}{counts[prefix]}"


def _build(layers, shape, input_shape, modules, counts, index):
    """Adds the modules of parsed layers to modules (an OrderedDict, by nn's
    names) for an input of shape; returns the output shape. counts numbers the
    layers per kind and index[0] counts the layers of nn's stack (blocks too),
    both along the whole network."""
    for kind, a in layers:
        shape = _layer(kind, a, shape, input_shape, modules, counts, index)
    return shape


def _block(kind, a, shape, where, input_shape, modules, counts, index):
    """residual: a Residual module of its layers; repeat: its layers' copies
    written out into modules, each with its own tensors."""
    if kind == "repeat":
        for _ in range(a["times"]):
            shape = _build(a["layers"], shape, input_shape, modules, counts, index)
        return shape
    name = _child_name(kind, counts)
    inner = OrderedDict()
    out = _build(a["layers"], shape, input_shape, inner, counts, index)
    if out != shape:
        raise ValueError(f"{where}: its layers map {_dims(shape)} to {_dims(out)}; a residual block must keep the shape")
    modules[name] = Residual(inner)
    return shape


def _layer(kind, a, shape, input_shape, modules, counts, index):
    """The module of one parsed layer (a block's: _block) into modules; returns its output shape."""
    text = isinstance(input_shape, Tokens)
    i = index[0]
    index[0] += 1
    where = f"layer {i + 1}, {kind}"
    image = len(shape) == 3
    seq = len(shape) == 2 and shape[0] is None

    if text and i == 0 and kind != "embed":
        raise ValueError(f"{where}: a text model starts with embed(D), which turns token ids into vectors")
    if kind in _BLOCKS:
        return _block(kind, a, shape, where, input_shape, modules, counts, index)
    if kind == "embed":
        if not text or i != 0:
            raise ValueError(f"{where}: takes token ids, so it comes first in a text model")
        m = nn.Embedding(input_shape.vocab, a["dim"])
        counts["@embedding"] = m  # what unembed ties to
        shape = (None, a["dim"])
    elif kind == "posembed":
        if not seq:
            raise ValueError(f"{where}: adds positions to a sequence [T, D], but its input is {_dims(shape)}")
        if not text or input_shape.context is None:
            raise ValueError(f"{where}: needs the model's context, the longest sequence it takes "
                             "(input_shape Tokens(V, T))")
        m = PosEmbed(input_shape.context, shape[1])
    elif kind == "unembed":
        embedding = counts.get("@embedding")
        if embedding is None:
            raise ValueError(f"{where}: uses the matrix of a text model's first layer, embed(D)")
        if not seq:
            raise ValueError(f"{where}: scores a sequence [T, D], but its input is {_dims(shape)}")
        if shape[1] != embedding.embedding_dim:
            raise ValueError(f"{where}: its input has {shape[1]} features, but the embedding's vectors have "
                             f"{embedding.embedding_dim}")
        m = Unembed(embedding)
        shape = (None, embedding.num_embeddings)
    elif kind == "attention":
        if not seq:
            raise ValueError(f"{where}: attends over a sequence [T, D], but its input is {_dims(shape)}")
        if shape[1] % a["heads"]:
            raise ValueError(f"{where}: {shape[1]} features do not split into {a['heads']} heads")
        m = Attention(shape[1], a["heads"], causal=a["causal"], bias=bool(a["bias"]))
    elif kind == "mean":
        if not seq:
            raise ValueError(f"{where}: takes a sequence [T, H], but its input is {_dims(shape)}")
        m = Mean()
        shape = (shape[1],)
    elif kind in ("rnn", "lstm", "gru"):
        if not seq:
            raise ValueError(f"{where}: runs over a sequence [T, D], but its input is {_dims(shape)}")
        m = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind](shape[1], a["hidden"])
        shape = (None, a["hidden"])
    elif kind == "last":
        if not seq:
            raise ValueError(f"{where}: takes a sequence [T, H], but its input is {_dims(shape)}")
        m = Last()
        shape = (shape[1],)
    elif kind in ("conv", "maxpool", "avgpool"):
        if not image:
            raise ValueError(f"{where}: needs an image [C, H, W] but gets {_dims(shape)}")
        pad = a.get("padding", 0)
        c, h, w = shape
        if min(h, w) + 2 * pad < a["kernel"]:
            raise ValueError(f"{where}: kernel {a['kernel']} is larger than its input {list(shape)}")
        h, w = ((d + 2 * pad - a["kernel"]) // a["stride"] + 1 for d in (h, w))
        if kind == "conv":
            m = nn.Conv2d(c, a["out"], a["kernel"], stride=a["stride"], padding=pad)
            c = a["out"]
        elif kind == "maxpool":
            m = nn.MaxPool2d(a["kernel"], a["stride"])
        else:
            m = nn.AvgPool2d(a["kernel"], a["stride"])
        shape = (c, h, w)
    elif kind == "linear":
        if image:
            raise ValueError(f"{where}: its input is {list(shape)}; add flatten before a linear layer")
        m = nn.Linear(shape[-1], a["out"], bias=bool(a["bias"]))  # on the last dimension of [T, F] too
        shape = shape[:-1] + (a["out"],)
    elif kind == "batchnorm":
        if seq:
            raise ValueError(f"{where}: does not normalise a sequence {_dims(shape)}; use layernorm")
        bn = nn.BatchNorm2d if image else nn.BatchNorm1d
        m = bn(shape[0], eps=BATCH_NORM_EPS, momentum=BATCH_NORM_MOMENTUM)
    elif kind == "layernorm":
        if image:
            raise ValueError(f"{where}: layernorm normalises features, but its input is {list(shape)}")
        m = nn.LayerNorm(shape[-1], eps=LAYER_NORM_EPS)
    elif kind == "flatten":
        if seq:
            raise ValueError(f"{where}: a sequence {_dims(shape)} has no fixed size to flatten; use last")
        m = nn.Flatten(1)  # torch.flatten(x, 1)
        shape = (math.prod(shape),)
    elif kind == "relu":
        m = nn.ReLU()
    elif kind == "leakyrelu":
        m = nn.LeakyReLU(a["slope"])
    elif kind == "gelu":
        m = nn.GELU()  # the exact erf form
    elif kind == "sigmoid":
        m = nn.Sigmoid()
    elif kind == "tanh":
        m = nn.Tanh()
    elif kind == "dropout":
        m = nn.Dropout(a["p"])
    else:  # parse_spec knows no other kind
        raise AssertionError(kind)
    modules[_child_name(kind, counts)] = m
    return shape


class Residual(nn.Sequential):
    """nn's residual(LAYERS): x + f(x), f its layers in order. A Sequential
    whose children are named as nn names them, numbered along the whole
    network (res1 holding conv2, bn1, relu2, conv3, bn2: its tensors are
    res1.conv2.weight, res1.bn1.running_mean, ...). Its layers must keep the
    shape of x."""

    def forward(self, x, lengths=None):
        return x + _run(self, x, lengths)


class NNModel(nn.Sequential):
    """The layer stack as a torch.nn.Sequential whose children are named as
    nn names the tensors (fc1, conv1, bn1, ln1, embed1, lstm1, ...; relu1,
    maxpool1, last1, ... for the layers without parameters), so its
    state_dict matches the checkpoint's.

    input_shape is (C, H, W) for an image model, or Tokens(V) for a text
    model, whose input is token ids [N, T] and whose layers act on sequences
    [N, T, F] (linear and layernorm on the last dimension) until last takes
    each sequence's last step; such a model ends in [N, classes] or, scoring
    every position (a language model), in [N, T, classes]."""

    def __init__(self, spec, input_shape, input_mean=0.0, input_std=1.0):
        modules, counts = OrderedDict(), {}
        text = isinstance(input_shape, Tokens)
        # Of one example: (C, H, W); (F,) after flatten; for text (None,) of
        # token ids, then (None, F) for a sequence of any length T.
        shape = (None,) if text else tuple(input_shape)
        shape = _build(parse_spec(spec), shape, input_shape, modules, counts, [0])
        if not (len(shape) == 1 and shape[0] is not None) and not (text and len(shape) == 2):
            raise ValueError(f"the model ends in {_dims(shape)}, not in class scores")
        super().__init__(modules)
        self.spec, self.classes = spec, shape[-1]
        self.input_shape = input_shape if text else tuple(input_shape)
        self.vocab = input_shape.vocab if text else 0  # as nn_model.vocab
        self.input_mean, self.input_std = float(input_mean), float(input_std)

    def forward(self, x, lengths=None):
        """An image model: x [N, C, H, W] (or [N, C*H*W]), already normalised
        -> logits [N, classes].
        A text model: x token ids [N, T] (ints in [0, vocab), no
        normalisation), lengths each sequence's real length (ints in [1, T];
        the rest is padding; None: all T) -> [N, classes], or [N, T, classes]
        for a model that scores every position."""
        if not self.vocab:
            if lengths is not None:
                raise ValueError("lengths are for a text model")
            if x.dim() == 2:
                x = x.reshape(x.shape[0], *self.input_shape)
            return super().forward(x)
        if x.dim() != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"a text model takes token ids [N, T] (ints), not {x.dtype} of shape {list(x.shape)}")
        x = x.to(torch.int64)
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab):
            raise ValueError(f"token ids must be in [0, {self.vocab})")
        return _run(self, x, lengths)

    def normalize(self, pixels):
        """uint8 pixels (a NumPy array or tensor, [N, H, W], [N, C, H, W] or
        [N, C*H*W]) -> the float32 batch [N, C, H, W] the model was trained on.
        A text model takes token ids as they are: this returns them as int64."""
        if self.vocab:
            return torch.as_tensor(np.asarray(pixels), dtype=torch.int64)
        if isinstance(pixels, torch.Tensor):
            x = pixels.to(torch.float32)
        else:
            x = torch.from_numpy(np.array(pixels, dtype=np.float32))
        x = (x / 255.0 - self.input_mean) / self.input_std
        return x.reshape(x.shape[0], *self.input_shape)

    def extra_repr(self):
        return f"spec='{self.spec}', input_shape={self.input_shape!r}"


def _float_meta(meta, key):
    if key not in meta:
        raise ValueError(f"missing metadata '{key}' (not a checkpoint written by nn?)")
    try:
        v = float(meta[key])
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"metadata '{key}' = '{meta[key]}' is not a number")
    return v


def build_model(meta):
    """The untrained NNModel a checkpoint's metadata describes (ValueError if
    it cannot be built)."""
    spec, shape = model_spec(meta)
    mean, std = _float_meta(meta, "nn.input_mean"), _float_meta(meta, "nn.input_std")
    if std <= 0:
        raise ValueError(f"metadata 'nn.input_std' = '{meta['nn.input_std']}' is not positive")
    try:
        return NNModel(spec, shape, mean, std)
    except ValueError as e:
        raise ValueError(f"metadata 'nn.spec': {e}") from None


def load_model(path):
    """The model of an nn checkpoint with its weights (loaded strict=True), in
    eval mode. Raises CheckpointError with a one-line message."""
    tensors, meta = read_safetensors(path)
    try:
        model = build_model(meta)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    want = model.state_dict()
    for name, t in want.items():
        if name not in tensors:
            raise CheckpointError(f"{path}: no tensor named '{name}' (the spec '{model.spec}' needs one)")
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise CheckpointError(f"{path}: tensor '{name}' has shape {list(tensors[name].shape)}, "
                                  f"the spec '{model.spec}' needs {list(t.shape)}")
        tensors[name] = tensors[name].to(t.dtype)  # num_batches_tracked: stored as F32, int64 in PyTorch
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise CheckpointError(f"{path}: tensor '{extra[0]}' is not part of the spec '{model.spec}'")
    model.load_state_dict(tensors, strict=True)
    return model.eval()


# ---- the other direction: a PyTorch model to an nn checkpoint ----

_TORCH_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                 torch.bool: "BOOL"}


def write_safetensors(path, tensors, metadata):
    """Writes tensors (name -> torch tensor, in this order, dtypes kept) and
    string metadata as a safetensors file, as nn does: the header padded with
    spaces to 8-byte alignment, raw little-endian data, written to a temporary
    file and renamed over path."""
    header, blobs, pos = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in _TORCH_DTYPES:
            raise CheckpointError(f"{path}: tensor '{name}' has dtype {t.dtype}, which safetensors has no name for")
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: its bits as int16
            raw = t.view(torch.int16).numpy()
        else:
            raw = t.numpy()
        raw = raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _TORCH_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for raw in blobs:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CheckpointError(f"{path}: {e.strerror or e}") from None


def _square(value):
    """An int, or a pair of equal ints, as one int; None if it is neither."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(v):
    """A float as the spec writes it: the shortest text that reads back as v."""
    return repr(float(v))


def _first_leaf(module):
    """The first layer of a Sequential, nested Sequentials and Residuals entered; None if it has none."""
    for child in module.children():
        if type(child) is nn.Sequential or isinstance(child, Residual):
            leaf = _first_leaf(child)
            if leaf is not None:
                return leaf
        else:
            return child
    return None


def _module_layers(module, qual_prefix, nn_prefix, shape, input_shape, spec, named, counts):
    """The layers of a Sequential (nested Sequentials flattened, a Residual
    as a residual block) onto spec and named, checked against shape; returns
    the output shape. nn_prefix names the block they are in ("res1.")."""
    for child_name, m in module.named_children():
        qual = f"{qual_prefix}{child_name}"
        if type(m) is nn.Sequential:
            shape = _module_layers(m, qual + ".", nn_prefix, shape, input_shape, spec, named, counts)
        elif isinstance(m, Residual):
            where = f"layer '{qual}' (Residual)"
            if shape == (None,):
                raise CheckpointError(f"{where}: a text model starts with nn.Embedding, which turns token ids "
                                      "into vectors")
            inner = []
            out = _module_layers(m, qual + ".", nn_prefix + _child_name("residual", counts) + ".", shape,
                                 input_shape, inner, named, counts)
            if not inner:
                raise CheckpointError(f"{where}: holds no layers")
            if out != shape:
                raise CheckpointError(f"{where}: its layers map {_dims(shape)} to {_dims(out)}; a residual block "
                                      "must keep the shape")
            spec.append(f"residual({' '.join(inner)})")
        else:
            shape = _module_leaf(qual, m, nn_prefix, shape, input_shape, spec, named, counts)
    return shape


def _is_token_table(m):
    """An nn.Embedding of token ids (PosEmbed is one too, of positions)."""
    return isinstance(m, nn.Embedding) and not isinstance(m, PosEmbed)


def _module_leaf(qual, m, nn_prefix, shape, input_shape, spec, named, counts):
    """One layer module onto spec (and named, when it has tensors); returns its output shape."""
    text_model = isinstance(input_shape, Tokens)
    where = f"layer '{qual}' ({m!r})"
    image = len(shape) == 3
    seq = len(shape) == 2 and shape[0] is None

    def refuse(why):
        raise CheckpointError(f"{where}: {why}")

    if shape == (None,) and not _is_token_table(m):
        refuse("a text model starts with nn.Embedding, which turns token ids into vectors")
    kind, text = None, None
    if _is_token_table(m):
        if shape != (None,):
            refuse("nn.Embedding takes token ids: it comes first, and only in a text model "
                   "(input_shape Tokens(V))")
        if m.num_embeddings != input_shape.vocab:
            refuse(f"num_embeddings {m.num_embeddings}, but the vocabulary has {input_shape.vocab} tokens")
        if m.max_norm is not None:
            refuse("nn's embed has no max_norm")
        # padding_idx and scale_grad_by_freq change training only; the lookup is the same.
        kind, text, shape = "embed", f"embed({m.embedding_dim})", (None, m.embedding_dim)
    elif isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)):
        name = "lstm" if isinstance(m, nn.LSTM) else "gru" if isinstance(m, nn.GRU) else "rnn"
        if m.num_layers != 1 or not m.bias or not m.batch_first or m.bidirectional:
            refuse(f"nn's {name} is one layer, bias=True, batch_first=True, not bidirectional "
                   "(stack layers as separate modules)")
        if name == "rnn" and m.nonlinearity != "tanh":
            refuse("nn's rnn uses tanh")
        if getattr(m, "proj_size", 0):
            refuse("nn's lstm has no projection (proj_size=0)")
        if not seq:
            refuse(f"runs over a sequence [T, D], but its input is {_dims(shape)}")
        if m.input_size != shape[1]:
            refuse(f"input_size {m.input_size}, but {shape[1]} features reach it")
        kind, text, shape = name, f"{name}({m.hidden_size})", (None, m.hidden_size)
    elif isinstance(m, Last):
        if not seq:
            refuse(f"takes a sequence [T, H], but its input is {_dims(shape)}")
        kind, text, shape = "last", "last", (shape[1],)
    elif isinstance(m, Mean):
        if not seq:
            refuse(f"takes a sequence [T, H], but its input is {_dims(shape)}")
        kind, text, shape = "mean", "mean", (shape[1],)
    elif isinstance(m, PosEmbed):
        if not seq:
            refuse(f"adds positions to a sequence [T, D], but its input is {_dims(shape)}")
        if m.num_embeddings != input_shape.context:
            refuse(f"{m.num_embeddings} positions, but the model's context (input_shape Tokens(V, T)) is "
                   f"{input_shape.context}")
        if m.embedding_dim != shape[1] or m.max_norm is not None:
            refuse(f"nn's posembed has {shape[1]} features here and no max_norm")
        kind, text = "posembed", "posembed"
    elif isinstance(m, Attention):
        if not seq:
            refuse(f"attends over a sequence [T, D], but its input is {_dims(shape)}")
        if m.embed_dim != shape[1] or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn or \
                m.dropout or not m.batch_first:
            refuse(f"nn's attention is over the {shape[1]} features that reach it, one in_proj_weight, no bias_k or "
                   "bias_v, no add_zero_attn, no dropout, batch_first")
        args = [str(m.num_heads)] + ([] if m.causal else ["causal=0"]) + ([] if m.in_proj_bias is not None else ["bias=0"])
        if (m.in_proj_bias is None) != (m.out_proj.bias is None):
            refuse("nn's attention has both biases or neither")
        kind, text = "attention", f"attention({','.join(args)})"
    elif isinstance(m, Unembed):
        if not seq or not text_model or m.embedding is not counts.get("@first"):
            refuse("unembed ties to the model's first layer, its nn.Embedding")
        if shape[1] != m.embedding.embedding_dim:
            refuse(f"{shape[1]} features reach it, but the embedding's vectors have {m.embedding.embedding_dim}")
        kind, text, shape = "unembed", "unembed", (None, m.embedding.num_embeddings)
    elif isinstance(m, nn.Linear):
        if image:
            refuse(f"its input is {list(shape)}; add nn.Flatten() before it")
        if m.in_features != shape[-1]:
            refuse(f"in_features {m.in_features}, but {shape[-1]} features reach it")
        kind, text = "linear", f"linear({m.out_features})" if m.bias is not None else f"linear({m.out_features},bias=0)"
        shape = shape[:-1] + (m.out_features,)
    elif isinstance(m, nn.Conv2d):
        k, st, pad = _square(m.kernel_size), _square(m.stride), _square(m.padding)
        if k is None or st is None or pad is None:
            refuse("nn's conv has a square kernel, stride and padding (ints)")
        if _square(m.dilation) != 1 or m.groups != 1 or m.padding_mode != "zeros" or m.bias is None:
            refuse("nn's conv has dilation 1, groups 1, zero padding and a bias")
        if not image:
            refuse(f"needs an image [C, H, W] but gets {list(shape)}")
        if m.in_channels != shape[0]:
            refuse(f"in_channels {m.in_channels}, but {shape[0]} channels reach it")
        c, h, w = shape
        if min(h, w) + 2 * pad < k:
            refuse(f"kernel {k} is larger than its input {list(shape)}")
        h, w = ((d + 2 * pad - k) // st + 1 for d in (h, w))
        args = [str(m.out_channels), str(k)] + ([f"stride={st}"] if st != 1 else []) + \
            ([f"padding={pad}"] if pad else [])
        kind, text, shape = "conv", f"conv({','.join(args)})", (m.out_channels, h, w)
    elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        name = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
        k = _square(m.kernel_size)
        st = k if m.stride is None else _square(m.stride)
        if k is None or st is None:
            refuse(f"nn's {name} has a square kernel and stride (ints)")
        if _square(m.padding) != 0 or m.ceil_mode:
            refuse(f"nn's {name} has no padding and ceil_mode=False")
        if name == "maxpool" and (_square(m.dilation) != 1 or m.return_indices):
            refuse("nn's maxpool has dilation 1 and returns no indices")
        if name == "avgpool" and m.divisor_override is not None:
            refuse("nn's avgpool has no divisor_override")
        if not image:
            refuse(f"needs an image [C, H, W] but gets {list(shape)}")
        c, h, w = shape
        if min(h, w) < k:
            refuse(f"kernel {k} is larger than its input {list(shape)}")
        h, w = ((d - k) // st + 1 for d in (h, w))
        kind, text, shape = name, f"{name}({k})" if st == k else f"{name}({k},stride={st})", (c, h, w)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if seq:
            refuse(f"nn's batchnorm does not normalise a sequence {_dims(shape)}; use nn.LayerNorm")
        if not m.affine or not m.track_running_stats:
            refuse("nn's batchnorm has affine=True and track_running_stats=True")
        if m.eps != BATCH_NORM_EPS:
            refuse(f"eps {m.eps:g}; nn's batchnorm uses {BATCH_NORM_EPS:g}")
        if isinstance(m, nn.BatchNorm2d) != image:
            refuse(f"its input is {list(shape)}: BatchNorm2d follows a conv, BatchNorm1d a linear")
        if m.num_features != shape[0]:
            refuse(f"num_features {m.num_features}, but {shape[0]} reach it")
        kind, text = "batchnorm", "batchnorm"  # momentum is for training only; nn trains on with 0.1
    elif isinstance(m, nn.LayerNorm):
        if image or tuple(m.normalized_shape) != (shape[-1],):
            refuse(f"nn's layernorm normalises the last dimension of a flat input or a sequence; here "
                   f"{_dims(shape)} reach it")
        if not m.elementwise_affine or getattr(m, "bias", True) is None:
            refuse("nn's layernorm has a weight and a bias")
        if m.eps != LAYER_NORM_EPS:
            refuse(f"eps {m.eps:g}; nn's layernorm uses {LAYER_NORM_EPS:g}")
        kind, text = "layernorm", "layernorm"
    elif isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            refuse("nn's flatten is Flatten(1, -1)")
        if seq:
            refuse(f"a sequence {_dims(shape)} has no fixed size to flatten; use torch_model.Last()")
        kind, text, shape = "flatten", "flatten", (math.prod(shape),)
    elif type(m) is nn.ReLU:
        kind = text = "relu"
    elif type(m) is nn.LeakyReLU:
        if not 0.0 <= m.negative_slope <= 1.0:
            refuse("nn's leakyrelu slope is in [0, 1]")
        kind, text = "leakyrelu", f"leakyrelu({_num(m.negative_slope)})"
    elif type(m) is nn.GELU:
        if m.approximate != "none":
            refuse("nn's gelu is the exact erf form (approximate='none')")
        kind = text = "gelu"
    elif type(m) is nn.Sigmoid:
        kind = text = "sigmoid"
    elif type(m) is nn.Tanh:
        kind = text = "tanh"
    elif type(m) is nn.Dropout:
        if not 0.0 <= m.p <= 0.95:
            refuse("nn's dropout p is in [0, 0.95]")
        kind, text = "dropout", f"dropout({_num(m.p)})"
    else:
        refuse("nn has no such layer (it knows Linear, Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d/2d, "
               "LayerNorm, ReLU, LeakyReLU, GELU, Sigmoid, Tanh, Dropout, Flatten, Embedding, "
               "RNN, LSTM, GRU and torch_model's Last, Mean, PosEmbed, Attention, Unembed and Residual)")
    spec.append(text)
    name = nn_prefix + _child_name(kind, counts)
    if kind in ("linear", "conv", "batchnorm", "layernorm", "embed", "posembed", "attention", "rnn", "lstm", "gru"):
        named.append((name, m))
    return shape


def module_spec(module, input_shape):
    """(spec, [(nn name, module)] of the layers with tensors, output shape) for
    a torch.nn.Sequential of the layers nn knows (torch_model.Residual for a
    residual block), checked layer by layer against input_shape: (C, H, W),
    or Tokens(V) for a text model. Raises CheckpointError naming the first
    module nn cannot express."""
    if not isinstance(module, nn.Sequential) or isinstance(module, Residual):
        raise CheckpointError(f"save_model needs a torch.nn.Sequential, not {type(module).__name__}")
    text_model = isinstance(input_shape, Tokens)
    shape = (None,) if text_model else tuple(input_shape)  # as in NNModel: (None, F) is a sequence [T, F]
    spec, named, counts = [], [], {}
    first = _first_leaf(module)
    counts["@first"] = first  # what an Unembed must be tied to
    if first is None:
        raise CheckpointError("the Sequential has no layers")
    # A network that starts on flat features ([N, C*H*W]) reads the image flattened, as nn does.
    if not text_model and isinstance(first, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm)):
        spec.append("flatten")
        shape = (math.prod(shape),)
    shape = _module_layers(module, "", "", shape, input_shape, spec, named, counts)
    if not (len(shape) == 1 and shape[0] is not None) and not (text_model and len(shape) == 2):
        raise CheckpointError(f"the model ends in {_dims(shape)}, not in class scores; end with a Linear layer")
    return " ".join(spec), named, shape


def _check_input_shape(input_shape):
    """(C, H, W) from (C, H, W), (H, W) (one channel) or F (flat features);
    Tokens(V) from Tokens(V) or "tokens(V)"."""
    if isinstance(input_shape, Tokens):
        return input_shape
    if isinstance(input_shape, str):
        try:
            tokens = _parse_tokens(input_shape)
        except ValueError:
            tokens = None
        if tokens is None:
            raise CheckpointError(f"input_shape {input_shape!r} is not 'tokens(V)' with V in 1..{MAX_VOCAB}")
        return tokens
    shape = (1, 1, input_shape) if isinstance(input_shape, int) else tuple(input_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 4096 for d in shape):
        raise CheckpointError(f"input_shape {input_shape!r} is not (C, H, W) of one example (ints in [1, 4096])")
    return shape


def save_model(module, path, input_shape, input_mean=None, input_std=None, metadata=None):
    """Writes a torch.nn.Sequential trained in PyTorch as an nn checkpoint.

    input_shape is (C, H, W) of one example ((H, W) means one channel; an int F
    means F flat features); input_mean and input_std are the normalisation the
    model was trained with, x = (pixel / 255 - input_mean) / input_std, which
    `nn predict` and `nn serve` apply to raw images.

    For a text model input_shape is Tokens(V) (or "tokens(V)"): token ids in
    [0, V), no normalisation (input_mean and input_std are left out, or 0 and
    1). The Sequential starts with nn.Embedding(V, D); recurrent layers are
    torch.nn.RNN (tanh), LSTM or GRU with one layer, bias and batch_first=True
    (torch_model's RNN, LSTM and GRU are those returning only the output, so
    the Sequential runs in PyTorch as it is); torch_model.Last() takes each
    sequence's last step; Linear and LayerNorm act on the last dimension.

    The tensors are the state_dict's, dtypes unchanged, renamed to nn's names
    (fc1, conv1, bn1, ln1, embed1, lstm1, ..., numbered per kind along the
    network; a Residual's layers under its name, res1.conv2.weight); the metadata is nn.arch, nn.spec, nn.input_shape,
    nn.input_mean, nn.input_std and any extra string pairs given. Returns the
    spec. Raises CheckpointError naming what nn cannot express."""
    shape = _check_input_shape(input_shape)
    text_model = isinstance(shape, Tokens)
    if text_model:
        if input_mean not in (None, 0, 0.0) or input_std not in (None, 1, 1.0):
            raise CheckpointError("a text model takes token ids: no input_mean or input_std (or 0 and 1)")
        input_mean, input_std = 0.0, 1.0
    elif input_mean is None or input_std is None:
        raise CheckpointError("save_model needs input_mean and input_std for an image model")
    mean, std = float(input_mean), float(input_std)
    if not math.isfinite(mean):
        raise CheckpointError(f"input_mean {input_mean!r} is not a finite number")
    if not (math.isfinite(std) and std > 0):
        raise CheckpointError(f"input_std {input_std!r} is not a positive number")
    spec, named, _ = module_spec(module, shape)
    tensors = OrderedDict()
    for nn_name, m in named:
        for key, t in m.state_dict().items():
            tensors[f"{nn_name}.{key}"] = t
    # The names and shapes must be those the loader side builds from the spec.
    want = NNModel(spec, shape, mean, std).state_dict()
    if list(want) != list(tensors) or any(tuple(want[k].shape) != tuple(tensors[k].shape) for k in want):
        raise CheckpointError(f"{path}: the tensors of {type(module).__name__} do not match the spec '{spec}' "
                              f"({sorted(set(want) ^ set(tensors)) or 'shapes differ'})")
    kinds = list(_kinds(parse_spec(spec)))
    arch = "text" if text_model else "cnn" if {"conv", "maxpool", "avgpool"} & set(kinds) else "linear" if kinds.count("linear") == 1 else "mlp"
    meta = OrderedDict([("nn.arch", arch), ("nn.spec", spec), ("nn.input_shape", str(shape) if text_model else ",".join(map(str, shape))),
                        ("nn.input_mean", repr(mean)), ("nn.input_std", repr(std))])
    for k, v in (metadata or {}).items():
        if k in meta:
            raise CheckpointError(f"metadata '{k}' is written by save_model itself")
        meta[k] = str(v)
    write_safetensors(path, tensors, meta)
    return spec


# ---- MNIST-style IDX files ----

def _read_idx(path, magic, ndim):
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: bad gzip data ({e})") from None
    if len(blob) < 4 + 4 * ndim or struct.unpack(">I", blob[:4])[0] != magic:
        raise ValueError(f"{path}: not an IDX file of {'images' if ndim == 3 else 'labels'} (magic {magic} expected)")
    dims = struct.unpack(f">{ndim}I", blob[4 : 4 + 4 * ndim])
    body = blob[4 + 4 * ndim :]
    if len(body) != math.prod(dims):
        raise ValueError(f"{path}: {len(body)} bytes of data, the header says {math.prod(dims)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_idx_split(data_dir, split="t10k"):
    """(images uint8 [N, H, W], labels int64 [N]) of split "train" or "t10k"
    in data_dir, each file raw or gzipped (the raw name is tried first)."""
    arrays = []
    for kind, magic, ndim in (("images-idx3-ubyte", 2051, 3), ("labels-idx1-ubyte", 2049, 1)):
        name = f"{split}-{kind}"
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            path += ".gz"
        if not os.path.exists(path):
            raise ValueError(f"{os.path.join(data_dir, name)}: not found (nor {name}.gz)")
        arrays.append(_read_idx(path, magic, ndim))
    images, labels = arrays
    if len(images) != len(labels):
        raise ValueError(f"{data_dir}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


# ---- command line ----

def main(argv=None):
    prog = "torch_model.py"
    parser = argparse.ArgumentParser(
        prog=prog, description="Rebuilds an nn checkpoint as a PyTorch model from its metadata, loads its "
        "weights (strict=True) and prints its test accuracy computed by PyTorch in eval mode.",
        epilog="From Python: from torch_model import load_model; model = load_model(FILE).")
    parser.add_argument("checkpoint", metavar="FILE", help="a .safetensors checkpoint written by nn")
    parser.add_argument("--data", metavar="DIR", default="data/mnist",
                        help="folder with the t10k IDX files, raw or .gz (default: data/mnist)")
    parser.add_argument("--limit", metavar="N", type=int, default=0, help="only the first N test images")
    parser.add_argument("--batch-size", metavar="N", type=int, default=1000, help="images per forward pass (1000)")
    parser.add_argument("--print-model", action="store_true", help="print the PyTorch module first")
    args = parser.parse_args(argv)
    if args.limit < 0 or args.batch_size < 1:
        parser.error("--limit must be >= 0 and --batch-size >= 1")
    try:
        model = load_model(args.checkpoint)
        if model.vocab:
            raise ValueError(f"{args.checkpoint}: a text model ('{model.spec}' over {model.input_shape}); the command "
                             "line evaluates image models on MNIST's test images. From Python: "
                             "model = load_model(FILE); logits = model(ids, lengths)")
        if not os.path.isdir(args.data):
            raise ValueError(f"{args.data}: no such data folder")
        images, labels = load_idx_split(args.data, "t10k")
    except (CheckpointError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{prog}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    if tuple(images.shape[1:]) != model.input_shape[1:] or model.input_shape[0] != 1:
        print(f"{prog}: error: {args.data}: images of {images.shape[1]}x{images.shape[2]} do not fit the model's "
              f"input {list(model.input_shape)}", file=sys.stderr)
        return 1
    if args.print_model:
        print(model)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), args.batch_size):
            logits = model(model.normalize(images[i : i + args.batch_size]))
            correct += int((logits.argmax(1) == torch.from_numpy(labels[i : i + args.batch_size])).sum())
    n = len(images)
    print(f"test accuracy {100.0 * correct / max(n, 1):.2f}% ({correct} of {n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
