"""LDR: linear decomposition of a ViT into learngenes with fixed polynomial coefficients (Lin et al., NeurIPS 2024).

Layer ``l`` (1-indexed) of an ``L``-layer ViT is, for every per-block tensor (LN1/LN2 affine, fused qkv, proj,
fc1, fc2, weights and biases)::

    W_l = Σ_{n=1..k} a(l, n) · A_n,    a(l, n) = φ_{n-1+offset}(x_l),    x_l = (l-1)/L

where ``A_1..A_N`` are the learngenes, ``k <= N`` the number used, and ``φ_j`` the ``j``-th function of the basis.
The coefficients are fixed, never learned. With ``basis="chebyshev"`` and ``offset=1`` (the paper's literal
indexing, learngene n ↔ T_n) this reproduces the paper's worked example T_3(1/12) = -0.24769 for a(2, 3), L=12.
``basis="linear"`` is TLEG's ``θ_A + x·θ_B`` (functions {1, x}, two learngenes at most).

Everything outside the blocks (patch embedding, position embedding, class token, final norm, head) is an ordinary
shared parameter, copied into every recomposed model and trainable in every phase.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from learngene_deploy.errors import ConfigError, LearngeneError
from learngene_deploy.learngene.base import WeightGenerator
from learngene_deploy.models.vit import BLOCK_TENSORS, ArchSpec, block_key, build_vit

if TYPE_CHECKING:  # the loop is imported when phases are built, not whenever a learngene file is read
    from learngene_deploy.training.loop import Phase

Basis = Literal["chebyshev", "legendre", "taylor", "fourier", "linear"]
Position = Literal["paper", "unit", "centered"]
BASES: tuple[str, ...] = ("chebyshev", "legendre", "taylor", "fourier", "linear")
POSITIONS: tuple[str, ...] = ("paper", "unit", "centered")


def layer_positions(depth: int, position: Position = "paper") -> torch.Tensor:
    """Position x_l of each layer l = 1..depth (float64).

    Args:
        depth: number of layers L of the net being built (the *target* depth at recomposition).
        position: ``"paper"``: x_l = (l-1)/L, in [0, (L-1)/L] (LDR and TLEG); ``"unit"``: x_l = (l-1)/(L-1), in
            [0, 1] (0 for L = 1); ``"centered"``: 2·(l-1)/(L-1) - 1, the full Chebyshev domain [-1, 1] (0 for L = 1).
    """
    if depth < 1:
        msg = f"depth must be at least 1, got {depth}; pass a positive number of layers."
        raise ConfigError(msg)
    steps = torch.arange(depth, dtype=torch.float64)
    if position == "paper":
        return steps / depth
    if position in ("unit", "centered"):
        if depth == 1:
            return torch.zeros(1, dtype=torch.float64)
        unit = steps / (depth - 1)
        return unit if position == "unit" else 2 * unit - 1
    msg = f"unknown layer position {position!r}; valid choices are {', '.join(POSITIONS)}."
    raise ConfigError(msg)


def basis_functions(basis: Basis, x: torch.Tensor, count: int) -> torch.Tensor:
    """Values φ_0(x)..φ_{count-1}(x) of a basis, shape ``(len(x), count)``.

    The paper names the families but gives no exact forms except Chebyshev; the choices made here are:

    - ``chebyshev``: T_j, first kind, T_0 = 1, T_1 = x, T_{j+1} = 2x·T_j - T_{j-1} (no rescaling of x).
    - ``legendre``: P_j, P_0 = 1, P_1 = x, (j+1)·P_{j+1} = (2j+1)x·P_j - j·P_{j-1}.
    - ``taylor``: monomials x^j (x^0 = 1, also at x = 0).
    - ``fourier``: φ_0 = 1, φ_{2m-1} = sin(mπx), φ_{2m} = cos(mπx), so with the paper's offset of 1 learngene n
      pairs with sin(πx), cos(πx), sin(2πx), ...
    - ``linear``: {1, x} (TLEG); asking for more than two functions is an error.
    """
    if basis not in BASES:
        msg = f"unknown coefficient basis {basis!r}; valid choices are {', '.join(BASES)}."
        raise ConfigError(msg)
    if basis == "linear" and count > 2:
        msg = f"the linear (TLEG) basis has 2 functions {{1, x}} but {count} were needed; use at most 2 learngenes."
        raise ConfigError(msg)
    x = x.to(torch.float64)
    values = [torch.ones_like(x)]
    for j in range(1, count):
        if basis == "fourier":
            m = (j + 1) // 2
            values.append(torch.sin(m * math.pi * x) if j % 2 else torch.cos(m * math.pi * x))
        elif basis in ("taylor", "linear") or j == 1:
            values.append(x * values[-1])
        elif basis == "chebyshev":
            values.append(2 * x * values[-1] - values[-2])
        else:  # legendre
            values.append(((2 * j - 1) * x * values[-1] - (j - 1) * values[-2]) / j)
    return torch.stack(values, dim=1)


def default_offset(basis: Basis) -> int:
    """The paper pairs learngene n with T_n (offset 1); TLEG's linear basis pairs A_1 with 1 and A_2 with x."""
    return 0 if basis == "linear" else 1


