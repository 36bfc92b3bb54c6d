"""Chains of stages: `csa run` (cached, resumable) and `csa compare` (the seed's study and its report)."""
