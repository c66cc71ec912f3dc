"""MMLU: 57-subject multiple choice, 5-shot, scored by the letter of the reply."""
