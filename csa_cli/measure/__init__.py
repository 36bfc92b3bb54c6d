"""Measuring: timing probes per backend, sample statistics, roofline peaks, what the machine is."""
