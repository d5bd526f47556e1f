"""Capacity plan arithmetic: wall time, GPU hours and storage of a run, from per-stage rates.

Pure arithmetic (no torch, no I/O), so a plan can be checked by hand. The rates come from a
short calibration on this machine (`vimpac_core.plan.calibrate`) or from a YAML/JSON file
(`Rates`): per decoder worker (one CPU core) for decode, per GPU for tokenize and training.

Model of a run (stages one after the other; nothing overlaps except decode and tokenize, which
the ingest shard task fuses):
- download: videos x mean duration x bitrate bytes over the nodes' bandwidth (skipped when the
  rates give no bandwidth: videos already readable in place, e.g. on s3).
- decode+tokenize, once per frame size the training stages read: frames = videos x duration x
  fps; decode time over every node's decoder workers, tokenize time (frames x views) over every
  GPU; the stage takes the longer of the two. Storage: uint16 tokens of frames x views x
  (S/8)^2, divided by the zstd ratio of the shards.
- a training stage: tokens = epochs x videos x clips per video (2 in pre-training, 1 in
  fine-tuning) x clip_len x (S/8)^2, over every GPU at ``scaling_efficiency``. Storage: kept
  checkpoints (``keep_checkpoints`` + the final one) of weights + AdamW's two moments, fp32.
GPU hours of a stage are its wall time x every GPU of the cluster (they are held throughout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from vimpac_core.errors import ConfigError

TOKEN_BYTES = 2  # uint16 codes (vocab 8192)
CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights + AdamW exp_avg + exp_avg_sq
HOUR = 3600.0


class Rates(BaseModel):
    """Per-unit throughputs. GPU rates are per GPU; decode is per decoder worker (a CPU core)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("given", description="Where the figures come from (printed with the plan).")
    download_MBps_per_node: float | None = Field(
        None, gt=0, description="Network bandwidth of one node in MB/s; None: no download stage."
    )
    video_kbps: float | None = Field(
        None, gt=0, description="Mean bitrate of the source videos in kbit/s (needed with a bandwidth)."
    )
    decode_frames_per_s: float = Field(gt=0, description="Output frames/s of one decoder worker at the plan's fps.")
    tokenize_frames_per_s: dict[int, float] = Field(
        description="Frame size in pixels -> frames/s of one GPU (per view-frame)."
    )
    train_tokens_per_s: dict[str, float] = Field(
        description="Stage name (stage1, stage2, finetune) -> tokens/s of one GPU over a whole training step "
        "(forward, backward, optimizer; both clips' tokens count)."
    )
    zstd_ratio: float = Field(1.0, gt=0, description="Raw uint16 token bytes / shard bytes.")
    scaling_efficiency: float = Field(
        1.0, gt=0, le=1, description="Throughput of G GPUs / (G x one GPU's), in (0, 1]."
    )


@dataclass(frozen=True)
class Workload:
    """The videos: how many, how long on average (seconds), at what fps, how many views."""

    videos: int
    mean_duration_s: float
    fps: float
    views: int = 1

    @property
    def frames(self) -> float:
        """Frames decoded per ingest: videos x mean duration x fps."""
        return self.videos * self.mean_duration_s * self.fps


@dataclass(frozen=True)
class Cluster:
    nodes: int = 1
    gpus_per_node: int = 1
    decode_workers_per_node: int = 8

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class TrainStage:
    """One training stage: ``name`` keys its rate in ``Rates.train_tokens_per_s``."""

    name: str
    frame_size: int
    clip_len: int
    epochs: int
    videos: int
    params: int
    clips_per_video: int = 2
    keep_checkpoints: int = 2
    downsample: int = 8

    @property
    def tokens(self) -> float:
        grid = (self.frame_size // self.downsample) ** 2
        return float(self.epochs) * self.videos * self.clips_per_video * self.clip_len * grid


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    work: str
    wall_s: float
    gpu_hours: float
    storage_bytes: float
    note: str = ""


@dataclass
class Plan:
    stages: list[StageEstimate] = field(default_factory=list)
    source: str = ""

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.stages)

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    @property
    def storage_bytes(self) -> float:
        return sum(s.storage_bytes for s in self.stages)

    @property
    def bottleneck(self) -> StageEstimate:
        return max(self.stages, key=lambda s: s.wall_s)


