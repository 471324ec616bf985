"""Distillation: losses (a registry), the training loop, teacher fine-tuning."""
