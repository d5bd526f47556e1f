"""The tasks' retry predicates (Prefect ``retry_condition_fn``), in one place.

Each looks at the exception the failed attempt raised:

- `only_transient` (ingest, tokenizer): a retriable error (``retriable`` true: TransientError and
  kin) or a timeout / lost connection, never while the command stops on the user's signal;
- `retry_from_checkpoint` (training stages, fine-tuning): a TransientError that left a resumable
  checkpoint (``resume_from``), so the retry continues instead of starting over;
- `retry_transient` (evaluation: nothing to resume, it reruns whole): any TransientError.
"""

from __future__ import annotations

from prefect.client.schemas.objects import State, TaskRun

from vimpac_core import interrupts
from vimpac_core.errors import TransientError

TRANSIENT_BUILTINS = (TimeoutError, ConnectionError)


def _raised(state: State) -> BaseException | None:
    """The exception of a failed attempt's state (None when it holds a result)."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the predicates sort every kind
        return exc
    return None


def only_transient(task: object, task_run: TaskRun, state: State) -> bool:
    """Retry a retriable error (never bad input, never while the command is stopping on a signal)."""
    if interrupts.stop_requested():
        return False
    exc = _raised(state)
    if not isinstance(exc, Exception):
        return False
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, TRANSIENT_BUILTINS)


def retry_from_checkpoint(task: object, task_run: TaskRun, state: State) -> bool:
    """Retry a retriable failure that left a resumable checkpoint."""
    exc = _raised(state)
    return isinstance(exc, TransientError) and getattr(exc, "resume_from", None) is not None


def retry_transient(task: object, task_run: TaskRun, state: State) -> bool:
    """Retry any TransientError (for work with nothing to resume)."""
    return isinstance(_raised(state), TransientError)
