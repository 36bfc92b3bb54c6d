"""`csa quantize`: INT8 post-training quantization with entropy calibration (QDQ ONNX + TensorRT cache)."""
