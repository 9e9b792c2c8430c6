"""Quantization: weights to integer symbols and back (pure numpy), and the data-free methods that choose
the symbols better: gptq rounding and the bias correction, both steered by a pass of noise (torch)."""
