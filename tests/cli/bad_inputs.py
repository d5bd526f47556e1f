"""The realistic mistakes of `tests/cli/test_bad_inputs.py`: a world of good inputs and outputs,
and one row per mistake (arguments, the exact last line, the exit code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import reference_model as ref
from tests.cli.conftest import clip_list, make_vqvae, short_clips, write_csv
from tests.model.test_convert import _released_model, _write_snapshot, _zip
from vimpac_core.config import IngestConfig
from vimpac_core.ingest import get_tokenizer, prepare_output, process_shard


def make_world(root: Path) -> Path:
    """Good things a user has made, which no mistake may touch: clips and lists, a tokenizer, an
    ingest output, a tokenizer training folder with a checkpoint, an imported model, a snapshot."""
    root.mkdir(parents=True, exist_ok=True)
    clips = short_clips(root / "clips", 3, frames=10)
    clip_list(root / "videos.csv", clips)
    clip_list(root / "two.csv", clips[:2])
    tok = make_vqvae(root / "tok")
    config = IngestConfig(inputs=str(root / "videos.csv"), out=str(root / "tokens"), tokenizer=tok, fps=4,
                          frame_size=32, shard_size=2, batch_size=8)
    tokenizer = get_tokenizer(config.tokenizer, config.device, config.batch_size)
    for shard in prepare_output(config, tokenizer.tokenizer_id).shards:
        process_shard(shard, config, tokenizer)
    _tokenizer_checkpoint(root / "tok_run")
    f = ref.flags()
    snap = _write_snapshot(root / "snap_src" / "vimpac_small", _released_model(f).state_dict(), f)
    _zip(snap, root / "snap_src", root / "vimpac_small.zip")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my notes\n")
    (root / "my_runs" / "stage1").mkdir(parents=True)
    (root / "my_runs" / "stage1" / "plot.png").write_bytes(b"not really a png")
    (root / "a_file").write_text("not a folder\n")
    for name, text in {"videos.tsv": "uri\nclips/c00.mp4\n", "nouri.csv": "path,label\nclips/c00.mp4,a\n",
                       "header.csv": "uri,label\n", "notes.pkl": "not a pickle\n"}.items():
        (root / name).write_text(text)
    write_csv(root / "dupes.csv", [{"uri": "clips/c00.mp4", "video_id": "a"}, {"uri": "clips/c01.mp4", "video_id": "a"}])
    write_csv(root / "badlabel.csv", [{"uri": "clips/c00.mp4", "label": "-1"}, {"uri": "clips/c01.mp4", "label": "2"}])
    (root / "empty_snap").mkdir()
    (root / "empty_snap" / "args.txt").write_text("layers: 2\n")
    return root


def _tokenizer_checkpoint(out: Path) -> None:
    from vimpac_core.tokenizers.train import TrainConfig, train_vqvae
    from vimpac_core.tokenizers.vqvae import VQVAEConfig

    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    cfg = TrainConfig(steps=2, batch_size=2, checkpoint_every=2, log_every=2,
                      model=VQVAEConfig(codebook_size=16, channels=(4, 8, 8), embed_dim=4, num_res_blocks=0))
    train_vqvae(frames, out, cfg, progress=False)
    (out / "metrics.json").write_text(json.dumps({"note": "a finished run"}))


TOK = "vqvae:tok"
INGEST = ["--fps", "4", "--frame-size", "32", "--shard-size", "2", "--tokenizer", TOK]

# (case id, arguments, exit code, the exact last line of stderr; {w} is the world folder)
CASES: list[tuple[str, list[str], int, str]] = [
    ("ingest-list-missing", ["ingest", "nope.csv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: video list nope.csv does not exist"),
    ("ingest-list-extension", ["ingest", "videos.tsv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: cannot tell the format of video list 'videos.tsv': name it .csv, .jsonl, .parquet or .txt, or pass --list-format (csv, jsonl, parquet or txt)"),
    ("ingest-list-format-flag", ["ingest", "videos.tsv", "--list-format", "tsv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: argument --list-format: invalid choice: 'tsv' (choose from 'csv', 'jsonl', 'parquet', 'txt', 'null')"),
    ("ingest-no-uri-column", ["ingest", "nouri.csv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: video list 'nouri.csv': every row needs a 'uri' (got columns ['label', 'path'])"),
    ("ingest-header-only", ["ingest", "header.csv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: video list 'header.csv' has no rows"),
    ("ingest-duplicate-ids", ["ingest", "dupes.csv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: video list 'dupes.csv' has duplicate video ids ['a']: make uris or video_id unique"),
    ("ingest-negative-label", ["ingest", "badlabel.csv", "--out", "o", *INGEST], 2,
     "vimpac ingest: error: video list 'badlabel.csv', row 1: label '-1' is not a class index (an integer >= 0) nor a class name; fix the row, or leave its label empty for an unlabelled video"),
    ("ingest-frame-size", ["ingest", "videos.csv", "--out", "o", *INGEST, "--frame-size", "100"], 2,
     'vimpac ingest: error: --frame-size: 100 is not a multiple of 8 (tokenizers downsample by 8)'),
    ("ingest-shard-size-0", ["ingest", "videos.csv", "--out", "o", *INGEST, "--shard-size", "0"], 2,
     'vimpac ingest: error: --shard-size: Input should be greater than 0'),
    ("ingest-bad-view", ["ingest", "videos.csv", "--out", "o", *INGEST, "--views", "s40-diagonal"], 2,
     "vimpac ingest: error: --views 's40-diagonal': bad view name 's40-diagonal': expected s<short side>-<top|center|bottom>-<flip|noflip>, e.g. s128-center-noflip"),
    ("ingest-views-and-hflip", ["ingest", "videos.csv", "--out", "o", *INGEST, "--views", "pretrain", "--hflip"], 2,
     'vimpac ingest: error: give either --views or --frame-shorter-size/--crop-type/--hflip, not both'),
    ("ingest-tokenizer-missing", ["ingest", "videos.csv", "--out", "o", *INGEST, "--tokenizer", "vqvae:nothing"], 2,
     'vimpac ingest: error: nothing is not a VQ-VAE folder (write one with VQVAE.save_pretrained or `vimpac train-tokenizer`) (needs config.json and model.safetensors)'),
    ("ingest-tokenizer-kind", ["ingest", "videos.csv", "--out", "o", *INGEST, "--tokenizer", "jpeg:tok"], 2,
     "vimpac ingest: error: --tokenizer: tokenizer spec 'jpeg:tok' is not of the form KIND:PATH with KIND in ('dalle', 'vqvae') (e.g. 'dalle:./encoder.pkl' or 'vqvae:./my_tokenizer')"),
    ("ingest-other-fps", ["ingest", "videos.csv", "--out", "tokens", *INGEST, "--fps", "8"], 2,
     'vimpac ingest: error: tokens already holds an ingest made with --fps 4.0, this run asks for --fps 8.0: rerun with --fps 4.0 to complete it, or use a new --out'),
    ("ingest-other-list", ["ingest", "two.csv", "--out", "tokens", *INGEST], 2,
     'vimpac ingest: error: tokens already holds an ingest of {w}/videos.csv (3 videos); this list differs (without c02): use a new --out, or rerun with the list it was made from'),
    ("ingest-foreign-out", ["ingest", "videos.csv", "--out", "mine", *INGEST], 2,
     "vimpac ingest: error: mine holds files ingest did not write (notes.txt); give a new or empty folder, or pass --overwrite to write ingest's files beside them (nothing else there is touched)"),
    ("ingest-out-is-file", ["ingest", "videos.csv", "--out", "a_file", *INGEST], 2,
     'vimpac ingest: error: a_file is a file, not a folder: give a folder for the output'),
    ("ingest-class-index-missing", ["ingest", "videos.csv", "--out", "o", *INGEST, "--class-index", "none.json"], 2,
     "vimpac ingest: error: class index 'none.json' does not exist; pass the classes.json of the train ingest"),
    ("inspect-not-an-output", ["inspect", "mine"], 2,
     'vimpac inspect: error: mine holds no ingest_plan.json: run `vimpac ingest` into it first'),
    ("rerun-failed-missing", ["rerun-failed", "nothing_here"], 2,
     'vimpac rerun-failed: error: nothing_here holds no ingest_plan.json: run `vimpac ingest` into it first'),
    ("tokenizer-list-missing", ["train-tokenizer", "nope.csv", "--out", "t"], 2,
     "vimpac train-tokenizer: error: video list 'nope.csv' does not exist"),
    ("tokenizer-frame-size", ["train-tokenizer", "videos.csv", "--out", "t", "--frame-size", "30"], 2,
     'vimpac train-tokenizer: error: --frame-size: 30 is not a positive multiple of 8 (tokens are 8x8 pixels)'),
    ("tokenizer-no-resume", ["train-tokenizer", "videos.csv", "--out", "tok_run", "--steps", "4"], 2,
     'vimpac train-tokenizer: error: tok_run already holds a checkpoint (tok_run/checkpoint): pass --resume to continue it, or use another --out'),
    ("tokenizer-foreign-out", ["train-tokenizer", "videos.csv", "--out", "mine"], 2,
     "vimpac train-tokenizer: error: mine holds files train-tokenizer did not write (notes.txt); give a new or empty folder, or pass --overwrite to write train-tokenizer's files beside them (nothing else there is touched)"),
    ("convert-dalle-not-pickle", ["convert-dalle", "notes.pkl", "dalle_out"], 2,
     "vimpac convert-dalle: error: notes.pkl is not a readable torch checkpoint (UnpicklingError: invalid load key, 'n'.)"),
    ("convert-dalle-foreign-out", ["convert-dalle", "notes.pkl", "mine"], 2,
     "vimpac convert-dalle: error: mine holds files convert-dalle did not write (notes.txt); give a new or empty folder, or pass --overwrite to write convert-dalle's files beside them (nothing else there is touched)"),
    ("pretrain-unknown-flag", ["pretrain", "tiny", "--hid-dimm", "64", "--check"], 2,
     'vimpac pretrain: error: --hid-dimm: no such flag (did you mean --hid-dim, --nce-proj-hid-dim?); see vimpac pretrain --help'),
    ("pretrain-preset-missing", ["pretrain", "tinyy", "--check"], 2,
     "vimpac pretrain: error: preset 'tinyy' not found here nor in {configs}/pretrain (presets: large, large_frame256cont, small, tiny)"),
    ("pretrain-data-missing", ["pretrain", "tiny", "--data", "nowhere", "--stage2.data", "nowhere", "--check"], 2,
     "vimpac pretrain: error: data: 'nowhere' does not exist; give an ingest output folder (`vimpac ingest --out`)"),
    ("pretrain-warm-up", ["pretrain", "tiny", "--warm-up", "2.5", "--check"], 2,
     'vimpac pretrain: error: invalid pre-training config: warm_up: 2.5 is neither a fraction (< 1) of the schedule nor a whole number of steps (>= 1)'),
    ("pretrain-foreign-output", ["pretrain", "tiny", "--data", "tokens", "--stage2.data", "tokens", "--frame-size",
                                 "32", "--vocab-size", "64", "--output", "my_runs", "--check"], 2,
     "vimpac pretrain: error: my_runs/stage1 holds files pretrain did not write (plot.png); give a new or empty folder, or pass --overwrite to write pretrain's files beside them (nothing else there is touched)"),
    ("import-missing", ["import-checkpoint", "nothing.zip", "m"], 2,
     'vimpac import-checkpoint: error: nothing.zip: no such file or folder'),
    ("import-no-weights", ["import-checkpoint", "empty_snap", "m"], 2,
     'vimpac import-checkpoint: error: empty_snap: expected exactly one classifier.pt inside, found 0: []'),
    ("import-foreign-out", ["import-checkpoint", "vimpac_small.zip", "mine"], 2,
     "vimpac import-checkpoint: error: mine holds files import-checkpoint did not write (notes.txt); give a new or empty folder, or pass --overwrite to write import-checkpoint's files beside them (nothing else there is touched)"),
    ("finetune-preset-missing", ["finetune", "nope.yaml", "--check"], 2,
     "vimpac finetune: error: config file 'nope.yaml' cannot be read: [Errno 2] No such file or directory: 'nope.yaml'"),
    ("finetune-load-missing", ["finetune", "configs/finetune/generic.yaml", "--data", "tokens", "--load", "nothing",
                               "--output", "ft", "--check"], 2,
     "vimpac finetune: error: load: 'nothing' is not a saved model folder (no config.json); give a checkpoint folder such as <output>/checkpoints/final or the output of `vimpac import-checkpoint`"),
    ("evaluate-without-data", ["evaluate", "nothing", "--check"], 2,
     'vimpac evaluate: error: data: give the test shards with --data URI'),
]
