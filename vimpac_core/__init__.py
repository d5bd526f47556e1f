"""vimpac_core: the VIMPAC library (video, tokenizers, shards, data, model, training).

Nothing in this package imports Prefect: orchestration lives in the top-level ``tasks`` and
``flows`` packages, which call into this library.
"""

__version__ = "0.1.0"
