"""Turns the "key value" lines of bench_train and torch_bench.py into the
side-by-side table of docs/PERFORMANCE.md. A key seen in several rounds
gets the median of its values; the speed-up of each round is listed too.
Standard library only."""
import statistics
import sys

rounds = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 2:
        try:
            rounds.setdefault(parts[0], []).append(float(parts[1]))
        except ValueError:
            rounds.setdefault(parts[0], []).append(parts[1])
values = {k: statistics.median(v) if isinstance(v[0], float) else v[0] for k, v in rounds.items()}

peak = values.get("sgemm.peak_gflops")
print()
print(f"sgemm peak on this machine (1024^3, all threads): {peak:.0f} GFLOP/s "
      f"(median of {len(rounds['sgemm.peak_gflops'])} measurements)")
print()
print("| configuration | nn s/epoch | nn img/s | PyTorch s/epoch | PyTorch img/s | speed-up | nn GFLOP/s | share of sgemm peak | GEMM s | other s | eval 10k s | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for c in ("basic", "advanced"):
    if f"{c}.epoch_seconds" not in values:
        continue
    s, ips = values[f"{c}.epoch_seconds"], values[f"{c}.images_per_sec"]
    ts, tips = values.get(f"torch.{c}.epoch_seconds"), values.get(f"torch.{c}.images_per_sec")
    ratio = f"{ips / tips:.2f}x" if tips else "-"
    torch_cols = f"{ts:.2f} ({int(values[f'torch.{c}.threads'])} thr) | {tips:.0f}" if ts else "- | -"
    print(f"| {c} | {s:.2f} | {ips:.0f} | {torch_cols} | {ratio} | {values[f'{c}.gflops']:.0f} | "
          f"{100 * values[f'{c}.gflops'] / peak:.0f}% | {values[f'{c}.gemm_seconds']:.2f} | "
          f"{values[f'{c}.other_seconds']:.2f} | {values[f'{c}.eval_seconds']:.3f} | {values[f'{c}.peak_rss_mb']:.0f} |")
for c in ("basic", "advanced"):
    nn_ips, torch_ips = rounds.get(f"{c}.images_per_sec", []), rounds.get(f"torch.{c}.images_per_sec", [])
    if torch_ips:
        per_round = ", ".join(f"{a / b:.2f}x" for a, b in zip(nn_ips, torch_ips))
        print(f"\n{c}: speed-up in each round: {per_round}", end="")
print()
if "torch.peak_rss_mb" in values:
    print(f"\nPyTorch process peak RSS (one configuration per process, median): {values['torch.peak_rss_mb']:.0f} MB")
