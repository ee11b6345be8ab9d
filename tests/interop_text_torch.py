"""PyTorch interop of nn's text models (scripts/torch_model.py), both ways.

  interop_text_torch.py compare CHECKPOINT LOGITS.f32 IDS.i32 LENGTHS.i32|- N T
      Rebuilds a text model written by nn from its metadata alone, loads its
      weights with strict=True, runs the N sequences of T token ids (raw
      little-endian int32, N x T; LENGTHS: N int32 real lengths of a padded
      batch, or - for all T) through it in eval mode and compares the logits
      with the ones nn computed (raw little-endian float32, N x classes or
      N x T x classes). Prints one line with the numbers; exits 0 when the
      largest difference is at most 1e-4 x max(1, max |logit|) and every
      prediction (per sequence, or per position) agrees, else 1.

  interop_text_torch.py save OUTDIR V
      The other direction: builds seeded PyTorch text models from
      torch_model's modules (nn.Embedding, LSTM, GRU, RNN, Last, Linear,
      LayerNorm, ...), writes each with save_model and leaves for nn:
        OUTDIR/NAME.safetensors, OUTDIR/NAME.ids.i32 (N x T), OUTDIR/NAME.lengths.i32 (N),
        OUTDIR/NAME.logits.f32 (PyTorch's logits, eval mode)
      and prints one line per model: "NAME N T CLASSES SPEC".

Needs Debian's python3-torch (NumPy, not the safetensors package)."""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch_model import GRU, LSTM, RNN, CheckpointError, Last, Tokens, load_model, save_model  # noqa: E402

TOLERANCE = 1e-4


def compare(ckpt, logits_path, ids_path, lengths_path, n, t):
    try:
        model = load_model(ckpt)
        if not model.vocab:
            raise CheckpointError(f"{ckpt}: not a text model (input {model.input_shape})")
        ids = np.fromfile(ids_path, dtype="<i4")
        if ids.size != n * t:
            raise ValueError(f"{ids_path}: {ids.size} ids, expected {n} x {t}")
        lengths = None
        if lengths_path != "-":
            lengths = np.fromfile(lengths_path, dtype="<i4").astype(np.int64)
            if lengths.size != n:
                raise ValueError(f"{lengths_path}: {lengths.size} lengths, expected {n}")
    except (CheckpointError, ValueError, OSError) as e:
        print(f"interop: error: {e}", file=sys.stderr)
        return 1
    torch.manual_seed(0)  # nothing should draw in eval mode
    with torch.no_grad():
        x = torch.from_numpy(ids.astype(np.int64).reshape(n, t))
        ours = model(x, None if lengths is None else torch.from_numpy(lengths)).numpy()
    theirs = np.fromfile(logits_path, dtype="<f4")
    if theirs.size != ours.size:
        print(f"interop: error: {logits_path} holds {theirs.size} floats, expected {list(ours.shape)}",
              file=sys.stderr)
        return 1
    theirs = theirs.reshape(ours.shape)
    err = float(np.abs(ours - theirs).max())
    scale = max(1.0, float(np.abs(ours).max()))
    agree = ours.argmax(-1) == theirs.argmax(-1)
    ok = err <= TOLERANCE * scale and bool(agree.all()) and bool(np.isfinite(ours).all())
    what = f"{n} sequences of {t}" + (" (padded, with lengths)" if lengths is not None else "")
    print(f"interop: {os.path.basename(ckpt)}: '{model.spec}' over {model.input_shape}: PyTorch {torch.__version__} "
          f"vs nn on {what}: max |logit diff| {err:.2e} (tolerance {TOLERANCE * scale:.2e}, logits up to "
          f"{scale:.2f}), predictions agree on {agree.sum()} of {agree.size}{'' if ok else ' -- MISMATCH'}")
    return 0 if ok else 1


def _scaled(net, gain):
    """Every weight matrix but the embedding's times gain, layer norms
    off their identity start, so that every layer matters in the logits."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.RNNBase)):
                for name, p in m.named_parameters():
                    if "weight" in name:
                        p.mul_(gain)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return net


def save(outdir, vocab):
    torch.manual_seed(5)
    n, t = 50, 23
    models = [
        ("torch_lm", nn.Sequential(nn.Embedding(vocab, 12), LSTM(12, 24), nn.Linear(24, vocab)), False),
        ("torch_classifier", nn.Sequential(nn.Embedding(vocab, 10), GRU(10, 20), nn.LayerNorm(20), RNN(20, 16),
                                           Last(), nn.Sequential(nn.Linear(16, 12), nn.Tanh()), nn.Linear(12, 7)),
         True),
    ]
    for name, net, padded in models:
        net = _scaled(net, 2.0).eval()
        ids = torch.randint(0, vocab, (n, t), dtype=torch.int64)
        lengths = torch.randint(1, t + 1, (n,), dtype=torch.int64) if padded else torch.full((n,), t)
        for i in range(n):
            ids[i, lengths[i]:] = 0  # padding after each sequence's end
        with torch.no_grad():
            x = ids
            for m in net:
                x = m(x, lengths) if isinstance(m, Last) else m(x)
        spec = save_model(net, os.path.join(outdir, f"{name}.safetensors"), Tokens(vocab))
        ids.to(torch.int32).numpy().astype("<i4").tofile(os.path.join(outdir, f"{name}.ids.i32"))
        lengths.to(torch.int32).numpy().astype("<i4").tofile(os.path.join(outdir, f"{name}.lengths.i32"))
        x.numpy().astype("<f4").tofile(os.path.join(outdir, f"{name}.logits.f32"))
        print(f"{name} {n} {t} {x.shape[-1]} {spec}")
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 7 and args[0] == "compare":
        return compare(args[1], args[2], args[3], args[4], int(args[5]), int(args[6]))
    if len(args) == 3 and args[0] == "save":
        return save(args[1], int(args[2]))
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
