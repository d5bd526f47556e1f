"""kNN monitor: how well CLS features separate the classes of a labelled shard set, during training.

Every video of ``knn_data`` gives one centre clip (first of ``knn_views``); its CLS feature
(L2-normalised) is classified by a majority vote of its ``knn_k`` nearest other videos (cosine
similarity, leave-one-out). The top-1 accuracy is logged as ``knn/top1``. Ranks embed disjoint
parts of the set and share the features through the one prediction routine (predict.py), so the
figure is the same on every rank and every video counts once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vimpac_core.data import MultiViewTestClips, select_videos
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.train.predict import first_clip, predict


def knn_top1(features: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Leave-one-out k-NN top-1 over features [N, D] (any scale) and labels [N]; needs N >= 2."""
    feats = F.normalize(features.float(), dim=1)
    sim = feats @ feats.T
    sim.fill_diagonal_(float("-inf"))
    k = min(k, len(labels) - 1)
    neighbours = labels[sim.topk(k, dim=1).indices]  # [N, k]
    num_classes = int(labels.max()) + 1
    votes = F.one_hot(neighbours, num_classes).sum(1)
    return float((votes.argmax(1) == labels).float().mean())


@torch.no_grad()
def knn_monitor(run, config) -> float:  # noqa: ANN001  (trainer.Run, PretrainConfig: avoids an import cycle)
    """Embed the kNN set with the current backbone and return the leave-one-out top-1 (0..1)."""
    index = ShardIndex.build(config.knn_data, storage_options=config.storage_options or None)
    m = config.model
    views = config.knn_views or [index.views()[0]]
    index, _ = select_videos(index, views[:1], need_all=True)
    dataset = MultiViewTestClips(
        index, num_test_clips=1, views=views[:1], clip_len=m.clip_len, frame_rate=config.frame_rate,
        grid_size=m.grid_size, pad_id=m.pad_id, batch_size=config.bs_per_gpu, rank=run.env.rank,
        world_size=run.env.world_size, clip_position="center",
    )
    backbone = run.model.backbone
    was_training = backbone.training
    backbone.eval()
    try:
        found = predict(lambda codes: backbone(codes)[0], dataset, device=run.env.device,
                        videos_per_batch=config.bs_per_gpu, reduce=first_clip)
    finally:
        backbone.train(was_training)
    keep = found.labels >= 0
    top1 = knn_top1(found.outputs[keep], found.labels[keep], config.knn_k) if int(keep.sum()) >= 2 else 0.0
    if run.writer is not None:
        run.writer.add_scalar("knn/top1", top1, run.state.step)
    if run.env.is_main:
        print(f"[pretrain] epoch {run.state.epoch} knn top1 {top1:.4f} ({int(keep.sum())} videos, k={config.knn_k})", flush=True)
    return top1
