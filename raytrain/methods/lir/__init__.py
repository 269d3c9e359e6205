"""LIR: unsupervised restoration by learning an invariant representation (paper 000_9b4b6eeb780770c7)."""
