"""PyTorch's attention weights for tests/test_attention_map.c.

  attention_map_torch.py CHECKPOINT IDS.i32 OUT.f32

Rebuilds a text model written by nn from its metadata (scripts/torch_model.py,
weights loaded with strict=True), runs the T token ids of IDS.i32 (raw
little-endian int32, one sequence) through it in eval mode, and for each
attention layer, in the order the forward reaches them, asks
torch.nn.MultiheadAttention itself for its weights on the input that layer got
(need_weights=True, average_attn_weights=False: [heads, T, T] per layer, with
the layer's causal mask). Writes them one layer after the other to OUT.f32
(raw little-endian float32) and prints one line: "LAYERS HEADS T".

Needs Debian's python3-torch (NumPy, not the safetensors package)."""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch_model import Attention, load_model  # noqa: E402


def main():
    if len(sys.argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    ckpt, ids_path, out_path = sys.argv[1:]
    model = load_model(ckpt)
    ids = torch.from_numpy(np.fromfile(ids_path, dtype="<i4").astype(np.int64))[None, :]
    inputs = []  # (module, x) in the order the forward runs the attention layers
    for m in model.modules():
        if isinstance(m, Attention):
            m.register_forward_pre_hook(lambda mod, args: inputs.append((mod, args[0])))
    weights = []
    with torch.no_grad():
        model(ids)
        for mod, x in inputs:
            T = x.shape[1]
            mask = torch.ones(T, T, dtype=torch.bool).triu(1) if mod.causal else torch.zeros(T, T, dtype=torch.bool)
            _, w = nn.MultiheadAttention.forward(mod, x, x, x, attn_mask=mask, need_weights=True,
                                                 average_attn_weights=False)  # [1, heads, T, T]
            weights.append(w[0].numpy())
    np.concatenate([w.ravel() for w in weights]).astype("<f4").tofile(out_path)
    print(f"{len(weights)} {inputs[0][0].num_heads if inputs else 0} {ids.shape[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
