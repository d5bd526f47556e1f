"""Video layer: probe, FPS frame selection, view geometry, windowed decode, the frame-reading stage
(``read.py``: probe + select + decode, shared by ingest and tokenizer training), synthetic clips.

Decoding runs in worker processes (``worker.py``) so a hung decode can be killed at its timeout.
"""

from vimpac_core.video.decode import decode_views
from vimpac_core.video.geometry import CROPS, ViewSpec, crop_box, resized_size, view_set
from vimpac_core.video.probe import VideoInfo, probe
from vimpac_core.video.read import FpsFrames, read_fps_frames
from vimpac_core.video.select import fps_select
from vimpac_core.video.synthetic import read_frame_index, write_synthetic_video
from vimpac_core.video.worker import live_worker_pids, shutdown_workers

__all__ = [
    "CROPS",
    "FpsFrames",
    "VideoInfo",
    "ViewSpec",
    "crop_box",
    "decode_views",
    "fps_select",
    "live_worker_pids",
    "probe",
    "read_fps_frames",
    "read_frame_index",
    "resized_size",
    "shutdown_workers",
    "view_set",
    "write_synthetic_video",
]
