"""`csa pull`, `csa cache` and loading weights: the Hub, locks, the HF cache, checkpoints -> nn.Module."""
