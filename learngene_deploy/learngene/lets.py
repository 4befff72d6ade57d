"""LeTs: a compact learngene grown in width by learnable matrices F and in depth by coefficients G.

Xia et al., "Initializing Variable-sized Vision Transformers from Learngene with Learnable
Transformation" (NeurIPS 2024); parameterisation in ``docs/seeds-spec.md`` §2.

Stored (all trainable, all saved):

- **learngene**: ``L_g`` pre-LN blocks at width ``D_g`` with separate q, k, v, proj, fc1, fc2 and both
  LayerNorms, plus patch embedding, ``fc_norm`` and head (no position embedding, no class token);
- **width matrices F**, only the *added* rows: ``F_e`` ((D_aux-D_g) x D_g) shared by every residual-stream
  use (patch-embed out, LN, q/k/v/fc1 in, proj/fc2 out, fc_norm); per learngene layer ``F_q``, ``F_k``,
  ``F_v`` (proj-in reuses ``F_v``) and ``F_ffn`` ((H_aux-H_g) x H_g, fc2-in reuses it); ``F_cls`` for the
  head's input. Expansion keeps the learngene verbatim in the first rows and columns:
  ``W -> [[W, W F_inᵀ], [F_out W, F_out W F_inᵀ]]``, biases ``b -> [b; F_out b]``;
- **depth coefficients G**: for each of the 8 module types (norm1, q, k, v, proj, norm2, fc1, fc2) and each
  coefficient row, ``g`` (2 numbers) mixes the weights (LN gamma) and ``h`` (2 numbers) the biases (LN beta)
  of the two learngene layers of a pair: ``W = g0 Ŵ_2p + g1 Ŵ_2p+1``;
- the Aux-Net's own ``pos_embed`` at width ``D_aux``.

Depth structure. Learngene layers form ``L_g / 2`` pairs. ``L_aux`` must be a multiple ``r * L_g`` of the
learngene depth (the paper's 8 -> 16 is ``r = 2``); consecutive blocks of ``2 r`` Aux layers draw on one
pair. With tied rows (the paper) Aux layers ``2i`` and ``2i+1`` share one coefficient row, so the Aux-Net
is ``V = L_aux / 2`` distinct *virtual layers*, each run twice; untied (``tie_rows=False``, the paper's
"w/o ws" ablation) every Aux layer has its own row (``V = L_aux``, each run once). Virtual layer ``k``
combines pair ``k * (L_g/2) // V`` with coefficient row ``k``.

Des-Net depth ``L'`` (see ``virtual_sequence``): ``L' <= V`` takes ``L'`` evenly spaced virtual layers
(first and last always kept); ``V < L' <= L_aux`` takes every virtual layer once and gives a second copy
to the ``L' - V`` most central ones (ties to the earlier one). For ``L_g = 8, L_aux = 16, L' = 12`` this is
the paper's hand-made list ``[V0, V1, V2, V2, V3, V3, V4, V4, V5, V5, V6, V7]``; ``L' = L_aux`` is the
Aux-Net itself.

Des-Net width ``D'``: any multiple of ``head_dim`` in ``[D_g, D_aux]`` (outside that range there are no
rows to select, and a ``ConfigError`` says so). ``c = D' - D_g`` new rows are selected from each F with
index sets that keep the Des-Net a consistent slice of the Aux-Net: one residual set ``S_e`` (rows of
``F_e``) for every residual-stream use, the ``F_cls`` rows and the ``pos_embed`` channels; per learngene
pair one set of whole attention heads shared by q, k, v and proj-in (a head is only meaningful when its
queries, keys and values come from the same Aux head); per pair one hidden set shared by fc1-out and
fc2-in. Strategies: ``continuous`` takes the first rows (the paper's code); ``top-l1``/``bottom-l1``/
``top-l2``/``bottom-l2`` rank by the L1/L2 norm of the rows involved (for a pair: both layers' rows side by
side; for a head: all its q, k and v rows) and keep the largest/smallest, ties to the lower index, then
sort the kept indices so heads stay contiguous blocks of ``head_dim`` channels.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import nn

from learngene_deploy.errors import ConfigError, LearngeneError
from learngene_deploy.learngene.base import WeightGenerator
from learngene_deploy.models.vit import ArchSpec

Strategy = Literal["continuous", "top-l1", "bottom-l1", "top-l2", "bottom-l2"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
MODULES: tuple[str, ...] = ("norm1", "q", "k", "v", "proj", "norm2", "fc1", "fc2")  # one G per module type
TIMM_NAMES = {
    "norm1": "norm1",
    "proj": "attn.proj",
    "norm2": "norm2",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}  # q, k, v fuse
Index = slice | torch.Tensor  # rows of an F matrix: a leading slice (continuous) or sorted indices
CONFIG_KEYS: tuple[str, ...] = (
    "img_size",
    "patch_size",
    "in_chans",
    "num_classes",
    "head_dim",
    "learngene_depth",
    "learngene_dim",
    "aux_depth",
    "aux_dim",
    "mlp_ratio",
    "tie_rows",
)


def virtual_sequence(depth: int, num_virtual: int, repeats: int) -> list[int]:
    """Virtual layers, in order, that make up a net of ``depth`` blocks.

    The Aux-Net runs each of ``num_virtual`` virtual layers ``repeats`` times in a row. A shallower net keeps
    ``depth`` evenly spaced virtual layers when ``depth <= num_virtual``, otherwise every virtual layer once
    plus extra copies for the most central ones (ties go to the earlier layer).

    Args:
        depth: Number of blocks of the net to build, ``1 <= depth <= num_virtual * repeats``.
        num_virtual: Number of distinct virtual layers in the Aux-Net.
        repeats: How often the Aux-Net runs each virtual layer.

    Returns:
        One virtual-layer index per block.

    Raises:
        ConfigError: If ``depth`` is out of range.
    """
    if not 1 <= depth <= num_virtual * repeats:
        msg = f"depth {depth} is out of range; LeTs Des-Nets can have 1 to {num_virtual * repeats} layers, pick one."
        raise ConfigError(msg)
    if depth <= num_virtual:
        span = max(depth - 1, 1)
        return [(2 * t * (num_virtual - 1) + span) // (2 * span) for t in range(depth)]
    central = sorted(range(num_virtual), key=lambda k: (abs(2 * k - (num_virtual - 1)), k))
    extra = Counter((central * (repeats - 1))[: depth - num_virtual])
    return [k for k in range(num_virtual) for _ in range(1 + extra[k])]


def _add_rows(t: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Out-expansion ``[t; F t]`` (``t`` is a weight with rows as outputs, or a bias)."""
    return torch.cat([t, f @ t])


