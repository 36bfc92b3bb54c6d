"""`csa check`: a static TensorRT restricted-mode and DLA compliance checker, every rule with its source."""
