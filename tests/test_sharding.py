"""gradtx under jax.sharding on 8 simulated CPU devices (docs/sharding.md states what is checked
here): init keeps each parameter's sharding, eagerly and jitted; elementwise optimizers add no
collective to a sharded step; global-norm clipping adds one all-reduce; sharded runs equal
single-device ones; ZeRO-style sharded state stays sharded; the page's examples run.

JAX fixes its device count when it starts, and this process has started it with one device, so
the checks run in a subprocess (tests/sharding_checks.py) that writes what it measured to a JSON
file; the tests below assert on it.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from gradtx.optimizers.registry import OPTIMIZERS

# Every test here shares one expensive module fixture: one worker runs them all, so that
# it is built once (otherwise each xdist worker that gets one of them builds its own).
pytestmark = pytest.mark.xdist_group("sharding")

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEVICES = 8
MESHES = [f"{layout}/{axes}" for layout in ("data8", "data4_model2")
          for axes in ("Auto", "Explicit")]
ONE_AXIS = ["data8/Auto", "data8/Explicit"]
NAMES = [info.name for info in OPTIMIZERS]
# These reduce over each whole leaf (trust ratios' norms, Adafactor's row and column means,
# Muon's matrix products) or each row (SparseAdam's test of which rows are present); every other
# registry entry works elementwise.
FACTORED = ("adafactor", "adafactor_torch", "sm3")  # SM3: a statistic per index of each axis
# L-BFGS keeps torch's layout: one flat vector over all parameters (its direction, history and
# previous gradient), which a sharded step assembles from every leaf.
FLAT_STATE = ("lbfgs",)
# Prodigy and D-Adaptation estimate one step size from sums over every parameter: a sharded
# step adds the all-reduce of those scalars.
TREE_WIDE = ("prodigy", "dadapt_adamw", "dog", "dowg", "mechanize_sgd")
# NovoGrad divides each leaf by the root of a moving average of its squared norm.
PER_LEAF_NORM = ("novograd",)
# Mechanic keeps vectors of num_betas entries (its r, m, v, s), one set for all leaves.
OTHER_SHAPED = ("mechanize_sgd",)
# SOAP keeps a d x d statistic and eigenbasis per dimension of each leaf (state of other shapes);
# its step contracts the leaf along every dimension and decomposes whole matrices.
PRECONDITIONED = ("soap",)
LAYERWISE = ("lamb", "lars", "mars", *FACTORED, "sparse_adam", "muon", *FLAT_STATE, *TREE_WIDE,
             *PER_LEAF_NORM,
             *PRECONDITIONED)
ELEMENTWISE = [name for name in NAMES if name not in LAYERWISE]
# Relative difference allowed between a sharded and a single-device run after 3 float32 steps:
# reductions split over devices add in another order (measured: at most 8e-7).
TOLERANCE = 5e-6
# SOAP's first eigenbases come from float32 eigendecompositions of statistics of rank 1 to 3,
# whose eigenvectors turn with the last bits of their sums (nearly equal eigenvalues): what it
# determines (tests/sharding_checks.py: parameters, first moment, statistics) differs by 2.1e-3
# (data8) and 3.6e-3 (data4_model2) from a single device, as any other summation order would.
SOAP_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sharding") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sharding_checks", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


def ndims(result_type: str) -> list[int]:
    """The rank of each array in an HLO result type such as ``(f32[], f32[16]{0})``."""
    return [len(dims.split(",")) if dims else 0
            for dims in re.findall(r"\w+\[([^\]]*)\]", result_type)]


def vector_like(result_type: str) -> bool:
    """Whether every array in an HLO result type has at most one dimension longer than 1
    (torch's Adafactor keeps its statistics as (n, 1) and (1, m): vectors all the same)."""
    return all(sum(int(d) > 1 for d in dims.split(",") if d) <= 1
               for dims in re.findall(r"\w+\[([^\]]*)\]", result_type))


def largest_array(found: dict[str, list[str]]) -> int:
    """The element count of the largest array any collective in ``found`` carries."""
    return max(int(np.prod([int(d) for d in dims.split(",") if d]))
               for types in found.values() for t in types
               for dims in re.findall(r"\w+\[([^\]]*)\]", t))


def communication(entry: dict) -> dict[str, list[str]]:
    return {kind: types for kind, types in entry["collectives"].items() if types}


def stepped(results, names=NAMES):
    """(mesh, name) of every optimizer whose sharded step the checks compiled."""
    return [(mesh, name) for mesh in MESHES for name in names
            if "collectives" in results["meshes"][mesh][name]]


def test_checks_ran_on_eight_devices(results):
    assert results["devices"] == DEVICES
    assert sorted(results["meshes"]) == sorted(MESHES)
    for mesh in MESHES:
        assert set(NAMES) <= set(results["meshes"][mesh])


@pytest.mark.parametrize("mode", ["init_eager", "init_jit"])
@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("name", NAMES)
def test_init_keeps_parameter_sharding(results, name, mesh, mode):
    report = results["meshes"][mesh][name][mode]
    if name in FLAT_STATE:
        assert report["checked"] == 0
        assert {path.rsplit(".", 1)[-1] for path in report["other"]} == {
            "d", "old_dirs", "old_stps", "ro", "prev_flat_grad"}
        return
    assert report["checked"] >= 2  # every entry keeps per-parameter state for some leaves
    assert report["mismatched"] == []
    # Only the Adafactors (their factored statistics) and SOAP (its per-dimension matrices)
    # keep non-scalar state of other shapes.
    assert not report["other"] or name in FACTORED + PRECONDITIONED + OTHER_SHAPED


def test_both_axis_kinds_and_meshes_step_every_optimizer(results):
    pairs = stepped(results)
    for mesh in ("data8/Auto", "data4_model2/Auto"):
        assert {name for m, name in pairs if m == mesh} == set(NAMES)
    for mesh in ("data8/Explicit", "data4_model2/Explicit"):
        assert "adam" in {name for m, name in pairs if m == mesh}


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_step_has_no_collectives(results, name, mesh):
    entry = results["meshes"][mesh][name]
    if "collectives" in entry:
        assert communication(entry) == {}
    else:
        assert mesh.endswith("Explicit")  # with Explicit axes only Adam's step is compiled


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
@pytest.mark.parametrize("name", ["lamb", "lars", "mars", *TREE_WIDE, *PER_LEAF_NORM])
def test_norm_and_sum_steps_all_reduce_scalars_only(results, name, mesh):
    """Trust ratios' norms, MARS's clipping norm and Prodigy's / D-Adaptation's sums: scalars
    cross devices, no parameter-sized array does."""
    found = communication(results["meshes"][mesh][name])
    assert set(found) == {"all-reduce"}
    assert all(rank == 0 for t in found["all-reduce"] for rank in ndims(t))


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
@pytest.mark.parametrize("name", FACTORED)
def test_adafactor_step_moves_statistics_not_parameters(results, name, mesh):
    found = communication(results["meshes"][mesh][name])
    assert set(found) <= {"all-reduce", "all-gather"}
    assert found
    assert all(vector_like(t) for types in found.values() for t in types)


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
def test_sparse_adam_step_moves_row_flags_not_parameters(results, mesh):
    """Which rows are present is a reduction along each row: only row-sized (or smaller)
    values cross devices, and none where rows are whole on each device."""
    found = communication(results["meshes"][mesh]["sparse_adam"])
    assert set(found) <= {"all-reduce", "all-gather"}
    assert all(rank <= 1 for types in found.values() for t in types for rank in ndims(t))


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
def test_muon_step_moves_matrix_pieces_no_larger_than_a_parameter(results, mesh):
    """Newton–Schulz multiplies whole matrices (X X^T), so a split matrix is gathered or its
    partial products summed; no collective carries more than the largest parameter (16 x 8)."""
    found = communication(results["meshes"][mesh]["muon"])
    assert found and set(found) <= {"all-reduce", "all-gather", "collective-permute"}
    assert largest_array(found) <= 16 * 8


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
def test_muon_batched_by_shape_adds_a_relayout_of_the_stack(results, mesh):
    """batch_by_shape stacks "w" and "v" (one shape, split along different axes): an all-to-all
    brings them to one layout and no collective carries more than the stack of the two."""
    found = communication(results["meshes"][mesh]["muon_batched"])
    assert "all-to-all" in found and "all-to-all" not in communication(
        results["meshes"][mesh]["muon"])
    assert set(found) <= {"all-reduce", "all-gather", "collective-permute", "all-to-all"}
    assert largest_array(found) <= 2 * 16 * 8
    assert results["meshes"][mesh]["muon_batched"]["relative_difference"] <= TOLERANCE


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
def test_soap_step_gathers_split_leaves(results, mesh):
    """SOAP contracts each leaf along every dimension and decomposes whole statistics: a split
    leaf is gathered."""
    assert "all-gather" in communication(results["meshes"][mesh]["soap"])


@pytest.mark.parametrize("mesh", ["data8/Auto", "data4_model2/Auto"])
def test_lbfgs_step_gathers_its_flat_vector(results, mesh):
    """torch's flat layout: the leaves are gathered into one vector and the step is split back;
    the sharded run still equals the single-device one (test_sharded_runs_equal_...)."""
    found = communication(results["meshes"][mesh]["lbfgs"])
    assert "all-gather" in found and "all-reduce" in found


SPLIT = {"float32['b']": [16], "float32['v']": [16, 8], "float32['w']": [16, 8]}


@pytest.mark.parametrize(("layout", "buffers"), [
    ("data8", {"float32": [8 * 4 + 1], **SPLIT}),  # "r" and "s" replicated: one buffer
    ("data4_model2", {"float32": [1], "float32['r']": [8, 4], **SPLIT}),  # "r" split on model
])
def test_multi_tensor_keeps_split_leaves_apart_and_adds_no_collectives(results, layout,
                                                                       buffers):
    """With the parameters' shardings, the replicated leaves share one buffer and each split
    leaf keeps its own, so the step stays collective-free and equals Adam's."""
    run = results["multi_tensor"][layout]
    assert run["buffers"] == buffers
    assert communication(run) == {}
    assert run["relative_difference"] <= TOLERANCE
    # Without shardings an eager init refuses a split leaf, naming it.
    assert run["unsharded_init_error"] and "shardings" in run["unsharded_init_error"]
    assert "['b']" in run["unsharded_init_error"]


@pytest.mark.parametrize("mesh", ONE_AXIS)
@pytest.mark.parametrize("base", ["sgd_plain", "adam"])
def test_clipping_adds_one_all_reduce(results, base, mesh):
    runs = results["meshes"][mesh]
    assert communication(runs[base]) == {}
    found = communication(runs["clip+" + base])
    assert list(found) == ["all-reduce"]
    assert len(found["all-reduce"]) == 1
    assert all(rank == 0 for rank in ndims(found["all-reduce"][0]))  # scalars: partial sums


def test_clipping_adds_one_all_reduce_when_leaves_split_over_the_whole_2d_mesh(results):
    runs = results["fsdp_clipping"]
    assert communication(runs["sgd_plain"]) == {}
    found = communication(runs["clip+sgd_plain"])
    assert list(found) == ["all-reduce"] and len(found["all-reduce"]) == 1


@pytest.mark.parametrize("mesh", ["data4_model2/Auto", "data4_model2/Explicit"])
def test_clipping_on_mixed_2d_layout_all_reduces_scalars_only(results, mesh):
    found = communication(results["meshes"][mesh]["clip+adam"])
    assert list(found) == ["all-reduce"]
    assert all(rank == 0 for t in found["all-reduce"] for rank in ndims(t))


def test_sharded_runs_equal_single_device_runs(results):
    differences = {
        f"{mesh} {name}": entry["relative_difference"]
        for mesh, runs in results["meshes"].items()
        for name, entry in runs.items() if "relative_difference" in entry
    }
    differences.update({f"fsdp {name}": entry["relative_difference"]
                        for name, entry in results["fsdp_clipping"].items()})
    assert len(differences) >= 2 * len(NAMES)
    too_far = {k: v for k, v in differences.items()
               if not v <= (SOAP_TOLERANCE if k.endswith(" soap") else TOLERANCE)}
    assert too_far == {}


@pytest.mark.parametrize("mesh", MESHES)
def test_step_jitted_without_shardings_keeps_them(results, mesh):
    assert results["meshes"][mesh]["adam"]["free_step_mismatched"] == []


@pytest.mark.parametrize("axes", ["Auto", "Explicit"])
def test_zero_style_state_stays_sharded(results, axes):
    zero = results["zero"][axes]
    assert zero["init_sharded_as_asked"]
    assert zero["state_sharded_after_steps"] == []
    assert zero["split_leaves"] >= 8  # both moments of the four leaves whose first axis splits
    assert zero["split_bytes_device0"] * DEVICES == zero["split_bytes_total"]
    # Each device updates its slice of the state; the updates are gathered to every device.
    assert set(communication(zero)) == {"all-gather"}
    assert zero["relative_difference"] <= TOLERANCE


@pytest.mark.parametrize("axes", ["Auto", "Explicit"])
def test_data_parallel_optimizer_adds_no_communication(results, axes):
    runs = results["data_parallel"][axes]
    gradient_only = communication(runs["sgd_plain"])
    assert list(gradient_only) == ["all-reduce"]  # the gradient's mean over the split batch
    for name in ("adam", "clip+adam"):
        assert communication(runs[name]) == gradient_only
        # The eager init replicates the state like the parameters.
        assert runs[name]["state"]["mismatched"] == [] and runs[name]["state"]["checked"] == 4
        assert runs[name]["relative_difference"] <= TOLERANCE


def test_docs_examples_run(results):
    docs = results["docs"]
    assert docs["error"] is None, docs["error"]
    assert docs["blocks"] >= 5
    assert docs["counts"] == {"all-reduce": 1}  # what the page says it prints
