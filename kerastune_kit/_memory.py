"""Memory readings for TensorBoard: resident memory of this process and, on GPU, TensorFlow's
allocator peak. No psutil: ``/proc/self/status`` on Linux, ``resource.getrusage`` elsewhere.

Example:
    >>> reset_peak()
    >>> memory_mb()
    {'rss_mb': 812.4, 'peak_rss_mb': 840.1}
"""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_status_mb() -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = _STATUS.read_text(encoding="ascii")
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            parts = value.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) / 1024.0  # kB -> MB
    return out


def _rusage_peak_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _gpu_names() -> list[str]:
    if "tensorflow" not in sys.modules:
        return []
    import tensorflow as tf

    return [device.name.replace("/device:", "") for device in
            tf.config.list_logical_devices("GPU")]


def reset_peak() -> None:
    """Start a new peak: this process's peak resident memory (Linux) and each GPU's peak.

    Best effort; where the kernel does not allow it the peak covers the process's lifetime.
    """
    try:
        _CLEAR_REFS.write_text("5", encoding="ascii")
    except OSError:
        pass
    for name in _gpu_names():
        try:
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats(name)
        except (ValueError, RuntimeError):
            pass


def memory_mb() -> dict[str, float]:
    """``rss_mb`` (resident now), ``peak_rss_mb`` (since :func:`reset_peak`) and, per GPU,
    ``gpu_peak_mb`` (summed over GPUs) in megabytes; keys that cannot be read are left out."""
    status = _proc_status_mb()
    out: dict[str, float] = {}
    if "VmRSS" in status:
        out["rss_mb"] = round(status["VmRSS"], 1)
    peak = status.get("VmHWM", _rusage_peak_mb())
    if peak is not None:
        out["peak_rss_mb"] = round(peak, 1)
    gpu_peak = 0.0
    names = _gpu_names()
    for name in names:
        try:
            import tensorflow as tf

            gpu_peak += tf.config.experimental.get_memory_info(name)["peak"] / 2**20
        except (ValueError, RuntimeError, KeyError):
            pass
    if names:
        out["gpu_peak_mb"] = round(gpu_peak, 1)
    return out
