"""EoMT-EXT: an anomaly head on the final query embeddings of a frozen EoMT, and the RbA-OE class head.

- :class:`AnomalyHead`: MLP (D -> hidden -> 3, GELU) giving per query the logits [normal, anomaly, no-object];
  as a query head it returns softmax(.)[anomaly] (B, Q), which the predictor turns into the ``anomaly`` map.
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
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT

HEAD_FORMAT = "roadanomaly-eomt-anomaly-head"
HEAD_FILE = "anomaly_head.safetensors"
NORMAL, ANOMALY, NO_OBJECT = 0, 1, 2


class AnomalyHead(nn.Module):
    """Per-query [normal, anomaly, no-object] logits from query embeddings (B, Q, D)."""

    def __init__(self, width: int, hidden: int = 256) -> None:
        super().__init__()
        self.width, self.hidden = width, hidden
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 3))

    def logits(self, queries: Tensor) -> Tensor:
        return self.mlp(queries.float())

    def forward(self, queries: Tensor, class_logits: Tensor | None = None) -> Tensor:
        """Query head: P_q(anomaly) (B, Q)."""
        return self.logits(queries).softmax(dim=-1)[..., ANOMALY]


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
        "anomaly": None if head is None else {"width": head.width, "hidden": head.hidden},
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
        head = AnomalyHead(int(meta["anomaly"]["width"]), int(meta["anomaly"]["hidden"]))
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