def coefficients(
    basis: Basis, depth: int, genes: int, *, offset: int | None = None, position: Position = "paper"
) -> torch.Tensor:
    """Coefficient matrix a(l, n) for layers l = 1..depth and learngenes n = 1..genes, shape ``(depth, genes)``.

    Args:
        basis: coefficient family (see ``basis_functions``).
        depth: depth L of the net being built.
        genes: number of learngenes k used.
        offset: learngene n uses φ_{n-1+offset}; 1 (paper default, T_n) or 0 (T_{n-1}, a constant first term).
            ``None`` picks the basis default; the linear basis only allows 0.
        position: layer-position mapping (see ``layer_positions``).
    """
    offset = default_offset(basis) if offset is None else offset
    if offset not in (0, 1):
        msg = f"Chebyshev index offset must be 0 (T_(n-1)) or 1 (T_n, the paper's), got {offset}."
        raise ConfigError(msg)
    if basis == "linear" and offset != 0:
        msg = "the linear (TLEG) basis is θ_A + x·θ_B and has no index offset; use offset 0 (or leave it unset)."
        raise ConfigError(msg)
    if genes < 1:
        msg = f"the number of learngenes must be at least 1, got {genes}."
        raise ConfigError(msg)
    values = basis_functions(basis, layer_positions(depth, position), genes + offset)
    return values[:, offset:]


def _pname(key: str) -> str:
    """Parameter names may not contain dots: ``attn.qkv.weight`` is stored as ``attn__qkv__weight``."""
    return key.replace(".", "__")


