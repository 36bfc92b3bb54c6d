"""Cost-model pieces against figures derived by hand: Einsum MACs, batch fixing, bytes per batch.

A two-operand Einsum does one multiply-accumulate per combination of its index values, so its MACs
are the product of every distinct index's size (broadcast dims: the larger one); the expected values
below are those products written out.
"""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper


@pytest.mark.parametrize(
    ("equation", "shapes", "expected"),
    [
        ("bij,bjk->bik", [[2, 3, 4], [2, 4, 5]], 2 * 3 * 4 * 5),
        ("b i j , b j k -> b i k", [[2, 3, 4], [2, 4, 5]], 2 * 3 * 4 * 5),  # spaces are ignored
        ("ij,jk", [[3, 4], [4, 6]], 3 * 4 * 6),  # implicit output
        ("ij,ij->", [[3, 4], [3, 4]], 3 * 4),
        ("bij,bjk->bik", [[1, 3, 4], [7, 4, 5]], 7 * 3 * 4 * 5),  # b broadcast: the larger size counts
        ("bij,bjk->bik", [[7, 3, 4], [1, 4, 5]], 7 * 3 * 4 * 5),
        ("...ij,...jk->...ik", [[2, 3, 4, 5], [1, 3, 5, 6]], 2 * 3 * 4 * 5 * 6),
        ("...ij,jk->...ik", [[2, 3, 4, 5], [5, 6]], 2 * 3 * 4 * 5 * 6),
        ("...ij,...jk->...ik", [[2, 4, 5], [2, 5, 6]], 2 * 4 * 5 * 6),  # one broadcast dim, "..." in the output too
        ("...ij,...jk->...ik", [[1, 4, 5], [1, 5, 6]], 4 * 5 * 6),  # a broadcast dim of 1 counts once, as 1
        ("i,j,k->ijk", [[2], [3], [4]], 0),  # three operands: not estimated
        ("ij,jk->ik", [[3, 4]], 0),
    ],
)
def test_einsum_macs_are_the_product_of_all_index_sizes(equation: str, shapes: list[list[int]], expected: int) -> None:
    from csa_cli.graph.costmodel import _einsum_macs

    assert _einsum_macs(equation, shapes) == expected


def _input(name: str, dims: list[int | str] | None) -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def test_fix_batch_sets_only_symbolic_leading_dims_of_real_inputs() -> None:
    from csa_cli.graph.costmodel import _fix_batch

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    inputs = [
        _input("w", ["n"]),  # an initializer listed as an input (older exporters): left alone
        _input("unshaped", None),
        _input("scalar", []),
        _input("fixed", [3, 8]),
        _input("images", ["batch", 3, 8, 8]),
        _input("unknown", [None, 4]),
    ]
    graph = helper.make_graph([], "g", inputs, [_input("images", ["batch", 3, 8, 8])], [weight])
    graph.value_info.append(_input("stale", ["batch", 2]))
    fixed = _fix_batch(helper.make_model(graph), 5)

    def dims(name: str) -> list[object]:
        (vi,) = [v for v in fixed.graph.input if v.name == name]
        if not vi.type.tensor_type.HasField("shape"):
            return ["no shape"]
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]

    assert dims("w") == ["n"] and dims("unshaped") == ["no shape"] and dims("scalar") == []
    assert dims("fixed") == [3, 8] and dims("images") == [5, 3, 8, 8] and dims("unknown") == [5, 4]
    assert list(fixed.graph.value_info) == []
    assert [d.dim_param for d in graph.input[4].type.tensor_type.shape.dim][:1] == ["batch"]  # the original is untouched


def test_bytes_read_at_a_batch_are_activations_per_image_plus_weights_once() -> None:
    from csa_cli.graph.costmodel import NodeCost

    cost = NodeCost(op="Conv", name="c", params=10, macs=100, activation_bytes_read=7, weight_bytes_read=40, bytes_written=3)
    assert cost.bytes_read_at(1) == 47 and cost.bytes_read_at(4) == 4 * 7 + 40
