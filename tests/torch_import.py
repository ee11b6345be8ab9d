"""The PyTorch -> nn direction: trains small models in PyTorch (seeded, on the
first TRAIN_N MNIST training images), writes each with
scripts/torch_model.py's save_model straight from its state_dict, and leaves
for tests/test_torch_import.c to compare with what nn computes:

  OUTDIR/NAME.safetensors   the checkpoint (num_batches_tracked int64, as PyTorch has it)
  OUTDIR/NAME.logits.f32    PyTorch's logits of the first N_LOGITS test images, eval mode,
                            raw little-endian float32, N_LOGITS x 10

and prints one line per model:

  NAME: torch correct C of N; bn1.num_batches_tracked B; spec SPEC

(C: test images, all of t10k, PyTorch classifies right in eval mode).

usage: torch_import.py OUTDIR DATA_DIR           train, save, print
       torch_import.py --refuse OUTDIR           save_model on modules nn cannot express:
                                                 one line "refused: MESSAGE" each
Needs Debian's python3-torch (NumPy, not the safetensors package)."""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.dont_write_bytecode = True  # no scripts/__pycache__ left in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from torch_model import CheckpointError, load_idx_split, save_model  # noqa: E402

TRAIN_N = 3000
N_LOGITS = 1000
MEAN, STD = 0.1307, 0.3081


def cnn():
    """BatchNorm after convs and after a linear, a strided conv with padding,
    a strided pool, the activations with arguments; nested Sequentials."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.Tanh(),
                      nn.AvgPool2d(3, stride=1)),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 32), nn.BatchNorm1d(32), nn.LeakyReLU(0.1), nn.Dropout(0.2),
        nn.Linear(32, 10))


def mlp():
    """Takes flat [N, 784] input (no Flatten: save_model adds nn's), with
    LayerNorm, exact GELU, BatchNorm1d and Sigmoid."""
    return nn.Sequential(nn.Linear(784, 64), nn.LayerNorm(64), nn.GELU(), nn.Dropout(0.1), nn.Linear(64, 32),
                         nn.BatchNorm1d(32), nn.Sigmoid(), nn.Linear(32, 10))


def normalize(images):
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28], computed as nn does."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    return ((x / 255.0 - MEAN) / STD).unsqueeze(1)


def train(model, x, y, flat):
    gen = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(2):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 50):
            idx = order[i : i + 50]
            xb = x[idx].flatten(1) if flat else x[idx]
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main_train(outdir, data_dir):
    train_images, train_labels = load_idx_split(data_dir, "train")
    test_images, test_labels = load_idx_split(data_dir, "t10k")
    x, y = normalize(train_images[:TRAIN_N]), torch.from_numpy(train_labels[:TRAIN_N])
    xt, yt = normalize(test_images), torch.from_numpy(test_labels)
    for name, make, flat in (("cnn", cnn, False), ("mlp", mlp, True)):
        torch.manual_seed(0)
        model = train(make(), x, y, flat)
        path = os.path.join(outdir, f"{name}.safetensors")
        spec = save_model(model, path, (1, 28, 28), MEAN, STD)
        with torch.no_grad():
            logits = torch.cat([model(xt[i : i + 1000].flatten(1) if flat else xt[i : i + 1000])
                                for i in range(0, len(xt), 1000)])
        logits[:N_LOGITS].numpy().astype("<f4").tofile(os.path.join(outdir, f"{name}.logits.f32"))
        correct = int((logits.argmax(1) == yt).sum())
        bn = next(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
        print(f"{name}: torch correct {correct} of {len(yt)}; bn1.num_batches_tracked "
              f"{int(bn.num_batches_tracked)}; spec {spec}")
    return 0


def main_refuse(outdir):
    path = os.path.join(outdir, "refused.safetensors")
    cases = [
        nn.Sequential(nn.Conv2d(1, 4, (3, 5)), nn.Flatten(), nn.Linear(4 * 26 * 24, 10)),
        nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.Flatten(), nn.Linear(4 * 24 * 24, 10)),
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Softmax(1)),
        nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
        nn.Sequential(nn.Flatten(), nn.Linear(700, 10)),
        nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.GELU(approximate="tanh"), nn.Linear(32, 10)),
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, eps=1e-3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
        nn.Linear(784, 10),
    ]
    for module in cases:
        try:
            save_model(module, path, (1, 28, 28), MEAN, STD)
            print(f"accepted: {module!r}".replace("\n", " "))
        except CheckpointError as e:
            print(f"refused: {e}")
    try:
        save_model(cnn(), path, (1, 28, 28), MEAN, 0.0)
        print("accepted: input_std 0")
    except CheckpointError as e:
        print(f"refused: {e}")
    print("exists" if os.path.exists(path) else "nothing written")
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--refuse":
        return main_refuse(args[1])
    if len(args) == 2:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        return main_train(*args)
    print(__doc__.split("\n\n")[2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