def token_shard_bytes(frames: float, views: int, frame_size: int, zstd_ratio: float, downsample: int = 8) -> float:
    """Bytes of the token shards: uint16 x frames x views x (S/8)^2 / zstd ratio."""
    return TOKEN_BYTES * frames * views * (frame_size // downsample) ** 2 / zstd_ratio


def checkpoint_bytes(params: int, keep_checkpoints: int) -> float:
    """Kept checkpoints of a stage (the rolling ones plus the final one), fp32 weights + AdamW moments."""
    return float(keep_checkpoints + 1) * params * CHECKPOINT_BYTES_PER_PARAM


def download_estimate(work: Workload, cluster: Cluster, rates: Rates) -> StageEstimate | None:
    if rates.download_MBps_per_node is None:
        return None
    if rates.video_kbps is None:
        raise ConfigError("video_kbps: the rates give a download bandwidth but no video bitrate; add video_kbps")
    total = work.videos * work.mean_duration_s * rates.video_kbps * 1000 / 8
    wall = total / (rates.download_MBps_per_node * 1e6 * cluster.nodes)
    return StageEstimate("download", f"{total / 1e12:.3g} TB of video", wall, 0.0, total, "video store")


def ingest_estimate(work: Workload, cluster: Cluster, rates: Rates, frame_size: int) -> StageEstimate:
    """Decode and tokenize overlap inside a shard task: the slower of the two sets the time."""
    tok_rate = rates.tokenize_frames_per_s.get(frame_size)
    if tok_rate is None:
        raise ConfigError(f"tokenize_frames_per_s: no rate for frame size {frame_size}; "
                          f"the rates have {sorted(rates.tokenize_frames_per_s)}")
    decode_s = work.frames / (rates.decode_frames_per_s * cluster.decode_workers_per_node * cluster.nodes)
    tokenize_s = work.frames * work.views / (tok_rate * cluster.gpus * rates.scaling_efficiency)
    wall = max(decode_s, tokenize_s)
    bound = "tokenize-bound" if tokenize_s >= decode_s else "decode-bound"
    note = f"{bound}: decode {decode_s / HOUR:.3g} h, tokenize {tokenize_s / HOUR:.3g} h"
    storage = token_shard_bytes(work.frames, work.views, frame_size, rates.zstd_ratio)
    work_text = f"{work.frames:.3g} frames x {work.views} view(s)"
    return StageEstimate(f"decode+tokenize {frame_size}px", work_text, wall, wall * cluster.gpus / HOUR, storage, note)


def train_estimate(stage: TrainStage, cluster: Cluster, rates: Rates) -> StageEstimate:
    rate = rates.train_tokens_per_s.get(stage.name)
    if rate is None:
        raise ConfigError(f"train_tokens_per_s: no rate for stage {stage.name!r}; the rates have "
                          f"{sorted(rates.train_tokens_per_s)}")
    wall = stage.tokens / (rate * cluster.gpus * rates.scaling_efficiency)
    work_text = f"{stage.tokens:.3g} tokens ({stage.epochs} epochs, {stage.frame_size}px)"
    storage = checkpoint_bytes(stage.params, stage.keep_checkpoints)
    return StageEstimate(stage.name, work_text, wall, wall * cluster.gpus / HOUR, storage,
                         f"{stage.params / 1e6:.1f}M parameters")


def estimate(work: Workload, cluster: Cluster, rates: Rates, stages: list[TrainStage],
             finetune: TrainStage | None = None) -> Plan:
    """The plan of a run: download, one ingest per frame size the stages read, the stages, fine-tune."""
    plan = Plan(source=rates.source)
    if (download := download_estimate(work, cluster, rates)) is not None:
        plan.stages.append(download)
    for size in dict.fromkeys(s.frame_size for s in stages):
        plan.stages.append(ingest_estimate(work, cluster, rates, size))
    plan.stages += [train_estimate(s, cluster, rates) for s in stages]
    if finetune is not None:
        plan.stages.append(train_estimate(finetune, cluster, rates))
    return plan


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= HOUR:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / 60:.1f} min"


def _size(num_bytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes / 1e3:.1f} kB"


def format_plan(plan: Plan, cluster: Cluster) -> str:
    """The plan as a text table, one row per stage, then the totals and the bottleneck stage."""
    header = ("stage", "work", "wall", "GPU h", "storage", "note")
    rows = [(s.stage, s.work, _duration(s.wall_s), f"{s.gpu_hours:,.1f}", _size(s.storage_bytes), s.note)
            for s in plan.stages]
    rows.append(("total", "", _duration(plan.wall_s), f"{plan.gpu_hours:,.1f}", _size(plan.storage_bytes), ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"cluster: {cluster.nodes} node(s) x {cluster.gpus_per_node} GPU(s), "
             f"{cluster.decode_workers_per_node} decoder workers per node; rates: {plan.source}"]
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    neck = plan.bottleneck
    share = neck.wall_s / plan.wall_s if plan.wall_s else 0.0
    lines.append(f"bottleneck: {neck.stage} ({share:.0%} of the wall time)")
    return "\n".join(lines)


def plan_dict(plan: Plan) -> dict:
    """JSON-able form of a plan (``vimpac plan --json``)."""
    return {
        "source": plan.source,
        "stages": [s.__dict__ for s in plan.stages],
        "wall_s": plan.wall_s,
        "gpu_hours": plan.gpu_hours,
        "storage_bytes": plan.storage_bytes,
        "bottleneck": plan.bottleneck.stage,
    }
