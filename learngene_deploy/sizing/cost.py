"""Analytic cost of a timm ViT: parameters, weight bytes, activation memory, FLOPs and bytes moved.

Pure arithmetic on an :class:`~learngene_deploy.models.vit.ArchSpec` (no torch), so size selection is
instant and works without building models.

FLOPs count what ``torch.utils.flop_counter.FlopCounterMode`` counts for a timm ViT: 2 per multiply-add in
the patch-embedding convolution, every Linear layer and the two attention matmuls (QKᵀ and AV); LayerNorm,
softmax, GELU and residual adds are not counted (they are memory-bound and enter through ``bytes_moved``).

The attention matmuls are counted even where FlopCounterMode misses them: some torch releases (2.14.1) register no
FLOP formula for the CPU fused-attention op behind ``F.scaled_dot_product_attention`` and count it as 0. The test
compares against the count with timm's ``fused_attn`` off (the same matmuls, written out), which every torch counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from learngene_deploy.models.vit import ArchSpec

# Bytes per weight and per activation element at each precision, per backend.
# int8: matmul weights are 8-bit, the rest (embeddings, norms, biases) stays fp32. ONNX Runtime's dynamic
# quantization keeps fp32 activations; TensorRT and OpenVINO (static, calibrated) run 8-bit activations.
WEIGHT_BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0}
_ACTIVATION_BYTES = {
    ("fp32", None): 4.0,
    ("fp16", None): 2.0,
    ("int8", "onnxruntime"): 4.0,
    ("int8", None): 1.0,
}

MB = 1024.0 * 1024.0


def activation_bytes_per_element(precision: str, backend: str | None = None) -> float:
    return _ACTIVATION_BYTES.get((precision, backend), _ACTIVATION_BYTES[(precision, None)])


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one ViT, split by role."""

    matmul: int  # weights of Linear layers inside blocks and the head (quantisable)
    other: int  # embeddings, norms, biases, class token, position embedding

    @property
    def total(self) -> int:
        return self.matmul + self.other


def count_params(arch: ArchSpec) -> ParamCount:
    """Exact parameter count of ``build_vit(arch)``."""
    d, h, k = arch.embed_dim, arch.mlp_hidden, arch.num_classes
    patch = arch.in_chans * arch.patch_size**2 * d + d
    pos = arch.num_tokens * d
    cls = d if arch.layout == "cls" else 0
    block_matmul = 3 * d * d + d * d + d * h + h * d
    block_other = 4 * d + 3 * d + d + h + d  # two LayerNorms, qkv/proj/fc1/fc2 biases
    final_norm = 2 * d
    return ParamCount(
        matmul=arch.depth * block_matmul + k * d,
        other=patch + pos + cls + arch.depth * block_other + final_norm + k,
    )


@dataclass(frozen=True)
class Cost:
    """Everything the selector needs to know about one architecture at one batch size and precision."""

    params: int
    weight_bytes: float  # size of the weights at the precision (≈ compiled model file size)
    activation_bytes: float  # peak live activations during one inference (estimate, see peak_activation_elements)
    flops: float  # per inference of the whole batch, FlopCounterMode convention
    linear_flops: float  # part of ``flops`` in Linear layers and the patch convolution
    attention_flops: float  # part of ``flops`` in QKᵀ and AV
    bytes_moved: float  # weights read once + activation traffic, for the memory roof

    @property
    def weight_mb(self) -> float:
        return self.weight_bytes / MB

    @property
    def memory_mb(self) -> float:
        """Weights + peak activations, the quantity compared with ``budgets.memory_mb``."""
        return (self.weight_bytes + self.activation_bytes) / MB


def flops(arch: ArchSpec, batch: int = 1) -> tuple[float, float]:
    """(linear + convolution FLOPs, attention FLOPs) of one forward pass."""
    n, d, h = arch.num_tokens, arch.embed_dim, arch.mlp_hidden
    patch = 2.0 * arch.num_patches * arch.in_chans * arch.patch_size**2 * d
    block_linear = 2.0 * n * (4 * d * d + 2 * d * h)
    block_attention = 4.0 * n * n * d
    head = 2.0 * d * arch.num_classes
    return batch * (patch + arch.depth * block_linear + head), batch * arch.depth * block_attention


def peak_activation_elements(arch: ArchSpec, batch: int = 1) -> float:
    """Largest number of activation elements alive at once during inference.

    Inside the attention: residual, q/k/v, attention scores and their softmax (B·heads·N² each), and the output;
    inside the MLP: residual, normalised input, and the hidden layer before and after GELU. The input image is
    alive throughout. Runtimes that fuse attention need less; this is an upper-side estimate.
    """
    n, d, h, heads = arch.num_tokens, arch.embed_dim, arch.mlp_hidden, arch.num_heads
    attention = 5 * n * d + 2 * heads * n * n
    mlp = 2 * n * d + 2 * n * h
    image = arch.in_chans * arch.img_size**2
    return batch * (image + max(attention, mlp))


def activation_traffic_elements(arch: ArchSpec, batch: int = 1) -> float:
    """Activation elements read and written by one forward pass (each tensor written once and read once)."""
    n, d, h, heads = arch.num_tokens, arch.embed_dim, arch.mlp_hidden, arch.num_heads
    per_block = 2 * (8 * n * d + 2 * n * h + 2 * heads * n * n)
    return batch * arch.depth * per_block


def estimate(arch: ArchSpec, *, batch: int = 1, precision: str = "fp32", backend: str | None = None) -> Cost:
    """Analytic cost of ``arch`` at ``batch`` and ``precision`` on ``backend``."""
    p = count_params(arch)
    wb = WEIGHT_BYTES[precision] * p.matmul + (WEIGHT_BYTES[precision] if precision == "fp16" else 4.0) * p.other
    act = activation_bytes_per_element(precision, backend)
    linear, attention = flops(arch, batch)
    return Cost(
        params=p.total,
        weight_bytes=wb,
        activation_bytes=act * peak_activation_elements(arch, batch),
        flops=linear + attention,
        linear_flops=linear,
        attention_flops=attention,
        bytes_moved=wb + act * activation_traffic_elements(arch, batch),
    )
