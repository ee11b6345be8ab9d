"""What bench/torch_bench.py (MLPs) and bench/torch_cnn.py (CNNs) share: the
PyTorch settings a user could pick, and the driver that runs one child
process per setting and marks the best.

A setting is fixed when a process starts, so each runs in its own:

  - Debian's two OpenBLAS builds, chosen for that process alone with
    LD_LIBRARY_PATH (PyTorch's linear layers call BLAS sgemm; the OpenMP
    build follows torch.set_num_threads, the pthread build always runs its
    own threads on every core) and checked in /proc/self/maps,
  - torch.set_num_threads 1 and 2,
  - with 2 threads, OMP_WAIT_POLICY active and passive (libgomp's spinning
    or sleeping threads: PyTorch's own pool, and the OpenMP OpenBLAS's;
    with 1 thread no OpenMP team ever runs, so the policy does not apply),
  - OpenBLAS's kernels: the ones it picks for this CPU (OPENBLAS_CORETYPE
    removed from the environment), and, when the environment sets
    OPENBLAS_CORETYPE, the ones it names (e.g. Haswell: AVX2 only).

Names: BLAS_tTHREADS[_WAIT][_CORETYPE], e.g. openmp_t1, pthread_t2_passive,
openmp_t2_active_haswell. TORCH_SETTINGS="name name ..." runs only those."""
import os
import subprocess
import sys

BLAS_DIRS = {
    "openmp": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
    "pthread": "/usr/lib/x86_64-linux-gnu/openblas-pthread",
}


def blas_loaded():
    """Which OpenBLAS build this process really mapped (call in the child)."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    return ",".join(name for name, path in BLAS_DIRS.items() if path in maps) or "none"


def blas_kernels():
    """The kernels OpenBLAS chose (or was told to use), e.g. Cooperlake (call in the child)."""
    import ctypes
    lib = ctypes.CDLL("libopenblas.so.0")  # the copy already loaded
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def settings():
    """(name, environment, threads) of every setting."""
    forced = os.environ.get("OPENBLAS_CORETYPE", "")
    for kernels in ("", forced) if forced else ("",):
        for blas, path in BLAS_DIRS.items():
            for threads, wait in ((1, None), (2, "active"), (2, "passive")):
                env = {"LD_LIBRARY_PATH": path}
                if wait:
                    env["OMP_WAIT_POLICY"] = wait.upper()
                if kernels:
                    env["OPENBLAS_CORETYPE"] = kernels
                name = f"{blas}_t{threads}" + (f"_{wait}" if wait else "") + (f"_{kernels.lower()}" if kernels else "")
                yield name, env, threads


def chosen_settings(tool, rotate):
    """The settings to run (TORCH_SETTINGS, or all), starting at the rotate-th."""
    order = list(settings())
    if os.environ.get("TORCH_SETTINGS"):
        wanted = os.environ["TORCH_SETTINGS"].split()
        unknown = set(wanted) - {name for name, _, _ in order}
        if unknown:
            raise SystemExit(f"{tool}: unknown settings {sorted(unknown)}; known: {[n for n, _, _ in order]}")
        order = [s for s in order if s[0] in wanted]
    return order[rotate % len(order):] + order[: rotate % len(order)]


def run_settings(tool, script, config, child_args, keys, order, rate="images_per_sec"):
    """Runs `script --child config THREADS child_args...` at each setting of
    order; prints "torch.<config>.<setting>.<key> <value>" for each, then
    "torch.<config>.best <setting>" (the highest rate) and the best one's
    values. The child prints "key value" lines, among them the rate, blas
    (blas_loaded()) and kernels (blas_kernels())."""
    results = {}
    for name, setting_env, threads in order:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_CORETYPE")}
        env.update(setting_env)  # OPENBLAS_CORETYPE only where the setting names it
        blas = name.split("_")[0]
        out = subprocess.run([sys.executable, script, "--child", config, str(threads), *map(str, child_args)],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{tool}: {config} at {name} failed:\n{out.stderr}")
        r = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
        if r["blas"] != blas:
            raise SystemExit(f"{tool}: {name} loaded OpenBLAS {r['blas']}, not {blas}")
        if setting_env.get("OPENBLAS_CORETYPE", r["kernels"]) != r["kernels"]:
            raise SystemExit(f"{tool}: {name} runs OpenBLAS's {r['kernels']} kernels")
        results[name] = r
        for key in keys:
            print(f"torch.{config}.{name}.{key} {r[key]}")
        sys.stdout.flush()
    best = max(results, key=lambda n: float(results[n][rate]))
    print(f"torch.{config}.best {best}")
    for key in keys:
        print(f"torch.{config}.{key} {results[best][key]}")
    sys.stdout.flush()
