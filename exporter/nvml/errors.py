"""How NVML errors are named in labels and what each one means for the collector.

Codes are read from the injected binding module so a fake at the `pynvml` boundary classifies the same
way as the real library.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any


def _snake(name: str) -> str:
    return re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def error_label(exc: BaseException) -> str:
    """A bounded label value: `not_supported`, `gpu_is_lost`, ... or the exception type for non-NVML errors."""
    cls_name = type(exc).__name__
    if cls_name.startswith("NVMLError_"):
        return _snake(cls_name[len("NVMLError_"):])
    code = getattr(exc, "value", None)
    if cls_name == "NVMLError" and isinstance(code, int):
        return f"code_{code}"
    return _snake(cls_name)


@dataclass(frozen=True)
class ErrorCodes:
    """The NVML return codes the collector treats specially."""

    not_supported: frozenset[int]  # the metric is omitted for this device from now on
    gpu_lost: frozenset[int]  # the device is gone: stop querying it this pass, gpu_up 0
    library_down: frozenset[int]  # NVML itself is unusable: shut down and re-initialise with backoff
    not_found: int
    timeout: int
    library_not_found: int
    driver_not_loaded: int
    no_permission: int

    @classmethod
    def from_module(cls, nvml: ModuleType | Any) -> "ErrorCodes":
        def code(name: str) -> int:
            return int(getattr(nvml, name))

        return cls(
            not_supported=frozenset(
                {code("NVML_ERROR_NOT_SUPPORTED"), code("NVML_ERROR_FUNCTION_NOT_FOUND"), code("NVML_ERROR_NO_PERMISSION")}
            ),
            gpu_lost=frozenset({code("NVML_ERROR_GPU_IS_LOST")}),
            library_down=frozenset(
                {
                    code("NVML_ERROR_UNINITIALIZED"),
                    code("NVML_ERROR_DRIVER_NOT_LOADED"),
                    code("NVML_ERROR_LIB_RM_VERSION_MISMATCH"),
                    code("NVML_ERROR_LIBRARY_NOT_FOUND"),
                }
            ),
            not_found=code("NVML_ERROR_NOT_FOUND"),
            timeout=code("NVML_ERROR_TIMEOUT"),
            library_not_found=code("NVML_ERROR_LIBRARY_NOT_FOUND"),
            driver_not_loaded=code("NVML_ERROR_DRIVER_NOT_LOADED"),
            no_permission=code("NVML_ERROR_NO_PERMISSION"),
        )

    def down_reason(self, code: int | None) -> str:
        """The `nvidia_gpu_nvml_status{reason}` value for a failed init or a lost library."""
        if code == self.library_not_found:
            return "library_not_found"
        if code == self.driver_not_loaded:
            return "driver_not_loaded"
        if code == self.no_permission:
            return "no_permission"
        return "error"
