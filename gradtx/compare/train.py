"""Training one optimizer on one task: jitted steps, each timed, with a progress bar."""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax

from gradtx.compare.deps import require
from gradtx.compare.tasks import Task
from gradtx.core import GradientTransformation, apply_updates


@dataclass(frozen=True)
class RunResult:
    """One optimizer's run.

    Attributes:
        name: the optimizer's ``--optimizers`` name.
        hyperparameters: the keyword arguments it was built with.
        losses: ``losses[k]`` is the training loss (on the step's batch) at the parameters
            update ``k`` started from; ``steps`` values.
        final_loss: the task's final loss after the last update.
        median_step_us: the median wall time of one jitted update, after compilation.
        window: the number of steps the curve is averaged over for :meth:`steps_to`.
        eval_steps: the steps after which the test accuracy was measured (0 and every epoch).
        accuracies: the test accuracy at each of ``eval_steps``; empty if the task has none.
        start_loss: the task's final-loss measurement at the starting parameters (the same
            for every optimizer of a run); NaN when not measured.
        test_size: the number of test examples behind ``accuracies`` (0: none).
        lr_source: how the learning rate was chosen: ``"sweep"`` (tuned for the task, see
            :mod:`gradtx.compare.presets`), ``"example"`` (the registry's example value) or
            ``"--lr"`` (given on the command line).
    """

    name: str
    hyperparameters: Mapping[str, Any]
    losses: list[float]
    final_loss: float
    median_step_us: float
    window: int = 1
    eval_steps: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    start_loss: float = math.nan
    test_size: int = 0
    lr_source: str = ""

    @property
    def test_accuracy(self) -> float | None:
        return self.accuracies[-1] if self.accuracies else None

    def accuracy_interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """The 95% Wilson score interval of the final test accuracy over ``test_size``
        examples; None without one."""
        p, n = self.test_accuracy, self.test_size
        if p is None or n <= 0:
            return None
        scale = 1 + z * z / n
        center = (p + z * z / (2 * n)) / scale
        half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return max(0.0, center - half), min(1.0, center + half)

    def curve(self) -> list[float]:
        """The loss after ``k`` updates for k = 0..steps: the trailing mean of ``losses`` over
        ``window`` steps, then ``final_loss``. With ``window == 1`` it is the exact loss."""
        out = []
        for k in range(len(self.losses)):
            recent = self.losses[max(0, k - self.window + 1) : k + 1]
            out.append(math.fsum(recent) / len(recent))
        return [*out, self.final_loss]

    def plotted(self) -> list[float]:
        """The curve the plot draws: :meth:`curve`, without its last point for minibatch
        tasks (``window > 1``), where ``final_loss`` is another measurement (the whole
        training set, or held-out data) than the running mean before it."""
        return self.curve()[:-1] if self.window > 1 else self.curve()

    def steps_to(self, target: float) -> int | None:
        """The first step from which :meth:`plotted` stays at or below ``target`` to the end;
        None if its last point is above it (a NaN is above any target). Dipping below the
        target and coming back up does not count, so the number never contradicts the plot."""
        curve = self.plotted()
        above = [k for k, loss in enumerate(curve) if not loss <= target]
        if not above:
            return 0
        return None if above[-1] == len(curve) - 1 else above[-1] + 1


def train(
    task: Task,
    name: str,
    opt: GradientTransformation,
    hyperparameters: Mapping[str, Any],
    steps: int,
    eval_params: Callable[[Any, Any], Any] | None = None,
) -> RunResult:
    """Runs ``steps`` jitted updates of ``opt`` on ``task``, timing each after a compile step,
    and measures the test accuracy at the start and after every epoch (outside the timing).

    ``eval_params(state, params)``, if given, gives the parameters to evaluate at (the final
    loss and the test accuracy) from the optimizer state and the training parameters:
    :func:`gradtx.schedule_free_eval_params` for the Schedule-Free optimizers, whose training
    parameters are not the ones to evaluate. The training-loss curve is always at the training
    parameters (it is the loss the step differentiates)."""
    tqdm = require("tqdm", "tqdm", "progress bars").tqdm
    # Bars only on a terminal: redirected to a file, their carriage-return updates are noise.
    show_bars = sys.stderr.isatty()

    @jax.jit
    def step(params: Any, state: Any, batch: tuple) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(task.loss_fn)(params, batch)
        updates, state = opt.update(grads, state, params)
        return apply_updates(params, updates), state, loss

    def at_eval_params(fn: Callable[[Any], jax.Array]) -> Callable[[Any, Any], jax.Array]:
        if eval_params is None:
            return jax.jit(lambda params, state: fn(params))
        return jax.jit(lambda params, state: fn(eval_params(state, params)))

    final_loss_fn = at_eval_params(task.final_loss_fn)
    accuracy_fn = at_eval_params(task.accuracy_fn) if task.accuracy_fn is not None else None
    params, state = task.params, opt.init(task.params)
    # The first call compiles; run it once on a batch and throw the result away so that the
    # timings below are steady-state.
    jax.block_until_ready(step(params, state, next(task.batches())))

    losses: list[float] = []
    times: list[float] = []
    eval_steps: list[int] = []
    accuracies: list[float] = []

    def evaluate(k: int) -> None:
        if accuracy_fn is not None:
            eval_steps.append(k)
            accuracies.append(float(accuracy_fn(params, state)))

    evaluate(0)
    start_loss = float(final_loss_fn(params, state))
    batches = task.batches()
    # leave=True keeps one finished bar per optimizer on screen: a record of the run.
    with tqdm(total=steps, desc=f"{name:>12}", unit="step", file=sys.stderr,
              disable=not show_bars) as bar:
        for k in range(1, steps + 1):
            batch = next(batches)
            t0 = time.perf_counter()
            # Blocking is needed for an honest time: jax dispatches asynchronously.
            params, state, loss = jax.block_until_ready(step(params, state, batch))
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
            if k % task.window == 0:  # an epoch ends (every step for full-batch tasks)
                evaluate(k)
                bar.set_postfix_str(f"loss {losses[-1]:.3g}", refresh=False)
            bar.update()
    if eval_steps and eval_steps[-1] != steps:
        evaluate(steps)  # the reported accuracy is that of the final parameters
    return RunResult(
        name=name,
        hyperparameters=dict(hyperparameters),
        losses=losses,
        final_loss=float(final_loss_fn(params, state)),
        median_step_us=statistics.median(times) * 1e6,
        window=task.window,
        eval_steps=eval_steps,
        accuracies=accuracies,
        start_loss=start_loss,
        test_size=task.test_size,
    )
