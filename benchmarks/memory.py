"""Memory of a compiled step, from XLA's buffer assignment (``compiled.memory_analysis()``)."""

from __future__ import annotations

from typing import Any, NamedTuple


class MemoryRow(NamedTuple):
    """Bytes of one compiled step.

    ``resident`` is params + grads + state, which any implementation must hold. The step's
    peak is about ``argument + output - alias + temp`` (donated outputs reuse their input
    buffers), so ``extra = peak - resident`` is what the step needs beyond its inputs.
    ``device_peak_delta`` is the measured rise of the device's peak over one step (GPU only).
    """

    resident: int
    argument: int
    output: int
    alias: int
    temp: int
    device_peak_delta: int | None

    @property
    def extra(self) -> int:
        return self.argument + self.output - self.alias + self.temp - self.resident

    @property
    def extra_fraction(self) -> float:
        return self.extra / self.resident


def analyse(compiled: Any, resident: int, device_peak_delta: int | None) -> MemoryRow | None:
    """The memory row of a compiled step, or ``None`` where the backend gives no analysis."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return MemoryRow(
        resident,
        stats.argument_size_in_bytes,
        stats.output_size_in_bytes,
        stats.alias_size_in_bytes,
        stats.temp_size_in_bytes,
        device_peak_delta,
    )
