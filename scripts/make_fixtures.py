#!/usr/bin/python3
"""Writes PyTorch reference values for tests/test_torch_reference.c.

Usage (Debian's python3-torch; the plain `python3` of a venv may lack torch):

    /usr/bin/python3 scripts/make_fixtures.py tests/fixtures

writes OUT_DIR/torch_reference.safetensors: one safetensors file of F32
tensors named "<case>.<what>", written by hand (no safetensors package).

Op cases. Each op runs in float32 on seeded random inputs; the scalar
L = sum(out * R) with a fixed random R (or out itself when the op returns a
scalar) is backpropagated, and the file holds
    <case>.<input>        every input (labels as floats)
    <case>.R              the weighting, when out is not a scalar
    <case>.out            the op's output
    <case>.<input>.grad   dL/d<input> for every differentiable input,
                          parameters included (linear's w and b, ...)
    <case>.attr           the op's scalar settings, when it has any
The C test knows from the case's name which op to run and in what order the
inputs go; the shapes come from the file.

mlp: Linear -> LayerNorm -> GELU, twice, then Linear -> cross-entropy, with
parameters mlp.fc1.weight, mlp.ln1.bias, ... (PyTorch's names under "mlp."),
mlp.x, mlp.labels, mlp.logits, mlp.loss and mlp.<param>.grad.

Optimiser cases: a linear layer 5 -> 3 on a fixed batch with MSE loss to a
fixed target (optim.x, optim.y, optim.weight, optim.bias: the initial
parameters), two parameter groups so that only the weight is decayed. For
each optimiser case, <case>.hparams = [lr, weight_decay, momentum, beta1,
beta2, eps] and <case>.weight.<t>, <case>.bias.<t> are the parameters after
step t = 1..5.

clip / clip_noop: clip_grad_norm_ over two gradients <case>.g0, <case>.g1 with
<case>.max_norm; <case>.norm is the returned norm and <case>.g0.clipped,
<case>.g1.clipped the gradients afterwards.

CNN op cases (drawn after all of the above, so the earlier values stay as
they were): conv2d* (inputs x, w[, b]; attr = [stride, padding]),
max_pool2d* and avg_pool2d* (attr = [k, stride]), batch_norm* (inputs x, w,
b; attr = [momentum, eps, training]; <case>.running_mean and
<case>.running_var before the call, <case>.running_mean.after and
<case>.running_var.after after it).

cnn: Conv -> BatchNorm2d -> ReLU -> MaxPool -> Conv(stride 2) -> ReLU ->
flatten -> Linear -> BatchNorm1d -> ReLU -> Linear -> cross-entropy in
training mode, with parameters cnn.conv1.weight, cnn.bn1.bias, ...,
cnn.x, cnn.labels, cnn.logits, cnn.loss, cnn.<param>.grad, the running
statistics after the step (cnn.bn1.running_mean.after, ...) and the logits
of the same batch in evaluation mode afterwards (cnn.logits_eval).

Sequence cases (drawn after all of the above): embedding (embedding.w
[V,D], embedding.ids as floats [B,T], repeated), last_step (last_step.x,
last_step.lengths, different within the batch), and the recurrent layers
rnn*, lstm*, gru* (batch_first, one layer: <case>.x, <case>.w_ih, .w_hh,
.b_ih, .b_hh in PyTorch's gate order; the *_state cases also start from
<case>.h0 (and <case>.c0 for the LSTM), which get no gradient, and hold the
final state <case>.hn (<case>.cn)). char_lstm: Embedding -> LSTM -> Linear
at every position -> cross-entropy over the [B*T, V] logits, with
char_lstm.ids, .labels, .logits, .loss, the parameters under PyTorch's
names (emb.weight, lstm.weight_ih_l0, ..., fc.bias) and their .grad.

cross_entropy_ignore, cross_entropy_ignore_smooth (drawn after all of the
above): cross-entropy whose labels hold -1 on some rows, ignored as
F.cross_entropy(..., ignore_index=-1) ignores them (no loss, no gradient,
the mean over the other rows); without and with label smoothing 0.1.

Dropout has no case: its mask comes from torch's RNG, which nn does not
reproduce; the C test checks dropout's statistics on its own.
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

OPTIM_STEPS = 5

tensors = {}  # name -> float32 tensor, in insertion order


def put(name, t):
    assert name not in tensors, name
    tensors[name] = t.detach().to(torch.float32).contiguous().clone()


def leaf(t):
    return t.detach().clone().to(torch.float32).requires_grad_(True)


def op_case(case, fn, inputs, attr=None, extra=None, grad_inputs=None):
    """inputs: name -> tensor, in the op's argument order. fn(**leaves) -> out.
    extra: non-differentiable tensors to store (labels). grad_inputs: the
    names that get gradients (default: all inputs)."""
    leaves = {k: leaf(v) for k, v in inputs.items()}
    for k, v in leaves.items():
        put(f"{case}.{k}", v)
    for k, v in (extra or {}).items():
        put(f"{case}.{k}", v)
    if attr is not None:
        put(f"{case}.attr", torch.tensor(attr, dtype=torch.float32).reshape(-1))
    out = fn(**leaves)
    if out.dim() == 0:
        loss = out
    else:
        r = torch.randn(out.shape)
        put(f"{case}.R", r)
        loss = (out * r).sum()
    put(f"{case}.out", out)
    loss.backward()
    for k in grad_inputs if grad_inputs is not None else leaves:
        g = leaves[k].grad
        assert g is not None, (case, k)
        put(f"{case}.{k}.grad", g)


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def away_from_zero(t, margin=0.05):
    """Keeps values at least `margin` from 0, where ReLU-like ops have a kink."""
    return torch.where(t >= 0, t + margin, t - margin)


def with_extremes(t):
    """Overwrites the first elements with large and boundary values."""
    extremes = torch.tensor([-30.0, 30.0, -10.0, 10.0, -5.0, 5.0, 0.0, -1e-3, 1e-3, -3.0, 3.0])
    t = t.clone().reshape(-1)
    t[: extremes.numel()] = extremes
    return t


def op_cases():
    op_case("matmul", lambda a, b: a @ b, {"a": randn(4, 7), "b": randn(7, 5)})
    op_case(
        "linear",
        lambda x, w, b: F.linear(x, w, b),
        {"x": randn(4, 7), "w": randn(5, 7), "b": randn(5)},
    )
    op_case("linear_nobias", lambda x, w: F.linear(x, w), {"x": randn(4, 7), "w": randn(5, 7)})
    op_case("add", lambda a, b: a + b, {"a": randn(4, 7), "b": randn(4, 7)})
    op_case("sub", lambda a, b: a - b, {"a": randn(4, 7), "b": randn(4, 7)})
    op_case("mul", lambda a, b: a * b, {"a": randn(4, 7), "b": randn(4, 7)})
    op_case("add_bias", lambda x, b: x + b, {"x": randn(4, 7), "b": randn(7)})
    op_case("add_bias_3d", lambda x, b: x + b, {"x": randn(2, 3, 7), "b": randn(7)})
    op_case("scale", lambda x: x * -1.7, {"x": randn(4, 7)}, attr=[-1.7])
    op_case("sum", lambda x: x.sum(), {"x": randn(4, 7)})
    op_case("mean", lambda x: x.mean(), {"x": randn(4, 7)})
    op_case("reshape", lambda x: x.reshape(-1, 14), {"x": randn(4, 7)}, attr=[-1, 14])
    op_case("flatten", lambda x: torch.flatten(x, 1), {"x": randn(2, 3, 4)})

    relu_x = away_from_zero(randn(4, 7))
    relu_x.view(-1)[0] = 0.0  # PyTorch's derivative at the kink is 0
    op_case("relu", lambda x: F.relu(x), {"x": relu_x})
    op_case("leaky_relu", lambda x: F.leaky_relu(x, 0.01), {"x": away_from_zero(randn(4, 7))}, attr=[0.01])
    op_case("leaky_relu_0.2", lambda x: F.leaky_relu(x, 0.2), {"x": away_from_zero(randn(4, 7))}, attr=[0.2])
    op_case("sigmoid", lambda x: torch.sigmoid(x), {"x": randn(4, 7)})
    op_case("sigmoid_extreme", lambda x: torch.sigmoid(x), {"x": with_extremes(randn(4, 7)).reshape(4, 7)})
    op_case("tanh", lambda x: torch.tanh(x), {"x": randn(4, 7)})
    op_case("tanh_extreme", lambda x: torch.tanh(x), {"x": with_extremes(randn(4, 7)).reshape(4, 7)})
    op_case("gelu", lambda x: F.gelu(x), {"x": 2 * randn(4, 7)})
    op_case("gelu_extreme", lambda x: F.gelu(x), {"x": with_extremes(randn(4, 7)).reshape(4, 7)})
    op_case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), {"x": 2 * randn(4, 7)})
    op_case(
        "gelu_tanh_extreme",
        lambda x: F.gelu(x, approximate="tanh"),
        {"x": with_extremes(randn(4, 7)).reshape(4, 7)},
    )
    op_case("softmax", lambda x: F.softmax(x, dim=-1), {"x": randn(4, 7)})
    op_case("softmax_large", lambda x: F.softmax(x, dim=-1), {"x": 50 * randn(4, 7)})
    op_case("softmax_3d", lambda x: F.softmax(x, dim=-1), {"x": randn(2, 3, 7)})
    op_case("log_softmax", lambda x: F.log_softmax(x, dim=-1), {"x": randn(4, 7)})
    op_case("log_softmax_large", lambda x: F.log_softmax(x, dim=-1), {"x": 50 * randn(4, 7)})

    def ce_case(case, logits, smoothing):
        labels = torch.randint(0, logits.shape[1], (logits.shape[0],))
        op_case(
            case,
            lambda x: F.cross_entropy(x, labels, label_smoothing=smoothing),
            {"x": logits},
            attr=[smoothing],
            extra={"labels": labels.to(torch.float32)},
        )

    ce_case("cross_entropy", randn(6, 5), 0.0)
    ce_case("cross_entropy_smooth", randn(6, 5), 0.1)
    # Logits of +-1e4: a naive exp overflows; loss and gradient must stay finite.
    huge = torch.where(randn(6, 5) > 0, torch.tensor(1e4), torch.tensor(-1e4))
    huge[0] = torch.tensor([1e4, -1e4, 1e4, -1e4, 1e4])  # ties at the maximum
    ce_case("cross_entropy_huge", huge, 0.0)
    ce_case("cross_entropy_huge_smooth", huge.clone(), 0.1)

    op_case(
        "mse",
        lambda pred, target: F.mse_loss(pred, target),
        {"pred": randn(4, 7), "target": randn(4, 7)},
    )

    def ln_case(case, x, eps=1e-5):
        n = x.shape[-1]
        op_case(
            case,
            lambda x, w, b: F.layer_norm(x, (n,), w, b, eps),
            {"x": x, "w": 1 + 0.5 * randn(n), "b": randn(n)},
            attr=[eps],
        )

    ln_case("layer_norm", randn(4, 7))
    ln_case("layer_norm_3d", randn(2, 3, 7))
    const_rows = randn(4, 7)
    const_rows[1] = 2.5  # a constant row: variance 0, only eps keeps rstd finite
    const_rows[3] = 0.0
    ln_case("layer_norm_const", const_rows)


class MLP(torch.nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.fc1 = torch.nn.Linear(sizes[0], sizes[1])
        self.ln1 = torch.nn.LayerNorm(sizes[1])
        self.fc2 = torch.nn.Linear(sizes[1], sizes[2])
        self.ln2 = torch.nn.LayerNorm(sizes[2])
        self.fc3 = torch.nn.Linear(sizes[2], sizes[3])

    def forward(self, x):
        x = F.gelu(self.ln1(self.fc1(x)))
        x = F.gelu(self.ln2(self.fc2(x)))
        return self.fc3(x)


def mlp_case():
    sizes = [12, 16, 16, 5]
    batch = 8
    model = MLP(sizes)
    with torch.no_grad():  # LayerNorm starts at 1/0: perturb it so its gradients matter
        for ln in (model.ln1, model.ln2):
            ln.weight.add_(0.3 * randn(*ln.weight.shape))
            ln.bias.add_(0.3 * randn(*ln.bias.shape))
    x = randn(batch, sizes[0])
    labels = torch.randint(0, sizes[-1], (batch,))
    for name, p in model.named_parameters():
        put(f"mlp.{name}", p)
    put("mlp.x", x)
    put("mlp.labels", labels.to(torch.float32))
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    put("mlp.logits", logits)
    put("mlp.loss", loss)
    for name, p in model.named_parameters():
        put(f"mlp.{name}.grad", p.grad)


def optim_cases():
    x = randn(8, 5)
    y = randn(8, 3)
    weight0 = 0.5 * randn(3, 5)
    bias0 = 0.5 * randn(3)
    put("optim.x", x)
    put("optim.y", y)
    put("optim.weight", weight0)
    put("optim.bias", bias0)

    # hparams: lr, weight_decay, momentum, beta1, beta2, eps
    configs = [
        ("sgd", lambda g: torch.optim.SGD(g, lr=0.1), [0.1, 0.01, 0.0, 0.0, 0.0, 0.0]),
        ("momentum", lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9), [0.1, 0.01, 0.9, 0.0, 0.0, 0.0]),
        (
            "nesterov",
            lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True),
            [0.1, 0.01, 0.9, 0.0, 0.0, 0.0],
        ),
        ("adam", lambda g: torch.optim.Adam(g, lr=0.01, eps=1e-8), [0.01, 0.01, 0.0, 0.9, 0.999, 1e-8]),
        ("adamw", lambda g: torch.optim.AdamW(g, lr=0.01, eps=1e-8), [0.01, 0.1, 0.0, 0.9, 0.999, 1e-8]),
    ]
    for case, make, hparams in configs:
        weight = leaf(weight0)
        bias = leaf(bias0)
        wd = hparams[1]
        opt = make([{"params": [weight], "weight_decay": wd}, {"params": [bias], "weight_decay": 0.0}])
        put(f"{case}.hparams", torch.tensor(hparams))
        for step in range(1, OPTIM_STEPS + 1):
            opt.zero_grad()
            F.mse_loss(F.linear(x, weight, bias), y).backward()
            opt.step()
            put(f"{case}.weight.{step}", weight)
            put(f"{case}.bias.{step}", bias)


def clip_case(case, g0, g1, max_norm):
    p0 = torch.zeros(g0.shape, requires_grad=True)
    p1 = torch.zeros(g1.shape, requires_grad=True)
    p0.grad = g0.clone()
    p1.grad = g1.clone()
    norm = torch.nn.utils.clip_grad_norm_([p0, p1], max_norm)
    put(f"{case}.g0", g0)
    put(f"{case}.g1", g1)
    put(f"{case}.max_norm", torch.tensor(max_norm))
    put(f"{case}.norm", norm)
    put(f"{case}.g0.clipped", p0.grad)
    put(f"{case}.g1.clipped", p1.grad)


def cnn_op_cases():
    def conv_case(case, x, w, b, stride, padding):
        inputs = {"x": x, "w": w} if b is None else {"x": x, "w": w, "b": b}
        op_case(
            case,
            lambda **t: F.conv2d(t["x"], t["w"], t.get("b"), stride, padding),
            inputs,
            attr=[stride, padding],
        )

    conv_case("conv2d", randn(2, 3, 7, 6), randn(4, 3, 3, 3), randn(4), 1, 0)
    conv_case("conv2d_nobias", randn(2, 3, 5, 5), randn(4, 3, 3, 3), None, 1, 1)
    conv_case("conv2d_stride2_pad1", randn(2, 2, 7, 8), randn(3, 2, 3, 3), randn(3), 2, 1)
    conv_case("conv2d_rect", randn(1, 2, 6, 7), randn(3, 2, 2, 3), randn(3), 3, 2)
    conv_case("conv2d_1x1", randn(2, 4, 3, 5), randn(3, 4, 1, 1), randn(3), 1, 0)
    conv_case("conv2d_batch20", randn(20, 2, 5, 5), randn(3, 2, 3, 3), randn(3), 1, 1)

    def pool_case(case, fn, x, k, stride):
        op_case(case, lambda x: fn(x, k, stride), {"x": x}, attr=[k, stride])

    pool_case("max_pool2d", F.max_pool2d, randn(2, 3, 6, 7), 2, 2)
    pool_case("max_pool2d_overlap", F.max_pool2d, randn(2, 2, 7, 7), 3, 2)
    # Few distinct values: ties, where the gradient goes to the first maximum.
    pool_case("max_pool2d_ties", F.max_pool2d, torch.randint(0, 3, (2, 2, 6, 6)).to(torch.float32), 2, 1)
    pool_case("avg_pool2d", F.avg_pool2d, randn(2, 3, 6, 7), 2, 2)
    pool_case("avg_pool2d_overlap", F.avg_pool2d, randn(2, 2, 5, 6), 3, 1)

    def bn_case(case, x, training, momentum=0.1, eps=1e-5):
        c = x.shape[1]
        mean0, var0 = 0.5 * randn(c), 0.5 + torch.rand(c)
        running = [mean0.clone(), var0.clone()]  # updated in place by a training-mode call
        op_case(
            case,
            lambda x, w, b: F.batch_norm(x, running[0], running[1], w, b, training, momentum, eps),
            {"x": x, "w": 1 + 0.5 * randn(c), "b": randn(c)},
            attr=[momentum, eps, float(training)],
            extra={"running_mean": mean0, "running_var": var0},
        )
        put(f"{case}.running_mean.after", running[0])
        put(f"{case}.running_var.after", running[1])

    bn_case("batch_norm_2d", 1 + 2 * randn(4, 3, 5, 5), True)
    bn_case("batch_norm_1d", randn(8, 5) - 0.5, True, momentum=0.3, eps=1e-3)
    bn_case("batch_norm_2d_eval", 1 + 2 * randn(4, 3, 5, 5), False)
    bn_case("batch_norm_1d_eval", randn(8, 5) - 0.5, False, eps=1e-3)


class CNN(torch.nn.Module):
    def __init__(self, channels, hidden, classes, flat):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels[0], channels[1], 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(channels[1])
        self.conv2 = torch.nn.Conv2d(channels[1], channels[2], 3, stride=2, padding=1)
        self.fc1 = torch.nn.Linear(flat, hidden)
        self.bn2 = torch.nn.BatchNorm1d(hidden)
        self.fc2 = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2, 2)
        x = torch.flatten(F.relu(self.conv2(x)), 1)
        return self.fc2(F.relu(self.bn2(self.fc1(x))))


def cnn_case():
    batch, size, classes = 6, 10, 5
    model = CNN([2, 4, 6], 16, classes, 6 * 3 * 3)
    with torch.no_grad():  # BatchNorm starts at 1/0: perturb it so its gradients matter
        for bn in (model.bn1, model.bn2):
            bn.weight.add_(0.3 * randn(*bn.weight.shape))
            bn.bias.add_(0.3 * randn(*bn.bias.shape))
    x = randn(batch, 2, size, size)
    labels = torch.randint(0, classes, (batch,))
    params = dict(model.named_parameters())
    for name, p in params.items():
        put(f"cnn.{name}", p)
    put("cnn.x", x)
    put("cnn.labels", labels.to(torch.float32))
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    put("cnn.logits", logits)
    put("cnn.loss", loss)
    for name, p in params.items():
        put(f"cnn.{name}.grad", p.grad)
    for bn in ("bn1", "bn2"):
        put(f"cnn.{bn}.running_mean.after", getattr(model, bn).running_mean)
        put(f"cnn.{bn}.running_var.after", getattr(model, bn).running_var)
    model.eval()
    with torch.no_grad():
        put("cnn.logits_eval", model(x))


def recurrent_case(case, kind, B, T, D, H, state):
    """One RNN/LSTM/GRU layer (batch_first) through torch's own kernels (the
    torch._VF calls nn.RNN, nn.LSTM and nn.GRU make), its parameters and
    (when state) its initial state from the seeded RNG."""
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    inputs = {
        "x": randn(B, T, D),
        "w_ih": 0.5 * randn(G * H, D),
        "w_hh": 0.5 * randn(G * H, H),
        "b_ih": 0.5 * randn(G * H),
        "b_hh": 0.5 * randn(G * H),
    }
    h0 = randn(1, B, H) if state else torch.zeros(1, B, H)
    c0 = randn(1, B, H) if state and kind == "lstm" else torch.zeros(1, B, H)
    final = {}

    def fn(x, w_ih, w_hh, b_ih, b_hh):
        params = [w_ih, w_hh, b_ih, b_hh]
        flags = (True, 1, 0.0, True, False, True)  # biases, layers, dropout, train, bidirectional, batch_first
        if kind == "lstm":
            out, hn, cn = torch._VF.lstm(x, (h0, c0), params, *flags)
            final["cn"] = cn[0]
        else:
            out, hn = (torch._VF.rnn_tanh if kind == "rnn" else torch._VF.gru)(x, h0, params, *flags)
        final["hn"] = hn[0]
        return out

    extra = {}
    if state:
        extra["h0"] = h0[0]
        if kind == "lstm":
            extra["c0"] = c0[0]
    op_case(case, fn, inputs, extra=extra)
    if state:
        put(f"{case}.hn", final["hn"])
        if kind == "lstm":
            put(f"{case}.cn", final["cn"])


class CharLSTM(torch.nn.Module):
    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.lstm = torch.nn.LSTM(dim, hidden, batch_first=True)
        self.fc = torch.nn.Linear(hidden, vocab)

    def forward(self, ids):
        h, _ = self.lstm(self.emb(ids))
        return self.fc(h.reshape(-1, h.shape[-1]))


def seq_cases():
    V, B, T = 7, 3, 5
    ids = torch.randint(0, V, (B, T))
    ids[0, 1] = ids[0, 0]  # a repeat, whatever the draw
    op_case("embedding", lambda w: F.embedding(ids, w), {"w": randn(V, 4)}, extra={"ids": ids.to(torch.float32)})
    lengths = torch.tensor([5, 1, 3, 5])
    op_case(
        "last_step",
        lambda x: x[torch.arange(x.shape[0]), lengths - 1],
        {"x": randn(4, 5, 6)},
        extra={"lengths": lengths.to(torch.float32)},
    )
    for kind in ("rnn", "lstm", "gru"):
        recurrent_case(kind, kind, 3, 7, 5, 6, False)
        recurrent_case(f"{kind}_state", kind, 2, 4, 3, 5, True)
    recurrent_case("lstm_long", "lstm", 2, 20, 4, 8, True)

    vocab, batch, steps = 11, 4, 9
    model = CharLSTM(vocab, 6, 10)
    ids = torch.randint(0, vocab, (batch, steps))
    labels = torch.randint(0, vocab, (batch * steps,))
    params = dict(model.named_parameters())
    for name, p in params.items():
        put(f"char_lstm.{name}", p)
    put("char_lstm.ids", ids.to(torch.float32))
    put("char_lstm.labels", labels.to(torch.float32))
    logits = model(ids)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    put("char_lstm.logits", logits)
    put("char_lstm.loss", loss)
    for name, p in params.items():
        put(f"char_lstm.{name}.grad", p.grad)


def ignore_cases():
    for case, smoothing in (("cross_entropy_ignore", 0.0), ("cross_entropy_ignore_smooth", 0.1)):
        logits = randn(7, 5)
        labels = torch.randint(0, 5, (7,))
        labels[1] = labels[4] = labels[5] = -1
        op_case(
            case,
            lambda x: F.cross_entropy(x, labels, ignore_index=-1, label_smoothing=smoothing),
            {"x": logits},
            attr=[smoothing],
            extra={"labels": labels.to(torch.float32)},
        )


def write_safetensors(path, named, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in named.items():
        data = struct.pack(f"<{t.numel()}f", *t.reshape(-1).tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # the data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixtures.py OUT_DIR")
    torch.manual_seed(20240607)
    torch.set_num_threads(1)
    op_cases()
    mlp_case()
    optim_cases()
    clip_case("clip", 3 * randn(3, 5), 3 * randn(3), 1.0)
    clip_case("clip_noop", 0.1 * randn(3, 5), 0.1 * randn(3), 10.0)
    cnn_op_cases()
    cnn_case()
    seq_cases()
    ignore_cases()
    for name, t in tensors.items():
        assert torch.isfinite(t).all(), name
    os.makedirs(sys.argv[1], exist_ok=True)
    path = os.path.join(sys.argv[1], "torch_reference.safetensors")
    metadata = {
        "generator": "generated by scripts/make_fixtures.py",
        "torch_version": torch.__version__,
        "seed": "20240607",
    }
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
