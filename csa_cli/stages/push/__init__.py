"""`csa push`: a csa checkpoint to a Hugging Face Hub repo in timm's layout, with a model card."""
