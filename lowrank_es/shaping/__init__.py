"""Learners for social dilemmas: naive, LOLA, LOQA, Advantage Alignment, BRS."""
