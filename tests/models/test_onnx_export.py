"""ONNX export: the graph a TensorRT backend would consume has the declared contract and computes
the same embeddings as the PyTorch backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from inference_server.models.onnx_export import INPUT_NAMES, OUTPUT_NAME, export_encoder, main  # noqa: E402


def _shape(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def exported(encoder_backend, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "encoder.onnx"
    description = export_encoder(encoder_backend, path)
    return path, description


def test_graph_passes_checker_with_declared_contract(exported):
    path, description = exported
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    inputs = {i.name: i for i in model.graph.input}
    assert sorted(inputs) == sorted(INPUT_NAMES)
    for name in INPUT_NAMES:
        assert inputs[name].type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert _shape(inputs[name]) == ["batch", "seq"]
    (output,) = model.graph.output
    assert output.name == OUTPUT_NAME
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _shape(output) == ["batch", 384]
    assert description["dim"] == 384
    assert json.loads(path.with_name(path.name + ".json").read_text())["source_fingerprint"] == description["source_fingerprint"]


def test_graph_matches_torch_on_another_shape(exported, encoder_backend):
    from onnx.reference import ReferenceEvaluator

    path, _ = exported
    # Three texts of different lengths: a batch and sequence length unlike the traced sample,
    # with padding, so the dynamic axes and the pooling mask are both exercised.
    texts = ["sofa", "brushed nickel bathroom faucet with pop-up drain", "12 in. cast iron skillet"]
    tokens = encoder_backend.tokenizer(texts, padding=True, return_tensors="np", return_token_type_ids=False)
    feeds = {name: tokens[name].astype(np.int64) for name in INPUT_NAMES}
    (result,) = ReferenceEvaluator(str(path)).run(None, feeds)
    assert result.shape == (3, 384) and result.dtype == np.float32
    np.testing.assert_allclose(result, encoder_backend.encode(texts), atol=1e-4)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--output" in capsys.readouterr().out
