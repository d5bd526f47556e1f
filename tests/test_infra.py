"""The shared fixtures really work: a flow run reaches the session's Prefect server, and s3fs
reads back what it wrote through moto's S3 API."""

import fsspec


def test_flow_runs_on_session_server(prefect_server):
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow
    def add(a: int, b: int) -> int:
        return a + b

    state = add(2, 3, return_state=True)
    assert state.is_completed() and state.result() == 5

    import anyio

    async def count():
        async with get_client() as client:
            return len(await client.read_flow_runs())

    assert anyio.run(count) >= 1


def test_s3_round_trip(s3_bucket):
    with fsspec.open(f"s3://{s3_bucket}/a/b.txt", "w") as f:
        f.write("hello")
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    assert fs.cat(f"s3://{s3_bucket}/a/b.txt") == b"hello"
    assert fs.ls(f"s3://{s3_bucket}/a") == [f"{s3_bucket}/a/b.txt"]


def test_sample_videos(sample_videos):
    assert {"bigbuckbunny", "bikes"} <= set(sample_videos)
