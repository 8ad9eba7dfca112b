"""LoRA fine-tuning of the local model, its adapter registry and evaluation. Today: the base model."""
