"""Running a torch network under ONNX Runtime: the in-memory export and the session.

``export_onnx(network, example)`` exports a network (in eval mode) with a variable batch
size to ONNX bytes, nothing written to disk; ``OnnxNetwork`` runs those bytes on ONNX
Runtime's CPU provider and is called like the torch module (a batch tensor in, a tensor
out). Pipelines decide whether to use it (``pipelines.hand_orientation.model`` checks
that the two runtimes agree and times them); this module only does the mechanics.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

#: ONNX opset of the export (supported by torch's TorchScript exporter and ORT ≥ 1.12).
ONNX_OPSET = 17


class OnnxNetwork:
    """A network exported to ONNX, run by ONNX Runtime; called like the torch module.

    ``threads`` is ONNX Runtime's intra-op thread count. Its threads do not spin-wait
    for work after a run, so they leave the cores to the stages that follow (a film's
    rotation, the encoding).
    """

    def __init__(self, onnx_model: bytes, *, threads: int) -> None:
        import onnxruntime as ort  # optional: only this runtime needs it

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        (output,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(np.asarray(output))


def export_onnx(network: torch.nn.Module, example: torch.Tensor) -> bytes:
    """``network`` (in eval mode) as an ONNX model, in memory; ``example`` is one input
    batch (its batch size stays variable in the model)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns that it is deprecated; the torch.export
        # one needs onnxscript. A future torch without it makes the export fail, and
        # the caller stays on torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            network,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes file objects
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()
