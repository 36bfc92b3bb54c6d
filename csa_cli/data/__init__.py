"""Datasets (ImageNet val layouts, ImageFolder), the eval preprocessing, and ImageNet's class list."""
