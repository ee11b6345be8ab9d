"""Turns the "key value" lines of `make bench` (bench_train, torch_bench.py,
bench_text, torch_text.py and the other benchmarks scripts/bench.sh runs)
into the tables of docs/PERFORMANCE.md. "bench.round N" lines start round
N. A value seen in several rounds is reported as the median over rounds;
speed-ups are computed per round, against PyTorch's best setting in that
same round.

Key conventions: nn's "<config>.<key>" (config basic, basic-bf16, ...), the
PyTorch side's "torch.<config>.<setting>.<key>" for every setting and
"torch.<config>.<key>" for the round's best, "torch.<config>.best <setting>".
The MLPs and CNNs report images_per_sec; the text models (charlstm,
namesgru, generate, gpt, gptgen) per_sec, in the unit of "<config>.unit" (tokens, names,
chars). An nn configuration "<config>-bf16" is compared with PyTorch's fp32
"<config>". Standard library only.

usage: report.py FILE"""
import re
import statistics
import sys

MLP_CONFIGS = ("basic", "basic-bf16", "advanced", "advanced-bf16")


def parse(path):
    """{key: {round: value}}; values are floats where they parse."""
    by_round, rnd = {}, 0
    for line in open(path):
        parts = line.split()
        if len(parts) != 2:
            continue
        key, text = parts
        if key == "bench.round":
            rnd = int(text)
            continue
        try:
            value = float(text)
        except ValueError:
            value = text
        by_round.setdefault(key, {}).setdefault(rnd, []).append(value)
    return by_round


def median_of(data, key):
    """The median over every occurrence of a numeric key, or None."""
    vals = [v for per in data.get(key, {}).values() for v in per if isinstance(v, float)]
    return statistics.median(vals) if vals else None


def per_round(data, key):
    """{round: value} (a key's last value in each round)."""
    return {r: v[-1] for r, v in data.get(key, {}).items()}


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def machine(data):
    out = []
    for name, key in (("OpenBLAS sgemm", "sgemm"), ("nn bf16 GEMM", "bf16")):
        two, one = median_of(data, f"{key}.peak_gflops"), median_of(data, f"{key}.peak_gflops_1thread")
        if two is not None:
            n = len([v for per in data[f"{key}.peak_gflops"].values() for v in per])
            out.append(f"- {name} 1024^3: {fmt(one, '.0f')} GFLOP/s on 1 thread, {two:.0f} on 2 "
                       f"(medians of {n} measurements)")
    return out


