"""Model training: LightGBM (and, later, distributed PyTorch) propensity models."""
