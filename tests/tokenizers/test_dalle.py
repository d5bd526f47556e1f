"""DALL-E dVAE: exact names/shapes, code identity with the `DALL-E` package, both pickle formats,
converted folders, and refusal of pickles that name anything else."""

from __future__ import annotations

import json
import os
import pickle

import attr
import numpy as np
import pytest
import torch
from dall_e import Decoder as RefDecoder
from dall_e import Encoder as RefEncoder
from dall_e import map_pixels as ref_map_pixels
from dall_e import unmap_pixels as ref_unmap_pixels

from vimpac_cli import main as cli_main
from vimpac_core.errors import TokenizerError, UnsafePickleError
from vimpac_core.tokenizers import (
    DalleDecoder,
    DalleEncoder,
    load_dalle_decoder,
    load_dalle_encoder,
    load_tokenizer,
    sha256_file,
)


def small_reference(n_hid: int = 16, vocab: int = 128) -> tuple[RefEncoder, RefDecoder]:
    """The package's modules at a small width (its validators insist on release-like sizes)."""
    torch.manual_seed(0)
    with attr.validators.disabled():
        enc = RefEncoder(n_hid=n_hid, vocab_size=vocab, use_mixed_precision=False)
        dec = RefDecoder(n_init=n_hid, n_hid=n_hid, vocab_size=vocab, use_mixed_precision=False)
    for p in dec.parameters():  # released decoders have non-zero biases; make ours matter too
        p.data.add_(0.01 * torch.randn_like(p))
    return enc, dec


def reference_codes(enc: RefEncoder, frames: np.ndarray) -> np.ndarray:
    """The VIMPAC release's pipeline on the package's encoder, in fp32."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.5) / 0.5
    x = x * 0.5 + 0.5
    with torch.no_grad():
        return enc(ref_map_pixels(x)).argmax(1).numpy()


@pytest.fixture(scope="module")
def pickles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dalle")
    enc, dec = small_reference()
    torch.save(enc, folder / "encoder.pkl")
    torch.save(dec, folder / "decoder.pkl")
    (folder / "legacy").mkdir()
    torch.save(enc, folder / "legacy" / "encoder.pkl", _use_new_zipfile_serialization=False)
    torch.save(dec, folder / "legacy" / "decoder.pkl", _use_new_zipfile_serialization=False)
    return folder, enc, dec


def test_state_dict_names_and_shapes_match_the_release_exactly():
    meta = torch.device("meta")  # full size (74 / 76 tensors) without allocating 500 MB
    ref_enc, ref_dec = RefEncoder(device=meta), RefDecoder(device=meta)
    with meta:
        ours_enc, ours_dec = DalleEncoder(), DalleDecoder()
    for ref, ours in ((ref_enc, ours_enc), (ref_dec, ours_dec)):
        want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert got == want
        ours.load_state_dict(ref.state_dict(), strict=True, assign=True)
    assert len(ref_enc.state_dict()) == 74 and len(ref_dec.state_dict()) == 76
    assert ref_enc.state_dict()["blocks.output.conv.w"].shape == (8192, 2048, 1, 1)


@pytest.mark.parametrize("fast", [False, True], ids=["default", "onednn"])
@pytest.mark.parametrize("size", [32, 64])
def test_codes_identical_to_the_package(pickles, size, fast):
    folder, enc, _ = pickles
    tok = load_tokenizer(f"dalle:{folder / 'encoder.pkl'}", batch_size=5, fast=fast)
    frames = np.random.default_rng(size).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    codes = tok.encode(frames)
    want = reference_codes(enc, frames)
    assert codes.shape == (5, size // 8, size // 8) and codes.dtype == np.int64
    np.testing.assert_array_equal(codes, want)
    assert len(np.unique(want)) > 3  # a test where every code is equal would prove little
    np.testing.assert_array_equal(load_dalle_encoder(folder / "encoder.pkl").encode(frames).numpy(), want)


def test_default_path_logits_are_bit_identical_to_the_package(pickles):
    """Through the tokenizer's own path (input transform included): every logit equal, not just codes,
    to the package's given the frames as its users pass them (a permuted uint8 view: channels-last)."""
    folder, enc, _ = pickles
    frames = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = ref_map_pixels((x - 0.5) / 0.5 * 0.5 + 0.5)  # the VIMPAC release, op by op
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    with torch.no_grad():
        want = enc(x)
    naive = ref_map_pixels(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert not torch.equal(naive, x)  # the round trip through [-1, 1] changes floats: the order matters
    tok = load_tokenizer(f"dalle:{folder / 'encoder.pkl'}", batch_size=4)
    seen = []
    tok.encoder.register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))
    tok.encode(frames)
    assert torch.equal(seen[0], want)


