"""A description of the machine and software the benchmark ran on."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import jax
import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    name = line.split("=", 1)[1].strip().strip('"')
                    return f"{name} ({platform.platform()})"
    except OSError:
        pass
    return platform.platform()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    """Label -> value for the report's machine section."""
    devices = jax.devices()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info = {
        "CPU": _cpu_model(),
        "CPU cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "RAM": _ram(),
        "OS": _os(),
        "Python": sys.version.split()[0],
        "jax / jaxlib": f"{jax.__version__} / {_version('jaxlib')}",
        "optax": _version("optax"),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "JAX backend": jax.default_backend(),
        "JAX devices": ", ".join(f"{d.platform}:{d.device_kind}" for d in devices),
        "torch threads": str(torch.get_num_threads()),
        "torch CUDA": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no",
    }
    if hasattr(os, "getloadavg"):
        info["load average at start (1/5/15 min)"] = " / ".join(
            f"{x:.2f}" for x in os.getloadavg()
        )
    return info
