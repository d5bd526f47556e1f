"""The whole DAG as one flow, ending in fine-tuned, evaluated classifiers:

    [train-tokenizer] -> ingest (per frame size) -> pretrain (stage 1 [+ 2])
        -> per fine-tune task: ingest its labelled list -> fine-tune + evaluate (or a sweep)
           [-> the same fine-tuning from random weights, with ``compare_scratch``]

Every stage is the existing flow, run as a subflow (so each keeps its own runs, retries, logs and
artifacts in the UI); this flow only orchestrates. What each stage reads and writes comes from
``PipelineConfig`` (vimpac_core.pipeline_config). Re-running the flow on the same ``out`` skips
every stage whose outputs are complete (a trained tokenizer, a pre-training stage or fine-tuning
that finished with this same config) and redoes only the rest: ingest skips committed shards,
an interrupted stage resumes from its checkpoint.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from vimpac_core.pipeline_config import FinetuneTask, PipelineConfig
from vimpac_core.pipeline_state import finished_finetune, finished_stage, finished_tokenizer
from vimpac_core.train.resolve import resolve_finetune
from vimpac_flows.finetune import finetune
from vimpac_flows.ingest import run_ingest
from vimpac_flows.pretrain import pretrain
from vimpac_flows.train_tokenizer import train_tokenizer_flow
from vimpac_tasks.report import draw_pipeline_pictures

TOKENIZER_METRICS = ("tokenizer_id", "tokenizer_spec", "psnr_db", "psnr_gain_db", "codebook_usage",
                     "perplexity_held_out")
STAGE_METRICS = ("stage", "step", "epoch", "loss", "mlm_loss", "nce_loss", "mask_accuracy", "checkpoint")


@flow(name="pipeline")
def pipeline(config: PipelineConfig) -> dict:
    """Run the DAG; returns {out, tokenizer, ingest, pretrain, finetune: {task: {...}}, pictures, skipped}."""
    logger = get_run_logger()
    config.check()  # every stage's config, before any work
    skipped: list[str] = []
    tokenizer, spec = _tokenizer(config, skipped)
    ingests = {}
    for size in config.frame_sizes():
        logger.info("ingest at frame size %d -> %s", size, config.ingest_out(size))
        ingests[str(size)] = run_ingest(config.ingest_config(size, spec))
    results = _pretrain(config, skipped)
    tasks = {task.name: _task(config, task, spec, skipped) for task in config.finetune}
    summary = {"out": config.out, "tokenizer_spec": spec, "tokenizer": tokenizer, "ingest": ingests,
               "pretrain": [{k: r.get(k) for k in STAGE_METRICS} for r in results], "finetune": tasks,
               "skipped": skipped}
    summary["pictures"] = draw_pipeline_pictures(config, summary)
    create_markdown_artifact(key="pipeline-summary", markdown=summary_markdown(summary),
                             description="pipeline: outputs, final metrics and pictures")
    return summary


def _tokenizer(config: PipelineConfig, skipped: list[str]) -> tuple[dict | None, str]:
    if config.tokenizer is not None:
        return None, config.tokenizer
    logger = get_run_logger()
    settings = config.train_tokenizer
    metrics = finished_tokenizer(config.tokenizer_dir, settings.train_config())
    if metrics is not None:
        logger.info("tokenizer already trained in %s: skipped", config.tokenizer_dir)
        skipped.append("train-tokenizer")
    else:
        logger.info("no tokenizer given: training our VQ-VAE into %s", config.tokenizer_dir)
        metrics = train_tokenizer_flow(video_list=config.videos, out_dir=config.tokenizer_dir,
                                       train=settings.train_config(), frame_size=settings.frame_size,
                                       frames_per_video=settings.frames_per_video, fps=settings.fps,
                                       resume=True, root=config.root)
    return {k: metrics.get(k) for k in TOKENIZER_METRICS}, metrics["tokenizer_spec"]


def _pretrain(config: PipelineConfig, skipped: list[str]) -> list[dict]:
    """Stages that finished with this config are read back; the first unfinished one and those after run."""
    stages = config.pretrain_stages()
    done: list[dict] = []
    for number, stage in enumerate(stages, start=1):
        metrics = finished_stage(stage.output, stage.to_flat())
        if metrics is None:
            break
        done.append({"stage": number, **metrics})
        skipped.append(f"pretrain-stage-{number}")
    rest = stages[len(done):]
    if not rest:
        return done
    ran = pretrain(stages=[s.to_flat() for s in rest], timeout_s=config.timeout_s)
    return done + [{**r, "stage": r["stage"] + len(done)} for r in ran]


def _task(config: PipelineConfig, task: FinetuneTask, spec: str, skipped: list[str]) -> dict:
    """Ingest the task's labelled list, then fine-tune + evaluate (and from scratch, when compared)."""
    get_run_logger().info("fine-tune task %s: ingest %s", task.name, task.videos)
    ingest = run_ingest(config.task_ingest_config(task, spec))
    out = {"ingest": ingest}
    if task.sweep is not None:
        from vimpac_flows.finetune_sweep import finetune_sweep

        out["sweep"] = finetune_sweep(sweep=config.sweep_mapping(task), checkpoint=None)
        return out
    variants = {"pretrained": config.finetune_config(task)}
    if config.compare_scratch:
        variants["scratch"] = config.finetune_config(task, scratch=True)
    for name, cfg in variants.items():
        flat = resolve_finetune(cfg).to_flat()  # architecture and vocabulary from the now written checkpoint
        result = finished_finetune(cfg.output, flat)
        if result is not None:
            skipped.append(f"{task.name}/{name}")
        else:
            result = finetune.with_options(flow_run_name=f"{task.name}-{name}")(config=flat, timeout_s=config.timeout_s)
        out[name] = _finetune_summary(result)
    return out


