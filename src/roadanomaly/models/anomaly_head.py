"""EoMT-EXT: an anomaly head on the final query embeddings of a frozen EoMT, and the RbA-OE class head.

- :class:`AnomalyHead`: MLP (D -> hidden -> 3, GELU) giving per query the logits [normal, anomaly, no-object],
  optionally after its own copies of the base's last blocks, optionally also reading the base's class
  probabilities of the query, optionally with its own masks; as a query head it returns softmax(.)[anomaly]
  (B, Q) (with its mask logits when it has its own), which the predictor turns into the ``anomaly`` map.
- :class:`RbaOEHead`: a copy of the EoMT class head fine-tuned with RbA's outlier loss; as a query head it returns
  softmax(class'_q)[:, :, :C] (B, Q, C), the ``rba_oe`` map's weights.

Both are saved in one small safetensors file (:func:`save_anomaly_heads`) that records the identity of the base
model (a SHA-256 of its weights and its config); :func:`load_anomaly_heads` refuses another base. Base parameters
fine-tuned along with the head (class head, mask head, last blocks) are stored in the same file and written into
the base model on load. :func:`merge_into_checkpoint` writes base and heads as one checkpoint folder in our layout.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT, ScaleBlock, mask_mlp
from roadanomaly.models.vit import LN_EPS, Block

HEAD_FORMAT = "roadanomaly-eomt-anomaly-head"
HEAD_FILE = "anomaly_head.safetensors"
NORMAL, ANOMALY, NO_OBJECT = 0, 1, 2


class AnomalyHead(nn.Module):
    """Per-query [normal, anomaly, no-object] logits from query embeddings (B, Q, D).

    With ``blocks`` > 0 the head first runs its own copies of the base's last ``blocks`` transformer blocks (and
    final norm) on the tokens entering the first of them, ``block_input`` (base block ``reads_block``), and reads
    the queries they give: the base and its masks stay exactly as they were, while the head's queries may look at
    the patches again for what the frozen ones were never trained to keep. :meth:`from_base` copies the weights.
    The blocks attend without masks, as an EoMT whose masking was annealed away runs at inference.

    With ``class_inputs`` > 0 (the base's C + 1 classes) the MLP also reads softmax(class logits) of each query as
    the base predicts it: how sure the closed-set classifier is, whichever kind of object fills the mask.

    With ``masks`` (needs blocks) the head also predicts its own masks from the tokens its blocks give, with copies
    of the base's mask head and upscaling: the frozen masks were trained to cover the known classes and may spread
    an unknown object over the road's or a car's query; the head's masks learn to cut it out. As a query head it
    then returns (P_q(anomaly), its mask logits), and the predictor draws the ``anomaly`` map with those masks.
    """

    def __init__(
        self, width: int, hidden: int = 256, blocks: int = 0, heads: int = 1, mlp_ratio: float = 4.0,
        num_q: int = 0, reads_block: int | None = None, class_inputs: int = 0, masks: bool = False,
        prefix: int = 0, upscale: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.width, self.hidden, self.class_inputs = width, hidden, class_inputs
        self.prefix = prefix
        self.heads, self.mlp_ratio, self.num_q = heads, mlp_ratio, num_q
        self.reads_block = reads_block if blocks else None
        """Index of the base block whose input tokens the head reads (None: the final query embeddings only)."""
        if blocks and (reads_block is None or num_q < 1):
            raise ValueError("a head with blocks needs the base's query count and the block it reads")
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(blocks))
        self.norm = nn.LayerNorm(width, eps=LN_EPS) if blocks else None
        self.mlp = nn.Sequential(nn.Linear(width + class_inputs, hidden), nn.GELU(), nn.Linear(hidden, 3))
        self.own_masks = bool(masks)
        """The head predicts its own masks (and returns them beside P_q(anomaly))."""
        if masks and not blocks:
            raise ValueError("a head with its own masks needs its own blocks (the patch tokens it reads)")
        self.mask_head = mask_mlp(width) if masks else None
        self.upscale = nn.Sequential(*[ScaleBlock(width) for _ in range(upscale)]) if masks else None

    @classmethod
    def from_base(
        cls, base: EoMT, hidden: int = 256, blocks: int = 0, class_inputs: bool = False, masks: bool = False
    ) -> AnomalyHead:
        """A head on ``base`` whose ``blocks`` start as copies of the base's last blocks and final norm (only
        blocks that carry the queries can be copied: at most ``base.num_blocks``); ``class_inputs``: the MLP also
        reads the base's class probabilities; ``masks``: its own masks, from copies of the base's mask head and
        upscaling (so they start equal to the base's)."""
        c = base.config
        if not 0 <= blocks <= c.num_blocks:
            raise UserError(None, f"the head can copy 0..{c.num_blocks} of this EoMT's query blocks, not {blocks}")
        depth = len(base.encoder.blocks)
        head = cls(c.width, hidden, blocks, c.heads, c.mlp_ratio, c.num_q, depth - blocks,
                   c.num_classes + 1 if class_inputs else 0, masks, base.encoder.num_prefix_tokens,
                   c.num_upscale)  # fmt: skip
        for own, theirs in zip(head.blocks, base.encoder.blocks[depth - blocks :]):
            own.load_state_dict(theirs.state_dict())
        if head.norm is not None:
            head.norm.load_state_dict(base.encoder.norm.state_dict())
        if head.own_masks:
            head.mask_head.load_state_dict(base.mask_head.state_dict())
            head.upscale.load_state_dict(base.upscale.state_dict())
        return head

    def describe(self) -> dict[str, Any]:
        """What :func:`load_anomaly_heads` needs to rebuild the head."""
        return {"width": self.width, "hidden": self.hidden, "blocks": len(self.blocks), "heads": self.heads,
                "mlp_ratio": self.mlp_ratio, "num_q": self.num_q, "reads_block": self.reads_block,
                "class_inputs": self.class_inputs, "masks": self.own_masks, "prefix": self.prefix,
                "upscale": len(self.upscale) if self.upscale is not None else 0}  # fmt: skip

    def tokens(self, block_input: Tensor | None) -> Tensor:
        """The head's blocks and final norm run on ``block_input`` (B, N, D): all final tokens (B, N, D)."""
        if block_input is None:
            raise ValueError(f"this head runs its own blocks: it needs the tokens entering block {self.reads_block}")
        x = block_input.float()
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def embed(self, queries: Tensor, block_input: Tensor | None = None) -> Tensor:
        """The embeddings the MLP reads: ``queries`` itself, or the head's blocks run on ``block_input``."""
        if not len(self.blocks):
            return queries
        return self.tokens(block_input)[:, : self.num_q]

    def mask_logits(self, tokens: Tensor) -> Tensor:
        """The head's own mask logits (B, Q, h, w) from its final tokens (a square patch grid, as the crops)."""
        patches = tokens[:, self.num_q + self.prefix :]
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise ValueError(f"the head's masks need a square patch grid, got {patches.shape[1]} patches")
        grid = patches.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
        return torch.einsum("bqc,bchw->bqhw", self.mask_head(tokens[:, : self.num_q]), self.upscale(grid))

    def logits_and_masks(
        self, queries: Tensor, block_input: Tensor | None = None, class_logits: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(B, Q, 3) logits and, for a head with its own masks, its mask logits (B, Q, h, w) (else None)."""
        if not self.own_masks:
            return self.logits(queries, block_input, class_logits), None
        tokens = self.tokens(block_input)
        return self._classify(tokens[:, : self.num_q], class_logits), self.mask_logits(tokens)

    def logits(self, queries: Tensor, block_input: Tensor | None = None, class_logits: Tensor | None = None) -> Tensor:
        """(B, Q, 3) logits [normal, anomaly, no-object]; ``class_logits`` (B, Q, C + 1), the base's, when the head
        reads class probabilities."""
        return self._classify(self.embed(queries, block_input), class_logits)

    def _classify(self, embeddings: Tensor, class_logits: Tensor | None) -> Tensor:
        x = embeddings.float()
        if self.class_inputs:
            if class_logits is None or class_logits.shape[-1] != self.class_inputs:
                got = None if class_logits is None else class_logits.shape[-1]
                raise ValueError(f"this head reads the base's {self.class_inputs} class logits per query, got {got}")
            x = torch.cat([x, class_logits.float().softmax(dim=-1)], dim=-1)
        return self.mlp(x)

    def forward(
        self, queries: Tensor, class_logits: Tensor | None = None, block_input: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Query head: P_q(anomaly) (B, Q); with its own masks (P_q(anomaly), mask logits (B, Q, h, w))."""
        logits, masks = self.logits_and_masks(queries, block_input, class_logits)
        anomaly = logits.softmax(dim=-1)[..., ANOMALY]
        return anomaly if masks is None else (anomaly, masks)


class RbaOEHead(nn.Module):
    """A class head (D -> C + 1) initialised from the base's and fine-tuned with the RbA outlier loss."""

    def __init__(self, class_head: nn.Linear) -> None:
        super().__init__()
        self.linear = nn.Linear(class_head.in_features, class_head.out_features)
        self.linear.load_state_dict(class_head.state_dict())

    def logits(self, queries: Tensor) -> Tensor:
        return self.linear(queries.float())

    def forward(self, queries: Tensor, class_logits: Tensor | None = None) -> Tensor:
        """Query head: softmax(class'_q) without the no-object column, (B, Q, C)."""
        return self.logits(queries).softmax(dim=-1)[..., :-1]


def base_identity(model: EoMT) -> dict[str, Any]:
    """What identifies a base model: a SHA-256 over its parameter names, shapes and float32 values, and its config."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return {"sha256": digest.hexdigest(), "config": model.config.to_dict()}


def _describe(identity: dict[str, Any]) -> str:
    config = identity.get("config", {})
    return (
        f"width {config.get('width')}, depth {config.get('depth')}, {config.get('num_classes')} classes, "
        f"{config.get('num_q')} queries, weights sha256 {str(identity.get('sha256'))[:12]}"
    )


def save_anomaly_heads(
    path: str | Path,
    base: dict[str, Any],
    head: AnomalyHead | None,
    rba_oe: RbaOEHead | None = None,
    base_overrides: dict[str, Tensor] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write the heads (and fine-tuned base parameters) to ``path`` (a ``.safetensors`` file), recording ``base``
    (from :func:`base_identity` of the base as loaded, before any fine-tuning)."""
    from safetensors.torch import save_file

    if head is None and rba_oe is None:
        raise ValueError("nothing to save: neither an anomaly head nor an RbA-OE head")
    tensors: dict[str, Tensor] = {}
    if head is not None:
        tensors.update({f"anomaly.{k}": v for k, v in head.state_dict().items()})
    if rba_oe is not None:
        tensors.update({f"rba_oe.{k}": v for k, v in rba_oe.state_dict().items()})
    tensors.update({f"base.{k}": v for k, v in (base_overrides or {}).items()})
    meta = {
        "format": HEAD_FORMAT,
        "base": base,
        "anomaly": None if head is None else head.describe(),
        "rba_oe": rba_oe is not None,
        "info": info or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"roadanomaly": json.dumps(meta)})
    return path


def read_anomaly_heads(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(metadata, tensors) of a head file, or of ``anomaly_head.safetensors`` inside a merged checkpoint folder."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / HEAD_FILE
    if not path.is_file():
        raise UserError(path, "no such anomaly head file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("roadanomaly", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors handle)
    except Exception as error:  # noqa: BLE001 (safetensors raises several types for a damaged file)
        raise UserError(path, f"not a readable safetensors file ({error})") from None
    if meta.get("format") != HEAD_FORMAT:
        raise UserError(path, "not an EoMT anomaly head file (no roadanomaly-eomt-anomaly-head metadata)")
    return meta, tensors


def load_anomaly_heads(path: str | Path, base_model: EoMT) -> dict[str, nn.Module]:
    """``{"anomaly": AnomalyHead, "rba_oe": RbaOEHead}`` (those stored) for ``EoMTPredictor(query_heads=...)``.

    Raises :class:`UserError` when the file was trained on another base model. Fine-tuned base parameters stored
    with the heads are copied into ``base_model`` (in place).
    """
    meta, tensors = read_anomaly_heads(path)
    found, stored = base_identity(base_model), meta.get("base", {})
    if found["sha256"] != stored.get("sha256"):
        raise UserError(
            path,
            f"trained on another base model ({_describe(stored)}); this one has {_describe(found)}",
        )
    heads: dict[str, nn.Module] = {}
    if meta.get("anomaly"):
        head = _rebuild_head(meta["anomaly"])
        head.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("anomaly.")})
        heads["anomaly"] = head.eval()
    if meta.get("rba_oe"):
        rba = RbaOEHead(base_model.class_head)
        rba.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("rba_oe.")})
        heads["rba_oe"] = rba.eval()
    overrides = {k[5:]: v for k, v in tensors.items() if k.startswith("base.")}
    if overrides:
        base_model.load_state_dict({**base_model.state_dict(), **overrides}, strict=True)
    return heads


