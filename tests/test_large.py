"""Sharded bf16 checkpoints in and out, a tensor at a time; the same bytes whatever the number of jobs."""

import json

import numpy as np
import pytest

import vcwc
from vcwc import cli
from vcwc.bench.synthetic import DECODER_TINY, write_decoder
from vcwc.format.safetensors import SafetensorsFile

pytestmark = pytest.mark.slow  # real codecs end to end


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoder")
    write_decoder(folder, DECODER_TINY, shard_bytes=64 << 10)
    return folder


def shard_layout(folder):
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return index["weight_map"]


def test_a_sharded_checkpoint_comes_back_with_its_shards_dtypes_and_int8_accuracy(checkpoint, tmp_path, capsys):
    layout = shard_layout(checkpoint)
    assert len(set(layout.values())) >= 3
    for recipe in ("lossless", "fast"):
        out = tmp_path / f"{recipe}.vcwc"
        assert cli.main(["compress", str(checkpoint), "-o", str(out), "--recipe", recipe]) == 0
        restored = tmp_path / f"{recipe}-restored"
        assert cli.main(["decompress", str(out), "-o", f"{restored}/"]) == 0
        assert shard_layout(restored) == layout
        assert sorted(p.name for p in restored.iterdir()) == sorted(
            [*set(layout.values()), "model.safetensors.index.json"]
        )
        compressed = vcwc.open_compressed(out)
        for name, shard in layout.items():
            before, after = SafetensorsFile(checkpoint / shard), SafetensorsFile(restored / shard)
            assert after.entries[name].dtype == "bfloat16" and after.entries[name].shape == before.entries[name].shape
            original, decoded = before.array(name), after.array(name)
            record = compressed.meta.tensor(name)
            if not record.coded:
                assert np.array_equal(original, decoded), name
                continue
            scales = np.frombuffer(compressed.container.blob(record.quantizer.scales.blob), "<f4")
            scale = scales[
                record.quantizer.scales.offset // 4 : record.quantizer.scales.offset // 4
                + record.quantizer.scales.count
            ]
            rows = original.reshape(original.shape[0], -1)
            bound = (scale.max() if len(scale) == 1 else scale[:, None]) / 2 + np.abs(rows) * 2.0**-8
            assert (np.abs(decoded.reshape(rows.shape) - rows) <= bound * 1.0001).all(), name
    assert cli.main(["decompress", str(tmp_path / "lossless.vcwc"), "-o", f"{tmp_path / 'lossless-restored'}/"]) == 1
    assert "--force" in capsys.readouterr().err
    single = tmp_path / "one.safetensors"
    assert cli.main(["decompress", str(tmp_path / "lossless.vcwc"), "-o", str(single)]) == 0
    assert set(SafetensorsFile(single).entries) == set(layout)


def test_the_same_bytes_whatever_the_number_of_jobs(checkpoint, tmp_path):
    files = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.vcwc"
        assert cli.main(["compress", str(checkpoint), "-o", str(out), "--recipe", "smallest", "-j", str(jobs)]) == 0
        files.append(out.read_bytes())
    assert files[0] == files[1]
