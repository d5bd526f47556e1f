"""vimpac_core: the VIMPAC library (video, tokenizers, shards, data, model, training).

Nothing in this package imports Prefect: orchestration lives in the top-level ``vimpac_tasks`` and
``vimpac_flows`` packages, which call into this library.
"""

__version__ = "0.1.0"
