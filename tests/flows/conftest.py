"""Fixtures of the flow tests, shared with the ingest tests (tiny clips, tiny VQ-VAE, http server)."""

from tests.ingest.conftest import clips, http_server, tiny_tokenizer  # noqa: F401 - pytest fixtures