class LDRGenerator(WeightGenerator):
    """N learngenes (each one full set of timm block tensors) plus the shared non-block parameters.

    ``forward()`` builds the training-time ViT (``train_arch``: depth L) from the first ``active_genes`` learngenes;
    ``generate(depth=L', genes=k)`` builds any depth from the first k. Initialisation: learngene 1 is a freshly
    initialised timm block (trunc-normal 0.02 weights, zero biases, LN γ=1, β=0); learngenes 2..N start at zero, so
    adding a learngene in incremental training (ICT) starts exactly at the previous stage's model. Their gradient is
    still non-zero because the net is linear in each learngene.

    Args:
        arch: training-time architecture (its ``depth`` is L).
        genes: number of learngenes N.
        basis: coefficient basis.
        offset: index offset (see ``coefficients``); ``None`` = basis default.
        position: layer-position mapping (see ``layer_positions``).
    """

    method: ClassVar[str] = "ldr"

    def __init__(
        self,
        arch: ArchSpec,
        genes: int,
        *,
        basis: Basis = "chebyshev",
        offset: int | None = None,
        position: Position = "paper",
    ) -> None:
        super().__init__()
        self.arch = arch
        self.num_genes = genes
        self.basis: Basis = basis
        self.offset = default_offset(basis) if offset is None else offset
        self.position: Position = position
        coefficients(basis, arch.depth, genes, offset=self.offset, position=position)  # validate early
        self.active_genes = genes
        template = build_vit(arch.replace(depth=1)).state_dict()
        block = {t: template[block_key(0, t)] for t in BLOCK_TENSORS}
        self.genes = nn.ModuleList()
        for n in range(genes):
            gene = nn.ParameterDict(
                {_pname(t): nn.Parameter(v.clone() if n == 0 else torch.zeros_like(v)) for t, v in block.items()}
            )
            self.genes.append(gene)
        self.shared = nn.ParameterDict(
            {_pname(k): nn.Parameter(v.clone()) for k, v in template.items() if not k.startswith("blocks.")}
        )

    @property
    def train_arch(self) -> ArchSpec:
        return self.arch

    def coefficients(self, depth: int, genes: int) -> torch.Tensor:
        """Coefficient matrix ``(depth, genes)`` of this generator's basis (float64)."""
        return coefficients(self.basis, depth, genes, offset=self.offset, position=self.position)

    def set_stage(self, active: int, train_from: int = 0) -> None:
        """Use the first ``active`` learngenes and train only learngenes ``train_from+1..active`` (1-indexed).

        The others get ``requires_grad=False`` (and so stay out of the optimiser); shared parameters stay trainable.
        ``set_stage(N)`` is simultaneous training (SCT).
        """
        if not 0 <= train_from < active <= self.num_genes:
            msg = (
                f"stage must train learngenes {train_from + 1}..{active} of 1..{self.num_genes}; "
                "stages are increasing cumulative counts no larger than the number of learngenes."
            )
            raise ConfigError(msg)
        self.active_genes = active
        for n, gene in enumerate(self.genes):
            gene.requires_grad_(train_from <= n < active)

    def _check_size(self, depth: int, genes: int) -> None:
        if not 1 <= genes <= self.num_genes:
            msg = f"this learngene has {self.num_genes} learngenes, so k must be in 1..{self.num_genes}, got {genes}."
            raise ConfigError(msg)
        if depth < 1:
            msg = f"depth must be at least 1, got {depth}; any positive depth can be recomposed."
            raise ConfigError(msg)

    def blocks(self, depth: int, genes: int) -> dict[str, torch.Tensor]:
        """Block tensors of a ``depth``-layer net from the first ``genes`` learngenes (timm state-dict keys)."""
        self._check_size(depth, genes)
        first = self.genes[0][_pname(BLOCK_TENSORS[0])]
        coef = self.coefficients(depth, genes).to(device=first.device, dtype=first.dtype)
        out: dict[str, torch.Tensor] = {}
        for t in BLOCK_TENSORS:
            stacked = torch.stack([self.genes[n][_pname(t)] for n in range(genes)])  # (k, *shape)
            layers = torch.tensordot(coef, stacked, dims=1)  # (depth, *shape)
            out.update({block_key(i, t): layers[i] for i in range(depth)})
        return out

    def generate(self, depth: int | None = None, genes: int | None = None) -> tuple[ArchSpec, dict[str, torch.Tensor]]:
        """Architecture and parameters of a ``depth``-layer ViT from the first ``genes`` learngenes.

        Args:
            depth: target depth L' (default: the training depth); coefficients use L' in the denominator.
            genes: number of learngenes k (default: all N).
        """
        depth = self.arch.depth if depth is None else depth
        genes = self.num_genes if genes is None else genes
        params = {k.replace("__", "."): v for k, v in self.shared.items()}
        params.update(self.blocks(depth, genes))
        return self.arch.replace(depth=depth), params

    def forward(self) -> dict[str, torch.Tensor]:
        return self.generate(self.arch.depth, self.active_genes)[1]

    def resized(self, depth: int, genes: int, *, num_classes: int | None = None) -> LDRGenerator:
        """A generator of a ``depth``-layer net over copies of the first ``genes`` learngenes (constrained fine-tune).

        Args:
            depth: depth L' of the net to fine-tune.
            genes: number of learngenes k to keep (and train).
            num_classes: new head size; the head is freshly initialised when it differs.
        """
        self._check_size(depth, genes)
        classes = self.arch.num_classes if num_classes is None else num_classes
        new = LDRGenerator(
            self.arch.replace(depth=depth, num_classes=classes),
            genes,
            basis=self.basis,
            offset=self.offset,
            position=self.position,
        )
        state = {
            k: v for k, v in self.state_dict().items() if not k.startswith("genes.") or int(k.split(".")[1]) < genes
        }
        if classes != self.arch.num_classes:
            state = {k: v for k, v in state.items() if not k.startswith("shared.head")}
        new.load_state_dict(state, strict=False)
        return new.to(next(self.parameters()).device)

    def supported_sizes(self) -> dict[str, Any]:
        """Sizes this learngene can build: any depth (no upper bound) and 1..N learngenes."""
        return {"depth": {"min": 1, "max": None}, "genes": list(range(1, self.num_genes + 1))}

    def metadata(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "genes": self.num_genes,
            "basis": self.basis,
            "offset": self.offset,
            "position": self.position,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> LDRGenerator:
        try:
            return cls(
                ArchSpec.from_dict(meta["arch"]),
                int(meta["genes"]),
                basis=meta["basis"],
                offset=int(meta["offset"]),
                position=meta.get("position", "paper"),
            )
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            msg = f"LDR metadata is incomplete or malformed ({type(e).__name__}: {e}); re-save the learngene file."
            raise LearngeneError(msg) from e


def parse_stages(text: str | None, genes: int, *, sct: bool) -> list[int]:
    """Cumulative learngene counts of the ICT stages (default 1, 2, 4, ... N); ``[N]`` for SCT."""
    if sct:
        return [genes]
    if text is None:
        counts = [c for c in (2**i for i in range(genes.bit_length())) if c < genes]
        return [*counts, genes]
    try:
        counts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError as e:
        raise ConfigError(f"--stages must be comma-separated integers like 1,2,4,8, got {text!r}.") from e
    if not counts or counts != sorted(set(counts)) or counts[0] < 1 or counts[-1] != genes:
        example = ",".join(str(c) for c in parse_stages(None, genes, sct=False))  # the default plan keeps the rule
        msg = f"--stages must increase strictly from >= 1 and end at --genes ({genes}), got {text!r}; e.g. {example}."
        raise ConfigError(msg)
    return counts


def ict_phases(generator: LDRGenerator, counts: Sequence[int], *, label: str = "learngenes") -> list[Phase]:
    """The training phases of LDR's stages: phase i trains learngenes ``counts[i-1]+1..counts[i]``, earlier ones frozen.

    ``counts`` are cumulative (``parse_stages``); ``[N]`` is simultaneous training (SCT). Phases are named
    ``"{label} {first}-{last}"`` (the name shows in the progress bar and the learngene's training metadata).
    """
    from learngene_deploy.training.loop import Phase

    return [
        Phase(f"{label} {prev + 1}-{count}", lambda c=count, p=prev: generator.set_stage(c, p))
        for prev, count in zip([0, *counts[:-1]], counts, strict=True)
    ]
