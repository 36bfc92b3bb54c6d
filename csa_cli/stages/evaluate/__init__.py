"""`csa eval` and `csa predict`: top-1 / top-5 with each model's own preprocessing, on any backend."""
