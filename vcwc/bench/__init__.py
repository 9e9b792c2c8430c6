"""Measuring: a model under test scored against its original, target-drop search, sweeps over models and
recipes with their reports, the demo, and the NNCodec baseline run in its own environment."""
