"""MT-Bench: 80 two-turn open questions, each answer graded 1-10 by an LLM judge with FastChat's prompts."""
