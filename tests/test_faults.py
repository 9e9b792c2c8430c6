"""Bad input and failing ffmpeg: each gets a clear error and nothing half-written."""

import json
import stat
from pathlib import Path

import pytest
import torch

import vcwc
from vcwc import CodecError, FFmpegError, InputError, IntegrityError
from vcwc.codecs import ffmpeg
from vcwc.files import atomic_write
from vcwc.format import container

LOSSLESS = vcwc.RECIPES["lossless"].with_changes(raw_fallback=False)  # every coded tensor as video

MODEL = {"fc.weight": torch.randn(16, 32), "fc.bias": torch.randn(16)}


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="missing.pt"):
        vcwc.load_model(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="missing.vcwc"):
        vcwc.decompress(tmp_path / "missing.vcwc")


def test_a_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, not a checkpoint")
    with pytest.raises(InputError, match="notes.pt"):
        vcwc.load_model(path)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="fake.safetensors"):
        vcwc.load_model(fake)


class Payload:  # needs pickle code to load: must be refused, never executed
    def __init__(self):
        self.weights = torch.ones(2, 2)


def test_a_checkpoint_that_needs_pickle_code_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(InputError, match="pickle"):
        vcwc.load_model(path)


def test_a_dict_without_a_state_dict(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(InputError, match="no state dict"):
        vcwc.load_model(path)


def test_a_training_checkpoint_under_any_key(tmp_path):
    path = tmp_path / "trained.pt"
    optimizer = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    torch.save({"step": 7, "model_state": dict(MODEL), "optimizer_state": optimizer}, path)
    model = vcwc.load_model(path)
    assert model.names == list(MODEL) and model.container_key == "model_state"
    assert model.extras == {"step": 7} and model.dropped == ["optimizer_state"]
    torch.save({"student": dict(MODEL), "teacher": dict(MODEL)}, path)
    with pytest.raises(InputError, match="several state dicts \\('student', 'teacher'\\)"):
        vcwc.load_model(path)


def test_prefix_and_extras_are_kept(tmp_path):
    path = tmp_path / "dp.pth"
    torch.save(
        {
            "state_dict": {"module." + k: v for k, v in MODEL.items()},
            "best_prec1": 91.5,
            "optimizer_state": {"momentum": torch.zeros(3)},
        },
        path,
    )
    model = vcwc.load_model(path)
    assert model.names == list(MODEL) and model.prefix == "module."
    assert model.extras == {"best_prec1": 91.5} and model.dropped == ["optimizer_state"]
    source = vcwc.compress(model, LOSSLESS.with_changes(codec="x264")).metadata["source"]
    assert source == {
        "prefix": "module.",
        "container_key": "state_dict",
        "extras": {"best_prec1": 91.5},
        "dropped": ["optimizer_state"],
    }


def test_unknown_codec():
    with pytest.raises(CodecError, match="unknown codec 'h266'"):
        vcwc.compress(MODEL, LOSSLESS.with_changes(codec="h266"))


def test_qp_out_of_range():
    with pytest.raises(InputError, match="outside"):
        vcwc.compress(MODEL, LOSSLESS.with_changes(codec="x264", qp=60))


def _fake_ffmpeg(tmp_path, body: str) -> str:
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_codec_missing_from_the_ffmpeg_build(tmp_path):
    # The real ffmpeg, except that its encoder list lacks libx265.
    real = ffmpeg.find_ffmpeg()
    wrapper = _fake_ffmpeg(
        tmp_path, f'case "$*" in *-encoders*) "{real}" "$@" | grep -v libx265;; *) exec "{real}" "$@";; esac'
    )
    with pytest.raises(CodecError, match="no libx265 encoder"):
        vcwc.compress(MODEL, LOSSLESS.with_changes(codec="x265"), ffmpeg_path=wrapper)
    assert len(vcwc.compress(MODEL, LOSSLESS.with_changes(codec="x264"), ffmpeg_path=wrapper).data) > 0


def test_ffmpeg_failing_shows_the_command_and_stderr(tmp_path):
    failing = _fake_ffmpeg(tmp_path, 'echo "Unknown encoder libfoo" >&2; exit 1')
    with pytest.raises(FFmpegError) as raised:
        ffmpeg.run([failing, "-i", "pipe:0"], b"")
    message = str(raised.value)
    assert "exited with code 1" in message and "Unknown encoder libfoo" in message and "-i pipe:0" in message


def test_ffmpeg_hanging_times_out(tmp_path, monkeypatch):
    hanging = _fake_ffmpeg(tmp_path, 'echo "waiting for a device" >&2; exec sleep 30')
    monkeypatch.setenv(ffmpeg.TIMEOUT_ENV, "1")
    with pytest.raises(FFmpegError, match="did not finish within 1 s") as raised:
        ffmpeg.run([hanging], b"")
    assert hanging in str(raised.value)


def test_ffmpeg_binary_that_does_not_exist(monkeypatch):
    monkeypatch.setenv(ffmpeg.FFMPEG_ENV, "/nonexistent/ffmpeg")
    with pytest.raises(InputError, match="VCWC_FFMPEG"):
        vcwc.compress(MODEL)


def test_decoded_symbols_that_do_not_match_their_checksum_are_refused():
    # Rewrite the stored checksum (keeping the file's own CRCs valid) to stand for a decoder that
    # returns different symbols: the mismatch must be caught, never turned into weights.
    compressed = vcwc.compress(MODEL, LOSSLESS.with_changes(codec="x264"))
    meta = json.loads(json.dumps(compressed.metadata))
    meta["tensors"][0]["symbols_crc32"] ^= 1
    with pytest.raises(IntegrityError, match="fc.weight"):
        vcwc.decompress(container.with_metadata(compressed.data, meta))


def test_output_is_never_overwritten_without_force(tmp_path):
    target = tmp_path / "model.vcwc"
    target.write_bytes(b"precious")
    compressed = vcwc.compress(MODEL, LOSSLESS.with_changes(codec="x264"))
    with pytest.raises(InputError, match="exists"):
        compressed.save(target)
    assert target.read_bytes() == b"precious"
    compressed.save(target, force=True)
    assert target.read_bytes() == compressed.data


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.safetensors"

    def crash(temporary):
        Path(temporary).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, crash)
    assert list(tmp_path.iterdir()) == []
