"""TensorRT: build plans, the API builder and executor, Orin bundles and their device scripts (device/)."""
