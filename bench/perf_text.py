#!/usr/bin/python3
"""Where a recurrent model's training step spends its time, op by op, from a
perf profile of bench_text (docs/PERFORMANCE.md, "Recurrent models"):

    perf record --call-graph dwarf,16384 -F 999 -o perf.data \\
        build/bench/bench_text --lm-steps 100 --runs 1 --threads 1 charlstm
    perf script -i perf.data -F ip,sym,srcline > perf.txt
    /usr/bin/python3 bench/perf_text.py perf.txt

Each sample's call chain (leaf first) is put in one category: a sample in
OpenBLAS by the nn statement that called cblas_sgemm (read from the source
file at the call's line: the recurrent ops' input projection, per-step
recurrence and gradient products, the linear layer's); any other by the
first frame, from the leaf out, that a rule names. Loading the data,
building the model and the final validation are left out of the shares
(they are not part of a timed step). Standard library only."""
import os
import re
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = ("nn_text_load", "nn_model_build", "validate", "lm_start", "text_run_start", "nn_model_plan_text",
         "nn_vocab_build", "bench_sgemm_peak")

# (category, pattern on a frame's function), first match from the leaf out.
RULES = [
    ("LSTM/GRU gates, backward", r"^(lstm_cell_backward|gru_cell_backward|backward_rows)"),
    ("LSTM/GRU gates, forward", r"^(lstm_cell|gru_cell|forward_rows)"),
    ("LSTM/GRU bias gradients", r"^bias_grad"),
    ("LSTM/GRU W_hh transposed (once per call)", r"^transpose$"),
    ("LSTM/GRU other (state and row copies)", r"^(recurrent|nn_recurrent_backward|gather_rows|layout)$"),
    ("softmax + cross-entropy", r"cross_entropy|softmax|lm_loss"),
    ("Adam", r"adam|nn_optim_step"),
    ("gradient clipping", r"clip_grad"),
    ("zeroing gradients", r"zero_grad|nn_zero_floats"),
    ("embedding", r"embedding"),
    ("output layer (bias, other)", r"^(linear_forward|nn_linear|nn_linear_backward)"),
    ("batch sampling", r"sampler"),
    ("padded batches of names", r"batcher"),
    ("next-token accuracy", r"correct_next"),
    ("drawing the next character", r"nn_sample_token"),
    ("OpenMP (regions, barriers, idle threads)", r"^(gomp_|GOMP_|do_spin|do_wait)"),
]


def statement(srcline):
    """The C statement at "file.c:LINE" (up to its ';'), or ""."""
    m = re.match(r"\s*([\w./-]+\.c):(\d+)", srcline or "")
    if not m:
        return ""
    for folder in ("src/ops", "src/layers", "src/nn", "src/train", "src/core", "bench"):
        path = os.path.join(ROOT, folder, m.group(1))
        if os.path.exists(path):
            lines = open(path).read().splitlines()[int(m.group(2)) - 1:][:8]
            text = ""
            for line in lines:
                text += line
                if ";" in line:
                    break
            return text
    return ""


def gemm_category(func, stmt):
    if func.startswith("recurrent"):
        return "LSTM/GRU input projection GEMM (all steps)"
    if func.startswith("nn_recurrent_backward"):
        return "LSTM/GRU weight and input gradient GEMMs (all steps)"
    if "linear" in func:
        return "output layer GEMMs"
    return f"other GEMM ({func})"


def samples(path):
    """Yields each sample's frames, leaf first, as [function, srcline]: in
    perf script's output a frame's line starts with a tab ("\t  13af54
    cblas_sgemm"), its source line follows with two spaces ("  rnn.c:158"),
    and a blank line ends the sample."""
    frames = []
    for line in open(path, errors="replace"):
        if line.startswith("\t"):
            parts = line.split()
            frames.append([parts[1] if len(parts) > 1 else "?", ""])
        elif line.startswith("  ") and frames:
            frames[-1][1] = line.strip()
        elif not line.strip() and frames:
            yield frames
            frames = []
    if frames:
        yield frames


def classify(frames):
    funcs = [f for f, _ in frames]
    if any(f in SETUP for f in funcs):
        return None
    if any(f in ("rnn_gemm", "rnn_tile", "rnn_matvec") for f in funcs):
        if "forward_rows" not in funcs and "backward_rows" not in funcs:
            return "LSTM/GRU input projection GEMM (all steps)"  # one row: rnn_matvec on W_ih
        return "LSTM/GRU recurrence product per step, " + ("backward" if "backward_rows" in funcs else "forward")
    if "cblas_sgemm" in funcs:
        i = funcs.index("cblas_sgemm")
        caller, src = frames[i + 1] if i + 1 < len(frames) else ("?", "")
        return gemm_category(caller, statement(src))
    if any(f.startswith("sgemm_") or f.startswith("inner_thread") or f.startswith("blas_thread") for f in funcs):
        return "GEMM on an OpenBLAS worker thread"
    for name, pattern in RULES:
        if any(re.search(pattern, f) for f in funcs):
            return name
    return "other (" + next((f for f in funcs if not f.startswith("__") and "kernel" not in f), funcs[0]) + ")"


def main():
    counts = Counter(c for c in map(classify, samples(sys.argv[1])) if c)
    total = sum(counts.values())
    print(f"| where | share of the step's samples |\n|---|---|")
    for name, n in counts.most_common():
        if n / total >= 0.002:
            print(f"| {name} | {100 * n / total:.1f}% |")
    print(f"\n{total} samples in training steps")


if __name__ == "__main__":
    main()
