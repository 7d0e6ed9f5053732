"""Saving fitted models: the pickle-free format and ONNX export."""
