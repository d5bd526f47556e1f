"""The whole DAG as one flow: [train-tokenizer] -> ingest (per frame size) -> pretrain (stage 1 [+ 2]).

Every stage is the existing flow, run as a subflow (so each keeps its own runs, retries, logs and
artifacts in the UI); this flow only orchestrates. What each stage reads and writes comes from
``PipelineConfig`` (vimpac_core.pipeline_config): the tokenizer spec is the trained VQ-VAE when
none is given, each pre-training stage reads the ingest output at its own frame size, and stage 2
continues stage 1's final checkpoint. Re-running the flow on the same ``out`` resumes: the
tokenizer continues from its checkpoint, committed shards are skipped.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.ingest import run_ingest
from flows.pretrain import pretrain
from flows.train_tokenizer import train_tokenizer_flow
from vimpac_core.pipeline_config import PipelineConfig

TOKENIZER_METRICS = ("tokenizer_id", "tokenizer_spec", "psnr_db", "psnr_gain_db", "codebook_usage",
                     "perplexity_held_out")
STAGE_METRICS = ("stage", "step", "epoch", "loss", "mlm_loss", "nce_loss", "mask_accuracy", "checkpoint")


@flow(name="pipeline")
def pipeline(config: PipelineConfig) -> dict:
    """Run the DAG; returns {out, tokenizer: metrics, ingest: {frame_size: summary}, pretrain: [stage metrics]}."""
    logger = get_run_logger()
    config.pretrain_stages()  # fail on a bad stage before any work
    tokenizer, spec = None, config.tokenizer
    if spec is None:
        settings = config.train_tokenizer
        logger.info("no tokenizer given: training our VQ-VAE into %s", config.tokenizer_dir)
        metrics = train_tokenizer_flow(video_list=config.videos, out_dir=config.tokenizer_dir,
                                       train=settings.train_config(), frame_size=settings.frame_size,
                                       frames_per_video=settings.frames_per_video, fps=settings.fps,
                                       resume=True, root=config.root)
        tokenizer = {k: metrics.get(k) for k in TOKENIZER_METRICS}
        spec = metrics["tokenizer_spec"]
    ingests = {}
    for size in config.frame_sizes():
        logger.info("ingest at frame size %d -> %s", size, config.ingest_out(size))
        ingests[str(size)] = run_ingest(config.ingest_config(size, spec))
    stages = config.pretrain_stages()
    results = pretrain(stages=[s.to_flat() for s in stages], timeout_s=config.timeout_s)
    summary = {"out": config.out, "tokenizer_spec": spec, "tokenizer": tokenizer, "ingest": ingests,
               "pretrain": [{k: r.get(k) for k in STAGE_METRICS} for r in results]}
    create_markdown_artifact(key="pipeline-summary", markdown=summary_markdown(summary),
                             description="pipeline: outputs and final metrics")
    return summary


def summary_markdown(summary: dict) -> str:
    """A short Markdown report of a pipeline summary (also what `vimpac demo` prints, minus the table marks)."""
    lines = [f"# Pipeline outputs in `{summary['out']}`", "", f"- tokenizer: `{summary['tokenizer_spec']}`"]
    tok = summary.get("tokenizer")
    if tok:
        lines.append(f"  - held-out PSNR {tok['psnr_db']:.2f} dB (+{tok['psnr_gain_db']:.2f} dB over the mean-colour "
                     f"baseline), codebook usage {tok['codebook_usage']:.2f}")
    for size, s in summary["ingest"].items():
        lines.append(f"- tokens at frame {size}: {s['shards']} shard(s), {s['ok']} ok / {s['failed']} failed "
                     f"video(s), {s['rows']} row(s), {s['frames']} frame(s)")
    for r in summary["pretrain"]:
        lines.append(f"- pretrain stage {r['stage']}: step {r['step']}, loss {r['loss']:.4f}, "
                     f"mask accuracy {r['mask_accuracy']:.3f}; checkpoint `{r['checkpoint']}`")
    return "\n".join(lines)


def run_pipeline(config: PipelineConfig) -> dict:
    """What `vimpac demo` calls: run the ``pipeline`` flow in this process."""
    return pipeline(config=config)