def nn_table(data):
    peak, bf16_peak = median_of(data, "sgemm.peak_gflops"), median_of(data, "bf16.peak_gflops")
    rows = ["| nn configuration | s/epoch | img/s | fastest epoch img/s | GFLOP/s | share of sgemm peak | share of bf16 peak "
            "| GEMM s | other s | eval 10k s | test acc (last epoch) | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in MLP_CONFIGS:
        if f"{c}.epoch_seconds" not in data:
            continue
        g = median_of(data, f"{c}.gflops")
        share = f"{100 * g / peak:.0f}%" if peak else "-"
        share16 = f"{100 * g / bf16_peak:.0f}%" if bf16_peak and c.endswith("-bf16") else "-"
        acc = median_of(data, f"{c}.test_acc")
        rows.append(f"| {c} | {median_of(data, f'{c}.epoch_seconds'):.2f} | {median_of(data, f'{c}.images_per_sec'):,.0f} "
                    f"| {fmt(median_of(data, f'{c}.fastest_images_per_sec'), ',.0f')} | {g:.0f} | {share} | {share16} | {fmt(median_of(data, f'{c}.gemm_seconds'), '.2f')} "
                    f"| {fmt(median_of(data, f'{c}.other_seconds'), '.2f')} | {fmt(median_of(data, f'{c}.eval_seconds'), '.3f')} "
                    f"| {fmt(None if acc is None else 100 * acc, '.2f')}% | {fmt(median_of(data, f'{c}.peak_rss_mb'), '.0f')} |")
    return rows if len(rows) > 2 else []


CNN_CONFIGS = ("keras", "examples", "preset")


def cnn_table(data):
    """bench_conv's CNNs: the FLOPs of the conv and linear layers per second, counted as a direct
    convolution does them (so Winograd's can pass the sgemm peak) and as nn does them."""
    peak = median_of(data, "sgemm.peak_gflops")
    rows = ["| nn CNN | img/s | fastest run img/s | ms/step | training MFLOP/img | GFLOP/s | share of sgemm peak "
            "| MFLOP/img done | GFLOP/s done | share | eval 10k s | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in CNN_CONFIGS:
        if f"{c}.train_mflop_per_image" not in data:
            continue
        g, done = median_of(data, f"{c}.gflops"), median_of(data, f"{c}.done_gflops")
        share = f"{100 * g / peak:.0f}%" if peak else "-"
        done_share = f"{100 * done / peak:.0f}%" if peak and done else "-"
        rows.append(f"| {c} | {median_of(data, f'{c}.images_per_sec'):,.0f} "
                    f"| {fmt(median_of(data, f'{c}.fastest_images_per_sec'), ',.0f')} | {median_of(data, f'{c}.step_ms'):.1f} "
                    f"| {median_of(data, f'{c}.train_mflop_per_image'):.1f} | {g:.0f} | {share} "
                    f"| {fmt(median_of(data, f'{c}.done_mflop_per_image'), '.1f')} | {fmt(done, '.0f')} | {done_share} "
                    f"| {fmt(median_of(data, f'{c}.eval_seconds'), '.3f')} | {fmt(median_of(data, f'{c}.peak_rss_mb'), '.0f')} |")
    return rows if len(rows) > 2 else []


SETTING = re.compile(r"^(openmp|pthread)_t(\d+)(?:_(active|passive))?(?:_([a-z0-9]+))?$")


def torch_configs(data, key="images_per_sec"):
    """The configurations PyTorch ran whose rate is key."""
    return sorted({k.split(".")[1] for k in data if k.startswith("torch.") and k.count(".") == 3
                   and k.endswith(f".{key}")})


def settings_of(data, config):
    return sorted({k.split(".")[2] for k in data if k.startswith(f"torch.{config}.")
                   and k.count(".") == 3 and SETTING.match(k.split(".")[2])})


def torch_best(data, config, key="images_per_sec"):
    """{round: (best setting, its value of key)} over the settings run in that round."""
    best = {}
    for n in settings_of(data, config):
        for r, v in per_round(data, f"torch.{config}.{n}.{key}").items():
            if r not in best or v > best[r][1]:
                best[r] = (n, v)
    return best


def torch_table(data, config):
    """Every setting of one configuration, the best (by median img/s) marked."""
    names = settings_of(data, config)
    if not names:
        return []
    ips = {n: median_of(data, f"torch.{config}.{n}.images_per_sec") for n in names}
    best = max(names, key=lambda n: ips[n])
    wins = [n for n, _ in torch_best(data, config).values()]
    rows = [f"PyTorch {config}: every setting (median over rounds; best of the round in how many rounds)", "",
            "| OpenBLAS | kernels | torch threads | OMP_WAIT_POLICY | s/epoch | img/s | fastest epoch img/s | eval 10k s "
            "| peak RSS MB | best in |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        blas, threads, wait, _ = SETTING.match(n).groups()
        kernels = per_round(data, f"torch.{config}.{n}.kernels")
        kernels = next(iter(kernels.values())) if kernels else "-"
        mark = " **best**" if n == best else ""
        rows.append(f"| {blas} | {kernels} | {threads} | {wait or 'n/a'} | {fmt(median_of(data, f'torch.{config}.{n}.epoch_seconds'), '.2f')} "
                    f"| {ips[n]:,.0f}{mark} | {fmt(median_of(data, f'torch.{config}.{n}.fastest_images_per_sec'), ',.0f')} "
                    f"| {fmt(median_of(data, f'torch.{config}.{n}.eval_seconds'), '.3f')} "
                    f"| {fmt(median_of(data, f'torch.{config}.{n}.peak_rss_mb'), '.0f')} | {wins.count(n)}/{len(wins)} |")
    return rows


def speedups(data, key="images_per_sec", what="median epochs"):
    """nn against PyTorch's best setting, round by round."""
    rows = [f"Speed-up over PyTorch's best setting of the same round ({what})", "",
            "| nn configuration | against PyTorch | nn img/s | PyTorch best img/s | speed-up (median of rounds) | each round |",
            "|---|---|---|---|---|---|"]
    nn_configs = sorted({k.rsplit(".", 1)[0] for k in data if k.endswith(f".{key}") and not k.startswith("torch.")})
    for c in nn_configs:
        t = c[:-5] if c.endswith("-bf16") else c
        nn_r = per_round(data, f"{c}.{key}")
        torch_r = {r: v for r, (_, v) in torch_best(data, t, key).items()}
        common = sorted(set(nn_r) & set(torch_r))
        if not common:
            continue
        ratios = [nn_r[r] / torch_r[r] for r in common]
        rows.append(f"| {c} | {t} fp32 | {statistics.median(nn_r[r] for r in common):,.0f} "
                    f"| {statistics.median(torch_r[r] for r in common):,.0f} | {statistics.median(ratios):.2f}x "
                    f"| {', '.join(f'{x:.2f}x' for x in ratios)} |")
    return rows if len(rows) > 4 else []


TEXT_CONFIGS = ("charlstm", "namesgru", "generate", "gpt", "gptgen")


def unit_of(data, config):
    units = per_round(data, f"{config}.unit") or per_round(data, f"torch.{config}.unit")
    return next(iter(units.values())) if units else "items"


def nn_thread_counts(data, config):
    """The thread counts bench_text ran a configuration at (keys <config>.t<N>.per_sec), most first."""
    found = {int(m.group(1)) for k in data for m in [re.fullmatch(rf"{config}\.t(\d+)\.per_sec", k)] if m}
    return sorted(found, reverse=True)


def text_table(data):
    """bench_text's recurrent models at each of nn's settings (its thread count: every core, nn's default, and
    one): the rate (unit/s, median run and fastest run of each turn, medians over turns), the best setting
    (by median over rounds) marked; for the char-LSTM the matrix products' FLOPs per second against the
    sgemm peak at that thread count."""
    rows = ["| nn configuration | threads | unit | per s | fastest run per s | ms/step | GFLOP/s | share of sgemm peak "
            "| peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in TEXT_CONFIGS:
        if f"{c}.per_sec" not in data:
            continue
        counts = nn_thread_counts(data, c)
        prefixes = [(n, f"{c}.t{n}") for n in counts] or [(median_of(data, f"{c}.threads"), c)]
        best = max(prefixes, key=lambda p: median_of(data, f"{p[1]}.per_sec") or 0)[1]
        for threads, key in prefixes:
            g = median_of(data, f"{key}.gflops")
            peak = median_of(data, "sgemm.peak_gflops_1thread" if threads == 1 else "sgemm.peak_gflops")
            share = f"{100 * g / peak:.0f}%" if peak and g else "-"
            mark = " **best**" if key == best and len(prefixes) > 1 else ""
            rows.append(f"| {c} | {fmt(threads, '.0f')} | {unit_of(data, c)} | {median_of(data, f'{key}.per_sec'):,.0f}{mark} "
                        f"| {fmt(median_of(data, f'{key}.fastest_per_sec'), ',.0f')} "
                        f"| {fmt(median_of(data, f'{key}.step_ms'), '.1f')} | {fmt(g, '.0f')} | {share} "
                        f"| {fmt(median_of(data, f'{key}.peak_rss_mb'), '.0f')} |")
    return rows if len(rows) > 2 else []


def torch_text_table(data, config):
    """Every setting of one text configuration, the best (by median rate) marked."""
    names = settings_of(data, config)
    if not names:
        return []
    rate = {n: median_of(data, f"torch.{config}.{n}.per_sec") for n in names}
    best = max(names, key=lambda n: rate[n])
    wins = [n for n, _ in torch_best(data, config, "per_sec").values()]
    unit = unit_of(data, config)
    rows = [f"PyTorch {config}: every setting (median over rounds; best of the round in how many rounds)", "",
            f"| OpenBLAS | kernels | torch threads | OMP_WAIT_POLICY | {unit}/s | fastest run {unit}/s | peak RSS MB "
            "| best in |",
            "|---|---|---|---|---|---|---|---|"]
    for n in names:
        blas, threads, wait, _ = SETTING.match(n).groups()
        kernels = per_round(data, f"torch.{config}.{n}.kernels")
        kernels = next(iter(kernels.values())) if kernels else "-"
        mark = " **best**" if n == best else ""
        rows.append(f"| {blas} | {kernels} | {threads} | {wait or 'n/a'} | {rate[n]:,.0f}{mark} "
                    f"| {fmt(median_of(data, f'torch.{config}.{n}.fastest_per_sec'), ',.0f')} "
                    f"| {fmt(median_of(data, f'torch.{config}.{n}.peak_rss_mb'), '.0f')} | {wins.count(n)}/{len(wins)} |")
    return rows


def text_speedups(data, key="per_sec", what="median runs"):
    """nn's recurrent models at their best setting of the round against PyTorch's best setting of the round,
    round by round; and nn at its default (every core) against the same."""
    rows = [f"Text models: speed-up of nn's best setting over PyTorch's best setting of the same round ({what})",
            "", "| configuration | unit | nn per s | nn threads | PyTorch best per s | PyTorch best setting "
            "| speed-up (median of rounds) | each round | nn on every core: speed-up, each round |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in TEXT_CONFIGS:
        nn_r, threads = per_round(data, f"{c}.{key}"), per_round(data, f"{c}.threads")
        best = torch_best(data, c, key)
        common = sorted(set(nn_r) & set(best))
        if not common:
            continue
        ratios = [nn_r[r] / best[r][1] for r in common]
        settings = sorted({best[r][0] for r in common})
        counts = nn_thread_counts(data, c)
        every = per_round(data, f"{c}.t{counts[0]}.{key}") if counts else {}
        default = ", ".join(f"{every[r] / best[r][1]:.2f}x" for r in common if r in every) or "-"
        rows.append(f"| {c} | {unit_of(data, c)} | {statistics.median(nn_r[r] for r in common):,.0f} "
                    f"| {', '.join(sorted({f'{threads[r]:.0f}' for r in common if r in threads}))} "
                    f"| {statistics.median(best[r][1] for r in common):,.0f} | {', '.join(settings)} "
                    f"| {statistics.median(ratios):.2f}x | {', '.join(f'{x:.2f}x' for x in ratios)} | {default} |")
    return rows if len(rows) > 4 else []


def main():
    data = parse(sys.argv[1])
    sections = [machine(data), nn_table(data), cnn_table(data)]
    sections += [torch_table(data, c) for c in torch_configs(data)]
    sections.append(speedups(data))
    sections.append(speedups(data, "fastest_images_per_sec", "fastest epoch of each run: the least disturbed by other jobs"))
    sections.append(text_table(data))
    sections += [torch_text_table(data, c) for c in torch_configs(data, "per_sec")]
    sections.append(text_speedups(data))
    sections.append(text_speedups(data, "fastest_per_sec", "fastest run of each turn: the least disturbed by other jobs"))
    if "torch.version" in data:
        sections.append([f"PyTorch {per_round(data, 'torch.version').popitem()[1]}"])
    print()
    print("\n\n".join("\n".join(s) for s in sections if s))


if __name__ == "__main__":
    main()
