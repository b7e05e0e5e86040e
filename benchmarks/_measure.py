"""What the benchmarks share: the machine's description and the process's
memory, read from Linux's /proc.

Each benchmark is run as a script (`python benchmarks/speed.py`), so this
folder is on `sys.path` and `import _measure` finds this module. Keras and
TensorFlow are imported only inside `machine()`, so that the parent process
of `memory.py` stays small.
"""

import os
import platform
import statistics


def status(field):
    """A field of /proc/self/status (`"VmRSS"`, `"VmHWM"`, ...) in bytes."""
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # the file gives kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Resets the high-water mark `VmHWM` to the current resident memory."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def memory_total():
    """The machine's memory (`MemTotal` of /proc/meminfo) in bytes."""
    with open("/proc/meminfo") as lines:
        for line in lines:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo."""
    with open("/proc/cpuinfo") as lines:
        for line in lines:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_without_keras():
    """Cores, CPU and memory, without importing Keras (memory.py's parent)."""
    return f"nproc {os.cpu_count()}, {cpu_model()}, {memory_total() / 2**30:.1f} GiB"


def machine():
    """One line for a table's header: cores, CPU, memory, and the versions of
    Python, Keras, its backend and keras_attention."""
    import keras

    import keras_attention

    backend = keras.backend.backend()
    versions = [
        f"Python {platform.python_version()}",
        f"Keras {keras.__version__}",
        f"backend {backend}",
    ]
    if backend == "tensorflow":
        import tensorflow as tf

        versions.append(f"TensorFlow {tf.__version__}")
    elif backend == "jax":
        import jax

        versions.append(f"JAX {jax.__version__}")
    versions.append(f"keras_attention {keras_attention.__version__}")
    return (
        f"nproc {os.cpu_count()}, {cpu_model()}, "
        f"{memory_total() / 2**30:.1f} GiB memory; " + ", ".join(versions)
    )


# A table is "quiet" only if the plain matmul figures of the run spread by at
# most this much ((max - min) / median) ...
MATMUL_SPREAD = 0.15
# ... and other processes used at most this fraction of the machine's CPU
# time (all cores) while it ran.
OTHERS_CPU = 0.03


def _busy_seconds():
    """CPU seconds the whole machine has spent busy since boot (/proc/stat:
    user, nice, system, irq, softirq and steal of all cores)."""
    with open("/proc/stat") as lines:
        fields = [int(n) for n in lines.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    """CPU seconds of this process and of its finished children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class Quiet:
    """The evidence that nothing else ran while a benchmark did.

    `check(label)` times the plain 2048² fp32 matmul (the callable given,
    returning GFLOP/s) at the start, between sections and at the end;
    `verdict()` compares its spread with `MATMUL_SPREAD` and the CPU time
    other processes used (from /proc/stat, less this process and its
    children) with `OTHERS_CPU`.
    """

    def __init__(self, matmul):
        import time

        self._matmul = matmul
        self._clock = time.monotonic
        self.figures = []
        self._start = (self._clock(), _busy_seconds(), _own_seconds())

    def check(self, label):
        gflops = self._matmul()
        self.figures.append((label, gflops))
        print(
            f"Plain fp32 matmul 2048x2048 ({label}): {gflops:.1f} GFLOP/s", flush=True
        )
        return gflops

    def others(self):
        """The fraction of all cores' time used by other processes so far."""
        wall, busy, own = self._start
        elapsed = (self._clock() - wall) * os.cpu_count()
        used = (_busy_seconds() - busy) - (_own_seconds() - own)
        return max(used, 0.0) / elapsed

    def verdict(self):
        """(quiet: bool, one line of evidence)."""
        values = sorted(g for _, g in self.figures)
        median = values[len(values) // 2]
        spread = (values[-1] - values[0]) / median
        others = self.others()
        quiet = spread <= MATMUL_SPREAD and others <= OTHERS_CPU
        line = (
            f"{'quiet' if quiet else 'NOT QUIET'}: matmul "
            + ", ".join(f"{g:.0f}" for _, g in self.figures)
            + f" GFLOP/s (spread {100 * spread:.0f} %, limit "
            f"{100 * MATMUL_SPREAD:.0f} %); other processes used "
            f"{100 * others:.1f} % of the CPU (limit {100 * OTHERS_CPU:.0f} %)"
        )
        return quiet, line


def spread(values):
    """`(median, low, high)` of a list of numbers."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[0], ordered[-1]


def numpy_matmul_gflops(runs=7):
    """GFLOP/s of a plain fp32 2048² matmul in NumPy, median of `runs`."""
    import time

    import numpy as np

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    # The framework's worker threads spin for a while after its last op
    # (OpenMP's block time): let them sleep, then warm NumPy's own.
    time.sleep(1.0)
    for _ in range(3):
        a @ a
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / spread(times)[0] / 1e9


def target_line(name, figure, target, *, low=None, high=None, unit="x", lower=False):
    """One line of `make bench`'s summary: met / missed, the figure and its
    spread. A ratio target (`lower=False`) is met when the whole spread
    (`low`) reaches it, "not shown" when only the median does; a limit
    (`lower=True`, e.g. memory) is met when the figure stays within it."""
    if figure is None:
        status = "not measured"
    elif lower:
        status = "met" if figure <= target else "MISSED"
    elif (low if low is not None else figure) >= target:
        status = "met"
    else:
        status = "not shown (within spread)" if figure >= target else "MISSED"
    shown = "-" if figure is None else f"{figure:.2f}{unit}"
    if low is not None and figure is not None:
        shown += f" ({low:.2f}-{high:.2f})"
    sign = "<=" if lower else ">="
    return f"{status}: {name}: {shown}, target {sign} {target}{unit}"


def write_summary(name, lines):
    """Prints the summary `lines` and keeps them in benchmarks/last/<name>.txt
    (not committed), which `make bench` prints again at its end."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "last")
    os.makedirs(folder, exist_ok=True)
    print("\n" + "\n".join(lines), flush=True)
    with open(os.path.join(folder, f"{name}.txt"), "w") as out:
        out.write("\n".join(lines) + "\n")
