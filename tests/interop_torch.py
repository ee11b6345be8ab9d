"""Loads a checkpoint written by nn into a PyTorch model rebuilt from its
metadata alone, runs the first N MNIST test images through it, and compares
the logits with the ones nn computed (a raw float32 file).

usage: interop_torch.py CHECKPOINT LOGITS.f32 DATA_DIR N
Needs Debian's python3-torch (numpy, not the safetensors package: the format
is read here with json and struct, as a PyTorch user without it would)."""
import json
import struct
import sys

import numpy as np
import torch
from torch import nn


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name.startswith("train."):  # optimiser state for resuming, not the model
            continue
        assert info["dtype"] == "F32", info
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype="<f4").reshape(info["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def build_model(meta):
    """Linear -> [LayerNorm] -> activation -> [Dropout] per hidden layer."""
    sizes = [int(s) for s in meta["nn.layers"].split(",")]
    acts = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    model = nn.Module()
    layers = []
    for i in range(len(sizes) - 1):
        fc = nn.Linear(sizes[i], sizes[i + 1])
        setattr(model, f"fc{i + 1}", fc)
        layers.append(fc)
        if i < len(sizes) - 2:
            if meta["nn.norm"] == "layer":
                ln = nn.LayerNorm(sizes[i + 1])
                setattr(model, f"ln{i + 1}", ln)
                layers.append(ln)
            layers.append(acts[meta["nn.act"]]())
            layers.append(nn.Dropout(float(meta["nn.dropout"])))
    return model, nn.Sequential(*layers)


def main():
    ckpt, logits_path, data_dir, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tensors, meta = read_safetensors(ckpt)
    model, forward = build_model(meta)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    with open(f"{data_dir}/t10k-images-idx3-ubyte", "rb") as f:
        raw = f.read()
    images = np.frombuffer(raw[16 : 16 + n * 784], dtype=np.uint8).reshape(n, 784)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = (x - float(meta["nn.input_mean"])) / float(meta["nn.input_std"])
    with torch.no_grad():
        ours = forward(x).numpy()
    theirs = np.fromfile(logits_path, dtype="<f4").reshape(ours.shape)
    err = np.abs(ours - theirs).max()
    scale = np.abs(ours).max()
    agree = (ours.argmax(1) == theirs.argmax(1)).mean()
    print(f"interop: PyTorch {torch.__version__} vs nn on {n} images: max |logit diff| {err:.2e} "
          f"(logits up to {scale:.1f}), predictions agree on {100 * agree:.1f}%")
    sys.exit(0 if err <= 1e-4 * max(1.0, scale) and agree == 1.0 else 1)


if __name__ == "__main__":
    main()
