"""hydrocast: forecast river discharge from maps with a ConvLSTM."""

__version__ = "0.1.0"
