"""odlite: train a mobile object detector and ship it to Android."""

__version__ = "0.1.0"
