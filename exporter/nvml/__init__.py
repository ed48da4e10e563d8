"""NVIDIA GPU metrics from NVML (the official `nvidia-ml-py` binding, import name `pynvml`)."""
