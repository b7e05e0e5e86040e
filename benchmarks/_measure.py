"""What the benchmarks share: the machine's description and the process's
memory, read from Linux's /proc.

Each benchmark is run as a script (`python benchmarks/speed.py`), so this
folder is on `sys.path` and `import _measure` finds this module. Keras and
TensorFlow are imported only inside `machine()`, so that the parent process
of `memory.py` stays small.
"""

import os
import platform


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
