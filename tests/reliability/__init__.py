"""The bad-input matrix: each case feeds one kind of bad input through a real path."""
