"""The classifier: EfficientNet-Lite0 exported once to ONNX (`model`), images prepared
exactly as it was trained (`preprocess`), served with onnxruntime (`classifier`)."""

from imgrec.engine.classifier import Classifier, Guess, ImageError, Prediction

__all__ = ["Classifier", "Guess", "ImageError", "Prediction"]
