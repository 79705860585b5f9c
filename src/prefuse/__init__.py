"""prefuse: modality pre-training and modality attention for multimodal learning."""
__version__ = "0.1.0"
