"""medtune: Hydra-composed LoRA / QLoRA fine-tuning of LLMs for medical question answering."""

__version__ = "0.1.0"
