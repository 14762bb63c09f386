"""Distributed PyTorch (DDP) propensity model: DCN-v2, launched by torchrun."""
