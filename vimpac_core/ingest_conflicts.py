"""Why an output folder refuses a new ingest: the one setting that differs, with both values.

Shards of two plans never mix in one folder; the refusal names what differs (the tokenizer or its
precision, an extraction setting by its flag, or the videos of the list) so the user knows whether
to rerun with the folder's settings or to use a new ``--out``.
"""

from __future__ import annotations

from typing import Any

# The plans compared are vimpac_core.ingest.IngestPlan (not imported: ingest imports this module).
IngestPlan = Any


def plan_conflict(out: str, old: IngestPlan, new: IngestPlan) -> str:
    """Why ``out``'s plan refuses a new one: the tokenizer setting that differs (both values), else
    the generic reason (another list or other extraction settings)."""
    from vimpac_core.tokenizers.identity import parse_tokenizer_id

    (old_kind, old_sha, old_prec), (kind, sha, prec) = map(parse_tokenizer_id, (old.tokenizer_id, new.tokenizer_id))
    if (old_kind, old_sha) == (kind, sha) and old_prec != prec:
        return (f"{out} already holds tokens of precision {old_prec}, this run asks for precision {prec}: "
                f"precisions never mix in one output; rerun with --precision {old_prec} or use a new --out")
    if (old_kind, old_sha) != (kind, sha):
        return (f"{out} already holds tokens of tokenizer {old.tokenizer_id[:24]}..., this run's is "
                f"{new.tokenizer_id[:24]}...: tokenizers never mix in one output; use a new --out")
    for name, flag in SETTING_FLAGS.items():
        before, now = getattr(old.config, name), getattr(new.config, name)
        if before != now:
            was, asked = _as_flag(name, flag, before), _as_flag(name, flag, now)
            return (f"{out} already holds an ingest made with {was}, this run asks for {asked}: rerun with {was} "
                    "to complete it, or use a new --out")
    return _list_conflict(out, old, new)


# Settings that change an output's shards, and the flag that sets each (for refusals).
SETTING_FLAGS = {"fps": "--fps", "frame_size": "--frame-size", "views": "--views", "flip": "--no-flip",
                 "shard_size": "--shard-size", "root": "--root", "class_index": "--class-index"}


def _as_flag(name: str, flag: str, value: object) -> str:
    if name == "flip":
        return "flipped views (no --no-flip)" if value else "--no-flip"
    return f"{flag} {value}" if value is not None else f"no {flag}"


def _list_conflict(out: str, old: IngestPlan, new: IngestPlan) -> str:
    """The videos or classes that differ between the list ``out`` was made from and this one."""
    before = {e.video_id: e for s in old.shards for e in s.entries}
    now = {e.video_id: e for s in new.shards for e in s.entries}
    gone, added = sorted(set(before) - set(now)), sorted(set(now) - set(before))
    changed = sorted(v for v in set(before) & set(now) if before[v] != now[v])
    if gone or added or changed:
        parts = [f"{label} {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''}"
                 for label, ids in (("without", gone), ("with new", added), ("with changed", changed)) if ids]
        detail = "; ".join(parts)
    elif old.classes != new.classes:
        detail = f"with classes {new.classes[:5]} instead of {old.classes[:5]}"
    else:
        detail = "with the same videos in another order"
    return (f"{out} already holds an ingest of {old.config.inputs} ({len(before)} videos); this list differs "
            f"({detail}): use a new --out, or rerun with the list it was made from")
