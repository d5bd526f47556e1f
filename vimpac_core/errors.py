"""Exception types shared across stages.

Every error raised for bad input says which input and what to do. ``retriable`` tells the
orchestration layer whether another attempt may succeed (network blips, timeouts) or not
(404, not a video): only retriable errors are retried.
"""

from __future__ import annotations


class VimpacError(Exception):
    """Base class of all errors raised by vimpac_core."""

    retriable: bool = False

    @property
    def error_class(self) -> str:
        return "retriable" if self.retriable else "permanent"


class ConfigError(VimpacError, ValueError):
    """A configuration value is invalid; the message names the field."""


class OutputExistsError(ConfigError):
    """An output folder holds files the command did not write, or an earlier output it will not
    replace without ``--overwrite``; nothing was changed."""


class TransientError(VimpacError):
    """A failure another attempt may fix (5xx, connection reset, timeout)."""

    retriable = True


class Interrupted(TransientError):
    """The work was stopped from outside (the user's Ctrl-C or SIGTERM, or a helper process killed
    by such a signal): nothing is wrong with the input, so this is never recorded as its failure.
    Retriable, except while the command itself is stopping (see ``vimpac_core.interrupts``)."""


class PermanentError(VimpacError):
    """A failure that will not go away on retry (404, not a video, bad codec)."""

    retriable = False


class DownloadError(PermanentError):
    """A video could not be fetched; permanent unless raised as TransientDownloadError."""


class TransientDownloadError(TransientError):
    """A fetch failed in a way that may succeed later (5xx, reset, timeout)."""


class VideoError(PermanentError):
    """A video cannot be probed or decoded (empty, truncated, no video stream, bad codec)."""


class SegmentError(VideoError):
    """A segment [start, end) of a readable video holds no frame (the list's window is wrong; the
    file itself is fine, so its stored copy is kept)."""


class DecodeTimeoutError(TransientError):
    """Decoding a video did not finish within its time limit; the decoder was killed."""


class TokenizerError(VimpacError, ValueError):
    """A tokenizer spec, weights file or input is invalid."""


class UnsafePickleError(VimpacError, ValueError):
    """A pickle (DALL-E weights, a snapshot's args.pickle) names a global outside the allow-list;
    it was refused, nothing was executed."""


class CheckpointError(VimpacError, ValueError):
    """A checkpoint is missing, malformed, or does not fit the model (shape mismatch)."""
