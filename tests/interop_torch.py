"""PyTorch interop of nn's image models (scripts/torch_model.py rebuilds them
from a checkpoint's metadata alone and loads the weights with strict=True).

  interop_torch.py CHECKPOINT LOGITS.f32 DATA_DIR N
      Runs the first N MNIST test images through the rebuilt model in eval
      mode and compares the logits with the ones nn computed (a raw
      little-endian float32 file, N x classes). Prints one line with the
      numbers; exits 0 when the largest difference is at most
      1e-4 x max(1, max |logit|) and every prediction agrees, else 1.

  interop_torch.py step BEFORE AFTER X.f32 LABELS.i32 LOGITS.f32 LR
      One training step, both ways. BEFORE is a checkpoint, X a batch of
      inputs for it (raw float32, N x C x H x W, already normalised), LABELS
      their classes (raw int32, N), LOGITS nn's logits of X in eval mode, and
      AFTER the checkpoint nn wrote after one step of plain SGD (learning
      rate LR) on the mean cross-entropy of X in training mode (BatchNorm on
      the batch's statistics, its running ones updated). PyTorch does the
      same from BEFORE; exits 0 when its eval logits are nn's (1e-4 x
      max(1, max |logit|), every prediction the same) and, for every tensor
      of the state_dict, its change is nn's (1e-4 x the largest change of
      that tensor, plus 1e-6) and num_batches_tracked the same, else 1.
      Prints one line with the numbers.

  interop_torch.py save OUT.safetensors X.f32 LOGITS.f32
      The other direction: a seeded PyTorch Sequential with
      torch_model.Residual blocks (a ResNet block, one nested in another, one
      over features) and made-up running statistics, written by save_model;
      X holds 16 random inputs [16, 1, 12, 12] (raw float32, normalised) and
      LOGITS PyTorch's logits of them in eval mode. Prints the spec.

Needs Debian's python3-torch (NumPy, not the safetensors package)."""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch import nn  # noqa: E402
from torch_model import CheckpointError, Residual, load_idx_split, load_model, read_safetensors, save_model  # noqa: E402

TOLERANCE = 1e-4


def _logits_diff(ours, theirs_path):
    """(max |diff|, scale, fraction of predictions that agree) of PyTorch's
    logits ours against nn's in theirs_path; ValueError if the sizes differ."""
    theirs = np.fromfile(theirs_path, dtype="<f4")
    if theirs.size != ours.size:
        raise ValueError(f"{theirs_path} holds {theirs.size} floats, expected {list(ours.shape)}")
    theirs = theirs.reshape(ours.shape)
    err = float(np.abs(ours - theirs).max())
    scale = max(1.0, float(np.abs(ours).max()))
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    return err, scale, agree


def compare(ckpt, logits_path, data_dir, n):
    try:
        model = load_model(ckpt)
        images, _ = load_idx_split(data_dir, "t10k")
        torch.manual_seed(0)  # nothing should draw in eval mode; if something does, at least the same each time
        with torch.no_grad():
            ours = model(model.normalize(images[:n])).numpy()
        err, scale, agree = _logits_diff(ours, logits_path)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"interop: error: {e}", file=sys.stderr)
        return 1
    ok = err <= TOLERANCE * scale and agree == 1.0 and np.isfinite(ours).all()
    print(f"interop: {os.path.basename(ckpt)}: PyTorch {torch.__version__} vs nn on {n} images: "
          f"max |logit diff| {err:.2e} (tolerance {TOLERANCE * scale:.2e}, logits up to {scale:.2f}), "
          f"predictions agree on {100 * agree:.1f}%{'' if ok else ' -- MISMATCH'}")
    return 0 if ok else 1