def _finetune_summary(result: dict) -> dict:
    final = result["evaluations"]["final"]
    counts = {k: {m: v.get(m) for m in ("top1", "top5", "mean_class_accuracy")} for k, v in final["clips"].items()}
    return {"top1": final["top1"], "top5": final["top5"], "mean_class_accuracy": final["mean_class_accuracy"],
            "videos": final["videos"], "clips": counts, "checkpoint": result["train"].get("checkpoint"),
            "evaluation": final}


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
    for name, task in summary.get("finetune", {}).items():
        ing = task["ingest"]
        lines.append(f"- task {name}: {ing['ok']} labelled video(s) ingested ({ing['failed']} failed)")
        for variant in ("pretrained", "scratch"):
            if variant in task:
                r = task[variant]
                lines.append(f"  - fine-tuned from {'pre-training' if variant == 'pretrained' else 'random weights'}: "
                             f"top-1 {r['top1']:.3f}, top-5 {r['top5']:.3f}, mean class accuracy "
                             f"{r['mean_class_accuracy']:.3f} ({r['videos']} test videos)")
        if "pretrained" in task and "scratch" in task:
            gain = 100 * (task["pretrained"]["top1"] - task["scratch"]["top1"])
            lines.append(f"  - pre-training gain: {gain:+.1f} top-1 points")
        if "sweep" in task:
            sw = task["sweep"]
            lines.append(f"  - sweep {sw['sweep_id']}: {sw['ok']} run(s) ok, {sw['failed']} failed, {sw['skipped']} "
                         f"already done; results `{sw['results']}`")
    pictures = summary.get("pictures") or {}
    if pictures:
        lines += ["", "## Pictures", ""]
        lines += [f"- [{name}]({path})" for name, path in pictures.items()]
    if summary.get("skipped"):
        lines += ["", "Skipped (already complete): " + ", ".join(summary["skipped"])]
    return "\n".join(lines)


def run_pipeline(config: PipelineConfig) -> dict:
    """What `vimpac demo` calls: run the ``pipeline`` flow in this process."""
    return pipeline(config=config)
