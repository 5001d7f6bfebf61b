"""The P-RLHF library: user model, shared LoRA, personalized preference losses,
training loop, evaluation, generation. Imports torch/transformers/peft, never Django,
so it can be tested, benchmarked and driven from a CLI on its own."""
