"""`csa engine` and `csa import-timings`: TensorRT engines here, or Orin bundles, and timings from the device."""
