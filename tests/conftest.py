"""Test-wide settings: float64 in JAX (parity is checked to rtol 1e-9) and in torch."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def torch_float64():
    """torch with float64 as its default dtype, so that torch's scalar state (NAdam's
    ``mu_product``, step counters) is float64 like gradtx's under x64."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True, scope="session")
def _torch_on_one_thread():
    """torch on one thread: the references' tensors are tiny, the test workers already use
    every core, and torch's worker threads contending with XLA's made small (sparse) ops ten
    times slower."""
    import torch

    torch.set_num_threads(1)
    yield
