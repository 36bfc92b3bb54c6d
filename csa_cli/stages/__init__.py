"""One package per stage (pull, export, check, quantize, engine, evaluate, profile): its records, its logic,
its `*_stage` entry point. Stages report through csa_cli.events and never print."""
