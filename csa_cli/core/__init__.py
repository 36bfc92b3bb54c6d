"""The pipeline core: stages with typed inputs and outputs. Command modules call into here."""
