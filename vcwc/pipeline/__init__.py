"""The compression pipeline below the public API: plan each tensor, run the data-free methods, encode
chunk by chunk into a container, and decode tensors back one at a time."""