def step(before_path, after_path, x_path, labels_path, logits_path, lr):
    try:
        model = load_model(before_path)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        after, _ = read_safetensors(after_path)
        labels = torch.from_numpy(np.fromfile(labels_path, dtype="<i4").astype(np.int64))
        x = torch.from_numpy(np.fromfile(x_path, dtype="<f4"))
        if x.numel() != labels.numel() * int(np.prod(model.input_shape)):
            raise ValueError(f"{x_path}: {x.numel()} floats for {labels.numel()} inputs of {list(model.input_shape)}")
        x = x.reshape(labels.numel(), *model.input_shape)
        with torch.no_grad():
            ours = model(x).numpy()
        err, scale, agree = _logits_diff(ours, logits_path)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"interop: error: {e}", file=sys.stderr)
        return 1
    ok = err <= TOLERANCE * scale and agree == 1.0
    model.train()
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=lr).step()
    worst, worst_name = 0.0, None
    for name, t in model.state_dict().items():
        if name not in after:
            print(f"interop: error: {after_path}: no tensor '{name}'", file=sys.stderr)
            return 1
        if name.endswith("num_batches_tracked"):
            same = int(after[name].reshape(())) == int(t)
            ok = ok and same
            if not same:
                print(f"interop: {name}: nn {int(after[name].reshape(()))}, PyTorch {int(t)}", file=sys.stderr)
            continue
        theirs = after[name].to(torch.float64) - before[name].to(torch.float64)
        mine = t.detach().to(torch.float64) - before[name].to(torch.float64)
        largest = float(mine.abs().max())
        if largest == 0.0:  # every tensor must move in a step, or the comparison says little
            print(f"interop: {name} did not change in PyTorch's step", file=sys.stderr)
            ok = False
        rel = float((mine - theirs).abs().max()) / (largest + 1e-6 / TOLERANCE)
        if rel > worst:
            worst, worst_name = rel, name
    ok = ok and worst <= TOLERANCE
    print(f"interop: {os.path.basename(before_path)} '{model.spec}': PyTorch {torch.__version__} vs nn: "
          f"eval logits max |diff| {err:.2e} (tolerance {TOLERANCE * scale:.2e}); one SGD step (lr {lr:g}, "
          f"training loss {float(loss):.6f}): every tensor's change the same within {worst:.2e} of its largest "
          f"(worst {worst_name}, tolerance {TOLERANCE:g}){'' if ok else ' -- MISMATCH'}")
    return 0 if ok else 1


def save(out_path, x_path, logits_path):
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        Residual(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                 nn.BatchNorm2d(6)),
        nn.ReLU(), nn.MaxPool2d(2),
        Residual(nn.Conv2d(6, 6, 3, padding=1), nn.Tanh(), Residual(nn.Conv2d(6, 6, 3, padding=1))),
        nn.Flatten(), nn.Linear(6 * 6 * 6, 24),
        nn.Sequential(Residual(nn.LayerNorm(24), nn.Linear(24, 48), nn.GELU(), nn.Linear(48, 24)), nn.ReLU()),
        nn.Linear(24, 10))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.2, 2.2)
                m.num_batches_tracked.fill_(17)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
    net.eval()
    x = torch.randn(16, 1, 12, 12)
    with torch.no_grad():
        logits = net(x)
    try:
        spec = save_model(net, out_path, (1, 12, 12), input_mean=0.0, input_std=1.0)
    except CheckpointError as e:
        print(f"interop: error: {e}", file=sys.stderr)
        return 1
    x.numpy().astype("<f4").tofile(x_path)
    logits.numpy().astype("<f4").tofile(logits_path)
    print(spec)
    return 0


def main():
    usage = [line.strip() for line in __doc__.splitlines() if line.startswith("  interop_torch.py")]
    if len(sys.argv) == 8 and sys.argv[1] == "step":
        return step(*sys.argv[2:7], float(sys.argv[7]))
    if len(sys.argv) == 5 and sys.argv[1] == "save":
        return save(*sys.argv[2:5])
    if len(sys.argv) == 5 and sys.argv[1] not in ("step", "save"):
        return compare(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    print("usage: " + "\n       ".join(usage), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
