"""Compression: token budget, chunking, prompts, map/reduce, and the job runner."""
