"""`csa train`: training and fine-tuning zoo models on torch.distributed (one process or torchrun's workers)."""
