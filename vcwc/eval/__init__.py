"""Task quality of a model: evaluation data sets and measures (image classification)."""
