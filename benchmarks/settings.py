"""Run settings: the full run and the ``--quick`` smoke run differ only in these numbers."""

from __future__ import annotations

from dataclasses import dataclass, replace

MIB = 2**20


@dataclass(frozen=True)
class Settings:
    """How much measuring to do.

    Attributes:
        quick: tiny shapes (a smoke run), not the benchmark shapes.
        rounds: interleaved timing rounds; a contender's step time is the median over rounds.
        warmup_steps: untimed steps per contender before the first round.
        round_seconds: aim for this much time per contender per round (sets steps per round).
        budget_seconds: timing time per (shape, optimizer) beyond which fewer rounds are run
            (only when some contender is very slow, e.g. on a loaded machine).
        compile_repeats: fresh compilations per (shape, optimizer, JAX contender); median kept.
        single_compile_seconds: a contender whose first compilation takes longer than this is
            not compiled again for that shape and optimizer (its compile time is that one):
            the per-leaf steps of the compile-time trees take tens of seconds each, against
            which a repeat's spread is small.
        copy_bytes: buffer size of the copy-bandwidth measurement (CPU; a GPU uses 8×).
        copy_trials: timed copies per bandwidth method; the fastest is kept.
        eager_warmup_steps: untimed eager (un-jitted) steps per contender before the timed ones.
        eager_steps: timed eager steps per contender; its ms/step is their median.
    """

    quick: bool
    rounds: int
    warmup_steps: int
    round_seconds: float
    budget_seconds: float
    compile_repeats: int
    copy_bytes: int
    copy_trials: int
    eager_warmup_steps: int = 2
    eager_steps: int = 40
    single_compile_seconds: float = 5.0


def make_settings(quick: bool, repeats: int | None = None) -> Settings:
    """Settings of the full run, or of the ``--quick`` run; ``repeats`` overrides the rounds."""
    if quick:
        base = Settings(
            quick=True, rounds=3, warmup_steps=1, round_seconds=0.002, budget_seconds=2.0,
            compile_repeats=1, copy_bytes=32 * MIB, copy_trials=3, eager_steps=5,
        )
    else:
        base = Settings(
            quick=False, rounds=15, warmup_steps=3, round_seconds=0.1, budget_seconds=30.0,
            compile_repeats=3, copy_bytes=256 * MIB, copy_trials=8, eager_steps=40,
        )
    if repeats is None:
        return base
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}.")
    return replace(base, rounds=repeats)