def weight_copies(forward) -> int:
    """How many tensors ``forward`` copies into another layout (``aten::contiguous`` -> ``clone``)."""
    with torch.no_grad(), torch.profiler.profile() as prof:
        forward()
    return sum(e.name == "aten::clone" and e.cpu_parent is not None and e.cpu_parent.name == "aten::contiguous"
               for e in prof.events())


@pytest.mark.parametrize("threads", [1, 2])
def test_exact_mode_runs_each_layout_as_the_package_does_without_copying_weights(pickles, threads):
    """Both memory layouts give the package's logits bit for bit (and its layout); for channels-last
    input the k x k weights are converted once, not on every call as F.conv2d would, also after new
    weights are loaded."""
    folder, enc, _ = pickles
    ours = load_dalle_encoder(folder / "encoder.pkl")
    frames = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    x = ref_map_pixels(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    previous, saved = torch.get_num_threads(), {k: v.clone() for k, v in enc.state_dict().items()}
    torch.set_num_threads(threads)  # the package's own logits depend on it: compare like with like
    try:
        for layout in (x, x.contiguous()):
            with torch.no_grad():
                want = enc(layout)
                got = ours(layout.clone(), exact=True)
            assert torch.equal(got, want) and got.stride() == want.stride()
        # 25 k x k convs (the 7x7 input, 3 per block): F.conv2d copies each weight, we do not.
        assert weight_copies(lambda: enc(x)) == 25
        assert weight_copies(lambda: ours(x.clone(), exact=True)) == 0
        other = {k: torch.randn_like(v) if k.endswith(".w") else v for k, v in enc.state_dict().items()}
        ours.load_state_dict(other)  # the kept channels-last copies are now stale
        enc.load_state_dict(other)
        with torch.no_grad():
            assert torch.equal(ours(x.clone(), exact=True), enc(x))
    finally:
        torch.set_num_threads(previous)
        enc.load_state_dict(saved)  # the module's other tests share the package's encoder


def test_onednn_path_is_close_and_repacks_changed_weights(pickles):
    folder, enc, _ = pickles
    frames = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    fast = load_tokenizer(f"dalle:{folder / 'encoder.pkl'}", fast=True)
    assert fast.fast and fast.encoder.prepacked
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = ref_map_pixels((x - 0.5) / 0.5 * 0.5 + 0.5)
    with torch.inference_mode():
        torch.testing.assert_close(fast.encoder(x.clone()), enc(x.contiguous()), rtol=1e-5, atol=1e-5)
    before = fast.encode(frames)
    other = {k: torch.randn_like(v) if k.endswith(".w") else v for k, v in enc.state_dict().items()}
    fast.encoder.load_state_dict(other)  # the prepacked copy is now stale: it must not be used
    with torch.inference_mode():
        want = fast.encoder(x.clone().contiguous(), exact=True).argmax(1).numpy()
    got = fast.encode(frames)
    assert not np.array_equal(got, before)
    assert (got == want).mean() > 0.95  # near-ties may differ between the two paths, nothing else


def test_decoder_matches_the_package(pickles):
    folder, _, dec = pickles
    ours = load_dalle_decoder(folder / "decoder.pkl")
    codes = torch.randint(0, 128, (2, 4, 4))
    onehot = torch.nn.functional.one_hot(codes, 128).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        want = dec(onehot)
        got = ours(codes)
    assert got.shape == (2, 6, 32, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    pics = load_tokenizer(f"dalle:{folder / 'encoder.pkl'}").decode(codes.numpy())
    expect = ref_unmap_pixels(torch.sigmoid(want[:, :3])).mul(255).round().to(torch.uint8)
    np.testing.assert_array_equal(pics, expect.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_both_torch_pickle_formats_load_exactly(pickles, fmt):
    folder, enc, dec = pickles
    src = folder if fmt == "zip" else folder / "legacy"
    for ref, ours in ((enc, load_dalle_encoder(src / "encoder.pkl")), (dec, load_dalle_decoder(src / "decoder.pkl"))):
        assert ours.source_sha256 == sha256_file(src / f"{type(ref).__name__.lower()}.pkl")
        ref_state, got = ref.state_dict(), ours.state_dict()
        assert list(got) == list(ref_state)
        assert all(torch.equal(got[k], ref_state[k]) for k in got)


def test_convert_cli_writes_safetensors_with_source_sha(pickles, tmp_path):
    folder, enc, _ = pickles
    out = tmp_path / "converted"
    assert cli_main(["convert-dalle", str(folder / "encoder.pkl"), str(folder / "decoder.pkl"), str(out)]) == 0
    meta = json.loads((out / "dalle.json").read_text())
    assert meta["encoder"]["source_sha256"] == sha256_file(folder / "encoder.pkl")
    assert meta["decoder"]["source_sha256"] == sha256_file(folder / "decoder.pkl")
    assert (out / "encoder.safetensors").is_file() and (out / "decoder.safetensors").is_file()
    from_pickle = load_tokenizer(f"dalle:{folder / 'encoder.pkl'}")
    from_folder = load_tokenizer(f"dalle:{out}")
    assert from_folder.tokenizer_id == from_pickle.tokenizer_id == f"dalle:{meta['encoder']['source_sha256']}"
    frames = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(from_folder.encode(frames), reference_codes(enc, frames))
    assert from_folder.can_decode


def test_loads_from_a_url(pickles):
    folder, enc, _ = pickles
    model = load_dalle_encoder(f"file://{folder / 'encoder.pkl'}")
    assert torch.equal(model.state_dict()["blocks.input.w"], enc.state_dict()["blocks.input.w"])


def test_loads_from_s3_with_the_decoder_beside_it(pickles, s3_bucket):
    import fsspec

    folder, enc, _ = pickles
    for part in ("encoder", "decoder"):
        with fsspec.open(f"s3://{s3_bucket}/dalle/{part}.pkl", "wb") as f:
            f.write((folder / f"{part}.pkl").read_bytes())
    tok = load_tokenizer(f"dalle:s3://{s3_bucket}/dalle/encoder.pkl")
    assert tok.tokenizer_id == f"dalle:{sha256_file(folder / 'encoder.pkl')}" and tok.can_decode
    frames = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(tok.encode(frames), reference_codes(enc, frames))


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch-zip", "torch-legacy", "plain-pickle", "inside-a-module"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "encoder.pkl"
    if how == "plain-pickle":
        path.write_bytes(pickle.dumps(_Evil(str(marker))))
    elif how == "inside-a-module":
        enc, _ = small_reference()
        enc.payload = _Evil(str(marker))  # a valid dVAE that also carries the payload
        torch.save(enc, path)
    else:
        torch.save({"w": _Evil(str(marker))}, path, _use_new_zipfile_serialization=(how == "torch-zip"))
    with pytest.raises(UnsafePickleError, match=r"(posix|os|nt)\.system.*refused"):
        load_dalle_encoder(path)
    assert not marker.exists()


def test_non_dvae_files_give_clear_errors(pickles, tmp_path):
    folder, _, _ = pickles
    torch.save({"a": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(TokenizerError, match="does not hold a pickled dall_e module"):
        load_dalle_encoder(tmp_path / "weights.pt")
    with pytest.raises(TokenizerError, match="holds the DALL-E decoder"):
        load_dalle_encoder(folder / "decoder.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"not a checkpoint")
    with pytest.raises(TokenizerError, match="garbage.pkl"):
        load_dalle_encoder(tmp_path / "garbage.pkl")
    with pytest.raises(TokenizerError, match="convert-dalle"):
        load_dalle_encoder(tmp_path)
