"""Tokens/s and MFU (model FLOPs utilisation) for the training log of `prm train`.

    prm train --config configs/train.yaml peak_tflops=989   # MFU against a peak of your own

MFU = model FLOPs of the step / (seconds x peak FLOP/s of the devices). Model FLOPs of a token: 6 N (forward
and backward over N parameters of the transformer body and head, embeddings excluded: a lookup, no matmul)
plus causal attention, 6 x layers x hidden x (tokens it attends to; half its example's length on average):
summed over a packed row's examples, 6 x layers x hidden x sum(n_i^2) / 2 x 2 (forward 2, backward 4 FLOPs
a multiply-add, halved by the causal mask). Frozen layers and gradient checkpointing are not discounted or
added (the usual MFU convention: recomputation is not useful work). The peak is dense bf16 tensor-core
FLOP/s, looked up by the GPU's name, or `train.peak_tflops`; on CPU without that setting MFU is n/a.
"""

from __future__ import annotations

from typing import Any

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = [
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A6000", 155.0),
    ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0),
]


def peak_flops(setting_tflops: float, device_name: str | None) -> float | None:
    """FLOP/s of one device: the setting when > 0, else the table's entry for `device_name` (None: unknown)."""
    if setting_tflops > 0:
        return setting_tflops * 1e12
    if device_name:
        for key, tflops in PEAK_BF16_TFLOPS:
            if key.lower() in device_name.lower():
                return tflops * 1e12
    return None


def model_shape(model: Any) -> tuple[int, int, int]:
    """(parameters outside the embeddings, layers, hidden size) of a (peft-wrapped) PRM. Under ZeRO-3 a
    parameter's full size is ds_numel."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = inner.get_input_embeddings()
    emb_ids = {id(p) for p in emb.parameters()}
    n = sum(getattr(p, "ds_numel", p.numel()) for p in inner.parameters() if id(p) not in emb_ids)
    cfg = inner.config
    return n, int(cfg.num_hidden_layers), int(cfg.hidden_size)


def step_flops(n_params: int, layers: int, hidden: int, tokens: int, sum_sq_lengths: int) -> float:
    """Model FLOPs (forward + backward) of `tokens` tokens in examples whose squared lengths sum to
    `sum_sq_lengths`."""
    return 6.0 * n_params * tokens + 6.0 * layers * hidden * sum_sq_lengths
