"""Rebuilds a checkpoint written by nn as a PyTorch model from its metadata
alone (scripts/torch_model.py), runs the first N MNIST test images through it
in eval mode, and compares the logits with the ones nn computed (a raw
little-endian float32 file, N x classes).

usage: interop_torch.py CHECKPOINT LOGITS.f32 DATA_DIR N
Prints one line with the numbers; exits 0 when the largest difference is at
most 1e-4 x max(1, max |logit|) and every prediction agrees, else 1.
Needs Debian's python3-torch (NumPy, not the safetensors package)."""
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch_model import CheckpointError, load_idx_split, load_model  # noqa: E402

TOLERANCE = 1e-4


def main():
    if len(sys.argv) != 5:
        print(__doc__.split("\n\n")[1].splitlines()[0], file=sys.stderr)
        return 2
    ckpt, logits_path, data_dir, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    try:
        model = load_model(ckpt)
        images, _ = load_idx_split(data_dir, "t10k")
    except (CheckpointError, ValueError, OSError) as e:
        print(f"interop: error: {e}", file=sys.stderr)
        return 1
    torch.manual_seed(0)  # nothing should draw in eval mode; if something does, at least the same each time
    with torch.no_grad():
        ours = model(model.normalize(images[:n])).numpy()
    theirs = np.fromfile(logits_path, dtype="<f4")
    if theirs.size != ours.size:
        print(f"interop: error: {logits_path} holds {theirs.size} floats, expected {n} x {model.classes}",
              file=sys.stderr)
        return 1
    theirs = theirs.reshape(ours.shape)
    err = float(np.abs(ours - theirs).max())
    scale = max(1.0, float(np.abs(ours).max()))
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    ok = err <= TOLERANCE * scale and agree == 1.0 and np.isfinite(ours).all()
    print(f"interop: {os.path.basename(ckpt)}: PyTorch {torch.__version__} vs nn on {n} images: "
          f"max |logit diff| {err:.2e} (tolerance {TOLERANCE * scale:.2e}, logits up to {scale:.2f}), "
          f"predictions agree on {100 * agree:.1f}%{'' if ok else ' -- MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