def _rebuild_head(described: dict[str, Any]) -> AnomalyHead:
    """An untrained :class:`AnomalyHead` of the shape :meth:`AnomalyHead.describe` recorded (files written before
    heads had blocks record only width and hidden)."""
    blocks = int(described.get("blocks", 0))
    return AnomalyHead(
        int(described["width"]), int(described["hidden"]), blocks, int(described.get("heads", 1)),
        float(described.get("mlp_ratio", 4.0)), int(described.get("num_q", 0)), described.get("reads_block"),
        int(described.get("class_inputs", 0)), bool(described.get("masks", False)), int(described.get("prefix", 0)),
        int(described.get("upscale", 0)),
    )  # fmt: skip


def merge_into_checkpoint(head_path: str | Path, base_model: EoMT, dst: str | Path) -> Path:
    """One checkpoint folder in our layout: the base (with any fine-tuned parameters) + ``anomaly_head.safetensors``.

    ``load_eomt(dst)`` gives the model and ``load_anomaly_heads(dst, model)`` its heads.
    """
    from roadanomaly.models.eomt_checkpoints import save_eomt

    meta, _ = read_anomaly_heads(head_path)
    heads = load_anomaly_heads(head_path, base_model)
    dst = save_eomt(base_model, dst)
    save_anomaly_heads(
        Path(dst) / HEAD_FILE, base_identity(base_model), heads.get("anomaly"), heads.get("rba_oe"),
        info={**meta.get("info", {}), "merged_from": str(head_path)},
    )  # fmt: skip
    return Path(dst)
