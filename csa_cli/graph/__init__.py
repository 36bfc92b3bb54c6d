"""Everything that reads an ONNX graph: loading, its interface, one index, Q/DQ facts, the cost model."""
