"""The classifier: a model exported once to ONNX (`model`, `variants`), served with
onnxruntime (`classifier`) on images prepared as it was trained (`imgrec.imaging`).

Import what you need from its modules: importing this package loads nothing, so
a part that needs only, say, the model's manifest does not load onnxruntime."""
