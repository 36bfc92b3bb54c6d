"""`csa profile`: latency per batch size with a static cost estimate and a roofline floor."""
