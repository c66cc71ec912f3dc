"""GSM8K: grade-school math word problems, scored by the final number of the reply."""
