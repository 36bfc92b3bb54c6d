"""`csa export`: a zoo model to a verified ONNX file, cached by its inputs."""
