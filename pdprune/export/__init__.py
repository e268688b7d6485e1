"""Exports: hardened weights, the compact model, torch.export / ONNX files, 2:4 sparse kernels."""
