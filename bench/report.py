"""Turns the "key value" lines of bench_train and torch_bench.py into the
side-by-side table of docs/PERFORMANCE.md. Standard library only."""
import sys

values = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 2:
        try:
            values[parts[0]] = float(parts[1])
        except ValueError:
            values[parts[0]] = parts[1]

peak = values.get("sgemm.peak_gflops")
print()
print(f"sgemm peak on this machine (1024^3, all threads): {peak:.0f} GFLOP/s")
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
if "torch.peak_rss_mb" in values:
    print(f"\nPyTorch process peak RSS (both configurations): {values['torch.peak_rss_mb']:.0f} MB")
