"""Synthetic decoder checkpoints for memory and speed measurements: the tensor names and shapes of a
Llama-style language model, random bf16 weights, written as sharded safetensors a tensor at a time.

    write_decoder(folder, DECODER_1B)   # about 1.1 billion parameters, 2.2 GB of bf16, 100 MB shards
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..format.safetensors import ITEM_BYTES, SafetensorsWriter, from_array


@dataclass(frozen=True)
class DecoderShape:
    vocabulary: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool = False  # an untied output layer is stored as lm_head.weight

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        head = self.hidden // self.heads
        shapes = [("model.embed_tokens.weight", (self.vocabulary, self.hidden))]
        for layer in range(self.layers):
            prefix = f"model.layers.{layer}"
            shapes += [
                (f"{prefix}.input_layernorm.weight", (self.hidden,)),
                (f"{prefix}.self_attn.q_proj.weight", (self.hidden, self.hidden)),
                (f"{prefix}.self_attn.k_proj.weight", (self.kv_heads * head, self.hidden)),
                (f"{prefix}.self_attn.v_proj.weight", (self.kv_heads * head, self.hidden)),
                (f"{prefix}.self_attn.o_proj.weight", (self.hidden, self.hidden)),
                (f"{prefix}.post_attention_layernorm.weight", (self.hidden,)),
                (f"{prefix}.mlp.gate_proj.weight", (self.intermediate, self.hidden)),
                (f"{prefix}.mlp.up_proj.weight", (self.intermediate, self.hidden)),
                (f"{prefix}.mlp.down_proj.weight", (self.hidden, self.intermediate)),
            ]
        shapes.append(("model.norm.weight", (self.hidden,)))
        if not self.tied:
            shapes.append(("lm_head.weight", (self.vocabulary, self.hidden)))
        return shapes

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensors())


# TinyLlama-1.1B's shapes: 32,000-row embedding and output layers, 22 layers, grouped-query attention.
DECODER_1B = DecoderShape(vocabulary=32000, hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4)
DECODER_TINY = DecoderShape(vocabulary=512, hidden=64, intermediate=160, layers=2, heads=4, kv_heads=2)


def write_decoder(folder: str | Path, shape: DecoderShape, shard_bytes: int = 100 << 20, seed: int = 0) -> Path:
    """A sharded bf16 checkpoint in `folder` (created): weights N(0, 0.02), norms 1; returns the index's path.

    Each tensor is drawn and written on its own, so memory holds one tensor whatever the model's size.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, tensor_shape in shape.tensors():
        nbytes = math.prod(tensor_shape) * ITEM_BYTES["bfloat16"]
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, tensor_shape))
        size += nbytes
    names = [f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors" for index in range(len(shards))]
    rng = np.random.default_rng(seed)
    weight_map = {}
    for file_name, members in zip(names, shards):
        with SafetensorsWriter(folder / file_name, [(n, "bfloat16", s) for n, s in members], {"format": "pt"}) as out:
            for name, tensor_shape in members:
                if len(tensor_shape) == 1:
                    values = np.ones(tensor_shape, dtype=np.float32)
                else:
                    values = rng.standard_normal(tensor_shape, dtype=np.float32) * np.float32(0.02)
                out.write(name, from_array(values, "bfloat16"))
                weight_map[name] = file_name
                del values
    index = {"metadata": {"total_size": shape.parameters * 2}, "weight_map": weight_map}
    path = folder / "model.safetensors.index.json"
    path.write_text(json.dumps(index, indent=2))
    return path
