"""Image classification: built-in and user datasets, reference models, augmentation views."""