def _add_cols(w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """In-expansion ``[W, W Fᵀ]``."""
    return torch.cat([w, w @ f.T], dim=1)


def _pick(scores: torch.Tensor, n: int, strategy: str) -> torch.Tensor:
    """Sorted indices of the ``n`` largest (top) or smallest (bottom) scores, ties to the lower index."""
    order = torch.sort(scores, descending=strategy.startswith("top"), stable=True).indices
    return order[:n].sort().values


class _Block(nn.Module):
    """Parameter holder for one learngene layer (never called; the generator reads its tensors)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class LeTsGenerator(WeightGenerator):
    """LeTs learngene with width matrices F, depth coefficients G and the Aux-Net's position embedding.

    Args:
        img_size: Input height = width in pixels.
        patch_size: Patch height = width in pixels.
        in_chans: Input channels.
        num_classes: Classifier outputs.
        head_dim: Channels per attention head; every width is a multiple of it.
        learngene_depth: Learngene layers ``L_g`` (even: layers are used in pairs).
        learngene_dim: Learngene width ``D_g``.
        aux_depth: Aux-Net layers ``L_aux``, a multiple of ``L_g`` (the paper uses ``2 L_g``).
        aux_dim: Aux-Net width ``D_aux >= D_g``.
        mlp_ratio: MLP hidden width / token width.
        tie_rows: Share one G row between Aux layers ``2i`` and ``2i+1`` (the paper); ``False`` unties them.
    """

    method: ClassVar[str] = "lets"

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        head_dim: int = 64,
        learngene_depth: int = 8,
        learngene_dim: int = 384,
        aux_depth: int = 16,
        aux_dim: int = 768,
        mlp_ratio: float = 4.0,
        tie_rows: bool = True,
    ) -> None:
        super().__init__()
        self.config = dict(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            head_dim=head_dim,
            learngene_depth=learngene_depth,
            learngene_dim=learngene_dim,
            aux_depth=aux_depth,
            aux_dim=aux_dim,
            mlp_ratio=mlp_ratio,
            tie_rows=tie_rows,
        )
        self._check()
        self.learngene_arch = self._arch(learngene_dim, learngene_depth)
        self._train_arch = self._arch(aux_dim, aux_depth)
        dim, hidden = learngene_dim, self.learngene_arch.mlp_hidden
        grow, grow_hidden = aux_dim - dim, self._train_arch.mlp_hidden - hidden
        self.num_virtual = aux_depth // 2 if tie_rows else aux_depth
        self.repeats = aux_depth // self.num_virtual

        # learngene
        self.patch_embed = nn.Conv2d(in_chans, dim, patch_size, patch_size)
        self.blocks = nn.ModuleList(_Block(dim, hidden) for _ in range(learngene_depth))
        self.fc_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        # width transformation F (added rows only)
        self.F_e = nn.Parameter(torch.empty(grow, dim))
        self.F_cls = nn.Parameter(torch.empty(grow, dim))
        self.F_q, self.F_k, self.F_v = (
            nn.ParameterList(torch.empty(grow, dim) for _ in range(learngene_depth)) for _ in range(3)
        )
        self.F_ffn = nn.ParameterList(torch.empty(grow_hidden, hidden) for _ in range(learngene_depth))
        # depth transformation G: flat (rows * 2,) so generic "no weight decay on 1-D" rules skip it, as in the paper
        self.g = nn.ParameterDict({m: nn.Parameter(torch.empty(2 * self.num_virtual)) for m in MODULES})
        self.h = nn.ParameterDict({m: nn.Parameter(torch.empty(2 * self.num_virtual)) for m in MODULES})
        # the Aux-Net's own position embedding
        self.pos_embed = nn.Parameter(torch.empty(1, self._train_arch.num_patches, aux_dim))
        self.reset_parameters()

    def _check(self) -> None:
        c = self.config
        hd, dg, da, lg, la = (c[k] for k in ("head_dim", "learngene_dim", "aux_dim", "learngene_depth", "aux_depth"))
        if not isinstance(hd, int) or hd < 1 or dg % hd or da % hd or da < dg:
            msg = (
                f"learngene width {dg} and Aux width {da} must be multiples of head_dim {hd} with Aux width >= "
                "learngene width; change --learngene-dim, --aux-dim or --head-dim."
            )
            raise ConfigError(msg)
        if lg < 2 or lg % 2 or la % lg:
            msg = (
                f"LeTs needs an even learngene depth (layers are used in pairs) and an Aux depth that is a multiple "
                f"of it, got learngene depth {lg} and Aux depth {la}; the paper uses 8 and 16."
            )
            raise ConfigError(msg)
        for dim in (dg, da):
            if dim * c["mlp_ratio"] != int(dim * c["mlp_ratio"]):
                msg = f"mlp_ratio {c['mlp_ratio']} times width {dim} is not an integer; use a ratio such as 4.0."
                raise ConfigError(msg)

    def _arch(self, dim: int, depth: int) -> ArchSpec:
        c = self.config
        return ArchSpec(
            img_size=c["img_size"],
            patch_size=c["patch_size"],
            in_chans=c["in_chans"],
            num_classes=c["num_classes"],
            embed_dim=dim,
            depth=depth,
            num_heads=dim // c["head_dim"],
            mlp_ratio=c["mlp_ratio"],
            layout="avg",
        )

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as the paper: learngene like timm/DeiT, F rows uniform then row-normalised, G 'stackbert_noisy'.

        Linear weights and the position embedding ~ trunc-normal(0.02), biases 0, LayerNorms (1, 0), the patch
        convolution keeps PyTorch's default. Each F row ~ U[0, 1) normalised to sum 1, so every new neuron starts
        as a convex combination of the old ones. Each G row is ``[1, u] / (1 + u)`` with ``u ~ U(0, 0.03)``
        (separately for g and h), so every Aux layer starts close to the first learngene layer of its pair.
        """
        self.patch_embed.reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for f in (self.F_e, self.F_cls, *self.F_q, *self.F_k, *self.F_v, *self.F_ffn):
            f.uniform_(0.0, 1.0)
            f.div_(f.sum(dim=1, keepdim=True))
        for coef in (*self.g.values(), *self.h.values()):
            u = torch.empty_like(coef[1::2]).uniform_(0.0, 0.03)
            coef[0::2] = 1.0 / (1.0 + u)
            coef[1::2] = u / (1.0 + u)

    @property
    def train_arch(self) -> ArchSpec:
        return self._train_arch

    def supported_sizes(self) -> dict[str, Any]:
        """Des-Nets this learngene can initialise: depths, widths (multiples of ``head_dim``) and strategies."""
        c = self.config
        widths = list(range(c["learngene_dim"], c["aux_dim"] + 1, c["head_dim"]))
        return {"depth": {"min": 1, "max": c["aux_depth"]}, "width": widths, "strategy": list(STRATEGIES)}

    def pair_of(self, virtual: int) -> int:
        """Learngene pair (layers ``2p`` and ``2p+1``) that virtual layer ``virtual`` combines."""
        return virtual * (self.config["learngene_depth"] // 2) // self.num_virtual

    def parameter_budget(self) -> dict[str, int]:
        """Stored parameters by role: learngene, F, G, Aux position embedding and total."""
        learngene = (self.patch_embed, self.blocks, self.fc_norm, self.head)
        counts = {
            "learngene": sum(p.numel() for m in learngene for p in m.parameters()),
            "width_F": sum(p.numel() for n, p in self.named_parameters() if n.startswith("F_")),
            "depth_G": sum(p.numel() for p in (*self.g.values(), *self.h.values())),
            "pos_embed": self.pos_embed.numel(),
        }
        return {**counts, "total": sum(counts.values())}

    def forward(self) -> dict[str, torch.Tensor]:
        """The Aux-Net's timm state dict, differentiable w.r.t. every stored parameter."""
        return self._generate(self.config["aux_depth"], self.config["aux_dim"], "continuous")[1]

    @torch.no_grad()
    def generate(
        self, *, depth: int | None = None, width: int | None = None, strategy: Strategy = "continuous"
    ) -> tuple[ArchSpec, dict[str, torch.Tensor]]:
        """Architecture and initial parameters of the Des-Net with ``depth`` layers and ``width`` channels.

        Args:
            depth: Des-Net layers, 1 to the Aux depth (default: the Aux depth; layer order: ``virtual_sequence``).
            width: Des-Net width, a multiple of ``head_dim`` between the learngene and the Aux width (default: Aux).
            strategy: How rows of F are selected (see the module docstring).

        Returns:
            The Des-Net's ``ArchSpec`` (avg layout, ``width / head_dim`` heads) and its timm state dict.

        Raises:
            ConfigError: If the depth, width or strategy is not supported.
        """
        c = self.config
        return self._generate(
            c["aux_depth"] if depth is None else depth, c["aux_dim"] if width is None else width, strategy
        )

    def _generate(self, depth: int, width: int, strategy: str) -> tuple[ArchSpec, dict[str, torch.Tensor]]:
        if strategy not in STRATEGIES:
            msg = f"unknown selection strategy {strategy!r}; valid strategies are {', '.join(STRATEGIES)}."
            raise ConfigError(msg)
        widths = self.supported_sizes()["width"]
        if width not in widths:
            msg = (
                f"width {width} is not supported by this LeTs learngene; use a multiple of "
                f"{self.config['head_dim']} from {widths[0]} to {widths[-1]}."
            )
            raise ConfigError(msg)
        sequence = virtual_sequence(depth, self.num_virtual, self.repeats)
        arch = self._arch(width, depth)
        grow, dim = width - self.config["learngene_dim"], self.config["learngene_dim"]
        grow_hidden = arch.mlp_hidden - self.learngene_arch.mlp_hidden
        sel_e, sel_attn, sel_ffn = self._select(grow, grow_hidden, strategy, {self.pair_of(k) for k in sequence})

        f_e = self.F_e[sel_e]
        channels = (
            slice(0, width)
            if isinstance(sel_e, slice)
            else torch.cat([torch.arange(dim, device=sel_e.device), dim + sel_e])
        )
        params = {
            "pos_embed": self.pos_embed[..., channels],
            "patch_embed.proj.weight": _add_rows(self.patch_embed.weight.flatten(1), f_e).view(
                width, *self.patch_embed.weight.shape[1:]
            ),
            "patch_embed.proj.bias": _add_rows(self.patch_embed.bias, f_e),
        }
        expanded: dict[int, dict[str, torch.Tensor]] = {}
        combined: dict[int, dict[str, torch.Tensor]] = {}
        for i, k in enumerate(sequence):
            if k not in combined:
                p = self.pair_of(k)
                layers = []
                for j in (2 * p, 2 * p + 1):
                    if j not in expanded:
                        expanded[j] = self._expand_layer(j, f_e, sel_attn[p], sel_ffn[p])
                    layers.append(expanded[j])
                combined[k] = self._combine(k, *layers)
            params.update({f"blocks.{i}.{name}": t for name, t in combined[k].items()})
        params["fc_norm.weight"] = _add_rows(self.fc_norm.weight, f_e)
        params["fc_norm.bias"] = _add_rows(self.fc_norm.bias, f_e)
        params["head.weight"] = _add_cols(self.head.weight, self.F_cls[sel_e])
        params["head.bias"] = self.head.bias
        return arch, params

    def _select(
        self, grow: int, grow_hidden: int, strategy: str, pairs: set[int]
    ) -> tuple[Index, dict[int, Index], dict[int, Index]]:
        """Rows of F_e (and F_cls), and per learngene pair the attention rows and the MLP hidden rows."""
        if strategy == "continuous":
            return slice(0, grow), dict.fromkeys(pairs, slice(0, grow)), dict.fromkeys(pairs, slice(0, grow_hidden))
        order = 1 if strategy.endswith("l1") else 2
        hd = self.config["head_dim"]

        def norm(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
            return torch.linalg.vector_norm(t, ord=order, dim=dims)

        sel_e = _pick(norm(self.F_e, (1,)), grow, strategy)
        sel_attn, sel_ffn = {}, {}
        for p in pairs:
            js = (2 * p, 2 * p + 1)
            attn = torch.cat([f[j] for f in (self.F_q, self.F_k, self.F_v) for j in js], dim=1)
            heads = _pick(norm(attn.view(-1, hd, attn.shape[1]), (1, 2)), grow // hd, strategy)
            sel_attn[p] = (heads[:, None] * hd + torch.arange(hd, device=heads.device)).flatten()
            sel_ffn[p] = _pick(norm(torch.cat([self.F_ffn[j] for j in js], dim=1), (1,)), grow_hidden, strategy)
        return sel_e, sel_attn, sel_ffn

    def _expand_layer(self, j: int, f_e: torch.Tensor, sel_attn: Index, sel_ffn: Index) -> dict[str, torch.Tensor]:
        """Width-expanded tensors of learngene layer ``j`` keyed by G module type and 'weight'/'bias'."""
        b = self.blocks[j]
        f_q, f_k, f_v, f_ffn = (
            self.F_q[j][sel_attn],
            self.F_k[j][sel_attn],
            self.F_v[j][sel_attn],
            self.F_ffn[j][sel_ffn],
        )
        out: dict[str, torch.Tensor] = {}
        for name, f_out, f_in in (
            ("q", f_q, f_e),
            ("k", f_k, f_e),
            ("v", f_v, f_e),
            ("proj", f_e, f_v),
            ("fc1", f_ffn, f_e),
            ("fc2", f_e, f_ffn),
        ):
            linear = getattr(b, name)
            out[f"{name}.weight"] = _add_cols(_add_rows(linear.weight, f_out), f_in)
            out[f"{name}.bias"] = _add_rows(linear.bias, f_out)
        for name in ("norm1", "norm2"):
            norm = getattr(b, name)
            out[f"{name}.weight"] = _add_rows(norm.weight, f_e)
            out[f"{name}.bias"] = _add_rows(norm.bias, f_e)
        return out

    def _combine(self, k: int, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Virtual layer ``k`` as timm block tensors: G row ``k`` mixes the expanded layers of its pair."""
        mixed = {}
        for m in MODULES:
            g, h = self.g[m][2 * k : 2 * k + 2], self.h[m][2 * k : 2 * k + 2]
            mixed[f"{m}.weight"] = g[0] * a[f"{m}.weight"] + g[1] * b[f"{m}.weight"]
            mixed[f"{m}.bias"] = h[0] * a[f"{m}.bias"] + h[1] * b[f"{m}.bias"]
        qkv = {kind: torch.cat([mixed[f"{m}.{kind}"] for m in "qkv"]) for kind in ("weight", "bias")}
        out = {f"attn.qkv.{kind}": t for kind, t in qkv.items()}
        out.update({f"{TIMM_NAMES[m]}.{kind}": mixed[f"{m}.{kind}"] for m in TIMM_NAMES for kind in ("weight", "bias")})
        return out

    def metadata(self) -> dict[str, Any]:
        return dict(self.config)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> LeTsGenerator:
        try:
            return cls(**{k: meta[k] for k in CONFIG_KEYS})
        except (KeyError, TypeError, ConfigError) as e:
            msg = f"LeTs metadata is incomplete or malformed ({type(e).__name__}: {e}); re-save the learngene file."
            raise LearngeneError(msg) from e
