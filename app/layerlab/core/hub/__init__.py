"""The hub: find GGUF models on Hugging Face, fit badges for this cluster, downloads, a library."""
